//! The seam between the gateway runtime of `oftp serve` (call loops, outbox intake, the queue)
//! and what watches and drives it: the local control channel of the operator commands and the
//! HTTP API. The runtime implements [`GatewayRuntime`]; the others hold an
//! `Arc<dyn GatewayRuntime>` and the journal, and never reach into the runtime otherwise.
//!
//! What is in the journal (queued files, their history, alerts) is read from the journal; this
//! trait carries only what lives in the running process: call state, waking a call loop, live
//! events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// What the running gateway answers and does for the control channel and the HTTP API.
pub trait GatewayRuntime: Send + Sync + 'static {
    /// Every configured partner's call state, in configuration order.
    fn partners(&self) -> Vec<PartnerState>;
    /// Calls `partner` now: at once when a session slot is free, else as soon as one is (a
    /// call already waiting for a slot is not doubled).
    fn call_now(&self, partner: &str) -> Result<(), CallNowError>;
    /// Files of `partner` became due outside its schedule (an operator retried one): its call
    /// loop looks at the queue again.
    fn files_due(&self, partner: &str);
    /// Live events from now on. A receiver that lags loses the oldest events (and is told so
    /// by `broadcast`); the journal stays the record.
    fn subscribe(&self) -> broadcast::Receiver<GatewayEvent>;
}

/// A partner as the running gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartnerState {
    /// The configured name.
    pub name: String,
    /// Where we call it; `None` = it calls us only.
    pub address: Option<String>,
    /// The last call we made (also from before a restart), if any.
    pub last_call: Option<CallSummary>,
    /// When the next scheduled or retry call is due; `None` = none planned.
    pub next_call: Option<DateTime<Utc>>,
    /// Sessions with this partner now (ours and theirs).
    pub sessions: u32,
    /// Its `max_sessions`.
    pub max_sessions: u32,
}

/// How one call went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallSummary {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended (`None` while running).
    pub ended_at: Option<DateTime<Utc>>,
    /// Whether the session ran (login succeeded and it ended normally), whatever the files'
    /// outcomes.
    pub ok: bool,
    /// What happened, for a person ("3 sent, 1 received", "connection refused").
    pub text: String,
}

/// Why a call cannot be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallNowError {
    /// No partner of that name.
    #[error("no partner named {0:?} in the configuration")]
    UnknownPartner(String),
    /// The partner has no `address`: it calls us.
    #[error("partner {0:?} has no address to call; it collects its files when it calls us")]
    NoAddress(String),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// Something that happened in the running gateway, as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GatewayEvent {
    /// A session with a partner started (either side called).
    SessionStarted {
        /// The partner's configured name.
        partner: String,
        /// Whether we called.
        outgoing_call: bool,
    },
    /// A session with a partner ended.
    SessionEnded {
        /// The partner's configured name.
        partner: String,
        /// How it ended, for a person.
        text: String,
        /// Whether we called (as at its start).
        outgoing_call: bool,
        /// Whether it ended normally (ESID 00, normal session termination); a session cut
        /// off, timed out or ended with any other reason is not.
        ok: bool,
    },
    /// A file moves: `bytes` of user data so far.
    Progress {
        /// The partner's configured name.
        partner: String,
        /// `true` = we send it.
        outgoing: bool,
        /// SFIDDSN.
        virtual_file_name: String,
        /// Octets so far.
        bytes: u64,
        /// The queue row, for a file we send from the queue.
        transfer_id: Option<i64>,
    },
    /// A file went through completely: for a file we send, the partner confirmed it (EFPA);
    /// for a file we receive, it is durable under its final name and confirmed (EFPA).
    FileCompleted {
        /// The partner's configured name.
        partner: String,
        /// `true` = we sent it.
        outgoing: bool,
        /// SFIDDSN.
        virtual_file_name: String,
        /// Octets of user data of the whole file.
        bytes: u64,
        /// The queue row, for a file we send from the queue in our call.
        transfer_id: Option<i64>,
    },
    /// An end-to-end response (EERP or NERP) for a file we sent arrived (the journal has
    /// recorded it).
    EndResponseReceived {
        /// The partner's configured name (of the session it arrived in).
        partner: String,
        /// SFIDDSN of the file it answers.
        virtual_file_name: String,
        /// `true` = EERP (delivered), `false` = NERP.
        positive: bool,
        /// Milliseconds from the end of the file's transfer (its EFPA) to this response, when
        /// this process saw that end (not for a file sent before a restart).
        latency_ms: Option<u64>,
    },
    /// A queued file that was tried before is tried again (claimed for a session with one
    /// more attempt).
    TransferRetried {
        /// The queue row.
        transfer_id: i64,
        /// The partner's configured name.
        partner: String,
        /// This attempt's number (2 = the first retry).
        attempt: u32,
    },
    /// A queued file changed state (the journal has the new state and its history).
    TransferChanged {
        /// The queue row.
        transfer_id: i64,
        /// The partner's configured name.
        partner: String,
        /// The new state's stored name (`QueueState::as_str`).
        state: String,
    },
    /// An alert was raised (the journal has it).
    AlertRaised {
        /// The alert row.
        alert_id: i64,
    },
}
