//! End-to-end tests: a real emulator on 127.0.0.1:0 driven with reqwest.

mod common;
mod delta;
mod faults;
mod graph;
mod identity;
mod users;
mod write;
