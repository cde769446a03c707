//! Maildir output of an export: one Maildir per folder, each message written into `tmp/` by
//! the exporting thread and moved into `cur/` by a committer thread once durable. See the
//! parent module for the names, flags and guarantees; it does not choose the folders.

use super::{
    COPY_BUFFER, CopyError, ExportProgress, ExportReport, Feed, Format, from_durable, open_message,
    pump,
};
use crate::error::Error;
use crate::index::Hit;
use crate::store::MessageStore;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

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

/// Messages written into `tmp/` that may wait for the committer before the writer pauses.
const STAGED_AHEAD: usize = 4096;

/// Finished messages the writer hands over at a time: one wake-up of the committer per
/// message cost more than the renames.
const HANDOFF: usize = 64;

/// How long the committer gathers finished messages before it makes them durable: enough for
/// a few hundred messages, so a 20,000-message folder takes a few dozen waits for the disk.
const GATHER_FOR: Duration = Duration::from_millis(100);

/// End of the unique part of the Maildir files an export writes (`<object name>.mailbackup`).
const MAILDIR_SUFFIX: &str = ".mailbackup";

/// A message written completely into `tmp/`, not yet durable nor in `cur/`.
struct Staged {
    name: String,
    bytes: u64,
}

/// Exports one folder's messages into the Maildir `dir`. Two threads share the work: this one
/// writes each message into `tmp/` and hands it over; the committer, spawned in `scope`, gathers
/// what is handed over for [`GATHER_FOR`] (or [`STAGED_AHEAD`] messages), makes them durable
/// with one `syncfs` (else an fsync each), renames them into `cur/` and fsyncs `cur/`. So the
/// disk flushes one batch while the next is being written, and the batches are as large as the
/// disk is slow, where fixed batches waited for the disk once per batch. Returns once every
/// message is written, with the committer still finishing the last batch: the caller joins it
/// (after starting the next folder). When writing fails, the committer is joined here first
/// (it moves what was finished) and the error returned.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_maildir<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    feed: &mut Feed<'_>,
    group: &(String, String),
    store: &dyn MessageStore,
    dir: &Path,
    progress: &'scope ExportProgress,
    committer_failed: &'scope AtomicBool,
    report: &mut ExportReport,
) -> Result<Committer<'scope>, Error> {
    let (cur, new, tmp) = (dir.join("cur"), dir.join("new"), dir.join("tmp"));
    for d in [&cur, &new, &tmp] {
        durable_write::create_dir_all(d).map_err(from_durable)?;
    }
    let earlier = earlier_files(&[&cur, &new])?;
    let (tx, rx) = mpsc::sync_channel::<Vec<Staged>>(STAGED_AHEAD / HANDOFF);
    let folder = dir.to_path_buf();
    let committer =
        scope.spawn(move || commit_maildir(rx, earlier, &folder, progress, committer_failed));
    let written = stage_maildir(feed, group, store, &tmp, &tx, committer_failed, report);
    drop(tx);
    match written {
        Ok(()) => Ok(committer),
        Err(e) => {
            join_committer(committer, report)?;
            Err(e)
        }
    }
}

/// Writes the group's messages into `tmp/`, handing them to the committer [`HANDOFF`] at a time
/// once complete. Stops at the first failure, removing the file it was writing and handing
/// over those finished before it, or when the committer has failed.
fn stage_maildir(
    feed: &mut Feed<'_>,
    group: &(String, String),
    store: &dyn MessageStore,
    tmp: &Path,
    committer: &SyncSender<Vec<Staged>>,
    committer_failed: &AtomicBool,
    report: &mut ExportReport,
) -> Result<(), Error> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut finished: Vec<Staged> = Vec::with_capacity(HANDOFF);
    let hand_over = |finished: &mut Vec<Staged>| {
        if finished.is_empty() {
            return;
        }
        let handed = std::mem::replace(finished, Vec::with_capacity(HANDOFF));
        if let Err(mpsc::SendError(lost)) = committer.send(handed) {
            // The committer has ended with an error, which the caller reports.
            for s in lost {
                let _ = std::fs::remove_file(tmp.join(s.name));
            }
        }
    };
    let result = (|| {
        while !committer_failed.load(Ordering::Acquire) {
            let Some(hit) = feed.next_in(group, Format::Maildir)? else {
                break;
            };
            let Some(mut r) = open_message(store, &hit)? else {
                report.missing.push(hit.headers.key.to_string());
                continue;
            };
            let name = maildir_name(&hit);
            let path = tmp.join(&name);
            let written = File::create(&path)
                .map_err(CopyError::Write)
                .and_then(|mut f| pump(&mut r, &mut buf, |b| f.write_all(b)));
            match written {
                Ok(bytes) => finished.push(Staged { name, bytes }),
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e.into_error(&hit, &path));
                }
            }
            if finished.len() >= HANDOFF {
                hand_over(&mut finished);
            }
        }
        Ok(())
    })();
    // What was finished before a failure is kept.
    hand_over(&mut finished);
    result
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

/// The committer: moves what `staged` hands over into `cur/` in batches, each made durable
/// before its renames, `cur/` fsynced after them, and only then the files an earlier export
/// wrote for the same messages removed. A crash leaves each message complete in `tmp/` or in
/// `cur/`, never partial in `cur/`, and never without a copy. On a failure it raises
/// `failed`, removes from `tmp/` every message it was handed and did not move, and returns the
/// error; otherwise the messages and bytes it moved.
fn commit_maildir(
    staged: Receiver<Vec<Staged>>,
    mut earlier: HashMap<String, Vec<PathBuf>>,
    dir: &Path,
    progress: &ExportProgress,
    failed: &AtomicBool,
) -> Result<(u64, u64), Error> {
    let (cur, new, tmp) = (dir.join("cur"), dir.join("new"), dir.join("tmp"));
    let mut moved = (0u64, 0u64);
    let mut removed_earlier = false;
    let mut batch: Vec<Staged> = Vec::new();
    let mut result = Ok(());
    while let Ok(first) = staged.recv() {
        batch.extend(first);
        // Gather for a while: a batch per message would wait for the disk once per message.
        let deadline = Instant::now() + GATHER_FOR;
        while batch.len() < STAGED_AHEAD {
            match staged.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        result = commit_maildir_batch(&mut batch, &mut earlier, &cur, &tmp, |n| {
            moved.0 += 1;
            moved.1 += n;
            progress.done.fetch_add(1, Ordering::Relaxed);
            progress.bytes.fetch_add(n, Ordering::Relaxed);
        })
        .map(|removed| removed_earlier |= removed);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() && removed_earlier {
        // The removals of earlier files, durable before the export says it is done.
        result = durable_write::sync_dir(&cur)
            .and_then(|()| durable_write::sync_dir(&new))
            .map_err(from_durable);
    }
    if let Err(e) = result {
        failed.store(true, Ordering::Release);
        // Nothing the export did not finish stays behind in tmp/: what is left of the batch
        // and what the writer still hands over until it sees `failed` (at its next message).
        for s in batch.drain(..).chain(staged.iter().flatten()) {
            let _ = std::fs::remove_file(tmp.join(s.name));
        }
        return Err(e);
    }
    Ok(moved)
}

/// Makes `batch` durable (one `syncfs`, else an fsync each), renames it into `cur/`, fsyncs
/// `cur/`, then removes the earlier files of the same messages, calling `moved` with each
/// message's size. Drains `batch` as far as it got. Returns whether it removed an earlier file.
fn commit_maildir_batch(
    batch: &mut Vec<Staged>,
    earlier: &mut HashMap<String, Vec<PathBuf>>,
    cur: &Path,
    tmp: &Path,
    mut moved: impl FnMut(u64),
) -> Result<bool, Error> {
    if !sync_filesystem(tmp) {
        for s in batch.iter() {
            let path = tmp.join(&s.name);
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::export_io(format!("cannot fsync {}", path.display()), e))?;
        }
    }
    let mut renamed = 0;
    let result = batch.iter().try_for_each(|s| {
        let (from, to) = (tmp.join(&s.name), cur.join(&s.name));
        std::fs::rename(&from, &to).map_err(|e| {
            Error::export_io(
                format!("cannot move {} to {}", from.display(), to.display()),
                e,
            )
        })?;
        renamed += 1;
        Ok(())
    });
    let synced = durable_write::sync_dir(cur).map_err(from_durable);
    let done: Vec<Staged> = batch.drain(..renamed).collect();
    result.and(synced)?;
    let mut removed_earlier = false;
    for s in done {
        let to = cur.join(&s.name);
        for old in earlier.remove(unique_part(&s.name)).unwrap_or_default() {
            if old == to {
                continue;
            }
            match std::fs::remove_file(&old) {
                Ok(()) => removed_earlier = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::export_io(
                        format!(
                            "cannot remove {}, an earlier export of {}",
                            old.display(),
                            to.display()
                        ),
                        e,
                    ));
                }
            }
        }
        moved(s.bytes);
    }
    Ok(removed_earlier)
}

/// Flushes the whole file system holding `dir` (`syncfs(2)`, Linux): one call makes a batch
/// durable instead of one fsync (and journal commit) per file. `false` when not available or
/// failed; the caller then fsyncs file by file.
fn sync_filesystem(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    if let Ok(d) = File::open(dir) {
        return rustix::fs::syncfs(&d).is_ok();
    }
    let _ = dir;
    false
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
