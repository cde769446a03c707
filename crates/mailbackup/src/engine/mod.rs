//! The backup engine: the run, and the three phases of each mailbox, one module each.
//!
//! A run takes the folder lock, opens the index, removes what an interrupted write may have left
//! in the message store, then backs up each mailbox:
//!
//! 1. **Initialization** ([`listing`]): walk the folder tree (search folders skipped) and run one
//!    delta round per folder, from its stored delta link when there is one (incremental) or from
//!    scratch. Each page is applied to the index's mirror of the mailbox right away (idempotent,
//!    so a crash simply replays the round). An expired link (410 / `syncStateNotFound`) means a
//!    full listing of that folder, not an error. With a `Filter`, Graph's plain listing is used
//!    instead (Graph's delta accepts no general `$filter`); the date range is always applied
//!    locally to `createdDateTime`, because delta only filters `receivedDateTime`.
//! 2. **Backup** ([`fetching`]): every listed message in range is offered to `before_message`;
//!    unchanged copies (same `lastModifiedDateTime`) are proposed as skipped. Others are fetched
//!    with `GET .../messages/{id}/$value` (Graph's MIME, never rebuilt from JSON), put into the
//!    message store with the backup header, and only then recorded in the index; a mailbox has
//!    at most [`fetching::Unrecorded`] messages between their request and their record (what
//!    a killed worker loses). A folder's new delta link is stored after every message of that
//!    folder is durable or deliberately skipped.
//! 3. **Sync** ([`deletion`], only with `SyncDeletes`): stored copies of messages no longer in
//!    the mailbox are offered to `before_delete` and removed (or quarantined). Skipped for safety
//!    when a listing failed.
//!
//! Resume needs no journal: the index holds exactly what is durable, and an object the index
//! missed (a crash between the store's put and the index update) is recognised by its backup
//! header and adopted without a fetch.
//!
//! Index and store calls block; they run on `spawn_blocking` threads ([`Ctx::index`],
//! [`Ctx::store`]), never on the async worker threads that drive the requests. Log lines go
//! through the run's [`Reporter`].

mod builder;
mod deletion;
mod fetching;
mod listing;
mod workers;

pub use builder::BackupBuilder;

use crate::error::Error;
use crate::graph::{Gate, Graph, User};
use crate::hooks::{Hooks, LogLevel};
use crate::index::{INDEX_FILE, Index, SqliteIndex};
use crate::lock::RunLock;
use crate::options::*;
use crate::report::*;
use crate::reporter::Reporter;
use crate::store::{MessageStore, ObjectKey};
use crate::token::TokenSource;
use fetching::Outcome;
use futures_util::stream::{self, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

/// Name of the metadata folder inside the data folder.
pub const META_DIR: &str = ".meta";

/// A configured backup. Run it with [`Backup::run`]; abort it from elsewhere with
/// [`Backup::abort`] or the token from [`Backup::cancel_token`].
pub struct Backup {
    opts: Arc<Options>,
    tokens: Arc<dyn TokenSource>,
    hooks: Arc<dyn Hooks>,
    store: Arc<dyn MessageStore>,
    index: Option<Arc<dyn Index>>,
    cancel: CancellationToken,
    progress: Arc<Progress>,
}

/// What the phases of a run share.
struct Ctx {
    opts: Arc<Options>,
    graph: Graph,
    index: Arc<dyn Index>,
    store: Arc<dyn MessageStore>,
    hooks: Arc<dyn Hooks>,
    reporter: Reporter,
}

/// Runs blocking work (index, store) on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::io(
            "a storage task ended abnormally",
            std::io::Error::other(e.to_string()),
        ))
    })
}

impl Ctx {
    /// One index call, off the async worker threads.
    async fn index<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Index) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let ix = self.index.clone();
        blocking(move || f(&*ix)).await
    }

    /// One store call, off the async worker threads.
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn MessageStore) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let st = self.store.clone();
        blocking(move || f(&*st)).await
    }
}

/// A mailbox of the run: its Graph key and the key prefix of its objects in the store.
struct Target {
    mailbox: String,
    prefix: String,
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

    /// The index given to the builder, or the SQLite index of the data folder.
    async fn open_index(&self) -> Result<Arc<dyn Index>, Error> {
        if let Some(ix) = &self.index {
            return Ok(ix.clone());
        }
        let path = self.opts.data_folder.join(META_DIR).join(INDEX_FILE);
        blocking(move || Ok(Arc::new(SqliteIndex::open(&path)?) as Arc<dyn Index>)).await
    }

    /// Seed `ResumeBackup`: continues an aborted or crashed run. Every run resumes (the index
    /// holds what is durable), so this is [`Backup::run`] with a log line naming the run resumed.
    pub async fn resume(&self) -> Result<BackupReport, Error> {
        let index_path = self.opts.data_folder.join(META_DIR).join(INDEX_FILE);
        if self.index.is_some() || index_path.exists() {
            let ix = self.open_index().await?;
            if let Some(r) = blocking(move || ix.last_run()).await? {
                Reporter::new(self.hooks.clone()).info(&format!(
                    "resuming after run {} ({} since {})",
                    r.run_id, r.status, r.started
                ));
            }
        }
        self.run().await
    }

    /// Runs the backup (seed `StartBackup`) to its end and returns the report. `Err` only when the
    /// run could not start (lock held, index unreadable, ...); per-mailbox failures are in the report.
    pub async fn run(&self) -> Result<BackupReport, Error> {
        let started = std::time::Instant::now();
        let opts = self.opts.clone();
        let reporter = Reporter::new(self.hooks.clone());
        let lock = RunLock::acquire(&opts.working_folder)?;
        if let Some(h) = &lock.taken_over_from {
            self.hooks.log(
                LogLevel::Info,
                &format!("took over the lock left by {h}, which is no longer running"),
            );
        }
        let index = self.open_index().await?;
        if let Some(w) = &opts.worker {
            workers::register(&index, w).await?;
        }
        // Temporary files are only ever partial writes of a run that died: remove them (a
        // worker sharing the store does so per mailbox it takes).
        let removed = if opts.worker.is_none() {
            let store = self.store.clone();
            blocking(move || store.remove_partial("")).await?
        } else {
            0
        };
        // A backup made before the index held header fields gets them once.
        let (ix, store) = (index.clone(), self.store.clone());
        let backfilled =
            blocking(move || crate::headers::backfill(ix.as_ref(), store.as_ref())).await?;
        let run_id = {
            let ix = index.clone();
            blocking(move || ix.start_run()).await?
        };
        let ctx = Arc::new(Ctx {
            graph: Graph::new(
                opts.clone(),
                self.tokens.clone(),
                self.cancel.clone(),
                reporter.clone(),
            )?,
            opts: opts.clone(),
            index: index.clone(),
            store: self.store.clone(),
            hooks: self.hooks.clone(),
            reporter: reporter.clone(),
        });
        if let Some(w) = &opts.worker {
            workers::take_share(&ctx, w, &self.cancel).await?;
        }
        if backfilled > 0 {
            reporter.info(&format!(
                "indexed the header fields of {backfilled} message(s) saved by an earlier version"
            ));
        }
        if removed > 0 {
            reporter.info(&format!(
                "removed {removed} partial file(s) left by an interrupted run"
            ));
        }
        if opts.max_connections > MAILBOX_CONCURRENCY_LIMIT {
            reporter.info(&format!(
                "MaxConnections {} clamped to {MAILBOX_CONCURRENCY_LIMIT} per mailbox (Graph's concurrency limit per app and mailbox)",
                opts.max_connections
            ));
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
        let mut mailbox_reports: Vec<MailboxReport> = match &opts.worker {
            Some(w) => workers::run(&ctx, w, targets, &progress, &self.cancel).await,
            None => {
                stream::iter(targets)
                    .map(|target| {
                        let ctx = ctx.clone();
                        let p = progress.add(&target.mailbox);
                        async move { backup_mailbox(&ctx, target, p, Default::default()).await }
                    })
                    .buffered(opts.parallel_mailboxes)
                    .collect()
                    .await
            }
        };
        reports.append(&mut mailbox_reports);

        let status = if self.cancel.is_cancelled() {
            RunStatus::Aborted
        } else if reports.iter().any(|r| r.error.is_some()) {
            RunStatus::Failed
        } else {
            RunStatus::Completed
        };
        if let Some(days) = opts.keep_deleted_days {
            let (ix, store) = (index.clone(), self.store.clone());
            let purged = blocking(move || {
                crate::retention::prune(
                    ix.as_ref(),
                    store.as_ref(),
                    chrono::Utc::now(),
                    days,
                    false,
                )
            })
            .await?;
            for r in &purged {
                reporter.info(&format!(
                    "{}: purged {} (quarantined {}, older than {days} days)",
                    r.mailbox, r.location, r.since
                ));
            }
        }
        let report = Arc::new(BackupReport {
            run_id,
            status,
            mailboxes: reports,
            elapsed: started.elapsed(),
        });
        {
            let report = report.clone();
            ctx.index(move |ix| ix.finish_run(&report)).await?;
        }
        reporter.info(&format!(
            "backup ended: {status:?} in {:.1}s",
            report.elapsed.as_secs_f64()
        ));
        self.hooks.backup_ended(&report);
        drop(lock);
        Ok(Arc::unwrap_or_clone(report))
    }

    /// The mailboxes of the run with the key prefixes of their objects.
    async fn targets(&self, ctx: &Ctx) -> Result<Vec<Target>, Error> {
        let single = |mailbox: String| Target {
            mailbox,
            prefix: String::new(),
        };
        let own_folder = |mailbox: String| Target {
            prefix: sanitize(&mailbox),
            mailbox,
        };
        Ok(match &self.opts.mailboxes {
            Mailboxes::Me => vec![single("me".into())],
            Mailboxes::User(u) => vec![single(u.trim().to_string())],
            Mailboxes::Users(list) => {
                let mut seen = HashSet::new();
                list.iter()
                    .map(|u| u.trim().to_string())
                    .filter(|u| seen.insert(u.to_lowercase()))
                    .map(own_folder)
                    .collect()
            }
            Mailboxes::AllUsers => {
                let p = self.progress.add("(tenant users)");
                let gate = Gate::new(&self.opts, p)?;
                let users: Vec<User> = ctx.graph.users(&gate).await?;
                ctx.reporter
                    .info(&format!("{} users in the tenant", users.len()));
                users
                    .into_iter()
                    .map(|u| own_folder(u.user_principal_name.unwrap_or(u.id)))
                    .collect()
            }
        })
    }
}

/// Backs up one mailbox. `stop` set from outside (a worker's lost lease) stops it at its next
/// message, like a fatal error, without storing delta links or running the sync phase.
async fn backup_mailbox(
    ctx: &Ctx,
    target: Target,
    progress: Arc<MailboxProgress>,
    stop: Arc<AtomicBool>,
) -> MailboxReport {
    let key = target.mailbox.as_str();
    let mut report = MailboxReport {
        mailbox: key.to_string(),
        ..Default::default()
    };
    let gate = match Gate::new(&ctx.opts, progress.clone()) {
        Ok(g) => g,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    progress.set_phase(Phase::Initialization);
    ctx.reporter.info(&format!("{key}: initialization phase"));
    let listing = if let Some(filter) = &ctx.opts.filter {
        listing::list_filtered(ctx, &gate, key, filter).await
    } else {
        listing::list_delta(ctx, &gate, key, &mut report).await
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
            ctx.reporter
                .info(&format!("{key}: no mailbox ({code}: {message}); skipped"));
            report.skipped_reason = Some(format!("no mailbox: {message}"));
            return finish(report, &progress, &gate);
        }
        Err(e) => {
            // Graph's own message (e.g. an invalid $filter) reaches the user unchanged.
            ctx.reporter.error(&format!("{key}: listing failed: {e}"));
            record_error(&mut report, &e);
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
    ctx.reporter.info(&format!(
        "{key}: {} messages to consider (MessageCount)",
        report.message_count
    ));

    // ---- backup phase ----
    progress.set_phase(Phase::Backup);
    let known = match fetching::Known::load(ctx, key, &target.prefix).await {
        Ok(k) => k,
        Err(e) => {
            record_error(&mut report, &e);
            return finish(report, &progress, &gate);
        }
    };
    let mut unfinished_folders: HashSet<String> = HashSet::new();
    let mut fatal: Option<Error> = None;
    {
        let unrecorded = fetching::Unrecorded::new(&ctx.opts);
        let mut outcomes = stream::iter(listing.candidates.iter())
            .map(|info| {
                fetching::process_message(
                    ctx,
                    &gate,
                    &unrecorded,
                    &target.prefix,
                    info,
                    &known,
                    &stop,
                )
            })
            // More tasks than the unrecorded bound: the others check unchanged copies (no
            // request) while the bound is full.
            .buffer_unordered(fetching::Unrecorded::bound(&ctx.opts) + 2);
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
        ctx.reporter.error(&format!("{key}: stopped: {e}"));
        record_error(&mut report, &e);
    } else if stop.load(Ordering::Relaxed) {
        // The worker's lease was lost: the worker that holds it now does the rest.
        report.error = Some(
            "stopped: this worker's lease on the mailbox was lost (taken over by another worker, or not renewed in time); the worker holding it continues"
                .into(),
        );
        return finish(report, &progress, &gate);
    }
    // Delta links are stored only for folders whose every message is durable (or skipped on purpose).
    let links: Vec<(String, String, String)> = listing
        .pending_links
        .iter()
        .filter(|(folder, _, _)| !unfinished_folders.contains(folder))
        .cloned()
        .collect();
    let mailbox = key.to_string();
    if let Err(e) = ctx
        .index(move |ix| {
            links.iter().try_for_each(|(folder, name, link)| {
                ix.set_delta_link(&mailbox, folder, name, Some(link))
            })
        })
        .await
    {
        report.error.get_or_insert(e.to_string());
    }

    // ---- sync phase ----
    if ctx.opts.sync_deletes {
        if report.error.is_some() || listing.incomplete.is_some() {
            report.sync_skipped = true;
            ctx.reporter.error(&format!("{key}: sync phase skipped: the listing or backup did not complete, so deletions cannot be told apart from gaps"));
        } else {
            progress.set_phase(Phase::Sync);
            if let Err(e) =
                deletion::sync_deletes(ctx, &gate, key, &listing, &mut report, &progress).await
            {
                ctx.reporter
                    .error(&format!("{key}: sync phase stopped: {e}"));
                record_error(&mut report, &e);
            }
        }
    }
    finish(report, &progress, &gate)
}

/// Records why a mailbox stopped.
fn record_error(report: &mut MailboxReport, e: &Error) {
    report.error = Some(e.to_string());
    report.sign_in_failed |= e.is_sign_in();
}

fn finish(mut report: MailboxReport, progress: &MailboxProgress, gate: &Gate) -> MailboxReport {
    progress.set_phase(Phase::None);
    report.requests = progress.requests();
    report.throttled = progress.throttled();
    report.max_concurrency = gate.max_in_flight.load(Ordering::Relaxed) as u64;
    report
}

/// The object key a message gets by default.
fn default_key(prefix: &str, info: &crate::hooks::MessageInfo) -> ObjectKey {
    ObjectKey::for_message(prefix, &info.id, info.created.as_deref())
}
