//! Building blocks of `oftp serve` as an unattended gateway (issue #11) that need neither the
//! journal nor the connection internals:
//!
//! - [`schedule`]: when to call a partner (an interval and/or cron calendar times in a time
//!   zone), pure, driven by the caller's clock.
//! - [`retry`]: which failures of a call are tried again (a pure function of what the runtime
//!   reports) and when (capped exponential back-off with jitter from the caller's RNG, a
//!   maximum number of attempts or age).
//! - [`outbox`]: taking files over from a partner's outbox without ever taking one half
//!   written (ignored temporary names, atomic rename into a queue, fsync before the report),
//!   watched with file system events and a polling fallback.
//!
//! - [`alerts`]: alert delivery to webhooks and mail from a durable queue in the journal, and
//!   the watchdogs (EERP overdue, certificates expiring, disk space low).
//! - [`config`]: the gateway's keys of `oftp.toml`; [`ops`]: the seam to the control channel
//!   and the HTTP API; [`handler`]: the runtime's events, handed to the parts.
//!
//! The crate README lists what the gateway still needs and where these parts plug in.
#![warn(missing_docs)]

pub mod alerts;
pub mod config;
pub mod handler;
pub mod ops;
pub mod outbox;
pub mod retry;
pub mod schedule;

pub use config::{GatewaySection, PartnerEntry, PartnerGateway};
pub use handler::GatewayHandler;
pub use ops::{CallNowError, CallSummary, GatewayEvent, GatewayRuntime, PartnerState};
pub use outbox::{Outbox, OutboxError, OutboxEvent, TakenOver, WatchSettings};
pub use retry::{
    Disposition, FailureClass, FileVerdict, RetryConfig, RetryDecision, RetryPolicy, classify_call,
    classify_file,
};
pub use schedule::{Schedule, ScheduleConfig, ScheduleError};
