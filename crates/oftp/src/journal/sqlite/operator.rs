//! The operator's overview of the SQLite journal: the queue's depth by state (the table
//! `queue_counts` that triggers keep, see `schema`), the newest alerts, acknowledged or not,
//! and the write probe of readiness checks.

use std::time::Duration;

use rusqlite::TransactionBehavior;

use super::BUSY_TIMEOUT;
use crate::journal::queue::{Alert, QueueState};
use crate::journal::{JournalError, SqliteJournal};

/// How long the write probe waits for another writer's lock (the journal's own operations
/// wait [`BUSY_TIMEOUT`]).
const PROBE_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

impl SqliteJournal {
    pub(super) fn operator_queue_depth(&self) -> Result<Vec<(QueueState, u64)>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT state, n FROM queue_counts WHERE n > 0")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let mut depth = Vec::with_capacity(rows.len());
        for (name, count) in rows {
            let state = QueueState::parse(&name)
                .ok_or_else(|| self.corrupt(format!("queue: unknown state {name:?}")))?;
            let count = u64::try_from(count)
                .map_err(|_| self.corrupt(format!("queue: bad count of {name}")))?;
            depth.push((state, count));
        }
        depth.sort_by_key(|(state, _)| QueueState::ALL.iter().position(|s| s == state));
        Ok(depth)
    }

    /// Sets the header's `user_version` (which the journal does not use) to the value it has,
    /// in a write transaction: one page to the WAL, committed and synced.
    pub(super) fn operator_check_writable(&self) -> Result<(), JournalError> {
        let mut conn = self.lock();
        conn.busy_timeout(PROBE_BUSY_TIMEOUT)
            .map_err(|e| self.err(e))?;
        let probe = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        })();
        let restored = conn.busy_timeout(BUSY_TIMEOUT);
        probe.map_err(|e| self.err(e))?;
        restored.map_err(|e| self.err(e))
    }

    pub(super) fn operator_recent_alerts(&self, limit: u32) -> Result<Vec<Alert>, JournalError> {
        self.select_alerts(
            &self.lock(),
            "ORDER BY id DESC LIMIT ?1",
            [i64::from(limit)],
        )
    }
}
