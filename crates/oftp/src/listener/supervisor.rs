//! The supervisor task: owns the listening socket and a `JoinSet` of connection tasks, admits
//! each accepted connection against the limits (see the parent module), and carries out the
//! control requests of a [`ServerHandle`] (stop/start listening, graceful then forced
//! shutdown).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::limits::AddressLimits;
use super::{
    Admission, ConnectionIds, ConnectionInfo, MAX_REFUSING, ServerError, Service, ShutdownSignal,
};
use crate::config::ServerSettings;

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

/// Binds and starts the supervisor for `service`; connection ids come from `ids`.
pub(crate) async fn spawn<S: Service>(
    settings: ServerSettings,
    service: Arc<S>,
    ids: ConnectionIds,
) -> Result<ServerHandle, ServerError> {
    for (name, value) in [
        ("max_connections", settings.max_connections),
        (
            "max_unauthenticated_per_address",
            settings.max_unauthenticated_per_address,
        ),
        (
            "max_sessions_per_address",
            settings.max_sessions_per_address,
        ),
    ] {
        if value == 0 {
            return Err(ServerError::Config(format!("{name} must be at least 1")));
        }
    }
    if settings.login_timeout.is_zero() {
        return Err(ServerError::Config(
            "the login timeout must be more than 0 s".into(),
        ));
    }
    let listener = bind(settings.listen, settings.backlog).await?;
    let local_addr = Arc::new(Mutex::new(listener.local_addr().ok()));
    let active = Arc::new(AtomicU64::new(0));
    let (ctl, rx) = mpsc::channel(8);
    let grace = settings.shutdown_grace;
    let sup = Supervisor {
        addresses: AddressLimits::new(
            settings.max_unauthenticated_per_address,
            settings.max_sessions_per_address,
        ),
        refusing: Arc::new(AtomicU64::new(0)),
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
    /// Connections over a limit being told so (not in `active`).
    refusing: Arc<AtomicU64>,
    addresses: Arc<AddressLimits>,
    tasks: JoinSet<()>,
    shutdown: ShutdownSignal,
    ids: ConnectionIds,
}

/// Counts a running connection task; decrements even if the service panics and the task
/// unwinds.
struct Running(Arc<AtomicU64>);

impl Running {
    fn new(counter: &Arc<AtomicU64>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
        let limit = self.settings.max_connections as u64;
        let admitted = if self.active.load(Ordering::SeqCst) >= limit {
            Err("the server has reached its connection limit")
        } else {
            self.addresses.admit(peer.ip())
        };
        let (admission, counter) = match admitted {
            Ok(slot) => (Admission::Counted(slot), &self.active),
            Err(why) if self.refusing.load(Ordering::SeqCst) < MAX_REFUSING => {
                tracing::warn!(%peer, "refusing a connection: {why} (ESID 08 at its SSID)");
                (Admission::Refused(why), &self.refusing)
            }
            Err(why) => {
                tracing::warn!(%peer, "refusing a connection: {why}; closed at once, {MAX_REFUSING} others are being told already");
                return;
            }
        };
        let running = Running::new(counter);
        let local = stream.local_addr().unwrap_or(self.settings.listen);
        let info = ConnectionInfo {
            id: self.ids.next(),
            peer,
            local,
        };
        let _ = stream.set_nodelay(true);
        let service = self.service.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let _running = running;
            if !service.permit(info).await {
                tracing::info!(peer = %info.peer, "connection refused by address policy");
                return;
            }
            service.serve(stream, info, shutdown, admission).await;
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

        async fn serve(
            &self,
            mut stream: TcpStream,
            _info: ConnectionInfo,
            sd: ShutdownSignal,
            admission: Admission,
        ) {
            if let Admission::Refused(_) = admission {
                let _ = stream.write_all(b"full!").await;
                return;
            }
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

    /// Connects from `from` (any 127.x.y.z is local on Linux) and reads the first 5 octets.
    async fn first_words(addr: SocketAddr, from: &str) -> (TcpStream, Vec<u8>) {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(from.parse().unwrap(), 0))
            .unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        let mut buf = vec![0u8; 5];
        let n = s.read(&mut buf).await.unwrap_or(0);
        buf.truncate(n);
        (s, buf)
    }

    #[tokio::test]
    async fn connection_limit_refusal_is_served_to_tell_the_client() {
        let (svc, _rx) = echo(AddressPolicy::default(), true);
        let s = ServerSettings {
            max_connections: 1,
            ..settings()
        };
        let server = spawn(s, svc, ConnectionIds::new()).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (_first, ready) = first_words(addr, "127.0.0.1").await;
        assert_eq!(ready, b"ready");
        assert_eq!(server.connection_count(), 1);
        let (_second, told) = first_words(addr, "127.0.0.1").await;
        assert_eq!(told, b"full!", "the second client is told, not dropped");
        assert_eq!(server.connection_count(), 1, "a refusal takes no slot");
        server.shutdown().await;
    }

    #[tokio::test]
    async fn silent_connections_of_one_address_leave_room_for_others() {
        let (svc, _rx) = echo(AddressPolicy::default(), true);
        let s = ServerSettings {
            max_connections: 8,
            max_unauthenticated_per_address: 3,
            ..settings()
        };
        let server = spawn(s, svc, ConnectionIds::new()).await.unwrap();
        let addr = server.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            let (c, words) = first_words(addr, "127.0.0.1").await;
            assert_eq!(words, b"ready");
            held.push(c);
        }
        for _ in 0..10 {
            let (c, words) = first_words(addr, "127.0.0.1").await;
            assert_eq!(words, b"full!");
            held.push(c);
        }
        let (_other, words) = first_words(addr, "127.0.0.2").await;
        assert_eq!(words, b"ready", "another address still gets in");
        assert_eq!(server.connection_count(), 4);
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
