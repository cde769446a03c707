//! Sans-IO ODETTE-FTP (OFTP 1.2, 1.3, 1.4 and 2.0) protocol core.
//!
//! No sockets, no clock, no async runtime: bytes and the current time go in,
//! bytes, events and deadlines come out.
//!
//! * [`sth`]: Stream Transmission Header framing over TCP.
//! * [`codec`]: every command of RFC 5024 and the RFC 2204 layouts, typed.
//! * [`data`]: DATA exchange buffers, subrecords, buffer compression, records
//!   and restart units.
#![warn(missing_docs)]

pub mod codec;
pub mod data;
pub mod sth;
