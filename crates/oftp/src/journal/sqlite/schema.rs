//! The SQLite journal's tables, and what opening a journal of an earlier version does to them:
//! the migration that adds the partner to the received-file and file-hash keys, and the rows
//! with impossible stamps moved to `set_aside` (see [`prepare`]). The gateway's tables (the
//! outbound queue, its history, alerts) are new tables: a journal of an earlier version gets
//! them, empty, when it is opened, and nothing else of it changes; the queue's counts by state
//! (kept by triggers) are made from the queue's rows when a journal does not have them yet.

use std::path::Path;

use rusqlite::{Connection, params};

use super::now_text;
use crate::stamp::{FileStamp, FileStampExt};

/// Brings the tables of `conn` to the current schema (migrating those of earlier versions,
/// creating missing ones) and sets aside rows with invalid stamps. Returns one message per row
/// set aside, for the operator (see [`set_aside_invalid_stamps`]).
pub(super) fn prepare(conn: &Connection, path: &Path) -> Result<Vec<String>, rusqlite::Error> {
    migrate_received(conn)?;
    conn.execute_batch(RECEIVED_TABLE)?;
    conn.execute_batch(FILE_HASHES_TABLE)?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(SET_ASIDE_TABLE)?;
    conn.execute_batch(QUEUE_TABLES)?;
    prepare_queue_counts(conn)?;
    conn.execute_batch(CALLS_TABLE)?;
    conn.execute_batch(super::processing::TABLES)?;
    conn.execute_batch(super::alert_delivery::ALERT_DELIVERY_TABLES)?;
    super::sessions::prepare(conn)?;
    set_aside_invalid_stamps(conn, path)
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

/// The outbound queue of the gateway, the history of its rows, and alerts (times in
/// milliseconds since the Unix epoch; AUTOINCREMENT so that an id is never reused, also after
/// history is pruned). The indexes serve, in order: a call's claim of its partner's due rows;
/// `oftp transfers` filtered by partner, by state or by time of change, newest first; the
/// match of an end response to the row offered under its identity; a row's history; the open
/// alerts.
const QUEUE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partner TEXT NOT NULL,
    source_path TEXT NOT NULL,
    virtual_file_name TEXT NOT NULL,
    destination TEXT,
    originator TEXT,
    format TEXT NOT NULL,
    max_record_len INTEGER NOT NULL,
    user_data TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    key_originator TEXT,
    key_dsn TEXT,
    key_stamp TEXT,
    queued_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (partner, source_path)
);
CREATE INDEX IF NOT EXISTS queue_due ON queue (partner, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS queue_by_partner ON queue (partner, id);
CREATE INDEX IF NOT EXISTS queue_by_state ON queue (state, id);
CREATE INDEX IF NOT EXISTS queue_by_update ON queue (updated_at);
CREATE INDEX IF NOT EXISTS queue_by_key ON queue (key_originator, key_dsn, key_stamp);
CREATE TABLE IF NOT EXISTS queue_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id INTEGER NOT NULL REFERENCES queue (id),
    at INTEGER NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS queue_history_by_file ON queue_history (queue_id, id);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    partner TEXT,
    file TEXT,
    text TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    acknowledged_at INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (id) WHERE acknowledged_at IS NULL;
";

/// The gateway's calls (migration "gateway calls": a new table, so a journal of an earlier
/// version gets it, empty, when it is opened). The index serves a partner's last call.
const CALLS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partner TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_partner ON calls (partner, started_at);
";

/// The queue's rows counted by state, kept by triggers in the same transaction as every
/// change of the queue, so that the depth (read by every status request and every metrics
/// scrape) costs a few rows however long the history is, instead of a count over every row
/// the queue ever had.
const QUEUE_COUNTS: &str = "
CREATE TABLE queue_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO queue_counts (state, n) SELECT state, COUNT(*) FROM queue GROUP BY state;
CREATE TRIGGER queue_counts_insert AFTER INSERT ON queue BEGIN
    INSERT INTO queue_counts (state, n) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER queue_counts_delete AFTER DELETE ON queue BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE state = OLD.state;
END;
CREATE TRIGGER queue_counts_update AFTER UPDATE OF state ON queue
WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE state = OLD.state;
    INSERT INTO queue_counts (state, n) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
";

/// Creates the counts of [`QUEUE_COUNTS`] from the queue as it is, in one transaction, when
/// the journal does not have them yet (a new journal, or one of an earlier version).
fn prepare_queue_counts(conn: &Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.unchecked_transaction()?;
    let present: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queue_counts')",
        [],
        |r| r.get(0),
    )?;
    if !present {
        tx.execute_batch(QUEUE_COUNTS)?;
    }
    tx.commit()
}

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
pub(super) const STAMPED_TABLES: [&str; 4] = ["received", "sent", "file_hashes", "end_responses"];

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
