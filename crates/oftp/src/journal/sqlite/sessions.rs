//! Session trails and partner counters of the SQLite journal (see
//! [`history`](crate::journal::history)): tables `sessions`, `session_commands`,
//! `session_transfers` (which transfers a session moved), `partner_codes` (the configured name
//! a partner's SSID code logged in under, so received files, keyed by code, list under the
//! name) and `partner_totals` (the counters). Migration step "http-journal": new tables, and
//! the column `received_at` of `received` (when a reception first began: the history's sort
//! key), filled for rows of an earlier journal from their last change.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::SqliteJournal;
use super::queue::{immediate, ms};
use crate::journal::history::{
    PartnerCounters, SessionBatch, SessionCommand, SessionEnd, SessionRole, SessionStart,
    SessionTrail,
};
use crate::journal::{Direction, JournalError};

/// The tables and indexes (times in milliseconds since the epoch; AUTOINCREMENT so an id is
/// never reused after pruning). The indexes serve: a transfer's sessions; a session's commands
/// in order; pruning by end time; the history's walk over received files (all, and by
/// partner) newest first.
pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partner TEXT NOT NULL,
    partner_code TEXT NOT NULL,
    role TEXT NOT NULL,
    remote TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    result TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_end ON sessions (ended_at, started_at);
CREATE TABLE IF NOT EXISTS session_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    at INTEGER NOT NULL,
    direction TEXT NOT NULL,
    command TEXT NOT NULL,
    description TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS session_commands_by_session ON session_commands (session_id, id);
CREATE TABLE IF NOT EXISTS session_transfers (
    direction TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    octets INTEGER NOT NULL,
    done INTEGER NOT NULL,
    PRIMARY KEY (direction, row_id, session_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_transfers_by_session ON session_transfers (session_id);
CREATE TABLE IF NOT EXISTS partner_codes (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS partner_codes_by_name ON partner_codes (name);
CREATE TABLE IF NOT EXISTS partner_totals (
    partner TEXT NOT NULL,
    direction TEXT NOT NULL,
    files INTEGER NOT NULL,
    octets INTEGER NOT NULL,
    PRIMARY KEY (partner, direction)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_by_time ON queue (queued_at, id);
CREATE INDEX IF NOT EXISTS queue_by_partner_time ON queue (partner, queued_at, id);
CREATE INDEX IF NOT EXISTS queue_by_state_time ON queue (state, queued_at, id);
";

/// Adds `received.received_at` to a journal without it (filled from each row's last change)
/// and creates the tables above. Idempotent.
pub(super) fn prepare(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has_column: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('received') WHERE name = 'received_at'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_column {
        // A new journal gets the column here too; only an earlier version's is worth a word.
        let earlier: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM received)", [], |r| r.get(0))?;
        if earlier {
            tracing::info!("journal: adding the reception time to received files");
        }
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(
            "ALTER TABLE received ADD COLUMN received_at INTEGER;
             UPDATE received SET received_at =
                 COALESCE(CAST(unixepoch(updated_at, 'subsec') * 1000 AS INTEGER), 0);",
        )?;
        tx.commit()?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS received_by_time ON received (received_at, id);
         CREATE INDEX IF NOT EXISTS received_by_partner_time
             ON received (partner, received_at, id);",
    )?;
    conn.execute_batch(TABLES)
}

/// The stored name of a direction of commands and transfers.
pub(super) fn way(d: Direction) -> &'static str {
    match d {
        Direction::Received => "in",
        Direction::Sent => "out",
    }
}

fn parse_way(s: &str) -> Option<Direction> {
    match s {
        "in" => Some(Direction::Received),
        "out" => Some(Direction::Sent),
        _ => None,
    }
}

impl SqliteJournal {
    pub(super) fn sessions_record(&self, b: &SessionBatch) -> Result<i64, JournalError> {
        let conn = self.lock();
        let run = || -> rusqlite::Result<i64> {
            let tx = immediate(&conn)?;
            let s = &b.start;
            let (partner, code) = (s.partner.trim_end(), s.partner_code.trim_end());
            let id = match b.session {
                Some(id) => {
                    tx.execute(
                        "UPDATE sessions SET partner = ?2, partner_code = ?3 WHERE id = ?1",
                        params![id, partner, code],
                    )?;
                    id
                }
                None => tx.query_row(
                    "INSERT INTO sessions (partner, partner_code, role, remote, started_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    params![partner, code, s.role.as_str(), s.remote, ms(s.started_at)],
                    |r| r.get(0),
                )?,
            };
            if !partner.is_empty() && !code.is_empty() {
                tx.execute(
                    "INSERT INTO partner_codes (code, name) VALUES (?1, ?2)
                     ON CONFLICT (code) DO UPDATE SET name = excluded.name",
                    params![code, partner],
                )?;
            }
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO session_commands (session_id, at, direction, command,
                                                   description)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for c in &b.commands {
                    insert.execute(params![
                        id,
                        ms(c.at),
                        way(c.direction),
                        c.command,
                        c.description
                    ])?;
                }
            }
            let counted = if partner.is_empty() { code } else { partner };
            for t in &b.transfers {
                let octets = i64::try_from(t.octets).unwrap_or(i64::MAX);
                if let Some(row) = t.row {
                    // Only a row that still exists: a reception dropped meanwhile may have
                    // given its id to another file.
                    let table = match t.direction {
                        Direction::Received => "received",
                        Direction::Sent => "queue",
                    };
                    tx.execute(
                        &format!(
                            "INSERT INTO session_transfers (direction, row_id, session_id, octets,
                                                            done)
                             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM {table}
                                                                    WHERE id = ?2)
                             ON CONFLICT DO UPDATE SET octets = octets + excluded.octets,
                                 done = max(done, excluded.done)"
                        ),
                        params![way(t.direction), row, id, octets, t.done],
                    )?;
                }
                tx.execute(
                    "INSERT INTO partner_totals (partner, direction, files, octets)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO UPDATE SET files = files + excluded.files,
                         octets = octets + excluded.octets",
                    params![counted, way(t.direction), i64::from(t.done), octets],
                )?;
            }
            if let Some(end) = &b.end {
                tx.execute(
                    "UPDATE sessions SET ended_at = ?2, result = ?3 WHERE id = ?1",
                    params![id, ms(end.at), end.result],
                )?;
            }
            tx.commit()?;
            Ok(id)
        };
        run().map_err(|e| self.err(e))
    }

    pub(super) fn sessions_of_transfer(
        &self,
        direction: Direction,
        row: i64,
    ) -> Result<Vec<SessionTrail>, JournalError> {
        type SessionRow = (i64, [String; 4], i64, Option<i64>, Option<String>);
        let conn = self.lock();
        let sessions: Vec<SessionRow> = self.select_rows(
            &conn,
            "SELECT s.id, s.partner, s.partner_code, s.role, s.remote, s.started_at, s.ended_at,
                    s.result
             FROM session_transfers t JOIN sessions s ON s.id = t.session_id
             WHERE t.direction = ?1 AND t.row_id = ?2 ORDER BY s.started_at, s.id",
            params![way(direction), row],
            |r| {
                Ok((
                    r.get(0)?,
                    [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
            Ok,
        )?;
        let mut out = Vec::with_capacity(sessions.len());
        for (id, [partner, partner_code, role, remote], started, ended, result) in sessions {
            let commands = self.select_rows(
                &conn,
                "SELECT at, direction, command, description FROM session_commands
                 WHERE session_id = ?1 ORDER BY id",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                    ))
                },
                |(at, dir, command, description)| {
                    Ok(SessionCommand {
                        at: self.time(at)?,
                        direction: parse_way(&dir).ok_or_else(|| {
                            self.corrupt(format!("session {id}: unknown direction {dir:?}"))
                        })?,
                        command,
                        description,
                    })
                },
            )?;
            let end = match ended {
                Some(at) => Some(SessionEnd {
                    at: self.time(at)?,
                    result: result.unwrap_or_default(),
                }),
                None => None,
            };
            out.push(SessionTrail {
                id,
                start: SessionStart {
                    partner,
                    partner_code,
                    role: SessionRole::parse(&role).ok_or_else(|| {
                        self.corrupt(format!("session {id}: unknown role {role:?}"))
                    })?,
                    remote,
                    started_at: self.time(started)?,
                },
                end,
                commands,
            });
        }
        Ok(out)
    }

    pub(super) fn sessions_partner_counters(&self) -> Result<Vec<PartnerCounters>, JournalError> {
        let conn = self.lock();
        let rows = self.select_rows(
            &conn,
            "SELECT partner, direction, files, octets FROM partner_totals ORDER BY partner",
            [],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
            Ok,
        )?;
        let mut out: Vec<PartnerCounters> = Vec::new();
        for (partner, dir, files, octets) in rows {
            if out.last().is_none_or(|c| c.partner != partner) {
                out.push(PartnerCounters {
                    partner: partner.clone(),
                    ..PartnerCounters::default()
                });
            }
            let c = out.last_mut().expect("pushed above");
            let (files, octets) = (files.max(0) as u64, octets.max(0) as u64);
            match parse_way(&dir) {
                Some(Direction::Sent) => (c.files_sent, c.octets_sent) = (files, octets),
                Some(Direction::Received) => {
                    (c.files_received, c.octets_received) = (files, octets)
                }
                None => return Err(self.corrupt(format!("partner {partner}: direction {dir:?}"))),
            }
        }
        Ok(out)
    }
}

/// Deletes, in `tx`, the sessions that ended before `cutoff` (or never ended and started
/// before it) with their commands and transfer links; returns how many sessions.
pub(super) fn prune(tx: &Connection, cutoff: DateTime<Utc>) -> rusqlite::Result<u64> {
    const OLD: &str = "SELECT id FROM sessions WHERE ended_at < ?1
                       OR (ended_at IS NULL AND started_at < ?1)";
    let cut = ms(cutoff);
    tx.execute(
        &format!("DELETE FROM session_commands WHERE session_id IN ({OLD})"),
        [cut],
    )?;
    tx.execute(
        &format!("DELETE FROM session_transfers WHERE session_id IN ({OLD})"),
        [cut],
    )?;
    Ok(tx.execute(&format!("DELETE FROM sessions WHERE id IN ({OLD})"), [cut])? as u64)
}
