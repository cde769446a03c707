//! The SQLite index in `DataFolder/.meta/index.sqlite`.
//!
//! Tables:
//! - `saved`: one row per message with a durable local copy (path, `lastModifiedDateTime`, size,
//!   SHA-256 of the file). A row is written only after the file is renamed into place and fsynced.
//! - `remote`: the mailbox as last listed (id, folder, properties), maintained from delta rounds.
//!   It is what the backup phase works through and what the sync phase compares against.
//! - `folders`: one row per folder with its delta link. A link is stored only after every message
//!   of its round is durable (or deliberately skipped), so a crash replays the round.
//! - `runs`: one row per run, for `status`.
//!
//! WAL journal with `synchronous=FULL`: a committed row survives a crash or power loss.
//! This module knows nothing about Graph or files beyond the paths it stores.

use crate::error::Error;
use crate::hooks::MessageInfo;
use crate::report::BackupReport;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// File name of the index inside `.meta`.
pub const INDEX_FILE: &str = "index.sqlite";

/// A saved copy as recorded in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRow {
    /// Mailbox key.
    pub mailbox: String,
    /// Graph message id.
    pub id: String,
    /// Path of the file (absolute).
    pub path: PathBuf,
    /// `lastModifiedDateTime` of the saved copy.
    pub last_modified: String,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256 of the file (hex).
    pub sha256: String,
}

/// The last run, for `status`.
#[derive(Debug, Clone)]
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

/// The index.
#[derive(Debug)]
pub struct Index {
    conn: Mutex<Connection>,
    path: PathBuf,
    data_folder: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS saved(
  mailbox TEXT NOT NULL, id TEXT NOT NULL, path TEXT NOT NULL, last_modified TEXT NOT NULL,
  size INTEGER NOT NULL, sha256 TEXT NOT NULL, saved_at TEXT NOT NULL,
  PRIMARY KEY(mailbox, id));
CREATE TABLE IF NOT EXISTS remote(
  mailbox TEXT NOT NULL, id TEXT NOT NULL, folder_id TEXT NOT NULL, info TEXT NOT NULL,
  PRIMARY KEY(mailbox, id));
CREATE INDEX IF NOT EXISTS remote_by_folder ON remote(mailbox, folder_id);
CREATE TABLE IF NOT EXISTS folders(
  mailbox TEXT NOT NULL, folder_id TEXT NOT NULL, name TEXT NOT NULL, delta_link TEXT,
  updated_at TEXT NOT NULL, PRIMARY KEY(mailbox, folder_id));
CREATE TABLE IF NOT EXISTS runs(
  run_id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT NOT NULL, finished TEXT,
  status TEXT NOT NULL, report TEXT);
";

impl Index {
    /// Opens (creating if needed) the index of `data_folder` at `path`.
    pub fn open(path: &Path, data_folder: &Path) -> Result<Index, Error> {
        if let Some(dir) = path.parent() {
            crate::store::create_dir_durable(dir)?;
        }
        let err = |source| Error::Index {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(err)?;
        conn.execute_batch("PRAGMA synchronous=FULL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Index {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            data_folder: data_folder.to_path_buf(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard).map_err(|source| Error::Index {
            path: self.path.clone(),
            source,
        })
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.data_folder)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    }

    fn abs(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.data_folder.join(p)
        }
    }

    // ---- runs ----

    /// Records the start of a run.
    pub fn start_run(&self) -> Result<i64, Error> {
        let now = chrono::Utc::now().to_rfc3339();
        self.with(|c| {
            c.execute(
                "INSERT INTO runs(started, status) VALUES(?1, 'Running')",
                params![now],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records the end of a run.
    pub fn finish_run(&self, report: &BackupReport) -> Result<(), Error> {
        let now = chrono::Utc::now().to_rfc3339();
        let json = serde_json::to_string(report).unwrap_or_default();
        let status = format!("{:?}", report.status);
        self.with(|c| {
            c.execute(
                "UPDATE runs SET finished=?1, status=?2, report=?3 WHERE run_id=?4",
                params![now, status, json, report.run_id],
            )?;
            Ok(())
        })
    }

    /// The most recent run.
    pub fn last_run(&self) -> Result<Option<RunRow>, Error> {
        self.with(|c| {
            c.query_row(
                "SELECT run_id, started, finished, status, report FROM runs ORDER BY run_id DESC LIMIT 1",
                [],
                |r| {
                    Ok(RunRow {
                        run_id: r.get(0)?,
                        started: r.get(1)?,
                        finished: r.get(2)?,
                        status: r.get(3)?,
                        report: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    // ---- saved copies ----

    /// Records a durable copy (after the file is in place).
    pub fn record_saved(
        &self,
        mailbox: &str,
        id: &str,
        path: &Path,
        last_modified: &str,
        size: u64,
        sha256: &str,
    ) -> Result<(), Error> {
        let rel = self.rel(path);
        let now = chrono::Utc::now().to_rfc3339();
        self.with(|c| {
            c.execute(
                "INSERT INTO saved(mailbox, id, path, last_modified, size, sha256, saved_at)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(mailbox, id) DO UPDATE SET path=excluded.path,
                   last_modified=excluded.last_modified, size=excluded.size,
                   sha256=excluded.sha256, saved_at=excluded.saved_at",
                params![mailbox, id, rel, last_modified, size as i64, sha256, now],
            )?;
            Ok(())
        })
    }

    /// Forgets a saved copy (after its file was removed).
    pub fn remove_saved(&self, mailbox: &str, id: &str) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "DELETE FROM saved WHERE mailbox=?1 AND id=?2",
                params![mailbox, id],
            )?;
            Ok(())
        })
    }

    /// Saved copies of one mailbox (or of all when `mailbox` is `None`).
    pub fn saved(&self, mailbox: Option<&str>) -> Result<Vec<SavedRow>, Error> {
        let rows: Vec<(String, String, String, String, i64, String)> = self.with(|c| {
            let mut st = c.prepare(
                "SELECT mailbox, id, path, last_modified, size, sha256 FROM saved
                 WHERE ?1 IS NULL OR mailbox=?1",
            )?;
            let rows = st.query_map(params![mailbox], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(mailbox, id, path, last_modified, size, sha256)| SavedRow {
                    mailbox,
                    id,
                    path: self.abs(&path),
                    last_modified,
                    size: size.max(0) as u64,
                    sha256,
                },
            )
            .collect())
    }

    /// Saved copies of a mailbox by id.
    pub(crate) fn saved_map(&self, mailbox: &str) -> Result<HashMap<String, SavedRow>, Error> {
        Ok(self
            .saved(Some(mailbox))?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect())
    }

    /// Count of saved copies per mailbox.
    pub fn saved_counts(&self) -> Result<Vec<(String, u64, u64)>, Error> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT mailbox, COUNT(*), COALESCE(SUM(size),0) FROM saved GROUP BY mailbox ORDER BY mailbox",
            )?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64, r.get::<_, i64>(2)?.max(0) as u64))
            })?;
            rows.collect()
        })
    }

    // ---- remote mirror ----

    /// Applies one delta page of a folder: upserts `items`, removes `removed` if they are still
    /// recorded in this folder (a message moved elsewhere keeps its newer folder).
    pub(crate) fn apply_remote(
        &self,
        mailbox: &str,
        folder: &str,
        items: &[MessageInfo],
        removed: &[String],
    ) -> Result<(), Error> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut up = tx.prepare_cached(
                    "INSERT INTO remote(mailbox, id, folder_id, info) VALUES(?1, ?2, ?3, ?4)
                     ON CONFLICT(mailbox, id) DO UPDATE SET folder_id=excluded.folder_id, info=excluded.info",
                )?;
                for m in items {
                    let info = serde_json::to_string(m).unwrap_or_default();
                    up.execute(params![mailbox, m.id, folder, info])?;
                }
                let mut del = tx.prepare_cached(
                    "DELETE FROM remote WHERE mailbox=?1 AND id=?2 AND folder_id=?3",
                )?;
                for id in removed {
                    del.execute(params![mailbox, id, folder])?;
                }
            }
            tx.commit()
        })
    }

    /// Ids recorded in a folder.
    pub(crate) fn remote_ids_in_folder(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<HashSet<String>, Error> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id FROM remote WHERE mailbox=?1 AND folder_id=?2")?;
            let rows = st.query_map(params![mailbox, folder], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Forgets one remote message (deleted in flight).
    pub(crate) fn remove_remote(&self, mailbox: &str, id: &str) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "DELETE FROM remote WHERE mailbox=?1 AND id=?2",
                params![mailbox, id],
            )?;
            Ok(())
        })
    }

    /// All remote messages of a mailbox.
    pub(crate) fn remote_messages(&self, mailbox: &str) -> Result<Vec<MessageInfo>, Error> {
        let infos: Vec<String> = self.with(|c| {
            let mut st = c.prepare("SELECT info FROM remote WHERE mailbox=?1 ORDER BY rowid")?;
            let rows = st.query_map(params![mailbox], |r| r.get(0))?;
            rows.collect()
        })?;
        Ok(infos
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    // ---- folders ----

    /// The stored delta link of a folder.
    pub(crate) fn delta_link(&self, mailbox: &str, folder: &str) -> Result<Option<String>, Error> {
        self.with(|c| {
            c.query_row(
                "SELECT delta_link FROM folders WHERE mailbox=?1 AND folder_id=?2",
                params![mailbox, folder],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
        })
    }

    /// Stores (or clears) a folder's delta link.
    pub(crate) fn set_delta_link(
        &self,
        mailbox: &str,
        folder: &str,
        name: &str,
        link: Option<&str>,
    ) -> Result<(), Error> {
        let now = chrono::Utc::now().to_rfc3339();
        self.with(|c| {
            c.execute(
                "INSERT INTO folders(mailbox, folder_id, name, delta_link, updated_at) VALUES(?1,?2,?3,?4,?5)
                 ON CONFLICT(mailbox, folder_id) DO UPDATE SET name=excluded.name,
                   delta_link=excluded.delta_link, updated_at=excluded.updated_at",
                params![mailbox, folder, name, link, now],
            )?;
            Ok(())
        })
    }

    /// Folders known from earlier runs.
    pub(crate) fn known_folders(&self, mailbox: &str) -> Result<Vec<String>, Error> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT folder_id FROM folders WHERE mailbox=?1
                 UNION SELECT DISTINCT folder_id FROM remote WHERE mailbox=?1",
            )?;
            let rows = st.query_map(params![mailbox], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Forgets a folder that no longer exists, with its messages.
    pub(crate) fn drop_folder(&self, mailbox: &str, folder: &str) -> Result<(), Error> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM remote WHERE mailbox=?1 AND folder_id=?2",
                params![mailbox, folder],
            )?;
            tx.execute(
                "DELETE FROM folders WHERE mailbox=?1 AND folder_id=?2",
                params![mailbox, folder],
            )?;
            tx.commit()
        })
    }

    /// Number of folders with a delta link, per mailbox.
    pub fn folder_counts(&self) -> Result<Vec<(String, u64)>, Error> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT mailbox, COUNT(delta_link) FROM folders GROUP BY mailbox ORDER BY mailbox",
            )?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> MessageInfo {
        MessageInfo {
            mailbox: "me".into(),
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn remote_moves_keep_newer_folder() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(&dir.path().join(".meta/index.sqlite"), dir.path()).unwrap();
        ix.apply_remote("me", "A", &[info("1"), info("2")], &[])
            .unwrap();
        // 1 moves to B; B's round is seen before A's removal.
        ix.apply_remote("me", "B", &[info("1")], &[]).unwrap();
        ix.apply_remote("me", "A", &[], &["1".into(), "2".into()])
            .unwrap();
        let ids: Vec<String> = ix
            .remote_messages("me")
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec!["1".to_string()]);
        assert_eq!(ix.remote_ids_in_folder("me", "B").unwrap().len(), 1);
    }

    #[test]
    fn saved_rows_store_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(&dir.path().join(".meta/index.sqlite"), dir.path()).unwrap();
        let p = dir.path().join("2024-01/x.eml");
        ix.record_saved("me", "1", &p, "t1", 3, "h").unwrap();
        ix.record_saved("me", "1", &p, "t2", 4, "h2").unwrap();
        let rows = ix.saved(Some("me")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].path, p);
        assert_eq!(rows[0].last_modified, "t2");
        ix.set_delta_link("me", "A", "Inbox", Some("link")).unwrap();
        assert_eq!(ix.delta_link("me", "A").unwrap().as_deref(), Some("link"));
        ix.set_delta_link("me", "A", "Inbox", None).unwrap();
        assert_eq!(ix.delta_link("me", "A").unwrap(), None);
    }
}
