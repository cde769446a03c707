//! The index of a backup: what is durably saved, the mailbox as last listed, the delta links,
//! and the runs. [`Index`] is the seam for backends; [`SqliteIndex`] (in
//! `DataFolder/.meta/index.sqlite`) is the embedded default, [`PostgresIndex`] the one several
//! machines share (`--index postgres://...`).
//!
//! What it holds:
//! - saved copies: one row per message with a durable stored object (key,
//!   `lastModifiedDateTime`, size, SHA-256). A row is written only after the store's `put`
//!   returned.
//! - the remote mirror: the mailbox as last listed (id, folder, properties), maintained from
//!   delta rounds. It is what the backup phase works through and what the sync phase compares
//!   against.
//! - folders: one row per folder with its delta link. A link is stored only after every message
//!   of its round is durable (or deliberately skipped), so a crash replays the round.
//! - runs: one row per run, for `status`.
//! - headers: one row per saved copy with its header fields (From, To, Cc, Subject, Date,
//!   Message-ID, folder, size, attachment flag, read state), written with the saved copy in one
//!   transaction ([`Index::record_message`]), full-text indexed (subject and addresses), answering
//!   [`Selection`]s ([`Index::select`]) for `search`, `show`, `export` and `restore`.
//! - quarantined copies: where and since when a copy of a remotely deleted message is kept, for
//!   retention ([`crate::retention`]).
//! - flags: one-time jobs done (the header back-fill of a backup made before headers existed).
//! - the restore log: one row per (source message, target mailbox) that `restore` attempted
//!   ([`RestoreRow`]): recorded before the message is created (no target id), then with the
//!   target id once Graph created it, then complete once its large attachments are uploaded.
//!
//! - workers and mailbox leases: which worker backs up which mailbox when several share the
//!   index ([`lease`]).
//!
//! A folder's `name` is its path from the mailbox root ([`crate::store::folder_path`]).
//!
//! Every call blocks until its change is durable (committed): the engine calls the index from
//! `spawn_blocking`, never on an async worker thread. Every backend passes
//! [`conformance::index`].

use crate::error::Error;
use crate::hooks::MessageInfo;
use crate::report::BackupReport;
use crate::search::{Cursor, Order, Selection};
use crate::store::ObjectKey;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub use lease::{Acquired, LeaseRow, WorkerRow, WorkerState};

pub mod conformance;
pub mod lease;
mod postgres;
mod sqlite;
pub use postgres::PostgresIndex;
pub use sqlite::{INDEX_FILE, SqliteIndex};

/// A saved copy as recorded in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRow {
    /// Mailbox key.
    pub mailbox: String,
    /// Graph message id.
    pub id: String,
    /// Where the copy is in the message store.
    pub key: ObjectKey,
    /// `lastModifiedDateTime` of the saved copy.
    pub last_modified: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the stored object (hex).
    pub sha256: String,
}

impl SavedRow {
    /// A `saved` row as an index stores it (`mailbox, id, path, last_modified, size,
    /// sha256`). Rows of copies a hook once saved outside the backup folder (an absolute path)
    /// are not in the store: they are `None`, with a warning, and the message is fetched again.
    fn from_columns(
        (mailbox, id, path, last_modified, size, sha256): (
            String,
            String,
            String,
            String,
            i64,
            String,
        ),
    ) -> Option<SavedRow> {
        let key = ObjectKey::new(path)
            .inspect_err(|e| tracing::warn!("index row of message {id} ignored: {e}"))
            .ok()?;
        Some(SavedRow {
            mailbox,
            id,
            key,
            last_modified,
            size: size.max(0) as u64,
            sha256,
        })
    }
}

/// The header fields of a saved copy, for search, `show` and export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeaderRow {
    /// Mailbox key.
    pub mailbox: String,
    /// Graph message id.
    pub id: String,
    /// Where the copy is in the message store.
    pub key: ObjectKey,
    /// `From` (`Name <address>`, several comma separated).
    pub from: String,
    /// `To` recipients, comma separated.
    pub to: String,
    /// `Cc` recipients, comma separated.
    pub cc: String,
    /// Subject.
    pub subject: String,
    /// Date, UTC, `YYYY-MM-DDTHH:MM:SSZ` (sortable).
    pub date: Option<String>,
    /// Graph's `createdDateTime`, UTC, `YYYY-MM-DDTHH:MM:SSZ`: what the selection's creation
    /// date range compares (`None`: not known, for a message indexed from its `.eml` file).
    /// Not in `search --json`, whose output stays as it was.
    #[serde(skip)]
    pub created: Option<String>,
    /// `Message-ID`.
    pub message_id: Option<String>,
    /// Graph folder id.
    pub folder_id: String,
    /// Size of the stored object in bytes.
    pub size: u64,
    /// Whether the message has attachments.
    pub has_attachment: bool,
    /// Read state when backed up (`None`: not known, backed up before it was recorded).
    pub is_read: Option<bool>,
}

/// One answer of [`Index::select`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hit {
    /// The header fields.
    #[serde(flatten)]
    pub headers: HeaderRow,
    /// The folder path (`Inbox/Clients`); the folder id when the folder's name is not known.
    pub folder_path: String,
    /// Position in the index (for paging).
    #[serde(skip)]
    pub seq: i64,
}

impl Hit {
    /// The position after this hit, for the next page of [`Order::Folder`].
    pub fn cursor(&self) -> Cursor {
        Cursor {
            mailbox: self.headers.mailbox.clone(),
            folder_id: self.headers.folder_id.clone(),
            seq: self.seq,
        }
    }
}

/// A quarantined copy of a remotely deleted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRow {
    /// Mailbox key.
    pub mailbox: String,
    /// The object's key (kept in the quarantine area).
    pub key: ObjectKey,
    /// Where it is, for people.
    pub location: String,
    /// When it was quarantined (RFC 3339).
    pub since: String,
}

/// A run, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// Run number.
    pub run_id: i64,
    /// Start (RFC 3339).
    pub started: String,
    /// End (RFC 3339), none while running or after a crash.
    pub finished: Option<String>,
    /// `Completed`, `Aborted`, `Failed`, or `Running` (also what a crashed run leaves).
    pub status: String,
    /// The run's report as JSON, when it finished.
    pub report: Option<String>,
}

/// One message of the restore log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRow {
    /// Mailbox key of the backup the message comes from.
    pub source_mailbox: String,
    /// Graph id of the backed-up message.
    pub source_id: String,
    /// Its object in the message store.
    pub source_key: ObjectKey,
    /// The mailbox it is restored into.
    pub target_mailbox: String,
    /// Graph id of the restored message; `None` while only the attempt is recorded (the
    /// message may or may not exist: see `restore`'s module docs).
    pub target_id: Option<String>,
    /// Whether everything of the message is in the target (large attachments uploaded).
    pub complete: bool,
    /// When the first attempt started (RFC 3339): a message created by an interrupted attempt
    /// was created after it.
    pub started: String,
    /// How it was created: `json` or `mime`.
    pub mode: String,
}

/// The index operations the engine, `verify` and `status` need. Blocking; see the module docs.
pub trait Index: Send + Sync + std::fmt::Debug {
    // ---- runs ----

    /// Records the start of a run; returns its number (increasing).
    fn start_run(&self) -> Result<i64, Error>;
    /// Records the end of a run with its report.
    fn finish_run(&self, report: &BackupReport) -> Result<(), Error>;
    /// The most recent run.
    fn last_run(&self) -> Result<Option<RunRow>, Error>;

    // ---- saved copies ----

    /// Records (or replaces) the durable copy of a message, after the store's `put` returned.
    fn record_saved(&self, row: &SavedRow) -> Result<(), Error>;
    /// Forgets a saved copy (after its object was removed or quarantined).
    fn remove_saved(&self, mailbox: &str, id: &str) -> Result<(), Error>;
    /// Saved copies of one mailbox (of all when `None`).
    fn saved(&self, mailbox: Option<&str>) -> Result<Vec<SavedRow>, Error>;
    /// Per mailbox: (mailbox, saved copies, bytes), ordered by mailbox.
    fn saved_counts(&self) -> Result<Vec<(String, u64, u64)>, Error>;

    /// Saved copies of a mailbox by message id.
    fn saved_map(&self, mailbox: &str) -> Result<HashMap<String, SavedRow>, Error> {
        Ok(self
            .saved(Some(mailbox))?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect())
    }

    // ---- remote mirror ----

    /// Applies one delta page of a folder in one transaction: upserts `items` (a message listed
    /// in another folder moves here), removes `removed` if they are still recorded in this
    /// folder (a message moved elsewhere keeps its newer folder).
    fn apply_remote(
        &self,
        mailbox: &str,
        folder: &str,
        items: &[MessageInfo],
        removed: &[String],
    ) -> Result<(), Error>;
    /// Ids recorded in a folder.
    fn remote_ids_in_folder(&self, mailbox: &str, folder: &str) -> Result<HashSet<String>, Error>;
    /// Forgets one remote message (deleted in flight).
    fn remove_remote(&self, mailbox: &str, id: &str) -> Result<(), Error>;
    /// All remote messages of a mailbox, in the order they were first listed.
    fn remote_messages(&self, mailbox: &str) -> Result<Vec<MessageInfo>, Error>;

    // ---- folders ----

    /// The stored delta link of a folder.
    fn delta_link(&self, mailbox: &str, folder: &str) -> Result<Option<String>, Error>;
    /// Stores (or clears, with `None`) a folder's delta link.
    fn set_delta_link(
        &self,
        mailbox: &str,
        folder: &str,
        name: &str,
        link: Option<&str>,
    ) -> Result<(), Error>;
    /// Folders known from earlier runs (with a link row or remote messages).
    fn known_folders(&self, mailbox: &str) -> Result<Vec<String>, Error>;
    /// Forgets a folder that no longer exists, with its remote messages, in one transaction.
    fn drop_folder(&self, mailbox: &str, folder: &str) -> Result<(), Error>;
    /// Per mailbox: folders with a delta link, ordered by mailbox.
    fn folder_counts(&self) -> Result<Vec<(String, u64)>, Error>;

    // ---- headers and search ----

    /// Records (or replaces) a saved copy and its header fields in one transaction (a crash
    /// leaves both or neither).
    fn record_message(&self, row: &SavedRow, headers: &HeaderRow) -> Result<(), Error>;
    /// Records (or replaces) the header fields of a saved copy (back-fill).
    fn record_headers(&self, headers: &HeaderRow) -> Result<(), Error>;
    /// Saved copies without header fields (what a back-fill has to read).
    fn saved_without_headers(&self) -> Result<Vec<SavedRow>, Error>;
    /// Up to `limit` header rows matching `selection`, in `order`; with [`Order::Folder`],
    /// after `after`. Header rows are forgotten with their saved copy ([`Self::remove_saved`]).
    fn select(
        &self,
        selection: &Selection,
        order: Order,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Hit>, Error>;

    /// How many header rows match `selection`, counted up to `at_most`: the answer is the
    /// smaller of the two, and counting stops at `at_most` (a common word over a million rows
    /// has hundreds of thousands of matches; `search` counts up to
    /// [`crate::search::COUNT_CAP`] + 1 and says "more than" above it). `u64::MAX` counts all.
    fn count(&self, selection: &Selection, at_most: u64) -> Result<u64, Error>;

    // ---- flags ----

    /// Whether a one-time job is recorded as done.
    fn flag(&self, name: &str) -> Result<bool, Error>;
    /// Records a one-time job as done.
    fn set_flag(&self, name: &str) -> Result<(), Error>;

    // ---- quarantine ----

    /// Records a copy moved to the quarantine area.
    fn record_quarantined(&self, row: &QuarantinedRow) -> Result<(), Error>;
    /// Every recorded quarantined copy, oldest first.
    fn quarantined(&self) -> Result<Vec<QuarantinedRow>, Error>;
    /// Forgets a quarantined copy (after it was purged).
    fn remove_quarantined(&self, key: &ObjectKey) -> Result<(), Error>;
    /// Folder id -> path ([`crate::store::folder_path`]) of the folders of a mailbox.
    fn folder_paths(&self, mailbox: &str) -> Result<HashMap<String, String>, Error>;

    // ---- restore log ----

    /// Records (or updates) a restore: inserted as given; an existing row keeps its `started`,
    /// and a row with a target id never goes back to having none.
    fn record_restore(&self, row: &RestoreRow) -> Result<(), Error>;
    /// The restore log of messages of `source_mailbox` restored into `target_mailbox`.
    fn restore_log(
        &self,
        source_mailbox: &str,
        target_mailbox: &str,
    ) -> Result<Vec<RestoreRow>, Error>;

    // ---- workers and leases (see [`lease`]) ----

    /// Registers a worker for a run: its heartbeat expires `ttl` from now unless renewed; it
    /// joins the round of the live workers, or starts one ([`lease`]). A
    /// worker of the same id that is still alive (not finished, heartbeat not expired) is
    /// refused with [`Error::WorkerIdInUse`]; a finished or dead one is replaced (its leases
    /// still expire on their own). Workers gone for more than 7 days are forgotten.
    fn register_worker(&self, worker: &str, ttl: Duration) -> Result<(), Error>;
    /// Takes one of `mailboxes` for `worker` for `ttl`: one that no live worker holds and that
    /// no worker finished in the worker's round (an expired lease is taken over). Several
    /// workers asking at once get different mailboxes.
    fn acquire_lease(
        &self,
        worker: &str,
        mailboxes: &[String],
        ttl: Duration,
    ) -> Result<Acquired, Error>;
    /// Renews the worker's heartbeat and its leases on the mailboxes of `progress` (with the
    /// messages processed so far) for `ttl` from now. Returns the mailboxes of `progress` it no
    /// longer holds (another worker took them over after they expired): it must stop them.
    fn heartbeat(
        &self,
        worker: &str,
        progress: &[(String, u64)],
        ttl: Duration,
    ) -> Result<Vec<String>, Error>;
    /// Gives a mailbox up; `done`: its backup ran to its end (completed or failed), so no
    /// worker of the current round takes it again. Not `done` (aborted): others take it at once.
    fn release_lease(&self, worker: &str, mailbox: &str, done: bool) -> Result<(), Error>;
    /// Ends a worker cleanly: releases the leases it still holds (not done) and records it as
    /// finished.
    fn finish_worker(&self, worker: &str) -> Result<(), Error>;
    /// Every known worker with its leases, by worker id.
    fn workers(&self) -> Result<Vec<WorkerRow>, Error>;
}
