//! Offline checks of a backup folder: `verify` (files against the index) and `status`.
//!
//! Neither touches the network nor takes the run lock; `verify` reads every file once.

use crate::engine::META_DIR;
use crate::error::Error;
use crate::index::{INDEX_FILE, Index, RunRow};
use crate::lock::{LockState, RunLock};
use crate::store;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A file whose content does not match the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptFile {
    /// Mailbox.
    pub mailbox: String,
    /// Message id.
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// Result of [`verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Files checked and correct.
    pub ok: u64,
    /// Indexed messages whose file is missing: (mailbox, id, path).
    pub missing: Vec<(String, String, PathBuf)>,
    /// Files whose hash or backup header does not match the index.
    pub corrupt: Vec<CorruptFile>,
    /// `.eml` files (or leftovers) under the data folder that the index does not know.
    pub extra: Vec<PathBuf>,
}

impl VerifyReport {
    /// True when nothing is missing, corrupt or extra.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.extra.is_empty()
    }
}

fn open_index(data_folder: &Path) -> Result<Index, Error> {
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
    Index::open(&p, data_folder)
}

/// Re-hashes every indexed file and lists missing, corrupt and extra files.
pub fn verify(data_folder: &Path) -> Result<VerifyReport, Error> {
    let index = open_index(data_folder)?;
    let mut report = VerifyReport::default();
    let mut known = HashSet::new();
    for row in index.saved(None)? {
        known.insert(row.path.clone());
        if !row.path.is_file() {
            report.missing.push((row.mailbox, row.id, row.path));
            continue;
        }
        let hash = store::hash_file(&row.path)
            .map_err(|e| Error::io(format!("cannot read {}", row.path.display()), e))?;
        let header = store::read_header(&row.path)?;
        let reason = if hash != row.sha256 {
            Some("content differs from what was saved (SHA-256 mismatch)".to_string())
        } else if header.as_ref().is_none_or(|h| h.id != row.id) {
            Some("the X-NS-Backup header is missing or names another message".to_string())
        } else {
            None
        };
        match reason {
            Some(reason) => report.corrupt.push(crate::verify::CorruptFile {
                mailbox: row.mailbox,
                id: row.id,
                path: row.path,
                reason,
            }),
            None => report.ok += 1,
        }
    }
    for f in store::walk_files(data_folder, &[])? {
        if !known.contains(&f) {
            report.extra.push(f);
        }
    }
    report.extra.sort();
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
}

/// Last run, counts and lock state of a backup folder. `working_folder` defaults to `.meta`.
pub fn status(data_folder: &Path, working_folder: Option<&Path>) -> Result<StatusReport, Error> {
    let index = open_index(data_folder)?;
    let wf = working_folder
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_folder.join(META_DIR));
    Ok(StatusReport {
        last_run: index.last_run()?,
        mailboxes: index.saved_counts()?,
        folders_with_token: index.folder_counts()?,
        lock: RunLock::state(&wf),
    })
}
