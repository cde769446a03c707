//! [`Client`]: calls a partner (initiator side), sends files, receives what the partner has for
//! us when it gets the speaker role, and reports each file's end-to-end outcome.
//!
//! One [`Client::run`] is one session: send every file in order (a file the partner refuses
//! does not stop the others), hand the turn over, store what the partner sends, collect the
//! EERPs/NERPs it sends back, and end the session properly.
//!
//! Running again with the same file (same path, size and modification time) converges on one
//! delivery, whatever moment an earlier run or the partner was stopped at: the journal keeps
//! the identity (virtual date/time) of the newest attempt, and
//! - an attempt still sending is offered again under that identity, so the partner restarts it
//!   from its durable position, or, if it had stored it already, answers SFNA 13 (then the file
//!   awaits its EERP like one confirmed by EFPA);
//! - an attempt the partner stored (EFPA) is not sent again: the session only collects its
//!   EERP, which RFC 5024 section 4.3.6 lets come in any later session;
//! - an attempt confirmed by EERP is reported delivered at once.
//!
//! An EERP/NERP that answers no file of this run (a file of an earlier run, also in a run
//! that sends nothing) settles its journal entry and is listed in
//! [`ClientReport::earlier`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oftp_proto::codec::EsidReason;
use oftp_proto::session::Negotiated;

use crate::config::{LocalIdentity, Partner, PartnerTable, SessionLimits};
use crate::connection::{
    Connection, ConnectionParts, DEFAULT_CHECKPOINT_INTERVAL, InitiatorSetup, Shared,
};
pub use crate::connection::{EarlierEndResponse, FileOutcome};
use crate::handle::{OutgoingFile, SessionHandle};
use crate::handler::{Disconnected, Handler};
use crate::journal::Journal;
use crate::listener::{ConnectionInfo, ShutdownSignal};
use crate::store::{NameFormat, StorePolicy};
use crate::transport::{Connector, FileServices, NoFileServices, PlainTcp, Transport};

/// Default limit for connecting to a partner: long enough for a slow line, far shorter than
/// the two minutes of SYN retries the kernel spends on an address that does not answer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our identity (our SSID, SFID and the password we present unless the partner entry has
    /// `our_password`).
    pub local: LocalIdentity,
    /// The partner: its SSID and password are checked in its answer, its SFID is the
    /// destination of our files.
    pub partner: Partner,
    /// What we offer (level, buffer size, credit, compression, restart, mode).
    pub limits: SessionLimits,
    /// ESID 09 after this long without an answer (seed default 60 s). Also bounds every
    /// write: a partner that stops reading for this long is disconnected.
    pub inactivity_timeout: Duration,
    /// Longest wait for the connection to the partner (TCP connect and, with a TLS
    /// connector, the handshake); default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Where files the partner sends us are stored.
    pub receive_dir: PathBuf,
    /// Name format for received files.
    pub name_format: NameFormat,
    /// Overwrite / DeleteOnError for received files.
    pub store: StorePolicy,
    /// Bytes between receive checkpoints.
    pub checkpoint_interval: u64,
}

impl ClientConfig {
    /// Defaults for everything but identity, partner and receive directory.
    pub fn new(local: LocalIdentity, partner: Partner, receive_dir: PathBuf) -> Self {
        Self {
            local,
            partner,
            limits: SessionLimits::default(),
            inactivity_timeout: Duration::from_secs(60),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            receive_dir,
            name_format: NameFormat::default(),
            store: StorePolicy::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

/// Why a session could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The partner could not be reached.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// Address tried.
        addr: String,
        /// OS error (part of this message, so not repeated as a `source`).
        error: std::io::Error,
    },
    /// The partner's server has no room for another session now (ESID 08, "resources not
    /// available ... should be retried later", RFC 5024 5.3.11).
    #[error("the partner's server is full, try later ({text}, ESID 08)")]
    PartnerFull {
        /// Reason text.
        text: String,
    },
    /// The partner refused the session (ESID at login or in secure authentication, before
    /// any file).
    #[error("partner rejected session: {text} (ESID {:02})", reason.0)]
    Rejected {
        /// ESID reason.
        reason: EsidReason,
        /// Reason text.
        text: String,
    },
    /// We refused the partner's answer (wrong SSID or password in its SSID, incompatible mode)
    /// or could not authenticate with it.
    #[error("session not started: {text} (ESID {:02})", reason.0)]
    Refused {
        /// ESID reason we sent.
        reason: EsidReason,
        /// Reason text.
        text: String,
    },
    /// The connection ended before the session got to the files (including a TLS handshake
    /// the partner refused after it seemed complete).
    #[error("session not started: {0}")]
    NotStarted(String),
}

/// Result of one session.
#[derive(Debug, Clone)]
pub struct ClientReport {
    /// The agreed session parameters.
    pub negotiated: Negotiated,
    /// Every file asked for, with its outcome, in order.
    pub files: Vec<(OutgoingFile, FileOutcome)>,
    /// End responses received for files sent in earlier runs.
    pub earlier: Vec<EarlierEndResponse>,
    /// Files the partner sent us, stored durably.
    pub received: Vec<PathBuf>,
    /// How the session ended.
    pub ended: Disconnected,
}

impl ClientReport {
    /// Whether every file got a positive end-to-end response (EERP).
    pub fn all_delivered(&self) -> bool {
        self.files.iter().all(|(_, o)| o.is_delivered())
    }
}

/// An OFTP client.
pub struct Client<H: Handler = (), C: Connector = PlainTcp, F: FileServices = NoFileServices> {
    shared: Arc<Shared>,
    partner: Partner,
    receive_dir: PathBuf,
    connect_timeout: Duration,
    handler: Arc<H>,
    connector: Arc<C>,
    services: Arc<F>,
}

impl Client {
    /// A client with the default handler, recording into `journal` (any backend: a
    /// [`SqliteJournal`](crate::journal::SqliteJournal) or an `Arc<dyn Journal>`).
    pub fn new(
        config: ClientConfig,
        journal: impl Into<Arc<dyn Journal>>,
    ) -> Result<Self, ClientError> {
        let codes = config
            .local
            .codes()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        config
            .limits
            .validate()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let partners = PartnerTable::new([config.partner.clone()])
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let shared = Shared {
            codes,
            local: config.local,
            partners: Shared::partner_table(partners),
            limits: config.limits,
            data_dir: config.receive_dir.clone(),
            name_format: config.name_format,
            store: config.store,
            journal: journal.into(),
            inactivity_timeout: config.inactivity_timeout,
            idle_timeout: None,
            checkpoint_interval: config.checkpoint_interval.max(1),
            active: Default::default(),
            security: Default::default(),
            outbound: Default::default(),
            sweeping: Default::default(),
            free_space: Arc::new(crate::space::StatVfs),
            free_space_reserve: crate::config::DEFAULT_FREE_SPACE_RESERVE,
        };
        Ok(Self {
            shared: Arc::new(shared),
            partner: config.partner,
            receive_dir: config.receive_dir,
            connect_timeout: config.connect_timeout,
            handler: Arc::new(()),
            connector: Arc::new(PlainTcp),
            services: Arc::new(NoFileServices),
        })
    }
}

/// The address recorded for a side of a connection whose transport has none (0.0.0.0:0).
const UNKNOWN_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

impl<H: Handler, C: Connector, F: FileServices> Client<H, C, F> {
    /// Uses `handler` for decisions and events (received files, progress, PITrail...).
    pub fn handler<H2: Handler>(self, handler: H2) -> Client<H2, C, F> {
        Client {
            shared: self.shared,
            partner: self.partner,
            receive_dir: self.receive_dir,
            connect_timeout: self.connect_timeout,
            handler: Arc::new(handler),
            connector: self.connector,
            services: self.services,
        }
    }

    /// Uses `connector` to open the transport (TLS seam).
    pub fn connector<C2: Connector>(self, connector: C2) -> Client<H, C2, F> {
        Client {
            shared: self.shared,
            partner: self.partner,
            receive_dir: self.receive_dir,
            connect_timeout: self.connect_timeout,
            handler: self.handler,
            connector: Arc::new(connector),
            services: self.services,
        }
    }

    /// Uses `services` for file services (OFTP 2.0 security seam).
    pub fn file_services<F2: FileServices>(self, services: F2) -> Client<H, C, F2> {
        Client {
            shared: self.shared,
            partner: self.partner,
            receive_dir: self.receive_dir,
            connect_timeout: self.connect_timeout,
            handler: self.handler,
            connector: self.connector,
            services: Arc::new(services),
        }
    }

    /// Uses OFTP 2.0 security (see `Server::security`): file services by the partner's
    /// policy, secure authentication, signed receipts and certificate exchange.
    pub fn security(
        self,
        security: Arc<crate::security::SecurityContext>,
    ) -> Client<H, C, Arc<crate::security::SecurityContext>> {
        self.shared.use_security(&security);
        self.file_services(security)
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.shared.journal
    }

    /// Connects to `addr` (`host:port`) and runs one session sending `files`.
    ///
    /// `Err` when no file got anywhere because the session was refused or failed before the
    /// first file (connection, TLS, login, secure authentication); `Ok` with each file's
    /// outcome once the session got past login.
    pub async fn run(
        &self,
        addr: &str,
        files: Vec<OutgoingFile>,
    ) -> Result<ClientReport, ClientError> {
        let limit = self.connect_timeout;
        let io = match tokio::time::timeout(limit, self.connector.connect(addr)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {limit:?}; check the address and the firewall"),
            )),
        }
        .map_err(|error| ClientError::Connect {
            addr: addr.to_owned(),
            error,
        })?;
        let addresses = C::addresses(&io).unwrap_or((UNKNOWN_ADDR, UNKNOWN_ADDR));
        self.run_with(io, addresses, files).await
    }

    /// Runs one session over an already open transport.
    pub async fn run_over<T: Transport>(
        &self,
        io: T,
        peer: SocketAddr,
        files: Vec<OutgoingFile>,
    ) -> Result<ClientReport, ClientError> {
        self.run_with(io, (UNKNOWN_ADDR, peer), files).await
    }

    async fn run_with<T: Transport>(
        &self,
        io: T,
        (local, peer): (SocketAddr, SocketAddr),
        files: Vec<OutgoingFile>,
    ) -> Result<ClientReport, ClientError> {
        let (handle, requests) = SessionHandle::new(0);
        let info = ConnectionInfo {
            id: handle.id(),
            peer,
            local,
        };
        let partner_codes = self
            .partner
            .codes()
            .map_err(|e| ClientError::Config(format!("partner {:?}: {e}", self.partner.name)))?;
        let setup = InitiatorSetup {
            partner: self.partner.clone(),
            partner_codes,
            receive_dir: self.receive_dir.clone(),
            jobs: files,
        };
        if let Some(retention) = self.shared.store.partial_retention {
            // Receptions from this partner that were never resumed (see `crate::partials`).
            let shared = self.shared.clone();
            let _ = tokio::task::spawn_blocking(move || {
                crate::partials::sweep(
                    &*shared.journal,
                    &shared.active,
                    std::slice::from_ref(&shared.data_dir),
                    retention,
                    chrono::Utc::now(),
                )
            })
            .await;
        }
        let parts = ConnectionParts {
            io,
            conn: info,
            handler: self.handler.clone(),
            services: self.services.clone(),
            shared: self.shared.clone(),
            shutdown: ShutdownSignal::new(),
            handle,
            requests,
        };
        let conn =
            Connection::initiator(parts, setup).map_err(|e| ClientError::Config(e.to_string()))?;
        let report = conn.run().await;
        // A session that ended at login or in secure authentication never got to the files:
        // it was refused, whatever the files' outcomes say.
        let negotiated = match report.negotiated {
            Some(n) if report.logged_in => n,
            negotiated => {
                let ended = report.ended;
                let text = |reason| match reason_text(reason, &ended.description) {
                    t if negotiated.is_some() => format!("secure authentication failed: {t}"),
                    t => t,
                };
                return Err(match ended.reason {
                    Some(reason)
                        if ended.by_peer && reason == EsidReason::RESOURCES_NOT_AVAILABLE =>
                    {
                        ClientError::PartnerFull {
                            text: reason_text(reason, &ended.description),
                        }
                    }
                    Some(reason) if ended.by_peer && reason != EsidReason::UNSPECIFIED => {
                        ClientError::Rejected {
                            reason,
                            text: text(reason),
                        }
                    }
                    Some(reason) if !ended.by_peer => ClientError::Refused {
                        reason,
                        text: text(reason),
                    },
                    _ if negotiated.is_some() => ClientError::NotStarted(format!(
                        "{} during secure authentication",
                        ended.description
                    )),
                    _ => ClientError::NotStarted(ended.description),
                });
            }
        };
        Ok(ClientReport {
            negotiated,
            files: report.outcomes,
            earlier: report.earlier,
            received: report.received,
            ended: report.ended,
        })
    }
}

/// The description without the trailing `(ESID nn)` the connection adds.
fn reason_text(reason: EsidReason, description: &str) -> String {
    let suffix = format!(" (ESID {:02})", reason.0);
    let text = description
        .strip_suffix(&suffix)
        .unwrap_or(description)
        .trim();
    if text.is_empty() {
        reason.description().unwrap_or("unknown reason").to_owned()
    } else {
        text.to_owned()
    }
}
