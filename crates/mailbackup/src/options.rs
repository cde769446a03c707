//! Run options and their validation: the seed's properties and config settings, with its
//! defaults, plus the options this crate adds (several mailboxes, throttling limits).
//!
//! Options are checked once, in [`crate::BackupBuilder::build`]; a bad value is an
//! [`Error::InvalidOption`] naming the option, before anything touches the network or disk.

use crate::error::Error;
use chrono::{DateTime, NaiveDate, Utc};
use std::path::PathBuf;
use std::time::Duration;

/// Default of `MaxConnections` (seed: 5).
pub const DEFAULT_MAX_CONNECTIONS: usize = 5;
/// Graph allows at most this many concurrent requests per app and mailbox; more are clamped.
pub const MAILBOX_CONCURRENCY_LIMIT: usize = 4;
/// Default of `MessagePageSize` (seed: 500).
pub const DEFAULT_PAGE_SIZE: u32 = 500;
/// Default of `MaxRetryCount` (seed: 5).
pub const DEFAULT_MAX_RETRY_COUNT: u32 = 5;
/// Default of `RetryInterval` (seed: 3 seconds).
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// Default total time limit of a run (ends a run that Graph throttles forever).
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// Default of [`Options::abort_grace`].
pub const DEFAULT_ABORT_GRACE: Duration = Duration::from_secs(5);
/// Default lease of a mailbox when workers share an index: renewed every quarter of it; a killed
/// worker's mailboxes are taken over at most this long after its last renewal.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Default shared budget of Graph requests per second of all workers of one app (see
/// [`WorkerOptions::tenant_requests_per_second`]).
pub const DEFAULT_TENANT_REQUESTS_PER_SECOND: u32 = 2_000;
/// Default Graph endpoint.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";

/// Which mailboxes a run backs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mailboxes {
    /// The signed-in user's mailbox (`/me`; delegated tokens only).
    Me,
    /// One mailbox by id or user principal name (seed `UserId`: shared mailboxes, app-only tokens).
    /// Saved directly under the data folder, like `Me`.
    User(String),
    /// Several mailboxes; each is saved under `DataFolder/<user>/`.
    Users(Vec<String>),
    /// Every user of the tenant (`GET /users`, app-only token); each under
    /// `DataFolder/<userPrincipalName>/`. Users without a mailbox are reported and skipped.
    AllUsers,
}

/// How a run shares the mailboxes with other workers through leases in the index
/// ([`crate::index::lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The worker's id in the index (`--worker-id`; default `host:pid`).
    pub id: String,
    /// How long a mailbox lease lasts without renewal ([`DEFAULT_LEASE`]).
    pub lease: Duration,
    /// Graph requests per second that all workers of the app may send together; each worker
    /// keeps to an equal share (the budget divided by the live workers, recounted at every
    /// heartbeat). Microsoft documents no per-tenant limit for Outlook (mail) requests of an
    /// app; the limit that spans mailboxes is Graph's global limit per app (2,000 requests per
    /// second in earlier versions of the throttling page, 130,000 per 10 seconds today): the
    /// default is the lower figure ([`DEFAULT_TENANT_REQUESTS_PER_SECOND`]).
    pub tenant_requests_per_second: u32,
}

impl WorkerOptions {
    /// A worker with the default lease and budget.
    pub fn new(id: impl Into<String>) -> WorkerOptions {
        WorkerOptions {
            id: id.into(),
            lease: DEFAULT_LEASE,
            tenant_requests_per_second: DEFAULT_TENANT_REQUESTS_PER_SECOND,
        }
    }

    /// The default worker id: `host:pid`.
    pub fn default_id() -> String {
        format!("{}:{}", crate::lock::host(), std::process::id())
    }
}

/// Validated options of a run. Built by [`crate::BackupBuilder`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed `DataFolder`.
    pub data_folder: PathBuf,
    /// Seed `WorkingFolder`: where the lock file lives (default `DataFolder/.meta`).
    pub working_folder: PathBuf,
    /// Seed `StartDate` (inclusive, compared with the UTC creation date).
    pub start_date: Option<NaiveDate>,
    /// Seed `EndDate` (inclusive).
    pub end_date: Option<NaiveDate>,
    /// Seed `Filter` (OData `$filter`, passed to Graph unchanged).
    pub filter: Option<String>,
    /// Seed `UserId` / several mailboxes.
    pub mailboxes: Mailboxes,
    /// Seed `MaxConnections` after clamping to [`MAILBOX_CONCURRENCY_LIMIT`].
    pub connections_per_mailbox: usize,
    /// Seed `MaxConnections` as given.
    pub max_connections: usize,
    /// How many mailboxes are backed up at the same time.
    pub parallel_mailboxes: usize,
    /// Seed `MessagePageSize`.
    pub page_size: u32,
    /// Seed `MaxRetryCount`.
    pub max_retry_count: u32,
    /// Seed `RetryInterval`.
    pub retry_interval: Duration,
    /// Seed `SyncDeletes`.
    pub sync_deletes: bool,
    /// With `sync_deletes`: move local copies here instead of deleting them.
    pub quarantine_folder: Option<PathBuf>,
    /// Purge quarantined copies after this many days (none: keep them).
    pub keep_deleted_days: Option<u32>,
    /// Total time limit of the run.
    pub time_limit: Duration,
    /// Graph base URL (e.g. `https://graph.microsoft.com/v1.0`, or an emulator's).
    pub graph_url: String,
    /// Ask Graph for immutable ids (`Prefer: IdType="ImmutableId"`), stable across folder moves.
    pub immutable_ids: bool,
    /// Per-request timeout (a whole `$value` download must finish within it).
    pub request_timeout: Duration,
    /// How long an abort waits for requests already sent to be answered before dropping them.
    pub abort_grace: Duration,
    /// Sharing the mailboxes with other workers through leases (none: this run backs up every
    /// mailbox of its selection itself).
    pub worker: Option<WorkerOptions>,
}

/// Parses the seed's date format `yyyy/MM/dd`.
pub fn parse_seed_date(option: &'static str, s: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(s.trim(), "%Y/%m/%d").map_err(|_| Error::InvalidOption {
        option,
        reason: format!("{s:?} is not a date in the format yyyy/MM/dd (e.g. 2023/07/31)"),
    })
}

impl Options {
    /// Whether a message created at `created` falls in the StartDate..=EndDate range.
    pub(crate) fn in_date_range(&self, created: Option<DateTime<Utc>>) -> bool {
        if self.start_date.is_none() && self.end_date.is_none() {
            return true;
        }
        // A message without a creation time cannot be placed in a range: keep it only when no
        // range is set (handled above), so a range never pulls in undated items.
        let Some(created) = created else { return false };
        let d = created.date_naive();
        self.start_date.is_none_or(|s| d >= s) && self.end_date.is_none_or(|e| d <= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_dates_parse_and_reject() {
        assert_eq!(
            parse_seed_date("StartDate", "2023/07/01").unwrap(),
            NaiveDate::from_ymd_opt(2023, 7, 1).unwrap()
        );
        for bad in ["2023-07-01", "2023/13/01", "2023/02/30", "yesterday", ""] {
            let e = parse_seed_date("EndDate", bad).unwrap_err().to_string();
            assert!(e.contains("EndDate") && e.contains("yyyy/MM/dd"), "{e}");
        }
    }
}
