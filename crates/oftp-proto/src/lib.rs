//! Sans-IO ODETTE-FTP (OFTP 1.2, 1.3, 1.4 and 2.0) protocol core.
//!
//! No sockets, no clock, no async runtime: transport bytes and the current
//! time go in; framed bytes to write, events and the next deadline come out.
//! A runtime (the `oftp` crate) owns the TCP/TLS connection, the files and the
//! timers and drives a [`session::Session`].
//!
//! # Modules
//! * [`sth`]: Stream Transmission Header framing; `Ok(None)` means "need more
//!   bytes", `Err` means malformed.
//! * [`codec`]: every command of RFC 5024, the RFC 2204 layouts of levels 1
//!   and 2, and the 1.4 layouts of level 4 (RFC 2204 with the extended date
//!   and time stamp and NERP), as typed structs in [`codec::Command`]; wire codes
//!   ([`codec::EsidReason`], [`codec::SfnaReason`], [`codec::CipherSuite`]...)
//!   are newtypes that keep unknown values; [`codec::DecodeError::esid_reason`]
//!   maps a decode failure to the ESID reason to answer.
//! * [`data`]: DATA exchange buffers (subrecords, buffer compression),
//!   record rules for U/T/F/V files and restart-unit helpers.
//! * [`session`]: the initiator and responder state machines.
//!
//! # Driving a session
//! ```
//! use std::time::Instant;
//! use oftp_proto::codec::{Password, EsidReason};
//! use oftp_proto::session::{Event, InitiatorConfig, ResponderConfig, ResponderParams,
//!     Capabilities, Session};
//!
//! let now = Instant::now();
//! let mut client = Session::initiator(
//!     InitiatorConfig::new("O0013000000ACME", Password::new("SECRET")), now).unwrap();
//! let mut server = Session::responder(ResponderConfig::default(), now);
//! // A runtime moves poll_transmit() bytes to the socket and feeds what it
//! // reads to handle_input(); here the two sessions talk directly.
//! let mut pump = |a: &mut Session, b: &mut Session| {
//!     for _ in 0..10 {
//!         if let Some(bytes) = a.poll_transmit() { b.handle_input(&bytes, now); }
//!         if let Some(bytes) = b.poll_transmit() { a.handle_input(&bytes, now); }
//!     }
//! };
//! pump(&mut client, &mut server);
//! while let Some(event) = server.poll_event() {
//!     if let Event::SsidReceived { peer } = event {
//!         // Look the partner up; check peer.code and peer.password here.
//!         assert_eq!(peer.code, "O0013000000ACME");
//!         server.accept_session(ResponderParams {
//!             ssid_code: "O0013000000PARTNER".into(),
//!             password: Password::new("OTHER"),
//!             user_data: String::new(),
//!             capabilities: Capabilities::default(),
//!         }).unwrap();
//!     }
//! }
//! pump(&mut client, &mut server);
//! assert!(client.is_speaker());
//! // Nothing to send: hand the turn over; the responder, with nothing to send
//! // either, ends the session normally.
//! client.change_direction().unwrap();
//! pump(&mut client, &mut server);
//! server.end_session(EsidReason::NORMAL, "").unwrap();
//! pump(&mut client, &mut server);
//! assert!(client.is_closed() && server.is_closed());
//! ```
#![warn(missing_docs)]

pub mod codec;
pub mod data;
pub mod session;
pub mod sth;
