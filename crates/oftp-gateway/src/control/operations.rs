//! The operator's operations over the journal and the running gateway, in ONE place: the local
//! control channel ([`super::server`]) serves them, and the HTTP API will serve the same. Each
//! operation returns a serde view type, so every front end shows the same fields under the
//! same names. The views derive `utoipa::ToSchema` (and [`TransferQuery`] `IntoParams`), so
//! the HTTP API's OpenAPI document is generated from these very types (always on: the gateway
//! is only ever built for `oftp serve`, which serves the document).
//!
//! What is recorded (queued files, their history, alerts, the queue's depth) is read from the
//! journal; what lives only in the running process (call state, calling now, waking a call
//! loop) comes from the [`GatewayRuntime`]. Without a runtime ([`Operations::offline`], the
//! commands reading the journal of a daemon that is not running) the read-only operations
//! work and the others say the daemon is not running.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use oftp::journal::{
    Alert, Direction, HistoryEntry, HistoryPosition, HistoryQuery, HistoryState, Journal,
    JournalError, QueuedFile, TransferDetail, Transition,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::history::{
    PartnerCountersView, SessionView, TransferId, TransferPage, direction_name, parse_direction,
};
use crate::ops::{CallNowError, GatewayRuntime, PartnerState};
use crate::runtime::Clock;

/// Rows a listing returns when no limit is given.
pub const DEFAULT_LIMIT: u32 = 50;
/// The most rows one listing returns (page on with `cursor`).
pub const MAX_LIMIT: u32 = 1000;

/// The operations of the control channel and the HTTP API.
#[derive(Clone)]
pub struct Operations {
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    daemon: Option<(Arc<dyn GatewayRuntime>, DaemonView)>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("daemon", &self.daemon.as_ref().map(|(_, d)| d))
            .finish_non_exhaustive()
    }
}

/// Why an operation was refused; [`code`](OpsError::code) is its name on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// No queue row with this id.
    #[error("no transfer {0}; `oftp transfers` lists them")]
    UnknownTransfer(i64),
    /// No received file with this id.
    #[error("no received file in-{0}; `oftp transfers --direction in` lists them")]
    UnknownReceived(i64),
    /// A transfer id that is none (`42` or `in-42`).
    #[error(
        "invalid transfer id {0:?}: a number (an outbound transfer) or in-NUMBER (a received file)"
    )]
    BadTransferId(String),
    /// A direction that is none.
    #[error("unknown direction {0:?}; directions are: in, out")]
    UnknownDirection(String),
    /// A cursor this daemon did not hand out.
    #[error("{0}")]
    BadCursor(String),
    /// The row's state does not allow the change (the journal's refusal).
    #[error("transfer {id}: {text}")]
    Refused {
        /// The queue row.
        id: i64,
        /// The journal's `TransitionRefused` text ("a delivered file cannot become queued").
        text: String,
    },
    /// No alert with this id.
    #[error("no alert {0}; `oftp alerts --all` lists them")]
    UnknownAlert(i64),
    /// A state name that is not one.
    #[error("unknown state {0:?}; states are: {states}", states = state_names())]
    UnknownState(String),
    /// A call cannot be started.
    #[error("{0}")]
    Call(CallNowError),
    /// The operation needs the running daemon.
    #[error("the daemon is not running; start it with `oftp serve` (or systemctl start oftp)")]
    NotRunning,
    /// The journal failed.
    #[error("{0}")]
    Journal(String),
}

impl OpsError {
    /// The error's name on the wire (`unknown_transfer`, `refused`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownTransfer(_) | Self::UnknownReceived(_) => "unknown_transfer",
            Self::BadTransferId(_) => "bad_transfer_id",
            Self::UnknownDirection(_) => "unknown_direction",
            Self::BadCursor(_) => "bad_cursor",
            Self::Refused { .. } => "refused",
            Self::UnknownAlert(_) => "unknown_alert",
            Self::UnknownState(_) => "unknown_state",
            Self::Call(CallNowError::UnknownPartner(_)) => "unknown_partner",
            Self::Call(CallNowError::NoAddress(_)) => "no_address",
            Self::Call(_) => "shutting_down",
            Self::NotRunning => "not_running",
            Self::Journal(_) => "journal",
        }
    }

    fn of_journal(id: i64, e: JournalError) -> Self {
        match e {
            JournalError::TransitionRefused { refused, .. } => Self::Refused {
                id,
                text: refused.to_string(),
            },
            e => Self::Journal(e.to_string()),
        }
    }
}

fn state_names() -> String {
    HistoryState::names().join(", ")
}

/// The daemon answering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DaemonView {
    /// Its process id.
    pub pid: u32,
    /// Its version.
    pub version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// `oftp status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    /// The daemon answering.
    pub daemon: DaemonView,
    /// Every configured partner's call state, in configuration order.
    pub partners: Vec<PartnerState>,
    /// Rows of the queue by state (states without rows left out).
    pub queue: Vec<QueueDepthView>,
    /// The alerts not acknowledged, oldest first.
    pub open_alerts: Vec<AlertView>,
}

/// How many queue rows are in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueDepthView {
    /// The state's stored name (`queued`, `in_transfer`, ...).
    pub state: String,
    /// Rows in it.
    pub count: u64,
}

/// Which transfers to list: all given filters must match; newest first (by when each was
/// enqueued or its reception began; that order never changes, so a cursor walk sees every row
/// once). The field names are the HTTP API's query-string names; the fields added for the
/// history (`direction`, `until`, `cursor`) are left out of the JSON when not set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TransferQuery {
    /// Only this partner's (its configured name).
    pub partner: Option<String>,
    /// Only rows in this state: an outbound state (`queued`, `failed`, ...) or an inbound one
    /// (`receiving`, `received`, `held`, `end_response_sent`).
    pub state: Option<String>,
    /// Only rows that changed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only outbound rows with a smaller id: the id of the last row of the previous page
    /// (`oftp transfers --before`; `cursor` pages both directions).
    pub before_id: Option<i64>,
    /// At most this many rows ([`DEFAULT_LIMIT`] if not given, at most [`MAX_LIMIT`]).
    pub limit: Option<u32>,
    /// Only `in` (received files) or `out` (the outbound queue); both if not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Only rows that changed before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl TransferQuery {
    /// The most rows this query returns: its `limit` (else [`DEFAULT_LIMIT`]), at most
    /// [`MAX_LIMIT`], at least 1. A page has a `next_cursor` when more rows follow.
    pub fn page_size(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    /// The journal's query of this one, checked.
    fn history(self) -> Result<HistoryQuery, OpsError> {
        let limit = self.page_size();
        let state = self
            .state
            .as_deref()
            .map(|s| HistoryState::parse(s).ok_or_else(|| OpsError::UnknownState(s.to_owned())))
            .transpose()?;
        Ok(HistoryQuery {
            direction: self.direction.as_deref().map(parse_direction).transpose()?,
            state,
            since: self.since,
            until: self.until,
            after: self
                .cursor
                .as_deref()
                .map(|c| {
                    c.parse::<HistoryPosition>()
                        .map_err(|e| OpsError::BadCursor(e.to_string()))
                })
                .transpose()?,
            before_id: self.before_id,
            partner: self.partner,
            limit,
        })
    }
}

/// A transfer: a queue row (outbound) or a received file (inbound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransferView {
    /// Row id in its direction (a queue row's is what `oftp transfer retry ID` takes).
    pub id: i64,
    /// `out` (the outbound queue) or `in` (a received file).
    pub direction: String,
    /// The id that names it in either direction: `42` or `in-42` (see [`TransferId`]).
    pub transfer_id: String,
    /// The partner it goes to or came from (its configured name; a received file of a
    /// partner never seen under a name: its SSID code).
    pub partner: String,
    /// SFIDDSN.
    pub virtual_file_name: String,
    /// The taken-over file (outbound); where the file is stored (inbound).
    pub source_path: String,
    /// The state's stored name.
    pub state: String,
    /// Calls that claimed it so far (0 for received files).
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// When it was enqueued (outbound); when its reception began (inbound).
    pub queued_at: DateTime<Utc>,
    /// When it is due (meaningful while queued; inbound: as `queued_at`).
    pub next_attempt_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&QueuedFile> for TransferView {
    fn from(f: &QueuedFile) -> Self {
        Self {
            id: f.id,
            direction: direction_name(Direction::Sent).to_owned(),
            transfer_id: TransferId::Out(f.id).to_string(),
            partner: f.send.partner.clone(),
            virtual_file_name: f.send.virtual_file_name.clone(),
            source_path: f.send.source_path.display().to_string(),
            state: f.state.as_str().to_owned(),
            attempts: f.attempts,
            last_error: f.last_error.clone(),
            queued_at: f.queued_at,
            next_attempt_at: f.next_attempt_at,
            updated_at: f.updated_at,
        }
    }
}

/// A transfer with every change of its state, oldest first, and the sessions that moved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransferDetailView {
    /// The row.
    #[serde(flatten)]
    pub transfer: TransferView,
    /// Its history, oldest first (the first is the enqueueing; empty for a received file).
    pub history: Vec<TransitionView>,
    /// The sessions that moved it, oldest first, each with every command the PI trail
    /// recorded (sessions older than `history_days` are pruned).
    #[serde(default)]
    pub sessions: Vec<SessionView>,
}

impl From<&TransferDetail> for TransferDetailView {
    fn from(d: &TransferDetail) -> Self {
        Self {
            transfer: TransferView::from(&d.file),
            history: d.history.iter().map(TransitionView::from).collect(),
            sessions: Vec::new(),
        }
    }
}

/// One change of state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    /// When.
    pub at: DateTime<Utc>,
    /// The state before (`None` for the enqueueing).
    pub from: Option<String>,
    /// The state after.
    pub to: String,
    /// Why, if anyone said.
    pub note: Option<String>,
}

impl From<&Transition> for TransitionView {
    fn from(t: &Transition) -> Self {
        Self {
            at: t.at,
            from: t.from.map(|s| s.as_str().to_owned()),
            to: t.to.as_str().to_owned(),
            note: t.note.clone(),
        }
    }
}

/// An alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    /// Row id.
    pub id: i64,
    /// Its kind's stored name (`file_failed`, `eerp_overdue`, ...).
    pub kind: String,
    /// The partner concerned.
    pub partner: Option<String>,
    /// The file concerned.
    pub file: Option<String>,
    /// What happened and what to do.
    pub text: String,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
    /// When a person acknowledged it (`None` = open).
    pub acknowledged_at: Option<DateTime<Utc>>,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        Self {
            id: a.id,
            kind: a.alert.kind.as_str().to_owned(),
            partner: a.alert.partner.clone(),
            file: a.alert.file.clone(),
            text: a.alert.text.clone(),
            raised_at: a.raised_at,
            acknowledged_at: a.acknowledged_at,
        }
    }
}

impl Operations {
    /// The operations of the running daemon: `runtime` is its gateway, started at
    /// `started_at`.
    pub fn new(
        journal: Arc<dyn Journal>,
        runtime: Arc<dyn GatewayRuntime>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let daemon = DaemonView {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: clock.now(),
        };
        Self {
            journal,
            clock,
            daemon: Some((runtime, daemon)),
        }
    }

    /// The read-only operations over the journal of a daemon that is not running.
    pub fn offline(journal: Arc<dyn Journal>, clock: Arc<dyn Clock>) -> Self {
        Self {
            journal,
            clock,
            daemon: None,
        }
    }

    fn runtime(&self) -> Result<&(Arc<dyn GatewayRuntime>, DaemonView), OpsError> {
        self.daemon.as_ref().ok_or(OpsError::NotRunning)
    }

    async fn journal<T, F>(&self, f: F) -> Result<T, OpsError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Journal) -> Result<T, JournalError> + Send + 'static,
    {
        self.journal
            .call(f)
            .await
            .map_err(|e| OpsError::Journal(e.to_string()))
    }

    /// The daemon, its partners, the queue's depth by state and the open alerts.
    pub async fn status(&self) -> Result<StatusView, OpsError> {
        let (runtime, daemon) = self.runtime()?;
        let (depth, open) = self
            .journal(|j| Ok((j.queue_depth()?, j.open_alerts()?)))
            .await?;
        Ok(StatusView {
            daemon: daemon.clone(),
            partners: runtime.partners(),
            queue: depth
                .into_iter()
                .map(|(state, count)| QueueDepthView {
                    state: state.as_str().to_owned(),
                    count,
                })
                .collect(),
            open_alerts: open.iter().map(AlertView::from).collect(),
        })
    }

    /// A page of the transfers of both directions that match `query`, newest first, with
    /// the cursor of the next.
    pub async fn transfer_page(&self, query: TransferQuery) -> Result<TransferPage, OpsError> {
        let query = query.history()?;
        let page = self.journal(move |j| j.transfer_page(&query)).await?;
        Ok(TransferPage {
            items: page
                .entries
                .iter()
                .map(|e| match e {
                    HistoryEntry::Out(f) => TransferView::from(f),
                    HistoryEntry::In(f) => TransferView::from(f),
                })
                .collect(),
            next_cursor: page.next.map(|p| p.to_string()),
        })
    }

    /// The rows of [`transfer_page`](Self::transfer_page), without the cursor.
    pub async fn transfers(&self, query: TransferQuery) -> Result<Vec<TransferView>, OpsError> {
        Ok(self.transfer_page(query).await?.items)
    }

    /// Queue row `id` with its history and the sessions that moved it.
    pub async fn transfer(&self, id: i64) -> Result<TransferDetailView, OpsError> {
        self.transfer_detail(TransferId::Out(id)).await
    }

    /// The transfer `id` (either direction) with its history and the sessions that moved it.
    pub async fn transfer_detail(&self, id: TransferId) -> Result<TransferDetailView, OpsError> {
        let (direction, row) = match id {
            TransferId::Out(row) => (Direction::Sent, row),
            TransferId::In(row) => (Direction::Received, row),
        };
        let (detail, sessions) = self
            .journal(move |j| {
                let detail = match id {
                    TransferId::Out(row) => j.transfer(row)?.map(|d| TransferDetailView::from(&d)),
                    TransferId::In(row) => j.inbound_transfer(row)?.map(|f| TransferDetailView {
                        transfer: TransferView::from(&f),
                        history: Vec::new(),
                        sessions: Vec::new(),
                    }),
                };
                let sessions = match detail {
                    Some(_) => j.sessions_of(direction, row)?,
                    None => Vec::new(),
                };
                Ok((detail, sessions))
            })
            .await?;
        let mut detail = detail.ok_or(match id {
            TransferId::Out(row) => OpsError::UnknownTransfer(row),
            TransferId::In(row) => OpsError::UnknownReceived(row),
        })?;
        detail.sessions = sessions.iter().map(SessionView::from).collect();
        Ok(detail)
    }

    /// Files and bytes sent to and received from each partner, over all time.
    pub async fn partner_counters(&self) -> Result<Vec<PartnerCountersView>, OpsError> {
        let rows = self.journal(|j| j.partner_counters()).await?;
        Ok(rows.iter().map(PartnerCountersView::from).collect())
    }

    /// Queues row `id` again, due now, and wakes its partner's call loop.
    pub async fn retry(&self, id: i64) -> Result<TransferView, OpsError> {
        let (runtime, _) = self.runtime()?;
        let now = self.clock.now();
        let row = self
            .journal
            .call(move |j| j.retry_transfer(id, now))
            .await
            .map_err(|e| OpsError::of_journal(id, e))?
            .ok_or(OpsError::UnknownTransfer(id))?;
        runtime.files_due(&row.send.partner);
        Ok(TransferView::from(&row))
    }

    /// Cancels row `id` (refused while it is in transfer or sent).
    pub async fn cancel(&self, id: i64) -> Result<TransferView, OpsError> {
        self.runtime()?;
        let now = self.clock.now();
        let row = self
            .journal
            .call(move |j| j.cancel_transfer(id, now))
            .await
            .map_err(|e| OpsError::of_journal(id, e))?
            .ok_or(OpsError::UnknownTransfer(id))?;
        Ok(TransferView::from(&row))
    }

    /// Calls `partner` now.
    pub fn call(&self, partner: &str) -> Result<(), OpsError> {
        let (runtime, _) = self.runtime()?;
        runtime.call_now(partner).map_err(OpsError::Call)
    }

    /// The open alerts, oldest first; with `all`, the newest [`MAX_LIMIT`] alerts,
    /// acknowledged or not, newest first.
    pub async fn alerts(&self, all: bool) -> Result<Vec<AlertView>, OpsError> {
        let rows = self
            .journal(move |j| {
                if all {
                    j.recent_alerts(MAX_LIMIT)
                } else {
                    j.open_alerts()
                }
            })
            .await?;
        Ok(rows.iter().map(AlertView::from).collect())
    }

    /// Acknowledges alert `id` (again: keeps the first time).
    pub async fn acknowledge(&self, id: i64) -> Result<AlertView, OpsError> {
        self.runtime()?;
        let now = self.clock.now();
        self.journal(move |j| j.acknowledge_alert(id, now))
            .await?
            .map(|a| AlertView::from(&a))
            .ok_or(OpsError::UnknownAlert(id))
    }
}
