//! Maildir output of an export: one Maildir per folder. Writer threads (`write`) write each
//! message completely, into an anonymous file (`anonymous`) or into `tmp/`; a committer thread
//! per folder (`commit`) makes what they finished durable and moves it into `cur/`. See the
//! parent module for the names, flags and guarantees; it does not choose the folders.

use super::{Durability, ExportProgress, ExportReport, Feed, from_durable};
use crate::error::Error;
use crate::index::Hit;
use crate::store::MessageStore;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

mod anonymous;
mod commit;
mod write;

use anonymous::AnonymousDir;
use commit::commit_maildir;
use write::{Target, stage_maildir};

#[cfg(test)]
mod tests;

/// Folders whose committer may still be finishing while the next folder is written.
pub(super) const COMMITTERS_BEHIND: usize = 2;

/// The Maildir committer of one folder: the messages and bytes it moved into `cur/`.
pub(super) type Committer<'scope> =
    std::thread::ScopedJoinHandle<'scope, Result<(u64, u64), Error>>;

/// Waits for a committer and counts what it moved.
pub(super) fn join_committer(
    committer: Committer<'_>,
    report: &mut ExportReport,
) -> Result<(), Error> {
    let (messages, bytes) = committer
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    report.messages += messages;
    report.bytes += bytes;
    Ok(())
}

/// Finished messages that may wait for the committer before the writers pause.
const STAGED_AHEAD: usize = 4096;

/// Finished messages the writer hands over at a time: one wake-up of the committer per
/// message cost more than the renames.
const HANDOFF: usize = 64;

/// End of the unique part of the Maildir files an export writes (`<object name>.mailbackup`).
const MAILDIR_SUFFIX: &str = ".mailbackup";

/// What the writers and the committers of one export share: the durability asked for, whether
/// a committer failed, and the anonymous files open.
pub(super) struct Shared {
    /// Whether messages are made durable before they are moved into `cur/` (and mbox files
    /// before they are renamed into place).
    durability: Durability,
    failed: AtomicBool,
    anonymous_open: AtomicUsize,
    /// Anonymous files that may be open at once: each stays open until its batch is linked
    /// into `cur/`, so a quarter of the process's open-file limit (the rest of the messages
    /// go through `tmp/`).
    anonymous_budget: usize,
}

impl Shared {
    pub(super) fn new(durability: Durability) -> Self {
        let budget = open_file_limit().map_or(ANONYMOUS_MAX, |n| {
            usize::try_from(n / 4)
                .unwrap_or(ANONYMOUS_MAX)
                .min(ANONYMOUS_MAX)
        });
        Self::with_budget(durability, budget)
    }

    fn with_budget(durability: Durability, anonymous_budget: usize) -> Self {
        Shared {
            durability,
            failed: AtomicBool::new(false),
            anonymous_open: AtomicUsize::new(0),
            anonymous_budget,
        }
    }

    /// The durability the export was asked for (mbox files follow it too).
    pub(super) fn durability(&self) -> Durability {
        self.durability
    }

    /// Whether messages are made durable before they are moved into `cur/`.
    fn durable(&self) -> bool {
        self.durability == Durability::Durable
    }

    /// Whether a committer has failed (its error is returned when it is joined).
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Counts one more anonymous file open, unless the budget is spent.
    fn take_anonymous(&self) -> bool {
        self.anonymous_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.anonymous_budget).then_some(n + 1)
            })
            .is_ok()
    }
}

/// At most this many anonymous files open at once, whatever the open-file limit.
const ANONYMOUS_MAX: usize = 16 * 1024;

/// The process's soft limit of open files; `None` when unlimited or unknown.
fn open_file_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    return rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    #[cfg(not(target_os = "linux"))]
    None
}

/// A message written completely, not yet durable nor in `cur/`.
struct Staged<'a> {
    name: String,
    bytes: u64,
    pending: Pending<'a>,
}

/// Where a staged message waits for its batch to be durable.
enum Pending<'a> {
    /// The file `tmp/<name>`, renamed into `cur/`.
    InTmp,
    /// An anonymous file (`O_TMPFILE`) on `cur/`'s file system, given its name in `cur/` by a
    /// link: the writer makes no directory entry (looking up and adding names in `tmp/` was
    /// a fifth of its work, and the renames out of `tmp/` held `tmp/` against it), and a crash
    /// leaves nothing behind.
    Anonymous(AnonymousFile<'a>),
}

/// An open anonymous file, counted in [`Shared`] while open.
struct AnonymousFile<'a> {
    file: File,
    shared: &'a Shared,
}

impl Drop for AnonymousFile<'_> {
    fn drop(&mut self) {
        self.shared.anonymous_open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Exports one folder's messages into the Maildir `dir`. The writers (this thread and
/// another) write each message completely (into an anonymous file where the file system has
/// them, else into `tmp/`) and hand it over; the committer, spawned in `scope`, gathers what
/// is handed over for a while (or [`STAGED_AHEAD`] messages), makes it durable with one
/// `syncfs` (else an fsync each), links or renames it into `cur/` and fsyncs `cur/`. So the
/// disk flushes one batch while the next is being written, and the batches are as large as
/// the disk is slow, where fixed batches waited for the disk once per batch. Returns once
/// every message is written, with the committer still finishing the last batch: the caller
/// joins it (after starting the next folder). When writing fails, the committer is joined
/// here first (it moves what was finished) and the error returned.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_maildir<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    feed: &mut Feed<'_>,
    group: &(String, String),
    store: &dyn MessageStore,
    dir: &Path,
    progress: &'scope ExportProgress,
    shared: &'scope Shared,
    report: &mut ExportReport,
) -> Result<Committer<'scope>, Error> {
    let (cur, new, tmp) = (dir.join("cur"), dir.join("new"), dir.join("tmp"));
    // Made durable by the committer's first flush, not here: an fsync per new folder stalled
    // the writer 10-20 ms per folder while the disk was busy with the last one's messages.
    let mut created = Vec::new();
    for d in [&cur, &new, &tmp] {
        for parent in durable_write::create_dir_all_unsynced(d).map_err(from_durable)? {
            if !created.contains(&parent) {
                created.push(parent);
            }
        }
    }
    let earlier = earlier_files(&[&cur, &new])?;
    let anonymous = AnonymousDir::open(&cur, &tmp).map(Arc::new);
    let (tx, rx) = mpsc::sync_channel::<Vec<Staged>>(STAGED_AHEAD / HANDOFF);
    let folder = dir.to_path_buf();
    let committer = {
        let anonymous = anonymous.clone();
        scope.spawn(move || {
            let folder = commit::Folder {
                dir: &folder,
                anonymous: anonymous.as_deref(),
            };
            commit_maildir(rx, earlier, created, folder, progress, shared)
        })
    };
    let target = Target {
        cur: &cur,
        tmp: &tmp,
        anonymous: anonymous.as_deref(),
    };
    let written = stage_maildir(feed, group, store, &target, &tx, shared, report);
    drop(tx);
    match written {
        Ok(()) => Ok(committer),
        Err(e) => {
            join_committer(committer, report)?;
            Err(e)
        }
    }
}

/// `<object name>.mailbackup:2,<flags>`: `S` when the message was read when backed up.
fn maildir_name(hit: &Hit) -> String {
    let key = hit.headers.key.as_str();
    let stem = key.rsplit('/').next().unwrap_or(key);
    let stem = stem.strip_suffix(".eml").unwrap_or(stem);
    let flags = if hit.headers.is_read == Some(true) {
        "S"
    } else {
        ""
    };
    format!("{stem}{MAILDIR_SUFFIX}:2,{flags}")
}

/// The unique part of a Maildir file name: what comes before the `:2,<flags>` info.
fn unique_part(name: &str) -> &str {
    name.split_once(':').map_or(name, |(u, _)| u)
}

/// Files of earlier exports in `dirs` (a Maildir's `cur/` and `new/`), by unique part: a message
/// exported again replaces its earlier file, whatever flags that file carries (the read state
/// may have changed since, or a mail client may have added flags).
fn earlier_files(dirs: &[&Path]) -> Result<HashMap<String, Vec<PathBuf>>, Error> {
    let mut out: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for d in dirs {
        let ctx = |e| Error::export_io(format!("cannot list {}", d.display()), e);
        for entry in std::fs::read_dir(d).map_err(ctx)? {
            let entry = entry.map_err(ctx)?;
            let name = entry.file_name();
            let Some(unique) = name.to_str().map(unique_part) else {
                continue;
            };
            if unique.ends_with(MAILDIR_SUFFIX) {
                out.entry(unique.to_string())
                    .or_default()
                    .push(entry.path());
            }
        }
    }
    Ok(out)
}
