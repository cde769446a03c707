//! The operator's overview of the SQLite journal: the queue's depth by state (one `GROUP BY`
//! over the index `queue_by_state`) and the newest alerts, acknowledged or not.

use crate::journal::queue::{Alert, QueueState};
use crate::journal::{JournalError, SqliteJournal};

impl SqliteJournal {
    pub(super) fn operator_queue_depth(&self) -> Result<Vec<(QueueState, u64)>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT state, COUNT(*) FROM queue GROUP BY state")
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

    pub(super) fn operator_recent_alerts(&self, limit: u32) -> Result<Vec<Alert>, JournalError> {
        self.select_alerts(
            &self.lock(),
            "ORDER BY id DESC LIMIT ?1",
            [i64::from(limit)],
        )
    }
}
