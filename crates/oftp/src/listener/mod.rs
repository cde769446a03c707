//! TCP listener and connection supervisor: the part of the server that knows nothing of OFTP.
//!
//! One supervisor task owns the listening socket and a `JoinSet` of connection tasks. It applies
//! the connection limits at accept time (see [`Admission`]), lets the service decide on each
//! address (allowed/blocked lists and the handler's `ConnectionRequest`), and carries out the
//! control requests of a [`ServerHandle`]: stop/start listening and graceful shutdown (first a
//! *graceful* signal that lets transfers in progress finish, then after the grace period a
//! *forced* one that ends sessions at once, then an abort of whatever is left).
//!
//! It does not speak OFTP: the [`Service`] does (see `server.rs`).
//!
//! Limits against connection exhaustion: `max_connections` in all; per address, at most
//! `max_unauthenticated_per_address` connections that have not logged in yet (each has
//! `login_timeout` to do so, enforced by the connection) and `max_sessions_per_address`
//! sessions. A silent client thus holds at most a few slots for a few seconds, and the
//! partners at other addresses still get in. A connection over a limit is not dropped
//! silently: it is served as [`Admission::Refused`], which the service answers with ESID 08
//! ("resources not available", retry later) at its SSID; at most [`MAX_REFUSING`] at once,
//! beyond that it is closed at once.
//!
//! Modules: `supervisor` (the listening socket, accepting, control requests of a
//! [`ServerHandle`], graceful shutdown) and `limits` (the per-address counts behind
//! [`Admission`]); the types here are what the rest of the runtime sees of a listener.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

mod limits;
mod supervisor;

use limits::AddressSlot;
pub(crate) use supervisor::{ServerHandle, spawn};

/// Identifies one connection for the lifetime of a server.
pub type ConnectionId = u64;

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Unique id within this server.
    pub id: ConnectionId,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address on this connection.
    pub local: SocketAddr,
}

/// The two stages of a server shutdown, as seen by a connection.
#[derive(Debug, Clone, Default)]
pub struct ShutdownSignal {
    /// Finish the file in progress, then end the session.
    pub graceful: CancellationToken,
    /// End the session now.
    pub forced: CancellationToken,
}

impl ShutdownSignal {
    /// A fresh pair of tokens.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Errors of the listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error (part of this message, so not repeated as a `source`).
        error: io::Error,
    },
    /// The server task is gone (it was shut down).
    #[error("the server has been shut down")]
    Stopped,
    /// The configuration is unusable.
    #[error("invalid server configuration: {0}")]
    Config(String),
}

/// Most connections over a limit that are being told so (ESID 08) at once; further ones are
/// closed without a word, so refusing cannot itself exhaust the server.
pub(crate) const MAX_REFUSING: u64 = 64;

/// What the supervisor runs per connection.
pub(crate) trait Service: Send + Sync + 'static {
    /// Whether to keep a connection from `info.peer` (called before any byte is exchanged).
    fn permit(&self, info: ConnectionInfo) -> impl Future<Output = bool> + Send;
    /// Runs one connection to its end; a [`Admission::Refused`] one only to tell the client.
    fn serve(
        &self,
        stream: TcpStream,
        info: ConnectionInfo,
        shutdown: ShutdownSignal,
        admission: Admission,
    ) -> impl Future<Output = ()> + Send;
}

/// How the supervisor let a connection in.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Within the limits: counted against its address until dropped.
    Counted(AddressSlot),
    /// Over a limit (the text says which): the client is to be told ESID 08, nothing more.
    Refused(&'static str),
}

impl Admission {
    /// The client logged in (its SSID was accepted): from now on it counts as a session of
    /// its address. `Err` with the text for ESID 08 when it was refused at accept or its
    /// address already has its most sessions.
    pub(crate) fn log_in(&mut self) -> Result<(), &'static str> {
        match self {
            Admission::Counted(slot) => slot.log_in(),
            Admission::Refused(why) => Err(why),
        }
    }
}

/// The source of connection ids, shared by every listener of one server so that an id names
/// one connection whichever listener accepted it.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionIds(Arc<AtomicU64>);

impl ConnectionIds {
    pub(crate) fn new() -> Self {
        Self(Arc::new(AtomicU64::new(1)))
    }

    fn next(&self) -> ConnectionId {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub(crate) struct Registry<T> {
    inner: Mutex<HashMap<ConnectionId, T>>,
}

impl<T: Clone> Registry<T> {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn insert(&self, id: ConnectionId, value: T) {
        self.lock().insert(id, value);
    }

    pub(crate) fn remove(&self, id: ConnectionId) {
        self.lock().remove(&id);
    }

    pub(crate) fn get(&self, id: ConnectionId) -> Option<T> {
        self.lock().get(&id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<T> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
