//! Outbox take-over: files an application drops into a partner's outbox become the gateway's
//! without ever being sent half-written.
//!
//! The convention (for operators, also in `docs/oftp-operations.md`):
//! - A file whose name ends in `.tmp` (any case) or starts with `.` is never touched: write
//!   under such a name, then rename to the final name in the same directory (a rename is
//!   atomic). Files written in place under their final name may be taken over half-written.
//! - Only regular files are taken over; directories, symbolic links, sockets and the like are
//!   left alone.
//! - A file is taken over by renaming it into the queue directory (`<outbox>/.queue` unless
//!   configured otherwise, on the same file system: checked at start), each file in a folder of
//!   its own named by the take-over time, `<queue>/<id>/<original name>`, so equal names never
//!   collide and the original name is kept. The rename, the new folder and the outbox are
//!   fsynced before the file is reported: once reported, a crash cannot bring it back into
//!   the outbox to be sent a second time.
//! - A file that disappears between being seen and being renamed (its writer took it back) is
//!   skipped, not an error.
//!
//! [`Outbox`] does one pass ([`Outbox::take_over`]) and lists what is in its queue
//! ([`Outbox::queued`], for reconciling after a crash between a take-over and its report);
//! [`watch`] runs passes when a file appears (file system events, debounced) and on a timer
//! (the polling fallback).

mod watch;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use watch::{OutboxEvent, WatchSettings, watch};

/// Files renamed before the new entries are fsynced and reported together: a burst costs one
/// fsync of the outbox and the queue per batch, and the first files are reported early.
const BATCH: usize = 256;

/// Name of the default queue directory inside an outbox (ignored by the scan: it starts with
/// a dot).
pub const DEFAULT_QUEUE_DIR: &str = ".queue";

/// Whether a file named `name` may be taken over: not a temporary (`*.tmp`, any case) or
/// hidden (`.*`) name. The runtime's rule, so the server's own outbox scan agrees.
pub fn is_ready_name(name: &OsStr) -> bool {
    oftp::config::is_ready_outbox_name(name)
}

/// A problem with an outbox or its queue; the message names the path and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// A file system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read outbox", ...).
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The outbox path exists but is not a directory.
    #[error("outbox {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The queue is on another file system than the outbox, so a take-over could not be an
    /// atomic rename.
    #[error(
        "queue directory {} is on another file system than outbox {}; put it on the same one \
         (the default <outbox>/.queue always is)",
        queue.display(),
        outbox.display()
    )]
    OtherFileSystem {
        /// The outbox.
        outbox: PathBuf,
        /// The queue directory.
        queue: PathBuf,
    },
    /// An fsync or directory creation of the queue failed.
    #[error(transparent)]
    Durable(#[from] durable_write::Error),
    /// File system events cannot be watched for this outbox: polling finds its files.
    #[error(
        "cannot watch outbox {} for new files ({message}); polling it instead",
        dir.display()
    )]
    Watch {
        /// The outbox.
        dir: PathBuf,
        /// The watcher's error.
        message: String,
    },
}

impl OutboxError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        OutboxError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A file taken over from an outbox: it is in the queue now, durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenOver {
    /// The partner whose outbox it came from ([`Outbox::partner`]).
    pub partner: Arc<str>,
    /// Its name in the outbox.
    pub name: OsString,
    /// Where it is now: `<queue>/<id>/<name>`.
    pub path: PathBuf,
}

/// One partner's outbox and its queue directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    partner: Arc<str>,
    dir: PathBuf,
    queue: PathBuf,
}

impl Outbox {
    /// The outbox `dir` of `partner` with its queue in `<dir>/.queue` (created if missing).
    pub fn new(partner: &str, dir: impl Into<PathBuf>) -> Result<Self, OutboxError> {
        let dir = dir.into();
        let queue = dir.join(DEFAULT_QUEUE_DIR);
        Self::with_queue(partner, dir, queue)
    }

    /// The outbox `dir` of `partner` with its queue in `queue` (created if missing), which
    /// must be on the same file system.
    pub fn with_queue(
        partner: &str,
        dir: impl Into<PathBuf>,
        queue: impl Into<PathBuf>,
    ) -> Result<Self, OutboxError> {
        let (dir, queue) = (dir.into(), queue.into());
        let meta =
            fs::metadata(&dir).map_err(|e| OutboxError::io("cannot open outbox", &dir, e))?;
        if !meta.is_dir() {
            return Err(OutboxError::NotADirectory(dir));
        }
        durable_write::create_dir_all(&queue)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let q = fs::metadata(&queue)
                .map_err(|e| OutboxError::io("cannot open queue directory", &queue, e))?;
            if q.dev() != meta.dev() {
                return Err(OutboxError::OtherFileSystem { outbox: dir, queue });
            }
        }
        Ok(Outbox {
            partner: Arc::from(partner),
            dir,
            queue,
        })
    }

    /// The partner this outbox belongs to.
    pub fn partner(&self) -> &Arc<str> {
        &self.partner
    }

    /// The outbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The queue directory.
    pub fn queue_dir(&self) -> &Path {
        &self.queue
    }

    /// Takes over every ready file in the outbox, oldest first, and calls `report` for each
    /// once it is durably in the queue. Returns how many were reported.
    ///
    /// `report` returns `false` to stop: files of the current batch already renamed stay in
    /// the queue unreported ([`Outbox::queued`] lists them), later ones stay in the outbox.
    /// On an error the files taken over before it have been reported, unless making them
    /// durable is what failed: then they are in the queue unreported.
    pub fn take_over(
        &self,
        report: &mut dyn FnMut(TakenOver) -> bool,
    ) -> Result<usize, OutboxError> {
        let ready = self.ready_files()?;
        self.take_over_files(ready, report)
    }

    /// The names of the ready regular files in the outbox, oldest first (by modification
    /// time, then name).
    fn ready_files(&self) -> Result<Vec<OsString>, OutboxError> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| OutboxError::io("cannot read outbox", &self.dir, e))?;
        let mut ready = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| OutboxError::io("cannot read outbox", &self.dir, e))?;
            let name = entry.file_name();
            if !is_ready_name(&name) {
                continue;
            }
            // `DirEntry::metadata` does not follow symbolic links.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(OutboxError::io("cannot read", &entry.path(), e)),
            };
            if meta.is_file() {
                ready.push((meta.modified().unwrap_or(UNIX_EPOCH), name));
            }
        }
        ready.sort();
        Ok(ready.into_iter().map(|(_, name)| name).collect())
    }

    /// Renames `names` into the queue in batches, fsyncs, reports.
    fn take_over_files(
        &self,
        names: Vec<OsString>,
        report: &mut dyn FnMut(TakenOver) -> bool,
    ) -> Result<usize, OutboxError> {
        let mut taken = 0;
        for batch in names.chunks(BATCH) {
            let mut moved = Vec::with_capacity(batch.len());
            let mut failed = None;
            for name in batch {
                match self.rename_into_queue(name) {
                    Ok(Some(path)) => moved.push((name.clone(), path)),
                    Ok(None) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            // What was renamed is made durable and reported even when a later rename failed.
            self.sync(&moved)?;
            for (name, path) in moved {
                taken += 1;
                let item = TakenOver {
                    partner: self.partner.clone(),
                    name,
                    path,
                };
                if !report(item) {
                    return Ok(taken);
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(taken)
    }

    /// Renames one file into a new folder of the queue; `None` when it vanished first.
    fn rename_into_queue(&self, name: &OsStr) -> Result<Option<PathBuf>, OutboxError> {
        let folder = self.new_folder()?;
        let from = self.dir.join(name);
        let to = folder.join(name);
        match fs::rename(&from, &to) {
            Ok(()) => Ok(Some(to)),
            Err(e) => {
                let _ = fs::remove_dir(&folder);
                match e.kind() {
                    io::ErrorKind::NotFound => Ok(None),
                    io::ErrorKind::CrossesDevices => Err(OutboxError::OtherFileSystem {
                        outbox: self.dir.clone(),
                        queue: self.queue.clone(),
                    }),
                    _ => Err(OutboxError::io("cannot move into the queue", &from, e)),
                }
            }
        }
    }

    /// Creates `<queue>/<id>`, `id` the take-over time in nanoseconds since 1970 (20 digits,
    /// so names sort in take-over order), the next free one if taken.
    fn new_folder(&self) -> Result<PathBuf, OutboxError> {
        let mut id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        loop {
            let folder = self.queue.join(format!("{id:020}"));
            match fs::create_dir(&folder) {
                Ok(()) => return Ok(folder),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => id += 1,
                Err(e) => {
                    return Err(OutboxError::io(
                        "cannot create a folder in the queue",
                        &folder,
                        e,
                    ));
                }
            }
        }
    }

    /// Makes the renames durable: each new folder, the queue and the outbox.
    fn sync(&self, moved: &[(OsString, PathBuf)]) -> Result<(), OutboxError> {
        if moved.is_empty() {
            return Ok(());
        }
        for (_, path) in moved {
            if let Some(folder) = path.parent() {
                durable_write::sync_dir(folder)?;
            }
        }
        durable_write::sync_dir(&self.queue)?;
        durable_write::sync_dir(&self.dir)?;
        Ok(())
    }

    /// What is in the queue, in take-over order: files taken over and not yet removed by
    /// whoever sends them (after a crash, also those taken over but never reported).
    pub fn queued(&self) -> Result<Vec<TakenOver>, OutboxError> {
        let read = |dir: &Path| {
            fs::read_dir(dir)
                .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
                .map_err(|e| OutboxError::io("cannot read queue directory", dir, e))
        };
        let mut folders = read(&self.queue)?;
        folders.sort_by_key(|e| e.file_name());
        let mut files = Vec::new();
        for folder in folders {
            if !folder.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for file in read(&folder.path())? {
                files.push(TakenOver {
                    partner: self.partner.clone(),
                    name: file.file_name(),
                    path: file.path(),
                });
            }
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[TakenOver]) -> Vec<String> {
        list.iter()
            .map(|t| t.name.to_string_lossy().into_owned())
            .collect()
    }

    fn take_all(outbox: &Outbox) -> Vec<TakenOver> {
        let mut got = Vec::new();
        outbox
            .take_over(&mut |t| {
                got.push(t);
                true
            })
            .unwrap();
        got
    }

    #[test]
    fn ready_names_follow_the_convention() {
        for ready in ["INVOICE", "a.edi", "x.tmpl", "tmp", "file.tmp.edi"] {
            assert!(is_ready_name(OsStr::new(ready)), "{ready}");
        }
        for not_ready in ["", ".hidden", ".queue", "a.tmp", "A.TMP", "b.Tmp", ".tmp"] {
            assert!(!is_ready_name(OsStr::new(not_ready)), "{not_ready}");
        }
    }

    #[test]
    fn takes_over_ready_files_only_and_keeps_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new("acme", dir.path()).unwrap();
        fs::write(dir.path().join("INVOICE"), b"one").unwrap();
        fs::write(dir.path().join("ORDERS.tmp"), b"half").unwrap();
        fs::write(dir.path().join(".hidden"), b"x").unwrap();
        fs::create_dir(dir.path().join("subdir")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();

        let got = take_all(&outbox);
        assert_eq!(names(&got), ["INVOICE"]);
        assert_eq!(&*got[0].partner, "acme");
        assert_eq!(fs::read(&got[0].path).unwrap(), b"one");
        assert!(got[0].path.starts_with(dir.path().join(".queue")));
        assert!(!dir.path().join("INVOICE").exists());
        for left in ["ORDERS.tmp", ".hidden", "subdir"] {
            assert!(dir.path().join(left).exists(), "{left}");
        }
        assert!(take_all(&outbox).is_empty(), "taken over twice");
        assert_eq!(outbox.queued().unwrap(), got);
    }

    #[test]
    fn same_name_twice_does_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new("acme", dir.path()).unwrap();
        fs::write(dir.path().join("INVOICE"), b"first").unwrap();
        let first = take_all(&outbox);
        fs::write(dir.path().join("INVOICE"), b"second").unwrap();
        let second = take_all(&outbox);
        assert_ne!(first[0].path, second[0].path);
        assert_eq!(fs::read(&first[0].path).unwrap(), b"first");
        assert_eq!(fs::read(&second[0].path).unwrap(), b"second");
        // Take-over order is kept in the queue.
        let queued = outbox.queued().unwrap();
        assert_eq!(queued, [first[0].clone(), second[0].clone()]);
    }

    #[test]
    fn oldest_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new("acme", dir.path()).unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::write(dir.path().join("B-new"), b"").unwrap();
        fs::write(dir.path().join("C-old"), b"").unwrap();
        fs::File::options()
            .write(true)
            .open(dir.path().join("C-old"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(names(&take_all(&outbox)), ["C-old", "B-new"]);
    }

    #[test]
    fn file_vanished_before_its_rename_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new("acme", dir.path()).unwrap();
        for n in ["A", "B", "C"] {
            fs::write(dir.path().join(n), n).unwrap();
        }
        let ready = outbox.ready_files().unwrap();
        assert_eq!(ready.len(), 3);
        // Its writer takes B back between the listing and the rename.
        fs::remove_file(dir.path().join("B")).unwrap();
        let mut got = Vec::new();
        let n = outbox
            .take_over_files(ready, &mut |t| {
                got.push(t);
                true
            })
            .unwrap();
        assert_eq!(n, 2);
        let mut got = names(&got);
        got.sort();
        assert_eq!(got, ["A", "C"]);
        // No empty folder is left for B.
        assert_eq!(fs::read_dir(outbox.queue_dir()).unwrap().count(), 2);
    }

    #[test]
    fn stopping_keeps_unreported_files_in_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new("acme", dir.path()).unwrap();
        for n in ["A", "B", "C"] {
            fs::write(dir.path().join(n), n).unwrap();
        }
        let mut seen = 0;
        outbox
            .take_over_files(outbox.ready_files().unwrap(), &mut |_| {
                seen += 1;
                false
            })
            .unwrap();
        assert_eq!(seen, 1);
        // The batch was renamed before the first report: all three are in the queue, and
        // nothing is lost for the next pass or a restart.
        assert_eq!(outbox.queued().unwrap().len(), 3);
    }

    #[test]
    fn queue_on_another_file_system_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // /dev/shm is a tmpfs on Linux; the temporary directory is not.
        let other = tempfile::tempdir_in("/dev/shm").unwrap();
        let e = Outbox::with_queue("acme", dir.path(), other.path()).unwrap_err();
        assert!(matches!(e, OutboxError::OtherFileSystem { .. }), "{e:?}");
        assert!(e.to_string().contains("same one"), "{e}");
    }

    #[test]
    fn missing_outbox_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Outbox::new("acme", dir.path().join("nope")).unwrap_err();
        assert!(e.to_string().starts_with("cannot open outbox"), "{e}");
        fs::write(dir.path().join("file"), b"").unwrap();
        let e = Outbox::new("acme", dir.path().join("file")).unwrap_err();
        assert!(matches!(e, OutboxError::NotADirectory(_)), "{e:?}");
    }
}
