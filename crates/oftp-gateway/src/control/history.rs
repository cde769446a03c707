//! The views of the operator's history (issue #12) that every front end shows: a page of
//! transfers of both directions with its cursor ([`TransferPage`]), the id that names a
//! transfer of either direction ([`TransferId`]), the sessions that moved a transfer with
//! their commands ([`SessionView`]) and the counters of a partner ([`PartnerCountersView`]).
//!
//! Ids: an outbound transfer keeps its queue row id (`42`, what `oftp transfer retry 42`
//! takes); a received file is `in-42` (its own id space: the two kinds of rows are numbered
//! apart, so the number alone would be ambiguous). A view carries both the plain `id`, its
//! `direction` and the `transfer_id` text a front end puts in a path.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use oftp::journal::{Direction, InboundFile, PartnerCounters, SessionCommand, SessionTrail};
use serde::{Deserialize, Serialize};

use super::operations::{OpsError, TransferView};

/// A transfer of either direction, as a path names it: `42` (outbound) or `in-42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferId {
    /// A queue row.
    Out(i64),
    /// A received file.
    In(i64),
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Out(id) => write!(f, "{id}"),
            Self::In(id) => write!(f, "in-{id}"),
        }
    }
}

impl FromStr for TransferId {
    type Err = OpsError;

    fn from_str(s: &str) -> Result<Self, OpsError> {
        let bad = || OpsError::BadTransferId(s.to_owned());
        match s.strip_prefix("in-") {
            Some(n) => n.parse().map(Self::In).map_err(|_| bad()),
            None => s
                .strip_prefix("out-")
                .unwrap_or(s)
                .parse()
                .map(Self::Out)
                .map_err(|_| bad()),
        }
    }
}

/// The name of a direction in views and queries.
pub(super) fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Received => "in",
        Direction::Sent => "out",
    }
}

/// The direction of a query's `direction`.
pub(super) fn parse_direction(s: &str) -> Result<Direction, OpsError> {
    match s {
        "in" => Ok(Direction::Received),
        "out" => Ok(Direction::Sent),
        other => Err(OpsError::UnknownDirection(other.to_owned())),
    }
}

/// A page of transfers, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferPage {
    /// The rows.
    pub items: Vec<TransferView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

impl From<&InboundFile> for TransferView {
    fn from(f: &InboundFile) -> Self {
        Self {
            id: f.id,
            direction: direction_name(Direction::Received).to_owned(),
            transfer_id: TransferId::In(f.id).to_string(),
            partner: f.partner.clone(),
            virtual_file_name: f.key.dsn.clone(),
            source_path: f.final_path.clone(),
            state: f.state.as_str().to_owned(),
            attempts: 0,
            last_error: None,
            queued_at: f.received_at,
            next_attempt_at: f.received_at,
            updated_at: f.updated_at,
        }
    }
}

/// One command of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandView {
    /// When.
    pub at: DateTime<Utc>,
    /// `in`: from the partner; `out`: by us.
    pub direction: String,
    /// The command's name (`SSID`, `SFID`, ...; `DATA` sums up a file's data).
    pub command: String,
    /// Its main fields (never a password).
    pub description: String,
}

impl From<&SessionCommand> for CommandView {
    fn from(c: &SessionCommand) -> Self {
        Self {
            at: c.at,
            direction: direction_name(c.direction).to_owned(),
            command: c.command.clone(),
            description: c.description.clone(),
        }
    }
}

/// A session that moved a transfer, with every command recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Its id.
    pub id: i64,
    /// Our role: `initiator` (we called) or `responder`.
    pub role: String,
    /// The partner's configured name.
    pub partner: String,
    /// The partner's network address.
    pub remote: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended (`null` while it runs, or if the daemon died in it).
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended ("OK", or the reason).
    pub result: Option<String>,
    /// Its commands, oldest first.
    pub commands: Vec<CommandView>,
}

impl From<&SessionTrail> for SessionView {
    fn from(s: &SessionTrail) -> Self {
        Self {
            id: s.id,
            role: s.start.role.as_str().to_owned(),
            partner: s.start.partner.clone(),
            remote: s.start.remote.clone(),
            started_at: s.start.started_at,
            ended_at: s.end.as_ref().map(|e| e.at),
            result: s.end.as_ref().map(|e| e.result.clone()),
            commands: s.commands.iter().map(CommandView::from).collect(),
        }
    }
}

/// Files and octets exchanged with a partner over all time (since the journal first recorded
/// a session): files whose EFPA was exchanged, octets of file data carried in DATA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartnerCountersView {
    /// The configured partner name.
    pub partner: String,
    /// Files it confirmed.
    pub files_sent: u64,
    /// Octets we sent it.
    pub bytes_sent: u64,
    /// Files we confirmed.
    pub files_received: u64,
    /// Octets it sent us.
    pub bytes_received: u64,
}

impl From<&PartnerCounters> for PartnerCountersView {
    fn from(c: &PartnerCounters) -> Self {
        Self {
            partner: c.partner.clone(),
            files_sent: c.files_sent,
            bytes_sent: c.octets_sent,
            files_received: c.files_received,
            bytes_received: c.octets_received,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_id_names_one_direction_and_reads_back() {
        for id in [TransferId::Out(42), TransferId::In(42)] {
            assert_eq!(id.to_string().parse::<TransferId>().unwrap(), id);
        }
        assert_eq!("out-7".parse::<TransferId>().unwrap(), TransferId::Out(7));
        for bad in ["", "in-", "in-x", "x", "up-3"] {
            let e = bad.parse::<TransferId>().unwrap_err();
            assert_eq!(e.code(), "bad_transfer_id", "{bad}");
        }
    }
}
