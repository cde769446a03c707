//! The history listing of the SQLite journal over both directions (see
//! [`history`](crate::journal::history)): one query per direction, each walking its index on
//! (creation time, id) backwards from the cursor and stopping after `limit + 1` rows
//! (`queue_by_time`, `queue_by_partner_time`, `queue_by_state_time`, `received_by_time`,
//! `received_by_partner_time`), merged by the sort key. The first page over 100,000 rows reads
//! at most `2 × (limit + 1)` rows of them (checked with `EXPLAIN QUERY PLAN` in the tests).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::SqliteJournal;
use super::queue::ms;
use crate::journal::history::{
    HistoryEntry, HistoryPage, HistoryPosition, HistoryQuery, HistoryState, InboundFile,
    InboundState,
};
use crate::journal::{Direction, JournalError};
use crate::stamp::{FileStamp, FileStampExt};

/// The columns of an inbound row, in the order [`SqliteJournal::inbound_row`] reads them.
const INBOUND_COLUMNS: &str = "r.id, r.partner, COALESCE(pc.name, r.partner), r.originator, \
    r.dsn, r.stamp, r.state, r.end_response_sent, r.end_response_deferred, r.final_path, \
    r.received_at, r.updated_at";

const INBOUND_FROM: &str = "FROM received r LEFT JOIN partner_codes pc ON pc.code = r.partner";

/// The condition of an inbound state on `received r`.
fn inbound_state_sql(s: InboundState) -> &'static str {
    match s {
        InboundState::Receiving => "r.state = 'receiving'",
        InboundState::Received => {
            "r.state = 'complete' AND r.end_response_sent = 0 AND r.end_response_deferred = 0"
        }
        InboundState::Held => {
            "r.state = 'complete' AND r.end_response_sent = 0 AND r.end_response_deferred = 1"
        }
        InboundState::EndResponseSent => "r.state = 'complete' AND r.end_response_sent = 1",
    }
}

/// A WHERE clause under construction with its numbered parameters.
#[derive(Default)]
struct Where {
    sql: String,
    args: Vec<Value>,
}

impl Where {
    fn and(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.sql.push_str(if self.sql.is_empty() {
            "WHERE "
        } else {
            " AND "
        });
        let mut values = values.into_iter();
        for (i, part) in clause.split('?').enumerate() {
            if i > 0 {
                self.args
                    .push(values.next().expect("a value for each placeholder"));
                self.sql.push_str(&format!("?{}", self.args.len()));
            }
            self.sql.push_str(part);
        }
    }
}

/// The row-value bound of the rows of `direction` below `after` (see the module doc of
/// [`history`](crate::journal::history)): same direction, below its id; the direction sorted
/// below the cursor's, at its time too; the one above, only before its time.
fn below(after: &HistoryPosition, direction: Direction) -> (i64, i64) {
    let rank = |d| match d {
        Direction::Received => 0,
        Direction::Sent => 1,
    };
    let id = match rank(direction).cmp(&rank(after.direction)) {
        std::cmp::Ordering::Equal => after.id,
        std::cmp::Ordering::Less => i64::MAX,
        std::cmp::Ordering::Greater => i64::MIN,
    };
    (ms(after.at), id)
}

/// The query of the outbound rows of `q` (after `FROM queue`), fetching `fetch` rows.
pub(super) fn outbound_query(q: &HistoryQuery, fetch: i64) -> (String, Vec<Value>) {
    let mut w = Where::default();
    if let Some(p) = &q.partner {
        w.and("partner = ?", [Value::Text(p.trim_end().to_owned())]);
    }
    if let Some(HistoryState::Out(s)) = q.state {
        w.and("state = ?", [Value::Text(s.as_str().to_owned())]);
    }
    if let Some(t) = q.since {
        w.and("updated_at >= ?", [Value::Integer(ms(t))]);
    }
    if let Some(t) = q.until {
        w.and("updated_at < ?", [Value::Integer(ms(t))]);
    }
    if let Some(id) = q.before_id {
        w.and("id < ?", [Value::Integer(id)]);
    }
    if let Some(after) = &q.after {
        let (t, id) = below(after, Direction::Sent);
        w.and("(queued_at, id) < (?, ?)", [t, id].map(Value::Integer));
    }
    w.args.push(Value::Integer(fetch));
    let sql = format!(
        "{} ORDER BY queued_at DESC, id DESC LIMIT ?{}",
        w.sql,
        w.args.len()
    );
    (sql, w.args)
}

/// The query of the inbound rows of `q` whose partner is one of `codes` (if given), fetching
/// `fetch` rows: a whole SELECT.
pub(super) fn inbound_query(
    q: &HistoryQuery,
    codes: Option<&[String]>,
    fetch: i64,
) -> (String, Vec<Value>) {
    let mut w = Where::default();
    if let Some(codes) = codes {
        let marks = vec!["?"; codes.len()].join(", ");
        w.and(
            &format!("r.partner IN ({marks})"),
            codes.iter().map(|c| Value::Text(c.clone())),
        );
    }
    if let Some(HistoryState::In(s)) = q.state {
        w.and(inbound_state_sql(s), []);
    }
    let changed = "CAST(unixepoch(r.updated_at, 'subsec') * 1000 AS INTEGER)";
    if let Some(t) = q.since {
        w.and(&format!("{changed} >= ?"), [Value::Integer(ms(t))]);
    }
    if let Some(t) = q.until {
        w.and(&format!("{changed} < ?"), [Value::Integer(ms(t))]);
    }
    if let Some(after) = &q.after {
        let (t, id) = below(after, Direction::Received);
        w.and(
            "(r.received_at, r.id) < (?, ?)",
            [t, id].map(Value::Integer),
        );
    }
    w.args.push(Value::Integer(fetch));
    let sql = format!(
        "SELECT {INBOUND_COLUMNS} {INBOUND_FROM} {} ORDER BY r.received_at DESC, r.id DESC \
         LIMIT ?{}",
        w.sql,
        w.args.len()
    );
    (sql, w.args)
}

type InboundRow = (i64, [String; 6], [bool; 2], String, i64, String);

fn read_inbound(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboundRow> {
    Ok((
        r.get(0)?,
        [
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        ],
        [r.get(7)?, r.get(8)?],
        r.get(9)?,
        r.get::<_, Option<i64>>(10)?.unwrap_or(0),
        r.get(11)?,
    ))
}

impl SqliteJournal {
    fn inbound_row(&self, row: InboundRow) -> Result<InboundFile, JournalError> {
        let (id, [code, partner, originator, dsn, stamp, state], [sent, deferred], path, at, up) =
            row;
        let stamp = FileStamp::parse(&stamp).map_err(|e| self.corrupt(e.to_string()))?;
        let state = match (state.as_str(), sent, deferred) {
            ("receiving", _, _) => InboundState::Receiving,
            ("complete", true, _) => InboundState::EndResponseSent,
            ("complete", false, true) => InboundState::Held,
            ("complete", false, false) => InboundState::Received,
            (other, _, _) => {
                return Err(self.corrupt(format!("received {id}: unknown state {other:?}")));
            }
        };
        let received_at = self.time(at)?;
        // Journals of early versions may hold a time that is no RFC 3339 text: the row is
        // listed with its reception time rather than failing the whole listing.
        let updated_at =
            chrono::DateTime::parse_from_rfc3339(&up).map_or(received_at, |t| t.to_utc());
        Ok(InboundFile {
            id,
            partner,
            partner_code: code,
            key: self.file_key(&originator, &dsn, stamp)?,
            state,
            final_path: path,
            received_at,
            updated_at,
        })
    }

    /// The SSID codes the partner `name` logged in with; the name itself if none is recorded
    /// (a filter by code).
    fn codes_of(&self, conn: &Connection, name: &str) -> Result<Vec<String>, JournalError> {
        let name = name.trim_end();
        let codes = self.select_rows(
            conn,
            "SELECT code FROM partner_codes WHERE name = ?1",
            [name],
            |r| r.get::<_, String>(0),
            Ok,
        )?;
        Ok(if codes.is_empty() {
            vec![name.to_owned()]
        } else {
            codes
        })
    }

    pub(super) fn history_page(&self, q: &HistoryQuery) -> Result<HistoryPage, JournalError> {
        let limit = q.limit as usize;
        let fetch = i64::from(q.limit) + 1;
        let wants = |d: Direction| {
            q.direction.is_none_or(|x| x == d)
                && !matches!(
                    (q.state, d),
                    (Some(HistoryState::Out(_)), Direction::Received)
                        | (Some(HistoryState::In(_)), Direction::Sent)
                )
        };
        let conn = self.lock();
        let mut entries = Vec::new();
        if wants(Direction::Sent) {
            let (tail, args) = outbound_query(q, fetch);
            let rows = self.select_queue(&conn, &tail, rusqlite::params_from_iter(args))?;
            entries.extend(rows.into_iter().map(HistoryEntry::Out));
        }
        if wants(Direction::Received) && q.before_id.is_none() {
            let codes = match &q.partner {
                Some(name) => Some(self.codes_of(&conn, name)?),
                None => None,
            };
            let (sql, args) = inbound_query(q, codes.as_deref(), fetch);
            let rows = self.select_rows(
                &conn,
                &sql,
                rusqlite::params_from_iter(args),
                read_inbound,
                |row| self.inbound_row(row),
            )?;
            entries.extend(rows.into_iter().map(HistoryEntry::In));
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.position().order()));
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = if more {
            entries.last().map(HistoryEntry::position)
        } else {
            None
        };
        Ok(HistoryPage { entries, next })
    }

    pub(super) fn history_inbound(&self, id: i64) -> Result<Option<InboundFile>, JournalError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                &format!("SELECT {INBOUND_COLUMNS} {INBOUND_FROM} WHERE r.id = ?1"),
                [id],
                read_inbound,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|r| self.inbound_row(r)).transpose()
    }
}
