//! The SQLite [`Index`] in `DataFolder/.meta/index.sqlite`.
//!
//! Tables `saved` (the `path` column holds the object key), `remote`, `folders`, `restored`
//! (the restore log), `runs`, and `workers` and `leases` (`leases.rs`); see
//! the module docs of [`crate::index`]. WAL journal with `synchronous=FULL`: a committed row
//! survives a crash or power loss. One connection behind a mutex; callers are on blocking
//! threads.
//!
//! Search: `headers` with the FTS5 table `headers_fts` (subject and addresses); the SQL function
//! `folder_within` (`store::folder_path::within`, Unicode case-insensitive) for folder terms;
//! an in-memory database attached as `walk` where newest-first searches with a very common
//! prefix word match the rows of the date index they walk (`walk_newest`) instead of merging
//! that word's lists over the whole index, and where query terms are tokenized to spell their
//! prefix out as the index's words it begins (`fts_match`, with the `fts5vocab` table
//! `temp.headers_words`). These are per connection, never in the file. Counts (`count.rs`) are
//! read row by row from the full-text index and stop at their limit, the dates of a count with
//! a date bound from the covering index `headers_dates` (`seq, date`; added at open by
//! `migrate_headers`) instead of the table; or, when a sample of the index says a full-text
//! search's date range holds fewer rows than its matches to look up, the range's rows are read
//! from the date index into a set first and the matches tested against it.

use super::lease::{Acquired, WorkerRow, in_use, ttl_millis};
use super::{HeaderRow, Hit, Index, QuarantinedRow, RestoreRow, RunRow, SavedRow};
use crate::error::Error;
use crate::hooks::MessageInfo;
use crate::report::BackupReport;
use crate::search::{Cursor, Order, Selection, Term};
use crate::store::ObjectKey;
use crate::store::folder_path;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod count;
mod leases;
mod search;
use search::{fts_match, select_planned, walk_first, walk_newest};

/// File name of the index inside `.meta`.
pub const INDEX_FILE: &str = "index.sqlite";

/// The SQLite index.
#[derive(Debug)]
pub struct SqliteIndex {
    conn: Mutex<Connection>,
    path: PathBuf,
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
CREATE TABLE IF NOT EXISTS restored(
  source_mailbox TEXT NOT NULL, source_id TEXT NOT NULL, source_key TEXT NOT NULL,
  target_mailbox TEXT NOT NULL, target_id TEXT, complete INTEGER NOT NULL, started TEXT NOT NULL,
  mode TEXT NOT NULL, PRIMARY KEY(source_mailbox, source_id, target_mailbox));
CREATE TABLE IF NOT EXISTS runs(
  run_id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT NOT NULL, finished TEXT,
  status TEXT NOT NULL, report TEXT);
CREATE TABLE IF NOT EXISTS headers(
  seq INTEGER PRIMARY KEY, mailbox TEXT NOT NULL, id TEXT NOT NULL, path TEXT NOT NULL,
  from_addr TEXT NOT NULL, to_addr TEXT NOT NULL, cc_addr TEXT NOT NULL, subject TEXT NOT NULL,
  date TEXT, message_id TEXT, folder_id TEXT NOT NULL, size INTEGER NOT NULL,
  has_attachment INTEGER NOT NULL, is_read INTEGER, created TEXT, UNIQUE(mailbox, id));
CREATE INDEX IF NOT EXISTS headers_by_date ON headers(date);
CREATE INDEX IF NOT EXISTS headers_by_path ON headers(path);
CREATE INDEX IF NOT EXISTS headers_by_folder ON headers(mailbox, folder_id, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS headers_fts USING fts5(
  subject, from_addr, to_addr, cc_addr, content='headers', content_rowid='seq');
CREATE TRIGGER IF NOT EXISTS headers_ai AFTER INSERT ON headers BEGIN
  INSERT INTO headers_fts(rowid, subject, from_addr, to_addr, cc_addr)
  VALUES(new.seq, new.subject, new.from_addr, new.to_addr, new.cc_addr);
END;
CREATE TRIGGER IF NOT EXISTS headers_ad AFTER DELETE ON headers BEGIN
  INSERT INTO headers_fts(headers_fts, rowid, subject, from_addr, to_addr, cc_addr)
  VALUES('delete', old.seq, old.subject, old.from_addr, old.to_addr, old.cc_addr);
END;
CREATE TRIGGER IF NOT EXISTS headers_au AFTER UPDATE ON headers BEGIN
  INSERT INTO headers_fts(headers_fts, rowid, subject, from_addr, to_addr, cc_addr)
  VALUES('delete', old.seq, old.subject, old.from_addr, old.to_addr, old.cc_addr);
  INSERT INTO headers_fts(rowid, subject, from_addr, to_addr, cc_addr)
  VALUES(new.seq, new.subject, new.from_addr, new.to_addr, new.cc_addr);
END;
CREATE TABLE IF NOT EXISTS flags(name TEXT PRIMARY KEY, done_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantined(
  path TEXT PRIMARY KEY, mailbox TEXT NOT NULL, location TEXT NOT NULL, since TEXT NOT NULL);
";

fn upsert_saved(c: &Connection, row: &SavedRow) -> rusqlite::Result<()> {
    let now = chrono::Utc::now().to_rfc3339();
    c.execute(
        "INSERT INTO saved(mailbox, id, path, last_modified, size, sha256, saved_at)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(mailbox, id) DO UPDATE SET path=excluded.path,
           last_modified=excluded.last_modified, size=excluded.size,
           sha256=excluded.sha256, saved_at=excluded.saved_at",
        params![
            row.mailbox,
            row.id,
            row.key.as_str(),
            row.last_modified,
            row.size as i64,
            row.sha256,
            now
        ],
    )?;
    Ok(())
}

/// Brings a `headers` table made before the creation time was indexed up to date: adds the
/// `created` column, fills it from the remote mirror (Graph's `createdDateTime` of every
/// message still listed; the others stay unknown), and indexes it and the Graph id (for
/// selections by id), and each row's date by its `seq` (`headers_dates`, a covering index the
/// count of a full-text search with a date bound reads instead of the table: `count_sql`).
/// Idempotent; run at every open, after [`SCHEMA`] (a first open of a big index builds
/// `headers_dates` once: about a second per million messages).
fn migrate_headers(c: &mut Connection) -> rusqlite::Result<()> {
    let has_created: bool = c.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('headers') WHERE name='created'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    let tx = c.transaction()?;
    if !has_created {
        tx.execute_batch(
            "ALTER TABLE headers ADD COLUMN created TEXT;
             UPDATE headers SET created = (
               SELECT strftime('%Y-%m-%dT%H:%M:%SZ', json_extract(r.info, '$.created'))
               FROM remote r WHERE r.mailbox=headers.mailbox AND r.id=headers.id);",
        )?;
    }
    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS headers_by_created ON headers(created);
         CREATE INDEX IF NOT EXISTS headers_by_id ON headers(id);
         CREATE INDEX IF NOT EXISTS headers_dates ON headers(seq, date);",
    )?;
    tx.commit()
}

fn upsert_headers(c: &Connection, h: &HeaderRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO headers(mailbox, id, path, from_addr, to_addr, cc_addr, subject, date,
           message_id, folder_id, size, has_attachment, is_read, created)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT(mailbox, id) DO UPDATE SET path=excluded.path, from_addr=excluded.from_addr,
           to_addr=excluded.to_addr, cc_addr=excluded.cc_addr, subject=excluded.subject,
           date=excluded.date, message_id=excluded.message_id, folder_id=excluded.folder_id,
           size=excluded.size, has_attachment=excluded.has_attachment, is_read=excluded.is_read,
           created=excluded.created",
    )?
    .execute(params![
        h.mailbox,
        h.id,
        h.key.as_str(),
        h.from,
        h.to,
        h.cc,
        h.subject,
        h.date,
        h.message_id,
        h.folder_id,
        h.size as i64,
        h.has_attachment,
        h.is_read,
        h.created
    ])?;
    Ok(())
}

impl SqliteIndex {
    /// Opens (creating if needed) the index at `path`.
    pub fn open(path: &Path) -> Result<SqliteIndex, Error> {
        if let Some(dir) = path.parent() {
            durable_write::create_dir_all(dir).map_err(Error::durable)?;
        }
        let err = |source: rusqlite::Error| Error::Index {
            location: path.display().to_string(),
            source: Box::new(source),
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(err)?;
        // Checkpoint every 100 pages (400 KiB) instead of SQLite's 1,000: each saved message
        // commits about a dozen pages (saved copy, header row, their indexes, FTS5), and the WAL
        // file keeps the size it once reached.
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=100;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute_batch(leases::SCHEMA).map_err(err)?;
        migrate_headers(&mut conn).map_err(err)?;
        // Scratch space of `walk_newest`, never on disk.
        conn.execute_batch("ATTACH DATABASE ':memory:' AS walk")
            .map_err(err)?;
        // `fts_match` (spelling out prefixes): a query term tokenized as `headers_fts` does
        // (same default tokenizer), and the words of `headers_fts` in order. Never on disk.
        conn.execute_batch(
            "CREATE VIRTUAL TABLE walk.query_text USING fts5(value);
             CREATE VIRTUAL TABLE walk.query_words USING fts5vocab(query_text, instance);
             CREATE VIRTUAL TABLE temp.headers_words USING fts5vocab(main, headers_fts, instance);",
        )
        .map_err(err)?;
        // `folder:` terms: SQLite's lower() folds ASCII only, and the rule is the one restore
        // uses (`folder_path::within`).
        conn.create_scalar_function(
            "folder_within",
            2,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| {
                let (path, folder) = (ctx.get_raw(0), ctx.get_raw(1));
                Ok(match (path.as_str_or_null()?, folder.as_str_or_null()?) {
                    (Some(p), Some(f)) => folder_path::within(p, f),
                    _ => false,
                })
            },
        )
        .map_err(err)?;
        Ok(SqliteIndex {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard).map_err(|source| Error::Index {
            location: self.path.display().to_string(),
            source: Box::new(source),
        })
    }
}

impl Index for SqliteIndex {
    // ---- runs ----

    /// Records the start of a run.
    fn start_run(&self) -> Result<i64, Error> {
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
    fn finish_run(&self, report: &BackupReport) -> Result<(), Error> {
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
    fn last_run(&self) -> Result<Option<RunRow>, Error> {
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

    fn record_saved(&self, row: &SavedRow) -> Result<(), Error> {
        self.with(|c| upsert_saved(c, row))
    }

    /// Forgets a saved copy (after its file was removed).
    fn remove_saved(&self, mailbox: &str, id: &str) -> Result<(), Error> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM saved WHERE mailbox=?1 AND id=?2",
                params![mailbox, id],
            )?;
            tx.execute(
                "DELETE FROM headers WHERE mailbox=?1 AND id=?2",
                params![mailbox, id],
            )?;
            tx.commit()
        })
    }

    /// Saved copies of one mailbox (or of all when `mailbox` is `None`).
    fn saved(&self, mailbox: Option<&str>) -> Result<Vec<SavedRow>, Error> {
        let rows: Vec<(String, String, String, String, i64, String)> = self.with(|c| {
            let mut st = c.prepare(
                "SELECT mailbox, id, path, last_modified, size, sha256 FROM saved
                 WHERE ?1 IS NULL OR mailbox=?1",
            )?;
            let rows = st.query_map(params![mailbox], |r| r.try_into())?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(SavedRow::from_columns)
            .collect())
    }

    /// Count of saved copies per mailbox.
    fn saved_counts(&self) -> Result<Vec<(String, u64, u64)>, Error> {
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
    fn apply_remote(
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
    fn remote_ids_in_folder(&self, mailbox: &str, folder: &str) -> Result<HashSet<String>, Error> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id FROM remote WHERE mailbox=?1 AND folder_id=?2")?;
            let rows = st.query_map(params![mailbox, folder], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Forgets one remote message (deleted in flight).
    fn remove_remote(&self, mailbox: &str, id: &str) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "DELETE FROM remote WHERE mailbox=?1 AND id=?2",
                params![mailbox, id],
            )?;
            Ok(())
        })
    }

    /// All remote messages of a mailbox.
    fn remote_messages(&self, mailbox: &str) -> Result<Vec<MessageInfo>, Error> {
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
    fn delta_link(&self, mailbox: &str, folder: &str) -> Result<Option<String>, Error> {
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
    fn set_delta_link(
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
    fn known_folders(&self, mailbox: &str) -> Result<Vec<String>, Error> {
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
    fn drop_folder(&self, mailbox: &str, folder: &str) -> Result<(), Error> {
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
    fn folder_counts(&self) -> Result<Vec<(String, u64)>, Error> {
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

    // ---- headers and search ----

    fn record_message(&self, row: &SavedRow, headers: &HeaderRow) -> Result<(), Error> {
        self.with(|c| {
            let tx = c.transaction()?;
            upsert_saved(&tx, row)?;
            upsert_headers(&tx, headers)?;
            tx.commit()
        })
    }

    fn record_headers(&self, headers: &HeaderRow) -> Result<(), Error> {
        self.with(|c| upsert_headers(c, headers))
    }

    fn saved_without_headers(&self) -> Result<Vec<SavedRow>, Error> {
        let with: HashSet<(String, String)> = self.with(|c| {
            let mut st = c.prepare("SELECT mailbox, id FROM headers")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut rows = self.saved(None)?;
        rows.retain(|r| !with.contains(&(r.mailbox.clone(), r.id.clone())));
        Ok(rows)
    }

    fn select(
        &self,
        selection: &Selection,
        order: Order,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Hit>, Error> {
        self.with(|c| {
            let fts = fts_match(c, selection)?;
            if order == Order::Newest
                && selection.messages.is_empty()
                && let Some(m) = &fts
                && walk_first(c, selection)?
                && let Some(hits) = walk_newest(c, selection, m, limit)?
            {
                return Ok(hits);
            }
            select_planned(c, selection, fts.as_deref(), order, after, limit)
        })
    }

    fn count(&self, selection: &Selection, at_most: u64) -> Result<u64, Error> {
        self.with(|c| count::count(c, selection, at_most))
    }

    // ---- flags ----

    fn flag(&self, name: &str) -> Result<bool, Error> {
        self.with(|c| {
            c.query_row("SELECT 1 FROM flags WHERE name=?1", params![name], |_| {
                Ok(())
            })
            .optional()
            .map(|o| o.is_some())
        })
    }

    fn set_flag(&self, name: &str) -> Result<(), Error> {
        let now = chrono::Utc::now().to_rfc3339();
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO flags(name, done_at) VALUES(?1, ?2)",
                params![name, now],
            )?;
            Ok(())
        })
    }

    // ---- quarantine ----

    fn record_quarantined(&self, row: &QuarantinedRow) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO quarantined(path, mailbox, location, since)
                 VALUES(?1, ?2, ?3, ?4)",
                params![row.key.as_str(), row.mailbox, row.location, row.since],
            )?;
            Ok(())
        })
    }

    fn quarantined(&self) -> Result<Vec<QuarantinedRow>, Error> {
        let rows: Vec<(String, String, String, String)> = self.with(|c| {
            let mut st = c.prepare(
                "SELECT path, mailbox, location, since FROM quarantined ORDER BY since, path",
            )?;
            let rows = st.query_map([], |r| r.try_into())?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|(path, mailbox, location, since)| {
                Ok(QuarantinedRow {
                    mailbox,
                    key: ObjectKey::new(path)?,
                    location,
                    since,
                })
            })
            .collect()
    }

    fn remove_quarantined(&self, key: &ObjectKey) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "DELETE FROM quarantined WHERE path=?1",
                params![key.as_str()],
            )?;
            Ok(())
        })
    }

    fn folder_paths(&self, mailbox: &str) -> Result<HashMap<String, String>, Error> {
        self.with(|c| {
            let mut st = c.prepare("SELECT folder_id, name FROM folders WHERE mailbox=?1")?;
            let rows = st.query_map(params![mailbox], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    // ---- restore log ----

    fn record_restore(&self, row: &RestoreRow) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "INSERT INTO restored(source_mailbox, source_id, source_key, target_mailbox,
                   target_id, complete, started, mode) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)
                 ON CONFLICT(source_mailbox, source_id, target_mailbox) DO UPDATE SET
                   source_key=excluded.source_key, target_id=excluded.target_id,
                   complete=excluded.complete, mode=excluded.mode
                 WHERE restored.target_id IS NULL OR excluded.target_id IS NOT NULL",
                params![
                    row.source_mailbox,
                    row.source_id,
                    row.source_key.as_str(),
                    row.target_mailbox,
                    row.target_id,
                    row.complete,
                    row.started,
                    row.mode
                ],
            )?;
            Ok(())
        })
    }

    fn restore_log(
        &self,
        source_mailbox: &str,
        target_mailbox: &str,
    ) -> Result<Vec<RestoreRow>, Error> {
        type Raw = (
            String,
            String,
            String,
            String,
            Option<String>,
            bool,
            String,
            String,
        );
        let rows: Vec<Raw> = self.with(|c| {
            let mut st = c.prepare(
                "SELECT source_mailbox, source_id, source_key, target_mailbox, target_id,
                   complete, started, mode FROM restored
                 WHERE source_mailbox=?1 AND target_mailbox=?2 ORDER BY rowid",
            )?;
            let rows = st.query_map(params![source_mailbox, target_mailbox], |r| r.try_into())?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(sm, sid, key, tm, tid, complete, started, mode)| {
                Some(RestoreRow {
                    source_key: ObjectKey::new(key).ok()?,
                    source_mailbox: sm,
                    source_id: sid,
                    target_mailbox: tm,
                    target_id: tid,
                    complete,
                    started,
                    mode,
                })
            })
            .collect())
    }

    // ---- workers and leases ----

    fn register_worker(&self, worker: &str, ttl: std::time::Duration) -> Result<(), Error> {
        let ttl = ttl_millis(ttl)?;
        self.with(|c| leases::register(c, worker, ttl))?
            .map_err(|heartbeat| in_use(worker, heartbeat))
    }

    fn acquire_lease(
        &self,
        worker: &str,
        mailboxes: &[String],
        ttl: std::time::Duration,
    ) -> Result<Acquired, Error> {
        let ttl = ttl_millis(ttl)?;
        self.with(|c| leases::acquire(c, worker, mailboxes, ttl))
    }

    fn heartbeat(
        &self,
        worker: &str,
        progress: &[(String, u64)],
        ttl: std::time::Duration,
    ) -> Result<Vec<String>, Error> {
        let ttl = ttl_millis(ttl)?;
        self.with(|c| leases::heartbeat(c, worker, progress, ttl))
    }

    fn release_lease(&self, worker: &str, mailbox: &str, done: bool) -> Result<(), Error> {
        self.with(|c| leases::release(c, worker, mailbox, done))
    }

    fn finish_worker(&self, worker: &str) -> Result<(), Error> {
        self.with(|c| leases::finish(c, worker))
    }

    fn workers(&self) -> Result<Vec<WorkerRow>, Error> {
        self.with(leases::workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_made_before_creation_times_gets_them_from_the_remote_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".meta/index.sqlite");
        let ix = SqliteIndex::open(&path).unwrap();
        let listed = MessageInfo {
            mailbox: "me".into(),
            id: "listed".into(),
            created: Some("2024-03-05T23:30:00.5Z".into()),
            ..Default::default()
        };
        ix.apply_remote("me", "f", &[listed], &[]).unwrap();
        drop(ix);
        // The headers table of an earlier version: no `created` column, rows without it.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP INDEX headers_by_created; ALTER TABLE headers DROP COLUMN created;
             INSERT INTO headers(mailbox, id, path, from_addr, to_addr, cc_addr, subject,
               folder_id, size, has_attachment)
             VALUES('me', 'listed', 'k/listed.eml', '', '', '', 'a', 'f', 1, 0),
                   ('me', 'gone', 'k/gone.eml', '', '', '', 'b', 'f', 1, 0);",
        )
        .unwrap();
        drop(c);
        let ix = SqliteIndex::open(&path).unwrap();
        let day = |d| chrono::NaiveDate::from_ymd_opt(2024, 3, d);
        let created = |from, to| -> Vec<String> {
            let sel = Selection {
                created_from: from,
                created_to: to,
                ..Default::default()
            };
            let hits = ix.select(&sel, Order::Newest, None, 10).unwrap();
            hits.into_iter()
                .map(|h| format!("{} {:?}", h.headers.id, h.headers.created))
                .collect()
        };
        assert_eq!(
            created(day(5), day(5)),
            ["listed Some(\"2024-03-05T23:30:00Z\")"],
            "filled from the mirror, as an index time"
        );
        assert!(created(day(6), None).is_empty());
        // Not listed any more: its creation time is unknown, no date range selects it.
        assert_eq!(created(None, None).len(), 2);
        // Opening again changes nothing.
        drop(ix);
        SqliteIndex::open(&path).unwrap();
    }

    #[test]
    fn sqlite_index_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
        crate::index::conformance::index(&ix);
    }

    #[test]
    fn saved_keys_are_the_relative_paths_of_earlier_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".meta/index.sqlite");
        let ix = SqliteIndex::open(&path).unwrap();
        // What earlier versions wrote: a relative path, and an absolute one for a copy a hook
        // redirected outside the backup folder.
        ix.with(|c| {
            c.execute_batch(
                "INSERT INTO saved VALUES('me','1','2024-01/x.eml','t',3,'h','now');
                 INSERT INTO saved VALUES('me','2','/elsewhere/y.eml','t',3,'h','now');",
            )
        })
        .unwrap();
        let rows = ix.saved(Some("me")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key.as_str(), "2024-01/x.eml");
    }
}
