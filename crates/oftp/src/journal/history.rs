//! What the operator reads about past and present work (issue #12): one listing of the files
//! of both directions with a cursor ([`HistoryQuery`], [`HistoryPage`]), the sessions that
//! moved them with every OFTP command as the PI trail reported it ([`SessionTrail`]), and
//! counters per partner ([`PartnerCounters`]).
//!
//! **The listing.** Outbound rows are the queue's ([`QueuedFile`], ids as `oftp transfer retry
//! ID` takes them); inbound rows are the received files ([`InboundFile`], ids of their own
//! space: a received file and a queue row may have the same number, so a front end names an
//! inbound row with its direction, e.g. `in-42`). Both are ordered by one key that never
//! changes once a row exists: the time it was created (enqueued; its reception first begun),
//! then the direction (outbound first), then the id, newest first. The cursor
//! ([`HistoryPosition`]) is the key of the last row of a page, and the next page is every row
//! strictly below it; so a row inserted during a walk (it is newer, above the cursor) never
//! makes another row appear twice or vanish, and a row changing state does not move.
//!
//! **Session trails.** A connection records its session ([`SessionBatch`]): who (the
//! configured partner name and its SSID code), our role, when it started and ended and how,
//! the commands exchanged (never DATA buffers one by one: one summary line per file and
//! direction), and which transfers it moved with how many octets of file data. The runtime
//! writes a batch at login, every [`SESSION_BATCH`] commands and at the end, never per
//! buffer. Descriptions are the codec's summaries, which never hold a password.
//!
//! **Counters** are kept per partner over all time (since the journal first recorded a
//! session): files whose EFPA was exchanged and octets of file data carried in DATA (before
//! OFTP compression; restarted files count what each attempt carried). They are totals,
//! not derived from the trails, so pruning history does not lower them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::queue::{QueueState, QueuedFile};
use super::{Direction, FileKey};

/// Commands a connection keeps in memory before writing them (and at login and at the end).
pub const SESSION_BATCH: usize = 256;

/// Where a received file is, as the history lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboundState {
    /// Data is arriving, or the reception was cut and waits for a restart.
    Receiving,
    /// Stored (EFPA sent); its end response has not gone out yet.
    Received,
    /// Stored; its end response is held (by the application or until post-processing).
    Held,
    /// Stored and its EERP (or NERP) went out.
    EndResponseSent,
}

impl InboundState {
    /// Every state.
    pub const ALL: [Self; 4] = [
        Self::Receiving,
        Self::Received,
        Self::Held,
        Self::EndResponseSent,
    ];

    /// The displayed (and filtered) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receiving => "receiving",
            Self::Received => "received",
            Self::Held => "held",
            Self::EndResponseSent => "end_response_sent",
        }
    }

    /// The state of a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// A state filter of the history: a queue state (outbound rows) or an inbound state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryState {
    /// Outbound rows in this state.
    Out(QueueState),
    /// Inbound rows in this state.
    In(InboundState),
}

impl HistoryState {
    /// The state of a name: queue states first, then inbound ones (no name is both).
    pub fn parse(s: &str) -> Option<Self> {
        QueueState::parse(s)
            .map(Self::Out)
            .or_else(|| InboundState::parse(s).map(Self::In))
    }

    /// Every name, outbound states first.
    pub fn names() -> Vec<&'static str> {
        QueueState::ALL
            .map(QueueState::as_str)
            .into_iter()
            .chain(InboundState::ALL.map(InboundState::as_str))
            .collect()
    }
}

/// The sort key of a history row, and the cursor of a page (the key of its last row).
///
/// Its text form (`out-<ms>-<id>` or `in-<ms>-<id>`) is what front ends hand out as an opaque
/// cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryPosition {
    /// When the row was created (milliseconds are kept).
    pub at: DateTime<Utc>,
    /// Its direction.
    pub direction: Direction,
    /// Its id in that direction.
    pub id: i64,
}

impl HistoryPosition {
    /// The key as an ordered tuple: time, then outbound before inbound, then id.
    pub fn order(&self) -> (i64, u8, i64) {
        let rank = match self.direction {
            Direction::Received => 0,
            Direction::Sent => 1,
        };
        (self.at.timestamp_millis(), rank, self.id)
    }
}

impl fmt::Display for HistoryPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Direction::Received => "in",
            Direction::Sent => "out",
        };
        write!(f, "{dir}-{}-{}", self.at.timestamp_millis(), self.id)
    }
}

/// A cursor that is not one this journal handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor {0:?}: pass the next_cursor of the previous page unchanged")]
pub struct BadCursor(pub String);

impl FromStr for HistoryPosition {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadCursor(s.to_owned());
        let mut parts = s.splitn(3, '-');
        let direction = match parts.next() {
            Some("in") => Direction::Received,
            Some("out") => Direction::Sent,
            _ => return Err(bad()),
        };
        let ms: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let id: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let at = DateTime::from_timestamp_millis(ms).ok_or_else(bad)?;
        Ok(Self { at, direction, id })
    }
}

/// Which rows [`transfer_page`](super::Journal::transfer_page) lists: all given filters must
/// match; newest first (see the module doc), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only this partner's (its configured name; inbound rows also match by SSID code).
    pub partner: Option<String>,
    /// Only this direction.
    pub direction: Option<Direction>,
    /// Only rows in this state (an outbound state lists no inbound rows, and the other way).
    pub state: Option<HistoryState>,
    /// Only rows that last changed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows that last changed before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only rows after this one (the previous page's last row).
    pub after: Option<HistoryPosition>,
    /// Only outbound rows with a smaller id (the paging of `oftp transfers --before`).
    pub before_id: Option<i64>,
    /// At most this many rows.
    pub limit: u32,
}

impl Default for HistoryQuery {
    fn default() -> Self {
        Self {
            partner: None,
            direction: None,
            state: None,
            since: None,
            until: None,
            after: None,
            before_id: None,
            limit: 100,
        }
    }
}

/// A received file as the history lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundFile {
    /// Its id among received files.
    pub id: i64,
    /// The partner's configured name as its sessions recorded it, else its SSID code.
    pub partner: String,
    /// The partner's SSID code (the journal's key of receptions).
    pub partner_code: String,
    /// Originator, virtual file name and stamp.
    pub key: FileKey,
    /// Where it is.
    pub state: InboundState,
    /// Where it is stored (once complete) or will be.
    pub final_path: String,
    /// When its reception first began.
    pub received_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One row of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryEntry {
    /// A queue row.
    Out(QueuedFile),
    /// A received file.
    In(InboundFile),
}

impl HistoryEntry {
    /// Its sort key.
    pub fn position(&self) -> HistoryPosition {
        match self {
            Self::Out(f) => HistoryPosition {
                at: f.queued_at,
                direction: Direction::Sent,
                id: f.id,
            },
            Self::In(f) => HistoryPosition {
                at: f.received_at,
                direction: Direction::Received,
                id: f.id,
            },
        }
    }
}

/// A page of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The rows, newest first.
    pub entries: Vec<HistoryEntry>,
    /// The cursor of the next page; `None` when this is the last.
    pub next: Option<HistoryPosition>,
}

/// Our role in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionRole {
    /// We called.
    Initiator,
    /// The partner called us.
    Responder,
}

impl SessionRole {
    /// The stored (and displayed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiator => "initiator",
            Self::Responder => "responder",
        }
    }

    /// The role of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Initiator, Self::Responder]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Who a session was with and how it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStart {
    /// The configured partner name (empty while it has not logged in).
    pub partner: String,
    /// The SSID code it presented (empty before its SSID).
    pub partner_code: String,
    /// Our role.
    pub role: SessionRole,
    /// The partner's network address.
    pub remote: String,
    /// When the connection began.
    pub started_at: DateTime<Utc>,
}

/// One command of a session, as the PI trail reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCommand {
    /// When.
    pub at: DateTime<Utc>,
    /// [`Direction::Received`]: from the partner; [`Direction::Sent`]: by us.
    pub direction: Direction,
    /// The command's name (`SSID`, `SFID`, ...; `DATA` for a summary of a file's data).
    pub command: String,
    /// Its main fields, for a person; never a password.
    pub description: String,
}

/// A transfer a session moved (in part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTransfer {
    /// Sent (a queue row, or a file of no queue) or received (a received file).
    pub direction: Direction,
    /// The queue row or received file; `None` for a sent file of no queue (it only counts).
    pub row: Option<i64>,
    /// Octets of file data carried in DATA in this session.
    pub octets: u64,
    /// Whether its EFPA was exchanged in this session (it counts as a file).
    pub done: bool,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// When.
    pub at: DateTime<Utc>,
    /// How, for a person ("OK", "connection closed", "invalid password (ESID 04)").
    pub result: String,
}

/// What [`record_session`](super::Journal::record_session) writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBatch {
    /// The session's id from an earlier batch; `None` for its first.
    pub session: Option<i64>,
    /// Who and how it started (replaces what an earlier batch said: the partner is known
    /// only after login).
    pub start: SessionStart,
    /// Commands since the last batch, oldest first.
    pub commands: Vec<SessionCommand>,
    /// Transfers finished (or cut) since the last batch.
    pub transfers: Vec<SessionTransfer>,
    /// Set in the last batch.
    pub end: Option<SessionEnd>,
}

/// A recorded session with its commands, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTrail {
    /// Its id.
    pub id: i64,
    /// Who and how it started.
    pub start: SessionStart,
    /// How it ended; `None` while it runs (or if the process died in it).
    pub end: Option<SessionEnd>,
    /// Every command recorded, oldest first.
    pub commands: Vec<SessionCommand>,
}

/// Files and octets of file data sent to and received from one partner, over all time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartnerCounters {
    /// The configured partner name (its SSID code if it never logged in under a name).
    pub partner: String,
    /// Files it confirmed with EFPA.
    pub files_sent: u64,
    /// Octets of file data we sent it.
    pub octets_sent: u64,
    /// Files we confirmed with EFPA.
    pub files_received: u64,
    /// Octets of file data it sent us.
    pub octets_received: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_the_position_it_was_made_of() {
        for direction in [Direction::Sent, Direction::Received] {
            let p = HistoryPosition {
                at: DateTime::from_timestamp_millis(1_765_000_000_123).unwrap(),
                direction,
                id: 42,
            };
            assert_eq!(p.to_string().parse::<HistoryPosition>(), Ok(p));
        }
        for bad in [
            "",
            "out",
            "out-1",
            "up-1-2",
            "in-x-2",
            "in-1-",
            "in-99999999999999999-1",
        ] {
            let e = bad.parse::<HistoryPosition>().unwrap_err();
            assert!(e.to_string().contains("next_cursor"), "{bad}: {e}");
        }
    }

    #[test]
    fn outbound_sorts_above_inbound_of_the_same_millisecond() {
        let at = DateTime::from_timestamp_millis(5).unwrap();
        let out = HistoryPosition {
            at,
            direction: Direction::Sent,
            id: 1,
        };
        let inb = HistoryPosition {
            at,
            direction: Direction::Received,
            id: 9,
        };
        assert!(out.order() > inb.order());
    }

    #[test]
    fn no_state_name_is_both_an_outbound_and_an_inbound_state() {
        for s in InboundState::ALL {
            assert_eq!(QueueState::parse(s.as_str()), None, "{}", s.as_str());
            assert_eq!(HistoryState::parse(s.as_str()), Some(HistoryState::In(s)));
        }
        assert_eq!(
            HistoryState::parse("queued"),
            Some(HistoryState::Out(QueueState::Queued))
        );
        assert_eq!(HistoryState::parse("lost"), None);
    }
}
