//! The committer of a Maildir export's folder: gathers what the writers finished, makes it
//! durable (one `syncfs`, else an fsync each), moves it into `cur/` (links anonymous files,
//! renames those in `tmp/`), fsyncs `cur/`, then removes the files an earlier export wrote for
//! the same messages. It does not write message bytes.

use super::super::{ExportProgress, from_durable};
use super::anonymous::AnonymousDir;
use super::{Pending, STAGED_AHEAD, Shared, Staged, unique_part};
use crate::error::Error;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// How long the committer gathers finished messages before it makes them durable: enough for
/// a few hundred messages, so a 20,000-message folder takes a few dozen waits for the disk.
const GATHER_FOR: Duration = Duration::from_millis(100);

/// The committer: moves what `staged` hands over into `cur/` in batches, each made durable
/// before its links or renames, `cur/` fsynced after them, and only then the files an earlier
/// export wrote for the same messages removed. A crash leaves each message complete in `tmp/`
/// or in `cur/` (or, anonymous, nowhere), never partial in `cur/`, and never without a copy.
/// On a failure it raises the shared `failed`, removes from `tmp/` every message it was handed
/// and did not move (anonymous ones vanish when closed), and returns the error; otherwise the
/// messages and bytes it moved.
pub(super) fn commit_maildir<'a>(
    staged: Receiver<Vec<Staged<'a>>>,
    mut earlier: HashMap<String, Vec<PathBuf>>,
    mut created: Vec<PathBuf>,
    folder: Folder<'_>,
    progress: &ExportProgress,
    shared: &Shared,
) -> Result<(u64, u64), Error> {
    let dir = folder.dir;
    let (cur, new, tmp) = (dir.join("cur"), dir.join("new"), dir.join("tmp"));
    let into = Into {
        cur: &cur,
        tmp: &tmp,
        anonymous: folder.anonymous,
        durable: shared.durable(),
    };
    if !shared.durable() {
        created.clear();
    }
    let mut moved = (0u64, 0u64);
    let mut removed_earlier = false;
    let mut batch: Vec<Staged> = Vec::new();
    let mut result = Ok(());
    while let Ok(first) = staged.recv() {
        batch.extend(first);
        // Gather for a while: a batch per message would wait for the disk once per message.
        let deadline = Instant::now() + GATHER_FOR;
        while shared.durable() && batch.len() < STAGED_AHEAD {
            match staged.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        result = commit_maildir_batch(&mut batch, &mut earlier, &mut created, into, |n| {
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
    if result.is_ok() {
        // The folders, when no batch made them durable (every message missing), and the
        // removals of earlier files, durable before the export says it is done.
        let mut to_sync = created;
        if removed_earlier && shared.durable() {
            to_sync.extend([cur.clone(), new.clone()]);
        }
        result = to_sync
            .iter()
            .try_for_each(|d| durable_write::sync_dir(d))
            .map_err(from_durable);
    }
    if let Err(e) = result {
        shared.failed.store(true, Ordering::Release);
        // Nothing the export did not finish stays behind: what is left of the batch and what
        // the writer still hands over until it sees `failed` (at its next message).
        discard(&tmp, batch.drain(..).chain(staged.iter().flatten()));
        return Err(e);
    }
    Ok(moved)
}

/// Removes staged messages that will not be moved: a file in `tmp/` is deleted, an anonymous
/// file closed.
pub(super) fn discard<'a>(tmp: &Path, staged: impl IntoIterator<Item = Staged<'a>>) {
    for s in staged {
        if let Pending::InTmp = s.pending {
            let _ = std::fs::remove_file(tmp.join(&s.name));
        }
    }
}

/// The Maildir a committer moves messages into.
#[derive(Clone, Copy)]
pub(super) struct Folder<'a> {
    pub(super) dir: &'a Path,
    /// Where the writers made anonymous files, when the file system has them.
    pub(super) anonymous: Option<&'a AnonymousDir>,
}

/// [`Folder`] with the paths of its `cur/` and `tmp/`.
#[derive(Clone, Copy)]
struct Into<'a> {
    cur: &'a Path,
    tmp: &'a Path,
    anonymous: Option<&'a AnonymousDir>,
    /// Whether messages are made durable before they are moved (not with `--no-fsync`).
    durable: bool,
}

/// Makes `batch` durable (one `syncfs`, which also covers the folders just `created`; else
/// an fsync each, and of those folders), moves it into `cur/` (links the anonymous files,
/// renames those in `tmp/`), fsyncs `cur/`, then removes the earlier files of the same
/// messages, calling `moved` with each message's size. Without durability, only the moves and
/// removals. Drains `batch` as far as it got. Returns whether it removed an earlier file.
fn commit_maildir_batch(
    batch: &mut Vec<Staged>,
    earlier: &mut HashMap<String, Vec<PathBuf>>,
    created: &mut Vec<PathBuf>,
    into: Into<'_>,
    mut moved: impl FnMut(u64),
) -> Result<bool, Error> {
    let Into {
        cur, tmp, durable, ..
    } = into;
    if durable && !sync_filesystem(cur) {
        for s in batch.iter() {
            let path = tmp.join(&s.name);
            match &s.pending {
                Pending::Anonymous(a) => a.file.sync_all(),
                Pending::InTmp => File::open(&path).and_then(|f| f.sync_all()),
            }
            .map_err(|e| Error::export_io(format!("cannot fsync {}", path.display()), e))?;
        }
        created
            .iter()
            .try_for_each(|d| durable_write::sync_dir(d))
            .map_err(from_durable)?;
    }
    created.clear();
    let mut placed = 0;
    let result = batch.iter().try_for_each(|s| {
        place(s, into)?;
        placed += 1;
        Ok(())
    });
    let synced = match durable {
        true => durable_write::sync_dir(cur).map_err(from_durable),
        false => Ok(()),
    };
    let done: Vec<Staged> = batch.drain(..placed).collect();
    result.and(synced)?;
    let mut removed_earlier = false;
    for s in done {
        if let Some(olds) = earlier.remove(unique_part(&s.name)) {
            let to = cur.join(&s.name);
            for old in olds.iter().filter(|old| **old != to) {
                match std::fs::remove_file(old) {
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
        }
        moved(s.bytes);
    }
    Ok(removed_earlier)
}

/// Gives a durable staged message its name in `cur/`, replacing a file of that name (an
/// earlier export with the same flags) in one step: an anonymous file is linked there (through
/// `tmp/` and a rename when the name is taken), a file in `tmp/` renamed.
fn place(s: &Staged, into: Into<'_>) -> Result<(), Error> {
    let anonymous = match (&s.pending, into.anonymous) {
        (Pending::Anonymous(a), Some(dir)) => Some((&a.file, dir)),
        _ => None,
    };
    if let Some((file, dir)) = anonymous {
        match dir.link_into_cur(file, &s.name) {
            Ok(()) => return Ok(()),
            // A link cannot replace a file (an earlier export's, with the same flags); a
            // rename can: linked into tmp/ below, then renamed.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let to = into.cur.join(&s.name);
                return Err(Error::export_io(
                    format!("cannot create {}", to.display()),
                    e,
                ));
            }
        }
    }
    let (from, to) = (into.tmp.join(&s.name), into.cur.join(&s.name));
    if let Some((file, dir)) = anonymous {
        // An earlier interrupted attempt may have left `from`.
        let _ = std::fs::remove_file(&from);
        dir.link(file, &from)
            .map_err(|e| Error::export_io(format!("cannot create {}", from.display()), e))?;
    }
    std::fs::rename(&from, &to).map_err(|e| {
        if anonymous.is_some() {
            // The message is still the anonymous file's: nothing stays in tmp/.
            let _ = std::fs::remove_file(&from);
        }
        Error::export_io(
            format!("cannot move {} to {}", from.display(), to.display()),
            e,
        )
    })
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
