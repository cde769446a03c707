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
