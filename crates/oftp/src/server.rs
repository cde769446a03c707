//! [`Server`]: accepts OFTP sessions (responder side) and runs each in its own task.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use oftp::config::{LocalIdentity, Password, PartnerTable, ServerSettings};
//! use oftp::server::{Server, ServerConfig};
//!
//! let local = LocalIdentity { ssid: "O0013ME".into(), sfid: String::new(), password: Password::new("PW") };
//! let config = ServerConfig::new(local, PartnerTable::default(), "./oftp-data".into());
//! let server = Server::new(config)?.start().await?;   // () handler: all defaults
//! println!("listening on {:?}", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::config::{LocalIdentity, PartnerTable, ServerSettings, SessionLimits};
use crate::connection::{Connection, ConnectionParts, DEFAULT_CHECKPOINT_INTERVAL, Shared, permit};
use crate::handle::SessionHandle;
use crate::handler::Handler;
use crate::journal::{Journal, JournalError, SqliteJournal};
use crate::listener::{self, Admission, ConnectionId, ConnectionInfo, ServerError, ShutdownSignal};
use crate::space::{FreeSpace, StatVfs};
use crate::store::{NameFormat, StorePolicy};
use crate::transport::{Acceptor, FileServices, NoFileServices, PlainTcp};

/// Everything a server needs to know.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our identity.
    pub local: LocalIdentity,
    /// Who may log in.
    pub partners: PartnerTable,
    /// Listener settings, limits and timeouts.
    pub settings: ServerSettings,
    /// Session parameters we offer.
    pub limits: SessionLimits,
    /// Data directory: journal, default inboxes and outboxes.
    pub data_dir: PathBuf,
    /// Received file name format (seed `ReceivedFileNameFormat`).
    pub name_format: NameFormat,
    /// Overwrite and DeleteOnError.
    pub store: StorePolicy,
    /// Bytes between receive checkpoints (fsync + journal) for restart.
    pub checkpoint_interval: u64,
    /// Tells the free space where received files go (default: the operating system's
    /// figure); an offer that would leave less than `settings.free_space_reserve` is refused.
    pub free_space: Arc<dyn FreeSpace>,
}

impl ServerConfig {
    /// A configuration with defaults for everything but identity, partners and data directory.
    pub fn new(local: LocalIdentity, partners: PartnerTable, data_dir: PathBuf) -> Self {
        Self {
            local,
            partners,
            settings: ServerSettings::default(),
            limits: SessionLimits::default(),
            data_dir,
            name_format: NameFormat::default(),
            store: StorePolicy::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            free_space: Arc::new(StatVfs),
        }
    }
}

/// Problems starting a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The listener could not start.
    #[error(transparent)]
    Listen(#[from] ServerError),
}

/// An OFTP server: configuration, handler, transport acceptor and file services.
///
/// One server may listen on several addresses with different transports (plain TCP and TLS):
/// [`another_listener`](Self::another_listener) makes a second listener that shares
/// everything per-server with the first.
pub struct Server<H: Handler = (), A: Acceptor = PlainTcp, F: FileServices = NoFileServices> {
    shared: Arc<Shared>,
    settings: ServerSettings,
    handler: Arc<H>,
    acceptor: Arc<A>,
    services: Arc<F>,
    sessions: Arc<listener::Registry<SessionHandle>>,
    ids: listener::ConnectionIds,
}

impl Server {
    /// A server with the default handler; opens the journal in the data directory.
    pub fn new(config: ServerConfig) -> Result<Self, StartError> {
        config.local.validate()?;
        config.limits.validate()?;
        let journal = SqliteJournal::open_in_dir(&config.data_dir)?;
        Self::with_journal(config, journal)
    }

    /// A server using an already opened journal (any backend: a [`SqliteJournal`] or an
    /// `Arc<dyn Journal>`). Refuses a local identity or limits OFTP does not allow, as
    /// [`new`](Self::new) does.
    pub fn with_journal(
        config: ServerConfig,
        journal: impl Into<Arc<dyn Journal>>,
    ) -> Result<Self, StartError> {
        let codes = config.local.codes()?;
        config.limits.validate()?;
        let journal = journal.into();
        let shared = Shared {
            codes,
            local: config.local,
            partners: Shared::partner_table(config.partners),
            limits: config.limits,
            data_dir: config.data_dir,
            name_format: config.name_format,
            store: config.store,
            journal,
            inactivity_timeout: config.settings.inactivity_timeout,
            idle_timeout: config.settings.idle_timeout,
            checkpoint_interval: config.checkpoint_interval.max(1),
            active: Default::default(),
            security: Default::default(),
            outbound: Default::default(),
            sweeping: Default::default(),
            free_space: config.free_space,
            free_space_reserve: config.settings.free_space_reserve,
        };
        Ok(Self {
            shared: Arc::new(shared),
            settings: config.settings,
            handler: Arc::new(()),
            acceptor: Arc::new(PlainTcp),
            services: Arc::new(NoFileServices),
            sessions: Arc::new(listener::Registry::new()),
            ids: listener::ConnectionIds::new(),
        })
    }
}

impl<H: Handler, A: Acceptor, F: FileServices> Server<H, A, F> {
    /// Uses `handler` for decisions and events.
    pub fn handler<H2: Handler>(self, handler: H2) -> Server<H2, A, F> {
        Server {
            shared: self.shared,
            settings: self.settings,
            handler: Arc::new(handler),
            acceptor: self.acceptor,
            services: self.services,
            sessions: self.sessions,
            ids: self.ids,
        }
    }

    /// Uses `acceptor` to turn accepted TCP streams into transports (TLS seam).
    pub fn acceptor<A2: Acceptor>(self, acceptor: A2) -> Server<H, A2, F> {
        Server {
            shared: self.shared,
            settings: self.settings,
            handler: self.handler,
            acceptor: Arc::new(acceptor),
            services: self.services,
            sessions: self.sessions,
            ids: self.ids,
        }
    }

    /// Uses `services` for file services (OFTP 2.0 security seam).
    pub fn file_services<F2: FileServices>(self, services: F2) -> Server<H, A, F2> {
        Server {
            shared: self.shared,
            settings: self.settings,
            handler: self.handler,
            acceptor: self.acceptor,
            services: Arc::new(services),
            sessions: self.sessions,
            ids: self.ids,
        }
    }

    /// The journal this server records into.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.shared.journal
    }

    /// A second listener of this server on `listen` with its own transport (e.g. TLS beside
    /// plain TCP). It shares everything per-server: the journal, the guard that keeps one
    /// partner's file from being received in two sessions at once, partners, security, the
    /// handler, file services, connection ids and the live-session registry (each
    /// [`RunningServer`] sees the sessions of both). Limits of [`ServerSettings`] other than
    /// the address (connection limit, timeouts, address lists) are this server's, applied per
    /// listener. Set [`security`](Self::security) before calling this so both use it.
    pub fn another_listener<A2: Acceptor>(
        &self,
        listen: std::net::SocketAddr,
        acceptor: A2,
    ) -> Server<H, A2, F> {
        Server {
            shared: self.shared.clone(),
            settings: ServerSettings {
                listen,
                ..self.settings.clone()
            },
            handler: self.handler.clone(),
            acceptor: Arc::new(acceptor),
            services: self.services.clone(),
            sessions: self.sessions.clone(),
            ids: self.ids.clone(),
        }
    }

    /// Uses OFTP 2.0 security: `security` becomes the file services (sign/compress/encrypt,
    /// verify/decompress/decrypt by partner policy) and provides the keys for secure
    /// authentication, signed receipts and certificate exchange.
    pub fn security(
        self,
        security: Arc<crate::security::SecurityContext>,
    ) -> Server<H, A, Arc<crate::security::SecurityContext>> {
        self.shared.use_security(&security);
        self.file_services(security)
    }

    /// Offers a calling partner the files `queue` has due for it (claimed at our first turn
    /// of a session in which we may send, each outcome settled there: see
    /// [`crate::outbound`]) instead of the files in its outbox directory. Shared with every
    /// listener of this server ([`another_listener`](Self::another_listener)); only the first
    /// call counts.
    pub fn outbound_queue(self, queue: Arc<dyn crate::outbound::OutboundQueue>) -> Self {
        let _ = self.shared.outbound.set(queue);
        self
    }

    /// Binds the listening socket and starts serving (seed `StartListening`). Also starts the
    /// removal of partial receptions nobody resumed (`StorePolicy::partial_retention`; see
    /// [`crate::partials`]): now, then periodically while the server runs.
    pub async fn start(self) -> Result<RunningServer, ServerError> {
        let sessions = self.sessions;
        let service = Arc::new(Service {
            shared: self.shared.clone(),
            handler: self.handler,
            acceptor: self.acceptor,
            services: self.services,
            addresses: self.settings.addresses.clone(),
            login_timeout: self.settings.login_timeout,
            sessions: sessions.clone(),
        });
        let handle = listener::spawn(self.settings, service, self.ids).await?;
        Ok(RunningServer {
            handle,
            shared: self.shared.clone(),
            sessions,
            _sweeper: crate::partials::Sweeper::start(self.shared.clone()),
        })
    }
}

/// A running server: the listener controls plus access to live sessions.
#[derive(Debug)]
pub struct RunningServer {
    handle: crate::listener::ServerHandle,
    shared: Arc<Shared>,
    sessions: Arc<listener::Registry<SessionHandle>>,
    /// The partial-reception sweep, stopped with the server.
    _sweeper: Option<crate::partials::Sweeper>,
}

impl RunningServer {
    /// The listening address (with the real port), `None` while not listening.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.handle.local_addr()
    }

    /// Number of connections being served.
    pub fn connection_count(&self) -> u64 {
        self.handle.connection_count()
    }

    /// The handle of a live session (seed `Connections[ConnectionId]`).
    pub fn session(&self, id: ConnectionId) -> Option<SessionHandle> {
        self.sessions.get(id)
    }

    /// Handles of all live sessions.
    pub fn sessions(&self) -> Vec<SessionHandle> {
        self.sessions.all()
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.shared.journal
    }

    /// Replaces who may log in (a configuration reload): sessions that log in from now on
    /// are decided by `partners`; sessions in progress keep the partner they logged in as
    /// and are not ended. Shared by every listener of this server. The partial-reception
    /// sweep takes the new partners' inboxes at its next pass. Not changed: the security
    /// settings given to [`Server::security`] (partner certificates, and the record mappings
    /// of signed, compressed or encrypted F/V files).
    pub fn set_partners(&self, partners: PartnerTable) {
        self.shared.set_partners(partners);
    }

    /// Stops accepting connections (seed `StopListening`).
    pub async fn stop_listening(&self) -> Result<(), ServerError> {
        self.handle.stop_listening().await
    }

    /// Listens again (seed `StartListening`).
    pub async fn start_listening(&self) -> Result<std::net::SocketAddr, ServerError> {
        self.handle.start_listening().await
    }

    /// Graceful shutdown (seed `Shutdown`): stop listening, let transfers in progress finish
    /// within the grace period, end the rest with ESID 05, wait for all connection tasks.
    pub async fn shutdown(self) {
        self.handle.shutdown().await
    }

    /// [`shutdown`](Self::shutdown) with an explicit grace period.
    pub async fn shutdown_within(mut self, grace: std::time::Duration) {
        self.handle.shutdown_within(grace).await
    }
}

struct Service<H, A, F> {
    shared: Arc<Shared>,
    handler: Arc<H>,
    acceptor: Arc<A>,
    services: Arc<F>,
    addresses: crate::config::AddressPolicy,
    login_timeout: std::time::Duration,
    sessions: Arc<listener::Registry<SessionHandle>>,
}

impl<H: Handler, A: Acceptor, F: FileServices> listener::Service for Service<H, A, F> {
    async fn permit(&self, info: ConnectionInfo) -> bool {
        permit(&*self.handler, info, self.addresses.permits(info.peer.ip())).await
    }

    async fn serve(
        &self,
        stream: TcpStream,
        info: ConnectionInfo,
        shutdown: ShutdownSignal,
        admission: Admission,
    ) {
        // The login timeout runs from the accept: the TLS handshake is part of it.
        let login_deadline = tokio::time::Instant::now() + self.login_timeout;
        let io = match tokio::time::timeout_at(login_deadline, self.acceptor.accept(stream)).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tracing::info!(peer = %info.peer, error = %e, "transport handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(
                    peer = %info.peer,
                    "transport handshake not done within the login timeout ({:?})",
                    self.login_timeout
                );
                return;
            }
        };
        let bound = self.acceptor.bound_peer_certificate(&io);
        let (handle, requests) = SessionHandle::new(info.id);
        self.sessions.insert(info.id, handle.clone());
        let conn = Connection::responder(ConnectionParts {
            io,
            conn: info,
            handler: self.handler.clone(),
            services: self.services.clone(),
            shared: self.shared.clone(),
            shutdown,
            handle,
            requests,
        })
        .require_v2(self.acceptor.requires_v2())
        .bind_peer_certificate(bound)
        .admitted(admission, login_deadline, self.login_timeout);
        let report = conn.run().await;
        self.sessions.remove(info.id);
        tracing::debug!(conn = info.id, ended = %report.ended.description, "connection finished");
    }
}
