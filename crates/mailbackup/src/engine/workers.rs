//! A run as one of several workers sharing the mailboxes through leases in the index
//! ([`crate::index::lease`]; with [`crate::BackupBuilder::worker`]).
//!
//! The worker registers, then `parallel_mailboxes` slots each take a mailbox, back it up
//! ([`super::backup_mailbox`], unchanged), and release it (done, or not done when the run was
//! aborted so that another worker takes it at once), until every mailbox of the selection is
//! done. A slot that finds every remaining mailbox held by a live worker waits and asks again:
//! one of them may die, and its mailboxes are then taken over here, continuing from the index
//! (saved copies are not fetched again, delta links resume the listing). Partial files are
//! removed below a mailbox's prefix when its lease is taken (the store may be shared with
//! workers writing other mailboxes).
//!
//! A heartbeat task renews the worker and its leases every quarter of the lease, records each
//! mailbox's progress, and recounts the live workers for the pacer (the app's request budget split
//! evenly). The workers together never exceed the budget: a worker lowers its share at the
//! heartbeat after another registered, and a worker that registers sends its first request only
//! once every other live worker has renewed since (and so made room for it; [`take_share`]). A dead
//! worker's share is free once its heartbeat expired. A mailbox whose lease is lost (taken over
//! after it expired) stops at its next message, stores no delta link and skips its sync phase. The
//! worker also stops a mailbox by itself when it could not renew for a whole lease as measured on
//! its own monotonic clock from the moment it sent its last successful renewal: that moment is
//! before the index computed the expiry, so the worker stops no later than the index lets another
//! take over, whatever the clocks of the machines say.

use super::{Ctx, Target, backup_mailbox, blocking};
use crate::error::Error;
use crate::index::{Acquired, Index, WorkerRow, WorkerState};
use crate::options::WorkerOptions;
use crate::report::{MailboxProgress, MailboxReport, Progress};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A mailbox the worker holds: its progress and the flag that stops it.
struct Held {
    progress: Arc<MailboxProgress>,
    /// The mailbox's stop flag (no new message starts once set).
    stop: Arc<AtomicBool>,
    /// Set with `stop` when the lease is lost: the lease is no longer ours to release.
    lost: Arc<AtomicBool>,
}

/// What the slots and the heartbeat share.
struct Worker {
    opts: WorkerOptions,
    index: Arc<dyn Index>,
    held: Mutex<HashMap<String, Held>>,
    /// Mailboxes this worker took (never taken again by it in this run).
    taken: Mutex<HashSet<String>>,
}

impl Worker {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn taken(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a slot waits before asking again when every mailbox left is held: at most a
    /// second, so a worker ends soon after the last mailbox of the round is done.
    fn poll(&self) -> Duration {
        (self.opts.lease / 4).min(Duration::from_secs(1))
    }
}

/// Registers the worker: before anything else, so a worker id in use stops the run at once.
pub(super) async fn register(index: &Arc<dyn Index>, w: &WorkerOptions) -> Result<(), Error> {
    let (ix, id, lease) = (index.clone(), w.id.clone(), w.lease);
    blocking(move || ix.register_worker(&id, lease)).await
}

/// The live workers and this worker's share of the app's request budget (requests per
/// second): the budget divided by the live workers (a dead one stops counting when its
/// heartbeat expires); `None` while the index does not count this worker as live.
fn budget_share(workers: &[WorkerRow], me: &str, budget: u32) -> Option<(usize, f64)> {
    workers
        .iter()
        .find(|w| w.worker == me && w.state == WorkerState::Working)?;
    let live = workers
        .iter()
        .filter(|w| w.state == WorkerState::Working)
        .count();
    Some((live, f64::from(budget) / live.max(1) as f64))
}

/// Whether every other live worker has renewed its heartbeat since `seen`, the heartbeats read
/// once this worker's registration was committed. A worker reads the workers right after
/// renewing and lowers its share to count the new one, so once each has renewed since, each
/// counts this worker (a worker missing from `seen` registered later and counted it from the
/// start). Heartbeats are compared for change only: the index sets them to the start of the
/// renewing transaction, which may be earlier than a registration it cannot see yet.
fn made_room(seen: &[WorkerRow], workers: &[WorkerRow], me: &str) -> bool {
    workers
        .iter()
        .filter(|w| w.state == WorkerState::Working && w.worker != me)
        .all(|w| {
            seen.iter()
                .find(|s| s.worker == w.worker)
                .is_none_or(|s| s.heartbeat != w.heartbeat)
        })
}

/// Paces this worker's requests to its share, saying so when it changes (or `first`).
fn apply_share(ctx: &Ctx, id: &str, (live, share): (usize, f64), first: bool) {
    if let Some(p) = ctx.graph.pacer()
        && (first || (share - p.rate()).abs() > share * 1e-6)
    {
        p.set_rate(share);
        ctx.reporter.info(&format!(
            "worker {id}: {live} live worker(s); this one's share of the app's budget is {share:.0} requests/s"
        ));
    }
}

/// Waits until the other workers have made room for this one in the app's budget (they do at
/// their next heartbeat, within a quarter of the lease; a dead one's room is free once its
/// heartbeat expires), and sets the pacer to this worker's share before its first request (or
/// until the run is aborted).
pub(super) async fn take_share(
    ctx: &Ctx,
    w: &WorkerOptions,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    if ctx.graph.pacer().is_none() {
        return Ok(());
    }
    let mut said = false;
    let mut seen: Option<Vec<WorkerRow>> = None;
    loop {
        let (ix, id, lease) = (ctx.index.clone(), w.id.clone(), w.lease);
        // Renewed while it waits (the heartbeat task starts later), so that it stays counted.
        let workers = blocking(move || {
            ix.heartbeat(&id, &[], lease)?;
            ix.workers()
        })
        .await?;
        let seen = seen.get_or_insert_with(|| workers.clone());
        if let Some(share) = budget_share(&workers, &w.id, w.tenant_requests_per_second)
            && (share.0 == 1 || made_room(seen, &workers, &w.id))
        {
            apply_share(ctx, &w.id, share, true);
            return Ok(());
        }
        if !said {
            said = true;
            ctx.reporter.info(&format!(
                "worker {}: waiting for the other workers to make room in the app's request budget (at their next heartbeat)",
                w.id
            ));
        }
        let poll = (w.lease / 16).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::select! {
            // Aborted: every request now ends at once, whatever the pacer says.
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Backs up the mailboxes of `targets` this worker gets, then ends the worker (releasing what
/// it still holds). Reports in the order of `targets`.
pub(super) async fn run(
    ctx: &Arc<Ctx>,
    w: &WorkerOptions,
    targets: Vec<Target>,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Vec<MailboxReport> {
    let worker = Arc::new(Worker {
        opts: w.clone(),
        index: ctx.index.clone(),
        held: Mutex::new(HashMap::new()),
        taken: Mutex::new(HashSet::new()),
    });
    let order: HashMap<String, usize> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.mailbox.clone(), i))
        .collect();
    let targets: Arc<HashMap<String, Target>> = Arc::new(
        targets
            .into_iter()
            .map(|t| (t.mailbox.clone(), t))
            .collect(),
    );
    let stop_heartbeat = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat(
        ctx.clone(),
        worker.clone(),
        stop_heartbeat.clone(),
    ));
    let slots =
        (0..ctx.opts.parallel_mailboxes).map(|_| slot(ctx, &worker, &targets, progress, cancel));
    let mut reports: Vec<MailboxReport> = futures_util::future::join_all(slots)
        .await
        .into_iter()
        .flatten()
        .collect();
    stop_heartbeat.cancel();
    let _ = heartbeat.await;
    let (ix, id) = (worker.index.clone(), w.id.clone());
    if let Err(e) = blocking(move || ix.finish_worker(&id)).await {
        ctx.reporter.error(&format!(
            "worker {}: could not record its end ({e}); its leases expire on their own",
            w.id
        ));
    }
    let done = reports.iter().filter(|r| r.error.is_none()).count();
    ctx.reporter.info(&format!(
        "worker {}: {} mailbox(es) backed up here, {done} without error",
        w.id,
        reports.len()
    ));
    reports.sort_by_key(|r| order.get(&r.mailbox).copied().unwrap_or(usize::MAX));
    reports
}

/// One slot: takes mailboxes until none is left (or the run is aborted).
async fn slot(
    ctx: &Arc<Ctx>,
    worker: &Arc<Worker>,
    targets: &Arc<HashMap<String, Target>>,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Vec<MailboxReport> {
    let mut reports = Vec::new();
    let id = worker.opts.id.clone();
    // Past the time limit every mailbox would fail at once: leave them to other workers.
    while !cancel.is_cancelled() && !ctx.graph.past_time_limit() {
        let candidates: Vec<String> = {
            let taken = worker.taken();
            let mut c: Vec<String> = targets
                .keys()
                .filter(|m| !taken.contains(*m))
                .cloned()
                .collect();
            c.sort();
            c
        };
        if candidates.is_empty() {
            break;
        }
        let (ix, me, lease) = (worker.index.clone(), id.clone(), worker.opts.lease);
        let acquired = blocking(move || ix.acquire_lease(&me, &candidates, lease)).await;
        let (mailbox, taken_over_from) = match acquired {
            Ok(Acquired::Lease {
                mailbox,
                taken_over_from,
            }) => (mailbox, taken_over_from),
            Ok(Acquired::Done) => break,
            Ok(Acquired::Wait) => {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(worker.poll()) => continue,
                }
            }
            Err(e) => {
                ctx.reporter
                    .error(&format!("worker {id}: cannot take a mailbox: {e}"));
                reports.push(MailboxReport {
                    mailbox: "(leases)".into(),
                    error: Some(e.to_string()),
                    ..Default::default()
                });
                break;
            }
        };
        worker.taken().insert(mailbox.clone());
        let Some(target) = targets.get(&mailbox) else {
            // Not one of ours (cannot happen: we asked for ours only); give it back.
            let (ix, me, m) = (worker.index.clone(), id.clone(), mailbox.clone());
            let _ = blocking(move || ix.release_lease(&me, &m, false)).await;
            continue;
        };
        match &taken_over_from {
            Some(dead) => ctx.reporter.info(&format!(
                "{mailbox}: taken over from worker {dead}, whose lease expired; continuing from the index"
            )),
            None => ctx
                .reporter
                .info(&format!("{mailbox}: leased by worker {id}")),
        }
        let prefix = if target.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", target.prefix)
        };
        let store = ctx.store.clone();
        match blocking(move || store.remove_partial(&prefix)).await {
            Ok(n) if n > 0 => ctx.reporter.info(&format!(
                "{mailbox}: removed {n} partial file(s) left by an interrupted worker"
            )),
            Ok(_) => {}
            Err(e) => ctx
                .reporter
                .error(&format!("{mailbox}: cannot remove partial files: {e}")),
        }
        let p = progress.add(&mailbox);
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        worker.held().insert(
            mailbox.clone(),
            Held {
                progress: p.clone(),
                stop: stop.clone(),
                lost: lost.clone(),
            },
        );
        let target = Target {
            mailbox: target.mailbox.clone(),
            prefix: target.prefix.clone(),
        };
        let mut report = backup_mailbox(ctx, target, p, stop).await;
        worker.held().remove(&mailbox);
        if !lost.load(Ordering::Relaxed) {
            // Aborted: not done, so another worker takes it at once.
            let done = !cancel.is_cancelled();
            let (ix, me, m) = (worker.index.clone(), id.clone(), mailbox.clone());
            if let Err(e) = blocking(move || ix.release_lease(&me, &m, done)).await {
                ctx.reporter.error(&format!(
                    "{mailbox}: cannot release the lease ({e}); it expires on its own"
                ));
                report.error.get_or_insert(e.to_string());
            }
        }
        reports.push(report);
    }
    reports
}

/// Renews the worker and its leases every quarter of the lease until `stop`.
async fn heartbeat(ctx: Arc<Ctx>, worker: Arc<Worker>, stop: CancellationToken) {
    let lease = worker.opts.lease;
    let id = worker.opts.id.clone();
    let mut last_renewal = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(lease / 4) => {}
        }
        let progress: Vec<(String, u64)> = worker
            .held()
            .iter()
            .map(|(m, h)| (m.clone(), h.progress.processed()))
            .collect();
        let sent = Instant::now();
        let ix = worker.index.clone();
        let me = id.clone();
        let budget = worker.opts.tenant_requests_per_second;
        let result = blocking(move || {
            let lost = ix.heartbeat(&me, &progress, lease)?;
            // The count only paces requests: a failure to read it keeps the current share.
            let share = ix
                .workers()
                .ok()
                .and_then(|ws| budget_share(&ws, &me, budget));
            Ok((lost, share))
        })
        .await;
        match result {
            Ok((lost, share)) => {
                last_renewal = sent;
                for m in lost {
                    if let Some(h) = worker.held().get(&m) {
                        ctx.reporter.error(&format!(
                            "{m}: another worker took this mailbox over (our lease had expired); stopping it here"
                        ));
                        h.lost.store(true, Ordering::Relaxed);
                        h.stop.store(true, Ordering::Relaxed);
                    }
                }
                if let Some(share) = share {
                    apply_share(&ctx, &id, share, false);
                }
            }
            Err(e) => {
                ctx.reporter
                    .error(&format!("worker {id}: heartbeat failed: {e}"));
                if last_renewal.elapsed() >= lease {
                    for (m, h) in worker.held().iter() {
                        h.stop.store(true, Ordering::Relaxed);
                        if !h.lost.swap(true, Ordering::Relaxed) {
                            ctx.reporter.error(&format!(
                                "{m}: lease not renewed for {}s; stopping it here (another worker may take it over)",
                                lease.as_secs()
                            ));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(worker: &str, started: &str, heartbeat: &str, state: WorkerState) -> WorkerRow {
        WorkerRow {
            worker: worker.into(),
            started: format!("2026-12-06T10:00:{started}Z"),
            heartbeat: format!("2026-12-06T10:00:{heartbeat}Z"),
            finished: (state == WorkerState::Finished).then(|| "2026-12-06T10:01:00.000Z".into()),
            state,
            leases: Vec::new(),
        }
    }

    #[test]
    fn a_worker_alone_has_the_whole_budget() {
        let ws = [row("a", "00.000", "00.000", WorkerState::Working)];
        assert_eq!(budget_share(&ws, "a", 2000), Some((1, 2000.0)));
    }

    #[test]
    fn a_new_worker_waits_until_the_others_renewed_since_it_registered() {
        let new = row("b", "06.000", "06.000", WorkerState::Working);
        // Read once "b" was registered: "a" renewed at a time (its transaction's start) later
        // than "b" registered, but may have read the workers before "b" was committed.
        let seen = [
            row("a", "00.000", "06.500", WorkerState::Working),
            new.clone(),
        ];
        assert!(!made_room(&seen, &seen, "b"));
        // "a" renewed again, then counted "b": half each.
        let now = [row("a", "00.000", "21.500", WorkerState::Working), new];
        assert!(made_room(&seen, &now, "b"));
        assert_eq!(budget_share(&now, "b", 2000), Some((2, 1000.0)));
        assert_eq!(budget_share(&now, "a", 2000), Some((2, 1000.0)));
    }

    #[test]
    fn dead_finished_and_later_workers_hold_no_one_up() {
        let seen = [
            row("dead", "00.000", "01.000", WorkerState::Working),
            row("done", "00.000", "02.000", WorkerState::Working),
            row("b", "08.000", "08.000", WorkerState::Working),
        ];
        let now = [
            row("dead", "00.000", "01.000", WorkerState::Dead),
            row("done", "00.000", "02.000", WorkerState::Finished),
            row("later", "09.000", "09.000", WorkerState::Working),
            row("b", "08.000", "08.000", WorkerState::Working),
        ];
        assert!(made_room(&seen, &now, "b"));
        assert_eq!(budget_share(&now, "b", 30), Some((2, 15.0)));
    }

    #[test]
    fn a_worker_the_index_does_not_count_as_live_takes_no_share() {
        let ws = [
            row("a", "00.000", "01.000", WorkerState::Dead),
            row("b", "00.000", "09.000", WorkerState::Working),
        ];
        assert_eq!(budget_share(&ws, "a", 30), None);
        assert_eq!(budget_share(&ws, "nobody", 30), None);
    }
}
