//! What the gateway does with files once they are received and sent (issue #11 §3, §4): the
//! post-processing of received files (the partner's `on_receive` command, run once the file is
//! durable, with its state, attempts, exit status and output), the end response *held* until
//! that command succeeded (`eerp_after = "processed"`), the archive of final files and the
//! pruning of old history.
//!
//! A held end response is the received row's "deferred" flag (see
//! [`Journal::defer_end_response`](super::Journal::defer_end_response)): not sent at any
//! session until released. [`Journal::finish_processing`](super::Journal::finish_processing)
//! with a success releases it in the same transaction, so the next session with the partner
//! sends it even if the process dies right after; a live session is told at once by the
//! caller.
//!
//! What [`Journal::prune_history`](super::Journal::prune_history) never removes, whatever its
//! age, because a restart, a duplicate offer or a late end response still needs it:
//! - a reception not complete (its restart point), or complete whose end response has not
//!   gone out (it is owed at the next session), or whose post-processing is not final;
//! - a send still sending or awaiting its end response (the partner may restart it or send
//!   the EERP late), and the hash recorded for it;
//! - a queue row not final (queued, in transfer, sent: awaiting the EERP);
//! - an open alert.
//!
//! Session trails ([`history`](super::history)) are pruned by the time their session ended;
//! the partner counters are totals and are never pruned.
//!
//! A complete reception older than the cut-off whose end response went out *is* pruned: a
//! partner offering that very file (same originator, name and stamp) again after that is no
//! longer refused as a duplicate. `history_days` must therefore exceed the longest time a
//! partner may offer a file again (see `docs/oftp-operations.md`).

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::FileKey;

/// A received file as its post-processing sees it (the metadata of the command's environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFile {
    /// The partner's SSID code (the journal's key of receptions).
    pub partner: String,
    /// The partner's configured name.
    pub partner_name: String,
    /// Originator, virtual file name and stamp.
    pub key: FileKey,
    /// SFIDDEST.
    pub destination: String,
    /// Where the file is (its final path; after a move to `processed_dir`, there).
    pub path: PathBuf,
    /// Octets of user data received.
    pub size: u64,
    /// SFIDFMT as one letter (`F`, `V`, `U`, `T`).
    pub format: String,
    /// The file services the originator applied, for a person (`none`, or e.g.
    /// `encrypted,signed,compressed`).
    pub security: String,
    /// SFIDUSER (repeated in the EERP).
    pub user_data: String,
}

/// State of a received file's post-processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessingState {
    /// To run (new, or asked to run again by an operator).
    Pending,
    /// Started; a daemon that finds it so at start runs it again.
    Running,
    /// The command exited with status 0.
    Succeeded,
    /// Non-zero exit, killed at its timeout, or it could not start.
    Failed,
}

impl ProcessingState {
    /// Every state.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Running, Self::Succeeded, Self::Failed];

    /// The stored (and displayed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// The state of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s2| s2.as_str() == s)
    }
}

/// How one run of the command ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessingRun {
    /// The exit status, if the command exited (not killed, not failed to start).
    pub exit_code: Option<i32>,
    /// Its standard output and error, bounded (see the runner).
    pub output: String,
    /// `None`: it succeeded. Otherwise what went wrong, for a person.
    pub error: Option<String>,
}

/// A received file's post-processing row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processing {
    /// Row id (positive, never reused).
    pub id: i64,
    /// The file.
    pub file: ReceivedFile,
    /// State.
    pub state: ProcessingState,
    /// Runs started.
    pub attempts: u32,
    /// The EERP is held until a run succeeds (`eerp_after = "processed"`).
    pub hold_end_response: bool,
    /// The last run's result (`None` before the first ends).
    pub last_run: Option<ProcessingRun>,
    /// The file was moved to `processed_dir` (the archive leaves it there).
    pub moved: bool,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

/// What the archive is asked to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    /// A received file (its received row).
    Received,
    /// A sent file (its queue row).
    Sent,
}

impl ArchiveKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Sent => "sent",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Received, Self::Sent]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The kind of a stored name (for backends).
    pub(crate) fn from_stored(s: &str) -> Option<Self> {
        Self::parse(s)
    }
}

/// A file that is final and not archived yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveCandidate {
    /// Received or sent.
    pub kind: ArchiveKind,
    /// The received row or the queue row.
    pub row_id: i64,
    /// For received files the partner's SSID code, for sent files its configured name (as the
    /// journal keeps them).
    pub partner: String,
    /// Where the file is now.
    pub path: PathBuf,
    /// When its row last changed (became final): the archive's year and month.
    pub final_at: DateTime<Utc>,
}

/// A file in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFile {
    /// Row id of the archive entry.
    pub id: i64,
    /// What it was.
    pub kind: ArchiveKind,
    /// Its received or queue row.
    pub row_id: i64,
    /// Where it is in the archive (`None`: it was gone when it was to be archived).
    pub path: Option<PathBuf>,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
}

/// Rows removed by [`Journal::prune_history`](super::Journal::prune_history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Queue rows in final states (with their history).
    pub transfers: u64,
    /// Acknowledged alerts.
    pub alerts: u64,
    /// Complete receptions whose end response went out (with their hashes and
    /// post-processing rows).
    pub received: u64,
    /// Sends delivered or failed.
    pub sent: u64,
    /// End responses recorded (history only).
    pub end_responses: u64,
    /// Archive entries whose file was deleted.
    pub archived: u64,
    /// Recorded sessions (with their commands and transfer links) that ended before the
    /// cut-off (or, never ended, started before it). The partner counters are kept.
    pub sessions: u64,
}
