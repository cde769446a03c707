//! The journal of received and sent virtual files and of end-to-end responses: the domain
//! operations ([`Journal`]), their types, and the embedded SQLite backend ([`SqliteJournal`],
//! `<data_dir>/oftp-journal.sqlite3`). Every backend passes [`conformance`].
//!
//! What it records and why:
//! - **received files**, keyed by the authenticated partner (its SSID code) + originator +
//!   dataset name + stamp (the OFTP file identity as seen from that partner; SFIDORIG is
//!   whatever the sender writes, so it alone cannot tell partners apart): a completed entry
//!   makes a repeat by the same partner an SFNA 13 (duplicate); an entry in `receiving` state
//!   holds the temporary file and the last *durable* restart position, so an interrupted
//!   reception is resumed from there by the same partner only (the answer to a restart request
//!   is never beyond it);
//! - **sent files**, keyed by partner + local path + size + modification time: keeps the virtual
//!   date/time chosen for the first attempt, so re-sending the same file after a broken
//!   connection presents the same identity and the partner can restart it; also tracks whether
//!   the EERP/NERP arrived;
//! - **end responses** sent and received, for the operator;
//! - **file hashes** of files whose end response is signed;
//! - **the outbound queue** of the gateway ([`queue`]): one row per outgoing file with its
//!   state, attempts, last error, next attempt time and history of transitions;
//! - **alerts** for a person (kind, partner, file, text, time, acknowledged);
//! - **the gateway's calls** ([`calls`]): when each call to a partner started and ended, and
//!   how it went, so a restarted daemon keeps each partner's schedule.
//! - **post-processing** of received files, **held end responses**, the **archive** of final
//!   files and the **pruning** of old history ([`processing`]);
//! - **the operator's history** ([`history`]): one listing of both directions with a cursor,
//!   each session's trail (its OFTP commands, the transfers it moved) and the partner
//!   counters.
//!
//! Every stamp written is checked first ([`FileStampExt::is_valid`]: a calendar date and a time of
//! day): nothing invalid is stored ([`JournalError::InvalidStamp`]).
//!
//! What it does not do: no file I/O and no protocol decisions. Every operation blocks until
//! its change is durable, so nothing is acknowledged to a peer before the journal has it.
//! Operations are synchronous and short; async callers hold an `Arc<dyn Journal>` and wrap
//! them with `<dyn Journal>::call` (`journal.call(move |j| j.received(..)).await`), which runs
//! them on the blocking pool.
//!
//! Backends: [`SqliteJournal`] (rusqlite with bundled SQLite: the well-kept standard choice,
//! needs no system library). A new backend implements [`Journal`], converts its own errors
//! into [`JournalError::Backend`] (never exposing its types), and calls
//! [`conformance::journal`] and [`conformance::reopened`] from its tests.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::identity::OdetteId;
use crate::stamp::{FileStamp, FileStampExt};

pub mod alert_delivery;
pub mod calls;
pub mod conformance;
pub mod history;
pub mod processing;
pub mod queue;
mod sqlite;

pub use alert_delivery::{DeliveryOutcome, DueDelivery, RaiseAgain};
pub use calls::CallRecord;
pub use history::{
    BadCursor, HistoryEntry, HistoryPage, HistoryPosition, HistoryQuery, HistoryState, InboundFile,
    InboundState, PartnerCounters, SessionBatch, SessionCommand, SessionEnd, SessionRole,
    SessionStart, SessionTrail, SessionTransfer,
};
pub use processing::{
    ArchiveCandidate, ArchiveKind, ArchivedFile, Processing, ProcessingRun, ProcessingState,
    Pruned, ReceivedFile,
};
pub use queue::{
    Alert, AlertKind, NewAlert, QueueChange, QueueState, QueuedFile, QueuedSend, TransferDetail,
    TransferFilter, Transition, TransitionRefused,
};
pub use sqlite::{JOURNAL_FILE, SqliteJournal};

/// Errors of the journal. No backend type appears here: a backend's own error is kept as
/// text and as an opaque source in [`Backend`](Self::Backend).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The backend refused or failed an operation (for SQLite: the database file cannot be
    /// opened or written, is locked, or is damaged).
    #[error("journal {location}: {error}")]
    Backend {
        /// Where the journal is (the database file for SQLite).
        location: String,
        /// The backend's error (part of this message, so not repeated as a `source`).
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored value could not be read back.
    #[error("journal {location}: corrupt entry: {detail}")]
    Corrupt {
        /// Where the journal is.
        location: String,
        /// What was wrong.
        detail: String,
    },
    /// A file identity to record has a stamp that is no calendar date and time of day.
    #[error(
        "journal {location}: not recording {what}: its virtual file stamp {stamp} is not a valid \
         date and time"
    )]
    InvalidStamp {
        /// Where the journal is.
        location: String,
        /// What was to be recorded (file name and originator).
        what: String,
        /// The stamp (journal form `yyyyMMddHHmmssffff`).
        stamp: String,
    },
    /// The directory of the journal could not be created.
    #[error("creating journal directory {}: {error}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error (part of this message, so not repeated as a `source`).
        error: std::io::Error,
    },
    /// A queued file was asked to change to a state its state does not allow (see
    /// [`QueueState::allows`]); nothing was changed.
    #[error("journal {location}: transfer {id}: {refused}")]
    TransitionRefused {
        /// Where the journal is.
        location: String,
        /// The queue row.
        id: i64,
        /// Its state and the state asked for.
        refused: TransitionRefused,
    },
    /// A blocking task of the journal was cancelled or panicked.
    #[error("journal task failed: {0}")]
    Task(String),
}

impl JournalError {
    /// The refusal of a file identity whose stamp is not a valid date and time, if it is one:
    /// every backend checks with this before writing a stamp.
    pub(crate) fn check_stamp(location: &str, key: &FileKey) -> Result<(), Self> {
        if key.stamp.is_valid() {
            Ok(())
        } else {
            Err(Self::InvalidStamp {
                location: location.to_owned(),
                what: format!("{} from {}", key.dsn, key.originator),
                stamp: key.stamp.digits(),
            })
        }
    }
}

/// The identity of a virtual file: who made it, its name and its stamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// SFIDORIG.
    pub originator: OdetteId,
    /// SFIDDSN (trailing blanks removed).
    pub dsn: String,
    /// SFIDDATE + SFIDTIME.
    pub stamp: FileStamp,
}

impl FileKey {
    /// A key with trailing blanks removed from the dataset name (wire fields are
    /// blank-padded; the originator is normalised by its type).
    pub fn new(originator: OdetteId, dsn: &str, stamp: FileStamp) -> Self {
        Self {
            originator,
            dsn: dsn.trim_end().to_owned(),
            stamp,
        }
    }
}

/// A durable restart point of a reception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Restart position in protocol units (records for F/V, 1 KiB blocks for U/T).
    pub position: u64,
    /// Bytes of the local temporary file that belong to that position.
    pub file_offset: u64,
    /// Records received up to that position.
    pub records: u64,
    /// User-data octets received up to that position.
    pub units: u64,
}

/// State of a received file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveState {
    /// Data is (or was, before the connection broke) arriving.
    Receiving,
    /// Durable under its final name; EFPA was sent.
    Complete,
}

/// A received-file entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEntry {
    /// Row id.
    pub id: i64,
    /// The file identity.
    pub key: FileKey,
    /// State.
    pub state: ReceiveState,
    /// Temporary file while receiving.
    pub partial_path: PathBuf,
    /// Final path.
    pub final_path: PathBuf,
    /// Last durable restart point.
    pub checkpoint: Checkpoint,
    /// Whether the EERP/NERP for it went out.
    pub end_response_sent: bool,
    /// SFIDUSER of the file (repeated in the EERP).
    pub user_data: String,
}

/// A reception that has not completed (state `receiving`): in progress, interrupted and waiting
/// for a restart, or given up with its temporary file kept. Every temporary file of a reception
/// has one; the retention sweep (`partial_retention`) removes those nobody resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialReception {
    /// Row id.
    pub id: i64,
    /// The partner (SSID code) the file came from.
    pub partner: String,
    /// The file identity.
    pub key: FileKey,
    /// The temporary file.
    pub partial_path: PathBuf,
    /// When the row last changed (begun, checkpointed, given up).
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// State of a sent file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    /// Not yet confirmed by EFPA.
    Sending,
    /// EFPA received; waiting for the EERP/NERP.
    AwaitingEndResponse,
    /// EERP received.
    Delivered,
    /// NERP received or the partner refused the file for good.
    Failed,
}

impl SendState {
    /// Every state, for backends and tests that go through them all.
    pub const ALL: [Self; 4] = [
        Self::Sending,
        Self::AwaitingEndResponse,
        Self::Delivered,
        Self::Failed,
    ];

    /// The stored name of the state.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::AwaitingEndResponse => "awaiting_end_response",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The state of a stored name.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// What identifies a local file across attempts to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFileId {
    /// The configured partner *name* the file goes to (not an identification code; the
    /// runtime puts the session's partner name here).
    pub partner: String,
    /// Canonical local path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// A sent-file entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEntry {
    /// Row id.
    pub id: i64,
    /// The local file.
    pub local: LocalFileId,
    /// Virtual file identity used on the wire.
    pub key: FileKey,
    /// Destination SFID.
    pub destination: String,
    /// State.
    pub state: SendState,
}

/// Direction of an end response or of a transmitted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received from the partner.
    Received,
    /// Sent by us.
    Sent,
}

impl Direction {
    /// The stored name of the direction.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Sent => "sent",
        }
    }
}

/// An EERP (reason `None`) or NERP as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndResponseEntry {
    /// Received or sent.
    pub direction: Direction,
    /// The file it answers.
    pub key: FileKey,
    /// Destination SFID of the response.
    pub destination: String,
    /// NERP reason code and text; `None` for an EERP.
    pub negative: Option<(u16, String)>,
    /// The authenticated partner of the session (its SSID code). A response we send settles
    /// only the file received from that partner.
    pub partner: String,
    /// When it was received or sent (the caller's clock): the time of the queue transition
    /// a received one makes.
    pub at: DateTime<Utc>,
}

/// The journal's domain operations; every backend implements them with the contracts stated
/// here and checked by [`conformance`].
///
/// Common rules: each operation that returns has made its change durable (a crash after it
/// loses nothing of it); each is atomic (all of it or nothing). Partner codes (SSID codes),
/// destinations and user data are stored and compared without trailing blanks. A file identity
/// whose stamp is not a valid date and time is refused with [`JournalError::InvalidStamp`] by
/// every operation that records one, and nothing is written. Row ids are positive, unique per
/// kind (receptions, sends) and never reused for another file. Operations that name a row
/// that does not exist (any more) change nothing and succeed.
pub trait Journal: fmt::Debug + Send + Sync {
    // ---- received files ------------------------------------------------------------------

    /// The entry for a file identity received from `partner` (its SSID code), if any; entries
    /// of other partners with the same identity are never returned.
    fn received(&self, partner: &str, key: &FileKey)
    -> Result<Option<ReceivedEntry>, JournalError>;

    /// Starts (or restarts from zero) the reception of `key` from `partner` into
    /// `partial_path` and returns the entry's id: state [`ReceiveState::Receiving`], a zero
    /// checkpoint, end response neither sent nor deferred. An existing entry of that partner
    /// for the same identity, whatever its state, is reset so and keeps its id; other
    /// partners' entries are never touched.
    fn begin_receive(
        &self,
        partner: &str,
        key: &FileKey,
        partial_path: &Path,
        final_path: &Path,
        user_data: &str,
    ) -> Result<i64, JournalError>;

    /// Records a durable restart point of a reception still in state `receiving` (a complete
    /// one is left as it is) and refreshes its `updated_at`. Call only after the temporary
    /// file was fsynced up to `checkpoint.file_offset`.
    fn checkpoint_receive(&self, id: i64, checkpoint: Checkpoint) -> Result<(), JournalError>;

    /// Marks a reception complete under `final_path` (after the rename was made durable).
    fn complete_receive(&self, id: i64, final_path: &Path) -> Result<(), JournalError>;

    /// Forgets a reception still in state `receiving` so the sender may try again from the
    /// start; a complete one is kept (it still answers duplicates).
    fn drop_receive(&self, id: i64) -> Result<(), JournalError>;

    /// Every reception not completed (see [`PartialReception`]), of all partners, in the order
    /// they were begun. A backend may leave out a row it cannot read (logging it): the sweep
    /// then leaves that row alone.
    fn partial_receptions(&self) -> Result<Vec<PartialReception>, JournalError>;

    /// The temporary files of every reception not completed, also of rows
    /// [`partial_receptions`](Self::partial_receptions) leaves out.
    fn partial_paths(&self) -> Result<HashSet<PathBuf>, JournalError>;

    // ---- end responses of received files -------------------------------------------------

    /// Notes that the EERP/NERP for a file received from `partner` went out.
    fn mark_end_response_sent(&self, partner: &str, key: &FileKey) -> Result<(), JournalError>;

    /// Notes that the application will send the EERP/NERP for a file received from `partner`
    /// itself, so it is not sent automatically at the next session (the response is *held*).
    /// A response already released by its post-processing
    /// ([`finish_processing`](Self::finish_processing)) is not held again: the runtime defers
    /// after the handler's `end_transfer` returns, and a fast command may have succeeded first.
    fn defer_end_response(&self, partner: &str, key: &FileKey) -> Result<(), JournalError>;

    /// Completed receptions from `partner` (its SSID code) whose EERP has not gone out yet and
    /// was not left to the application, in the order they were begun: a broken connection
    /// must not lose an end-to-end response, so they are sent at the next session with that
    /// partner. Each is what [`received`](Self::received) returns for it.
    fn pending_end_responses(&self, partner: &str) -> Result<Vec<ReceivedEntry>, JournalError>;

    // ---- sent files ----------------------------------------------------------------------

    /// The newest send (the last begun) of this local file (same partner, path, size and
    /// mtime), whatever its state: a new attempt reuses the identity of one still sending,
    /// and does not send again one the partner stored or confirmed.
    fn latest_send(&self, local: &LocalFileId) -> Result<Option<SentEntry>, JournalError>;

    /// The newest send (the last begun) with this wire identity.
    fn sent_by_key(&self, key: &FileKey) -> Result<Option<SentEntry>, JournalError>;

    /// Records an attempt to send `local` under `key` to `destination`, in state
    /// [`SendState::Sending`], and returns its id.
    fn begin_send(
        &self,
        local: &LocalFileId,
        key: &FileKey,
        destination: &str,
    ) -> Result<i64, JournalError>;

    /// Moves a send to `state`.
    fn set_send_state(&self, id: i64, state: SendState) -> Result<(), JournalError>;

    // ---- file hashes ---------------------------------------------------------------------

    /// Records (or replaces) the hash of a transmitted file whose end response is signed
    /// (SFIDSIGN = Y): for a received file, what our EERP/NERP signs; for a sent file, what
    /// the partner's signed response must contain. `suite` is the SFIDCIPH whose hash
    /// algorithm was used. `partner` (its SSID code) scopes a received file's hash to the
    /// partner it came from, so another partner reusing the identity cannot replace it; it is
    /// ignored for sent files (one hash per identity, whatever partner is named).
    fn record_file_hash(
        &self,
        direction: Direction,
        partner: &str,
        key: &FileKey,
        suite: u8,
        hash: &[u8],
    ) -> Result<(), JournalError>;

    /// The recorded hash of a file (see [`record_file_hash`](Self::record_file_hash)): suite
    /// and hash; `partner` as there.
    fn file_hash(
        &self,
        direction: Direction,
        partner: &str,
        key: &FileKey,
    ) -> Result<Option<(u8, Vec<u8>)>, JournalError>;

    // ---- end responses -------------------------------------------------------------------

    /// Records an EERP/NERP atomically with its effect: a received one settles every send with
    /// that identity ([`SendState::Delivered`] for an EERP, [`SendState::Failed`] for a NERP)
    /// and the newest queue row in state sent last offered under it (to delivered, or to not
    /// delivered with the NERP as its last error and an open [`AlertKind::NotDelivered`]
    /// alert), all at `e.at`, whichever session it arrives in (RFC 5024 4.3.6: "in the same
    /// or in any subsequent session"); a sent one marks the end response of the file received
    /// from `e.partner` as sent (and no other partner's).
    fn record_end_response(&self, e: &EndResponseEntry) -> Result<(), JournalError>;

    /// Number of recorded end responses in `direction` (for reports and tests).
    fn end_response_count(&self, direction: Direction) -> Result<u64, JournalError>;

    // ---- outbound queue ([`queue`]) -------------------------------------------------------
    //
    // Rules of the queue: row ids are positive and never reused; every change of state is
    // checked with [`QueueState::check_transition`] (a refused one is
    // [`JournalError::TransitionRefused`] and changes nothing) and appended to the row's
    // history with its time; partner names are compared without trailing blanks.

    /// Enqueues `send` in state queued, due at `at`, with no attempts and a first transition
    /// (from none to queued) at `at`, and returns its id. Idempotent: if a row of the same
    /// partner and source path exists (in any state), returns its id and changes nothing, so
    /// a take-over reported twice (again at a restart) is one row.
    fn enqueue(&self, send: &QueuedSend, at: DateTime<Utc>) -> Result<i64, JournalError>;

    /// Claims for a call up to `limit` rows of `partner` that are queued and due
    /// (`next_attempt_at <= now`), the earliest due first (then the lowest id): each moves to
    /// in transfer with one more attempt and a transition at `now`, and is returned as it is
    /// after the claim. Atomic: two claims, also from two processes on the same storage,
    /// never return the same row.
    fn claim_due(
        &self,
        partner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<QueuedFile>, JournalError>;

    /// Moves row `id` to `change.to` and returns the row as it is after; `None` if there is
    /// no such row. To queued: due at `change.next_attempt_at` (else at `change.at`).
    /// `change.error` becomes `last_error` (which is otherwise kept); `change.key`, if given,
    /// becomes the row's wire identity (otherwise it is kept). The history gets the
    /// transition with the error, else the note.
    fn transition(&self, id: i64, change: &QueueChange)
    -> Result<Option<QueuedFile>, JournalError>;

    /// Moves every row in transfer back to queued, due at `at`, with `note` in the history,
    /// and returns their ids (lowest first): what a daemon does at start, since the call that
    /// held them is gone. Their attempts are kept, and so are their wire identities, so the
    /// next attempt offers the same file and the partner can restart it.
    fn requeue_in_transfer(&self, at: DateTime<Utc>, note: &str) -> Result<Vec<i64>, JournalError>;

    /// The rows that match `filter` (see [`TransferFilter`]), highest id first.
    fn transfers(&self, filter: &TransferFilter) -> Result<Vec<QueuedFile>, JournalError>;

    /// Row `id` with its history, oldest transition first; `None` if there is no such row.
    fn transfer(&self, id: i64) -> Result<Option<TransferDetail>, JournalError>;

    /// The newest row (highest id) last offered under the wire identity `key`, for matching
    /// an end response that arrives in a later session.
    fn transfer_by_key(&self, key: &FileKey) -> Result<Option<QueuedFile>, JournalError>;

    /// The operator's retry of row `id`: to queued, due at `at`, noted in the history. The
    /// rules of [`transition`](Self::transition) apply (a delivered file is refused).
    fn retry_transfer(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<QueuedFile>, JournalError> {
        self.transition(
            id,
            &QueueChange::to(QueueState::Queued, at).note("retried by the operator"),
        )
    }

    /// The operator's cancellation of row `id`: to cancelled, noted in the history. The rules
    /// of [`transition`](Self::transition) apply (a file in transfer or sent is refused).
    fn cancel_transfer(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<QueuedFile>, JournalError> {
        self.transition(
            id,
            &QueueChange::to(QueueState::Cancelled, at).note("cancelled by the operator"),
        )
    }

    // ---- alerts --------------------------------------------------------------------------

    /// Records an open alert raised at `at` and returns its id (positive, never reused).
    fn raise_alert(&self, alert: &NewAlert, at: DateTime<Utc>) -> Result<i64, JournalError>;

    /// The alerts not acknowledged, oldest first.
    fn open_alerts(&self) -> Result<Vec<Alert>, JournalError>;

    /// Acknowledges alert `id` at `at` and returns it as it is after; `None` if there is no
    /// such alert. Acknowledging it again keeps the first acknowledgement's time.
    fn acknowledge_alert(&self, id: i64, at: DateTime<Utc>) -> Result<Option<Alert>, JournalError>;

    // ---- the operator's overview (`oftp status`, `oftp alerts --all`) -----------------------

    /// How many rows of the queue are in each state, in the order of [`QueueState::ALL`];
    /// states without rows are left out.
    fn queue_depth(&self) -> Result<Vec<(QueueState, u64)>, JournalError>;

    /// The newest `limit` alerts, acknowledged or not, newest (highest id) first.
    fn recent_alerts(&self, limit: u32) -> Result<Vec<Alert>, JournalError>;

    /// Commits a write that changes nothing anyone reads, durably like any other, to show
    /// that the journal takes writes now (the readiness probe of the HTTP face's `/readyz`).
    /// Reads no table. A journal another writer holds locked for about a second fails.
    fn check_writable(&self) -> Result<(), JournalError>;

    // ---- the gateway's calls ([`calls`]) ---------------------------------------------------

    /// Records a call made to `call.partner` (partner names without trailing blanks).
    fn record_call(&self, call: &CallRecord) -> Result<(), JournalError>;

    /// The call to `partner` that started last (of equal start times, the one recorded
    /// last), if any.
    fn last_call(&self, partner: &str) -> Result<Option<CallRecord>, JournalError>;

    /// When the earliest queued file of `partner` is due (`next_attempt_at` of its rows in
    /// state queued), if it has any: when its call loop must wake for a retry.
    fn next_due(&self, partner: &str) -> Result<Option<DateTime<Utc>>, JournalError>;

    // ---- post-processing, held end responses, archive, history ([`processing`]) ----------

    /// Records the post-processing of a received file, in state pending with no attempts,
    /// and returns the row. A row of the same partner and file identity (a file received
    /// again) is reset so and keeps its id. With `hold_end_response`, the file's end response
    /// is held in the same transaction (as by [`defer_end_response`](Self::defer_end_response)):
    /// no session sends it until a run succeeds or it is released.
    fn add_processing(
        &self,
        file: &ReceivedFile,
        hold_end_response: bool,
        at: DateTime<Utc>,
    ) -> Result<Processing, JournalError>;

    /// Post-processing row `id`; `None` if there is none.
    fn processing(&self, id: i64) -> Result<Option<Processing>, JournalError>;

    /// The post-processing row of the file `key` received from `partner` (its SSID code).
    fn processing_of(
        &self,
        partner: &str,
        key: &FileKey,
    ) -> Result<Option<Processing>, JournalError>;

    /// Rows pending or running (what a starting daemon runs), lowest id first.
    fn unfinished_processing(&self) -> Result<Vec<Processing>, JournalError>;

    /// A run of row `id` starts: to running, one more attempt, at `at`. Made durable before
    /// the command starts, so a daemon that dies while it runs runs it again.
    fn start_processing(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError>;

    /// A run of row `id` ended: succeeded (`run.error` is `None`) or failed, with its exit
    /// status and output. A success of a row that holds its end response releases it in the
    /// same transaction (see [`release_end_response`](Self::release_end_response)).
    fn finish_processing(
        &self,
        id: i64,
        run: &ProcessingRun,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError>;

    /// The file of row `id` was moved to `path` (the partner's `processed_dir`); the archive
    /// leaves it there.
    fn processing_moved(&self, id: i64, path: &Path, at: DateTime<Utc>)
    -> Result<(), JournalError>;

    /// The operator's "run it again" of row `id`: a row that succeeded or failed goes back to
    /// pending (attempts and last run kept); one pending or running is left as it is. Returns
    /// the row as it is after.
    fn rerun_processing(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError>;

    /// Releases a held end response of the file `key` received from `partner`: it is pending
    /// again ([`pending_end_responses`](Self::pending_end_responses)), so the next session with
    /// the partner sends it.
    fn release_end_response(&self, partner: &str, key: &FileKey) -> Result<(), JournalError>;

    /// Final files not archived yet, up to `limit` of each kind, lowest row first: received
    /// files whose end response went out and whose post-processing (if any) succeeded without
    /// moving them; sent files whose queue row is delivered or cancelled.
    fn archive_candidates(&self, limit: u32) -> Result<Vec<ArchiveCandidate>, JournalError>;

    /// Records that a candidate was archived at `path` (`None`: it was gone). Recording the
    /// same row again changes nothing.
    fn record_archived(
        &self,
        kind: ArchiveKind,
        row_id: i64,
        path: Option<&Path>,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError>;

    /// Archived files still in the archive, archived before `cutoff`, oldest first, at most
    /// `limit`.
    fn archived_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ArchivedFile>, JournalError>;

    /// The file of archive entry `id` was deleted (retention) at `at`.
    fn archived_deleted(&self, id: i64, at: DateTime<Utc>) -> Result<(), JournalError>;

    /// Removes history last changed before `cutoff` and returns how much: queue rows
    /// delivered or cancelled (with their transitions), acknowledged alerts, complete
    /// receptions whose end response went out and whose post-processing (if any) succeeded
    /// (with their hashes and post-processing rows), sends delivered or failed, recorded end
    /// responses, and archive entries of deleted files whose row is gone. Never what a
    /// restart, a duplicate offer or a late end response needs (see [`processing`]); and
    /// sessions (with their commands) that ended before `cutoff`.
    fn prune_history(&self, cutoff: DateTime<Utc>) -> Result<Pruned, JournalError>;

    // ---- alert delivery and conditions ([`alert_delivery`]) ------------------------------

    /// Raises `alert` at `at` for the condition `key` and returns its id, unless the key
    /// already has an alert on record and `again` does not allow another: then `None` and
    /// nothing changes. The new alert becomes the key's alert.
    fn raise_alert_once(
        &self,
        key: &str,
        alert: &NewAlert,
        at: DateTime<Utc>,
        again: RaiseAgain,
    ) -> Result<Option<i64>, JournalError>;

    /// Forgets the condition `key` (its alert stays): the next `raise_alert_once` for it
    /// raises a new alert. Returns whether the key was on record.
    fn clear_alert_key(&self, key: &str) -> Result<bool, JournalError>;

    /// For each of `channels`: the alerts not yet delivered to it that are due at `now` (never
    /// tried, or retried with `next_attempt_at <= now`; not delivered or given up), oldest
    /// first, at most `limit` per channel.
    fn due_alert_deliveries(
        &self,
        channels: &[String],
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, JournalError>;

    /// Records an attempt at `at` to deliver alert `alert_id` to `channel` (counted in its
    /// attempts). An unknown alert id is ignored.
    fn record_alert_delivery(
        &self,
        alert_id: i64,
        channel: &str,
        outcome: &DeliveryOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError>;

    // ---- the operator's history ([`history`]) ---------------------------------------------

    /// The outbound and inbound rows that match `query`, newest first by the key of
    /// [`HistoryPosition`] (never changed once a row exists), at most `query.limit`, all below
    /// `query.after`; with the next page's cursor if more may follow.
    fn transfer_page(&self, query: &HistoryQuery) -> Result<HistoryPage, JournalError>;

    /// Received file `id` as the history lists it; `None` if there is no such row.
    fn inbound_transfer(&self, id: i64) -> Result<Option<InboundFile>, JournalError>;

    /// Records a batch of a session (see [`SessionBatch`]) and returns the session's id (a new
    /// one for a first batch): its commands, its transfers (adding their files and octets to
    /// the partner's counters) and its end, all or nothing.
    fn record_session(&self, batch: &SessionBatch) -> Result<i64, JournalError>;

    /// The sessions that moved the transfer `row` in `direction` (a queue row for
    /// [`Direction::Sent`], a received file for [`Direction::Received`]), oldest first, each
    /// with every command recorded.
    fn sessions_of(
        &self,
        direction: Direction,
        row: i64,
    ) -> Result<Vec<SessionTrail>, JournalError>;

    /// The counters of every partner with a recorded transfer, by partner name.
    fn partner_counters(&self) -> Result<Vec<PartnerCounters>, JournalError>;
}

impl dyn Journal {
    /// Runs `f` with this journal on the blocking thread pool, so a journal operation (which
    /// waits for the disk) never holds up an async worker thread.
    pub async fn call<T, F>(self: &Arc<Self>, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Journal) -> Result<T, JournalError> + Send + 'static,
    {
        let journal = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&*journal))
            .await
            .map_err(|e| JournalError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests;
