//! The backup engine: the builder, the run, and the three phases of each mailbox.
//!
//! A run takes the folder lock, opens the index, removes temporary files a crash may have left,
//! then backs up each mailbox:
//!
//! 1. **Initialization**: walk the folder tree (search folders skipped) and run one delta round
//!    per folder, from its stored delta link when there is one (incremental) or from scratch. Each
//!    page is applied to the index's mirror of the mailbox right away (idempotent, so a crash
//!    simply replays the round). An expired link (410 / `syncStateNotFound`) means a full listing
//!    of that folder, not an error. With a `Filter`, Graph's plain listing is used instead
//!    (Graph's delta accepts no general `$filter`); the date range is always applied locally to
//!    `createdDateTime`, because delta only filters `receivedDateTime`.
//! 2. **Backup**: every listed message in range is offered to `before_message`; unchanged copies
//!    (same `lastModifiedDateTime`) are proposed as skipped. Others are fetched with
//!    `GET .../messages/{id}/$value` (Graph's MIME, never rebuilt from JSON), written atomically
//!    with the backup header, and only then recorded in the index. A folder's new delta link is
//!    stored after every message of that folder is durable or deliberately skipped.
//! 3. **Sync** (only with `SyncDeletes`): local copies of messages no longer in the mailbox are
//!    offered to `before_delete` and removed. Skipped for safety when a listing failed.
//!
//! Resume needs no journal: the index holds exactly what is durable, and a file the index missed
//! (a crash between rename and index update) is recognised by its backup header and adopted
//! without a fetch.

use crate::error::Error;
use crate::graph::{Gate, Graph, RawMessage, User};
use crate::hooks::{
    BeforeAction, DeleteAction, ErrorAction, FetchedAction, Hooks, LogLevel, MessageFailure,
    MessageInfo, NoHooks,
};
use crate::index::{INDEX_FILE, Index, SavedRow};
use crate::lock::RunLock;
use crate::options::*;
use crate::report::*;
use crate::store::{self, BackupHeader};
use crate::token::TokenSource;
use futures_util::stream::{self, StreamExt};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Name of the metadata folder inside the data folder.
pub const META_DIR: &str = ".meta";

/// Builds a [`Backup`]; every setter maps to a seed property or config setting (see
/// `docs/mailbackup-seed-mapping.md`).
pub struct BackupBuilder {
    data_folder: PathBuf,
    tokens: Arc<dyn TokenSource>,
    hooks: Arc<dyn Hooks>,
    working_folder: Option<PathBuf>,
    start_date: Option<String>,
    end_date: Option<String>,
    filter: Option<String>,
    mailboxes: Mailboxes,
    max_connections: usize,
    parallel_mailboxes: usize,
    page_size: u32,
    max_retry_count: u32,
    retry_interval: Duration,
    sync_deletes: bool,
    quarantine_folder: Option<PathBuf>,
    time_limit: Duration,
    graph_url: String,
    immutable_ids: bool,
    request_timeout: Duration,
    abort_grace: Duration,
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
            time_limit: self.time_limit,
            graph_url: self.graph_url,
            immutable_ids: self.immutable_ids,
            request_timeout: self.request_timeout,
            abort_grace: self.abort_grace,
        };
        Ok(Backup {
            opts: Arc::new(opts),
            tokens: self.tokens,
            hooks: self.hooks,
            cancel: CancellationToken::new(),
            progress: Arc::new(Progress::default()),
        })
    }
}

/// A configured backup. Run it with [`Backup::run`]; abort it from elsewhere with
/// [`Backup::abort`] or the token from [`Backup::cancel_token`].
pub struct Backup {
    opts: Arc<Options>,
    tokens: Arc<dyn TokenSource>,
    hooks: Arc<dyn Hooks>,
    cancel: CancellationToken,
    progress: Arc<Progress>,
}

/// Outcome of one message in the backup phase.
enum Outcome {
    Saved(u64),
    Unchanged,
    Skipped,
    Gone,
    Failed(FailedMessage),
    Fatal(Error),
    NotAttempted,
}

struct Ctx {
    opts: Arc<Options>,
    graph: Graph,
    index: Arc<Index>,
    hooks: Arc<dyn Hooks>,
}

struct Listing {
    candidates: Vec<MessageInfo>,
    /// (folder id, name, new delta link) to store once the folder's messages are durable.
    pending_links: Vec<(String, String, String)>,
    /// Ids listed by a filtered listing (sync of a filtered run probes the others).
    filtered_ids: Option<HashSet<String>>,
    /// Some folder could not be listed: the sync phase must not run.
    incomplete: Option<String>,
}

fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() || t.starts_with('.') {
        format!("_{t}")
    } else {
        t
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
            time_limit: DEFAULT_TIME_LIMIT,
            graph_url: DEFAULT_GRAPH_URL.to_string(),
            immutable_ids: true,
            request_timeout: Duration::from_secs(600),
            abort_grace: DEFAULT_ABORT_GRACE,
        }
    }

    /// The validated options.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Live counters (phase, counts, bytes) per mailbox.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// The token that aborts the run (seed `AbortBackup`).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Aborts a running backup (seed `AbortBackup`): no new request starts; requests already
    /// sent get up to 5 seconds ([`BackupBuilder::abort_grace`]) to be answered (a message whose content arrives is still saved),
    /// then are dropped; files being written are completed, nothing half-written remains; `run`
    /// returns an `Aborted` report once all of that has settled, so no request of the run is
    /// still in flight afterwards (except one that outlived the grace period).
    /// The abort is final for this `Backup`: build a new one to continue.
    pub fn abort(&self) {
        self.cancel.cancel();
    }

    /// Seed `ResumeBackup`: continues an aborted or crashed run. Every run resumes (the index
    /// holds what is durable), so this is [`Backup::run`] with a log line naming the run resumed.
    pub async fn resume(&self) -> Result<BackupReport, Error> {
        let index_path = self.opts.data_folder.join(META_DIR).join(INDEX_FILE);
        if index_path.exists() {
            let ix = Index::open(&index_path, &self.opts.data_folder)?;
            if let Some(r) = ix.last_run()? {
                let msg = format!(
                    "resuming after run {} ({} since {})",
                    r.run_id, r.status, r.started
                );
                tracing::info!("{msg}");
                self.hooks.log(LogLevel::Info, &msg);
            }
        }
        self.run().await
    }

    /// Runs the backup (seed `StartBackup`) to its end and returns the report. `Err` only when the
    /// run could not start (lock held, index unreadable, ...); per-mailbox failures are in the report.
    pub async fn run(&self) -> Result<BackupReport, Error> {
        let started = std::time::Instant::now();
        let opts = self.opts.clone();
        let lock = RunLock::acquire(&opts.working_folder)?;
        if let Some(h) = &lock.taken_over_from {
            self.hooks.log(
                LogLevel::Info,
                &format!("took over the lock left by {h}, which is no longer running"),
            );
        }
        let index = Arc::new(Index::open(
            &opts.data_folder.join(META_DIR).join(INDEX_FILE),
            &opts.data_folder,
        )?);
        // Temporary files are only ever partial writes of a run that died: remove them.
        let data_folder = opts.data_folder.clone();
        let working = opts.working_folder.clone();
        let removed = tokio::task::spawn_blocking(move || -> Result<usize, Error> {
            let mut n = 0;
            for f in store::walk_files(&data_folder, &[working])? {
                if store::is_temp(&f) {
                    store::remove_durable(&f)?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
        .map_err(|e| {
            Error::io(
                "cleaning temporary files",
                std::io::Error::other(e.to_string()),
            )
        })??;
        let run_id = index.start_run()?;
        let ctx = Arc::new(Ctx {
            graph: Graph::new(
                opts.clone(),
                self.tokens.clone(),
                self.cancel.clone(),
                self.hooks.clone(),
            )?,
            opts: opts.clone(),
            index: index.clone(),
            hooks: self.hooks.clone(),
        });
        if removed > 0 {
            ctx.graph.log(
                LogLevel::Info,
                &format!("removed {removed} partial file(s) left by an interrupted run"),
            );
        }
        if opts.max_connections > MAILBOX_CONCURRENCY_LIMIT {
            ctx.graph.log(
                LogLevel::Info,
                &format!(
                    "MaxConnections {} clamped to {MAILBOX_CONCURRENCY_LIMIT} per mailbox (Graph's concurrency limit per app and mailbox)",
                    opts.max_connections
                ),
            );
        }

        let mut reports = Vec::new();
        let targets = match self.targets(&ctx).await {
            Ok(t) => t,
            Err(e) => {
                reports.push(MailboxReport {
                    mailbox: "(tenant users)".into(),
                    error: Some(e.to_string()),
                    ..Default::default()
                });
                Vec::new()
            }
        };
        let progress = self.progress.clone();
        let mut mailbox_reports: Vec<MailboxReport> = stream::iter(targets)
            .map(|(key, root)| {
                let ctx = ctx.clone();
                let p = progress.add(&key);
                async move { backup_mailbox(&ctx, key, root, p).await }
            })
            .buffered(opts.parallel_mailboxes)
            .collect()
            .await;
        reports.append(&mut mailbox_reports);

        let status = if self.cancel.is_cancelled() {
            RunStatus::Aborted
        } else if reports.iter().any(|r| r.error.is_some()) {
            RunStatus::Failed
        } else {
            RunStatus::Completed
        };
        let report = BackupReport {
            run_id,
            status,
            mailboxes: reports,
            elapsed: started.elapsed(),
        };
        index.finish_run(&report)?;
        ctx.graph.log(
            LogLevel::Info,
            &format!(
                "backup ended: {status:?} in {:.1}s",
                report.elapsed.as_secs_f64()
            ),
        );
        self.hooks.backup_ended(&report);
        drop(lock);
        Ok(report)
    }

    /// The mailboxes of the run with their keys and data roots.
    async fn targets(&self, ctx: &Ctx) -> Result<Vec<(String, PathBuf)>, Error> {
        let root = &self.opts.data_folder;
        Ok(match &self.opts.mailboxes {
            Mailboxes::Me => vec![("me".into(), root.clone())],
            Mailboxes::User(u) => vec![(u.trim().to_string(), root.clone())],
            Mailboxes::Users(list) => {
                let mut seen = HashSet::new();
                list.iter()
                    .map(|u| u.trim().to_string())
                    .filter(|u| seen.insert(u.to_lowercase()))
                    .map(|u| {
                        let r = root.join(sanitize(&u));
                        (u, r)
                    })
                    .collect()
            }
            Mailboxes::AllUsers => {
                let p = self.progress.add("(tenant users)");
                let gate = Gate::new(self.opts.connections_per_mailbox, p);
                let users: Vec<User> = ctx.graph.users(&gate).await?;
                ctx.graph.log(
                    LogLevel::Info,
                    &format!("{} users in the tenant", users.len()),
                );
                users
                    .into_iter()
                    .map(|u| {
                        let key = u.user_principal_name.unwrap_or(u.id);
                        let r = root.join(sanitize(&key));
                        (key, r)
                    })
                    .collect()
            }
        })
    }
}

async fn backup_mailbox(
    ctx: &Ctx,
    key: String,
    root: PathBuf,
    progress: Arc<MailboxProgress>,
) -> MailboxReport {
    let gate = Gate::new(ctx.opts.connections_per_mailbox, progress.clone());
    let mut report = MailboxReport {
        mailbox: key.clone(),
        ..Default::default()
    };
    progress.set_phase(Phase::Initialization);
    ctx.graph
        .log(LogLevel::Info, &format!("{key}: initialization phase"));
    let listing = if let Some(filter) = &ctx.opts.filter {
        list_filtered(ctx, &gate, &key, filter).await
    } else {
        list_delta(ctx, &gate, &key, &mut report).await
    };
    let listing = match listing {
        Ok(l) => l,
        Err(Error::Graph {
            status: 404,
            code,
            message,
        }) if ctx.opts.mailboxes == Mailboxes::AllUsers
            && (code == "MailboxNotEnabledForRESTAPI" || code == "ResourceNotFound") =>
        {
            // Tenants have users without mailboxes (unlicensed, rooms in migration): not an error.
            ctx.graph.log(
                LogLevel::Info,
                &format!("{key}: no mailbox ({code}: {message}); skipped"),
            );
            report.skipped_reason = Some(format!("no mailbox: {message}"));
            return finish(report, &progress, &gate);
        }
        Err(e) => {
            // Graph's own message (e.g. an invalid $filter) reaches the user unchanged.
            ctx.graph
                .log(LogLevel::Error, &format!("{key}: listing failed: {e}"));
            report.error = Some(e.to_string());
            return finish(report, &progress, &gate);
        }
    };
    if let Some(why) = &listing.incomplete {
        report.error = Some(why.clone());
    }
    report.message_count = listing.candidates.len() as u64;
    progress
        .message_count
        .store(report.message_count, Ordering::Relaxed);
    ctx.graph.log(
        LogLevel::Info,
        &format!(
            "{key}: {} messages to consider (MessageCount)",
            report.message_count
        ),
    );

    // ---- backup phase ----
    progress.set_phase(Phase::Backup);
    let saved = match ctx.index.saved_map(&key) {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(e.to_string());
            return finish(report, &progress, &gate);
        }
    };
    let stop = AtomicBool::new(false);
    let mut unfinished_folders: HashSet<String> = HashSet::new();
    let mut fatal: Option<Error> = None;
    {
        let mut outcomes = stream::iter(listing.candidates.iter())
            .map(|info| process_message(ctx, &gate, &root, info, saved.get(&info.id), &stop))
            // More tasks than permits: while some save (fsync), others hold every permit.
            .buffer_unordered(ctx.opts.connections_per_mailbox * 2 + 2);
        while let Some((folder, outcome)) = outcomes.next().await {
            progress.processed.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Outcome::Saved(bytes) => {
                    report.saved += 1;
                    report.bytes += bytes;
                    progress.saved.fetch_add(1, Ordering::Relaxed);
                    progress.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Outcome::Unchanged => {
                    report.unchanged += 1;
                    progress.unchanged.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Skipped => report.skipped += 1,
                Outcome::Gone => report.gone_in_flight += 1,
                Outcome::Failed(f) => {
                    progress.failed.fetch_add(1, Ordering::Relaxed);
                    report.failed.push(f);
                    unfinished_folders.extend(folder);
                }
                Outcome::Fatal(e) => {
                    stop.store(true, Ordering::Relaxed);
                    unfinished_folders.extend(folder);
                    if fatal.is_none() {
                        fatal = Some(e);
                    }
                }
                Outcome::NotAttempted => {
                    unfinished_folders.extend(folder);
                }
            }
        }
    }
    if let Some(e) = fatal {
        ctx.graph
            .log(LogLevel::Error, &format!("{key}: stopped: {e}"));
        report.error = Some(e.to_string());
    }
    // Delta links are stored only for folders whose every message is durable (or skipped on purpose).
    for (folder, name, link) in &listing.pending_links {
        if unfinished_folders.contains(folder) {
            continue;
        }
        if let Err(e) = ctx.index.set_delta_link(&key, folder, name, Some(link)) {
            report.error.get_or_insert(e.to_string());
        }
    }

    // ---- sync phase ----
    if ctx.opts.sync_deletes {
        if report.error.is_some() || listing.incomplete.is_some() {
            report.sync_skipped = true;
            ctx.graph.log(LogLevel::Error, &format!("{key}: sync phase skipped: the listing or backup did not complete, so deletions cannot be told apart from gaps"));
        } else {
            progress.set_phase(Phase::Sync);
            if let Err(e) = sync_deletes(ctx, &gate, &key, &listing, &mut report, &progress).await {
                ctx.graph
                    .log(LogLevel::Error, &format!("{key}: sync phase stopped: {e}"));
                report.error = Some(e.to_string());
            }
        }
    }
    finish(report, &progress, &gate)
}

fn finish(mut report: MailboxReport, progress: &MailboxProgress, gate: &Gate) -> MailboxReport {
    progress.set_phase(Phase::None);
    report.requests = progress.requests();
    report.throttled = progress.throttled();
    report.max_concurrency = gate.max_in_flight.load(Ordering::Relaxed) as u64;
    report
}

fn is_expired_delta(e: &Error) -> bool {
    match e {
        Error::Graph { status, code, .. } => {
            *status == 410
                || code.eq_ignore_ascii_case("syncStateNotFound")
                || code.eq_ignore_ascii_case("resyncRequired")
                || code.eq_ignore_ascii_case("SyncStateInvalid")
        }
        _ => false,
    }
}

async fn list_delta(
    ctx: &Ctx,
    gate: &Gate,
    key: &str,
    report: &mut MailboxReport,
) -> Result<Listing, Error> {
    let folders = ctx.graph.folders(gate, key).await?;
    if folders.is_empty() {
        return Err(Error::Protocol {
            url: ctx.opts.graph_url.clone(),
            reason: format!("mailbox {key} lists no folders"),
        });
    }
    let present: HashSet<&str> = folders.iter().map(|f| f.id.as_str()).collect();
    for old in ctx.index.known_folders(key)? {
        if !present.contains(old.as_str()) {
            ctx.graph.log(
                LogLevel::Info,
                &format!("{key}: folder {old} no longer exists"),
            );
            ctx.index.drop_folder(key, &old)?;
        }
    }
    type Round = Result<(String, String, String, bool), (String, Error)>;
    let results: Vec<Round> = stream::iter(folders.iter())
        .map(|f| async move {
            delta_round(ctx, gate, key, &f.id, &f.display_name)
                .await
                .map_err(|e| (f.id.clone(), e))
        })
        .buffer_unordered(ctx.opts.connections_per_mailbox)
        .collect()
        .await;
    let mut pending_links = Vec::new();
    let mut incomplete = None;
    for r in results {
        match r {
            Ok((id, name, link, incremental)) => {
                if incremental {
                    report.incremental_listings += 1;
                } else {
                    report.full_listings += 1;
                }
                pending_links.push((id, name, link));
            }
            Err((_, e)) if e.is_fatal_for_mailbox() => return Err(e),
            Err((folder, Error::Graph { status: 404, .. })) => {
                // Deleted between the folder walk and its delta round: gone, like its messages.
                ctx.graph.log(
                    LogLevel::Info,
                    &format!("{key}: folder {folder} disappeared during the listing"),
                );
                ctx.index.drop_folder(key, &folder)?;
            }
            Err((_, e)) => {
                ctx.graph.log(
                    LogLevel::Error,
                    &format!("{key}: a folder could not be listed: {e}"),
                );
                incomplete.get_or_insert(format!("a folder could not be listed: {e}"));
            }
        }
    }
    let candidates: Vec<MessageInfo> = ctx
        .index
        .remote_messages(key)?
        .into_iter()
        .filter(|m| {
            ctx.opts
                .in_date_range(store::parse_graph_time(m.created.as_deref()))
        })
        .collect();
    ctx.graph.log(
        LogLevel::Info,
        &format!(
            "{key}: {} folders listed ({} incremental, {} full)",
            folders.len(),
            report.incremental_listings,
            report.full_listings
        ),
    );
    Ok(Listing {
        candidates,
        pending_links,
        filtered_ids: None,
        incomplete,
    })
}

/// One delta round of a folder; returns (folder, name, new delta link, incremental?).
async fn delta_round(
    ctx: &Ctx,
    gate: &Gate,
    key: &str,
    folder: &str,
    name: &str,
) -> Result<(String, String, String, bool), Error> {
    let stored = ctx.index.delta_link(key, folder)?;
    let mut incremental = stored.is_some();
    let mut url = stored.unwrap_or_else(|| ctx.graph.delta_url(key, folder));
    let mut seen: HashSet<String> = HashSet::new();
    // Bounded: each page holds at least one entry or moves the round on; a million pages of
    // `MessagePageSize` is beyond any mailbox.
    for _ in 0..1_000_000u32 {
        let page = match ctx
            .graph
            .page::<RawMessage>(gate, &url, Some(ctx.opts.page_size))
            .await
        {
            Ok(p) => p,
            Err(e) if incremental && is_expired_delta(&e) => {
                ctx.graph.log(LogLevel::Info, &format!("{key}: delta token of folder {name} expired ({e}); listing the folder in full"));
                incremental = false;
                seen.clear();
                url = ctx.graph.delta_url(key, folder);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut items = Vec::with_capacity(page.value.len());
        let mut removed = Vec::new();
        for m in page.value {
            if m.removed.is_some() {
                removed.push(m.id);
            } else {
                if !incremental {
                    seen.insert(m.id.clone());
                }
                items.push(m.into_info(key, Some(folder)));
            }
        }
        gate.progress
            .listed
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        ctx.index.apply_remote(key, folder, &items, &removed)?;
        if let Some(next) = page.next_link {
            url = next;
        } else if let Some(link) = page.delta_link {
            if !incremental {
                // A full round saw everything: what it did not list is gone from this folder.
                let gone: Vec<String> = ctx
                    .index
                    .remote_ids_in_folder(key, folder)?
                    .into_iter()
                    .filter(|id| !seen.contains(id))
                    .collect();
                ctx.index.apply_remote(key, folder, &[], &gone)?;
            }
            return Ok((folder.to_string(), name.to_string(), link, incremental));
        } else {
            return Err(Error::Protocol {
                url: crate::graph::strip_query(&url),
                reason: "a delta page has neither @odata.nextLink nor @odata.deltaLink".into(),
            });
        }
    }
    Err(Error::Protocol {
        url: crate::graph::strip_query(&url),
        reason: "the delta round of a folder does not end".into(),
    })
}

async fn list_filtered(ctx: &Ctx, gate: &Gate, key: &str, filter: &str) -> Result<Listing, Error> {
    let mut url = ctx.graph.filtered_url(key, filter);
    let mut all: Vec<MessageInfo> = Vec::new();
    let mut ids = HashSet::new();
    for _ in 0..1_000_000u32 {
        let page = ctx.graph.page::<RawMessage>(gate, &url, None).await?;
        for m in page.value {
            if ids.insert(m.id.clone()) {
                all.push(m.into_info(key, None));
            }
        }
        gate.progress
            .listed
            .store(all.len() as u64, Ordering::Relaxed);
        match page.next_link {
            Some(n) => url = n,
            None => {
                let candidates = all
                    .into_iter()
                    .filter(|m| {
                        ctx.opts
                            .in_date_range(store::parse_graph_time(m.created.as_deref()))
                    })
                    .collect();
                return Ok(Listing {
                    candidates,
                    pending_links: Vec::new(),
                    filtered_ids: Some(ids),
                    incomplete: None,
                });
            }
        }
    }
    Err(Error::Protocol {
        url: crate::graph::strip_query(&url),
        reason: "the filtered listing does not end".into(),
    })
}

/// Runs the `message_error` hook; `Ok(true)` to retry (after the pause), `Ok(false)` to give up.
async fn decide_retry(
    ctx: &Ctx,
    info: &MessageInfo,
    e: &Error,
    attempt: u32,
) -> Result<bool, Error> {
    let proposed = if attempt <= ctx.opts.max_retry_count && e.is_transient() {
        ErrorAction::Retry
    } else {
        ErrorAction::Skip
    };
    let failure = MessageFailure {
        info,
        code: e.code(),
        message: e.to_string(),
        attempt,
    };
    let action = ctx.hooks.message_error(&failure, proposed);
    ctx.graph.log(
        if action == ErrorAction::Retry {
            LogLevel::Info
        } else {
            LogLevel::Error
        },
        &format!(
            "{}: message {}: {} ({}); {}",
            info.mailbox,
            info.id,
            e,
            attempt,
            if action == ErrorAction::Retry {
                "retrying"
            } else {
                "giving up"
            }
        ),
    );
    if action == ErrorAction::Retry {
        ctx.graph.retry_pause().await?;
        Ok(true)
    } else {
        Ok(false)
    }
}

fn failed(info: &MessageInfo, e: &Error) -> Outcome {
    Outcome::Failed(FailedMessage {
        id: info.id.clone(),
        code: e.code(),
        message: e.to_string(),
    })
}

async fn process_message(
    ctx: &Ctx,
    gate: &Gate,
    root: &Path,
    info: &MessageInfo,
    existing: Option<&SavedRow>,
    stop: &AtomicBool,
) -> (Option<String>, Outcome) {
    let folder = info.folder_id.clone();
    if stop.load(Ordering::Relaxed) || ctx.graph.is_cancelled() {
        return (folder, Outcome::NotAttempted);
    }
    (folder, process_inner(ctx, gate, root, info, existing).await)
}

async fn process_inner(
    ctx: &Ctx,
    gate: &Gate,
    root: &Path,
    info: &MessageInfo,
    existing: Option<&SavedRow>,
) -> Outcome {
    let key = &info.mailbox;
    let last_modified = info.last_modified.clone().unwrap_or_default();
    let default_path = existing
        .map(|r| r.path.clone())
        .unwrap_or_else(|| store::default_path(root, &info.id, info.created.as_deref()));
    let mut unchanged =
        existing.is_some_and(|r| r.last_modified == last_modified && r.path.is_file());
    if existing.is_none() {
        // A durable file the index does not know (crash between rename and index update, or an
        // earlier backup without index): adopt it when its header matches, without a fetch.
        if let Ok(Some(h)) = store::read_header(&default_path)
            && h.id == info.id
            && h.last_modified == last_modified
        {
            let p = default_path.clone();
            let adopted = tokio::task::spawn_blocking(move || {
                let size = std::fs::metadata(&p).map(|m| m.len())?;
                Ok::<_, std::io::Error>((store::hash_file(&p)?, size))
            })
            .await;
            if let Ok(Ok((hash, size))) = adopted {
                if let Err(e) = ctx.index.record_saved(
                    key,
                    &info.id,
                    &default_path,
                    &last_modified,
                    size,
                    &hash,
                ) {
                    return Outcome::Fatal(e);
                }
                unchanged = true;
            }
        }
    }
    let proposed = if unchanged {
        BeforeAction::Skip
    } else {
        BeforeAction::Save(default_path.clone())
    };
    let path = match ctx.hooks.before_message(info, proposed) {
        BeforeAction::Skip => {
            return if unchanged {
                Outcome::Unchanged
            } else {
                Outcome::Skipped
            };
        }
        BeforeAction::Save(p) => p,
    };
    let mut attempt = 0u32;
    let mime = loop {
        match ctx.graph.mime(gate, key, &info.id).await {
            Ok(b) => break b,
            Err(Error::Graph { status: 404, .. }) => {
                ctx.graph.log(
                    LogLevel::Info,
                    &format!(
                        "{key}: message {} was deleted before it could be fetched",
                        info.id
                    ),
                );
                if let Err(e) = ctx.index.remove_remote(key, &info.id) {
                    return Outcome::Fatal(e);
                }
                return Outcome::Gone;
            }
            Err(e) if e.is_fatal_for_mailbox() => return Outcome::Fatal(e),
            Err(e) => {
                attempt += 1;
                match decide_retry(ctx, info, &e, attempt).await {
                    Ok(true) => continue,
                    Ok(false) => return failed(info, &e),
                    Err(fatal) => return Outcome::Fatal(fatal),
                }
            }
        }
    };
    if ctx.hooks.message_fetched(info, &mime) == FetchedAction::Skip {
        return Outcome::Skipped;
    }
    let header = BackupHeader {
        id: info.id.clone(),
        last_modified: last_modified.clone(),
    };
    let data = Arc::new(store::with_header(&header, &mime));
    drop(mime);
    let old_path = existing.map(|r| r.path.clone()).filter(|p| *p != path);
    loop {
        let (index, data2, p, id, mb, lm, old) = (
            ctx.index.clone(),
            data.clone(),
            path.clone(),
            info.id.clone(),
            key.clone(),
            last_modified.clone(),
            old_path.clone(),
        );
        // Not cancellable on purpose: once started, a save completes (file, then index).
        let r = tokio::task::spawn_blocking(move || -> Result<u64, Error> {
            store::write_atomic(&p, &data2)?;
            index.record_saved(
                &mb,
                &id,
                &p,
                &lm,
                data2.len() as u64,
                &store::hash_bytes(&data2),
            )?;
            if let Some(old) = old {
                store::remove_durable(&old)?;
            }
            Ok(data2.len() as u64)
        })
        .await
        .unwrap_or_else(|e| {
            Err(Error::io(
                "saving a message",
                std::io::Error::other(e.to_string()),
            ))
        });
        match r {
            Ok(n) => {
                ctx.hooks.message_saved(info, &path);
                return Outcome::Saved(n);
            }
            // Index and storage failures (disk full, read-only, no permission) hit every
            // message alike: stop the mailbox instead of retrying each one.
            Err(e) if e.is_fatal_for_mailbox() => return Outcome::Fatal(e),
            Err(e) => {
                attempt += 1;
                match decide_retry(ctx, info, &e, attempt).await {
                    Ok(true) => continue,
                    Ok(false) => return failed(info, &e),
                    Err(fatal) => return Outcome::Fatal(fatal),
                }
            }
        }
    }
}

async fn sync_deletes(
    ctx: &Ctx,
    gate: &Gate,
    key: &str,
    listing: &Listing,
    report: &mut MailboxReport,
    progress: &MailboxProgress,
) -> Result<(), Error> {
    let saved = ctx.index.saved(Some(key))?;
    progress
        .sync_total
        .store(saved.len() as u64, Ordering::Relaxed);
    let remote: HashSet<String> = match &listing.filtered_ids {
        Some(ids) => ids.clone(),
        None => ctx
            .index
            .remote_messages(key)?
            .into_iter()
            .map(|m| m.id)
            .collect(),
    };
    let mut gone: Vec<SavedRow> = Vec::new();
    for row in saved {
        progress.sync_checked.fetch_add(1, Ordering::Relaxed);
        if remote.contains(&row.id) {
            continue;
        }
        // A filtered listing only shows matching messages: ask Graph about the others.
        if listing.filtered_ids.is_some() && ctx.graph.exists(gate, key, &row.id).await? {
            continue;
        }
        gone.push(row);
    }
    let map: HashMap<&str, &SavedRow> = gone.iter().map(|r| (r.id.as_str(), r)).collect();
    for (id, row) in map {
        if ctx.hooks.before_delete(key, id, &row.path) == DeleteAction::Keep {
            continue;
        }
        let quarantined_to = match &ctx.opts.quarantine_folder {
            Some(q) => {
                let rel = row
                    .path
                    .strip_prefix(&ctx.opts.data_folder)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| PathBuf::from(row.path.file_name().unwrap_or_default()));
                let to = q.join(rel);
                store::move_durable(&row.path, &to)?;
                Some(to)
            }
            None => {
                store::remove_durable(&row.path)?;
                None
            }
        };
        ctx.index.remove_saved(key, id)?;
        progress.removed.fetch_add(1, Ordering::Relaxed);
        ctx.graph.log(
            LogLevel::Info,
            &match &quarantined_to {
                Some(to) => format!(
                    "{key}: moved {} to {} (message {id} deleted remotely)",
                    row.path.display(),
                    to.display()
                ),
                None => format!(
                    "{key}: removed {} (message {id} deleted remotely)",
                    row.path.display()
                ),
            },
        );
        report.removed.push(RemovedMessage {
            id: id.to_string(),
            path: row.path.clone(),
            quarantined_to,
        });
    }
    Ok(())
}
