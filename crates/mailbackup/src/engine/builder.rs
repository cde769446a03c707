//! [`BackupBuilder`]: the seed's properties and config settings, checked once by `build`.

use super::{Backup, META_DIR};
use crate::error::Error;
use crate::hooks::{Hooks, NoHooks};
use crate::index::Index;
use crate::options::*;
use crate::report::Progress;
use crate::store::{LocalStore, MessageStore};
use crate::token::TokenSource;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Builds a [`Backup`]; every setter maps to a seed property or config setting (see
/// `docs/mailbackup-seed-mapping.md`).
pub struct BackupBuilder {
    pub(super) data_folder: PathBuf,
    pub(super) tokens: Arc<dyn TokenSource>,
    pub(super) hooks: Arc<dyn Hooks>,
    pub(super) store: Option<Arc<dyn MessageStore>>,
    pub(super) index: Option<Arc<dyn Index>>,
    pub(super) working_folder: Option<PathBuf>,
    pub(super) start_date: Option<String>,
    pub(super) end_date: Option<String>,
    pub(super) filter: Option<String>,
    pub(super) mailboxes: Mailboxes,
    pub(super) max_connections: usize,
    pub(super) parallel_mailboxes: usize,
    pub(super) page_size: u32,
    pub(super) max_retry_count: u32,
    pub(super) retry_interval: Duration,
    pub(super) sync_deletes: bool,
    pub(super) quarantine_folder: Option<PathBuf>,
    pub(super) keep_deleted_days: Option<u32>,
    pub(super) time_limit: Duration,
    pub(super) graph_url: String,
    pub(super) immutable_ids: bool,
    pub(super) request_timeout: Duration,
    pub(super) abort_grace: Duration,
    pub(super) worker: Option<WorkerOptions>,
}

impl BackupBuilder {
    /// Seed `WorkingFolder`: where the lock file is kept (default `DataFolder/.meta`).
    pub fn working_folder(mut self, p: impl Into<PathBuf>) -> Self {
        self.working_folder = Some(p.into());
        self
    }
    /// Seed `StartDate` (`yyyy/MM/dd`, inclusive, on the creation date).
    pub fn start_date(mut self, d: impl Into<String>) -> Self {
        self.start_date = Some(d.into());
        self
    }
    /// Seed `EndDate` (`yyyy/MM/dd`, inclusive).
    pub fn end_date(mut self, d: impl Into<String>) -> Self {
        self.end_date = Some(d.into());
        self
    }
    /// Seed `Filter`: an OData `$filter` expression passed to Graph.
    pub fn filter(mut self, f: impl Into<String>) -> Self {
        let f = f.into();
        self.filter = (!f.trim().is_empty()).then_some(f);
        self
    }
    /// Which mailboxes to back up (seed `UserId` is `Mailboxes::User`). Default `Me`.
    pub fn mailboxes(mut self, m: Mailboxes) -> Self {
        self.mailboxes = m;
        self
    }
    /// Seed `MaxConnections` (default 5; at most 4 are used per mailbox).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }
    /// Mailboxes backed up at the same time (default 2), each with its own concurrency cap.
    pub fn parallel_mailboxes(mut self, n: usize) -> Self {
        self.parallel_mailboxes = n;
        self
    }
    /// Seed `MessagePageSize` (default 500, 1..=1000).
    pub fn message_page_size(mut self, n: u32) -> Self {
        self.page_size = n;
        self
    }
    /// Seed `MaxRetryCount` (default 5).
    pub fn max_retry_count(mut self, n: u32) -> Self {
        self.max_retry_count = n;
        self
    }
    /// Seed `RetryInterval` (default 3 s).
    pub fn retry_interval(mut self, d: Duration) -> Self {
        self.retry_interval = d;
        self
    }
    /// Seed `SyncDeletes` (default false).
    pub fn sync_deletes(mut self, on: bool) -> Self {
        self.sync_deletes = on;
        self
    }
    /// With `sync_deletes`: move the local copies of deleted messages into this folder (keeping
    /// their relative path) instead of deleting them. Default: delete, as the seed does.
    pub fn quarantine_folder(mut self, p: impl Into<PathBuf>) -> Self {
        self.quarantine_folder = Some(p.into());
        self
    }
    /// With a quarantine folder: at the end of each run, purge the quarantined copies that have
    /// been there `days` days or more ([`crate::retention::prune`]). Default: keep them.
    pub fn keep_deleted_days(mut self, days: u32) -> Self {
        self.keep_deleted_days = Some(days);
        self
    }
    /// Total time limit of a run (default 24 h).
    pub fn time_limit(mut self, d: Duration) -> Self {
        self.time_limit = d;
        self
    }
    /// Graph base URL (default `https://graph.microsoft.com/v1.0`).
    pub fn graph_url(mut self, u: impl Into<String>) -> Self {
        self.graph_url = u.into();
        self
    }
    /// Request immutable ids (default true).
    pub fn immutable_ids(mut self, on: bool) -> Self {
        self.immutable_ids = on;
        self
    }
    /// Timeout of one request, download included (default 10 min).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// How long an abort waits for requests already sent to be answered (default 5 s); a
    /// message whose content arrives in time is still saved, slower requests are dropped.
    pub fn abort_grace(mut self, d: Duration) -> Self {
        self.abort_grace = d;
        self
    }
    /// Where messages are stored (default: a [`LocalStore`] in the data folder, with the
    /// quarantine folder as its quarantine area). With another store, `quarantine_folder` only
    /// switches quarantining on; the store decides where quarantined objects go.
    pub fn message_store(mut self, store: Arc<dyn MessageStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// The index (default: a [`crate::SqliteIndex`] in `DataFolder/.meta/index.sqlite`).
    pub fn index(mut self, index: Arc<dyn Index>) -> Self {
        self.index = Some(index);
        self
    }
    /// Share the mailboxes with other workers through leases in the index (several machines
    /// on one PostgreSQL index; see [`crate::index::lease`]): each mailbox is backed up by
    /// one worker at a time, and a dead worker's mailboxes are taken over.
    pub fn worker(mut self, worker: WorkerOptions) -> Self {
        self.worker = Some(worker);
        self
    }

    /// The event hooks (default: [`NoHooks`]).
    pub fn hooks(mut self, h: Arc<dyn Hooks>) -> Self {
        self.hooks = h;
        self
    }

    /// Checks the options and builds the backup.
    pub fn build(self) -> Result<Backup, Error> {
        let bad = |option, reason: String| Err(Error::InvalidOption { option, reason });
        if self.data_folder.as_os_str().is_empty() {
            return bad(
                "DataFolder",
                "is empty; give the folder to back up into".into(),
            );
        }
        let start_date = self
            .start_date
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_seed_date("StartDate", s))
            .transpose()?;
        let end_date = self
            .end_date
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_seed_date("EndDate", s))
            .transpose()?;
        if let (Some(s), Some(e)) = (start_date, end_date)
            && s > e
        {
            return bad("EndDate", format!("{e} is before StartDate {s}"));
        }
        if self.max_connections == 0 {
            return bad("MaxConnections", "must be at least 1".into());
        }
        if !(1..=1000).contains(&self.page_size) {
            return bad(
                "MessagePageSize",
                format!("{} is outside 1..=1000 (Graph's limit)", self.page_size),
            );
        }
        if self.parallel_mailboxes == 0 {
            return bad("ParallelMailboxes", "must be at least 1".into());
        }
        match &self.mailboxes {
            Mailboxes::User(u) if u.trim().is_empty() => return bad("UserId", "is empty".into()),
            Mailboxes::Users(v) if v.is_empty() || v.iter().any(|u| u.trim().is_empty()) => {
                return bad("Users", "the list is empty or has an empty entry".into());
            }
            _ => {}
        }
        if let Some(w) = &self.worker {
            if w.id.trim().is_empty() || w.id.len() > 200 || w.id.chars().any(char::is_control) {
                return bad(
                    "WorkerId",
                    format!(
                        "{:?} cannot name a worker: give 1 to 200 printable characters, e.g. the host name",
                        w.id
                    ),
                );
            }
            if w.lease < Duration::from_secs(1) {
                return bad(
                    "LeaseSeconds",
                    format!(
                        "{:?} is too short for a lease: give at least 1 second (default 60)",
                        w.lease
                    ),
                );
            }
            if w.tenant_requests_per_second == 0 {
                return bad(
                    "TenantRequestsPerSecond",
                    "must be at least 1 (default 2000)".into(),
                );
            }
        }
        if url::Url::parse(&self.graph_url).is_err() {
            return bad("GraphUrl", format!("{:?} is not a URL", self.graph_url));
        }
        // Absolute paths, so the index and the lock mean the same thing whatever the current
        // directory of a later run.
        let absolute = |option, p: PathBuf| {
            std::path::absolute(&p).map_err(|e| Error::InvalidOption {
                option,
                reason: format!("{}: {e}", p.display()),
            })
        };
        if self.keep_deleted_days.is_some() && self.quarantine_folder.is_none() {
            return bad(
                "KeepDeletedDays",
                "only applies to quarantined copies: set QuarantineFolder (--quarantine-folder) too"
                    .to_string(),
            );
        }
        let data_folder = absolute("DataFolder", self.data_folder)?;
        let quarantine_folder = self
            .quarantine_folder
            .map(|q| absolute("QuarantineFolder", q))
            .transpose()?;
        let working_folder = match self.working_folder {
            Some(w) => absolute("WorkingFolder", w)?,
            None => data_folder.join(META_DIR),
        };
        let opts = Options {
            data_folder,
            working_folder,
            start_date,
            end_date,
            filter: self.filter,
            mailboxes: self.mailboxes,
            connections_per_mailbox: self.max_connections.min(MAILBOX_CONCURRENCY_LIMIT),
            max_connections: self.max_connections,
            parallel_mailboxes: self.parallel_mailboxes,
            page_size: self.page_size,
            max_retry_count: self.max_retry_count,
            retry_interval: self.retry_interval,
            sync_deletes: self.sync_deletes,
            quarantine_folder,
            keep_deleted_days: self.keep_deleted_days,
            time_limit: self.time_limit,
            graph_url: self.graph_url,
            immutable_ids: self.immutable_ids,
            request_timeout: self.request_timeout,
            abort_grace: self.abort_grace,
            worker: self.worker,
        };
        let store = self.store.unwrap_or_else(|| {
            let local = LocalStore::new(&opts.data_folder);
            Arc::new(match &opts.quarantine_folder {
                Some(q) => local.with_quarantine(q),
                None => local,
            })
        });
        Ok(Backup {
            opts: Arc::new(opts),
            tokens: self.tokens,
            hooks: self.hooks,
            store,
            index: self.index,
            cancel: CancellationToken::new(),
            progress: Arc::new(Progress::default()),
        })
    }
}

impl Backup {
    /// Starts a builder: `data_folder` is the seed's `DataFolder`; `tokens` supplies access
    /// tokens (use [`crate::StaticToken`] for the seed's `Authorization`).
    pub fn builder(data_folder: impl Into<PathBuf>, tokens: Arc<dyn TokenSource>) -> BackupBuilder {
        BackupBuilder {
            data_folder: data_folder.into(),
            tokens,
            hooks: Arc::new(NoHooks),
            store: None,
            index: None,
            working_folder: None,
            start_date: None,
            end_date: None,
            filter: None,
            mailboxes: Mailboxes::Me,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            parallel_mailboxes: 2,
            page_size: DEFAULT_PAGE_SIZE,
            max_retry_count: DEFAULT_MAX_RETRY_COUNT,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            sync_deletes: false,
            quarantine_folder: None,
            keep_deleted_days: None,
            time_limit: DEFAULT_TIME_LIMIT,
            graph_url: DEFAULT_GRAPH_URL.to_string(),
            immutable_ids: true,
            request_timeout: Duration::from_secs(600),
            abort_grace: DEFAULT_ABORT_GRACE,
            worker: None,
        }
    }
}
