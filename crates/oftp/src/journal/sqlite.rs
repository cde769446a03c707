//! The SQLite journal ([`SqliteJournal`]): the embedded default backend of [`Journal`], one
//! database file `oftp-journal.sqlite3` in the data directory.
//!
//! The database runs in WAL mode with `synchronous=FULL`, so a call that returns has reached
//! the disk; clones share one connection behind a mutex. rusqlite (bundled SQLite) is used
//! because it is the well-kept standard choice and needs no system library.
//!
//! Journals written by earlier versions open as before ([`schema`]): those written before the
//! partner was part of the received-file key are migrated on open (their entries are
//! attributed to the partner whose code is the originator); rows with impossible stamps (a
//! partner's `2006-06-43 51:86:72`, stored before stamps were checked) are moved to the table
//! `set_aside` (with the table they came from, their columns and the problem) with one warning
//! per row saying what it meant and what to do, so each is reported once and never read again
//! (before, every later session failed on it with `journal: corrupt entry: invalid virtual file
//! stamp ...`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use chrono::{DateTime, Utc};

use super::history::{
    HistoryPage, HistoryQuery, InboundFile, PartnerCounters, SessionBatch, SessionTrail,
};
use super::{
    Alert, ArchiveCandidate, ArchiveKind, ArchivedFile, CallRecord, Checkpoint, DeliveryOutcome,
    Direction, DueDelivery, EndResponseEntry, FileKey, Journal, JournalError, LocalFileId,
    NewAlert, PartialReception, Processing, ProcessingRun, Pruned, QueueChange, QueueState,
    QueuedFile, QueuedSend, RaiseAgain, ReceiveState, ReceivedEntry, ReceivedFile, SendState,
    SentEntry, TransferDetail, TransferFilter,
};
use crate::identity::OdetteId;
use crate::stamp::{FileStamp, FileStampExt};

mod alert_delivery;
mod calls;
mod history;
mod operator;
mod processing;
mod queue;
mod receive;
mod schema;
mod sessions;
#[cfg(test)]
mod tests;

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "oftp-journal.sqlite3";

/// How long an operation waits for another connection's lock before it fails.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The SQLite journal. Cheap to clone; clones share one connection.
#[derive(Debug, Clone)]
pub struct SqliteJournal {
    conn: Arc<Mutex<Connection>>,
    /// The database file (`:memory:` for [`in_memory`](Self::in_memory)).
    path: Arc<PathBuf>,
}

impl From<SqliteJournal> for Arc<dyn Journal> {
    fn from(journal: SqliteJournal) -> Self {
        Arc::new(journal)
    }
}

/// The stored direction and partner of a file hash (sent files are ours: no partner).
fn hash_scope(direction: Direction, partner: &str) -> (&'static str, &str) {
    let partner = match direction {
        Direction::Received => partner.trim_end(),
        Direction::Sent => "",
    };
    (direction.as_str(), partner)
}

/// A SQLite error of the journal at `path`, as the backend-neutral [`JournalError::Backend`].
fn backend_error(path: &Path, error: rusqlite::Error) -> JournalError {
    JournalError::Backend {
        location: path.display().to_string(),
        error: Box::new(error),
    }
}

/// Sets the flag `column` (`end_response_sent` or `end_response_deferred`) of the reception of
/// `key` from `partner`.
fn flag_reception(
    conn: &Connection,
    column: &'static str,
    partner: &str,
    key: &FileKey,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        &format!(
            "UPDATE received SET {column} = 1, updated_at = ?4
             WHERE partner = ?5 AND originator = ?1 AND dsn = ?2 AND stamp = ?3"
        ),
        params![
            key.originator.as_str(),
            key.dsn,
            key.stamp.digits(),
            now_text(),
            partner.trim_end()
        ],
    )?;
    Ok(())
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339()
}

impl SqliteJournal {
    /// Opens (or creates) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| JournalError::Io {
                path: dir.to_owned(),
                error: source,
            })?;
        }
        let conn = Connection::open(path).map_err(|e| backend_error(path, e))?;
        Self::init(conn, path.to_owned())
    }

    /// Opens the journal `oftp-journal.sqlite3` in `data_dir`.
    pub fn open_in_dir(data_dir: &Path) -> Result<Self, JournalError> {
        Self::open(&data_dir.join(JOURNAL_FILE))
    }

    /// A journal that lives in memory (tests, one-shot tools).
    pub fn in_memory() -> Result<Self, JournalError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| backend_error(&path, e))?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self, JournalError> {
        let wrap = |e| backend_error(&path, e);
        // WAL lets readers run beside the writer; FULL makes each commit durable before it
        // returns, which is what "recorded before acknowledged" needs.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(wrap)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
        for report in schema::prepare(&conn, &path).map_err(wrap)? {
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

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (each statement is
        // atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn err(&self, source: rusqlite::Error) -> JournalError {
        backend_error(&self.path, source)
    }

    /// The rows of `sql` with `args`, each read by `read`, then made a value by `value`
    /// (which reports a row it cannot use as corrupt).
    fn select_rows<R, T>(
        &self,
        conn: &Connection,
        sql: &str,
        args: impl rusqlite::Params,
        read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<R>,
        value: impl Fn(R) -> Result<T, JournalError>,
    ) -> Result<Vec<T>, JournalError> {
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map(args, read).map_err(|e| self.err(e))?;
        rows.map(|row| value(row.map_err(|e| self.err(e))?))
            .collect()
    }

    fn corrupt(&self, detail: impl Into<String>) -> JournalError {
        JournalError::Corrupt {
            location: self.location(),
            detail: detail.into(),
        }
    }

    /// The file identity of a row.
    fn file_key(
        &self,
        originator: &str,
        dsn: &str,
        stamp: FileStamp,
    ) -> Result<FileKey, JournalError> {
        let originator = OdetteId::new(originator)
            .map_err(|e| self.corrupt(format!("originator of {dsn}: {e}")))?;
        Ok(FileKey::new(originator, dsn, stamp))
    }

    /// The stamp of `key` as stored, if it is a valid date and time; nothing else is written.
    fn stamp_to_store(&self, key: &FileKey) -> Result<String, JournalError> {
        JournalError::check_stamp(&self.location(), key)?;
        Ok(key.stamp.digits())
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
            key: self.file_key(&orig, &dsn, stamp)?,
            destination: dest,
            state: SendState::parse(&state)
                .ok_or_else(|| self.corrupt(format!("unknown send state {state:?}")))?,
        }))
    }
}

impl Journal for SqliteJournal {
    // ---- received files ------------------------------------------------------------------

    fn received(
        &self,
        partner: &str,
        key: &FileKey,
    ) -> Result<Option<ReceivedEntry>, JournalError> {
        self.reception_received(partner, key)
    }

    fn begin_receive(
        &self,
        partner: &str,
        key: &FileKey,
        partial_path: &Path,
        final_path: &Path,
        user_data: &str,
    ) -> Result<i64, JournalError> {
        self.reception_begin_receive(partner, key, partial_path, final_path, user_data)
    }

    fn checkpoint_receive(&self, id: i64, checkpoint: Checkpoint) -> Result<(), JournalError> {
        self.reception_checkpoint_receive(id, checkpoint)
    }

    fn complete_receive(&self, id: i64, final_path: &Path) -> Result<(), JournalError> {
        self.reception_complete_receive(id, final_path)
    }

    fn drop_receive(&self, id: i64) -> Result<(), JournalError> {
        self.reception_drop_receive(id)
    }

    fn partial_receptions(&self) -> Result<Vec<PartialReception>, JournalError> {
        self.reception_partial_receptions()
    }

    fn partial_paths(&self) -> Result<HashSet<PathBuf>, JournalError> {
        self.reception_partial_paths()
    }

    fn mark_end_response_sent(&self, partner: &str, key: &FileKey) -> Result<(), JournalError> {
        self.reception_mark_end_response_sent(partner, key)
    }

    fn defer_end_response(&self, partner: &str, key: &FileKey) -> Result<(), JournalError> {
        self.reception_defer_end_response(partner, key)
    }

    fn pending_end_responses(&self, partner: &str) -> Result<Vec<ReceivedEntry>, JournalError> {
        self.reception_pending_end_responses(partner)
    }

    // ---- sent files ----------------------------------------------------------------------

    fn latest_send(&self, local: &LocalFileId) -> Result<Option<SentEntry>, JournalError> {
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

    fn sent_by_key(&self, key: &FileKey) -> Result<Option<SentEntry>, JournalError> {
        self.find_sent(
            "originator = ?1 AND dsn = ?2 AND stamp = ?3",
            params![key.originator.as_str(), key.dsn, key.stamp.digits()],
        )
    }

    fn begin_send(
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
                key.originator.as_str(),
                key.dsn,
                stamp,
                destination.trim_end(),
                now_text()
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    fn set_send_state(&self, id: i64, state: SendState) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE sent SET state = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, state.as_str(), now_text()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    // ---- end responses -------------------------------------------------------------------

    fn record_file_hash(
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
                    key.originator.as_str(),
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

    fn file_hash(
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
                params![
                    dir,
                    key.originator.as_str(),
                    key.dsn,
                    key.stamp.digits(),
                    partner
                ],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(row.map(|(suite, hash)| (u8::try_from(suite).unwrap_or(0), hash)))
    }

    fn record_end_response(&self, e: &EndResponseEntry) -> Result<(), JournalError> {
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
                e.direction.as_str(),
                e.key.originator.as_str(),
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
                    e.key.originator.as_str(),
                    e.key.dsn,
                    e.key.stamp.digits(),
                    state.as_str(),
                    now_text()
                ],
            )
            .map_err(|e| self.err(e))?;
            queue::settle_by_end_response(&conn, e, &stamp).map_err(|e| self.err(e))?;
        } else {
            flag_reception(&conn, "end_response_sent", &e.partner, &e.key)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn end_response_count(&self, direction: Direction) -> Result<u64, JournalError> {
        self.lock()
            .query_row(
                "SELECT COUNT(*) FROM end_responses WHERE direction = ?1",
                params![direction.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }

    // ---- outbound queue and alerts (in `queue`) ------------------------------------------

    fn enqueue(&self, send: &QueuedSend, at: DateTime<Utc>) -> Result<i64, JournalError> {
        self.queue_enqueue(send, at)
    }

    fn claim_due(
        &self,
        partner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<QueuedFile>, JournalError> {
        self.queue_claim_due(partner, now, limit)
    }

    fn transition(
        &self,
        id: i64,
        change: &QueueChange,
    ) -> Result<Option<QueuedFile>, JournalError> {
        self.queue_transition(id, change)
    }

    fn requeue_in_transfer(&self, at: DateTime<Utc>, note: &str) -> Result<Vec<i64>, JournalError> {
        self.queue_requeue_in_transfer(at, note)
    }

    fn transfers(&self, filter: &TransferFilter) -> Result<Vec<QueuedFile>, JournalError> {
        self.queue_transfers(filter)
    }

    fn transfer(&self, id: i64) -> Result<Option<TransferDetail>, JournalError> {
        self.queue_transfer(id)
    }

    fn transfer_by_key(&self, key: &FileKey) -> Result<Option<QueuedFile>, JournalError> {
        self.queue_transfer_by_key(key)
    }

    fn raise_alert(&self, alert: &NewAlert, at: DateTime<Utc>) -> Result<i64, JournalError> {
        self.alerts_raise(alert, at)
    }

    fn open_alerts(&self) -> Result<Vec<Alert>, JournalError> {
        self.alerts_open()
    }

    fn acknowledge_alert(&self, id: i64, at: DateTime<Utc>) -> Result<Option<Alert>, JournalError> {
        self.alerts_acknowledge(id, at)
    }

    // ---- the operator's overview (in `operator`) ------------------------------------------

    fn queue_depth(&self) -> Result<Vec<(QueueState, u64)>, JournalError> {
        self.operator_queue_depth()
    }

    fn recent_alerts(&self, limit: u32) -> Result<Vec<Alert>, JournalError> {
        self.operator_recent_alerts(limit)
    }

    fn check_writable(&self) -> Result<(), JournalError> {
        self.operator_check_writable()
    }

    // ---- the gateway's calls (in `calls`) -------------------------------------------------

    fn record_call(&self, call: &CallRecord) -> Result<(), JournalError> {
        self.calls_record(call)
    }

    fn last_call(&self, partner: &str) -> Result<Option<CallRecord>, JournalError> {
        self.calls_last(partner)
    }

    fn next_due(&self, partner: &str) -> Result<Option<DateTime<Utc>>, JournalError> {
        self.queue_next_due(partner)
    }

    // ---- post-processing, held end responses, archive, history (in `processing`) ----------

    fn add_processing(
        &self,
        file: &ReceivedFile,
        hold_end_response: bool,
        at: DateTime<Utc>,
    ) -> Result<Processing, JournalError> {
        self.processing_add(file, hold_end_response, at)
    }

    fn processing(&self, id: i64) -> Result<Option<Processing>, JournalError> {
        self.processing_get(id)
    }

    fn processing_of(
        &self,
        partner: &str,
        key: &FileKey,
    ) -> Result<Option<Processing>, JournalError> {
        self.processing_of_file(partner, key)
    }

    fn unfinished_processing(&self) -> Result<Vec<Processing>, JournalError> {
        self.processing_unfinished()
    }

    fn start_processing(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError> {
        self.processing_start(id, at)
    }

    fn finish_processing(
        &self,
        id: i64,
        run: &ProcessingRun,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError> {
        self.processing_finish(id, run, at)
    }

    fn processing_moved(
        &self,
        id: i64,
        path: &Path,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        self.processing_mark_moved(id, path, at)
    }

    fn rerun_processing(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<Processing>, JournalError> {
        self.processing_rerun(id, at)
    }

    fn release_end_response(&self, partner: &str, key: &FileKey) -> Result<(), JournalError> {
        self.end_response_release(partner, key)
    }

    fn archive_candidates(&self, limit: u32) -> Result<Vec<ArchiveCandidate>, JournalError> {
        self.archive_candidates_list(limit)
    }

    fn record_archived(
        &self,
        kind: ArchiveKind,
        row_id: i64,
        path: Option<&Path>,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        self.archived_record(kind, row_id, path, at)
    }

    fn archived_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ArchivedFile>, JournalError> {
        self.archived_older(cutoff, limit)
    }

    fn archived_deleted(&self, id: i64, at: DateTime<Utc>) -> Result<(), JournalError> {
        self.archived_delete(id, at)
    }

    fn prune_history(&self, cutoff: DateTime<Utc>) -> Result<Pruned, JournalError> {
        self.history_prune(cutoff)
    }

    // ---- alert delivery and conditions (in `alert_delivery`) --------------------------------

    fn raise_alert_once(
        &self,
        key: &str,
        alert: &NewAlert,
        at: DateTime<Utc>,
        again: RaiseAgain,
    ) -> Result<Option<i64>, JournalError> {
        self.alerts_raise_once(key, alert, at, again)
    }

    fn clear_alert_key(&self, key: &str) -> Result<bool, JournalError> {
        self.alerts_clear_key(key)
    }

    fn due_alert_deliveries(
        &self,
        channels: &[String],
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, JournalError> {
        self.deliveries_due(channels, now, limit)
    }

    fn record_alert_delivery(
        &self,
        alert_id: i64,
        channel: &str,
        outcome: &DeliveryOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        self.deliveries_record(alert_id, channel, outcome, at)
    }

    fn transfer_page(&self, query: &HistoryQuery) -> Result<HistoryPage, JournalError> {
        self.history_page(query)
    }

    fn inbound_transfer(&self, id: i64) -> Result<Option<InboundFile>, JournalError> {
        self.history_inbound(id)
    }

    fn record_session(&self, batch: &SessionBatch) -> Result<i64, JournalError> {
        self.sessions_record(batch)
    }

    fn sessions_of(
        &self,
        direction: Direction,
        row: i64,
    ) -> Result<Vec<SessionTrail>, JournalError> {
        self.sessions_of_transfer(direction, row)
    }

    fn partner_counters(&self) -> Result<Vec<PartnerCounters>, JournalError> {
        self.sessions_partner_counters()
    }
}
