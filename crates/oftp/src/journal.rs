//! SQLite journal of received and sent virtual files and of end-to-end responses.
//!
//! What it records and why:
//! - **received files**, keyed by the authenticated partner (its SSID code) + originator +
//!   dataset name + stamp (the OFTP file identity as seen from that partner; SFIDORIG is
//!   whatever the sender writes, so it alone cannot tell partners apart): a completed entry
//!   makes a repeat by the same partner an SFNA 13 (duplicate); an entry in `receiving` state
//!   holds the temporary file and the last *durable* restart position, so an interrupted
//!   reception is resumed from there by the same partner only (the answer to a restart request
//!   is never beyond it). Journals written before the partner was part of the key are migrated
//!   on open: their entries are attributed to the partner whose code is the originator;
//! - **sent files**, keyed by partner + local path + size + modification time: keeps the virtual
//!   date/time chosen for the first attempt, so re-sending the same file after a broken
//!   connection presents the same identity and the partner can restart it; also tracks whether
//!   the EERP/NERP arrived;
//! - **end responses** sent and received, for the operator.
//!
//! Every stamp written is checked first ([`FileStamp::is_valid`]: a calendar date and a time of
//! day): nothing invalid is stored ([`JournalError::InvalidStamp`]). Journals of earlier versions
//! may hold rows with impossible stamps (a partner's `2006-06-43 51:86:72`); opening the journal
//! moves each such row to the table `set_aside` (with the table it came from, its columns and
//! the problem) and logs one warning per row saying what it meant and what to do, so it is
//! reported once and never read again (before, every later session failed on it with
//! `journal: corrupt entry: invalid virtual file stamp ...`).
//!
//! What it does not do: no file I/O and no protocol decisions. The database runs in WAL mode with
//! `synchronous=FULL`, so a call that returns has reached the disk. Calls are synchronous and
//! short; async callers wrap them with [`Journal::call`], which runs them on the blocking pool.
//! rusqlite (bundled SQLite) is used because it is the well-kept standard choice and needs no
//! system library.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use crate::stamp::FileStamp;

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// SQLite refused an operation.
    #[error("journal {}: {error}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error (part of this message, so not repeated as a `source`).
        error: rusqlite::Error,
    },
    /// A stored value could not be read back.
    #[error("journal {}: corrupt entry: {detail}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A file identity to record has a stamp that is no calendar date and time of day.
    #[error(
        "journal {}: not recording {what}: its virtual file stamp {stamp} is not a valid date and time",
        path.display()
    )]
    InvalidStamp {
        /// The database file.
        path: PathBuf,
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
    /// A blocking task of the journal was cancelled or panicked.
    #[error("journal task failed: {0}")]
    Task(String),
}

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "oftp-journal.sqlite3";

/// The identity of a virtual file: who made it, its name and its stamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// SFIDORIG (trailing blanks removed).
    pub originator: String,
    /// SFIDDSN (trailing blanks removed).
    pub dsn: String,
    /// SFIDDATE + SFIDTIME.
    pub stamp: FileStamp,
}

impl FileKey {
    /// A key with trailing blanks removed from the text fields (wire fields are blank-padded).
    pub fn new(originator: &str, dsn: &str, stamp: FileStamp) -> Self {
        Self {
            originator: originator.trim_end().to_owned(),
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
    fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::AwaitingEndResponse => "awaiting_end_response",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sending" => Self::Sending,
            "awaiting_end_response" => Self::AwaitingEndResponse,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// What identifies a local file across attempts to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFileId {
    /// Partner name (or SSID) the file goes to.
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

/// Direction of an end response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the partner.
    Received,
    /// Sent by us.
    Sent,
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
}

/// The journal. Cheap to clone; clones share one connection.
#[derive(Debug, Clone)]
pub struct Journal {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

/// The received-file table (also used to rebuild an old table, see `migrate_received`).
const RECEIVED_TABLE: &str = "
CREATE TABLE IF NOT EXISTS received (
    id INTEGER PRIMARY KEY,
    partner TEXT NOT NULL,
    originator TEXT NOT NULL,
    dsn TEXT NOT NULL,
    stamp TEXT NOT NULL,
    state TEXT NOT NULL,
    partial_path TEXT NOT NULL,
    final_path TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,
    file_offset INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    units INTEGER NOT NULL DEFAULT 0,
    end_response_sent INTEGER NOT NULL DEFAULT 0,
    end_response_deferred INTEGER NOT NULL DEFAULT 0,
    user_data TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    UNIQUE (partner, originator, dsn, stamp)
);
";

/// Hashes of transmitted files for signed end responses; `partner` is the partner a received
/// file came from (empty for sent files, whose identity we chose ourselves).
const FILE_HASHES_TABLE: &str = "
CREATE TABLE IF NOT EXISTS file_hashes (
    direction TEXT NOT NULL,
    partner TEXT NOT NULL,
    originator TEXT NOT NULL,
    dsn TEXT NOT NULL,
    stamp TEXT NOT NULL,
    suite INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (direction, partner, originator, dsn, stamp)
);
";

/// Columns of the received table before `partner` was added, in the order of that table.
const RECEIVED_V0_COLUMNS: &str = "id, originator, dsn, stamp, state, partial_path, final_path, \
    position, file_offset, records, units, end_response_sent, end_response_deferred, user_data, \
    updated_at";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sent (
    id INTEGER PRIMARY KEY,
    partner TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    originator TEXT NOT NULL,
    dsn TEXT NOT NULL,
    stamp TEXT NOT NULL,
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sent_by_file ON sent (partner, path, size, mtime_ns);
CREATE INDEX IF NOT EXISTS sent_by_key ON sent (originator, dsn, stamp);
CREATE TABLE IF NOT EXISTS end_responses (
    id INTEGER PRIMARY KEY,
    direction TEXT NOT NULL,
    originator TEXT NOT NULL,
    dsn TEXT NOT NULL,
    stamp TEXT NOT NULL,
    destination TEXT NOT NULL,
    reason INTEGER,
    reason_text TEXT,
    at TEXT NOT NULL
);
";

/// Rebuilds a `received` table without the `partner` column (journals of earlier versions) in
/// one transaction. The partner of an old entry is taken to be its originator, which is the
/// partner's own code for files it made itself; an entry routed through another partner then
/// restarts from zero and is not recognised as a duplicate, which is the safe side.
/// The same holds for the hashes of received files kept for signed end responses.
fn migrate_received(conn: &Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.unchecked_transaction()?;
    if needs_partner_column(conn, "received")? {
        tracing::info!("journal: adding the partner to the received-file key");
        conn.execute_batch("ALTER TABLE received RENAME TO received_v0")?;
        conn.execute_batch(RECEIVED_TABLE)?;
        conn.execute_batch(&format!(
            "INSERT INTO received (partner, {RECEIVED_V0_COLUMNS})
             SELECT originator, {RECEIVED_V0_COLUMNS} FROM received_v0;
             DROP TABLE received_v0;"
        ))?;
    }
    if needs_partner_column(conn, "file_hashes")? {
        tracing::info!("journal: adding the partner to the file-hash key");
        conn.execute_batch("ALTER TABLE file_hashes RENAME TO file_hashes_v0")?;
        conn.execute_batch(FILE_HASHES_TABLE)?;
        conn.execute_batch(
            "INSERT INTO file_hashes (direction, partner, originator, dsn, stamp, suite, hash)
             SELECT direction, CASE direction WHEN 'received' THEN originator ELSE '' END,
                    originator, dsn, stamp, suite, hash FROM file_hashes_v0;
             DROP TABLE file_hashes_v0;",
        )?;
    }
    tx.commit()
}

/// Whether `table` exists without a `partner` column (written by an earlier version).
fn needs_partner_column(conn: &Connection, table: &str) -> Result<bool, rusqlite::Error> {
    let mut has_table = false;
    let mut has_partner = false;
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    for name in stmt.query_map([table], |r| r.get::<_, String>(0))? {
        has_table = true;
        has_partner |= name? == "partner";
    }
    Ok(has_table && !has_partner)
}

/// The stored direction and partner of a file hash (sent files are ours: no partner).
fn hash_scope(direction: Direction, partner: &str) -> (&'static str, &str) {
    match direction {
        Direction::Received => ("received", partner.trim_end()),
        Direction::Sent => ("sent", ""),
    }
}

/// Rows set aside because they cannot be used (see the module doc): where they came from, their
/// columns as `name=value` text, and why.
const SET_ASIDE_TABLE: &str = "
CREATE TABLE IF NOT EXISTS set_aside (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    row TEXT NOT NULL,
    problem TEXT NOT NULL,
    at TEXT NOT NULL
);
";

/// The tables whose rows carry a virtual file stamp.
const STAMPED_TABLES: [&str; 4] = ["received", "sent", "file_hashes", "end_responses"];

/// Moves every row whose stamp is not a valid date and time to `set_aside`, in one transaction,
/// and returns one message per row for the operator (what the row was, what it means now, what
/// to do). Rows set aside are never read again, so each is reported once.
fn set_aside_invalid_stamps(
    conn: &Connection,
    path: &Path,
) -> Result<Vec<String>, rusqlite::Error> {
    use rusqlite::types::Value;
    let tx = conn.unchecked_transaction()?;
    let mut reports = Vec::new();
    for table in STAMPED_TABLES {
        let bad: Vec<(i64, Value)> = {
            let mut stmt = conn.prepare(&format!("SELECT rowid, stamp FROM {table}"))?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Value>(1)?)))?;
            let mut bad = Vec::new();
            for row in rows {
                let (rowid, stamp) = row?;
                let valid = matches!(&stamp, Value::Text(t) if FileStamp::parse(t).is_ok());
                if !valid {
                    bad.push((rowid, stamp));
                }
            }
            bad
        };
        for (rowid, stamp) in bad {
            let columns: Vec<(String, String)> = {
                let mut stmt = conn.prepare(&format!("SELECT * FROM {table} WHERE rowid = ?1"))?;
                let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
                stmt.query_row([rowid], |r| {
                    names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| Ok((n.clone(), sql_text(&r.get::<_, Value>(i)?))))
                        .collect()
                })?
            };
            let stamp = sql_text(&stamp);
            let problem = format!("stamp {stamp} is not a valid date and time");
            let row = columns
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            conn.execute(
                "INSERT INTO set_aside (source, row, problem, at) VALUES (?1, ?2, ?3, ?4)",
                params![table, row, problem, now_text()],
            )?;
            let id = conn.last_insert_rowid();
            conn.execute(&format!("DELETE FROM {table} WHERE rowid = ?1"), [rowid])?;
            let col = |name: &str| {
                columns
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or("?".to_owned(), |(_, v)| v.trim_matches('\'').to_owned())
            };
            let (what, meaning) = match table {
                "received" if col("state") == "receiving" => (
                    format!(
                        "the unfinished reception of {} from {} (partner {})",
                        col("dsn"),
                        col("originator"),
                        col("partner")
                    ),
                    format!(
                        "a new attempt starts from zero; its temporary file {} can be deleted",
                        col("partial_path")
                    ),
                ),
                "received" => (
                    format!(
                        "the reception of {} from {} (partner {}), stored as {}",
                        col("dsn"),
                        col("originator"),
                        col("partner"),
                        col("final_path")
                    ),
                    "a repeat of that file is no longer recognised as a duplicate, and no EERP \
                     is sent for it automatically: if the partner still waits for one, answer it \
                     another way"
                        .to_owned(),
                ),
                "sent" => (
                    format!(
                        "the send of {} as {} to {}",
                        col("path"),
                        col("dsn"),
                        col("partner")
                    ),
                    "a new attempt offers the file under a new identity, and an end response \
                     for the old one is not matched to it"
                        .to_owned(),
                ),
                "file_hashes" => (
                    format!(
                        "the recorded hash of {} from {} ({})",
                        col("dsn"),
                        col("originator"),
                        col("direction")
                    ),
                    "a signed EERP/NERP for that file can no longer be built or checked".to_owned(),
                ),
                _ => (
                    format!(
                        "the {} end response for {} from {}",
                        col("direction"),
                        col("dsn"),
                        col("originator")
                    ),
                    "it was history only; nothing else changes".to_owned(),
                ),
            };
            reports.push(format!(
                "journal {}: set aside {what}: its {problem} (written before stamps were checked); \
                 {meaning}. The row is kept as id {id} in table set_aside; delete it there when \
                 done (sqlite3 {} \"DELETE FROM set_aside WHERE id = {id}\")",
                path.display(),
                path.display()
            ));
        }
    }
    tx.commit()?;
    Ok(reports)
}

/// A column value as text for the operator: text quoted, blobs in hex.
fn sql_text(v: &rusqlite::types::Value) -> String {
    use rusqlite::types::Value;
    match v {
        Value::Null => "NULL".to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(t) => format!("'{t}'"),
        Value::Blob(b) => format!(
            "x'{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339()
}

impl Journal {
    /// Opens (or creates) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| JournalError::Io {
                path: dir.to_owned(),
                error: source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| JournalError::Sqlite {
            path: path.to_owned(),
            error: source,
        })?;
        Self::init(conn, path.to_owned())
    }

    /// Opens the journal `oftp-journal.sqlite3` in `data_dir`.
    pub fn open_in_dir(data_dir: &Path) -> Result<Self, JournalError> {
        Self::open(&data_dir.join(JOURNAL_FILE))
    }

    /// A journal that lives in memory (tests, one-shot tools).
    pub fn in_memory() -> Result<Self, JournalError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| JournalError::Sqlite {
            path: path.clone(),
            error: source,
        })?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self, JournalError> {
        let wrap = |source| JournalError::Sqlite {
            path: path.clone(),
            error: source,
        };
        // WAL lets readers run beside the writer; FULL makes each commit durable before it
        // returns, which is what "recorded before acknowledged" needs.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(wrap)?;
        migrate_received(&conn).map_err(wrap)?;
        conn.execute_batch(RECEIVED_TABLE).map_err(wrap)?;
        conn.execute_batch(FILE_HASHES_TABLE).map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        conn.execute_batch(SET_ASIDE_TABLE).map_err(wrap)?;
        for report in set_aside_invalid_stamps(&conn, &path).map_err(wrap)? {
            tracing::warn!("{report}");
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with this journal on the blocking thread pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    {
        let j = self.clone();
        tokio::task::spawn_blocking(move || f(&j))
            .await
            .map_err(|e| JournalError::Task(e.to_string()))?
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (each statement is
        // atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: (*self.path).clone(),
            error: source,
        }
    }

    fn corrupt(&self, detail: impl Into<String>) -> JournalError {
        JournalError::Corrupt {
            path: (*self.path).clone(),
            detail: detail.into(),
        }
    }

    /// The stamp of `key` as stored, if it is a valid date and time; nothing else is written.
    fn stamp_to_store(&self, key: &FileKey) -> Result<String, JournalError> {
        if key.stamp.is_valid() {
            Ok(key.stamp.to_string())
        } else {
            Err(JournalError::InvalidStamp {
                path: (*self.path).clone(),
                what: format!("{} from {}", key.dsn, key.originator),
                stamp: key.stamp.to_string(),
            })
        }
    }

    // ---- received files ------------------------------------------------------------------

    /// The entry for a file identity received from `partner` (its SSID code), if any.
    pub fn received(
        &self,
        partner: &str,
        key: &FileKey,
    ) -> Result<Option<ReceivedEntry>, JournalError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT id, state, partial_path, final_path, position, file_offset, records, units,
                        end_response_sent, user_data
                 FROM received
                 WHERE partner = ?4 AND originator = ?1 AND dsn = ?2 AND stamp = ?3",
                params![
                    key.originator,
                    key.dsn,
                    key.stamp.to_string(),
                    partner.trim_end()
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        [r.get::<_, i64>(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
                        r.get::<_, bool>(8)?,
                        r.get::<_, String>(9)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((id, state, partial, fin, nums, eerp, user_data)) = row else {
            return Ok(None);
        };
        let state = match state.as_str() {
            "receiving" => ReceiveState::Receiving,
            "complete" => ReceiveState::Complete,
            other => return Err(self.corrupt(format!("unknown receive state {other:?}"))),
        };
        let n = |i: usize| u64::try_from(nums[i]).map_err(|_| self.corrupt("negative count"));
        Ok(Some(ReceivedEntry {
            id,
            key: key.clone(),
            state,
            partial_path: PathBuf::from(partial),
            final_path: PathBuf::from(fin),
            checkpoint: Checkpoint {
                position: n(0)?,
                file_offset: n(1)?,
                records: n(2)?,
                units: n(3)?,
            },
            end_response_sent: eerp,
            user_data,
        }))
    }

    /// Starts (or restarts from zero) the reception of `key` from `partner` into
    /// `partial_path`. Any older in-progress entry of that partner for the same identity is
    /// replaced; other partners' entries are never touched.
    pub fn begin_receive(
        &self,
        partner: &str,
        key: &FileKey,
        partial_path: &Path,
        final_path: &Path,
        user_data: &str,
    ) -> Result<i64, JournalError> {
        let stamp = self.stamp_to_store(key)?;
        let conn = self.lock();
        conn.execute(
            "INSERT INTO received (originator, dsn, stamp, state, partial_path, final_path,
                                   updated_at, user_data, partner)
             VALUES (?1, ?2, ?3, 'receiving', ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (partner, originator, dsn, stamp) DO UPDATE SET
                state = 'receiving', partial_path = excluded.partial_path,
                final_path = excluded.final_path, position = 0, file_offset = 0, records = 0,
                units = 0, end_response_sent = 0, end_response_deferred = 0,
                updated_at = excluded.updated_at, user_data = excluded.user_data",
            params![
                key.originator,
                key.dsn,
                stamp,
                partial_path.to_string_lossy(),
                final_path.to_string_lossy(),
                now_text(),
                user_data.trim_end(),
                partner.trim_end()
            ],
        )
        .map_err(|e| self.err(e))?;
        conn.query_row(
            "SELECT id FROM received
             WHERE partner = ?4 AND originator = ?1 AND dsn = ?2 AND stamp = ?3",
            params![
                key.originator,
                key.dsn,
                key.stamp.to_string(),
                partner.trim_end()
            ],
            |r| r.get(0),
        )
        .map_err(|e| self.err(e))
    }

    /// Records a durable restart point (call only after the temporary file was fsynced up to
    /// `checkpoint.file_offset`).
    pub fn checkpoint_receive(&self, id: i64, checkpoint: Checkpoint) -> Result<(), JournalError> {
        let c = checkpoint;
        self.lock()
            .execute(
                "UPDATE received SET position = ?2, file_offset = ?3, records = ?4, units = ?5,
                        updated_at = ?6 WHERE id = ?1 AND state = 'receiving'",
                params![
                    id,
                    c.position as i64,
                    c.file_offset as i64,
                    c.records as i64,
                    c.units as i64,
                    now_text()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Marks a reception complete under `final_path` (after the rename was made durable).
    pub fn complete_receive(&self, id: i64, final_path: &Path) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE received SET state = 'complete', final_path = ?2, updated_at = ?3
                 WHERE id = ?1",
                params![id, final_path.to_string_lossy(), now_text()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets a failed reception so the sender may try again from the start.
    pub fn drop_receive(&self, id: i64) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "DELETE FROM received WHERE id = ?1 AND state = 'receiving'",
                params![id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every reception not completed (see [`PartialReception`]). A row whose stamp or time
    /// cannot be read is left out (a debug line; reporting corrupt rows is the reader's
    /// job, not a sweep's): the sweep then leaves it alone.
    pub fn partial_receptions(&self) -> Result<Vec<PartialReception>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, partner, originator, dsn, stamp, partial_path, updated_at
                 FROM received WHERE state = 'receiving' ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    [
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ],
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, [partner, originator, dsn, stamp, partial, updated]) =
                row.map_err(|e| self.err(e))?;
            let parsed = FileStamp::parse(&stamp).ok().zip(
                chrono::DateTime::parse_from_rfc3339(&updated)
                    .ok()
                    .map(|t| t.to_utc()),
            );
            let Some((stamp, updated_at)) = parsed else {
                tracing::debug!(
                    journal = %self.path.display(),
                    id,
                    partial = %partial,
                    "journal: partial reception with an unreadable stamp or time left alone"
                );
                continue;
            };
            out.push(PartialReception {
                id,
                partner,
                key: FileKey::new(&originator, &dsn, stamp),
                partial_path: PathBuf::from(partial),
                updated_at,
            });
        }
        Ok(out)
    }

    /// The temporary files of every reception not completed, also of rows
    /// [`partial_receptions`](Self::partial_receptions) leaves out.
    pub fn partial_paths(&self) -> Result<std::collections::HashSet<PathBuf>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT partial_path FROM received WHERE state = 'receiving'")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map(PathBuf::from).map_err(|e| self.err(e)))
            .collect()
    }

    /// Notes that the EERP/NERP for a file received from `partner` went out.
    pub fn mark_end_response_sent(&self, partner: &str, key: &FileKey) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE received SET end_response_sent = 1, updated_at = ?4
                 WHERE partner = ?5 AND originator = ?1 AND dsn = ?2 AND stamp = ?3",
                params![
                    key.originator,
                    key.dsn,
                    key.stamp.to_string(),
                    now_text(),
                    partner.trim_end()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Notes that the application will send the EERP/NERP for a file received from `partner`
    /// itself, so it is not sent automatically at the next session.
    pub fn defer_end_response(&self, partner: &str, key: &FileKey) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE received SET end_response_deferred = 1, updated_at = ?4
                 WHERE partner = ?5 AND originator = ?1 AND dsn = ?2 AND stamp = ?3",
                params![
                    key.originator,
                    key.dsn,
                    key.stamp.to_string(),
                    now_text(),
                    partner.trim_end()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Completed receptions from `partner` (its SSID code) whose EERP has not gone out yet and
    /// was not left to the application: a broken connection must not lose an end-to-end
    /// response, so they are sent at the next session with that partner.
    pub fn pending_end_responses(&self, partner: &str) -> Result<Vec<ReceivedEntry>, JournalError> {
        let keys: Vec<(String, String, String)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(
                    "SELECT originator, dsn, stamp FROM received
                     WHERE state = 'complete' AND end_response_sent = 0
                       AND end_response_deferred = 0 AND partner = ?1 ORDER BY id",
                )
                .map_err(|e| self.err(e))?;
            stmt.query_map(params![partner.trim_end()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?
        };
        let mut out = Vec::with_capacity(keys.len());
        for (o, d, s) in keys {
            let stamp = FileStamp::parse(&s).map_err(|e| self.corrupt(e.to_string()))?;
            if let Some(entry) = self.received(partner, &FileKey::new(&o, &d, stamp))? {
                out.push(entry);
            }
        }
        Ok(out)
    }

    // ---- sent files ----------------------------------------------------------------------

    /// The newest send of this local file (same partner, path, size and mtime), whatever its
    /// state: a new attempt reuses the identity of one still sending, and does not send again
    /// one the partner stored or confirmed.
    pub fn latest_send(&self, local: &LocalFileId) -> Result<Option<SentEntry>, JournalError> {
        self.find_sent(
            "partner = ?1 AND path = ?2 AND size = ?3 AND mtime_ns = ?4",
            params![
                local.partner,
                local.path.to_string_lossy(),
                local.size as i64,
                local.mtime_ns
            ],
        )
    }

    /// The newest send with this wire identity.
    pub fn sent_by_key(&self, key: &FileKey) -> Result<Option<SentEntry>, JournalError> {
        self.find_sent(
            "originator = ?1 AND dsn = ?2 AND stamp = ?3",
            params![key.originator, key.dsn, key.stamp.to_string()],
        )
    }

    fn find_sent(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Option<SentEntry>, JournalError> {
        let conn = self.lock();
        let sql = format!(
            "SELECT id, partner, path, size, mtime_ns, originator, dsn, stamp, destination, state
             FROM sent WHERE {filter} ORDER BY id DESC LIMIT 1"
        );
        let row = conn
            .query_row(&sql, args, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    [
                        r.get::<_, String>(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                    ],
                ))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((id, partner, path, size, mtime_ns, [orig, dsn, stamp, dest, state])) = row else {
            return Ok(None);
        };
        let stamp = FileStamp::parse(&stamp).map_err(|e| self.corrupt(e.to_string()))?;
        Ok(Some(SentEntry {
            id,
            local: LocalFileId {
                partner,
                path: PathBuf::from(path),
                size: u64::try_from(size).map_err(|_| self.corrupt("negative size"))?,
                mtime_ns,
            },
            key: FileKey::new(&orig, &dsn, stamp),
            destination: dest,
            state: SendState::parse(&state)
                .ok_or_else(|| self.corrupt(format!("unknown send state {state:?}")))?,
        }))
    }

    /// Records the first attempt to send `local` under `key`.
    pub fn begin_send(
        &self,
        local: &LocalFileId,
        key: &FileKey,
        destination: &str,
    ) -> Result<i64, JournalError> {
        let stamp = self.stamp_to_store(key)?;
        let conn = self.lock();
        conn.execute(
            "INSERT INTO sent (partner, path, size, mtime_ns, originator, dsn, stamp, destination,
                               state, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'sending', ?9)",
            params![
                local.partner,
                local.path.to_string_lossy(),
                local.size as i64,
                local.mtime_ns,
                key.originator,
                key.dsn,
                stamp,
                destination.trim_end(),
                now_text()
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Moves a send to `state`.
    pub fn set_send_state(&self, id: i64, state: SendState) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE sent SET state = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, state.as_str(), now_text()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // ---- end responses -------------------------------------------------------------------

    /// Records the hash of a transmitted file whose end response is signed (SFIDSIGN = Y): for
    /// a received file, what our EERP/NERP signs; for a sent file, what the partner's signed
    /// response must contain. `suite` is the SFIDCIPH whose hash algorithm was used. `partner`
    /// (its SSID code) scopes a received file's hash to the partner it came from, so another
    /// partner reusing the identity cannot replace it; it is ignored for sent files.
    pub fn record_file_hash(
        &self,
        direction: Direction,
        partner: &str,
        key: &FileKey,
        suite: u8,
        hash: &[u8],
    ) -> Result<(), JournalError> {
        let (dir, partner) = hash_scope(direction, partner);
        let stamp = self.stamp_to_store(key)?;
        self.lock()
            .execute(
                "INSERT INTO file_hashes (direction, originator, dsn, stamp, suite, hash, partner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (direction, partner, originator, dsn, stamp)
                 DO UPDATE SET suite = excluded.suite, hash = excluded.hash",
                params![
                    dir,
                    key.originator,
                    key.dsn,
                    stamp,
                    i64::from(suite),
                    hash,
                    partner
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The recorded hash of a file (see [`record_file_hash`](Self::record_file_hash)): suite
    /// and hash; `partner` as there.
    pub fn file_hash(
        &self,
        direction: Direction,
        partner: &str,
        key: &FileKey,
    ) -> Result<Option<(u8, Vec<u8>)>, JournalError> {
        let (dir, partner) = hash_scope(direction, partner);
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT suite, hash FROM file_hashes
                 WHERE direction = ?1 AND originator = ?2 AND dsn = ?3 AND stamp = ?4
                   AND partner = ?5",
                params![dir, key.originator, key.dsn, key.stamp.to_string(), partner],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(row.map(|(suite, hash)| (u8::try_from(suite).unwrap_or(0), hash)))
    }

    /// Records an EERP/NERP in one transaction: a received one also settles the matching send,
    /// a sent one marks the received file's end response as sent.
    pub fn record_end_response(&self, e: &EndResponseEntry) -> Result<(), JournalError> {
        let stamp = self.stamp_to_store(&e.key)?;
        let conn = self.lock();
        // One commit (one fsync) for all statements.
        let tx = conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let (reason, text) = match &e.negative {
            Some((r, t)) => (Some(i64::from(*r)), Some(t.as_str())),
            None => (None, None),
        };
        conn.execute(
            "INSERT INTO end_responses (direction, originator, dsn, stamp, destination, reason,
                                        reason_text, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                match e.direction {
                    Direction::Received => "received",
                    Direction::Sent => "sent",
                },
                e.key.originator,
                e.key.dsn,
                stamp,
                e.destination.trim_end(),
                reason,
                text,
                now_text()
            ],
        )
        .map_err(|e| self.err(e))?;
        if e.direction == Direction::Received {
            let state = if e.negative.is_some() {
                SendState::Failed
            } else {
                SendState::Delivered
            };
            conn.execute(
                "UPDATE sent SET state = ?4, updated_at = ?5
                 WHERE originator = ?1 AND dsn = ?2 AND stamp = ?3",
                params![
                    e.key.originator,
                    e.key.dsn,
                    e.key.stamp.to_string(),
                    state.as_str(),
                    now_text()
                ],
            )
            .map_err(|e| self.err(e))?;
        } else {
            conn.execute(
                "UPDATE received SET end_response_sent = 1, updated_at = ?4
                 WHERE partner = ?5 AND originator = ?1 AND dsn = ?2 AND stamp = ?3",
                params![
                    e.key.originator,
                    e.key.dsn,
                    e.key.stamp.to_string(),
                    now_text(),
                    e.partner.trim_end()
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Number of recorded end responses in `direction` (for reports and tests).
    pub fn end_response_count(&self, direction: Direction) -> Result<u64, JournalError> {
        let d = match direction {
            Direction::Received => "received",
            Direction::Sent => "sent",
        };
        self.lock()
            .query_row(
                "SELECT COUNT(*) FROM end_responses WHERE direction = ?1",
                params![d],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn key(dsn: &str, counter: u16) -> FileKey {
        let dt = NaiveDate::from_ymd_opt(2026, 5, 6)
            .unwrap()
            .and_hms_opt(7, 8, 9)
            .unwrap();
        FileKey::new("ORIG  ", dsn, FileStamp::new(dt, counter))
    }

    #[test]
    fn reception_lifecycle_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open_in_dir(dir.path()).unwrap();
        let k = key("INVOICE", 1);
        assert!(j.received("ORIG", &k).unwrap().is_none());
        let id = j
            .begin_receive(
                "ORIG",
                &k,
                Path::new("/in/.p"),
                Path::new("/in/INVOICE"),
                "U1",
            )
            .unwrap();
        let cp = Checkpoint {
            position: 3,
            file_offset: 3072,
            records: 0,
            units: 3072,
        };
        j.checkpoint_receive(id, cp).unwrap();
        drop(j);

        // Survives a reopen: restart state is durable.
        let j = Journal::open_in_dir(dir.path()).unwrap();
        let e = j.received("ORIG", &k).unwrap().unwrap();
        assert_eq!(e.state, ReceiveState::Receiving);
        assert_eq!(e.checkpoint, cp);
        assert_eq!(e.key.originator, "ORIG");
        assert_eq!(e.user_data, "U1");

        j.complete_receive(id, Path::new("/in/INVOICE")).unwrap();
        assert_eq!(
            j.received("ORIG", &k).unwrap().unwrap().state,
            ReceiveState::Complete
        );
        // A checkpoint after completion changes nothing; drop_receive does not remove it.
        j.checkpoint_receive(id, Checkpoint::default()).unwrap();
        j.drop_receive(id).unwrap();
        let e = j.received("ORIG", &k).unwrap().unwrap();
        assert_eq!(e.checkpoint, cp);
        assert_eq!(j.pending_end_responses("ORIG").unwrap().len(), 1);
        assert!(j.pending_end_responses("OTHER").unwrap().is_empty());
        j.defer_end_response("ORIG", &k).unwrap();
        assert!(j.pending_end_responses("ORIG").unwrap().is_empty());
        j.mark_end_response_sent("ORIG", &k).unwrap();
        assert!(j.pending_end_responses("ORIG").unwrap().is_empty());

        // Another counter is another file.
        assert!(j.received("ORIG", &key("INVOICE", 2)).unwrap().is_none());
    }

    #[test]
    fn begin_receive_again_resets_progress() {
        let j = Journal::in_memory().unwrap();
        let k = key("F", 0);
        let id = j
            .begin_receive("ORIG", &k, Path::new("a"), Path::new("b"), "")
            .unwrap();
        j.checkpoint_receive(
            id,
            Checkpoint {
                position: 9,
                ..Checkpoint::default()
            },
        )
        .unwrap();
        let id2 = j
            .begin_receive("ORIG", &k, Path::new("c"), Path::new("b"), "")
            .unwrap();
        assert_eq!(id, id2);
        let e = j.received("ORIG", &k).unwrap().unwrap();
        assert_eq!(e.checkpoint.position, 0);
        assert_eq!(e.partial_path, PathBuf::from("c"));
        j.drop_receive(id).unwrap();
        assert!(j.received("ORIG", &k).unwrap().is_none());
    }

    #[test]
    fn the_latest_send_of_a_file_keeps_its_identity_until_delivered() {
        let j = Journal::in_memory().unwrap();
        let local = LocalFileId {
            partner: "acme".into(),
            path: PathBuf::from("/out/a.edi"),
            size: 10,
            mtime_ns: 123,
        };
        assert!(j.latest_send(&local).unwrap().is_none());
        let k = key("A.EDI", 5);
        let id = j.begin_send(&local, &k, "DEST   ").unwrap();
        let e = j.latest_send(&local).unwrap().unwrap();
        assert_eq!((e.id, &e.key, e.destination.as_str()), (id, &k, "DEST"));
        assert_eq!(e.state, SendState::Sending);

        // The file changed: a different local identity, no earlier send.
        let changed = LocalFileId {
            mtime_ns: 124,
            ..local.clone()
        };
        assert!(j.latest_send(&changed).unwrap().is_none());

        // Stored by the partner: still the latest send, so it is not sent anew.
        j.set_send_state(id, SendState::AwaitingEndResponse)
            .unwrap();
        let e = j.latest_send(&local).unwrap().unwrap();
        assert_eq!((e.id, e.state), (id, SendState::AwaitingEndResponse));
        j.record_end_response(&EndResponseEntry {
            direction: Direction::Received,
            key: k.clone(),
            destination: "ORIG".into(),
            negative: None,
            partner: "ORIG".into(),
        })
        .unwrap();
        assert_eq!(
            j.sent_by_key(&k).unwrap().unwrap().state,
            SendState::Delivered
        );
        assert_eq!(
            j.latest_send(&local).unwrap().unwrap().state,
            SendState::Delivered
        );
        // A newer attempt (after a refusal, say) is the one that counts.
        let id2 = j.begin_send(&local, &key("A.EDI", 6), "DEST").unwrap();
        assert_eq!(j.latest_send(&local).unwrap().unwrap().id, id2);
        assert_eq!(j.end_response_count(Direction::Received).unwrap(), 1);
        assert_eq!(j.end_response_count(Direction::Sent).unwrap(), 0);

        // Sending an EERP for a received file marks it sent in the same transaction.
        let r = key("IN.EDI", 1);
        let id = j
            .begin_receive("ORIG", &r, Path::new("p"), Path::new("f"), "")
            .unwrap();
        j.complete_receive(id, Path::new("f")).unwrap();
        assert_eq!(j.pending_end_responses("ORIG").unwrap().len(), 1);
        j.record_end_response(&EndResponseEntry {
            direction: Direction::Sent,
            key: r.clone(),
            destination: "ORIG".into(),
            negative: None,
            partner: "ORIG".into(),
        })
        .unwrap();
        assert!(j.pending_end_responses("ORIG").unwrap().is_empty());
        assert!(j.received("ORIG", &r).unwrap().unwrap().end_response_sent);
    }

    #[test]
    fn file_hashes_by_direction() {
        let j = Journal::in_memory().unwrap();
        let k = key("F", 1);
        assert_eq!(j.file_hash(Direction::Sent, "P", &k).unwrap(), None);
        j.record_file_hash(Direction::Sent, "P", &k, 4, &[1, 2, 3])
            .unwrap();
        j.record_file_hash(Direction::Sent, "Q", &k, 6, &[9])
            .unwrap();
        // Sent files are ours: one hash whatever partner is named.
        assert_eq!(
            j.file_hash(Direction::Sent, "P", &k).unwrap(),
            Some((6, vec![9]))
        );
        assert_eq!(j.file_hash(Direction::Received, "P", &k).unwrap(), None);
        // A received file's hash belongs to the partner it came from.
        j.record_file_hash(Direction::Received, "A", &k, 4, &[1])
            .unwrap();
        j.record_file_hash(Direction::Received, "B", &k, 4, &[2])
            .unwrap();
        assert_eq!(
            j.file_hash(Direction::Received, "A", &k).unwrap(),
            Some((4, vec![1]))
        );
        assert_eq!(
            j.file_hash(Direction::Received, "B", &k).unwrap(),
            Some((4, vec![2]))
        );
    }

    #[test]
    fn nerp_marks_the_send_failed() {
        let j = Journal::in_memory().unwrap();
        let local = LocalFileId {
            partner: "p".into(),
            path: PathBuf::from("x"),
            size: 1,
            mtime_ns: 1,
        };
        let k = key("X", 0);
        j.begin_send(&local, &k, "D").unwrap();
        j.record_end_response(&EndResponseEntry {
            direction: Direction::Received,
            key: k.clone(),
            destination: "D".into(),
            negative: Some((23, "duplicate".into())),
            partner: "D".into(),
        })
        .unwrap();
        assert_eq!(j.sent_by_key(&k).unwrap().unwrap().state, SendState::Failed);
    }

    #[test]
    fn one_partner_never_sees_or_settles_another_partners_receptions() {
        let j = Journal::in_memory().unwrap();
        let k = key("SHARED", 1);
        let a = j
            .begin_receive("PARTNERA", &k, Path::new("a.p"), Path::new("a/SHARED"), "")
            .unwrap();
        j.checkpoint_receive(
            a,
            Checkpoint {
                position: 2,
                ..Checkpoint::default()
            },
        )
        .unwrap();
        // Partner B claims A's originator, name and stamp: a separate entry, A's untouched.
        assert!(j.received("PARTNERB", &k).unwrap().is_none());
        let b = j
            .begin_receive("PARTNERB", &k, Path::new("b.p"), Path::new("b/SHARED"), "")
            .unwrap();
        assert_ne!(a, b);
        let ea = j.received("PARTNERA", &k).unwrap().unwrap();
        assert_eq!((ea.id, ea.checkpoint.position), (a, 2));
        assert_eq!(ea.final_path, PathBuf::from("a/SHARED"));
        j.complete_receive(b, Path::new("b/SHARED")).unwrap();
        j.complete_receive(a, Path::new("a/SHARED")).unwrap();
        // The EERP that goes to B settles B's file only.
        j.record_end_response(&EndResponseEntry {
            direction: Direction::Sent,
            key: k.clone(),
            destination: "ORIG".into(),
            negative: None,
            partner: "PARTNERB".into(),
        })
        .unwrap();
        assert!(j.pending_end_responses("PARTNERB").unwrap().is_empty());
        assert_eq!(j.pending_end_responses("PARTNERA").unwrap().len(), 1);
    }

    #[test]
    fn a_journal_without_partners_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        {
            // The received table as earlier versions created it.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE received (
                    id INTEGER PRIMARY KEY, originator TEXT NOT NULL, dsn TEXT NOT NULL,
                    stamp TEXT NOT NULL, state TEXT NOT NULL, partial_path TEXT NOT NULL,
                    final_path TEXT NOT NULL, position INTEGER NOT NULL DEFAULT 0,
                    file_offset INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0,
                    units INTEGER NOT NULL DEFAULT 0,
                    end_response_sent INTEGER NOT NULL DEFAULT 0,
                    end_response_deferred INTEGER NOT NULL DEFAULT 0,
                    user_data TEXT NOT NULL DEFAULT '', updated_at TEXT NOT NULL,
                    UNIQUE (originator, dsn, stamp));
                CREATE TABLE file_hashes (
                    direction TEXT NOT NULL, originator TEXT NOT NULL, dsn TEXT NOT NULL,
                    stamp TEXT NOT NULL, suite INTEGER NOT NULL, hash BLOB NOT NULL,
                    PRIMARY KEY (direction, originator, dsn, stamp));",
            )
            .unwrap();
            c.execute(
                "INSERT INTO file_hashes VALUES ('received', 'ORIG', 'OLD', ?1, 4, x'01'),
                                                ('sent', 'ORIG', 'OLD', ?1, 4, x'02')",
                params![key("OLD", 3).stamp.to_string()],
            )
            .unwrap();
            c.execute(
                "INSERT INTO received (originator, dsn, stamp, state, partial_path, final_path,
                                       position, updated_at, user_data)
                 VALUES ('ORIG', 'OLD', ?1, 'receiving', 'p', 'f', 7, 'then', 'U')",
                params![key("OLD", 3).stamp.to_string()],
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let e = j.received("ORIG", &key("OLD", 3)).unwrap().unwrap();
        assert_eq!(e.checkpoint.position, 7);
        assert_eq!(e.user_data, "U");
        assert!(j.received("OTHER", &key("OLD", 3)).unwrap().is_none());
        assert_eq!(
            j.file_hash(Direction::Received, "ORIG", &key("OLD", 3))
                .unwrap(),
            Some((4, vec![1]))
        );
        assert_eq!(
            j.file_hash(Direction::Received, "OTHER", &key("OLD", 3))
                .unwrap(),
            None
        );
        assert_eq!(
            j.file_hash(Direction::Sent, "", &key("OLD", 3)).unwrap(),
            Some((4, vec![2]))
        );
        // The new unique key lets another partner have its own entry.
        j.begin_receive("OTHER", &key("OLD", 3), Path::new("q"), Path::new("g"), "")
            .unwrap();
        drop(j);
        // Opening again is a no-op.
        let j = Journal::open(&path).unwrap();
        assert!(j.received("ORIG", &key("OLD", 3)).unwrap().is_some());
        assert!(j.received("OTHER", &key("OLD", 3)).unwrap().is_some());
    }

    /// A stamp no calendar has (a partner's `2006-06-43 51:86:72`).
    fn impossible() -> FileStamp {
        FileStamp {
            year: 2006,
            month: 6,
            day: 43,
            hour: 51,
            minute: 86,
            second: 72,
            counter: 0,
        }
    }

    #[test]
    fn invalid_stamps_are_never_written() {
        let j = Journal::in_memory().unwrap();
        let bad = FileKey::new("ORIG", "BAD", impossible());
        let local = LocalFileId {
            partner: "p".into(),
            path: PathBuf::from("x"),
            size: 1,
            mtime_ns: 1,
        };
        let refused = |r: Result<(), JournalError>| {
            let e = r.expect_err("an invalid stamp was recorded");
            assert!(matches!(e, JournalError::InvalidStamp { .. }), "{e}");
            assert!(e.to_string().contains("BAD from ORIG"), "{e}");
        };
        refused(
            j.begin_receive("ORIG", &bad, Path::new("p"), Path::new("f"), "")
                .map(drop),
        );
        refused(j.begin_send(&local, &bad, "D").map(drop));
        refused(j.record_file_hash(Direction::Received, "ORIG", &bad, 4, &[1]));
        refused(j.record_end_response(&EndResponseEntry {
            direction: Direction::Sent,
            key: bad.clone(),
            destination: "ORIG".into(),
            negative: None,
            partner: "ORIG".into(),
        }));
        let conn = j.lock();
        for table in STAMPED_TABLES {
            let n: i64 = conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
    }

    /// Collects what is logged while `f` runs.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    /// Journals of earlier versions stored whatever stamp a partner sent; every later session
    /// then failed with "corrupt entry". Opening the journal sets such rows aside with one
    /// warning each, once; the rest of the journal works.
    #[test]
    fn rows_with_invalid_stamps_are_reported_once_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let j = Journal::open(&path).unwrap();
        let good = key("GOOD", 1);
        let id = j
            .begin_receive("PARTNER", &good, Path::new("p"), Path::new("in/GOOD"), "")
            .unwrap();
        j.complete_receive(id, Path::new("in/GOOD")).unwrap();
        {
            // As an earlier version wrote them.
            let bad = impossible().to_string();
            let conn = j.lock();
            conn.execute(
                "INSERT INTO received (partner, originator, dsn, stamp, state, partial_path,
                                       final_path, updated_at)
                 VALUES ('PARTNER', 'ORIG', 'BROKEN', ?1, 'complete', 'p2', 'in/BROKEN', 'then'),
                        ('PARTNER', 'ORIG', 'HALF', ?1, 'receiving', 'in/.half.part', 'in/HALF',
                         'then')",
                [&bad],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO sent (partner, path, size, mtime_ns, originator, dsn, stamp,
                                   destination, state, updated_at)
                 VALUES ('PARTNER', '/out/x.edi', 1, 1, 'US', 'X.EDI', ?1, 'D', 'sending', 'then')",
                [&bad],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO file_hashes (direction, partner, originator, dsn, stamp, suite, hash)
                 VALUES ('received', 'PARTNER', 'ORIG', 'BROKEN', ?1, 4, x'0102')",
                [&bad],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO end_responses (direction, originator, dsn, stamp, destination, at)
                 VALUES ('received', 'US', 'X.EDI', ?1, 'D', 'then')",
                [&bad],
            )
            .unwrap();
        }
        assert!(matches!(
            j.pending_end_responses("PARTNER"),
            Err(JournalError::Corrupt { .. })
        ));
        drop(j);

        let mut reopened = None;
        let first = logged(|| reopened = Some(Journal::open(&path).unwrap()));
        let j = reopened.unwrap();
        let warnings: Vec<&str> = first.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 5, "{first}");
        for what in [
            "the reception of BROKEN from ORIG (partner PARTNER), stored as in/BROKEN",
            "the unfinished reception of HALF from ORIG",
            "in/.half.part can be deleted",
            "the send of /out/x.edi as X.EDI to PARTNER",
            "the recorded hash of BROKEN from ORIG",
            "the received end response for X.EDI from US",
            "table set_aside",
        ] {
            assert!(first.contains(what), "{what}: {first}");
        }
        // The rest of the journal works again.
        let pending = j.pending_end_responses("PARTNER").unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].key, good);
        let set_aside: Vec<(String, String)> = {
            let conn = j.lock();
            let mut stmt = conn
                .prepare("SELECT source, row FROM set_aside ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let sources: Vec<&str> = set_aside.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            sources,
            [
                "received",
                "received",
                "sent",
                "file_hashes",
                "end_responses"
            ]
        );
        assert!(
            set_aside[3].1.contains("hash=x'0102'"),
            "{:?}",
            set_aside[3]
        );
        drop(j);

        // Reported once: the next open (the next session's process) says nothing.
        let second = logged(|| drop(Journal::open(&path).unwrap()));
        assert!(!second.contains("WARN"), "{second}");
    }

    #[tokio::test]
    async fn call_runs_on_the_blocking_pool() {
        let j = Journal::in_memory().unwrap();
        let k = key("Z", 0);
        let k2 = k.clone();
        j.call(move |j| j.begin_receive("ORIG", &k2, Path::new("p"), Path::new("f"), ""))
            .await
            .unwrap();
        assert!(j.received("ORIG", &k).unwrap().is_some());
    }

    #[test]
    fn partial_receptions_lists_what_has_not_completed() {
        let j = Journal::in_memory().unwrap();
        let before = chrono::Utc::now() - chrono::Duration::seconds(1);
        let (a, b) = (key("A", 1), key("B", 2));
        let ia = j
            .begin_receive("P1", &a, Path::new("/in/.a"), Path::new("/in/A"), "")
            .unwrap();
        let ib = j
            .begin_receive("P2", &b, Path::new("/in/.b"), Path::new("/in/B"), "")
            .unwrap();
        let all = j.partial_receptions().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].id, all[0].partner.as_str(), &all[0].key),
            (ia, "P1", &a)
        );
        assert_eq!(all[1].partial_path, Path::new("/in/.b"));
        assert!(all.iter().all(|p| p.updated_at >= before));
        j.complete_receive(ia, Path::new("/in/A")).unwrap();
        let left = j.partial_receptions().unwrap();
        assert_eq!(left.iter().map(|p| p.id).collect::<Vec<_>>(), [ib]);
        assert_eq!(
            j.partial_paths().unwrap(),
            [PathBuf::from("/in/.b")].into_iter().collect()
        );
        j.drop_receive(ib).unwrap();
        assert!(j.partial_receptions().unwrap().is_empty());
        assert!(j.partial_paths().unwrap().is_empty());
    }
}
