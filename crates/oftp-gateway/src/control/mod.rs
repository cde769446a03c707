//! The local control channel of `oftp serve` (issue #11 §6): the operator commands (`oftp
//! status`, `oftp transfers`, `oftp transfer retry`, ...) reach the running daemon through a
//! Unix socket, by default `<data_dir>/oftp.sock` (mode 0600: only the daemon's user and
//! root), never by writing the database behind its back.
//!
//! - [`operations`]: the operations over the journal and the [`GatewayRuntime`](crate::GatewayRuntime),
//!   with their serde view types, in ONE place for the control channel and the HTTP API;
//! - [`history`]: the views of the operator's history (a page of transfers of both
//!   directions, transfer ids, session trails, partner counters);
//! - [`protocol`]: the wire format, line-delimited JSON, versioned;
//! - [`server`]: the daemon's side ([`ControlSocket::bind`] refuses a second daemon on the same
//!   data directory and replaces a stale socket; [`ControlServer::shutdown`] removes it);
//! - [`client`]: the commands' side.
//!
//! `[gateway.control]` of oftp.toml:
//!
//! ```toml
//! [gateway.control]
//! socket = "oftp.sock"   # relative to the data directory; an absolute path is taken as is
//! ```
//!
//! No new dependency: `serde_json` (already in the workspace) for the lines, tokio's
//! `UnixListener`, and the standard library's file lock (`File::try_lock`) for the one-daemon
//! guard.

pub mod client;
pub mod history;
pub mod operations;
pub mod protocol;
pub mod server;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use client::ClientError;
pub use history::{CommandView, PartnerCountersView, SessionView, TransferId, TransferPage};
pub use operations::{
    AlertView, DaemonView, Operations, OpsError, QueueDepthView, StatusView, TransferDetailView,
    TransferQuery, TransferView, TransitionView,
};
pub use protocol::{ErrorView, Op, Request, Response};
pub use server::{ControlError, ControlServer, ControlSocket};

/// The socket's file name in the data directory when `[gateway.control] socket` is not set.
pub const DEFAULT_SOCKET: &str = "oftp.sock";

/// `[gateway.control]` of oftp.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSettings {
    /// Where the control socket is; relative to the data directory (default
    /// [`DEFAULT_SOCKET`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
}

impl ControlSettings {
    /// The socket's path for the data directory `data_dir`.
    pub fn socket_path(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(self.socket.as_deref().unwrap_or(Path::new(DEFAULT_SOCKET)))
    }
}

#[cfg(test)]
mod tests;
