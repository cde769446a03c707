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
//! - [`postprocess`]: the partner's `on_receive` command for each received file, and the
//!   EERP held until it succeeded (`eerp_after = "processed"`).
//!
//! - [`archive`]: final files moved to `archive/<partner>/YYYY/MM/`, deleted after
//!   `archive_days`; journal history pruned after `history_days`.
//!
//! - [`alerts`]: alert delivery to webhooks and mail from a durable queue in the journal, and
//!   the watchdogs (EERP overdue, certificates expiring, disk space low).
//!
//! - [`control`]: the local control channel of the operator commands and the operations it
//!   shares with the HTTP API.
//! - [`config`]: the gateway's keys of `oftp.toml`; [`ops`]: the seam to the control channel
//!   and the HTTP API; [`handler`]: the runtime's events, handed to the parts.
//! - [`runtime`]: the running gateway (outbox intake into the journal's queue, one call loop
//!   per partner, settling files); [`settle`]: what a file becomes after an attempt (pure);
//!   [`dialer`]: the seam to the client that runs a session.
//!
//! The crate README lists what the gateway still needs and where these parts plug in.
#![warn(missing_docs)]

pub mod alerts;
pub mod archive;
pub mod config;
pub mod control;
pub mod dialer;
pub mod handler;
pub mod ops;
pub mod outbox;
pub mod postprocess;
pub mod retry;
pub mod runtime;
pub mod schedule;
pub mod settle;

pub use archive::{Archive, ArchiveSettings, SweepReport};
pub use config::{GatewaySection, PartnerEntry, PartnerGateway};
pub use dialer::{Dialer, Dialing};
pub use handler::GatewayHandler;
pub use ops::{CallNowError, CallSummary, GatewayEvent, GatewayRuntime, PartnerState};
pub use outbox::{Outbox, OutboxError, OutboxEvent, TakenOver, WatchSettings};
pub use postprocess::{EerpAfter, OnReceive, PostProcessingSettings, PostProcessor};
pub use retry::{
    Disposition, FailureClass, FileVerdict, RetryConfig, RetryDecision, RetryPolicy, classify_call,
    classify_file,
};
pub use runtime::{Clock, Gateway, GatewayError, Observer, PartnerPlan, SystemClock};
pub use schedule::{Schedule, ScheduleConfig, ScheduleError};
pub use settle::{Attempt, Settlement, settle};
