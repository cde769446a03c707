//! Post-processing of received files, held end responses, the archive and history pruning in
//! the SQLite journal (tables `received_processing` and `archived`, created by the migration
//! step [`TABLES`]; see [`crate::journal::processing`]). Times of these tables are
//! milliseconds since the Unix epoch from the caller's clock; the older tables (`received`,
//! `sent`, `end_responses`) keep RFC 3339 text of the wall clock, so pruning compares those
//! as text in the same form.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, params};

use super::SqliteJournal;
use super::queue::{immediate, ms};
use crate::journal::processing::{
    ArchiveCandidate, ArchiveKind, ArchivedFile, Processing, ProcessingRun, ProcessingState,
    Pruned, ReceivedFile,
};
use crate::journal::{FileKey, JournalError};
use crate::stamp::{FileStamp, FileStampExt};

/// Migration step "gw-receive: post-processing and archive": two new tables (a journal of an
/// earlier version gets them, empty, when it is opened; nothing else of it changes).
pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS received_processing (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partner TEXT NOT NULL,
    partner_name TEXT NOT NULL,
    originator TEXT NOT NULL,
    dsn TEXT NOT NULL,
    stamp TEXT NOT NULL,
    destination TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    format TEXT NOT NULL,
    security TEXT NOT NULL,
    user_data TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    hold_end_response INTEGER NOT NULL,
    ran INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    output TEXT NOT NULL DEFAULT '',
    error TEXT,
    moved INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    UNIQUE (partner, originator, dsn, stamp)
);
CREATE INDEX IF NOT EXISTS received_processing_unfinished ON received_processing (id)
    WHERE state IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS archived (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    path TEXT,
    archived_at INTEGER NOT NULL,
    deleted_at INTEGER,
    UNIQUE (kind, row_id)
);
CREATE INDEX IF NOT EXISTS archived_kept ON archived (archived_at) WHERE deleted_at IS NULL;
";

const COLUMNS: &str = "id, partner, partner_name, originator, dsn, stamp, destination, path, \
    size, format, security, user_data, state, attempts, hold_end_response, ran, exit_code, \
    output, error, moved, updated_at";

/// A `received_processing` row as stored.
struct RawRow {
    id: i64,
    text: [String; 10],
    size: i64,
    state: String,
    attempts: i64,
    flags: [bool; 3],
    exit_code: Option<i32>,
    output: String,
    error: Option<String>,
    updated_at: i64,
}

impl RawRow {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            text: [
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ],
            size: r.get(8)?,
            state: r.get(12)?,
            attempts: r.get(13)?,
            flags: [r.get(14)?, r.get(15)?, r.get(19)?],
            exit_code: r.get(16)?,
            output: r.get(17)?,
            error: r.get(18)?,
            updated_at: r.get(20)?,
        })
    }
}

/// Sets or clears the held (deferred) flag of the reception of `key` from `partner`.
fn hold(conn: &Connection, partner: &str, key: &FileKey, held: bool) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE received SET end_response_deferred = ?5
         WHERE partner = ?1 AND originator = ?2 AND dsn = ?3 AND stamp = ?4",
        params![
            partner.trim_end(),
            key.originator.as_str(),
            key.dsn,
            key.stamp.digits(),
            held
        ],
    )?;
    Ok(())
}

impl SqliteJournal {
    /// Whether the end response of `key` from `partner` was released by its post-processing
    /// (a deferral that arrives after that must not hold it again).
    pub(super) fn released_by_processing(
        &self,
        conn: &Connection,
        partner: &str,
        key: &FileKey,
    ) -> Result<bool, JournalError> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM received_processing WHERE partner = ?1
                 AND originator = ?2 AND dsn = ?3 AND stamp = ?4
                 AND hold_end_response = 1 AND state = 'succeeded')",
            params![
                partner.trim_end(),
                key.originator.as_str(),
                key.dsn,
                key.stamp.digits()
            ],
            |r| r.get(0),
        )
        .map_err(|e| self.err(e))
    }

    fn processing_row(&self, raw: RawRow) -> Result<Processing, JournalError> {
        let RawRow {
            id,
            text:
                [
                    partner,
                    partner_name,
                    originator,
                    dsn,
                    stamp,
                    destination,
                    path,
                    format,
                    security,
                    user_data,
                ],
            ..
        } = raw;
        let stamp = FileStamp::parse(&stamp).map_err(|e| self.corrupt(e.to_string()))?;
        let state = ProcessingState::parse(&raw.state).ok_or_else(|| {
            self.corrupt(format!(
                "post-processing {id}: unknown state {:?}",
                raw.state
            ))
        })?;
        let [hold_end_response, ran, moved] = raw.flags;
        Ok(Processing {
            id,
            file: ReceivedFile {
                partner,
                partner_name,
                key: self.file_key(&originator, &dsn, stamp)?,
                destination,
                path: PathBuf::from(path),
                size: u64::try_from(raw.size)
                    .map_err(|_| self.corrupt(format!("post-processing {id}: bad size")))?,
                format,
                security,
                user_data,
            },
            state,
            attempts: u32::try_from(raw.attempts)
                .map_err(|_| self.corrupt(format!("post-processing {id}: bad attempt count")))?,
            hold_end_response,
            last_run: ran.then_some(ProcessingRun {
                exit_code: raw.exit_code,
                output: raw.output,
                error: raw.error,
            }),
            moved,
            updated_at: DateTime::from_timestamp_millis(raw.updated_at)
                .ok_or_else(|| self.corrupt(format!("post-processing {id}: time out of range")))?,
        })
    }

    fn select_processing(
        &self,
        conn: &Connection,
        tail: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Processing>, JournalError> {
        self.select_rows(
            conn,
            &format!("SELECT {COLUMNS} FROM received_processing {tail}"),
            args,
            RawRow::read,
            |raw| self.processing_row(raw),
        )
    }

    fn processing_by_id(
        &self,
        conn: &Connection,
        id: i64,
    ) -> Result<Option<Processing>, JournalError> {
        Ok(self
            .select_processing(conn, "WHERE id = ?1", [id])?
            .into_iter()
            .next())
    }

    /// Runs `update` (`?1` the id, `?2` the time `at`) on post-processing `id` and returns
    /// the row as it then stands (`None`: no such row).
    fn processing_update(
        &self,
        update: &str,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError> {
        let conn = self.lock();
        conn.execute(update, params![id, ms(at)])
            .map_err(|e| self.err(e))?;
        self.processing_by_id(&conn, id)
    }

    pub(super) fn processing_add(
        &self,
        f: &ReceivedFile,
        hold_end_response: bool,
        at: DateTime<Utc>,
    ) -> Result<Processing, JournalError> {
        let stamp = self.stamp_to_store(&f.key)?;
        let conn = self.lock();
        let tx = immediate(&conn).map_err(|e| self.err(e))?;
        let partner = f.partner.trim_end();
        tx.execute(
            "INSERT INTO received_processing (partner, partner_name, originator, dsn, stamp,
                 destination, path, size, format, security, user_data, state, attempts,
                 hold_end_response, ran, exit_code, output, error, moved, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', 0, ?12, 0, NULL, '',
                 NULL, 0, ?13)
             ON CONFLICT (partner, originator, dsn, stamp) DO UPDATE SET
                 partner_name = ?2, destination = ?6, path = ?7, size = ?8, format = ?9,
                 security = ?10, user_data = ?11, state = 'pending', attempts = 0,
                 hold_end_response = ?12, ran = 0, exit_code = NULL, output = '', error = NULL,
                 moved = 0, updated_at = ?13",
            params![
                partner,
                f.partner_name,
                f.key.originator.as_str(),
                f.key.dsn,
                stamp,
                f.destination.trim_end(),
                f.path.to_string_lossy(),
                i64::try_from(f.size).unwrap_or(i64::MAX),
                f.format,
                f.security,
                f.user_data.trim_end(),
                hold_end_response,
                ms(at)
            ],
        )
        .map_err(|e| self.err(e))?;
        if hold_end_response {
            hold(&tx, partner, &f.key, true).map_err(|e| self.err(e))?;
        }
        let id: i64 = tx
            .query_row(
                "SELECT id FROM received_processing
                 WHERE partner = ?1 AND originator = ?2 AND dsn = ?3 AND stamp = ?4",
                params![partner, f.key.originator.as_str(), f.key.dsn, stamp],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let row = self.processing_by_id(&tx, id)?;
        tx.commit().map_err(|e| self.err(e))?;
        row.ok_or_else(|| self.corrupt(format!("post-processing {id} vanished")))
    }

    pub(super) fn processing_get(&self, id: i64) -> Result<Option<Processing>, JournalError> {
        self.processing_by_id(&self.lock(), id)
    }

    pub(super) fn processing_of_file(
        &self,
        partner: &str,
        key: &FileKey,
    ) -> Result<Option<Processing>, JournalError> {
        let conn = self.lock();
        Ok(self
            .select_processing(
                &conn,
                "WHERE partner = ?1 AND originator = ?2 AND dsn = ?3 AND stamp = ?4",
                params![
                    partner.trim_end(),
                    key.originator.as_str(),
                    key.dsn,
                    key.stamp.digits()
                ],
            )?
            .into_iter()
            .next())
    }

    pub(super) fn processing_unfinished(&self) -> Result<Vec<Processing>, JournalError> {
        self.select_processing(
            &self.lock(),
            "WHERE state IN ('pending', 'running') ORDER BY id",
            [],
        )
    }

    pub(super) fn processing_start(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError> {
        self.processing_update(
            "UPDATE received_processing SET state = 'running', attempts = attempts + 1,
                 updated_at = ?2 WHERE id = ?1",
            id,
            at,
        )
    }

    pub(super) fn processing_finish(
        &self,
        id: i64,
        run: &ProcessingRun,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError> {
        let conn = self.lock();
        let tx = immediate(&conn).map_err(|e| self.err(e))?;
        let state = if run.error.is_none() {
            ProcessingState::Succeeded
        } else {
            ProcessingState::Failed
        };
        tx.execute(
            "UPDATE received_processing SET state = ?2, ran = 1, exit_code = ?3, output = ?4,
                 error = ?5, updated_at = ?6 WHERE id = ?1",
            params![
                id,
                state.as_str(),
                run.exit_code,
                run.output,
                run.error,
                ms(at)
            ],
        )
        .map_err(|e| self.err(e))?;
        let row = self.processing_by_id(&tx, id)?;
        if let Some(p) = row
            .as_ref()
            .filter(|p| p.hold_end_response && state == ProcessingState::Succeeded)
        {
            hold(&tx, &p.file.partner, &p.file.key, false).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(row)
    }

    pub(super) fn processing_mark_moved(
        &self,
        id: i64,
        path: &Path,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE received_processing SET moved = 1, path = ?2, updated_at = ?3
                 WHERE id = ?1",
                params![id, path.to_string_lossy(), ms(at)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) fn processing_rerun(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError> {
        self.processing_update(
            "UPDATE received_processing SET state = 'pending', updated_at = ?2
             WHERE id = ?1 AND state IN ('succeeded', 'failed')",
            id,
            at,
        )
    }

    pub(super) fn end_response_release(
        &self,
        partner: &str,
        key: &FileKey,
    ) -> Result<(), JournalError> {
        hold(&self.lock(), partner, key, false).map_err(|e| self.err(e))
    }

    pub(super) fn archive_candidates_list(
        &self,
        limit: u32,
    ) -> Result<Vec<ArchiveCandidate>, JournalError> {
        let conn = self.lock();
        let mut out = Vec::new();
        for (kind, sql) in [
            (
                ArchiveKind::Received,
                "SELECT r.id, r.partner, r.final_path, r.updated_at FROM received r
                 LEFT JOIN received_processing p ON p.partner = r.partner
                     AND p.originator = r.originator AND p.dsn = r.dsn AND p.stamp = r.stamp
                 WHERE r.state = 'complete' AND r.end_response_sent = 1
                   AND (p.id IS NULL OR (p.state = 'succeeded' AND p.moved = 0))
                   AND NOT EXISTS (SELECT 1 FROM archived a
                                   WHERE a.kind = 'received' AND a.row_id = r.id)
                 ORDER BY r.id LIMIT ?1",
            ),
            (
                ArchiveKind::Sent,
                "SELECT q.id, q.partner, q.source_path, q.updated_at FROM queue q
                 WHERE q.state IN ('delivered', 'cancelled')
                   AND NOT EXISTS (SELECT 1 FROM archived a
                                   WHERE a.kind = 'sent' AND a.row_id = q.id)
                 ORDER BY q.id LIMIT ?1",
            ),
        ] {
            let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([limit], |r| {
                    let at = r.get::<_, rusqlite::types::Value>(3)?;
                    Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get::<_, String>(2)?, at))
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (row_id, partner, path, at) = row.map_err(|e| self.err(e))?;
                use rusqlite::types::Value;
                let final_at = match at {
                    Value::Integer(ms) => DateTime::from_timestamp_millis(ms),
                    Value::Text(t) => DateTime::parse_from_rfc3339(&t)
                        .ok()
                        .map(|t| t.with_timezone(&Utc)),
                    _ => None,
                }
                .ok_or_else(|| self.corrupt(format!("{} row {row_id}: bad time", kind.as_str())))?;
                out.push(ArchiveCandidate {
                    kind,
                    row_id,
                    partner,
                    path: PathBuf::from(path),
                    final_at,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn archived_record(
        &self,
        kind: ArchiveKind,
        row_id: i64,
        path: Option<&Path>,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "INSERT INTO archived (kind, row_id, path, archived_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, row_id) DO NOTHING",
                params![
                    kind.as_str(),
                    row_id,
                    path.map(|p| p.to_string_lossy().into_owned()),
                    ms(at)
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) fn archived_older(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ArchivedFile>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, kind, row_id, path, archived_at FROM archived
                 WHERE deleted_at IS NULL AND path IS NOT NULL AND archived_at < ?1
                 ORDER BY archived_at, id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(cutoff), limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.map(|row| {
            let (id, kind, row_id, path, at) = row.map_err(|e| self.err(e))?;
            Ok(ArchivedFile {
                id,
                kind: ArchiveKind::from_stored(&kind)
                    .ok_or_else(|| self.corrupt(format!("archive entry {id}: kind {kind:?}")))?,
                row_id,
                path: path.map(PathBuf::from),
                archived_at: DateTime::from_timestamp_millis(at).ok_or_else(|| {
                    self.corrupt(format!("archive entry {id}: time out of range"))
                })?,
            })
        })
        .collect()
    }

    pub(super) fn archived_delete(&self, id: i64, at: DateTime<Utc>) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE archived SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
                params![id, ms(at)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) fn history_prune(&self, cutoff: DateTime<Utc>) -> Result<Pruned, JournalError> {
        let conn = self.lock();
        let tx = immediate(&conn).map_err(|e| self.err(e))?;
        let (cut_ms, cut_text) = (ms(cutoff), cutoff.to_rfc3339());
        let exec = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<u64, JournalError> {
            tx.execute(sql, args)
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        };
        // Queue rows in a terminal state (delivered, cancelled); failed, rejected and not
        // delivered ones wait for an operator and keep their source file, so they stay.
        exec(
            "DELETE FROM queue_history WHERE queue_id IN (SELECT id FROM queue
                 WHERE state IN ('delivered', 'cancelled') AND updated_at < ?1)",
            &[&cut_ms],
        )?;
        let transfers = exec(
            "DELETE FROM queue WHERE state IN ('delivered', 'cancelled') AND updated_at < ?1",
            &[&cut_ms],
        )?;
        let alerts = exec(
            "DELETE FROM alerts WHERE acknowledged_at IS NOT NULL AND acknowledged_at < ?1",
            &[&cut_ms],
        )?;
        // Receptions complete, end response out, post-processing (if any) succeeded.
        const OLD_RECEIVED: &str = "SELECT r.id FROM received r
             WHERE r.state = 'complete' AND r.end_response_sent = 1 AND r.updated_at < ?1
               AND NOT EXISTS (SELECT 1 FROM received_processing p
                   WHERE p.partner = r.partner AND p.originator = r.originator
                     AND p.dsn = r.dsn AND p.stamp = r.stamp AND p.state <> 'succeeded')";
        exec(
            &format!(
                "DELETE FROM received_processing WHERE EXISTS (SELECT 1 FROM received r
                 WHERE r.id IN ({OLD_RECEIVED}) AND r.partner = received_processing.partner
                   AND r.originator = received_processing.originator
                   AND r.dsn = received_processing.dsn AND r.stamp = received_processing.stamp)"
            ),
            &[&cut_text],
        )?;
        exec(
            &format!(
                "DELETE FROM file_hashes WHERE direction = 'received' AND EXISTS (
                 SELECT 1 FROM received r WHERE r.id IN ({OLD_RECEIVED})
                   AND r.partner = file_hashes.partner AND r.originator = file_hashes.originator
                   AND r.dsn = file_hashes.dsn AND r.stamp = file_hashes.stamp)"
            ),
            &[&cut_text],
        )?;
        exec(
            &format!(
                "DELETE FROM session_transfers WHERE direction = 'in'
                   AND row_id IN ({OLD_RECEIVED})"
            ),
            &[&cut_text],
        )?;
        let received = exec(
            &format!("DELETE FROM received WHERE id IN ({OLD_RECEIVED})"),
            &[&cut_text],
        )?;
        let sent = exec(
            "DELETE FROM sent WHERE state IN ('delivered', 'failed') AND updated_at < ?1",
            &[&cut_text],
        )?;
        exec(
            "DELETE FROM file_hashes WHERE direction = 'sent' AND NOT EXISTS (
                 SELECT 1 FROM sent s WHERE s.originator = file_hashes.originator
                   AND s.dsn = file_hashes.dsn AND s.stamp = file_hashes.stamp)
               AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.key_originator = file_hashes.originator
                   AND q.key_dsn = file_hashes.dsn AND q.key_stamp = file_hashes.stamp)",
            &[],
        )?;
        let end_responses = exec("DELETE FROM end_responses WHERE at < ?1", &[&cut_text])?;
        // Archive entries are kept while their file is in the archive, and while their row
        // exists (else the file would be offered to the archive again).
        let archived = exec(
            "DELETE FROM archived WHERE (deleted_at IS NOT NULL OR path IS NULL)
               AND ((kind = 'received' AND row_id NOT IN (SELECT id FROM received))
                 OR (kind = 'sent' AND row_id NOT IN (SELECT id FROM queue)))",
            &[],
        )?;
        let sessions = super::sessions::prune(&tx, cutoff).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Pruned {
            sessions,
            transfers,
            alerts,
            received,
            sent,
            end_responses,
            archived,
        })
    }
}
