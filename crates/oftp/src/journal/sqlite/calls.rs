//! The gateway's calls of the SQLite journal (table `calls`, see [`schema`](super::schema)),
//! and the earliest due time of a partner's queued files (from `queue`, by its index
//! `queue_due`). Times are milliseconds since the Unix epoch, as in the queue.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteJournal;
use super::queue::ms;
use crate::journal::JournalError;
use crate::journal::calls::CallRecord;

impl SqliteJournal {
    pub(super) fn calls_record(&self, call: &CallRecord) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "INSERT INTO calls (partner, started_at, ended_at, ok, text)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    call.partner.trim_end(),
                    ms(call.started_at),
                    ms(call.ended_at),
                    call.ok,
                    call.text
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) fn calls_last(&self, partner: &str) -> Result<Option<CallRecord>, JournalError> {
        let row = self
            .lock()
            .query_row(
                "SELECT partner, started_at, ended_at, ok, text FROM calls
                 WHERE partner = ?1 ORDER BY started_at DESC, id DESC LIMIT 1",
                [partner.trim_end()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(partner, started, ended, ok, text)| {
            Ok(CallRecord {
                partner,
                started_at: self.time(started)?,
                ended_at: self.time(ended)?,
                ok,
                text,
            })
        })
        .transpose()
    }

    pub(super) fn queue_next_due(
        &self,
        partner: &str,
    ) -> Result<Option<DateTime<Utc>>, JournalError> {
        let due: Option<i64> = self
            .lock()
            .query_row(
                "SELECT MIN(next_attempt_at) FROM queue WHERE partner = ?1 AND state = 'queued'",
                [partner.trim_end()],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        due.map(|t| self.time(t)).transpose()
    }
}
