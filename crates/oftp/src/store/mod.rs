//! Durable file store for received virtual files.
//!
//! What it does:
//! - builds the target file name from a configurable format with the seed's macros
//!   (`%VirtualFileName%`, `%VirtualFileDate%`, `%VirtualFileDate:FORMAT%`, `%Originator%`,
//!   `%Destination%`, `%UserData%`, `%CurrentTime%`, `%GUID%`) and sanitises it to one file name
//!   that cannot leave the target directory ([`names`](NameFormat));
//! - writes incoming data to a hidden temporary file *in the target directory* (`.oftp-<uuid>.part`),
//!   so the final rename never crosses a file system ([`PartialFile`]);
//! - checkpoints: fsyncs the temporary file so a restart can resume from a durable position;
//! - commits: fsync, then a no-clobber rename into place (hard link + unlink, or a checked rename
//!   when overwriting is allowed), then fsync of the directory. Nothing partial ever appears under
//!   a final name;
//! - writes received data from a pool of a few threads shared by all receptions of the process,
//!   fed through one byte budget, so memory and threads do not grow with the number of sessions
//!   ([`BackgroundWriter`]; how the pool keeps order, bounds memory and cannot deadlock is
//!   described in `store/pool.rs`).
//!
//! What it does not do: decide *whether* to accept a file (the handler and the journal do), or
//! know the protocol's record structure (the connection driver passes bytes and offsets).
//!
//! Durable writes (temporary file, fsync, rename, directory fsync, placing a file) go through the
//! workspace crate `durable-write`, like every crate of the workspace. Page-cache writes are
//! made by the pool's threads; the slow calls (fsync, rename, directory fsync) are made from
//! `spawn_blocking` by the async wrappers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[cfg(test)]
pub(crate) mod faults;
mod names;
mod partial;
mod pool;
mod writer;

pub use names::{DEFAULT_NAME_FORMAT, NameContext, NameFormat, sanitize_file_name};
pub use partial::{PartialFile, SyncJob, partial_path_for, remove_partial};
pub use writer::BackgroundWriter;

/// Errors of the file store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The rendered name is empty or only dots after sanitising.
    #[error("virtual file name {0:?} gives no usable local file name")]
    UnusableName(String),
    /// The name format uses a macro this store does not know.
    #[error("unknown macro %{0}% in the received file name format")]
    UnknownMacro(String),
    /// The name format has a `%` without its closing `%`.
    #[error("unterminated macro in the received file name format {0:?}")]
    UnterminatedMacro(String),
    /// The target exists and overwriting is off.
    #[error("{} already exists and overwrite is off", .0.display())]
    AlreadyExists(PathBuf),
    /// An I/O call on the store failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What the store was doing.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error (part of this message, so not repeated as a `source`).
        error: io::Error,
    },
    /// A blocking task of the store was cancelled or panicked.
    #[error("file store task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            error: source,
        }
    }
}

/// Where received files go and how they are committed.
#[derive(Debug, Clone)]
pub struct StorePolicy {
    /// Replace an existing file of the same name (seed `Overwrite`, default `false`).
    pub overwrite: bool,
    /// Remove the temporary file when a reception fails for a reason other than a broken
    /// connection (seed `DeleteOnError`, default `true`). Broken connections always keep the
    /// durable part for restart.
    pub delete_on_error: bool,
    /// A partial reception (an interrupted one kept for restart, or one given up with its file
    /// kept) that nobody resumed for this long is removed and its journal row dropped; `None`
    /// keeps them for ever. Default 7 days ([`DEFAULT_PARTIAL_RETENTION`]).
    ///
    /// [`DEFAULT_PARTIAL_RETENTION`]: crate::partials::DEFAULT_PARTIAL_RETENTION
    pub partial_retention: Option<std::time::Duration>,
}

impl Default for StorePolicy {
    fn default() -> Self {
        Self {
            overwrite: false,
            delete_on_error: true,
            partial_retention: Some(crate::partials::DEFAULT_PARTIAL_RETENTION),
        }
    }
}

/// Moves `from` to `to` durably (`durable_write::place`, then the folder is fsynced); without
/// `overwrite` an existing `to` is never replaced, even by a racing writer.
fn place(from: &Path, to: &Path, overwrite: bool) -> Result<(), StoreError> {
    let existing = if overwrite {
        durable_write::Existing::Replace
    } else {
        durable_write::Existing::Keep
    };
    match durable_write::place(from, to, existing) {
        Ok(placed) => {
            // The file is in place under its final name: a temporary name left over is only
            // clutter (and crash recovery recognises it as the same file), never a failure.
            if let Some(e) = placed.leftover {
                tracing::warn!(
                    path = %from.display(),
                    error = %e.source,
                    "file placed, but its temporary name could not be removed"
                );
            }
            Ok(())
        }
        Err(e) if !overwrite && e.source.kind() == io::ErrorKind::AlreadyExists => {
            Err(StoreError::AlreadyExists(to.to_owned()))
        }
        Err(e) => Err(durable(e)),
    }
}

/// A failed `durable_write` call as the store reports it.
fn durable(e: durable_write::Error) -> StoreError {
    use durable_write::Step;
    let action = match e.step {
        Step::CreateDir => "creating directory",
        Step::CreateTemp => "creating temporary file",
        Step::Write => "writing",
        Step::Rename => "renaming into place",
        Step::SyncDir => "syncing directory",
        Step::Remove => "removing",
        _ => "reading",
    };
    StoreError::Io {
        action,
        path: e.path,
        error: e.source,
    }
}

/// Whether `a` and `b` name the same file (same device and inode): what a crash between the
/// hard link into place and the removal of the temporary name leaves behind. Always `false`
/// where that cannot be told (non-Unix) or either name is missing.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(a), fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// Fsyncs a directory so a rename in it survives a crash (a no-op where directories cannot be
/// opened, e.g. Windows).
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    durable_write::sync_dir(dir).map_err(durable)
}

/// Writes `bytes` durably to `path` (`durable_write::write`: temporary file in the same
/// directory, fsync, rename, directory fsync; on failure nothing is left behind). Used for
/// small files such as a generated configuration or a certificate.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    durable_write::write(path, bytes).map_err(durable)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_atomic_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a folder that is not empty: the rename into place fails.
        let busy = dir.path().join("busy");
        fs::create_dir(&busy).unwrap();
        fs::write(busy.join("inside"), b"x").unwrap();
        let e = write_atomic(&busy, b"data").unwrap_err();
        assert!(
            matches!(&e, StoreError::Io { action: "renaming into place", path, .. } if *path == busy),
            "{e}"
        );
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("busy")]);
        // Below a file: nothing is created.
        let under_file = busy.join("inside").join("c.toml");
        assert!(matches!(
            write_atomic(&under_file, b"data"),
            Err(StoreError::Io { .. })
        ));
        assert_eq!(fs::read_dir(&busy).unwrap().count(), 1);
    }

    #[test]
    fn write_atomic_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("c.toml");
        write_atomic(&p, b"a").unwrap();
        write_atomic(&p, b"b").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"b");
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }
}
