//! Workers and mailbox leases in the SQLite index ([`crate::index::lease`]): the same rules as
//! PostgreSQL's, on the local clock (one machine), each change in an `IMMEDIATE` transaction
//! (SQLite's one writer at a time is what `SKIP LOCKED` gives on PostgreSQL).

use crate::index::lease::{Acquired, LeaseRow, WorkerRow};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// The tables (times are milliseconds since the epoch, local clock).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workers(
  worker TEXT PRIMARY KEY, started INTEGER NOT NULL, round INTEGER NOT NULL,
  heartbeat INTEGER NOT NULL, expires INTEGER NOT NULL, finished INTEGER);
CREATE TABLE IF NOT EXISTS leases(
  mailbox TEXT PRIMARY KEY, worker TEXT, since INTEGER, heartbeat INTEGER, expires INTEGER,
  messages INTEGER NOT NULL DEFAULT 0, done_at INTEGER);
CREATE INDEX IF NOT EXISTS leases_by_worker ON leases(worker);
";

/// Workers gone for longer than this are forgotten when another registers.
const FORGET_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Outcome of [`register`]: `Err(heartbeat)` when a live worker has the id.
pub(super) fn register(
    c: &mut Connection,
    worker: &str,
    ttl: i64,
) -> rusqlite::Result<Result<(), String>> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now();
    let live: Option<i64> = tx
        .query_row(
            "SELECT heartbeat FROM workers WHERE worker=?1 AND finished IS NULL AND expires>?2",
            params![worker, now],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(hb) = live {
        return Ok(Err(time(hb)));
    }
    tx.execute(
        "DELETE FROM workers WHERE heartbeat<?1 AND worker NOT IN
           (SELECT worker FROM leases WHERE worker IS NOT NULL)",
        params![now - FORGET_AFTER_MS],
    )?;
    // The round of the workers already at work, or a new one.
    let round: i64 = tx.query_row(
        "SELECT COALESCE(MIN(round), ?2) FROM workers
         WHERE finished IS NULL AND expires>?2 AND worker<>?1",
        params![worker, now],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO workers(worker, started, round, heartbeat, expires, finished)
         VALUES(?1, ?2, ?3, ?2, ?4, NULL)
         ON CONFLICT(worker) DO UPDATE SET started=excluded.started, round=excluded.round,
           heartbeat=excluded.heartbeat, expires=excluded.expires, finished=NULL",
        params![worker, now, round, now + ttl],
    )?;
    tx.commit()?;
    Ok(Ok(()))
}

pub(super) fn acquire(
    c: &mut Connection,
    worker: &str,
    mailboxes: &[String],
    ttl: i64,
) -> rusqlite::Result<Acquired> {
    let list = serde_json::to_string(mailboxes).unwrap_or_else(|_| "[]".into());
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now();
    tx.execute(
        "INSERT OR IGNORE INTO leases(mailbox) SELECT value FROM json_each(?1)",
        params![list],
    )?;
    let round: i64 = tx
        .query_row(
            "SELECT round FROM workers WHERE worker=?1",
            params![worker],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(now);
    let pick: Option<(String, Option<String>)> = tx
        .query_row(
            "SELECT mailbox, worker FROM leases
             WHERE mailbox IN (SELECT value FROM json_each(?1))
               AND (worker IS NULL OR expires<=?2) AND (done_at IS NULL OR done_at<?3)
             ORDER BY mailbox LIMIT 1",
            params![list, now, round],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let answer = match pick {
        Some((mailbox, previous)) => {
            tx.execute(
                "UPDATE leases SET worker=?2, since=?3, heartbeat=?3, expires=?4, messages=0
                 WHERE mailbox=?1",
                params![mailbox, worker, now, now + ttl],
            )?;
            Acquired::Lease {
                mailbox,
                taken_over_from: previous.filter(|p| p != worker),
            }
        }
        None => {
            let pending: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM leases
                   WHERE mailbox IN (SELECT value FROM json_each(?1))
                     AND (done_at IS NULL OR done_at<?2))",
                params![list, round],
                |r| r.get(0),
            )?;
            if pending {
                Acquired::Wait
            } else {
                Acquired::Done
            }
        }
    };
    tx.commit()?;
    Ok(answer)
}

pub(super) fn heartbeat(
    c: &mut Connection,
    worker: &str,
    progress: &[(String, u64)],
    ttl: i64,
) -> rusqlite::Result<Vec<String>> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now();
    tx.execute(
        "UPDATE workers SET heartbeat=?2, expires=?3 WHERE worker=?1 AND finished IS NULL",
        params![worker, now, now + ttl],
    )?;
    let mut lost = Vec::new();
    for (mailbox, messages) in progress {
        let n = tx.execute(
            "UPDATE leases SET heartbeat=?3, expires=?4, messages=?5 WHERE mailbox=?1 AND worker=?2",
            params![mailbox, worker, now, now + ttl, *messages as i64],
        )?;
        if n == 0 {
            lost.push(mailbox.clone());
        }
    }
    tx.commit()?;
    Ok(lost)
}

pub(super) fn release(
    c: &mut Connection,
    worker: &str,
    mailbox: &str,
    done: bool,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE leases SET worker=NULL, expires=NULL,
           done_at=CASE WHEN ?3 THEN ?4 ELSE done_at END
         WHERE mailbox=?1 AND worker=?2",
        params![mailbox, worker, done, now()],
    )?;
    Ok(())
}

pub(super) fn finish(c: &mut Connection, worker: &str) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "UPDATE leases SET worker=NULL, expires=NULL WHERE worker=?1",
        params![worker],
    )?;
    tx.execute(
        "UPDATE workers SET finished=?2, heartbeat=?2 WHERE worker=?1",
        params![worker, now()],
    )?;
    tx.commit()
}

pub(super) fn workers(c: &mut Connection) -> rusqlite::Result<Vec<WorkerRow>> {
    let now = now();
    let mut leases = c.prepare(
        "SELECT worker, mailbox, since, heartbeat, messages, expires<=?1 FROM leases
         WHERE worker IS NOT NULL ORDER BY worker, mailbox",
    )?;
    let held: Vec<(String, LeaseRow)> = leases
        .query_map(params![now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                LeaseRow {
                    mailbox: r.get(1)?,
                    since: time(r.get(2)?),
                    heartbeat: time(r.get(3)?),
                    messages: r.get::<_, i64>(4)?.max(0) as u64,
                    expired: r.get(5)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = c.prepare(
        "SELECT worker, started, heartbeat, finished, expires<=?1 FROM workers ORDER BY worker",
    )?;
    let rows = st.query_map(params![now], |r| {
        Ok(WorkerRow::assemble(
            r.get(0)?,
            time(r.get(1)?),
            time(r.get(2)?),
            r.get::<_, Option<i64>>(3)?.map(time),
            r.get(4)?,
            &held,
        ))
    })?;
    rows.collect()
}
