//! Alert delivery and alert conditions in the SQLite journal (see
//! [`alert_delivery`](crate::journal::alert_delivery)): tables `alert_deliveries` (one row per
//! alert and channel once an attempt was made) and `alert_keys` (the alert raised for a
//! watchdog's condition). Times in milliseconds since the Unix epoch, as in `queue`.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteJournal;
use super::queue::{immediate, insert_alert, ms};
use crate::journal::{DeliveryOutcome, DueDelivery, JournalError, NewAlert, RaiseAgain};

/// The tables, created when a journal is opened (a journal of an earlier version gets them
/// empty; nothing else changes). `state` is `pending`, `delivered` or `gave_up`. The index
/// serves the look-up of an alert's row for a channel (the primary key) and the due rows.
pub(super) const ALERT_DELIVERY_TABLES: &str = "
CREATE TABLE IF NOT EXISTS alert_deliveries (
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER,
    last_error TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (alert_id, channel)
);
CREATE TABLE IF NOT EXISTS alert_keys (
    key TEXT PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts (id)
);
";

/// Alerts due for channel ?1 at ?2, at most ?3: never tried, or pending and due.
const DUE: &str = "SELECT a.id, COALESCE(d.attempts, 0) FROM alerts a
    LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.channel = ?1
    WHERE d.alert_id IS NULL OR (d.state = 'pending' AND d.next_attempt_at <= ?2)
    ORDER BY a.id LIMIT ?3";

impl SqliteJournal {
    pub(super) fn alerts_raise_once(
        &self,
        key: &str,
        a: &NewAlert,
        at: DateTime<Utc>,
        again: RaiseAgain,
    ) -> Result<Option<i64>, JournalError> {
        let conn = self.lock();
        let tx = immediate(&conn).map_err(|e| self.err(e))?;
        let existing: Option<Option<i64>> = tx
            .query_row(
                "SELECT a.acknowledged_at FROM alert_keys k JOIN alerts a ON a.id = k.alert_id
                 WHERE k.key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let raise = match (existing, again) {
            (None, _) => true,
            (Some(_), RaiseAgain::Never) | (Some(None), _) => false,
            (Some(Some(acked)), RaiseAgain::AfterAcknowledged(after)) => {
                ms(at) >= acked.saturating_add(after.num_milliseconds())
            }
        };
        if !raise {
            return Ok(None);
        }
        let id = insert_alert(&tx, a, at).map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO alert_keys (key, alert_id) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET alert_id = excluded.alert_id",
            params![key, id],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Some(id))
    }

    pub(super) fn alerts_clear_key(&self, key: &str) -> Result<bool, JournalError> {
        let n = self
            .lock()
            .execute("DELETE FROM alert_keys WHERE key = ?1", [key])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    pub(super) fn deliveries_due(
        &self,
        channels: &[String],
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, JournalError> {
        let conn = self.lock();
        let mut out = Vec::new();
        for channel in channels {
            let due: Vec<(i64, i64)> = {
                let mut stmt = conn.prepare_cached(DUE).map_err(|e| self.err(e))?;
                stmt.query_map(params![channel, ms(now), limit], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(|e| self.err(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(e))?
            };
            for (id, attempts) in due {
                let Some(alert) = self
                    .select_alerts(&conn, "WHERE id = ?1", [id])?
                    .into_iter()
                    .next()
                else {
                    continue;
                };
                out.push(DueDelivery {
                    alert,
                    channel: channel.clone(),
                    attempts: u32::try_from(attempts).map_err(|_| {
                        self.corrupt(format!("alert {id}: {attempts} delivery attempts"))
                    })?,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn deliveries_record(
        &self,
        alert_id: i64,
        channel: &str,
        outcome: &DeliveryOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let (state, next, error) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None, None),
            DeliveryOutcome::RetryAt {
                next_attempt_at,
                error,
            } => ("pending", Some(ms(*next_attempt_at)), Some(error.as_str())),
            DeliveryOutcome::GaveUp { error } => ("gave_up", None, Some(error.as_str())),
        };
        self.lock()
            .execute(
                "INSERT INTO alert_deliveries
                     (alert_id, channel, state, attempts, next_attempt_at, last_error, updated_at)
                 SELECT id, ?2, ?3, 1, ?4, ?5, ?6 FROM alerts WHERE id = ?1
                 ON CONFLICT (alert_id, channel) DO UPDATE SET state = excluded.state,
                     attempts = attempts + 1, next_attempt_at = excluded.next_attempt_at,
                     last_error = COALESCE(excluded.last_error, last_error),
                     updated_at = excluded.updated_at",
                params![alert_id, channel, state, next, error, ms(at)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
