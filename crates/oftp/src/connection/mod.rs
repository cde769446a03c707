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
//!
//! The driver in this file owns the transport and the session and moves bytes, deadlines and
//! events; what the events mean is handled in modules of their own:
//! - `events`: each session event to its handler, the PI trail and refusal logs;
//! - `login`: session start (SSID, capabilities, secure authentication);
//! - `receive`: files offered to us (`offer`), their data and checkpoints (`data`), their end
//!   (`end`);
//! - `send`: files we offer, their data, the partner's answers;
//! - `end_response`: our EERP/NERP and the partner's;
//! - `certificate`: certificate exchange files;
//! - `outbox`: the partner's outbox, or the outbound queue's files for it (claimed and
//!   settled);
//! - `turn`: what to do when we hold the turn;
//! - `report`: what a connection reports when it ends;
//! - `restart`: restart positions (SFIDREST, SFPAACNT, checkpoints), pure arithmetic;
//! - `error`: the one error type and the reason code each error sends;
//! - `wire`: our EERP and NERP, and end responses to and from the codec's commands.

mod certificate;
mod end_response;
mod error;
mod events;
mod login;
mod outbox;
mod receive;
mod report;
mod restart;
mod send;
mod trail;
mod turn;
mod wire;

pub use receive::DEFAULT_CHECKPOINT_INTERVAL;
pub(crate) use receive::{ActiveGuard, ActiveSet};
pub(crate) use report::ConnectionReport;
use report::CutAt;
pub use report::{EarlierEndResponse, FileOutcome};

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oftp_proto::codec::EsidReason;
use oftp_proto::session::{Negotiated, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config::{
    IdentityCodes, LocalIdentity, Partner, PartnerTable, RecordMapping, SessionLimits,
};
use crate::handle::{OutgoingFile, Request, SessionHandle};
use crate::handler::{
    ConnectionRequest, Disconnected, EndResponse, ErrorEvent, Handler, LogEvent, LogLevel,
    SessionInfo,
};
use crate::identity::OdetteId;
use crate::journal::Journal;
use crate::listener::{Admission, ConnectionInfo, ShutdownSignal};
use crate::outbound::OutboundQueue;
use crate::security::SecurityContext;
use crate::source::OutgoingSource;
use crate::store::{NameFormat, StorePolicy};
use crate::transport::{FileServices, Transport};
use error::ConnectionError;
use receive::Incoming;
use send::{Outgoing, sealed_ready};
use turn::{Idle, Shutdown, Turn};

/// The sender writes frames to the socket once this many octets of file data are queued.
const FLUSH_AT: usize = 64 * 1024;

/// A write buffer grown beyond this (many frames queued at once) is not kept between writes.
const KEPT_WRITE_BUF: usize = 256 * 1024;

/// Settings shared by all connections of a server or a client.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) local: LocalIdentity,
    /// Our SSID and SFID codes (from `local`, checked once).
    pub(crate) codes: IdentityCodes,
    /// Who may log in; replaced whole by `RunningServer::set_partners` (read at login, so a
    /// session keeps the partner it logged in as).
    pub(crate) partners: std::sync::RwLock<Arc<PartnerTable>>,
    pub(crate) limits: SessionLimits,
    pub(crate) data_dir: PathBuf,
    pub(crate) name_format: NameFormat,
    pub(crate) store: StorePolicy,
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) inactivity_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) checkpoint_interval: u64,
    /// Files being received right now, so a restart of the same file in a second session
    /// waits until the first has let go of it.
    pub(crate) active: ActiveSet,
    /// OFTP 2.0 security (secure authentication, signed receipts, certificate exchange); set
    /// once by `Server::security` / `Client::security` before the first connection.
    pub(crate) security: std::sync::OnceLock<Arc<SecurityContext>>,
    /// Where a calling partner's files come from instead of its outbox; set once by
    /// `Server::outbound_queue` before the first connection.
    pub(crate) outbound: std::sync::OnceLock<Arc<dyn OutboundQueue>>,
    /// Whether a listener of this server runs the partial-reception sweep already.
    pub(crate) sweeping: std::sync::atomic::AtomicBool,
    /// Tells the free space where received files go (an offer that cannot fit is refused).
    pub(crate) free_space: Arc<dyn crate::space::FreeSpace>,
    /// Octets kept free there.
    pub(crate) free_space_reserve: u64,
}

impl Shared {
    /// Makes `security` the security settings of the sessions and gives it the partners'
    /// record mappings. Only the server's or client's builder holds `shared` before the first
    /// session, so the cell is still empty and this takes effect.
    pub(crate) fn use_security(&self, security: &Arc<SecurityContext>) {
        let _ = self.security.set(security.clone());
        security.use_record_mappings(&self.partners());
    }

    /// A partner table to put in [`Shared`].
    pub(crate) fn partner_table(table: PartnerTable) -> std::sync::RwLock<Arc<PartnerTable>> {
        std::sync::RwLock::new(Arc::new(table))
    }

    /// The partner table now.
    pub(crate) fn partners(&self) -> Arc<PartnerTable> {
        self.partners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the partner table for the sessions that log in from now on.
    pub(crate) fn set_partners(&self, table: PartnerTable) {
        *self.partners.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }
}

/// What the initiator knows before the session starts.
#[derive(Debug, Clone)]
pub(crate) struct InitiatorSetup {
    pub(crate) partner: Partner,
    /// The partner's codes (from `partner`).
    pub(crate) partner_codes: IdentityCodes,
    pub(crate) receive_dir: PathBuf,
    pub(crate) jobs: Vec<OutgoingFile>,
}

/// What a connection is made of, on either side: the transport, who it is with, the server's
/// or client's handler, file services and shared state, and its handle to the outside.
pub(crate) struct ConnectionParts<T, H, F> {
    pub(crate) io: T,
    pub(crate) conn: ConnectionInfo,
    pub(crate) handler: Arc<H>,
    pub(crate) services: Arc<F>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) shutdown: ShutdownSignal,
    pub(crate) handle: SessionHandle,
    pub(crate) requests: mpsc::UnboundedReceiver<Request>,
}

enum Work {
    File { file: OutgoingFile, origin: Origin },
    EndResponse(EndResponse),
}

/// Where a file to send comes from, which says what its outcome goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// One of the files the initiator was asked to send: its outcome is reported.
    Job,
    /// Asked for through the session handle (or a certificate answer).
    Request,
    /// The partner's outbox: moved to `sent/` on EFPA.
    Outbox,
    /// The outbound queue's row with this id: its outcome is settled there.
    Queue(i64),
}

/// The per-session parameters once the session is accepted.
struct Params {
    partner_name: String,
    partner_sfid: OdetteId,
    local_sfid: OdetteId,
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
    /// How far a server shutdown has come.
    shutdown_seen: Shutdown,
    info: Option<SessionInfo>,
    params: Option<Params>,
    negotiated: Option<Negotiated>,
    logged_in: bool,
    incoming: Option<Incoming>,
    outgoing: Option<Outgoing>,
    queue: VecDeque<Work>,
    /// Whether we hold the turn, and what the session lets us do with it.
    turn: Turn,
    /// What the application wants when we hold the turn with nothing to send.
    idle: Idle,
    outbox_scanned: bool,
    awaiting_rtr: Option<EndResponse>,
    last_activity: Instant,
    outcomes: Vec<(OutgoingFile, FileOutcome)>,
    /// Rows claimed from the outbound queue and not settled yet.
    claimed: Vec<outbox::Claimed>,
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
    /// The session's trail not yet written to the journal.
    recorder: trail::Recorder,
}

/// Why the connection task stopped reading: the transport failed.
struct TransportGone(std::io::Error);

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    fn new(
        parts: ConnectionParts<T, H, F>,
        session: Session,
        initiator: Option<InitiatorSetup>,
    ) -> Self {
        let ConnectionParts {
            io,
            conn,
            handler,
            services,
            shared,
            shutdown,
            handle,
            requests,
        } = parts;
        let mut queue = VecDeque::new();
        if let Some(setup) = &initiator {
            for f in &setup.jobs {
                queue.push_back(Work::File {
                    file: f.clone(),
                    origin: Origin::Job,
                });
            }
        }
        let recorder = trail::Recorder::new(initiator.is_some());
        Self {
            recorder,
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
            shutdown_seen: Shutdown::Running,
            info: None,
            params: None,
            negotiated: None,
            logged_in: false,
            incoming: None,
            outgoing: None,
            queue,
            turn: Turn::Theirs,
            idle: Idle::Proceed,
            outbox_scanned: false,
            awaiting_rtr: None,
            last_activity: now(),
            outcomes: Vec::new(),
            claimed: Vec::new(),
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
            if self.shutdown_seen >= Shutdown::Graceful
                && self.negotiated.is_some()
                && self.incoming.is_none()
                && self.outgoing.is_none()
                && self.awaiting_rtr.is_none()
                && !self.session.is_speaker()
            {
                // Shutting down: the transfer in progress has finished; end before the next.
                self.send_refusal(&ConnectionError::ShuttingDown);
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
        if let Some(out) = self.outgoing.take() {
            let at = if out.finished {
                CutAt::Confirmation
            } else if out.source.is_some() {
                CutAt::Transfer
            } else {
                CutAt::Offer
            };
            let key = Some(out.key());
            self.record_outcome(out.file, out.origin, FileOutcome::cut(at, &ended), key)
                .await;
        }
        for w in std::mem::take(&mut self.queue) {
            // A queued row never offered is given back by `settle_claimed`.
            if let Work::File {
                file,
                origin: Origin::Job,
            } = w
            {
                self.outcomes
                    .push((file, FileOutcome::cut(CutAt::Queue, &ended)));
            }
        }
        self.settle_claimed(&ended).await;
        self.write_trail(Some(&ended)).await;
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
            .map(|i| i.peer_ssid.to_string())
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
        self.session.handle_transport_closed(now());
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
        self.session.handle_transport_closed(now());
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
        self.last_activity = now();
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

    /// How F/V records are laid out in local files for this session's partner.
    fn record_mapping(&self) -> RecordMapping {
        self.params
            .as_ref()
            .map_or_else(RecordMapping::default, |p| p.record_mapping)
    }

    /// Our SFID code in this session (`None` before the session is accepted).
    fn local_sfid(&self) -> Option<&OdetteId> {
        self.params.as_ref().map(|p| &p.local_sfid)
    }

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
            _ = forced.cancelled(), if self.shutdown_seen < Shutdown::Forced => {
                self.shutdown_seen = Shutdown::Forced;
                self.send_refusal(&ConnectionError::ShuttingDown);
            }
            _ = graceful.cancelled(), if self.shutdown_seen < Shutdown::Graceful => {
                self.shutdown_seen = Shutdown::Graceful;
                // Let a file in either direction finish; otherwise end now.
                if self.incoming.is_none() && self.outgoing.is_none() && !self.session.is_speaker() {
                    self.send_refusal(&ConnectionError::ShuttingDown);
                }
            }
            _ = login_expired => {
                let timeout = self.login_deadline.take().map(|(_, t)| t).unwrap_or_default();
                self.send_refusal(&ConnectionError::LoginTimeout(timeout));
            }
            // The processing thread of an outgoing file produced more (or finished).
            _ = sealed_ready(&mut self.outgoing), if waiting_for_sealed => {}
            r = self.requests.recv(), if self.requests_open => match r {
                Some(r) => self.take_request(r),
                None => self.requests_open = false,
            },
            // Straight into the session's buffer: frames are handled where they were read.
            n = self.io.read(self.session.read_buffer()) => match n {
                Ok(0) => self.session.handle_transport_closed(now()),
                Ok(n) => {
                    self.last_activity = now();
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
                    self.session.handle_transport_closed(now());
                }
            },
            _ = sleep => {
                // The earliest deadline fired (both when they are equal).
                if deadline == next {
                    self.session.handle_timeout(now());
                }
                if idle_deadline == next {
                    self.log(LogLevel::Info, "idle timeout: ending session".into()).await;
                    self.send_refusal(&ConnectionError::IdleTimeout);
                }
            }
        }
    }
}

/// The driver's clock, read from tokio: every `now` passed to the session and every deadline
/// armed from it (the session's inactivity deadline, the idle deadline) is on tokio's clock,
/// so paused tokio time (tests) moves them as it moves tokio's timers. The session itself
/// takes time passed in and never reads a clock.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
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
