//! Tokio runtime for OFTP (Odette File Transfer Protocol: RFC 5024 for 2.0, RFC 2204 for 1.x).
//!
//! - [`server::Server`] accepts sessions (responder) and [`client::Client`] calls partners
//!   (initiator); both drive the sans-IO `oftp_proto::session::Session` in one task per
//!   connection (`connection` module).
//! - [`Handler`] is the application's say: one async method per event of the OFTPServer class
//!   the runtime is modelled on, returning the decision where one is needed, with defaults
//!   that need no code (partner table, inboxes, duplicate detection, EERP when durable).
//! - [`store`] writes received files durably (temporary file in the target directory, fsync,
//!   no-clobber rename, directory fsync); [`journal`] records received and sent files for
//!   duplicate detection, restart and end-to-end responses (the [`journal::Journal`] trait, held
//!   as `Arc<dyn Journal>`; [`journal::SqliteJournal`] is the embedded default, and every
//!   backend passes [`journal::conformance`]); [`partials`] removes partial
//!   receptions nobody resumed. How F/V records lie in local files is each partner's
//!   [`config::RecordMapping`].
//! - [`outbound::OutboundQueue`] is the seam through which a server offers a calling partner
//!   the files of an outbound queue (the gateway's) instead of its outbox directory.
//! - [`transport`] holds the seams for the transport ([`transport::Acceptor`],
//!   [`transport::Connector`]) and OFTP 2.0 file services ([`transport::FileServices`]);
//!   [`tls`] is the TLS transport (port 6619, rustls) and [`security`] the OFTP 2.0 security
//!   settings ([`security::SecurityContext`]: certificates per purpose, partner policies, file
//!   services, secure authentication, signed receipts, certificate exchange), plugged in with
//!   `Server::acceptor` / `Client::connector` and `Server::security` / `Client::security`.
//!
//! - [`identity::OdetteId`] is an OFTP identification code (SSID code, SFID originator and
//!   destination) as compared: trailing spaces off, upper case, checked once where it is
//!   configured; [`stamp::FileStamp`] is the codec's virtual file stamp with the runtime's
//!   operations ([`stamp::FileStampExt`]).
//!
//! Not here: the wire protocol (oftp-proto), CMS itself (oftp-security), configuration files
//! (the `oftp` command reads TOML into the [`config`] types).
#![warn(missing_docs)]

pub mod client;
pub mod config;
mod connection;
pub mod handle;
pub mod handler;
pub mod identity;
pub mod journal;
mod listener;
pub mod outbound;
pub mod partials;
mod policy;
pub mod security;
pub mod server;
mod source;
pub mod space;
pub mod stamp;
pub mod store;
mod stream;
pub mod tls;
pub mod transport;

pub use client::{
    Client, ClientConfig, ClientError, ClientReport, EarlierEndResponse, FileOutcome,
};
pub use connection::DEFAULT_CHECKPOINT_INTERVAL;
pub use handle::{OutgoingFile, SessionHandle};
pub use handler::Handler;
pub use listener::{ConnectionId, ConnectionInfo, ServerError, ShutdownSignal};
pub use oftp_proto;
pub use server::{RunningServer, Server, ServerConfig};
