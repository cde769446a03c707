//! Workers and mailbox leases in PostgreSQL ([`crate::index::lease`]): every time is the
//! server's `now()`, so workers on machines whose clocks disagree agree on expiry. A mailbox is
//! taken with `SELECT ... FOR UPDATE SKIP LOCKED` and updated in the same statement: workers
//! asking at once lock different rows and never wait for each other; PostgreSQL re-checks the
//! conditions on the newest version of a locked row, so an expiry or a take-over committed by
//! another worker in between is seen.

use crate::index::lease::{Acquired, LeaseRow, WorkerRow};
use postgres::Client;

/// A timestamp column as RFC 3339, UTC, milliseconds.
fn text(column: &str) -> String {
    format!(r#"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#)
}

/// `now()` plus `ms` milliseconds (parameter `$n`).
fn later(n: u8) -> String {
    format!("now() + ${n}::bigint * interval '1 millisecond'")
}

/// Outcome of [`register`]: `Err(heartbeat)` when a live worker has the id.
pub(super) fn register(
    c: &mut Client,
    worker: &str,
    ttl: i64,
) -> Result<Result<(), String>, postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute(
        "DELETE FROM workers w WHERE w.heartbeat < now() - interval '7 days'
           AND NOT EXISTS(SELECT 1 FROM leases l WHERE l.worker=w.worker)",
        &[],
    )?;
    let taken = tx.query_opt(
        &format!(
            "INSERT INTO workers(worker, started, round, heartbeat, expires_at)
             VALUES($1, now(), COALESCE((SELECT MIN(round) FROM workers
                 WHERE finished IS NULL AND expires_at > now() AND worker <> $1), now()),
               now(), {})
             ON CONFLICT(worker) DO UPDATE SET started=now(), round=excluded.round,
               heartbeat=now(), expires_at=excluded.expires_at, finished=NULL
             WHERE workers.finished IS NOT NULL OR workers.expires_at <= now()
             RETURNING worker",
            later(2)
        ),
        &[&worker, &ttl],
    )?;
    if taken.is_none() {
        let hb: String = tx
            .query_one(
                &format!("SELECT {} FROM workers WHERE worker=$1", text("heartbeat")),
                &[&worker],
            )?
            .get(0);
        return Ok(Err(hb));
    }
    tx.commit()?;
    Ok(Ok(()))
}

pub(super) fn acquire(
    c: &mut Client,
    worker: &str,
    mailboxes: &[String],
    ttl: i64,
) -> Result<Acquired, postgres::Error> {
    // Rows for new mailboxes, in a transaction of their own and in one order, so workers
    // inserting the same list at once neither deadlock nor hold locks while they pick.
    c.execute(
        "INSERT INTO leases(mailbox) SELECT m FROM unnest($1::text[]) AS m ORDER BY m
         ON CONFLICT DO NOTHING",
        &[&mailboxes],
    )?;
    let picked = c.query_opt(
        &format!(
            "WITH pick AS (
               SELECT l.mailbox, l.worker AS previous FROM leases l
               WHERE l.mailbox = ANY($2)
                 AND (l.worker IS NULL OR l.expires_at <= now())
                 AND (l.done_at IS NULL OR l.done_at <
                      COALESCE((SELECT round FROM workers WHERE worker=$1), now()))
               ORDER BY l.mailbox LIMIT 1
               FOR UPDATE OF l SKIP LOCKED)
             UPDATE leases l SET worker=$1, since=now(), heartbeat=now(), expires_at={},
               messages=0
             FROM pick WHERE l.mailbox=pick.mailbox
             RETURNING l.mailbox, pick.previous",
            later(3)
        ),
        &[&worker, &mailboxes, &ttl],
    )?;
    if let Some(row) = picked {
        let previous: Option<String> = row.get(1);
        return Ok(Acquired::Lease {
            mailbox: row.get(0),
            taken_over_from: previous.filter(|p| p != worker),
        });
    }
    let pending: bool = c
        .query_one(
            "SELECT EXISTS(SELECT 1 FROM leases l WHERE l.mailbox = ANY($2)
               AND (l.done_at IS NULL OR l.done_at <
                    COALESCE((SELECT round FROM workers WHERE worker=$1), now())))",
            &[&worker, &mailboxes],
        )?
        .get(0);
    Ok(if pending {
        Acquired::Wait
    } else {
        Acquired::Done
    })
}

pub(super) fn heartbeat(
    c: &mut Client,
    worker: &str,
    progress: &[(String, u64)],
    ttl: i64,
) -> Result<Vec<String>, postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute(
        &format!(
            "UPDATE workers SET heartbeat=now(), expires_at={} WHERE worker=$1 AND finished IS NULL",
            later(2)
        ),
        &[&worker, &ttl],
    )?;
    let mailboxes: Vec<&str> = progress.iter().map(|(m, _)| m.as_str()).collect();
    let counts: Vec<i64> = progress.iter().map(|(_, n)| *n as i64).collect();
    let renewed: Vec<String> = tx
        .query(
            &format!(
                "UPDATE leases l SET heartbeat=now(), expires_at={}, messages=p.n
                 FROM unnest($2::text[], $4::bigint[]) AS p(m, n)
                 WHERE l.mailbox=p.m AND l.worker=$1
                 RETURNING l.mailbox",
                later(3)
            ),
            &[&worker, &mailboxes, &ttl, &counts],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.commit()?;
    Ok(progress
        .iter()
        .map(|(m, _)| m)
        .filter(|m| !renewed.contains(m))
        .cloned()
        .collect())
}

pub(super) fn release(
    c: &mut Client,
    worker: &str,
    mailbox: &str,
    done: bool,
) -> Result<(), postgres::Error> {
    c.execute(
        "UPDATE leases SET worker=NULL, expires_at=NULL,
           done_at=CASE WHEN $3 THEN now() ELSE done_at END
         WHERE mailbox=$1 AND worker=$2",
        &[&mailbox, &worker, &done],
    )?;
    Ok(())
}

pub(super) fn finish(c: &mut Client, worker: &str) -> Result<(), postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute(
        "UPDATE leases SET worker=NULL, expires_at=NULL WHERE worker=$1",
        &[&worker],
    )?;
    tx.execute(
        "UPDATE workers SET finished=now(), heartbeat=now() WHERE worker=$1",
        &[&worker],
    )?;
    tx.commit()
}

pub(super) fn workers(c: &mut Client) -> Result<Vec<WorkerRow>, postgres::Error> {
    let held: Vec<(String, LeaseRow)> = c
        .query(
            &format!(
                "SELECT worker, mailbox, {}, {}, messages, expires_at <= now() FROM leases
                 WHERE worker IS NOT NULL ORDER BY worker, mailbox",
                text("since"),
                text("heartbeat")
            ),
            &[],
        )?
        .iter()
        .map(|r| {
            (
                r.get(0),
                LeaseRow {
                    mailbox: r.get(1),
                    since: r.get(2),
                    heartbeat: r.get(3),
                    messages: r.get::<_, i64>(4).max(0) as u64,
                    expired: r.get(5),
                },
            )
        })
        .collect();
    let rows = c.query(
        &format!(
            "SELECT worker, {}, {}, {}, expires_at <= now() FROM workers ORDER BY worker",
            text("started"),
            text("heartbeat"),
            text("finished")
        ),
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| WorkerRow::assemble(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), &held))
        .collect())
}
