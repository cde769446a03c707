//! Tokio runtime for OFTP (Odette File Transfer Protocol, RFC 5024 / RFC 2204).
//!
//! Work in progress: durable file store, journal and configuration types.
#![warn(missing_docs)]

pub mod config;
pub mod journal;
pub mod stamp;
pub mod store;
