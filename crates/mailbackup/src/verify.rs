//! Offline checks of a backup folder: `verify` (files against the index) and `status`.
//!
//! Neither touches the network nor takes the run lock; `verify` reads every object once (and
//! its first line again for the header).

use crate::engine::META_DIR;
use crate::error::Error;
use crate::index::{INDEX_FILE, Index, RunRow, SqliteIndex};
use crate::lock::{LockState, RunLock};
use crate::store::{self, LocalStore, MessageStore, ObjectKey};
use std::collections::HashSet;
use std::path::Path;

/// A stored copy whose content does not match the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptFile {
    /// Mailbox.
    pub mailbox: String,
    /// Message id.
    pub id: String,
    /// The stored object.
    pub key: ObjectKey,
    /// What is wrong.
    pub reason: String,
}

/// Result of [`verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Objects checked and correct.
    pub ok: u64,
    /// Indexed messages whose object is missing: (mailbox, id, key).
    pub missing: Vec<(String, String, ObjectKey)>,
    /// Objects whose hash or backup header does not match the index.
    pub corrupt: Vec<CorruptFile>,
    /// Objects (`.eml` files or leftovers) in the store that the index does not know.
    pub extra: Vec<ObjectKey>,
}

impl VerifyReport {
    /// True when nothing is missing, corrupt or extra.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.extra.is_empty()
    }
}

/// The SQLite index of a backup folder; an error saying so when the folder holds no backup.
pub fn open_index(data_folder: &Path) -> Result<SqliteIndex, Error> {
    let p = data_folder.join(META_DIR).join(INDEX_FILE);
    if !p.exists() {
        return Err(Error::InvalidOption {
            option: "DataFolder",
            reason: format!(
                "{} holds no backup (no {})",
                data_folder.display(),
                p.display()
            ),
        });
    }
    SqliteIndex::open(&p)
}

/// Re-hashes every indexed file of a local backup folder and lists missing, corrupt and extra
/// files (keys are paths below `data_folder`).
pub fn verify(data_folder: &Path) -> Result<VerifyReport, Error> {
    verify_store(&LocalStore::new(data_folder), &open_index(data_folder)?)
}

/// [`verify`] for any store and index: re-reads every indexed object once.
pub fn verify_store(store: &dyn MessageStore, index: &dyn Index) -> Result<VerifyReport, Error> {
    let mut report = VerifyReport::default();
    let mut known = HashSet::new();
    let read_err = |key: &ObjectKey, e| Error::io(format!("cannot read {}", store.locate(key)), e);
    for row in index.saved(None)? {
        known.insert(row.key.clone());
        let (Some(content), Some(start)) = (store.open(&row.key)?, store.open(&row.key)?) else {
            report.missing.push((row.mailbox, row.id, row.key));
            continue;
        };
        let stored = store::hash_reader(content).map_err(|e| read_err(&row.key, e))?;
        let header = store::read_header(start).map_err(|e| read_err(&row.key, e))?;
        let reason = if stored.sha256 != row.sha256 {
            Some("content differs from what was saved (SHA-256 mismatch)".to_string())
        } else if header.as_ref().is_none_or(|h| h.id != row.id) {
            Some("the X-NS-Backup header is missing or names another message".to_string())
        } else {
            None
        };
        match reason {
            Some(reason) => report.corrupt.push(CorruptFile {
                mailbox: row.mailbox,
                id: row.id,
                key: row.key,
                reason,
            }),
            None => report.ok += 1,
        }
    }
    report.extra = store
        .list("")?
        .into_iter()
        .filter(|k| !known.contains(k))
        .collect();
    Ok(report)
}

/// Result of [`status`].
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// The last run, if any.
    pub last_run: Option<RunRow>,
    /// Per mailbox: (mailbox, saved messages, bytes).
    pub mailboxes: Vec<(String, u64, u64)>,
    /// Per mailbox: folders with a stored delta token.
    pub folders_with_token: Vec<(String, u64)>,
    /// The lock.
    pub lock: LockState,
    /// Workers sharing the index, with the mailboxes they hold (none without leases).
    pub workers: Vec<crate::index::WorkerRow>,
}

/// Last run, counts and lock state of a backup folder. `working_folder` defaults to `.meta`.
pub fn status(data_folder: &Path, working_folder: Option<&Path>) -> Result<StatusReport, Error> {
    status_of(&open_index(data_folder)?, data_folder, working_folder)
}

/// [`status`] with a given index (e.g. a [`crate::PostgresIndex`]).
pub fn status_of(
    index: &dyn Index,
    data_folder: &Path,
    working_folder: Option<&Path>,
) -> Result<StatusReport, Error> {
    let wf = working_folder
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_folder.join(META_DIR));
    Ok(StatusReport {
        last_run: index.last_run()?,
        mailboxes: index.saved_counts()?,
        folders_with_token: index.folder_counts()?,
        lock: RunLock::state(&wf),
        workers: index.workers()?,
    })
}
