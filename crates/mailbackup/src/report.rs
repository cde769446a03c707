//! What a run did: the final [`BackupReport`] and the live [`Progress`] counters.
//!
//! Progress counters are atomics read by a UI (the CLI's progress bars) while the run goes on;
//! the report is built from them at the end and is what `backup_ended` receives.

use crate::store::ObjectKey;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The phase a mailbox is in (seed `Phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Idle (not started or finished).
    None,
    /// Listing what to back up.
    Initialization,
    /// Fetching and saving messages.
    Backup,
    /// Removing local copies of messages deleted remotely (only with `SyncDeletes`).
    Sync,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Initialization,
            2 => Phase::Backup,
            3 => Phase::Sync,
            _ => Phase::None,
        }
    }

    /// The seed's numeric value (0..=3).
    pub fn as_u8(self) -> u8 {
        match self {
            Phase::None => 0,
            Phase::Initialization => 1,
            Phase::Backup => 2,
            Phase::Sync => 3,
        }
    }
}

/// Live counters of one mailbox.
#[derive(Debug, Default)]
pub struct MailboxProgress {
    mailbox: String,
    phase: AtomicU8,
    pub(crate) listed: AtomicU64,
    pub(crate) message_count: AtomicU64,
    pub(crate) processed: AtomicU64,
    pub(crate) saved: AtomicU64,
    pub(crate) unchanged: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) sync_checked: AtomicU64,
    pub(crate) sync_total: AtomicU64,
    pub(crate) removed: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) throttled: AtomicU64,
}

macro_rules! getters {
    ($($name:ident: $doc:literal),*) => {
        $(
            #[doc = $doc]
            pub fn $name(&self) -> u64 {
                self.$name.load(Ordering::Relaxed)
            }
        )*
    };
}

impl MailboxProgress {
    pub(crate) fn new(mailbox: &str) -> Self {
        MailboxProgress {
            mailbox: mailbox.to_string(),
            ..Default::default()
        }
    }

    /// The mailbox.
    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    pub(crate) fn set_phase(&self, p: Phase) {
        self.phase.store(p.as_u8(), Ordering::Relaxed);
    }

    getters!(
        listed: "Messages listed so far in the initialization phase.",
        message_count: "Seed `MessageCount`: messages considered in the backup phase (fixed once initialization ends).",
        processed: "Messages of the backup phase dealt with (saved, unchanged, skipped, failed or gone).",
        saved: "Messages fetched and saved.",
        unchanged: "Messages skipped because the saved copy is current.",
        failed: "Messages that finally failed.",
        bytes: "Bytes saved.",
        sync_checked: "Local copies checked in the sync phase.",
        sync_total: "Local copies to check in the sync phase.",
        removed: "Local copies removed in the sync phase.",
        requests: "HTTP requests sent to Graph.",
        throttled: "Answers 429/503 that made the mailbox wait."
    );
}

/// Live counters of a run, one entry per mailbox (entries appear as mailboxes start).
#[derive(Debug, Default)]
pub struct Progress {
    mailboxes: Mutex<Vec<Arc<MailboxProgress>>>,
}

impl Progress {
    /// The mailboxes started so far.
    pub fn mailboxes(&self) -> Vec<Arc<MailboxProgress>> {
        self.mailboxes.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub(crate) fn add(&self, mailbox: &str) -> Arc<MailboxProgress> {
        let p = Arc::new(MailboxProgress::new(mailbox));
        if let Ok(mut v) = self.mailboxes.lock() {
            v.push(p.clone());
        }
        p
    }
}

/// A message that finally failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedMessage {
    /// Graph message id.
    pub id: String,
    /// Error code.
    pub code: String,
    /// Error text.
    pub message: String,
}

/// A local copy removed in the sync phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemovedMessage {
    /// Graph message id.
    pub id: String,
    /// The stored copy that was removed.
    pub key: ObjectKey,
    /// Where that copy was ([`crate::store::MessageStore::locate`]: a path for a local store).
    pub location: String,
    /// Where it was moved instead of being deleted (with a quarantine folder).
    pub quarantined_to: Option<String>,
    /// The message was not deleted but moved to another folder under a new id (Graph ids
    /// change on a move without immutable ids): its new id, under which it was saved again.
    #[serde(default)]
    pub moved_to: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    /// Every mailbox went through all its phases (some messages may still have failed).
    Completed,
    /// Aborted through the cancellation token; rerun (or `resume`) to continue.
    Aborted,
    /// At least one mailbox stopped on an error (see its `error`).
    Failed,
}

/// Outcome of one mailbox.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MailboxReport {
    /// The mailbox.
    pub mailbox: String,
    /// Seed `MessageCount`: messages considered in the backup phase.
    pub message_count: u64,
    /// Fetched and saved (new or changed).
    pub saved: u64,
    /// Already saved with the same `lastModifiedDateTime`.
    pub unchanged: u64,
    /// Skipped by a hook.
    pub skipped: u64,
    /// Deleted remotely between listing and fetch (404 `ErrorItemNotFound`); not an error.
    pub gone_in_flight: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Messages that finally failed.
    pub failed: Vec<FailedMessage>,
    /// Local copies removed by the sync phase.
    pub removed: Vec<RemovedMessage>,
    /// Folders listed from scratch because their delta token was missing or expired.
    pub full_listings: u64,
    /// Folders listed incrementally with a saved delta token.
    pub incremental_listings: u64,
    /// HTTP requests sent.
    pub requests: u64,
    /// Throttling answers (429/503) waited out.
    pub throttled: u64,
    /// Most requests that were in flight at once for this mailbox (never above 4).
    pub max_concurrency: u64,
    /// Why the mailbox stopped early, if it did.
    pub error: Option<String>,
    /// The mailbox stopped because no access token could be obtained or renewed: signing in
    /// again is needed.
    #[serde(default)]
    pub sign_in_failed: bool,
    /// Why the mailbox was left out without it being an error (a tenant user without mailbox).
    pub skipped_reason: Option<String>,
    /// True when the sync phase was wanted but skipped for safety (see `error`/logs).
    pub sync_skipped: bool,
}

/// Outcome of a run (what `backup_ended` receives).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupReport {
    /// Run number in the index.
    pub run_id: i64,
    /// How the run ended.
    pub status: RunStatus,
    /// One entry per mailbox.
    pub mailboxes: Vec<MailboxReport>,
    /// Wall time.
    pub elapsed: Duration,
}

impl BackupReport {
    /// True when the run completed and no message finally failed.
    pub fn is_success(&self) -> bool {
        self.status == RunStatus::Completed
            && self
                .mailboxes
                .iter()
                .all(|m| m.failed.is_empty() && m.error.is_none())
    }

    /// All failed messages, with their mailbox.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &FailedMessage)> {
        self.mailboxes
            .iter()
            .flat_map(|m| m.failed.iter().map(move |f| (m.mailbox.as_str(), f)))
    }
}
