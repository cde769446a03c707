//! Watching outboxes: a take-over pass when a file appears, and on a timer.
//!
//! One file system watcher serves every outbox (one inotify instance, however many partners:
//! the kernel allows only a few instances per user). An event is only a trigger: it names the
//! outbox, and after `debounce` (which gathers a burst of files into one pass) that outbox gets
//! a take-over pass that looks at the whole directory. So a lost or merged event costs nothing
//! but latency, and every `poll_interval` each outbox gets a pass anyway: the fallback that
//! finds files where events do not come (a network file system, a watcher that could not be
//! set up, `events = false`).
//!
//! Not `notify-debouncer-full`: it tracks events per path to rebuild renames, which a pass over
//! the directory makes unnecessary; a quiet period is all the debouncing needed here.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Outbox, OutboxError, TakenOver, is_ready_name};

/// How outboxes are watched. In the oftp configuration (all optional):
///
/// ```toml
/// [gateway.outbox]
/// events = true          # use file system events; false on file systems without them
/// debounce_ms = 250      # gather a burst of files this long before a pass
/// poll_interval_secs = 5 # a pass over every outbox at least this often
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSettings {
    /// Whether to use file system events (else polling alone).
    pub events: bool,
    /// Milliseconds of quiet gathered after an event before the pass.
    pub debounce_ms: u64,
    /// Seconds between passes over every outbox, events or not (at least 1).
    pub poll_interval_secs: u64,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            events: true,
            debounce_ms: 250,
            poll_interval_secs: 5,
        }
    }
}

impl WatchSettings {
    fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_ms)
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs.max(1))
    }
}

/// What [`watch`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutboxEvent {
    /// A file is durably in its partner's queue.
    TakenOver(TakenOver),
    /// An outbox cannot be read, its queue written, or its events watched. Reported once per
    /// distinct problem, not on every pass; passes go on, so the files come when the problem
    /// is fixed.
    Problem {
        /// The partner.
        partner: Arc<str>,
        /// What went wrong.
        error: OutboxError,
    },
}

/// What a file system event asks for.
#[derive(Debug)]
enum Trigger {
    /// A pass over the outbox at this index.
    Outbox(usize),
    /// A pass over every outbox (events were lost or the watcher failed).
    All,
}

/// Per outbox state of the loop.
struct Watched {
    outbox: Arc<Outbox>,
    /// Whether the watcher has its directory.
    registered: bool,
    /// Whether a failure to watch it was reported (once: polling covers it).
    watch_failure_reported: bool,
    /// The last problem reported, so that it is not reported on every pass.
    last_problem: Option<String>,
}

/// Watches `outboxes` and reports each file taken over, until `shutdown` is cancelled or the
/// receiver of `events` is dropped. Every outbox gets a pass at once (files that were there
/// before the start), on events, and every `poll_interval_secs`.
pub async fn watch(
    outboxes: Vec<Outbox>,
    settings: WatchSettings,
    events: mpsc::Sender<OutboxEvent>,
    shutdown: CancellationToken,
) {
    let mut state: Vec<Watched> = outboxes
        .into_iter()
        .map(|outbox| Watched {
            outbox: Arc::new(outbox),
            registered: false,
            watch_failure_reported: false,
            last_problem: None,
        })
        .collect();
    let by_dir: HashMap<PathBuf, usize> = state
        .iter()
        .enumerate()
        .map(|(i, w)| (w.outbox.dir().to_path_buf(), i))
        .collect();
    let (trigger_tx, mut triggers) = mpsc::unbounded_channel();
    let mut watcher = if settings.events {
        let by_dir = by_dir.clone();
        match notify::recommended_watcher(move |event| {
            for t in triggers_of(event, &by_dir) {
                let _ = trigger_tx.send(t);
            }
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                for w in &mut state {
                    if !report_watch_failure(w, &e, &events).await {
                        return;
                    }
                }
                None
            }
        }
    } else {
        None
    };

    let all: BTreeSet<usize> = (0..state.len()).collect();
    let mut next_poll = Instant::now();
    loop {
        let due: BTreeSet<usize> = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next_poll) => {
                next_poll = Instant::now() + settings.poll_interval();
                if let Some(w) = watcher.as_mut()
                    && !register(w, &mut state, &events).await
                {
                    return;
                }
                all.clone()
            }
            Some(first) = triggers.recv() => {
                // Gather the burst.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(settings.debounce()) => {}
                }
                let mut due = BTreeSet::new();
                let mut add = |t: Trigger| match t {
                    Trigger::Outbox(i) => {
                        due.insert(i);
                    }
                    Trigger::All => due.extend(all.iter().copied()),
                };
                add(first);
                while let Ok(t) = triggers.try_recv() {
                    add(t);
                }
                due
            }
        };
        for i in due {
            if shutdown.is_cancelled() || !pass(&mut state[i], &events).await {
                return;
            }
        }
    }
}

/// The triggers a file system event (or watcher error) asks for.
fn triggers_of(
    event: notify::Result<notify::Event>,
    by_dir: &HashMap<PathBuf, usize>,
) -> Vec<Trigger> {
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "outbox watcher error; looking at every outbox");
            return vec![Trigger::All];
        }
    };
    if event.need_rescan() {
        return vec![Trigger::All];
    }
    match event.kind {
        // A file leaving (our own take-over renames among them) or being read asks for nothing.
        EventKind::Remove(_)
        | EventKind::Access(_)
        | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Vec::new(),
        _ => event
            .paths
            .iter()
            .filter_map(|p| outbox_of(p, by_dir))
            .map(Trigger::Outbox)
            .collect(),
    }
}

/// The outbox a path of an event concerns: the outbox itself, or a ready name in it.
fn outbox_of(path: &Path, by_dir: &HashMap<PathBuf, usize>) -> Option<usize> {
    if let Some(&i) = by_dir.get(path) {
        return Some(i);
    }
    let name = path.file_name()?;
    if !is_ready_name(name) {
        return None;
    }
    by_dir.get(path.parent()?).copied()
}

/// Adds every outbox the watcher does not have yet (a directory that did not exist at start
/// may exist now). `false` when the receiver is gone.
async fn register(
    watcher: &mut RecommendedWatcher,
    state: &mut [Watched],
    events: &mpsc::Sender<OutboxEvent>,
) -> bool {
    for w in state.iter_mut().filter(|w| !w.registered) {
        match watcher.watch(w.outbox.dir(), RecursiveMode::NonRecursive) {
            Ok(()) => w.registered = true,
            Err(e) => {
                if !report_watch_failure(w, &e, events).await {
                    return false;
                }
            }
        }
    }
    true
}

/// One take-over pass over one outbox, reporting what it took and any new problem. `false`
/// when the receiver is gone.
async fn pass(w: &mut Watched, events: &mpsc::Sender<OutboxEvent>) -> bool {
    let outbox = w.outbox.clone();
    let tx = events.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut open = true;
        let result = outbox.take_over(&mut |t| {
            open = tx.blocking_send(OutboxEvent::TakenOver(t)).is_ok();
            open
        });
        (result, open)
    })
    .await;
    match result {
        Ok((Ok(_), open)) => {
            w.last_problem = None;
            open
        }
        Ok((Err(error), true)) => report_problem(w, error, events).await,
        Ok((Err(_), false)) => false,
        Err(join) => {
            // The pass panicked or was cancelled by the runtime shutting down.
            tracing::error!(partner = %w.outbox.partner(), error = %join, "outbox pass failed");
            !join.is_cancelled()
        }
    }
}

/// Reports, once per outbox, that it cannot be watched. `false` when the receiver is gone.
async fn report_watch_failure(
    w: &mut Watched,
    error: &notify::Error,
    events: &mpsc::Sender<OutboxEvent>,
) -> bool {
    if w.watch_failure_reported {
        return true;
    }
    w.watch_failure_reported = true;
    let error = OutboxError::Watch {
        dir: w.outbox.dir().to_path_buf(),
        message: error.to_string(),
    };
    send_problem(w, error, events).await
}

/// Reports `error` unless it is the one reported last. `false` when the receiver is gone.
async fn report_problem(
    w: &mut Watched,
    error: OutboxError,
    events: &mpsc::Sender<OutboxEvent>,
) -> bool {
    let text = error.to_string();
    if w.last_problem.as_deref() == Some(&text) {
        return true;
    }
    w.last_problem = Some(text);
    send_problem(w, error, events).await
}

/// Logs `error` and sends it. `false` when the receiver is gone.
async fn send_problem(w: &Watched, error: OutboxError, events: &mpsc::Sender<OutboxEvent>) -> bool {
    tracing::warn!(partner = %w.outbox.partner(), "{error}");
    events
        .send(OutboxEvent::Problem {
            partner: w.outbox.partner().clone(),
            error,
        })
        .await
        .is_ok()
}
