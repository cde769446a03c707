//! The outbound queue and the alerts of the SQLite journal (tables `queue`, `queue_history`
//! and `alerts`, see [`schema`](super::schema)). Times are stored as milliseconds since the
//! Unix epoch, so "due" is an integer comparison an index can answer. Every change runs in an
//! immediate transaction (the write lock is taken before the rows are read), so two
//! connections to the same file never claim the same row.

use chrono::{DateTime, Utc};
use oftp_proto::codec::{FileFormat, NerpReason};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::SqliteJournal;
use crate::identity::OdetteId;
use crate::journal::queue::{
    Alert, AlertKind, NewAlert, QueueChange, QueueState, QueuedFile, QueuedSend, TransferDetail,
    TransferFilter, Transition,
};
use crate::journal::{EndResponseEntry, FileKey, JournalError};
use crate::stamp::{FileStamp, FileStampExt};

/// The columns of `queue` that [`QueueRow::read`] reads, in its order.
const QUEUE_COLUMNS: &str = "id, partner, source_path, virtual_file_name, destination, \
    originator, format, max_record_len, user_data, description, state, attempts, last_error, \
    key_originator, key_dsn, key_stamp, queued_at, next_attempt_at, updated_at";

/// The columns of `alerts`, in the order [`SqliteJournal::alert`] reads them.
const ALERT_COLUMNS: &str = "id, kind, partner, file, text, raised_at, acknowledged_at";

/// The due rows of a partner (?1) at a time (?2), at most ?3, in the order they are claimed.
pub(super) const CLAIM_DUE: &str = "SELECT id FROM queue
    WHERE partner = ?1 AND state = 'queued' AND next_attempt_at <= ?2
    ORDER BY next_attempt_at, id LIMIT ?3";

/// The history of a row (?1), oldest first.
pub(super) const HISTORY: &str = "SELECT at, from_state, to_state, note FROM queue_history
    WHERE queue_id = ?1 ORDER BY id";

/// What follows `FROM queue` to list the rows of `f`, and its parameters.
pub(super) fn transfers_query(f: &TransferFilter) -> (String, Vec<Value>) {
    let mut tail = String::from("WHERE 1");
    let mut args: Vec<Value> = Vec::new();
    let mut and = |clause: &str, value: Value| {
        args.push(value);
        tail.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(partner) = &f.partner {
        and("partner =", Value::Text(partner.trim_end().to_owned()));
    }
    if let Some(state) = f.state {
        and("state =", Value::Text(state.as_str().to_owned()));
    }
    if let Some(since) = f.since {
        and("updated_at >=", Value::Integer(ms(since)));
    }
    if let Some(before) = f.before_id {
        and("id <", Value::Integer(before));
    }
    args.push(Value::Integer(i64::from(f.limit)));
    tail.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
    (tail, args)
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A `queue` row as stored, before its values are checked.
struct QueueRow {
    id: i64,
    text: [String; 6],
    destination: Option<String>,
    originator: Option<String>,
    max_record_len: i64,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    key: [Option<String>; 3],
    times: [i64; 3],
}

impl QueueRow {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            text: [
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(6)?,
                r.get(8)?,
                r.get(9)?,
            ],
            destination: r.get(4)?,
            originator: r.get(5)?,
            max_record_len: r.get(7)?,
            state: r.get(10)?,
            attempts: r.get(11)?,
            last_error: r.get(12)?,
            key: [r.get(13)?, r.get(14)?, r.get(15)?],
            times: [r.get(16)?, r.get(17)?, r.get(18)?],
        })
    }
}

/// Starts a transaction that holds the write lock from its first statement.
pub(super) fn immediate(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
}

/// Inserts an open alert raised at `at` and returns its id.
pub(super) fn insert_alert(
    conn: &Connection,
    a: &NewAlert,
    at: DateTime<Utc>,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO alerts (kind, partner, file, text, raised_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            a.kind.as_str(),
            a.partner.as_deref().map(str::trim_end),
            a.file,
            a.text,
            ms(at)
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Appends a transition to the history of row `id`.
fn record_transition(
    conn: &Connection,
    id: i64,
    from: Option<QueueState>,
    to: QueueState,
    at: DateTime<Utc>,
    note: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO queue_history (queue_id, at, from_state, to_state, note)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, ms(at), from.map(QueueState::as_str), to.as_str(), note],
    )?;
    Ok(())
}

/// The effect of a received EERP/NERP (`e`) on the queue, inside the transaction that records
/// it: the newest row in state sent last offered under its identity (`stamp` as stored)
/// becomes delivered, or not delivered with the NERP as its last error and an open alert.
pub(super) fn settle_by_end_response(
    conn: &Connection,
    e: &EndResponseEntry,
    stamp: &str,
) -> rusqlite::Result<()> {
    let row = conn
        .query_row(
            "SELECT id, partner, virtual_file_name FROM queue
             WHERE key_originator = ?1 AND key_dsn = ?2 AND key_stamp = ?3 AND state = 'sent'
             ORDER BY id DESC LIMIT 1",
            params![e.key.originator.as_str(), e.key.dsn, stamp],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((id, partner, name)) = row else {
        return Ok(());
    };
    let (to, error) = match &e.negative {
        None => (QueueState::Delivered, None),
        Some((code, text)) => {
            let reason = u8::try_from(*code).map_or("unknown reason", |c| {
                NerpReason(c).description().unwrap_or("unknown reason")
            });
            let text = text.trim();
            let text = if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            };
            (
                QueueState::NotDelivered,
                Some(format!("NERP {code:02} ({reason}){text}")),
            )
        }
    };
    conn.execute(
        "UPDATE queue SET state = ?2, updated_at = ?3, last_error = COALESCE(?4, last_error)
         WHERE id = ?1",
        params![id, to.as_str(), ms(e.at), error],
    )?;
    let note = error.as_deref().unwrap_or("EERP received");
    record_transition(conn, id, Some(QueueState::Sent), to, e.at, Some(note))?;
    if let Some(error) = &error {
        conn.execute(
            "INSERT INTO alerts (kind, partner, file, text, raised_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                AlertKind::NotDelivered.as_str(),
                partner,
                name,
                format!(
                    "{name} (transfer {id}) to {partner} was not delivered: {error}; the file \
                     is kept: settle the cause with the partner, then run \
                     `oftp transfer retry {id}` to send it again"
                ),
                ms(e.at)
            ],
        )?;
    }
    Ok(())
}

impl SqliteJournal {
    /// A stored identification code of transfer `id`, checked as when it was written.
    fn stored_code(
        &self,
        id: i64,
        what: &str,
        code: Option<String>,
    ) -> Result<Option<OdetteId>, JournalError> {
        code.map(|c| {
            OdetteId::new(&c).map_err(|e| self.corrupt(format!("transfer {id}: {what}: {e}")))
        })
        .transpose()
    }

    pub(super) fn time(&self, ms: i64) -> Result<DateTime<Utc>, JournalError> {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| self.corrupt(format!("time {ms} ms out of range")))
    }

    fn queued_file(&self, row: QueueRow) -> Result<QueuedFile, JournalError> {
        let QueueRow {
            id,
            text:
                [
                    partner,
                    source_path,
                    virtual_file_name,
                    format,
                    user_data,
                    description,
                ],
            ..
        } = row;
        let format = format
            .bytes()
            .next()
            .and_then(FileFormat::from_byte)
            .ok_or_else(|| self.corrupt(format!("transfer {id}: unknown format {format:?}")))?;
        let key = match row.key {
            [Some(originator), Some(dsn), Some(stamp)] => {
                let stamp = FileStamp::parse(&stamp).map_err(|e| self.corrupt(e.to_string()))?;
                Some(self.file_key(&originator, &dsn, stamp)?)
            }
            _ => None,
        };
        let [queued_at, next_attempt_at, updated_at] = row.times;
        Ok(QueuedFile {
            id,
            send: QueuedSend {
                partner,
                source_path: source_path.into(),
                virtual_file_name,
                destination: self.stored_code(id, "destination", row.destination)?,
                originator: self.stored_code(id, "originator", row.originator)?,
                format,
                max_record_len: u32::try_from(row.max_record_len)
                    .map_err(|_| self.corrupt(format!("transfer {id}: bad record length")))?,
                user_data,
                description,
            },
            state: QueueState::parse(&row.state).ok_or_else(|| {
                self.corrupt(format!("transfer {id}: unknown state {:?}", row.state))
            })?,
            attempts: u32::try_from(row.attempts)
                .map_err(|_| self.corrupt(format!("transfer {id}: bad attempt count")))?,
            last_error: row.last_error,
            key,
            queued_at: self.time(queued_at)?,
            next_attempt_at: self.time(next_attempt_at)?,
            updated_at: self.time(updated_at)?,
        })
    }

    /// The `queue` rows selected by `tail` (after `FROM queue`), in its order.
    pub(super) fn select_queue(
        &self,
        conn: &Connection,
        tail: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<QueuedFile>, JournalError> {
        self.select_rows(
            conn,
            &format!("SELECT {QUEUE_COLUMNS} FROM queue {tail}"),
            args,
            QueueRow::read,
            |row| self.queued_file(row),
        )
    }

    fn queue_row(&self, conn: &Connection, id: i64) -> Result<Option<QueuedFile>, JournalError> {
        Ok(self
            .select_queue(conn, "WHERE id = ?1", [id])?
            .into_iter()
            .next())
    }

    pub(super) fn queue_enqueue(
        &self,
        s: &QueuedSend,
        at: DateTime<Utc>,
    ) -> Result<i64, JournalError> {
        let conn = self.lock();
        let run = || -> rusqlite::Result<i64> {
            let tx = immediate(&conn)?;
            let partner = s.partner.trim_end();
            let source = s.source_path.to_string_lossy();
            let existing = conn
                .query_row(
                    "SELECT id FROM queue WHERE partner = ?1 AND source_path = ?2",
                    params![partner, source],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = existing {
                return Ok(id);
            }
            conn.execute(
                "INSERT INTO queue (partner, source_path, virtual_file_name, destination,
                     originator, format, max_record_len, user_data, description, state,
                     queued_at, next_attempt_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?10, ?10)",
                params![
                    partner,
                    source,
                    s.virtual_file_name,
                    s.destination.as_ref().map(OdetteId::as_str),
                    s.originator.as_ref().map(OdetteId::as_str),
                    (s.format.as_byte() as char).to_string(),
                    i64::from(s.max_record_len),
                    s.user_data,
                    s.description,
                    ms(at)
                ],
            )?;
            let id = conn.last_insert_rowid();
            record_transition(&conn, id, None, QueueState::Queued, at, None)?;
            tx.commit()?;
            Ok(id)
        };
        run().map_err(|e| self.err(e))
    }

    pub(super) fn queue_claim_due(
        &self,
        partner: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<QueuedFile>, JournalError> {
        let conn = self.lock();
        let run = || -> rusqlite::Result<Vec<i64>> {
            let tx = immediate(&conn)?;
            let ids: Vec<i64> = conn
                .prepare(CLAIM_DUE)?
                .query_map(params![partner.trim_end(), ms(now), limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for &id in &ids {
                conn.execute(
                    "UPDATE queue SET state = 'in_transfer', attempts = attempts + 1,
                            updated_at = ?2 WHERE id = ?1",
                    params![id, ms(now)],
                )?;
                let from = Some(QueueState::Queued);
                record_transition(&conn, id, from, QueueState::InTransfer, now, None)?;
            }
            tx.commit()?;
            Ok(ids)
        };
        let ids = run().map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.queue_row(&conn, id)?);
        }
        Ok(out)
    }

    pub(super) fn queue_transition(
        &self,
        id: i64,
        c: &QueueChange,
    ) -> Result<Option<QueuedFile>, JournalError> {
        let key = match &c.key {
            Some(key) => Some((key, self.stamp_to_store(key)?)),
            None => None,
        };
        let conn = self.lock();
        let tx = immediate(&conn).map_err(|e| self.err(e))?;
        let Some(from) = self.queue_row(&conn, id)?.map(|row| row.state) else {
            return Ok(None);
        };
        from.check_transition(c.to)
            .map_err(|refused| JournalError::TransitionRefused {
                location: self.location(),
                id,
                refused,
            })?;
        let next = (c.to == QueueState::Queued).then(|| ms(c.next_attempt_at.unwrap_or(c.at)));
        let run = || -> rusqlite::Result<()> {
            conn.execute(
                "UPDATE queue SET state = ?2, updated_at = ?3,
                        next_attempt_at = COALESCE(?4, next_attempt_at),
                        last_error = COALESCE(?5, last_error),
                        key_originator = COALESCE(?6, key_originator),
                        key_dsn = COALESCE(?7, key_dsn), key_stamp = COALESCE(?8, key_stamp)
                 WHERE id = ?1",
                params![
                    id,
                    c.to.as_str(),
                    ms(c.at),
                    next,
                    c.error,
                    key.as_ref().map(|(k, _)| k.originator.as_str()),
                    key.as_ref().map(|(k, _)| &k.dsn),
                    key.as_ref().map(|(_, stamp)| stamp),
                ],
            )?;
            record_transition(&conn, id, Some(from), c.to, c.at, c.history_note())
        };
        run().map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        self.queue_row(&conn, id)
    }

    pub(super) fn queue_requeue_in_transfer(
        &self,
        at: DateTime<Utc>,
        note: &str,
    ) -> Result<Vec<i64>, JournalError> {
        let conn = self.lock();
        let run = || -> rusqlite::Result<Vec<i64>> {
            let tx = immediate(&conn)?;
            let ids: Vec<i64> = conn
                .prepare("SELECT id FROM queue WHERE state = 'in_transfer' ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for &id in &ids {
                conn.execute(
                    "UPDATE queue SET state = 'queued', next_attempt_at = ?2, updated_at = ?2
                     WHERE id = ?1",
                    params![id, ms(at)],
                )?;
                let from = Some(QueueState::InTransfer);
                record_transition(&conn, id, from, QueueState::Queued, at, Some(note))?;
            }
            tx.commit()?;
            Ok(ids)
        };
        run().map_err(|e| self.err(e))
    }

    pub(super) fn queue_transfers(
        &self,
        f: &TransferFilter,
    ) -> Result<Vec<QueuedFile>, JournalError> {
        let (tail, args) = transfers_query(f);
        self.select_queue(&self.lock(), &tail, rusqlite::params_from_iter(args))
    }

    pub(super) fn queue_transfer(&self, id: i64) -> Result<Option<TransferDetail>, JournalError> {
        let conn = self.lock();
        let Some(file) = self.queue_row(&conn, id)? else {
            return Ok(None);
        };
        let mut stmt = conn.prepare(HISTORY).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let state = |s: &str| {
            QueueState::parse(s)
                .ok_or_else(|| self.corrupt(format!("transfer {id}: unknown state {s:?}")))
        };
        let mut history = Vec::new();
        for row in rows {
            let (at, from, to, note) = row.map_err(|e| self.err(e))?;
            history.push(Transition {
                at: self.time(at)?,
                from: from.as_deref().map(state).transpose()?,
                to: state(&to)?,
                note,
            });
        }
        Ok(Some(TransferDetail { file, history }))
    }

    pub(super) fn queue_transfer_by_key(
        &self,
        key: &FileKey,
    ) -> Result<Option<QueuedFile>, JournalError> {
        let rows = self.select_queue(
            &self.lock(),
            "WHERE key_originator = ?1 AND key_dsn = ?2 AND key_stamp = ?3
             ORDER BY id DESC LIMIT 1",
            params![key.originator.as_str(), key.dsn, key.stamp.digits()],
        )?;
        Ok(rows.into_iter().next())
    }

    // ---- alerts --------------------------------------------------------------------------

    fn alert(&self, conn: &Connection, id: i64) -> Result<Option<Alert>, JournalError> {
        Ok(self
            .select_alerts(conn, "WHERE id = ?1", [id])?
            .into_iter()
            .next())
    }

    pub(super) fn select_alerts(
        &self,
        conn: &Connection,
        tail: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Alert>, JournalError> {
        self.select_rows(
            conn,
            &format!("SELECT {ALERT_COLUMNS} FROM alerts {tail}"),
            args,
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            },
            |(id, kind, partner, file, text, raised, acked)| {
                Ok(Alert {
                    id,
                    alert: NewAlert {
                        kind: AlertKind::parse(&kind).ok_or_else(|| {
                            self.corrupt(format!("alert {id}: unknown kind {kind:?}"))
                        })?,
                        partner,
                        file,
                        text,
                    },
                    raised_at: self.time(raised)?,
                    acknowledged_at: acked.map(|t| self.time(t)).transpose()?,
                })
            },
        )
    }

    pub(super) fn alerts_raise(
        &self,
        a: &NewAlert,
        at: DateTime<Utc>,
    ) -> Result<i64, JournalError> {
        insert_alert(&self.lock(), a, at).map_err(|e| self.err(e))
    }

    pub(super) fn alerts_open(&self) -> Result<Vec<Alert>, JournalError> {
        self.select_alerts(
            &self.lock(),
            "WHERE acknowledged_at IS NULL ORDER BY id",
            [],
        )
    }

    pub(super) fn alerts_acknowledge(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<Alert>, JournalError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE alerts SET acknowledged_at = ?2 WHERE id = ?1 AND acknowledged_at IS NULL",
            params![id, ms(at)],
        )
        .map_err(|e| self.err(e))?;
        self.alert(&conn, id)
    }
}
