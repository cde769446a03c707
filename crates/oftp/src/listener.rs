//! TCP listener and connection supervisor: the part of the server that knows nothing of OFTP.
//!
//! One supervisor task owns the listening socket and a `JoinSet` of connection tasks. It applies
//! the connection limit at accept time, lets the service decide on each address (allowed/blocked
//! lists and the handler's `ConnectionRequest`), and carries out the control requests of a
//! [`ServerHandle`]: stop/start listening and graceful shutdown (first a *graceful* signal that
//! lets transfers in progress finish, then after the grace period a *forced* one that ends
//! sessions at once, then an abort of whatever is left).
//!
//! It does not speak OFTP: the [`Service`] does (see `server.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ServerSettings;

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

/// What the supervisor runs per connection.
pub(crate) trait Service: Send + Sync + 'static {
    /// Whether to keep a connection from `info.peer` (called before any byte is exchanged).
    fn permit(&self, info: ConnectionInfo) -> impl Future<Output = bool> + Send;
    /// Runs one connection to its end.
    fn serve(
        &self,
        stream: TcpStream,
        info: ConnectionInfo,
        shutdown: ShutdownSignal,
    ) -> impl Future<Output = ()> + Send;
}

enum Control {
    Stop(oneshot::Sender<()>),
    Start(oneshot::Sender<Result<SocketAddr, ServerError>>),
    Shutdown(Duration, oneshot::Sender<()>),
}

/// Controls a running server: listening on/off, shutdown, addresses.
///
/// Dropping the handle shuts the server down too (the supervisor sees its control channel close
/// and drains the connections as [`shutdown`](Self::shutdown) does).
#[derive(Debug)]
pub(crate) struct ServerHandle {
    ctl: mpsc::Sender<Control>,
    local_addr: Arc<Mutex<Option<SocketAddr>>>,
    active: Arc<AtomicU64>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when port 0 was configured), or
    /// `None` while not listening.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        *self
            .local_addr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of connections being served.
    pub(crate) fn connection_count(&self) -> u64 {
        self.active.load(Ordering::SeqCst)
    }

    /// Stops accepting new connections; sessions in progress go on (seed `StopListening`).
    pub(crate) async fn stop_listening(&self) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        self.ctl
            .send(Control::Stop(tx))
            .await
            .map_err(|_| ServerError::Stopped)?;
        rx.await.map_err(|_| ServerError::Stopped)
    }

    /// Listens again on the configured address (seed `StartListening`); a no-op when listening.
    pub(crate) async fn start_listening(&self) -> Result<SocketAddr, ServerError> {
        let (tx, rx) = oneshot::channel();
        self.ctl
            .send(Control::Start(tx))
            .await
            .map_err(|_| ServerError::Stopped)?;
        rx.await.map_err(|_| ServerError::Stopped)?
    }

    /// Stops listening, lets transfers in progress finish for up to the configured grace
    /// period, ends the remaining sessions (ESID), and waits for every connection task
    /// (seed `Shutdown`).
    pub(crate) async fn shutdown(mut self) {
        let grace = self.grace;
        self.shutdown_within(grace).await;
    }

    /// [`shutdown`](Self::shutdown) with an explicit grace period.
    pub(crate) async fn shutdown_within(&mut self, grace: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(Control::Shutdown(grace, tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(task) = self.supervisor.take() {
            let _ = task.await;
        }
    }
}

async fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener, ServerError> {
    let wrap = |error| ServerError::Bind { addr, error };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(wrap)?;
    // Lets a restarted daemon bind while old connections are in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(wrap)?;
    socket.bind(addr).map_err(wrap)?;
    socket.listen(backlog.max(1)).map_err(wrap)
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

/// Binds and starts the supervisor for `service`; connection ids come from `ids`.
pub(crate) async fn spawn<S: Service>(
    settings: ServerSettings,
    service: Arc<S>,
    ids: ConnectionIds,
) -> Result<ServerHandle, ServerError> {
    if settings.max_connections == 0 {
        return Err(ServerError::Config(
            "max_connections must be at least 1".into(),
        ));
    }
    let listener = bind(settings.listen, settings.backlog).await?;
    let local_addr = Arc::new(Mutex::new(listener.local_addr().ok()));
    let active = Arc::new(AtomicU64::new(0));
    let (ctl, rx) = mpsc::channel(8);
    let grace = settings.shutdown_grace;
    let sup = Supervisor {
        settings,
        service,
        listener: Some(listener),
        local_addr: local_addr.clone(),
        active: active.clone(),
        tasks: JoinSet::new(),
        shutdown: ShutdownSignal::new(),
        ids,
    };
    let supervisor = tokio::spawn(sup.run(rx));
    Ok(ServerHandle {
        ctl,
        local_addr,
        active,
        supervisor: Some(supervisor),
        grace,
    })
}

struct Supervisor<S> {
    settings: ServerSettings,
    service: Arc<S>,
    listener: Option<TcpListener>,
    local_addr: Arc<Mutex<Option<SocketAddr>>>,
    active: Arc<AtomicU64>,
    tasks: JoinSet<()>,
    shutdown: ShutdownSignal,
    ids: ConnectionIds,
}

async fn accept(listener: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl<S: Service> Supervisor<S> {
    fn set_addr(&self, addr: Option<SocketAddr>) {
        *self
            .local_addr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = addr;
    }

    async fn run(mut self, mut ctl: mpsc::Receiver<Control>) {
        let mut done: Option<oneshot::Sender<()>> = None;
        let mut grace = self.settings.shutdown_grace;
        loop {
            tokio::select! {
                cmd = ctl.recv() => match cmd {
                    Some(Control::Stop(reply)) => {
                        self.listener = None;
                        self.set_addr(None);
                        tracing::info!("stopped listening");
                        let _ = reply.send(());
                    }
                    Some(Control::Start(reply)) => {
                        let result = match &self.listener {
                            Some(l) => l.local_addr().map_err(|source| ServerError::Bind {
                                addr: self.settings.listen,
                                error: source,
                            }),
                            None => match bind(self.settings.listen, self.settings.backlog).await {
                                Ok(l) => {
                                    let addr = l.local_addr().map_err(|source| ServerError::Bind {
                                        addr: self.settings.listen,
                                        error: source,
                                    });
                                    self.listener = Some(l);
                                    addr
                                }
                                Err(e) => Err(e),
                            },
                        };
                        if let Ok(addr) = &result {
                            self.set_addr(Some(*addr));
                            tracing::info!(%addr, "listening");
                        }
                        let _ = reply.send(result);
                    }
                    Some(Control::Shutdown(g, reply)) => {
                        grace = g;
                        done = Some(reply);
                        break;
                    }
                    // Every handle is gone: nobody can stop us any more, so stop now.
                    None => break,
                },
                accepted = accept(&self.listener) => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer),
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
        }
        self.listener = None;
        self.set_addr(None);
        self.drain(grace).await;
        if let Some(reply) = done {
            let _ = reply.send(());
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.tasks.len() >= self.settings.max_connections {
            tracing::warn!(%peer, limit = self.settings.max_connections, "connection limit reached; refusing");
            drop(stream);
            return;
        }
        let local = stream.local_addr().unwrap_or(self.settings.listen);
        let info = ConnectionInfo {
            id: self.ids.next(),
            peer,
            local,
        };
        let _ = stream.set_nodelay(true);
        let service = self.service.clone();
        let shutdown = self.shutdown.clone();
        let active = self.active.clone();
        active.fetch_add(1, Ordering::SeqCst);
        self.tasks.spawn(async move {
            // Decrements even if the service panics and the task unwinds.
            struct Active(Arc<AtomicU64>);
            impl Drop for Active {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _active = Active(active);
            if !service.permit(info).await {
                tracing::info!(peer = %info.peer, "connection refused by address policy");
                return;
            }
            service.serve(stream, info, shutdown).await;
        });
    }

    async fn drain(&mut self, grace: Duration) {
        self.shutdown.graceful.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if self.tasks.is_empty() {
            return;
        }
        tracing::info!(
            remaining = self.tasks.len(),
            "grace period over; ending sessions"
        );
        self.shutdown.forced.cancel();
        // Forced sessions write one ESID and close; a peer that does not read must not hold the
        // server, so this wait is bounded too.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.tasks.is_empty() {
            if tokio::time::timeout_at(deadline, self.tasks.join_next())
                .await
                .is_err()
            {
                self.tasks.abort_all();
                while self.tasks.join_next().await.is_some() {}
            }
        }
    }
}

/// Registry of live sessions by connection id, shared by the server and its handle.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AddressPolicy;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Echoes one line, or with `hold` waits for shutdown signals and reports which came.
    struct Echo {
        policy: AddressPolicy,
        hold: bool,
        seen: mpsc::UnboundedSender<&'static str>,
    }

    impl Service for Echo {
        async fn permit(&self, info: ConnectionInfo) -> bool {
            self.policy.permits(info.peer.ip())
        }

        async fn serve(&self, mut stream: TcpStream, _info: ConnectionInfo, sd: ShutdownSignal) {
            if self.hold {
                let _ = stream.write_all(b"ready").await;
                sd.graceful.cancelled().await;
                let _ = self.seen.send("graceful");
                sd.forced.cancelled().await;
                let _ = self.seen.send("forced");
                return;
            }
            let mut buf = [0u8; 5];
            if stream.read_exact(&mut buf).await.is_ok() {
                let _ = stream.write_all(&buf).await;
            }
        }
    }

    fn settings() -> ServerSettings {
        ServerSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            shutdown_grace: Duration::from_millis(100),
            ..ServerSettings::default()
        }
    }

    fn echo(
        policy: AddressPolicy,
        hold: bool,
    ) -> (Arc<Echo>, mpsc::UnboundedReceiver<&'static str>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Echo {
                policy,
                hold,
                seen: tx,
            }),
            rx,
        )
    }

    async fn roundtrip(addr: SocketAddr) -> io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"hello").await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn serves_and_stops_and_restarts_listening() {
        let (svc, _rx) = echo(AddressPolicy::default(), false);
        let server = spawn(settings(), svc, ConnectionIds::new()).await.unwrap();
        let addr = server.local_addr().unwrap();
        assert_eq!(roundtrip(addr).await.unwrap(), b"hello");

        server.stop_listening().await.unwrap();
        assert!(server.local_addr().is_none());
        assert!(TcpStream::connect(addr).await.is_err(), "nobody listens");

        // Port 0 in the settings: the new port may differ, so ask the handle.
        let again = server.start_listening().await.unwrap();
        assert_eq!(server.local_addr(), Some(again));
        assert_eq!(roundtrip(again).await.unwrap(), b"hello");
        server.shutdown().await;
    }

    #[tokio::test]
    async fn blocked_clients_are_dropped_before_any_exchange() {
        let policy = AddressPolicy {
            allowed: vec![],
            blocked: vec!["127.0.0.1".parse().unwrap()],
        };
        let (svc, _rx) = echo(policy, false);
        let server = spawn(settings(), svc, ConnectionIds::new()).await.unwrap();
        let out = roundtrip(server.local_addr().unwrap())
            .await
            .unwrap_or_default();
        assert!(out.is_empty());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn connection_limit_refuses_extra_clients() {
        let (svc, _rx) = echo(AddressPolicy::default(), true);
        let s = ServerSettings {
            max_connections: 1,
            ..settings()
        };
        let server = spawn(s, svc, ConnectionIds::new()).await.unwrap();
        let addr = server.local_addr().unwrap();
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut ready = [0u8; 5];
        first.read_exact(&mut ready).await.unwrap();
        assert_eq!(server.connection_count(), 1);
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 5];
        let n = second.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "second connection is closed without data");
        server.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_signals_graceful_then_forced() {
        let (svc, mut seen) = echo(AddressPolicy::default(), true);
        let server = spawn(settings(), svc, ConnectionIds::new()).await.unwrap();
        let mut c = TcpStream::connect(server.local_addr().unwrap())
            .await
            .unwrap();
        let mut ready = [0u8; 5];
        c.read_exact(&mut ready).await.unwrap();
        server.shutdown().await;
        assert_eq!(seen.recv().await, Some("graceful"));
        assert_eq!(seen.recv().await, Some("forced"));
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let (svc, _rx) = echo(AddressPolicy::default(), false);
        let first = spawn(settings(), svc.clone(), ConnectionIds::new())
            .await
            .unwrap();
        let taken = first.local_addr().unwrap();
        let s = ServerSettings {
            listen: taken,
            ..settings()
        };
        // SO_REUSEADDR does not allow two listeners on one port.
        let err = spawn(s, svc, ConnectionIds::new()).await.unwrap_err();
        assert!(err.to_string().contains(&taken.to_string()), "{err}");
        first.shutdown().await;
    }
}
