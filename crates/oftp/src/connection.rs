//! The connection driver: one task per connection that runs an `oftp_proto::session::Session`
//! over a [`Transport`], stores received files durably, reads files to send, and asks the
//! [`Handler`] for decisions.
//!
//! The loop: handle the session's events (which may call session methods and produce more to
//! send), then write what the session wants to send, feed file data while credit allows (one
//! buffer at a time, so memory stays at about one buffer per connection), act on our turn, and
//! otherwise wait for socket input, the session's deadline, a request on the
//! [`SessionHandle`], or a shutdown signal.
//!
//! **Invariant: nothing is acknowledged to the partner before what it acknowledges is durable**
//! (written, fsynced, and committed in the journal, which commits with `synchronous=FULL`).
//! A process killed at any step then leaves the partner holding nothing we could lose:
//! - RTR for a received EERP/NERP: the session queues the RTR together with the
//!   `EndResponseReceived` event, so every event is handled (the response recorded) before
//!   anything queued is written. If the journal cannot record it, nothing more is written and
//!   the connection is dropped without the RTR, so the partner sends the response again later.
//! - EFPA: `confirm_file` is called only after the file is fsynced and renamed into place and
//!   the journal says so.
//! - SFPA with a restart position: the position is a journal checkpoint, taken only after the
//!   temporary file was fsynced that far, and the file is cut back to it before we answer.
//!
//! The same holds for what we record as done: checkpoints (fsync + journal) every
//! `checkpoint_interval` bytes (spaced by at least the time that takes at 32 MiB/s) and when a
//! connection breaks, so a restart never goes back further than necessary and never claims
//! more than is on disk; EERP only for files that are complete in the journal.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oftp_proto::codec::{
    Eerp, EfnaReason, EsidReason, FileFormat, Nerp, NerpReason, Password as WirePassword,
    ProtocolLevel, Sfid, VirtualFileTime,
};
use oftp_proto::data::{restart_byte_offset, size_in_kib};
use oftp_proto::session::{
    Capabilities, EndResponse as WireEndResponse, Event, InitiatorConfig, Negotiated,
    ResponderConfig, ResponderParams, Session,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config::{LocalIdentity, Partner, PartnerTable, RecordMapping, SessionLimits};
use crate::handle::{OutgoingFile, Request, SessionHandle};
use crate::handler::{
    ConnectionRequest, Direction, Disconnected, EndResponse, EndResponseTiming, ErrorEvent,
    FileDecision, FileOffer, Handler, LogEvent, LogLevel, NegativeResponse, Origin, PiTrail,
    ReadyAction, SessionAcceptance, SessionDecision, SessionInfo, SessionRequest, TransferInfo,
    TransferResult,
};
use crate::journal::{
    Checkpoint, Direction as JournalDirection, EndResponseEntry, FileKey, Journal, LocalFileId,
    ReceiveState, SendState,
};
use crate::listener::{Admission, ConnectionInfo, ShutdownSignal};
use crate::policy::{self, FileRequest, PeerOffer};
use crate::security::{CertificateExchange, SecurityContext};
use crate::source::{Chunk, FileSource, OutgoingSource, RecordFileError, check_records};
use crate::stamp::FileStamp;
use crate::store::{BackgroundWriter, NameFormat, PartialFile, StoreError, StorePolicy};
use crate::stream::SealedSource;
use crate::transport::{FileServices, OutgoingPlan, ServiceFailure, Transport};

/// Default distance between receive checkpoints (fsync + journal). Each checkpoint costs an
/// fsync of everything written since the last one; a restart loses at most this much.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 64 * 1024 * 1024;

/// Checkpoints are also spaced in time: at least the time the checkpoint interval takes at
/// this rate (2 s for the default 64 MiB), so a fast line does not fsync many times a second
/// while a slow line still checkpoints every interval. Small configured intervals get
/// proportionally short spacing.
const CHECKPOINT_RATE: f64 = 32.0 * 1024.0 * 1024.0;

/// The least time between two checkpoints for `interval` bytes (see [`CHECKPOINT_RATE`]).
fn checkpoint_spacing(interval: u64) -> Duration {
    Duration::from_secs_f64(interval as f64 / CHECKPOINT_RATE)
}

/// The sender writes frames to the socket once this many octets of file data are queued.
const FLUSH_AT: usize = 64 * 1024;

/// A write buffer grown beyond this (many frames queued at once) is not kept between writes.
const KEPT_WRITE_BUF: usize = 256 * 1024;

/// Settings shared by all connections of a server or a client.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) local: LocalIdentity,
    pub(crate) partners: PartnerTable,
    pub(crate) limits: SessionLimits,
    pub(crate) data_dir: PathBuf,
    pub(crate) name_format: NameFormat,
    pub(crate) store: StorePolicy,
    pub(crate) journal: Journal,
    pub(crate) inactivity_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) checkpoint_interval: u64,
    /// Files being received right now, so a restart of the same file in a second session
    /// waits until the first has let go of it.
    pub(crate) active: ActiveSet,
    /// OFTP 2.0 security (secure authentication, signed receipts, certificate exchange); set
    /// once by `Server::security` / `Client::security` before the first connection.
    pub(crate) security: std::sync::OnceLock<Arc<SecurityContext>>,
    /// Whether a listener of this server runs the partial-reception sweep already.
    pub(crate) sweeping: std::sync::atomic::AtomicBool,
    /// Tells the free space where received files go (an offer that cannot fit is refused).
    pub(crate) free_space: Arc<dyn crate::space::FreeSpace>,
    /// Octets kept free there.
    pub(crate) free_space_reserve: u64,
}

/// A file being received: the authenticated partner (its SSID code) and the file identity.
/// SFIDORIG is whatever the sender writes, so the partner is part of it: one partner can never
/// block, resume or complete another partner's file.
pub(crate) type ActiveKey = (String, FileKey);

/// The files being received right now (see [`Shared::active`]).
pub(crate) type ActiveSet = Arc<std::sync::Mutex<std::collections::HashSet<ActiveKey>>>;

/// Marks a file as being received; released on drop.
pub(crate) struct ActiveGuard {
    set: ActiveSet,
    key: ActiveKey,
}

impl ActiveGuard {
    pub(crate) fn claim(set: &ActiveSet, key: &ActiveKey) -> Option<Self> {
        let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
        s.insert(key.clone()).then(|| Self {
            set: set.clone(),
            key: key.clone(),
        })
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// What the initiator knows before the session starts.
#[derive(Debug, Clone)]
pub(crate) struct InitiatorSetup {
    pub(crate) partner: Partner,
    pub(crate) receive_dir: PathBuf,
    pub(crate) jobs: Vec<OutgoingFile>,
}

/// Outcome of one file the initiator was asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// EERP received: the partner has the file.
    Delivered,
    /// NERP received.
    NotDelivered {
        /// NERP reason.
        reason: oftp_proto::codec::NerpReason,
        /// NERP text.
        text: String,
    },
    /// EFPA received but no EERP yet (it may come in a later session).
    AwaitingEndResponse,
    /// SFNA: the partner refused the file.
    Rejected {
        /// SFNA reason.
        reason: oftp_proto::codec::SfnaReason,
        /// Whether the partner invites a retry later.
        retry: bool,
        /// SFNA text.
        text: String,
    },
    /// EFNA: the partner refused the file after the transfer.
    Refused {
        /// EFNA reason.
        reason: EfnaReason,
        /// EFNA text.
        text: String,
    },
    /// An EERP/NERP arrived but was not accepted (missing or invalid signature, wrong file
    /// hash); the file still awaits a valid end response.
    EndResponseRejected {
        /// Why.
        text: String,
    },
    /// Not sent (local error, session ended first, ...).
    NotSent {
        /// Why.
        reason: String,
    },
}

impl FileOutcome {
    /// Whether the partner confirmed delivery end to end.
    pub fn is_delivered(&self) -> bool {
        matches!(self, FileOutcome::Delivered)
    }
}

/// An EERP/NERP that settled no file of this run: it answers a file sent in an earlier run
/// (whose journal entry it settled all the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierEndResponse {
    /// The local file the journal says was sent under that identity, if it knows one.
    pub local_file: Option<PathBuf>,
    /// The response.
    pub response: EndResponse,
}

/// What a connection reports when it ends.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionReport {
    pub(crate) negotiated: Option<Negotiated>,
    /// The session got past login: the SSID exchange and, when used, secure authentication.
    pub(crate) logged_in: bool,
    pub(crate) outcomes: Vec<(OutgoingFile, FileOutcome)>,
    pub(crate) earlier: Vec<EarlierEndResponse>,
    pub(crate) received: Vec<PathBuf>,
    pub(crate) ended: Disconnected,
}

/// A file being received.
struct Incoming {
    _active: ActiveGuard,
    sfid: Sfid,
    /// The temporary file, written by the process's writer pool.
    writer: BackgroundWriter,
    journal_id: i64,
    key: FileKey,
    transfer: TransferInfo,
    format: FileFormat,
    overwrite: bool,
    /// Durable state this transfer started from.
    base: Checkpoint,
    /// Records and octets received in this transfer.
    records: u64,
    units: u64,
    /// Octets at the last checkpoint and at the last progress report.
    checkpointed_units: u64,
    /// When the last checkpoint was started (or the reception began).
    checkpointed_at: Instant,
    reported_units: u64,
    /// F/V: local file length and octets at the end of the last complete record.
    record_end_offset: u64,
    record_end_units: u64,
    /// F/V: how records are stored (the partner's `record_mapping`).
    mapping: RecordMapping,
    /// Raw V: the record being received (it is stored after its length, known at its end).
    record: Vec<u8>,
    /// A record this file's mapping cannot store: the file is refused at its end with this
    /// EFNA, and no restart point is recorded past it.
    unstorable: Option<(EfnaReason, String)>,
    /// A checkpoint (fsync + journal) running on the blocking pool while data keeps arriving.
    inflight: Option<tokio::task::JoinHandle<Result<(), String>>>,
    user_data: String,
    /// For a file with file services: its opening, running while the data arrives.
    opener: Option<OpenerResult>,
}

/// Our EERP (or, with `negative`, NERP) for a file we received: to its originator, signed
/// later if the file asked for it.
fn our_end_response(
    key: &FileKey,
    local_sfid: &str,
    user_data: String,
    negative: Option<NegativeResponse>,
) -> EndResponse {
    EndResponse {
        virtual_file_name: key.dsn.clone(),
        stamp: key.stamp,
        destination: key.originator.clone(),
        originator: local_sfid.to_owned(),
        user_data,
        negative,
        file_hash: Vec::new(),
        signature: Vec::new(),
        signature_verified: false,
    }
}

/// A reception whose file the file services could not open.
struct FailedReception {
    partial: PartialFile,
    partial_path: PathBuf,
    journal_id: i64,
    transfer: TransferInfo,
    sfid: Sfid,
    key: FileKey,
    user_data: String,
}

/// How the local file of an outgoing file is read: a file forwarded with file services is the
/// processed form, which travels as U whatever SFIDFMT says (RFC 5024 5.3.3); every other
/// file as its format says.
fn local_read_format(file: &OutgoingFile) -> FileFormat {
    match file.forwarded {
        Some(f) if f.has_file_services() => FileFormat::Unstructured,
        _ => file.format,
    }
}

/// The verdict of [`FileServices::open_incoming`] (the hash for a signed EERP, or an EFNA).
type OpenerResult = tokio::sync::oneshot::Receiver<OpenerVerdict>;

/// What the opening thread hands back: the file services' verdict, or the message the
/// opening panicked with.
type OpenerVerdict = Result<Result<Option<Vec<u8>>, ServiceFailure>, String>;

/// The message of a caught panic (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    format!("the opening thread panicked: {message}")
}

/// A file being sent.
struct Outgoing {
    job: Option<usize>,
    /// Offered under the identity of an earlier attempt (see `start_sending`).
    resumed: bool,
    file: OutgoingFile,
    /// The processed form, being produced, until the partner accepts the file; `None` sends
    /// the file itself.
    sealed: Option<SealedSource>,
    /// SFIDCIPH as offered (the algorithm of the file hash).
    cipher_suite: u8,
    sent_id: i64,
    transfer: TransferInfo,
    source: Option<OutgoingSource>,
    finished: bool,
    reported_units: u64,
    from_outbox: bool,
}

enum Work {
    File {
        file: OutgoingFile,
        job: Option<usize>,
        from_outbox: bool,
    },
    EndResponse(EndResponse),
}

/// The per-session parameters once the session is accepted.
struct Params {
    partner_name: String,
    partner_sfid: String,
    local_sfid: String,
    inbox: PathBuf,
    outbox: Option<PathBuf>,
    /// How F/V records are laid out in local files for this partner.
    record_mapping: RecordMapping,
}

pub(crate) struct Connection<T: Transport, H: Handler, F: FileServices> {
    io: T,
    session: Session,
    handler: Arc<H>,
    services: Arc<F>,
    shared: Arc<Shared>,
    conn: ConnectionInfo,
    handle: SessionHandle,
    requests: mpsc::UnboundedReceiver<Request>,
    requests_open: bool,
    shutdown: ShutdownSignal,
    graceful_seen: bool,
    forced_seen: bool,
    info: Option<SessionInfo>,
    params: Option<Params>,
    negotiated: Option<Negotiated>,
    logged_in: bool,
    incoming: Option<Incoming>,
    outgoing: Option<Outgoing>,
    queue: VecDeque<Work>,
    ready: Option<(bool, bool)>,
    waiting: bool,
    logoff: bool,
    want_cd: bool,
    outbox_scanned: bool,
    awaiting_rtr: Option<EndResponse>,
    last_activity: Instant,
    outcomes: Vec<(OutgoingFile, FileOutcome)>,
    earlier: Vec<EarlierEndResponse>,
    received: Vec<PathBuf>,
    ended: Option<Disconnected>,
    initiator: Option<InitiatorSetup>,
    /// Frames to write, kept between writes (reads go straight into the session's buffer).
    wbuf: Vec<u8>,
    /// One timer for the session's and the idle deadline, reset rather than made per wait.
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Sessions must use OFTP 2.0 (set for TLS transports).
    v2_only: bool,
    /// A write timed out: the partner stopped reading, so nothing more is written (no ESID).
    write_stalled: bool,
    /// Nothing more is written (see [`Connection::hang_up`]).
    silenced: bool,
    /// The TLS client certificate the session must belong to (see
    /// `Acceptor::bound_peer_certificate`).
    bound_cert: Option<oftp_security::Certificate>,
    /// Responder: how the listener let the connection in (its per-address counts, or a
    /// refusal to be told at the SSID).
    admission: Option<Admission>,
    /// Responder: the SSID must arrive by then (and the configured timeout, for the message).
    login_deadline: Option<(tokio::time::Instant, Duration)>,
    /// Responder: the SSID code the peer presented, for logs before it is logged in.
    claimed_ssid: Option<String>,
    /// The last file offered to us (its name, date/time and originator), for logs.
    offered: Option<String>,
}

fn capabilities(
    level: ProtocolLevel,
    buffer_size: u32,
    credit: u16,
    compression: bool,
    restart: bool,
    mode: crate::config::Mode,
) -> Capabilities {
    Capabilities {
        max_level: level,
        buffer_size,
        credit,
        compression,
        restart,
        mode: policy::wire_mode(mode),
        secure_auth: false,
    }
}

fn command_id(name: &str) -> u8 {
    use oftp_proto::codec::code;
    match name {
        "SSRM" => code::SSRM,
        "SSID" => code::SSID,
        "SFID" => code::SFID,
        "SFPA" => code::SFPA,
        "SFNA" => code::SFNA,
        "DATA" => code::DATA,
        "CDT" => code::CDT,
        "EFID" => code::EFID,
        "EFPA" => code::EFPA,
        "EFNA" => code::EFNA,
        "ESID" => code::ESID,
        "CD" => code::CD,
        "RTR" => code::RTR,
        "EERP" => code::EERP,
        "NERP" => code::NERP,
        "SECD" => code::SECD,
        "AUCH" => code::AUCH,
        "AURP" => code::AURP,
        _ => 0,
    }
}

/// Why the connection task stopped reading: the transport failed.
struct TransportGone(std::io::Error);

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    /// A responder connection (server side).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn responder(
        io: T,
        conn: ConnectionInfo,
        handler: Arc<H>,
        services: Arc<F>,
        shared: Arc<Shared>,
        shutdown: ShutdownSignal,
        handle: SessionHandle,
        requests: mpsc::UnboundedReceiver<Request>,
    ) -> Self {
        let now = Instant::now();
        let session = Session::responder(
            ResponderConfig {
                inactivity_timeout: shared.inactivity_timeout,
            },
            now,
        );
        Self::new(
            io, session, conn, handler, services, shared, shutdown, handle, requests, None,
        )
    }

    /// An initiator connection (client side).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn initiator(
        io: T,
        conn: ConnectionInfo,
        handler: Arc<H>,
        services: Arc<F>,
        shared: Arc<Shared>,
        shutdown: ShutdownSignal,
        handle: SessionHandle,
        requests: mpsc::UnboundedReceiver<Request>,
        setup: InitiatorSetup,
    ) -> Result<Self, oftp_proto::session::UsageError> {
        let l = &shared.limits;
        let mut cfg = InitiatorConfig::new(
            shared.local.ssid.clone(),
            WirePassword::new(
                setup
                    .partner
                    .our_password(&shared.local.password)
                    .expose()
                    .to_owned(),
            ),
        );
        cfg.capabilities = capabilities(
            ProtocolLevel(l.level),
            l.buffer_size,
            l.credit,
            l.compression,
            l.restart,
            l.mode,
        );
        cfg.expected_peer_code = Some(setup.partner.ssid.clone());
        cfg.expected_peer_password = Some(WirePassword::new(setup.partner.password.expose()));
        cfg.inactivity_timeout = shared.inactivity_timeout;
        if let Some(sec) = shared.security.get() {
            // `required` asks for it and never accepts a session without it (the peer's SSID
            // must agree, else ESID 12).
            cfg.capabilities.secure_auth = sec
                .secure_auth_decision(&setup.partner.ssid, None)
                .map_err(oftp_proto::session::UsageError::Config)?;
        }
        let session = Session::initiator(cfg, Instant::now())?;
        Ok(Self::new(
            io,
            session,
            conn,
            handler,
            services,
            shared,
            shutdown,
            handle,
            requests,
            Some(setup),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        io: T,
        session: Session,
        conn: ConnectionInfo,
        handler: Arc<H>,
        services: Arc<F>,
        shared: Arc<Shared>,
        shutdown: ShutdownSignal,
        handle: SessionHandle,
        requests: mpsc::UnboundedReceiver<Request>,
        initiator: Option<InitiatorSetup>,
    ) -> Self {
        let mut queue = VecDeque::new();
        if let Some(setup) = &initiator {
            for (i, f) in setup.jobs.iter().enumerate() {
                queue.push_back(Work::File {
                    file: f.clone(),
                    job: Some(i),
                    from_outbox: false,
                });
            }
        }
        Self {
            io,
            session,
            handler,
            services,
            shared,
            conn,
            handle,
            requests,
            requests_open: true,
            shutdown,
            graceful_seen: false,
            forced_seen: false,
            info: None,
            params: None,
            negotiated: None,
            logged_in: false,
            incoming: None,
            outgoing: None,
            queue,
            ready: None,
            waiting: false,
            logoff: false,
            want_cd: false,
            outbox_scanned: false,
            awaiting_rtr: None,
            last_activity: Instant::now(),
            outcomes: Vec::new(),
            earlier: Vec::new(),
            received: Vec::new(),
            ended: None,
            initiator,
            wbuf: Vec::new(),
            timer: None,
            v2_only: false,
            write_stalled: false,
            silenced: false,
            bound_cert: None,
            admission: None,
            login_deadline: None,
            claimed_ssid: None,
            offered: None,
        }
    }

    /// Runs the connection to its end.
    pub(crate) async fn run(mut self) -> ConnectionReport {
        // Bounded: each turn of the loop either makes progress or waits; the session ends on
        // inactivity, so the loop ends too.
        loop {
            // Events before output: what the session queued with them (the RTR answering an
            // EERP/NERP) goes out only once they are handled, so recorded (module doc).
            if self.dispatch_events().await {
                continue;
            }
            if let Err(TransportGone(e)) = self.flush().await {
                self.transport_lost(e).await;
                continue;
            }
            if self.session.is_closed() {
                break;
            }
            match self.feed_data().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(TransportGone(e)) => {
                    self.transport_lost(e).await;
                    continue;
                }
            }
            if self.act().await {
                continue;
            }
            if self.graceful_seen
                && self.negotiated.is_some()
                && self.incoming.is_none()
                && self.outgoing.is_none()
                && self.awaiting_rtr.is_none()
                && !self.session.is_speaker()
            {
                // Shutting down: the transfer in progress has finished; end before the next.
                let _ = self
                    .session
                    .end_session(EsidReason::EMERGENCY_CLOSE_DOWN, "server shutting down");
                continue;
            }
            self.wait().await;
        }
        if !self.write_stalled {
            // Whatever the session queued last (its ESID); `flush` is bounded.
            let _ = self.flush().await;
        }
        // A TLS close_notify is a write too: bound it.
        let close = self.shared.inactivity_timeout.min(Duration::from_secs(5));
        let _ = tokio::time::timeout(close, self.io.shutdown()).await;
        self.finish_incoming_on_break().await;
        let ended = self.ended.clone().unwrap_or(Disconnected {
            reason: None,
            by_peer: true,
            description: "connection closed".into(),
        });
        // A file cut off at its offer, in its transfer or before its EFPA, and files never
        // offered, were not sent: say at which step.
        if let Some(out) = self.outgoing.take()
            && out.job.is_some()
        {
            let how = match (ended.reason, ended.by_peer) {
                (Some(_), true) => format!("the partner ended the session: {}", ended.description),
                (Some(_), false) => format!("we ended the session: {}", ended.description),
                (None, _) => ended.description.clone(),
            };
            let reason = if out.finished {
                format!(
                    "sent to the end (EFID), but not confirmed (no EFPA): {how}; \
                     sending it again restarts it"
                )
            } else if out.source.is_some() {
                format!("transfer cut: {how}; sending it again restarts it")
            } else {
                format!("offered (SFID), but the partner did not accept it: {how}")
            };
            self.outcomes
                .push((out.file, FileOutcome::NotSent { reason }));
        }
        for w in self.queue.drain(..) {
            if let Work::File {
                file, job: Some(_), ..
            } = w
            {
                self.outcomes.push((
                    file,
                    FileOutcome::NotSent {
                        reason: format!(
                            "not offered: the session ended first: {}",
                            ended.description
                        ),
                    },
                ));
            }
        }
        self.handler.disconnected(&self.conn, &ended).await;
        ConnectionReport {
            negotiated: self.negotiated.clone(),
            logged_in: self.logged_in,
            outcomes: std::mem::take(&mut self.outcomes),
            earlier: std::mem::take(&mut self.earlier),
            received: std::mem::take(&mut self.received),
            ended,
        }
    }

    /// The authenticated partner's SSID code (empty before the session is accepted): the
    /// partner part of every received-file identity.
    fn partner_code(&self) -> String {
        self.info
            .as_ref()
            .map(|i| i.peer_ssid.trim_end().to_owned())
            .unwrap_or_default()
    }

    async fn transport_lost(&mut self, e: std::io::Error) {
        tracing::debug!(conn = self.conn.id, error = %e, "transport error");
        if self.write_stalled && self.ended.is_none() {
            // No ESID can be sent to a partner that does not read; say why we hung up.
            let description = format!("{e} (ESID 09)");
            self.log(
                LogLevel::Info,
                format!("ending the connection: {description}"),
            )
            .await;
            self.ended = Some(Disconnected {
                reason: Some(EsidReason::TIME_OUT),
                by_peer: false,
                description,
            });
        }
        self.session.handle_transport_closed(Instant::now());
    }

    async fn log(&self, level: LogLevel, message: String) {
        match level {
            LogLevel::Info => tracing::info!(conn = self.conn.id, "{message}"),
            _ => tracing::debug!(conn = self.conn.id, "{message}"),
        }
        self.handler
            .log(self.conn.id, &LogEvent { level, message })
            .await;
    }

    async fn error(&self, description: String) {
        tracing::warn!(conn = self.conn.id, "{description}");
        self.handler
            .error(&ErrorEvent {
                connection: self.conn.id,
                description,
            })
            .await;
    }

    /// Drops the connection without writing anything more, because what the session has
    /// queued would acknowledge something that is not durable (see the module doc).
    fn hang_up(&mut self, description: String) {
        self.silenced = true;
        if self.ended.is_none() {
            self.ended = Some(Disconnected {
                reason: None,
                by_peer: false,
                description,
            });
        }
        self.session.handle_transport_closed(Instant::now());
    }

    /// Writes everything the session has queued.
    async fn flush(&mut self) -> Result<(), TransportGone> {
        let mut out = std::mem::take(&mut self.wbuf);
        out.clear();
        // The first frame is taken without a copy; any further ones are appended, so all go
        // out in one write.
        if self.session.poll_transmit_into(&mut out) == 0 || self.silenced {
            out.clear();
            self.wbuf = out;
            return Ok(());
        }
        let r = self.write_bounded(&out).await;
        if out.capacity() <= KEPT_WRITE_BUF {
            self.wbuf = out;
        }
        r
    }

    /// Writes `out` whole and flushes the transport, each step bounded by the inactivity
    /// timeout.
    async fn write_bounded(&mut self, out: &[u8]) -> Result<(), TransportGone> {
        self.last_activity = Instant::now();
        // Bounded like reads: a partner that stops reading fills the socket buffers and would
        // otherwise hold this task (and a connection slot) forever. The limit applies to each
        // step, so a slow but moving line is not cut off. Bounded: every turn writes at least
        // one octet or returns.
        let limit = self.shared.inactivity_timeout;
        let stalled = || {
            TransportGone(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the partner stopped reading: nothing could be written for {limit:?}"),
            ))
        };
        let mut pos = 0;
        while pos < out.len() {
            match tokio::time::timeout(limit, self.io.write(&out[pos..])).await {
                Ok(Ok(0)) => {
                    return Err(TransportGone(std::io::ErrorKind::WriteZero.into()));
                }
                Ok(Ok(n)) => pos += n,
                Ok(Err(e)) => return Err(TransportGone(e)),
                Err(_) => {
                    self.write_stalled = true;
                    return Err(stalled());
                }
            }
        }
        match tokio::time::timeout(limit, self.io.flush()).await {
            Ok(r) => r.map_err(TransportGone),
            Err(_) => {
                self.write_stalled = true;
                Err(stalled())
            }
        }
    }

    /// Handles all pending events; `true` if there were any.
    async fn dispatch_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.session.poll_event() {
            any = true;
            self.on_event(ev).await;
        }
        any
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::SsidReceived { peer } => self.on_ssid(peer).await,
            Event::SessionEstablished { negotiated } => self.on_established(negotiated).await,
            Event::CommandSent { name, summary } => self.trail(Origin::Local, name, summary).await,
            Event::CommandReceived { name, summary } => {
                self.trail(Origin::Peer, name, summary).await
            }
            Event::ReadyToSend {
                may_end_session,
                may_change_direction,
            } => {
                self.ready = Some((may_end_session, may_change_direction));
                self.waiting = match &self.info {
                    Some(info) => self.handler.ready_to_send(info).await == ReadyAction::Wait,
                    None => false,
                };
            }
            Event::FileOffered { sfid } => {
                self.offered = Some(format!(
                    "{} ({}) from {}",
                    sfid.dsn.trim_end(),
                    sfid.date_time,
                    sfid.originator.trim_end()
                ));
                self.on_file_offered(sfid).await
            }
            Event::DataReceived {
                bytes,
                end_of_record,
            } => self.on_data(bytes, end_of_record).await,
            Event::FileEnded {
                record_count,
                unit_count,
                received_records,
                received_units,
                restart_position: _,
                record_length_violation,
            } => {
                self.on_file_ended(
                    record_count,
                    unit_count,
                    received_records,
                    received_units,
                    record_length_violation.map(|e| e.to_string()),
                )
                .await
            }
            Event::FileAccepted { restart_position } => {
                self.on_file_accepted(restart_position).await
            }
            Event::ReadyForData => {}
            Event::FileRejected { reason, text, .. }
                if reason == oftp_proto::codec::SfnaReason::DUPLICATE_FILE
                    && self.outgoing.as_ref().is_some_and(|o| o.resumed) =>
            {
                // The identity of an earlier attempt: the partner stored that attempt, whose
                // EFPA we did not record. Its EERP is due (RFC 5024 section 4.3.6).
                let name = self
                    .outgoing
                    .as_ref()
                    .map(|o| o.transfer.virtual_file_name.clone())
                    .unwrap_or_default();
                self.log(
                    LogLevel::Info,
                    format!(
                        "the partner already has {name} (SFNA 13: {text}); waiting for its EERP"
                    ),
                )
                .await;
                self.outgoing_done(FileOutcome::AwaitingEndResponse, None, false)
                    .await;
            }
            Event::FileRejected {
                reason,
                retry,
                text,
            } => {
                let outcome = FileOutcome::Rejected {
                    reason,
                    retry,
                    text: text.clone(),
                };
                let msg = format!(
                    "partner refused the file: {} (SFNA {:02}) {text}",
                    reason.description().unwrap_or("unknown reason"),
                    reason.0
                );
                self.outgoing_done(outcome, Some(msg), !retry).await;
            }
            Event::FileConfirmed { .. } => {
                self.outgoing_done(FileOutcome::AwaitingEndResponse, None, false)
                    .await
            }
            Event::FileRefused { reason, text } => {
                let msg = format!(
                    "partner refused the file after transfer: {} (EFNA {:02}) {text}",
                    reason.description().unwrap_or("unknown reason"),
                    reason.0
                );
                self.outgoing_done(
                    FileOutcome::Refused {
                        reason,
                        text: text.clone(),
                    },
                    Some(msg),
                    true,
                )
                .await;
            }
            Event::EndResponseReceived(r) => self.on_end_response(r).await,
            Event::EndResponseAcknowledged => {
                if let Some(r) = self.awaiting_rtr.take() {
                    let key = FileKey::new(&r.destination, &r.virtual_file_name, r.stamp);
                    let entry = EndResponseEntry {
                        direction: JournalDirection::Sent,
                        key,
                        destination: r.destination.clone(),
                        negative: r
                            .negative
                            .as_ref()
                            .map(|n| (u16::from(n.reason.0), n.text.clone())),
                        partner: self.partner_code(),
                    };
                    let res = self
                        .shared
                        .journal
                        .call(move |j| j.record_end_response(&entry))
                        .await;
                    if let Err(e) = res {
                        self.error(format!("journal: {e}")).await;
                    }
                }
            }
            Event::SessionEnded {
                reason,
                text,
                by_peer,
            } => {
                let description = if reason == EsidReason::NORMAL {
                    "OK".to_owned()
                } else if text.trim().is_empty() {
                    format!(
                        "{} (ESID {:02})",
                        reason.description().unwrap_or("unknown reason"),
                        reason.0
                    )
                } else {
                    format!("{} (ESID {:02})", text.trim(), reason.0)
                };
                self.log(
                    LogLevel::Info,
                    format!(
                        "session ended by {}: {description}",
                        if by_peer { "the partner" } else { "us" }
                    ),
                )
                .await;
                // A disconnect asked for by the application already said why.
                if self.ended.is_none() {
                    self.ended = Some(Disconnected {
                        reason: Some(reason),
                        by_peer,
                        description,
                    });
                }
            }
            Event::AuthChallengeReceived { challenge } => self.on_auth_challenge(challenge).await,
            Event::AuthChallengeRequested => self.on_auth_challenge_requested().await,
            Event::Authenticated => self.session_established().await,
            _ => {}
        }
    }

    async fn trail(&self, origin: Origin, name: &'static str, summary: String) {
        tracing::debug!(conn = self.conn.id, ?origin, "{summary}");
        if origin == Origin::Local {
            self.log_refusal(name, &summary).await;
        }
        self.handler
            .pi_trail(
                self.conn.id,
                &PiTrail {
                    origin,
                    command_id: command_id(name),
                    description: summary,
                },
            )
            .await;
    }

    /// Every refusal we send is logged here, where the session reports what it sent, with the
    /// partner, the file and the reason: ESID other than a normal end, SFNA, EFNA and NERP.
    async fn log_refusal(&self, name: &str, summary: &str) {
        let file = match name {
            "SFNA" | "EFNA" => self.offered.as_deref(),
            "NERP" => None, // the summary names the file
            "ESID" if !summary.starts_with(&format!("ESID {}", EsidReason::NORMAL)) => None,
            _ => return,
        };
        let partner = match (&self.info, &self.initiator, &self.claimed_ssid) {
            (Some(info), _, _) => info.peer_ssid.clone(),
            (None, Some(setup), _) => setup.partner.ssid.clone(),
            (None, None, Some(code)) => format!("{code} (not logged in)"),
            (None, None, None) => "(no SSID yet)".to_owned(),
        };
        let file = file.map(|f| format!(", file {f}")).unwrap_or_default();
        self.log(
            LogLevel::Info,
            format!(
                "refused: partner {partner} at {}{file}: {}",
                self.conn.peer,
                summary.trim_end()
            ),
        )
        .await;
    }

    async fn on_ssid(&mut self, peer: oftp_proto::codec::Ssid) {
        self.login_deadline = None;
        self.claimed_ssid = Some(peer.code.trim_end().to_owned());
        let offer = PeerOffer {
            ssid: &peer.code,
            password: peer.password.expose(),
            level: peer.level,
            buffer_size: peer.buffer_size,
            credit: peer.credit,
            compression: peer.compression,
            restart: peer.restart,
        };
        let sh = &self.shared;
        let default =
            policy::session_decision(&sh.local, &sh.partners, &sh.limits, &sh.data_dir, &offer);
        let req = SessionRequest::new(
            self.conn,
            peer.code.trim_end().to_owned(),
            crate::config::Password::new(peer.password.expose()),
            peer.level,
            peer.buffer_size,
            peer.credit,
            policy::local_mode(peer.mode),
            peer.compression,
            peer.restart,
            peer.secure_auth,
            peer.user_data.clone(),
            sh.partners.by_ssid(&peer.code).cloned(),
            default,
        );
        let decision = self.handler.accept_session(&req).await;
        match decision {
            SessionDecision::Accept(a) => {
                // The listener's limits (connections in all, sessions per address): resources
                // not available, retry later (RFC 5024 5.3.11, ESID 08).
                if let Some(Err(why)) = self.admission.as_mut().map(Admission::log_in) {
                    let _ = self
                        .session
                        .reject_session(EsidReason::RESOURCES_NOT_AVAILABLE, why);
                    return;
                }
                // Transport and secure-authentication rules hold whatever the handler said:
                // a partner that must authenticate is never let in without it.
                let secure_auth = match self.responder_security(&peer) {
                    Ok(b) => b,
                    Err((reason, text)) => {
                        let _ = self.session.reject_session(reason, &text);
                        return;
                    }
                };
                let mut caps = capabilities(
                    a.level,
                    a.buffer_size,
                    a.credit,
                    a.compression,
                    a.restart,
                    a.mode,
                );
                caps.secure_auth = secure_auth;
                let params = ResponderParams {
                    ssid_code: a.local_ssid.clone(),
                    password: WirePassword::new(a.local_password.expose()),
                    user_data: String::new(),
                    capabilities: caps,
                };
                match self.session.accept_session(params) {
                    Ok(()) => self.accepted(a, peer.code.trim_end().to_owned()),
                    Err(e) => {
                        self.error(format!("cannot accept session: {e}")).await;
                        let _ = self
                            .session
                            .reject_session(EsidReason::RESOURCES_NOT_AVAILABLE, &e.to_string());
                    }
                }
            }
            SessionDecision::Reject { reason, text } => {
                let _ = self.session.reject_session(reason, &text);
            }
        }
    }

    /// Responder: whether to use secure authentication with this peer, or the ESID to refuse
    /// it with (1.x over TLS: 10; a TLS client certificate bound to another partner: 03;
    /// secure-authentication policy: 12).
    fn responder_security(
        &self,
        peer: &oftp_proto::codec::Ssid,
    ) -> Result<bool, (EsidReason, String)> {
        if self.v2_only && !peer.level.is_v2() {
            return Err((
                EsidReason::MODE_INCOMPATIBLE,
                "sessions over TLS need ODETTE-FTP 2.0 (SSID level 5)".into(),
            ));
        }
        if let Some(cert) = &self.bound_cert {
            // The user code does not fit the identity the transport proved (RFC 5024 ESID
            // 03: "unknown or invalid Identification Code").
            let owner = self
                .shared
                .security
                .get()
                .and_then(|sec| sec.partner_by_ssid(&peer.code))
                .filter(|p| p.owns_tls_client_certificate(cert));
            if owner.is_none() {
                return Err((
                    EsidReason::USER_CODE_NOT_KNOWN,
                    format!(
                        "the TLS client certificate {} does not belong to {}",
                        cert.subject(),
                        peer.code.trim_end()
                    ),
                ));
            }
        }
        match self.shared.security.get() {
            // Without security settings we never authenticate; the session refuses a peer
            // that asks for it (ESID 12).
            None => Ok(false),
            Some(sec) => sec
                .secure_auth_decision(&peer.code, Some(peer.secure_auth))
                .map_err(|t| (EsidReason::SECURE_AUTH_INCOMPATIBLE, t)),
        }
    }

    /// Sessions on this connection must use OFTP 2.0 (TLS).
    pub(crate) fn require_v2(mut self, v2_only: bool) -> Self {
        self.v2_only = v2_only;
        self
    }

    /// The session on this connection must log in as the partner owning `cert` (its TLS
    /// client certificate).
    pub(crate) fn bind_peer_certificate(
        mut self,
        cert: Option<oftp_security::Certificate>,
    ) -> Self {
        self.bound_cert = cert;
        self
    }

    /// Responder: the listener's admission, and the time by which the SSID must arrive (ESID
    /// 09 otherwise; `timeout` is the configured login timeout, for the message).
    pub(crate) fn admitted(
        mut self,
        admission: Admission,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Self {
        self.admission = Some(admission);
        self.login_deadline = Some((deadline, timeout));
        self
    }

    /// Secure authentication: our turn to answer the peer's challenge.
    async fn on_auth_challenge(&mut self, challenge: Vec<u8>) {
        let answer = match self.shared.security.get() {
            Some(sec) => {
                let sec = sec.clone();
                tokio::task::spawn_blocking(move || sec.answer_challenge(&challenge))
                    .await
                    .unwrap_or_else(|e| Err(format!("challenge task failed: {e}")))
            }
            None => Err("no authentication key is configured".into()),
        };
        match answer {
            Ok(a) => {
                if let Err(e) = self.session.answer_challenge(a) {
                    self.error(format!("cannot answer the challenge: {e}"))
                        .await;
                }
            }
            Err(text) => {
                // RFC 5024 9.8.2 row I: the receiver of an AUCH answers with an AURP, there is
                // no other transition; the challenger finds the answer wrong and ends the
                // session with ESID 11 (row K). The answer is random, so it cannot match.
                self.error(format!(
                    "secure authentication failed: cannot open the partner's challenge: {text}; \
                     answering it with octets that cannot match, the partner will end the \
                     session (ESID 11)"
                ))
                .await;
                let mut unanswerable = [0u8; 20];
                if aws_lc_rs::rand::fill(&mut unanswerable).is_err() {
                    let _ = self
                        .session
                        .end_session(EsidReason::UNSPECIFIED, "random number generator failed");
                } else if let Err(e) = self.session.answer_challenge(unanswerable) {
                    self.error(format!("cannot answer the challenge: {e}"))
                        .await;
                }
            }
        }
    }

    /// Secure authentication: our turn to challenge the peer.
    async fn on_auth_challenge_requested(&mut self) {
        let ssid = match (&self.initiator, &self.info) {
            (Some(setup), _) => setup.partner.ssid.clone(),
            (None, Some(info)) => info.peer_ssid.clone(),
            (None, None) => String::new(),
        };
        let challenge = match self.shared.security.get() {
            Some(sec) => {
                let sec = sec.clone();
                tokio::task::spawn_blocking(move || sec.create_challenge(&ssid))
                    .await
                    .unwrap_or_else(|e| Err(format!("challenge task failed: {e}")))
            }
            None => Err("no security settings".into()),
        };
        match challenge {
            Ok((envelope, expected)) => {
                if let Err(e) = self.session.send_challenge(envelope, expected) {
                    self.error(format!("cannot send the challenge: {e}")).await;
                }
            }
            Err(text) => {
                self.error(format!("secure authentication failed: {text}"))
                    .await;
                let _ = self
                    .session
                    .end_session(EsidReason::SECURE_AUTH_INCOMPATIBLE, &text);
            }
        }
    }

    fn accepted(&mut self, a: SessionAcceptance, peer_ssid: String) {
        let partners = &self.shared.partners;
        let record_mapping = partners
            .by_name(&a.partner_name)
            .or_else(|| partners.by_ssid(&peer_ssid))
            .map(|p| p.record_mapping)
            .unwrap_or_default();
        self.params = Some(Params {
            partner_name: a.partner_name.clone(),
            partner_sfid: a.partner_sfid,
            local_sfid: a.local_sfid,
            inbox: a.inbox,
            outbox: a.outbox,
            record_mapping,
        });
        self.info = Some(SessionInfo {
            id: self.conn.id,
            peer: self.conn.peer,
            peer_ssid,
            partner_name: a.partner_name,
            level: a.level,
            handle: self.handle.clone(),
        });
    }

    async fn on_established(&mut self, negotiated: Negotiated) {
        if let Some(setup) = &self.initiator {
            let p = &setup.partner;
            self.params = Some(Params {
                partner_name: p.name.clone(),
                partner_sfid: p.sfid().to_owned(),
                local_sfid: self.shared.local.sfid().to_owned(),
                inbox: setup.receive_dir.clone(),
                outbox: None,
                record_mapping: p.record_mapping,
            });
            self.info = Some(SessionInfo {
                id: self.conn.id,
                peer: self.conn.peer,
                peer_ssid: negotiated.peer.code.trim_end().to_owned(),
                partner_name: p.name.clone(),
                level: negotiated.level,
                handle: self.handle.clone(),
            });
        }
        if let Some(info) = &mut self.info {
            info.level = negotiated.level;
        }
        let secure_auth = negotiated.secure_auth;
        self.negotiated = Some(negotiated);
        // With secure authentication the session is established only once both sides have
        // proved their identity (`Event::Authenticated`); a failed challenge ends it first.
        if !secure_auth {
            self.session_established().await;
        }
    }

    /// The session is established (SSIDs agreed, and secure authentication passed when
    /// used): says so, queues the end responses still owed to the partner, tells the handler.
    async fn session_established(&mut self) {
        let Some(n) = &self.negotiated else {
            return;
        };
        self.logged_in = true;
        let message = format!(
            "session with {} established: level {}, buffer {}, credit {}, compression {}, restart {}{}",
            n.peer.code.trim_end(),
            n.level.0,
            n.buffer_size,
            n.credit,
            n.compression,
            n.restart,
            if n.secure_auth {
                ", secure authentication passed"
            } else {
                ""
            }
        );
        self.log(LogLevel::Info, message).await;
        self.queue_pending_end_responses().await;
        if let Some(info) = self.info.clone() {
            self.handler.session_started(&info).await;
        }
    }

    /// End responses of earlier sessions that never went out (the connection broke first).
    async fn queue_pending_end_responses(&mut self) {
        let Some(p) = &self.params else {
            return;
        };
        let local_sfid = p.local_sfid.clone();
        let partner = self.partner_code();
        let pending = self
            .shared
            .journal
            .call(move |j| j.pending_end_responses(&partner))
            .await;
        match pending {
            Ok(entries) => {
                for e in entries {
                    self.queue.push_front(Work::EndResponse(our_end_response(
                        &e.key,
                        &local_sfid,
                        e.user_data,
                        None,
                    )));
                }
            }
            Err(e) => self.error(format!("journal: {e}")).await,
        }
    }

    // ---- receiving -----------------------------------------------------------------------

    async fn on_file_offered(&mut self, sfid: Sfid) {
        let (Some(params), Some(info)) = (&self.params, self.info.clone()) else {
            let _ = self.session.reject_file(
                oftp_proto::codec::SfnaReason::UNSPECIFIED,
                false,
                "no session",
            );
            return;
        };
        let stamp = FileStamp::from(sfid.date_time);
        let key = FileKey::new(&sfid.originator, &sfid.dsn, stamp);
        // The journal entry is the one of this partner: another partner's interrupted or
        // completed file with the same identity is neither resumed nor a duplicate here.
        let partner = info.peer_ssid.trim_end().to_owned();
        let (p, k) = (partner.clone(), key.clone());
        let entry = match self.shared.journal.call(move |j| j.received(&p, &k)).await {
            Ok(e) => e,
            Err(e) => {
                self.refuse_offer_for_now(format!("journal: {e}"), "receiver journal unavailable")
                    .await;
                return;
            }
        };
        // A crash between placing the file and the journal update leaves an entry still
        // "receiving" whose final file exists and whose temporary name is either gone or a
        // second name of that same file (crash between hard link and unlink): the file is
        // complete, so record it and let the sender hear "duplicate" plus the EERP.
        let placed = match &entry {
            Some(e) if e.state == ReceiveState::Receiving => {
                let (pp, fp) = (e.partial_path.clone(), e.final_path.clone());
                tokio::task::spawn_blocking(move || crashed_after_placing(&pp, &fp))
                    .await
                    .unwrap_or(false)
            }
            _ => false,
        };
        let entry = match entry {
            Some(mut e) if placed => {
                let (id, fp) = (e.id, e.final_path.clone());
                if let Err(err) = self
                    .shared
                    .journal
                    .call(move |j| j.complete_receive(id, &fp))
                    .await
                {
                    self.error(format!("journal: {err}")).await;
                }
                e.state = ReceiveState::Complete;
                self.queue.push_back(Work::EndResponse(our_end_response(
                    &e.key,
                    &params.local_sfid,
                    e.user_data.clone(),
                    None,
                )));
                Some(e)
            }
            other => other,
        };
        let Some(params) = &self.params else {
            return;
        };
        // The default decision looks at the inbox (does the name exist?) and at the free space
        // there: blocking pool.
        let (local_sfid, inbox, name_format, store, known, offered) = (
            params.local_sfid.clone(),
            params.inbox.clone(),
            self.shared.name_format.clone(),
            self.shared.store.clone(),
            entry.clone(),
            sfid.clone(),
        );
        let (probe, reserve, conn) = (
            self.shared.free_space.clone(),
            self.shared.free_space_reserve,
            self.conn.id,
        );
        // What an interrupted reception of this file already holds on disk.
        let stored = entry
            .as_ref()
            .filter(|e| e.state == ReceiveState::Receiving)
            .map_or(0, |e| e.checkpoint.file_offset);
        let needed = crate::space::still_needed(sfid.file_size, stored);
        let decided = tokio::task::spawn_blocking(move || {
            let req = FileRequest {
                dsn: &offered.dsn,
                stamp,
                originator: &offered.originator,
                destination: &offered.destination,
                user_data: &offered.user_data,
            };
            let decision = policy::file_decision(
                &local_sfid,
                &inbox,
                &name_format,
                &store,
                known.as_ref(),
                &req,
            );
            // A file that cannot fit is refused now, not after its whole transfer: SFNA 12 with
            // retry, the "lack of storage space" of RFC 5024 5.3.5 (SFNARRTR).
            if let FileDecision::Accept { target, .. } = &decision
                && let Err(no_room) = crate::space::check(&*probe, target, needed, reserve)
            {
                tracing::info!(conn, target = %target.display(), "{no_room}");
                return FileDecision::Reject {
                    reason: oftp_proto::codec::SfnaReason::ACCESS_METHOD_FAILURE,
                    retry: true,
                    text: format!(
                        "not enough free space for {} KiB, retry later",
                        needed.div_ceil(1024)
                    ),
                };
            }
            decision
        })
        .await;
        let mut default = decided.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "file decision task failed");
            FileDecision::Reject {
                reason: oftp_proto::codec::SfnaReason::ACCESS_METHOD_FAILURE,
                retry: true,
                text: "receiver busy, try again later".into(),
            }
        });
        // Checking certificates may fetch a CRL from a distribution point: off the async
        // threads.
        let (services, offered) = (self.services.clone(), sfid.clone());
        let checked = tokio::task::spawn_blocking(move || services.check_incoming(&offered))
            .await
            .unwrap_or_else(|e| {
                Err(crate::transport::ServiceRefusal {
                    reason: oftp_proto::codec::SfnaReason::UNSPECIFIED,
                    text: format!("file services failed: {e}"),
                })
            });
        if let Err(r) = checked {
            default = FileDecision::Reject {
                reason: r.reason,
                retry: false,
                text: r.text,
            };
        }
        let duplicate = matches!(&entry, Some(e) if e.state == ReceiveState::Complete);
        let offer = FileOffer::new(
            sfid.dsn.trim_end().to_owned(),
            stamp,
            sfid.originator.trim_end().to_owned(),
            sfid.destination.trim_end().to_owned(),
            sfid.user_data.trim_end().to_owned(),
            sfid.format,
            sfid.max_record_len,
            sfid.file_size,
            sfid.restart_position,
            sfid.description.clone(),
            crate::handle::FileServiceFields::of(&sfid),
            duplicate,
            default,
        );
        let decision = self.handler.accept_file(&info, &offer).await;
        let (target, overwrite) = match decision {
            FileDecision::Reject {
                reason,
                retry,
                text,
            } => {
                let _ = self.session.reject_file(reason, retry, &text);
                return;
            }
            FileDecision::Accept { target, overwrite } => (target, overwrite),
        };
        let Some(active) = ActiveGuard::claim(&self.shared.active, &(partner.clone(), key.clone()))
        else {
            let _ = self.session.reject_file(
                oftp_proto::codec::SfnaReason::UNSPECIFIED,
                true,
                "this file is being received in another session",
            );
            return;
        };
        let format = sfid.transmitted_format();
        let restart_ok = self.negotiated.as_ref().is_some_and(|n| n.restart);
        let asked = if restart_ok { sfid.restart_position } else { 0 };

        // An earlier reception of this file: its partial file is taken over or removed below,
        // never left without its journal row.
        let old_partial = entry
            .as_ref()
            .filter(|e| e.state == ReceiveState::Receiving)
            .map(|e| e.partial_path.clone());
        // Resume a durable part when the journal has one for this very file and target.
        let resumable =
            entry.filter(|e| e.state == ReceiveState::Receiving && e.final_path == target);
        let resume_from = resumable.as_ref().and_then(|e| {
            if asked == 0 {
                return None;
            }
            let cp = e.checkpoint;
            let base = if cp.position <= asked {
                cp
            } else if !format.is_record_oriented() {
                let off = restart_byte_offset(asked);
                Checkpoint {
                    position: asked,
                    file_offset: off,
                    records: 0,
                    units: off,
                }
            } else {
                return None;
            };
            (base.position > 0).then_some((e.id, base))
        });
        // Opening, truncating, removing and creating files touches the disk (maybe a network
        // file system): on the blocking pool, not on the workers that serve other sessions.
        let tgt = target.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let mut resume_error = None;
            if let (Some(pp), Some((id, base))) = (&old_partial, resume_from)
                && pp.exists()
            {
                match PartialFile::resume(pp, &tgt, base.file_offset) {
                    Ok(p) => return (Ok(Opened::Resumed(p, id, base)), None),
                    Err(e) => resume_error = Some(e.to_string()),
                }
            }
            if let Some(pp) = &old_partial
                && let Err(e) = crate::store::remove_partial(pp)
            {
                // Its row stays (the journal still owns it): try again later.
                return (
                    Err(format!("the earlier partial file stays: {e}")),
                    resume_error,
                );
            }
            let created = PartialFile::create(&tgt).map_err(|e| e.to_string());
            (created.map(Opened::Fresh), resume_error)
        })
        .await;
        let (opened, resume_error) =
            opened.unwrap_or_else(|e| (Err(format!("file task failed: {e}")), None));
        if let Some(err) = resume_error {
            self.error(format!("cannot resume: {err}")).await;
        }
        let (partial, journal_id, base) = match opened {
            Ok(Opened::Resumed(p, id, base)) => (p, id, base),
            Err(e) => {
                self.refuse_offer_for_now(
                    format!("cannot store {}: {e}", offer.virtual_file_name),
                    "cannot create the file",
                )
                .await;
                return;
            }
            Ok(Opened::Fresh(partial)) => {
                let (p, k, pp, fp, ud) = (
                    partner.clone(),
                    key.clone(),
                    partial.partial_path().to_owned(),
                    target.clone(),
                    offer.user_data.clone(),
                );
                match self
                    .shared
                    .journal
                    .call(move |j| j.begin_receive(&p, &k, &pp, &fp, &ud))
                    .await
                {
                    Ok(id) => (partial, id, Checkpoint::default()),
                    Err(e) => {
                        if let Err(r) = partial.abandon(true).await {
                            self.error(format!("cannot remove partial file: {r}")).await;
                        }
                        self.refuse_offer_for_now(
                            format!("journal: {e}"),
                            "receiver journal unavailable",
                        )
                        .await;
                        return;
                    }
                }
            }
        };
        // A file with file services is opened while it arrives: by the services on a thread
        // of their own, fed by the writer pool (see `crate::stream`).
        let (tap, opener) = if sfid.has_file_services() {
            match self.start_opener(&sfid, &partial, base.file_offset) {
                Ok((tap, opener)) => (Some(tap), Some(opener)),
                Err(e) => {
                    self.refuse_offer_for_now(
                        format!("cannot receive {}: {e}", offer.virtual_file_name),
                        "receiver busy, try again later",
                    )
                    .await;
                    return;
                }
            }
        } else {
            (None, None)
        };
        let writer = match BackgroundWriter::spawn_tapped(partial, tap) {
            Ok(w) => w,
            Err(e) => {
                // The file is still there (empty or with its durable part): a retry resumes.
                self.refuse_offer_for_now(
                    format!("cannot receive {}: {e}", offer.virtual_file_name),
                    "receiver busy, try again later",
                )
                .await;
                return;
            }
        };
        if let Err(e) = self.session.accept_file(base.position) {
            // Dropping the writer gives the file up; it keeps what it had.
            self.error(format!("cannot accept file: {e}")).await;
            drop(writer);
            return;
        }
        let transfer = TransferInfo {
            direction: Direction::Incoming,
            local_file: target,
            virtual_file_name: offer.virtual_file_name.clone(),
            stamp,
            originator: offer.originator.clone(),
            destination: offer.destination.clone(),
            restart_position: base.position,
            file_hash: Vec::new(),
        };
        self.log(
            LogLevel::Info,
            format!(
                "receiving {} from {} into {}{}",
                transfer.virtual_file_name,
                transfer.originator,
                transfer.local_file.display(),
                if base.position > 0 {
                    format!(" (restart at {})", base.position)
                } else {
                    String::new()
                }
            ),
        )
        .await;
        self.handler.start_transfer(&info, &transfer).await;
        self.incoming = Some(Incoming {
            _active: active,
            sfid: sfid.clone(),
            writer,
            journal_id,
            key,
            transfer,
            format,
            overwrite,
            base,
            records: 0,
            units: 0,
            checkpointed_units: 0,
            checkpointed_at: Instant::now(),
            reported_units: 0,
            record_end_offset: base.file_offset,
            record_end_units: 0,
            mapping: self.record_mapping(),
            record: Vec::new(),
            unstorable: None,
            inflight: None,
            user_data: offer.user_data,
            opener,
        });
    }

    /// Starts the file services' opening of a file that is about to arrive; the returned tap
    /// feeds it. `stored` octets of the temporary file are an earlier session's durable part
    /// (a restarted transfer): the opener reads them first.
    fn start_opener(
        &self,
        sfid: &Sfid,
        partial: &PartialFile,
        stored: u64,
    ) -> std::io::Result<(crate::stream::Tap, OpenerResult)> {
        use std::io::Read as _;
        let path = partial.partial_path().to_owned();
        let prefix = if stored > 0 {
            Some(std::fs::File::open(&path)?.take(stored))
        } else {
            None
        };
        let (tap, mut stream) = crate::stream::received_stream(prefix);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (services, sfid) = (self.services.clone(), sfid.clone());
        // A thread of its own, like the writer's: a reception holds it for the whole transfer.
        std::thread::Builder::new()
            .name("oftp-open".into())
            .spawn(move || {
                // A panic (a decoder bug on hostile input) must become a verdict like any
                // other failure, not a silent end of the thread.
                let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    services.open_incoming(&sfid, &mut stream, &path)
                }))
                .map_err(|panic| panic_message(panic.as_ref()));
                let _ = tx.send(opened);
            })?;
        Ok((tap, rx))
    }

    async fn on_data(&mut self, bytes: Vec<u8>, end_of_record: bool) {
        let Some(inc) = &mut self.incoming else {
            return;
        };
        inc.units += bytes.len() as u64;
        let record_end = inc.format.is_record_oriented() && end_of_record;
        let result = if inc.format.is_record_oriented() {
            Self::store_record_piece(inc, bytes, end_of_record).await
        } else {
            inc.writer.write(bytes).await
        };
        if record_end {
            inc.records += 1;
            inc.record_end_offset = inc.writer.len();
            inc.record_end_units = inc.units;
        }
        if let Err(e) = result {
            self.error(format!("cannot write received data: {e}")).await;
            let _ = self.session.end_session(
                EsidReason::RESOURCES_NOT_AVAILABLE,
                "receiver cannot store the file",
            );
            return;
        }
        let at_boundary = !inc.format.is_record_oriented() || end_of_record;
        let interval = self.shared.checkpoint_interval;
        if at_boundary
            && inc.units - inc.checkpointed_units >= interval
            && inc.checkpointed_at.elapsed() >= checkpoint_spacing(interval)
        {
            self.checkpoint(false).await;
        }
        if let (Some(inc), Some(info)) = (&mut self.incoming, &self.info)
            && inc.units - inc.reported_units >= 256 * 1024
        {
            inc.reported_units = inc.units;
            let total = inc.base.units + inc.units;
            self.handler.transfer(info, &inc.transfer, total).await;
        }
    }

    /// Stores a piece of an F/V record in the partner's [`RecordMapping`] (see
    /// `crate::source` for the reading side): raw F as it is, raw V after a 2-octet length,
    /// lines followed by the line end. The line end and the length are written on their own
    /// (gathered by the writer), not appended to the record, which could reallocate and copy
    /// it. A record the mapping cannot hold is noted for the end of the file.
    async fn store_record_piece(
        inc: &mut Incoming,
        bytes: Vec<u8>,
        end_of_record: bool,
    ) -> Result<(), crate::store::StoreError> {
        let record = inc.base.records + inc.records + 1;
        match (inc.mapping.line_end(), inc.format) {
            (None, FileFormat::Fixed) => inc.writer.write(bytes).await,
            (None, _) => {
                if !end_of_record {
                    inc.record.extend_from_slice(&bytes);
                    return Ok(());
                }
                let whole = inc.record.len() + bytes.len();
                let Ok(len) = u16::try_from(whole) else {
                    inc.record.clear();
                    inc.unstorable.get_or_insert_with(|| {
                        (
                            EfnaReason::RECORD_LENGTH_NOT_SUPPORTED,
                            format!(
                                "record {record} has {whole} octets; the receiver stores V \
                                 records with a 2-octet length (at most 65535)"
                            ),
                        )
                    });
                    return Ok(());
                };
                inc.writer.write_slice(&len.to_be_bytes()).await?;
                if !inc.record.is_empty() {
                    inc.writer.write_slice(&inc.record).await?;
                    inc.record.clear();
                }
                inc.writer.write(bytes).await
            }
            (Some(line_end), _) => {
                if bytes.contains(&b'\n') {
                    inc.unstorable.get_or_insert_with(|| {
                        (
                            EfnaReason::RECORD_FORMAT_NOT_SUPPORTED,
                            format!(
                                "record {record} contains a line feed; the receiver stores \
                                 records as lines"
                            ),
                        )
                    });
                }
                inc.writer.write(bytes).await?;
                if end_of_record {
                    inc.writer.write_slice(line_end).await?;
                }
                Ok(())
            }
        }
    }

    /// Makes what was received durable and records the restart point. The fsync and the
    /// journal update run on the blocking pool while reception goes on (a slow disk must not
    /// stall the partner); with `wait`, this returns only when they are done. At most one runs
    /// at a time; a checkpoint due while one is running is skipped (the next one covers it).
    async fn checkpoint(&mut self, wait: bool) {
        let Some(inc) = &mut self.incoming else {
            return;
        };
        if !wait && inc.inflight.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if inc.unstorable.is_some() {
            // Not past a record that cannot be stored: a restart must see it again.
            return;
        }
        if let Some(problem) = Self::settle(inc).await {
            self.error(problem).await;
        }
        let Some(inc) = &mut self.incoming else {
            return;
        };
        let job = match inc.writer.sync_job().await {
            Ok(j) => j,
            Err(e) => {
                let msg = format!("cannot sync received data: {e}");
                self.error(msg).await;
                return;
            }
        };
        inc.checkpointed_units = inc.units;
        inc.checkpointed_at = Instant::now();
        let total_units = inc.base.units + inc.units;
        // Only complete records (F/V) or complete 1 KiB blocks (U/T) count: the rest is cut
        // off when the transfer restarts.
        let cp = if inc.format.is_record_oriented() {
            Checkpoint {
                position: inc.base.records + inc.records,
                file_offset: inc.record_end_offset,
                records: inc.base.records + inc.records,
                units: inc.base.units + inc.record_end_units,
            }
        } else {
            let blocks = total_units / 1024;
            Checkpoint {
                position: blocks,
                file_offset: restart_byte_offset(blocks),
                records: 0,
                units: restart_byte_offset(blocks),
            }
        };
        let id = inc.journal_id;
        let journal = self.shared.journal.clone();
        // The journal is updated only after the fsync: it never claims more than is on disk.
        inc.inflight = Some(tokio::task::spawn_blocking(move || {
            job.run()
                .map_err(|e| format!("cannot sync received data: {e}"))?;
            journal
                .checkpoint_receive(id, cp)
                .map_err(|e| format!("journal: {e}"))
        }));
        if wait && let Some(problem) = Self::settle(inc).await {
            self.error(problem).await;
        }
    }

    /// Waits for the running checkpoint, if any; returns its problem.
    async fn settle(inc: &mut Incoming) -> Option<String> {
        let h = inc.inflight.take()?;
        match h.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(format!("checkpoint task failed: {e}")),
        }
    }

    async fn on_file_ended(
        &mut self,
        record_count: u64,
        unit_count: u64,
        received_records: u64,
        received_units: u64,
        record_violation: Option<String>,
    ) {
        let Some(mut inc) = self.incoming.take() else {
            return;
        };
        if let Some(problem) = Self::settle(&mut inc).await {
            // The commit below fsyncs everything again; only the restart point is stale.
            self.error(problem).await;
        }
        let info = self.info.clone();
        let total_units = inc.base.units + received_units;
        let total_records = inc.base.records + received_records;
        let problem = if let Some(v) = record_violation {
            Some((EfnaReason::RECORD_LENGTH_NOT_SUPPORTED, v))
        } else if let Some(p) = inc.unstorable.take() {
            Some(p)
        } else if inc.format.is_record_oriented() && total_records != record_count {
            Some((
                EfnaReason::INVALID_RECORD_COUNT,
                format!("EFID says {record_count} records, {total_records} arrived"),
            ))
        } else if total_units != unit_count {
            Some((
                EfnaReason::INVALID_BYTE_COUNT,
                format!("EFID says {unit_count} octets, {total_units} arrived"),
            ))
        } else {
            None
        };
        let transfer = inc.transfer.clone();
        if let Some((reason, text)) = problem {
            self.refuse_incoming(inc, reason, text).await;
            return;
        }
        let Incoming {
            _active,
            sfid,
            writer,
            journal_id,
            key,
            overwrite,
            user_data,
            opener,
            ..
        } = inc;
        let partial_path = writer.partial_path().to_owned();
        let partial = match writer.finish().await {
            Ok(p) => p,
            Err(e) => {
                let text = format!("cannot write received data: {e}");
                self.refuse_parts(
                    None,
                    &partial_path,
                    journal_id,
                    &transfer,
                    EfnaReason::ACCESS_METHOD_FAILURE,
                    text,
                )
                .await;
                return;
            }
        };
        let mut file_hash: Option<Vec<u8>> = None;
        let verdict = if let Some(opener) = opener {
            // The writer has stored everything, so the opener's stream has ended: its verdict
            // is at most the tail of the work away.
            let opened = opener
                .await
                .unwrap_or_else(|_| Err("the opening thread ended without a verdict".into()));
            Some(match opened {
                Ok(verdict) => verdict,
                Err(cause) => {
                    let failure = crate::security::unopened_file(&sfid);
                    self.error(format!(
                        "opening {} from {} failed: {cause}; answering EFNA {:02}",
                        transfer.virtual_file_name,
                        sfid.originator.trim_end(),
                        failure.reason.0
                    ))
                    .await;
                    Err(failure)
                }
            })
        } else if sfid.signed_eerp {
            // Only the hash of the transmitted file is wanted (for the signed EERP).
            let (services, sfid, path) =
                (self.services.clone(), sfid.clone(), partial_path.clone());
            Some(
                tokio::task::spawn_blocking(move || {
                    services.finish_incoming_with_hash(&sfid, &path)
                })
                .await
                .unwrap_or_else(|e| {
                    Err(ServiceFailure {
                        reason: EfnaReason::UNSPECIFIED,
                        text: format!("file services failed: {e}"),
                    })
                }),
            )
        } else {
            None
        };
        match verdict {
            Some(Ok(hash)) => file_hash = hash,
            Some(Err(failure)) => {
                let failed = FailedReception {
                    partial,
                    partial_path,
                    journal_id,
                    transfer,
                    sfid,
                    key,
                    user_data,
                };
                self.services_failed(failed, failure).await;
                return;
            }
            None => {}
        }
        let store = StorePolicy {
            overwrite,
            ..self.shared.store.clone()
        };
        let placed = match partial.commit(&store).await {
            Ok(p) => p,
            Err(e) => {
                let text = e.to_string();
                self.error(format!(
                    "cannot store {}: {text}",
                    transfer.virtual_file_name
                ))
                .await;
                let delete = self.shared.store.delete_on_error;
                self.discard_reception(None, &partial_path, journal_id, &transfer, delete)
                    .await;
                let _ = self.session.refuse_file(
                    EfnaReason::ACCESS_METHOD_FAILURE,
                    "receiver cannot store the file",
                );
                self.end_transfer_failed(&transfer, text).await;
                return;
            }
        };
        if let Some(hash) = &file_hash {
            // Kept for the signed EERP, which may go out in a later session.
            let (p, k, suite, h) = (
                self.partner_code(),
                key.clone(),
                sfid.cipher_suite.0,
                hash.clone(),
            );
            if let Err(e) = self
                .shared
                .journal
                .call(move |j| j.record_file_hash(JournalDirection::Received, &p, &k, suite, &h))
                .await
            {
                self.error(format!("journal: {e}")).await;
            }
        }
        let mut transfer = transfer;
        transfer.file_hash = file_hash.clone().unwrap_or_default();
        let p = placed.clone();
        if let Err(e) = self
            .shared
            .journal
            .call(move |j| j.complete_receive(journal_id, &p))
            .await
        {
            // The file is in place; without the journal entry a resend would not be seen as a
            // duplicate, but the data is safe, so confirm it and report the problem.
            self.error(format!("journal: {e}")).await;
        }
        if let Err(e) = self.session.confirm_file(false) {
            self.error(format!("cannot confirm file: {e}")).await;
        }
        self.log(
            LogLevel::Info,
            format!(
                "received {} ({} octets) into {}",
                transfer.virtual_file_name,
                total_units,
                placed.display()
            ),
        )
        .await;
        self.certificate_exchange(&sfid, &placed, info.as_ref())
            .await;
        self.received.push(placed);
        let result = TransferResult::Completed {
            records: total_records,
            units: total_units,
        };
        let timing = match &info {
            Some(info) => self.handler.end_transfer(info, &transfer, &result).await,
            None => EndResponseTiming::Now,
        };
        if timing == EndResponseTiming::Later {
            let (p, k) = (self.partner_code(), key.clone());
            if let Err(e) = self
                .shared
                .journal
                .call(move |j| j.defer_end_response(&p, &k))
                .await
            {
                self.error(format!("journal: {e}")).await;
            }
        } else {
            let response = our_end_response(&key, self.local_sfid(), user_data, None);
            self.queue.push_front(Work::EndResponse(response));
        }
    }

    /// A received certificate-exchange file (ODETTE_CERTIFICATE_*) for us: stored, validated,
    /// applied by policy, reported to the handler (seed `CertificateReceived`).
    async fn certificate_exchange(
        &mut self,
        sfid: &Sfid,
        placed: &std::path::Path,
        info: Option<&SessionInfo>,
    ) {
        let Some(kind) = CertificateExchange::from_virtual_file_name(&sfid.dsn) else {
            return;
        };
        let Some(sec) = self.shared.security.get().cloned() else {
            return;
        };
        if !sec.is_local(&sfid.destination) {
            return;
        }
        let signed = matches!(
            sfid.security,
            oftp_proto::codec::SecurityLevel::SIGNED
                | oftp_proto::codec::SecurityLevel::ENCRYPTED_AND_SIGNED
        );
        let (orig, file, dir, ctx) = (
            sfid.originator.clone(),
            placed.to_owned(),
            self.shared.data_dir.join("certificates"),
            sec.clone(),
        );
        let got = tokio::task::spawn_blocking(move || {
            ctx.receive_certificate(&orig, kind, &file, &dir, signed)
        })
        .await
        .unwrap_or_else(|e| Err(format!("certificate task failed: {e}")));
        match got {
            Ok(mut cert) => {
                self.log(
                    LogLevel::Info,
                    format!(
                        "certificate {} from {} stored in {}{}",
                        cert.certificate.subject(),
                        sfid.originator.trim_end(),
                        cert.stored.display(),
                        if cert.replaced {
                            " and now used for this partner"
                        } else {
                            ""
                        }
                    ),
                )
                .await;
                if kind == CertificateExchange::Request {
                    cert.answered = self.answer_certificate_request(&sec, sfid).await;
                }
                if let Some(info) = info {
                    self.handler.certificate_received(info, &cert).await;
                }
            }
            Err(e) => {
                self.error(format!(
                    "certificate exchange file from {}: {e}",
                    sfid.originator.trim_end()
                ))
                .await
            }
        }
    }

    /// Answers a partner's ODETTE_CERTIFICATE_REQUEST with an ODETTE_CERTIFICATE_DELIVER
    /// carrying our certificate (DER), when the partner's `answer_certificate_requests` allows
    /// it: in this session when we may still send in it, otherwise from the partner's outbox
    /// in the next session. The answer goes through the partner's outbox whenever it has one,
    /// so it is durable before it is offered and survives a broken connection. `true` when an
    /// answer is on its way.
    async fn answer_certificate_request(&mut self, sec: &SecurityContext, sfid: &Sfid) -> bool {
        let origin = sfid.originator.trim_end().to_owned();
        let Some(params) = &self.params else {
            return false;
        };
        // SFIDORIG is whatever the sender writes: only the partner that logged in to this
        // session (password, and secure authentication where configured) gets an answer.
        if !params.partner_sfid.trim_end().eq_ignore_ascii_case(&origin) {
            self.log(
                LogLevel::Info,
                format!(
                    "certificate request from {origin} arrived in a session with {}: not answered \
                     (only the partner that logged in is answered)",
                    params.partner_name
                ),
            )
            .await;
            return false;
        }
        let cert = match sec.certificate_request_answer(&origin) {
            Ok(Some(c)) => c.clone(),
            Ok(None) => {
                self.log(
                    LogLevel::Info,
                    format!(
                        "certificate request from {origin} not answered automatically \
                         (answer_certificate_requests is off for this partner)"
                    ),
                )
                .await;
                return false;
            }
            Err(e) => {
                self.log(
                    LogLevel::Info,
                    format!("certificate request from {origin} not answered: {e}"),
                )
                .await;
                return false;
            }
        };
        let can_send_now = self.negotiated.as_ref().is_some_and(|n| n.can_send);
        let outbox = params.outbox.clone();
        let kind = CertificateExchange::Deliver;
        let path = match &outbox {
            Some(dir) => dir.join(kind.virtual_file_name()),
            None => self
                .shared
                .data_dir
                .join("certificates")
                .join("own")
                .join(format!("{}.cer", cert.thumbprint_sha256_hex())),
        };
        let (target, der) = (path.clone(), cert.der().to_vec());
        let written =
            tokio::task::spawn_blocking(move || crate::store::write_atomic(&target, &der))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = written {
            self.error(format!(
                "cannot answer the certificate request from {origin}: {e}"
            ))
            .await;
            return false;
        }
        let how = match (&outbox, can_send_now) {
            // The outbox is read at our first turn; after that the answer joins the queue.
            (Some(_), true) => {
                if self.outbox_scanned {
                    self.queue.push_back(Work::File {
                        file: OutgoingFile::certificate_exchange(kind, &path),
                        job: None,
                        from_outbox: true,
                    });
                }
                "in this session"
            }
            (Some(_), false) => "in the next session",
            (None, true) => {
                self.queue.push_back(Work::File {
                    file: OutgoingFile::certificate_exchange(kind, &path),
                    job: None,
                    from_outbox: false,
                });
                "in this session"
            }
            (None, false) => {
                self.log(
                    LogLevel::Info,
                    format!(
                        "certificate request from {origin} not answered: this session cannot \
                         send and the partner has no outbox; our certificate is in {}",
                        path.display()
                    ),
                )
                .await;
                return false;
            }
        };
        self.log(
            LogLevel::Info,
            format!(
                "answering the certificate request from {origin} with {} ({}) {how}",
                kind.virtual_file_name(),
                cert.subject()
            ),
        )
        .await;
        true
    }

    /// Refuses an offered file for a local problem (logged as an error): SFNA 12 with retry,
    /// `text` to the partner.
    async fn refuse_offer_for_now(&mut self, problem: String, text: &str) {
        self.error(problem).await;
        let _ = self.session.reject_file(
            oftp_proto::codec::SfnaReason::ACCESS_METHOD_FAILURE,
            true,
            text,
        );
    }

    async fn refuse_incoming(&mut self, mut inc: Incoming, reason: EfnaReason, text: String) {
        let _ = Self::settle(&mut inc).await;
        let path = inc.writer.partial_path().to_owned();
        let partial = inc.writer.finish().await.ok();
        self.refuse_parts(partial, &path, inc.journal_id, &inc.transfer, reason, text)
            .await;
    }

    /// EFNA for a received file: DeleteOnError, forget it in the journal, tell the handler.
    async fn refuse_parts(
        &mut self,
        partial: Option<PartialFile>,
        partial_path: &std::path::Path,
        jid: i64,
        transfer: &TransferInfo,
        reason: EfnaReason,
        text: String,
    ) {
        let transfer = transfer.clone();
        let delete = self.shared.store.delete_on_error;
        self.discard_reception(partial, partial_path, jid, &transfer, delete)
            .await;
        let _ = self.session.refuse_file(reason, &text);
        self.end_transfer_failed(&transfer, text).await;
    }

    /// Ends a reception that will not complete. With `delete` (DeleteOnError, or a break in a
    /// session without restart) its temporary file is removed and its journal row dropped. A
    /// file kept (DeleteOnError off) or one that cannot be removed keeps its row, with the
    /// restart point back at 0, so no partial file is ever left without its row: the next
    /// attempt at the same file replaces it, or the retention sweep ([`crate::partials`])
    /// removes it. Log lines name the file.
    async fn discard_reception(
        &self,
        partial: Option<PartialFile>,
        path: &std::path::Path,
        jid: i64,
        transfer: &TransferInfo,
        delete: bool,
    ) {
        let name = &transfer.virtual_file_name;
        let removed = if delete {
            let r = match partial {
                Some(p) => p.abandon(true).await,
                None => {
                    let p = path.to_owned();
                    tokio::task::spawn_blocking(move || crate::store::remove_partial(&p))
                        .await
                        .unwrap_or_else(|e| Err(StoreError::Task(e.to_string())))
                }
            };
            match r {
                Ok(()) => true,
                Err(e) => {
                    self.error(format!(
                        "cannot remove the partial file of {name}: {e}; it stays in the journal \
                         until the next attempt at the file or the partial-reception sweep"
                    ))
                    .await;
                    false
                }
            }
        } else {
            if let Some(p) = partial {
                let _ = p.abandon(false).await;
            }
            self.log(
                LogLevel::Info,
                format!(
                    "keeping the partial file {} of {name} (delete_on_error is off) until the \
                     next attempt at the file or the partial-reception sweep",
                    path.display()
                ),
            )
            .await;
            false
        };
        let journal = &self.shared.journal;
        let done = if removed {
            journal.call(move |j| j.drop_receive(jid)).await
        } else {
            journal
                .call(move |j| j.checkpoint_receive(jid, Checkpoint::default()))
                .await
        };
        if let Err(e) = done {
            self.error(format!("journal: {e}")).await;
        }
    }

    /// A received file the file services could not open. From its originator directly: EFNA
    /// (21 signature, 22 decryption, 23 decompression), so the sender knows at once. Relayed by
    /// an intermediary: the transmission itself succeeded, so EFPA to the intermediary, and a
    /// NERP (31, 33, 32) to the originator, the one who can do something about it (RFC 5024
    /// 4.3.7: the final node "unable to process the file" sends a NERP; an EFNA would only
    /// make the intermediary send the same file again).
    async fn services_failed(&mut self, failed: FailedReception, failure: ServiceFailure) {
        let FailedReception {
            partial,
            partial_path,
            journal_id,
            transfer,
            sfid,
            key,
            user_data,
        } = failed;
        let ServiceFailure { reason, text } = failure;
        let nerp_reason = match reason {
            EfnaReason::INVALID_SIGNATURE => Some(NerpReason::INVALID_SIGNATURE),
            EfnaReason::DECRYPTION_FAILURE => Some(NerpReason::DECRYPTION_FAILED),
            EfnaReason::DECOMPRESSION_FAILURE => Some(NerpReason::DECOMPRESSION_FAILED),
            _ => None,
        };
        let relayed = self
            .params
            .as_ref()
            .is_some_and(|p| p.partner_sfid.trim_end() != sfid.originator.trim_end());
        let Some(nerp_reason) = nerp_reason.filter(|_| relayed) else {
            self.refuse_parts(
                Some(partial),
                &partial_path,
                journal_id,
                &transfer,
                reason,
                text,
            )
            .await;
            return;
        };
        if sfid.signed_eerp {
            // The NERP must be signed over the hash of what was transmitted.
            let (s, path) = (sfid.clone(), partial_path.clone());
            let hash =
                tokio::task::spawn_blocking(move || crate::transport::transmitted_hash(&s, &path))
                    .await;
            if let Ok(Ok(Some(h))) = hash {
                let (p, k, suite) = (self.partner_code(), key.clone(), sfid.cipher_suite.0);
                if let Err(e) = self
                    .shared
                    .journal
                    .call(move |j| {
                        j.record_file_hash(JournalDirection::Received, &p, &k, suite, &h)
                    })
                    .await
                {
                    self.error(format!("journal: {e}")).await;
                }
            }
        }
        let delete = self.shared.store.delete_on_error;
        self.discard_reception(Some(partial), &partial_path, journal_id, &transfer, delete)
            .await;
        if let Err(e) = self.session.confirm_file(false) {
            self.error(format!("cannot confirm file: {e}")).await;
        }
        self.log(
            LogLevel::Info,
            format!(
                "{} from {} (relayed by {}) cannot be opened: {text}; answering NERP {:02} to its originator",
                transfer.virtual_file_name,
                sfid.originator.trim_end(),
                self.partner_code(),
                nerp_reason.0
            ),
        )
        .await;
        self.end_transfer_failed(&transfer, text.clone()).await;
        let negative = NegativeResponse {
            reason: nerp_reason,
            creator: self.local_sfid().to_owned(),
            text,
        };
        let response = our_end_response(&key, self.local_sfid(), user_data, Some(negative));
        self.queue.push_front(Work::EndResponse(response));
    }

    /// How F/V records are laid out in local files for this session's partner.
    fn record_mapping(&self) -> RecordMapping {
        self.params
            .as_ref()
            .map_or_else(RecordMapping::default, |p| p.record_mapping)
    }

    /// Our SFID code in this session (empty before the session is accepted).
    fn local_sfid(&self) -> &str {
        self.params.as_ref().map_or("", |p| p.local_sfid.as_str())
    }

    async fn end_transfer_failed(&self, transfer: &TransferInfo, reason: String) {
        if let Some(info) = &self.info {
            self.handler
                .end_transfer(info, transfer, &TransferResult::Failed { reason })
                .await;
        }
    }

    /// The connection broke or the session ended during a reception: keep the durable part for
    /// a restart (checkpoint what arrived), never place it under the final name.
    async fn finish_incoming_on_break(&mut self) {
        if self.incoming.is_none() {
            return;
        }
        let restart = self.negotiated.as_ref().is_some_and(|n| n.restart);
        if restart {
            // What arrived before the break is valid up to the last complete record or block.
            self.checkpoint(true).await;
        }
        if let Some(inc) = self.incoming.take() {
            let transfer = inc.transfer.clone();
            let jid = inc.journal_id;
            let path = inc.writer.partial_path().to_owned();
            let partial = inc.writer.finish().await;
            if restart {
                // Its journal row holds the last durable restart point.
                if let Ok(p) = partial {
                    let _ = p.abandon(false).await;
                }
                self.log(
                    LogLevel::Info,
                    format!(
                        "keeping {} of {} for a restart",
                        path.display(),
                        transfer.virtual_file_name
                    ),
                )
                .await;
            } else {
                self.discard_reception(partial.ok(), &path, jid, &transfer, true)
                    .await;
            }
            self.end_transfer_failed(&transfer, "the session ended during the transfer".into())
                .await;
        }
    }

    async fn on_end_response(&mut self, r: WireEndResponse) {
        let (date, time) = match &r {
            WireEndResponse::Positive(e) => (e.date_time.date_string(), e.date_time.time_string()),
            WireEndResponse::Negative(n) => (n.date_time.date_string(), n.date_time.time_string()),
        };
        let mut resp = match r {
            WireEndResponse::Positive(e) => EndResponse {
                virtual_file_name: e.dsn.trim_end().to_owned(),
                stamp: FileStamp::from(e.date_time),
                destination: e.destination.trim_end().to_owned(),
                originator: e.originator.trim_end().to_owned(),
                user_data: e.user_data.trim_end().to_owned(),
                negative: None,
                file_hash: e.hash,
                signature: e.signature,
                signature_verified: false,
            },
            WireEndResponse::Negative(n) => EndResponse {
                virtual_file_name: n.dsn.trim_end().to_owned(),
                stamp: FileStamp::from(n.date_time),
                destination: n.destination.trim_end().to_owned(),
                originator: n.originator.trim_end().to_owned(),
                user_data: String::new(),
                negative: Some(NegativeResponse {
                    reason: n.reason,
                    creator: n.creator.trim_end().to_owned(),
                    text: n.text,
                }),
                file_hash: n.hash,
                signature: n.signature,
                signature_verified: false,
            },
        };
        // The response names the file by its originator (us, the EERP's destination).
        let key = FileKey::new(&resp.destination, &resp.virtual_file_name, resp.stamp);
        match self.check_receipt(&key, &date, &time, &resp).await {
            Ok(verified) => resp.signature_verified = verified,
            Err(text) => {
                // Not proof of delivery: keep the file awaiting a valid response.
                self.error(format!(
                    "end response for {} from {} not accepted: {text}",
                    resp.virtual_file_name, resp.originator
                ))
                .await;
                for (f, o) in &mut self.outcomes {
                    if *o == FileOutcome::AwaitingEndResponse
                        && f.virtual_file_name.trim_end() == key.dsn
                        && f.stamp == Some(key.stamp)
                    {
                        *o = FileOutcome::EndResponseRejected { text: text.clone() };
                        break;
                    }
                }
                return;
            }
        }
        let entry = EndResponseEntry {
            direction: JournalDirection::Received,
            key: key.clone(),
            destination: resp.destination.clone(),
            negative: resp
                .negative
                .as_ref()
                .map(|n| (u16::from(n.reason.0), n.text.clone())),
            partner: self.partner_code(),
        };
        if let Err(e) = self
            .shared
            .journal
            .call(move |j| j.record_end_response(&entry))
            .await
        {
            // The RTR queued with this response would tell the partner it may forget it.
            let description = format!(
                "cannot record the end response for {}: journal: {e}; hanging up without RTR so \
                 the partner sends it again",
                resp.virtual_file_name
            );
            self.error(description.clone()).await;
            self.hang_up(description);
            return;
        }
        let outcome = match &resp.negative {
            None => FileOutcome::Delivered,
            Some(n) => FileOutcome::NotDelivered {
                reason: n.reason,
                text: n.text.clone(),
            },
        };
        // Settle the matching file of this run, if any.
        let mut settled = false;
        for (f, o) in &mut self.outcomes {
            // A duplicate refusal followed by the EERP: the partner had the file all along.
            let open = *o == FileOutcome::AwaitingEndResponse
                || matches!(o, FileOutcome::Rejected { reason, .. }
                    if *reason == oftp_proto::codec::SfnaReason::DUPLICATE_FILE);
            if open && f.virtual_file_name.trim_end() == key.dsn && f.stamp == Some(key.stamp) {
                *o = outcome.clone();
                settled = true;
                break;
            }
        }
        if !settled && self.initiator.is_some() {
            // For a file of an earlier run: reported too, with the local file it confirms.
            let k = key.clone();
            let local_file = match self.shared.journal.call(move |j| j.sent_by_key(&k)).await {
                Ok(sent) => sent.map(|s| s.local.path),
                Err(e) => {
                    self.error(format!("journal: {e}")).await;
                    None
                }
            };
            self.earlier.push(EarlierEndResponse {
                local_file,
                response: resp.clone(),
            });
        }
        self.log(
            LogLevel::Info,
            match &resp.negative {
                None => format!(
                    "EERP for {} from {}",
                    resp.virtual_file_name, resp.originator
                ),
                Some(n) => format!(
                    "NERP for {} from {}: {} (NERP {:02}) {}",
                    resp.virtual_file_name,
                    resp.originator,
                    n.reason.description().unwrap_or("unknown reason"),
                    n.reason.0,
                    n.text
                ),
            },
        )
        .await;
        if let Some(info) = &self.info {
            self.handler.end_response(info, &resp).await;
        }
    }

    // ---- sending -------------------------------------------------------------------------

    /// Feeds file data while credit allows; `Ok(true)` if something was written.
    async fn feed_data(&mut self) -> Result<bool, TransportGone> {
        let Some(out) = &mut self.outgoing else {
            return Ok(false);
        };
        if out.finished || out.source.is_none() {
            return Ok(false);
        }
        if self.handle.take_interrupt() {
            let _ = self.session.end_session(
                EsidReason::UNSPECIFIED,
                "transfer interrupted by the operator",
            );
            return Ok(true);
        }
        if self.shutdown.forced.is_cancelled() {
            return Ok(false);
        }
        let mut wrote = false;
        // Chunks that fill one DATA buffer each (uncompressed), so every write_data call
        // completes a frame and nothing is carried over between calls.
        let chunk = self.negotiated.as_ref().map_or(4096, |n| {
            oftp_proto::data::uncompressed_capacity(n.buffer_size as usize)
        });
        // Octets queued since the last write, and fed in this turn of the loop.
        let (mut queued, mut turn) = (0usize, 0usize);
        // Some chunks per turn of the loop (at most 1 MiB), then look at the socket and
        // signals again.
        for _ in 0..64 {
            if !self.session.can_accept_data() {
                break;
            }
            let Some(out) = &mut self.outgoing else {
                break;
            };
            let Some(src) = out.source.as_mut() else {
                break;
            };
            match src.next_chunk(chunk) {
                Ok(Chunk::Data(bytes, eor)) => {
                    queued += bytes.len();
                    turn += bytes.len();
                    if let Err(e) = self.session.write_data(bytes, eor) {
                        let msg = format!("cannot send {}: {e}", out.file.path.display());
                        let _ = self
                            .session
                            .end_session(EsidReason::UNSPECIFIED, "sender cannot read the file");
                        self.error(msg).await;
                        return Ok(true);
                    }
                }
                Ok(Chunk::Pending) => break,
                Ok(Chunk::End) => {
                    let (records, units) = (src.records(), src.units());
                    let sealed_hash = src.sealed_mut().and_then(SealedSource::take_hash);
                    out.finished = true;
                    out.source = None;
                    if let Some(hash) = sealed_hash {
                        // What the partner's signed EERP must contain; it may come in a later
                        // session. Recorded before EFID, so before any EERP can arrive.
                        out.transfer.file_hash = hash.clone();
                        let t = &out.transfer;
                        let k = FileKey::new(&t.originator, &t.virtual_file_name, t.stamp);
                        let suite = out.cipher_suite;
                        if let Err(e) = self
                            .shared
                            .journal
                            .call(move |j| {
                                j.record_file_hash(JournalDirection::Sent, "", &k, suite, &hash)
                            })
                            .await
                        {
                            self.error(format!("journal: {e}")).await;
                        }
                    }
                    if let Err(e) = self.session.finish_file(records, units) {
                        self.error(format!("cannot end file: {e}")).await;
                    }
                    wrote = true;
                    break;
                }
                Err(e) => {
                    let msg = format!("cannot read {}: {e}", out.file.path.display());
                    let _ = self
                        .session
                        .end_session(EsidReason::UNSPECIFIED, "sender cannot read the file");
                    self.error(msg).await;
                    return Ok(true);
                }
            }
            wrote = true;
            // Small buffers are gathered into writes of about 64 KiB (one system call for
            // many frames); a large buffer goes out alone, without a copy.
            if queued >= FLUSH_AT {
                self.flush().await?;
                queued = 0;
            }
            if turn >= 1024 * 1024 {
                break;
            }
        }
        self.flush().await?;
        if let (Some(out), Some(info)) = (&mut self.outgoing, &self.info)
            && let Some(src) = &out.source
            && src.units() - out.reported_units >= 256 * 1024
        {
            out.reported_units = src.units();
            self.handler
                .transfer(info, &out.transfer, src.units())
                .await;
        }
        Ok(wrote)
    }

    /// We hold the turn and are idle: do the next thing. `true` if something was done.
    async fn act(&mut self) -> bool {
        let Some((may_end, may_cd)) = self.ready else {
            return false;
        };
        if !self.session.is_speaker() || self.outgoing.is_some() || self.awaiting_rtr.is_some() {
            return false;
        }
        self.drain_requests();
        if self.forced_seen || (self.graceful_seen && self.incoming.is_none()) {
            self.ready = None;
            let (reason, text) = if may_end {
                (EsidReason::NORMAL, "")
            } else {
                (EsidReason::EMERGENCY_CLOSE_DOWN, "server shutting down")
            };
            let _ = self.session.end_session(reason, text);
            return true;
        }
        if !self.outbox_scanned {
            self.outbox_scanned = true;
            self.scan_outbox().await;
        }
        if let Some(work) = self.queue.pop_front() {
            self.ready = None;
            match work {
                Work::EndResponse(r) => self.send_end_response(r).await,
                Work::File {
                    file,
                    job,
                    from_outbox,
                } => self.start_sending(file, job, from_outbox).await,
            }
            // Nothing went out (the file could not be read, ...): the turn is still ours and
            // the session will not announce it again.
            if self.outgoing.is_none() && self.awaiting_rtr.is_none() && !self.session.is_closed() {
                self.ready = Some((may_end, may_cd));
            }
            return true;
        }
        if self.waiting && !self.logoff && !self.want_cd {
            return false;
        }
        self.ready = None;
        if may_end {
            let _ = self.session.end_session(EsidReason::NORMAL, "");
        } else if may_cd {
            self.want_cd = false;
            let _ = self.session.change_direction();
        }
        true
    }

    fn drain_requests(&mut self) {
        while let Ok(r) = self.requests.try_recv() {
            self.take_request(r);
        }
    }

    fn take_request(&mut self, r: Request) {
        match r {
            Request::SendFile(file) => self.queue.push_back(Work::File {
                file,
                job: None,
                from_outbox: false,
            }),
            Request::SendEndResponse(resp) => self.queue.push_back(Work::EndResponse(resp)),
            Request::ChangeDirection => self.want_cd = true,
            Request::Logoff => self.logoff = true,
            Request::Disconnect => {
                // Abrupt by definition: drop the transport; the peer sees the connection close.
                self.session.handle_transport_closed(Instant::now());
                self.ended = Some(Disconnected {
                    reason: None,
                    by_peer: false,
                    description: "disconnected by the application".into(),
                });
            }
        }
        // Any request ends a handler's Wait: it asked for something.
        self.waiting = false;
    }

    async fn scan_outbox(&mut self) {
        // A partner that only sends (or a session we may not send in) gets nothing offered.
        if !self.negotiated.as_ref().is_some_and(|n| n.can_send) {
            return;
        }
        let Some(dir) = self.params.as_ref().and_then(|p| p.outbox.clone()) else {
            return;
        };
        // Listing a directory is a blocking call: on the blocking pool.
        let listed = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Vec::new();
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.path())
                .filter(|p| {
                    !p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
                })
                .collect();
            files.sort();
            files
        })
        .await
        .unwrap_or_default();
        for path in listed {
            self.queue.push_back(Work::File {
                file: OutgoingFile::new(path),
                job: None,
                from_outbox: true,
            });
        }
    }

    /// Checks a received EERP/NERP signature: against the partner's receipt certificate and
    /// the hash we recorded when sending the file. `Ok(true)`: signed and valid; `Ok(false)`:
    /// unsigned and nothing requires a signature; `Err`: not acceptable.
    async fn check_receipt(
        &self,
        key: &FileKey,
        date: &str,
        time: &str,
        resp: &EndResponse,
    ) -> Result<bool, String> {
        let k = key.clone();
        let recorded = self
            .shared
            .journal
            .call(move |j| j.file_hash(JournalDirection::Sent, "", &k))
            .await
            .map_err(|e| format!("journal: {e}"))?;
        let Some(sec) = self.shared.security.get() else {
            return match recorded {
                Some(_) => {
                    Err("a signed response was asked for but no security is configured".into())
                }
                None => Ok(false),
            };
        };
        let required = recorded.is_some() || sec.requires_signed_receipts(&resp.originator);
        if resp.signature.is_empty() {
            return if required {
                Err("the response is not signed".into())
            } else {
                Ok(false)
            };
        }
        let file_hash = match &recorded {
            Some((_, h)) => {
                if !resp.file_hash.is_empty() && resp.file_hash != *h {
                    return Err(
                        "the response's file hash is not the hash of the file we sent".into(),
                    );
                }
                h.clone()
            }
            None => resp.file_hash.clone(),
        };
        let fields = oftp_security::receipt::ReceiptFields {
            dsn: resp.virtual_file_name.clone(),
            date: date.to_owned(),
            time: time.to_owned(),
            destination: resp.destination.clone(),
            originator: resp.originator.clone(),
            nerp_creator: resp.negative.as_ref().map(|n| n.creator.clone()),
            file_hash,
        };
        // May fetch a CRL from a distribution point: off the async threads.
        let (sec, originator, signature) =
            (sec.clone(), resp.originator.clone(), resp.signature.clone());
        tokio::task::spawn_blocking(move || sec.verify_receipt(&originator, &signature, &fields))
            .await
            .map_err(|e| format!("receipt check failed: {e}"))?
            .map(|()| true)
    }

    /// Fills EERPHSH/EERPSIG (or NERP's) when the file asked for a signed response: the hash
    /// recorded when it was received (unless the application gave one) and our signature
    /// (unless the application gave one, e.g. a routed response). A response we cannot sign
    /// (no receipt-signing key, or signing fails) goes out unsigned and without hash, with a
    /// warning (RFC 5024 3.3.5 note 3, 4.3.6; 5.3.13: an unsigned EERP carries no hash); only
    /// a journal failure keeps it pending.
    async fn sign_end_response(&self, r: &mut EndResponse) -> Result<(), String> {
        if !r.signature.is_empty() {
            return Ok(());
        }
        let key = FileKey::new(&r.destination, &r.virtual_file_name, r.stamp);
        let partner = self.partner_code();
        let recorded = self
            .shared
            .journal
            .call(move |j| j.file_hash(JournalDirection::Received, &partner, &key))
            .await
            .map_err(|e| format!("journal: {e}"))?;
        let Some((suite, hash)) = recorded else {
            return Ok(());
        };
        let Some(sec) = self.shared.security.get() else {
            self.send_unsigned(
                r,
                "no security is configured, so there is no receipt-signing key",
            )
            .await;
            return Ok(());
        };
        if r.file_hash.is_empty() {
            r.file_hash = hash;
        }
        let time = VirtualFileTime::from(r.stamp);
        let fields = oftp_security::receipt::ReceiptFields {
            dsn: r.virtual_file_name.clone(),
            date: time.date_string(),
            time: time.time_string(),
            destination: r.destination.clone(),
            originator: r.originator.clone(),
            nerp_creator: r.negative.as_ref().map(|n| n.creator.clone()),
            file_hash: r.file_hash.clone(),
        };
        let (sec, f) = (sec.clone(), fields);
        match tokio::task::spawn_blocking(move || sec.sign_receipt(&f, suite))
            .await
            .unwrap_or_else(|e| Err(format!("signing task failed: {e}")))
        {
            Ok(signature) => r.signature = signature,
            Err(e) => self.send_unsigned(r, &e).await,
        }
        Ok(())
    }

    /// Prepares `r` to go out unsigned although a signed response was asked for, and warns.
    async fn send_unsigned(&self, r: &mut EndResponse, why: &str) {
        self.error(format!(
            "{} asked for a signed end response for {}, but it cannot be signed: {why}; \
             sending it unsigned (RFC 5024 3.3.5)",
            r.originator.trim_end(),
            r.virtual_file_name
        ))
        .await;
        r.file_hash.clear();
        r.signature.clear();
    }

    async fn send_end_response(&mut self, mut r: EndResponse) {
        // NERP came with OFTP 1.4 (RFC 5024 1.2): a 1.2/1.3 partner cannot receive one, and an
        // EERP in its place would report a delivery that did not happen. Nothing is sent; the
        // operator hears it as an error with what to do.
        let level = self.session.level();
        if let Some(n) = r.negative.as_ref().filter(|_| !level.has_nerp()) {
            self.error(format!(
                "not sending NERP {:02} for {} ({}) to {}: this session runs at OFTP level {}, \
                 which has no negative end response (NERP exists from OFTP 1.4, level 4, on); \
                 nothing was sent in its place: tell the originator {} another way, or send the \
                 NERP in a session at level 4 or 5",
                n.reason.0,
                r.virtual_file_name,
                r.stamp,
                self.partner_code(),
                level.0,
                r.destination
            ))
            .await;
            return;
        }
        if let Err(e) = self.sign_end_response(&mut r).await {
            // The journal could not say whether (and over which hash) to sign: try later.
            self.error(format!(
                "cannot sign the end response for {}: {e}",
                r.virtual_file_name
            ))
            .await;
            return;
        }
        let time = VirtualFileTime::from(r.stamp);
        let wire = match &r.negative {
            None => WireEndResponse::Positive(Eerp {
                dsn: r.virtual_file_name.clone(),
                date_time: time,
                user_data: r.user_data.clone(),
                destination: r.destination.clone(),
                originator: r.originator.clone(),
                hash: r.file_hash.clone(),
                signature: r.signature.clone(),
            }),
            Some(n) => WireEndResponse::Negative(Nerp {
                dsn: r.virtual_file_name.clone(),
                date_time: time,
                destination: r.destination.clone(),
                originator: r.originator.clone(),
                creator: n.creator.clone(),
                reason: n.reason,
                text: n.text.clone(),
                hash: r.file_hash.clone(),
                signature: r.signature.clone(),
            }),
        };
        match self.session.send_end_response(wire) {
            Ok(()) => self.awaiting_rtr = Some(r),
            Err(e) => {
                self.error(format!(
                    "cannot send end response for {}: {e}",
                    r.virtual_file_name
                ))
                .await
            }
        }
    }

    async fn start_sending(
        &mut self,
        mut file: OutgoingFile,
        job: Option<usize>,
        from_outbox: bool,
    ) {
        let fail = |reason: String| FileOutcome::NotSent { reason };
        let Some(params) = &self.params else {
            self.outcomes.push((file, fail("no session".into())));
            return;
        };
        let meta = match std::fs::metadata(&file.path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                let r = format!("{} is not a regular file", file.path.display());
                self.error(r.clone()).await;
                self.record_outcome(file, job, fail(r));
                return;
            }
            Err(e) => {
                let r = format!("cannot read {}: {e}", file.path.display());
                self.error(r.clone()).await;
                self.record_outcome(file, job, fail(r));
                return;
            }
        };
        if file.virtual_file_name.trim().is_empty() {
            let r = format!("{} has no usable virtual file name", file.path.display());
            self.record_outcome(file, job, fail(r));
            return;
        }
        let originator = file
            .originator
            .clone()
            .unwrap_or_else(|| params.local_sfid.clone());
        let destination = file
            .destination
            .clone()
            .unwrap_or_else(|| params.partner_sfid.clone());
        let canonical = std::fs::canonicalize(&file.path).unwrap_or_else(|_| file.path.clone());
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let local = LocalFileId {
            partner: params.partner_name.clone(),
            path: canonical,
            size: meta.len(),
            mtime_ns,
        };
        // F/V: the local file must hold whole records in the partner's mapping. Checked before
        // anything is offered or journalled: a bad file is refused here with the record and the
        // problem, and the session goes on with the next file.
        let read_as = local_read_format(&file);
        let records = if read_as.is_record_oriented() {
            let (path, lrecl, mapping) = (
                file.path.clone(),
                file.max_record_len,
                params.record_mapping,
            );
            let checked =
                tokio::task::spawn_blocking(move || check_records(&path, read_as, lrecl, mapping))
                    .await
                    .unwrap_or_else(|e| {
                        Err(RecordFileError::Io {
                            path: file.path.clone(),
                            error: std::io::Error::other(e.to_string()),
                        })
                    });
            match checked {
                Ok(n) => n,
                Err(e) => {
                    let r = format!("not offered: {e}");
                    self.error(r.clone()).await;
                    self.record_outcome(file, job, fail(r));
                    return;
                }
            }
        } else {
            0
        };
        // The newest earlier attempt to send this very file decides, so that sending it again
        // converges: one still sending is resumed under its identity (the partner restarts it
        // or, if it stored it already, answers SFNA 13); one the partner stored (EFPA) is not
        // sent again, its EERP may come in this or any later session (RFC 5024 section
        // 4.3.6); one delivered is reported as such. A refused or NERPed one is sent anew.
        // Not an OFTP 1.2/1.3 stamp (counter 0) once the level carries a counter: the partner
        // would refuse it.
        let extended = self
            .negotiated
            .as_ref()
            .is_some_and(|n| n.level.has_extended_stamp());
        let l2 = local.clone();
        let previous = match self.shared.journal.call(move |j| j.latest_send(&l2)).await {
            Ok(p) => p,
            Err(e) => {
                // Without it the file would go out under a new identity: a second copy.
                let r = format!("journal: {e}");
                self.error(r.clone()).await;
                self.record_outcome(file, job, fail(r));
                return;
            }
        };
        let previous = previous.filter(|p| {
            p.key.dsn == file.virtual_file_name.trim_end()
                && p.key.originator == originator.trim_end()
                && file.stamp.is_none_or(|s| s == p.key.stamp)
        });
        if let Some(p) = &previous
            && matches!(
                p.state,
                SendState::AwaitingEndResponse | SendState::Delivered
            )
        {
            file.stamp = Some(p.key.stamp);
            let (outcome, how) = if p.state == SendState::Delivered {
                (FileOutcome::Delivered, "its EERP arrived earlier")
            } else {
                (
                    FileOutcome::AwaitingEndResponse,
                    "waiting for its EERP, which may come in this or a later session",
                )
            };
            self.log(
                LogLevel::Info,
                format!(
                    "not sending {} again: the partner stored it as {} {}; {how}",
                    file.path.display(),
                    p.key.dsn,
                    p.key.stamp
                ),
            )
            .await;
            self.record_outcome(file, job, outcome);
            return;
        }
        let previous = previous
            .filter(|p| p.state == SendState::Sending && (p.key.stamp.counter != 0 || !extended));
        let resumed = previous.is_some();
        let (sent_id, stamp) = match previous {
            Some(p) => (p.id, p.key.stamp),
            None => {
                let mut stamp = file.stamp.unwrap_or_else(FileStamp::now);
                if !extended {
                    // OFTP 1.2/1.3 carry no counter: keep the identity what the partner will see.
                    stamp.counter = 0;
                }
                let key = FileKey::new(&originator, &file.virtual_file_name, stamp);
                let dest = destination.clone();
                match self
                    .shared
                    .journal
                    .call(move |j| j.begin_send(&local, &key, &dest))
                    .await
                {
                    Ok(id) => (id, stamp),
                    Err(e) => {
                        let r = format!("journal: {e}");
                        self.error(r.clone()).await;
                        self.record_outcome(file, job, fail(r));
                        return;
                    }
                }
            }
        };
        file.stamp = Some(stamp);
        let restart_ok = self.negotiated.as_ref().is_some_and(|n| n.restart);
        let restart_position = if resumed && restart_ok {
            if read_as.is_record_oriented() {
                records
            } else {
                meta.len() / 1024
            }
        } else {
            0
        };
        let mut file_hash: Option<Vec<u8>> = None;
        let sfid = Sfid {
            dsn: file.virtual_file_name.clone(),
            date_time: VirtualFileTime::from(stamp),
            user_data: file.user_data.clone(),
            destination: destination.clone(),
            originator: originator.clone(),
            format: file.format,
            max_record_len: file.max_record_len,
            file_size: size_in_kib(meta.len()),
            original_file_size: size_in_kib(meta.len()),
            restart_position,
            security: oftp_proto::codec::SecurityLevel::NONE,
            cipher_suite: oftp_proto::codec::CipherSuite::NONE,
            compression: oftp_proto::codec::FileCompression::NONE,
            envelope: oftp_proto::codec::FileEnvelope::NONE,
            signed_eerp: false,
            description: file.description.clone(),
        };
        // Deciding may hash the whole file (a signed EERP without other services): off the
        // async threads. Processing (sign, compress, encrypt) then runs while the file is sent.
        let (services, source) = (self.services.clone(), file.path.clone());
        let forwarded = file.forwarded;
        let planned = tokio::task::spawn_blocking(move || {
            let mut sfid = sfid;
            let r = match forwarded {
                // Neither from nor for us: passed on unchanged, with the fields it came with.
                Some(fields) => {
                    fields.apply(&mut sfid);
                    Ok(OutgoingPlan::AsIs { file_hash: None })
                }
                None => services.stream_outgoing(&mut sfid, &source),
            };
            (sfid, r)
        })
        .await;
        let (mut sfid, planned) = match planned {
            Ok(x) => x,
            Err(e) => {
                let r = format!("cannot prepare {}: {e}", file.path.display());
                self.error(r.clone()).await;
                self.record_outcome(file, job, fail(r));
                return;
            }
        };
        let chunk = self.negotiated.as_ref().map_or(4096, |n| {
            oftp_proto::data::uncompressed_capacity(n.buffer_size as usize)
        });
        let sealed = match planned.and_then(|plan| match plan {
            OutgoingPlan::AsIs { file_hash: h } => {
                file_hash = h;
                Ok(None)
            }
            OutgoingPlan::Processed(seal) => SealedSource::spawn(seal, chunk).map(Some),
        }) {
            Ok(sealed) => sealed,
            Err(e) => {
                let r = format!("cannot prepare {}: {e}", file.path.display());
                self.error(r.clone()).await;
                self.record_outcome(file, job, fail(r));
                return;
            }
        };
        if sealed.is_some() {
            // A processed form differs at every attempt (fresh keys): from position 0.
            sfid.restart_position = 0;
        }
        if let Some(hash) = &file_hash {
            // What the partner's signed EERP must contain; it may come in a later session.
            let k = FileKey::new(&originator, &file.virtual_file_name, stamp);
            let (suite, h) = (sfid.cipher_suite.0, hash.clone());
            if let Err(e) = self
                .shared
                .journal
                .call(move |j| j.record_file_hash(JournalDirection::Sent, "", &k, suite, &h))
                .await
            {
                self.error(format!("journal: {e}")).await;
            }
        }
        let cipher_suite = sfid.cipher_suite.0;
        if let Err(e) = self.session.send_file(sfid) {
            let r = format!("cannot offer {}: {e}", file.virtual_file_name);
            self.error(r.clone()).await;
            self.record_outcome(file, job, fail(r));
            return;
        }
        let transfer = TransferInfo {
            direction: Direction::Outgoing,
            local_file: file.path.clone(),
            virtual_file_name: file.virtual_file_name.clone(),
            stamp,
            originator,
            destination,
            restart_position: 0,
            file_hash: file_hash.unwrap_or_default(),
        };
        self.outgoing = Some(Outgoing {
            job,
            resumed,
            file,
            sealed,
            cipher_suite,
            sent_id,
            transfer,
            source: None,
            finished: false,
            reported_units: 0,
            from_outbox,
        });
    }

    fn record_outcome(&mut self, file: OutgoingFile, job: Option<usize>, outcome: FileOutcome) {
        if job.is_some() {
            self.outcomes.push((file, outcome));
        }
    }

    async fn on_file_accepted(&mut self, restart_position: u64) {
        let mapping = self.record_mapping();
        let Some(out) = &mut self.outgoing else {
            return;
        };
        out.transfer.restart_position = restart_position;
        let opened = if let Some(sealed) = out.sealed.take() {
            // Asked for from 0, so the answer is 0 too.
            Ok(OutgoingSource::Sealed(sealed))
        } else {
            // Opening may read up to the restart position (records): on the blocking pool.
            let (path, format, lrecl) = (
                out.file.path.clone(),
                local_read_format(&out.file),
                out.file.max_record_len,
            );
            tokio::task::spawn_blocking(move || {
                FileSource::open(&path, format, lrecl, mapping, restart_position)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            .map(OutgoingSource::File)
        };
        let shown = out.file.path.clone();
        let Some(out) = &mut self.outgoing else {
            return;
        };
        match opened {
            Ok(src) => out.source = Some(src),
            Err(e) => {
                let msg = format!("cannot read {}: {e}", shown.display());
                let _ = self
                    .session
                    .end_session(EsidReason::UNSPECIFIED, "sender cannot read the file");
                self.error(msg).await;
                return;
            }
        }
        let transfer = out.transfer.clone();
        self.log(
            LogLevel::Info,
            format!(
                "sending {} as {}{}",
                transfer.local_file.display(),
                transfer.virtual_file_name,
                if restart_position > 0 {
                    format!(" (restart at {restart_position})")
                } else {
                    String::new()
                }
            ),
        )
        .await;
        if let Some(info) = &self.info {
            self.handler.start_transfer(info, &transfer).await;
        }
    }

    async fn outgoing_done(
        &mut self,
        outcome: FileOutcome,
        problem: Option<String>,
        settled: bool,
    ) {
        let Some(out) = self.outgoing.take() else {
            return;
        };
        let state = match (&outcome, settled) {
            (FileOutcome::AwaitingEndResponse, _) => Some(SendState::AwaitingEndResponse),
            (_, true) => Some(SendState::Failed),
            _ => None,
        };
        if let Some(state) = state {
            let id = out.sent_id;
            if let Err(e) = self
                .shared
                .journal
                .call(move |j| j.set_send_state(id, state))
                .await
            {
                self.error(format!("journal: {e}")).await;
            }
        }
        if let Some(p) = &problem {
            // The partner's decision, not a local fault: an Error event for the application,
            // an info line in the log.
            let description = format!("{}: {p}", out.transfer.virtual_file_name);
            tracing::info!(conn = self.conn.id, "{description}");
            self.handler
                .error(&ErrorEvent {
                    connection: self.conn.id,
                    description,
                })
                .await;
        }
        if out.from_outbox && outcome == FileOutcome::AwaitingEndResponse {
            // Sent: move it out of the outbox so the next session does not send it again.
            if let Some(dir) = out.file.path.parent() {
                let sent = dir.join("sent");
                let _ = std::fs::create_dir_all(&sent);
                if let Some(name) = out.file.path.file_name() {
                    let _ = std::fs::rename(&out.file.path, sent.join(name));
                }
            }
        }
        let result = match &outcome {
            FileOutcome::AwaitingEndResponse => TransferResult::Completed {
                records: out.source.as_ref().map_or(0, OutgoingSource::records),
                units: std::fs::metadata(&out.file.path)
                    .map(|m| m.len())
                    .unwrap_or(0),
            },
            _ => TransferResult::Failed {
                reason: problem.unwrap_or_default(),
            },
        };
        if let Some(info) = &self.info {
            self.handler
                .end_transfer(info, &out.transfer, &result)
                .await;
        }
        if out.job.is_some() {
            self.outcomes.push((out.file, outcome));
        }
    }

    // ---- waiting -------------------------------------------------------------------------

    async fn wait(&mut self) {
        let deadline = self.session.poll_timeout();
        let idle_deadline = match self.shared.idle_timeout {
            Some(t) if self.incoming.is_none() && self.outgoing.is_none() => {
                Some(self.last_activity + t)
            }
            _ => None,
        };
        let graceful = self.shutdown.graceful.clone();
        let forced = self.shutdown.forced.clone();
        let login_deadline = self.login_deadline;
        let login_expired = async move {
            match login_deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // Only while the partner gives credit: otherwise the data would wait anyway.
        let waiting_for_sealed = self.session.can_accept_data()
            && self.outgoing.as_ref().is_some_and(|o| {
                !o.finished && matches!(o.source, Some(OutgoingSource::Sealed(_)))
            });
        let next = match (deadline, idle_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = next.map(|at| {
            let t = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
            t.as_mut().reset(at.into());
            t
        });
        let sleep = async {
            match timer {
                Some(t) => t.as_mut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = forced.cancelled(), if !self.forced_seen => {
                self.forced_seen = true;
                let _ = self.session.end_session(EsidReason::EMERGENCY_CLOSE_DOWN, "server shutting down");
            }
            _ = graceful.cancelled(), if !self.graceful_seen => {
                self.graceful_seen = true;
                // Let a file in either direction finish; otherwise end now.
                if self.incoming.is_none() && self.outgoing.is_none() && !self.session.is_speaker() {
                    let _ = self.session.end_session(EsidReason::EMERGENCY_CLOSE_DOWN, "server shutting down");
                }
            }
            _ = login_expired => {
                let timeout = self.login_deadline.take().map(|(_, t)| t).unwrap_or_default();
                let _ = self.session.end_session(
                    EsidReason::TIME_OUT,
                    &format!("no start session (SSID) within {} s of connecting", timeout.as_secs_f32()),
                );
            }
            // The processing thread of an outgoing file produced more (or finished).
            _ = sealed_ready(&mut self.outgoing), if waiting_for_sealed => {}
            r = self.requests.recv(), if self.requests_open => match r {
                Some(r) => self.take_request(r),
                None => self.requests_open = false,
            },
            // Straight into the session's buffer: frames are handled where they were read.
            n = self.io.read(self.session.read_buffer()) => match n {
                Ok(0) => self.session.handle_transport_closed(Instant::now()),
                Ok(n) => {
                    self.last_activity = Instant::now();
                    self.session.commit_read(n, self.last_activity);
                }
                Err(e) => {
                    tracing::debug!(conn = self.conn.id, error = %e, "read failed");
                    if self.ended.is_none() && !self.session.is_closed() {
                        // Say why: a TLS handshake the partner refused (our certificate)
                        // shows up here, at the first read, as its alert.
                        let tls = e.get_ref().is_some_and(|i| i.is::<rustls::Error>());
                        self.ended = Some(Disconnected {
                            reason: Some(EsidReason::UNSPECIFIED),
                            by_peer: true,
                            description: format!(
                                "the {}connection failed: {e}",
                                if tls { "TLS " } else { "" }
                            ),
                        });
                    }
                    self.session.handle_transport_closed(Instant::now());
                }
            },
            _ = sleep => {
                // The earliest deadline fired (both when they are equal).
                if deadline == next {
                    self.session.handle_timeout(Instant::now());
                }
                if idle_deadline == next {
                    self.log(LogLevel::Info, "idle timeout: ending session".into()).await;
                    let _ = self.session.end_session(EsidReason::TIME_OUT, "idle timeout");
                }
            }
        }
    }
}

/// The temporary file of a reception, as opened at SFID time.
enum Opened {
    /// A durable part resumed: its journal id and restart point.
    Resumed(PartialFile, i64, Checkpoint),
    /// A new, empty file (its journal entry is made next).
    Fresh(PartialFile),
}

/// Whether a reception the journal still calls "receiving" was in fact placed before a crash:
/// the final file exists and the temporary name is gone or is the same file (then it is
/// removed; a failure to remove it is logged, the file is complete either way). Blocking.
fn crashed_after_placing(partial: &std::path::Path, final_path: &std::path::Path) -> bool {
    if !final_path.exists() {
        return false;
    }
    if !partial.exists() {
        return true;
    }
    if !crate::store::same_file(partial, final_path) {
        return false;
    }
    if let Err(e) = std::fs::remove_file(partial) {
        tracing::warn!(
            path = %partial.display(),
            error = %e,
            "received file is complete, but its temporary name could not be removed"
        );
    }
    true
}

/// Waits until the processed form of the outgoing file has more to send (see
/// [`SealedSource::ready`]); never returns when there is none.
async fn sealed_ready(outgoing: &mut Option<Outgoing>) {
    match outgoing
        .as_mut()
        .and_then(|o| o.source.as_mut())
        .and_then(OutgoingSource::sealed_mut)
    {
        Some(sealed) => sealed.ready().await,
        None => std::future::pending().await,
    }
}

/// Checks a peer before the session starts (the `ConnectionRequest` event).
pub(crate) async fn permit<H: Handler>(
    handler: &H,
    info: ConnectionInfo,
    allowed_by_policy: bool,
) -> bool {
    handler
        .connection_request(&ConnectionRequest::new(info, allowed_by_policy))
        .await
}
