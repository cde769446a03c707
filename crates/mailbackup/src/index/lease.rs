//! Mailbox leases: how several workers share the mailboxes of one tenant through one index.
//!
//! A worker ([`Index::register_worker`]) takes mailboxes one at a time
//! ([`Index::acquire_lease`]). A lease names its worker and expires `ttl` after it was taken
//! or last renewed ([`Index::heartbeat`]); while it has not expired no other worker gets the
//! mailbox, so every mailbox is backed up by one worker at a time and Graph's per-mailbox limits
//! (4 requests in flight, 10,000 requests per 10 minutes) hold across workers. A worker that
//! dies stops renewing; once its leases expire the others take its mailboxes over and continue
//! from what the index holds (saved copies, delta links).
//!
//! Every time is the index's clock: PostgreSQL's `now()` (so workers whose clocks disagree
//! still agree on who holds what), the local clock for SQLite (one machine). Workers compare
//! no timestamps of their own with the index's: a worker measures only durations on its own
//! monotonic clock (see `engine::workers`).
//!
//! Workers work in *rounds*: a worker that registers while others are at work joins their round
//! (the earliest round of the live workers), one that registers when none is at work starts a
//! new round. A mailbox finished by any worker since its round began is *done*: the workers of a
//! scheduled run, started seconds or minutes apart, back each mailbox up once, and the next
//! scheduled run backs it up again.

use crate::error::Error;

/// A worker as the index knows it, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRow {
    /// The worker's id (`--worker-id`, by default `host:pid`).
    pub worker: String,
    /// When it registered (RFC 3339, UTC, index clock).
    pub started: String,
    /// Its last heartbeat (RFC 3339, UTC, index clock).
    pub heartbeat: String,
    /// When it ended cleanly; `None` while it works or after it died.
    pub finished: Option<String>,
    /// Working, finished, or dead (its heartbeat expired without a clean end).
    pub state: WorkerState,
    /// Mailboxes it holds (a dead worker's until another takes them over).
    pub leases: Vec<LeaseRow>,
}

/// Whether a worker is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Its heartbeat has not expired.
    Working,
    /// It ended and released its leases.
    Finished,
    /// Its heartbeat expired without a clean end (killed, machine lost, cut off the database).
    Dead,
}

/// A mailbox lease held by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The mailbox.
    pub mailbox: String,
    /// When the worker took it (RFC 3339, UTC, index clock).
    pub since: String,
    /// Its last renewal (RFC 3339, UTC, index clock).
    pub heartbeat: String,
    /// Messages the worker has processed in it so far (as of the last renewal).
    pub messages: u64,
    /// Whether it expired (another worker may take the mailbox over).
    pub expired: bool,
}

/// The answer of [`Index::acquire_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The worker now holds this mailbox.
    Lease {
        /// The mailbox.
        mailbox: String,
        /// The worker whose expired lease this replaced, if any.
        taken_over_from: Option<String>,
    },
    /// Every mailbox not yet done is held by a live worker: ask again later (one may die).
    Wait,
    /// Every mailbox is done.
    Done,
}

impl WorkerRow {
    /// A worker from its columns, with its leases picked from `held` (worker, lease) pairs.
    pub(crate) fn assemble(
        worker: String,
        started: String,
        heartbeat: String,
        finished: Option<String>,
        expired: bool,
        held: &[(String, LeaseRow)],
    ) -> WorkerRow {
        WorkerRow {
            leases: held
                .iter()
                .filter(|(w, _)| *w == worker)
                .map(|(_, l)| l.clone())
                .collect(),
            state: match (&finished, expired) {
                (Some(_), _) => WorkerState::Finished,
                (None, true) => WorkerState::Dead,
                (None, false) => WorkerState::Working,
            },
            worker,
            started,
            heartbeat,
            finished,
        }
    }
}

/// The refusal of a worker id a live worker has (`heartbeat`: that worker's last one).
pub(crate) fn in_use(worker: &str, heartbeat: String) -> Error {
    Error::WorkerIdInUse {
        worker: worker.to_string(),
        heartbeat,
    }
}

/// Checks a lease duration: whole milliseconds, at least one.
pub(crate) fn ttl_millis(ttl: std::time::Duration) -> Result<i64, Error> {
    match i64::try_from(ttl.as_millis()) {
        Ok(ms) if ms >= 1 => Ok(ms),
        _ => Err(Error::InvalidOption {
            option: "lease_seconds",
            reason: format!("a lease of {ttl:?} cannot work; give at least 1 second"),
        }),
    }
}
