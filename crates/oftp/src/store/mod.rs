//! Durable file store for received virtual files.
//!
//! What it does:
//! - builds the target file name from a configurable format with the seed's macros
//!   (`%VirtualFileName%`, `%VirtualFileDate%`, `%VirtualFileDate:FORMAT%`, `%Originator%`,
//!   `%Destination%`, `%UserData%`, `%CurrentTime%`, `%GUID%`) and sanitises it to one file name
//!   that cannot leave the target directory;
//! - writes incoming data to a hidden temporary file *in the target directory* (`.oftp-<uuid>.part`),
//!   so the final rename never crosses a file system;
//! - checkpoints: flushes and fsyncs the temporary file so a restart can resume from a durable
//!   position;
//! - commits: fsync, then a no-clobber rename into place (hard link + unlink, or a checked rename
//!   when overwriting is allowed), then fsync of the directory. Nothing partial ever appears under
//!   a final name.
//!
//! What it does not do: decide *whether* to accept a file (the handler and the journal do), or
//! know the protocol's record structure (the connection driver passes bytes and offsets).
//!
//! Writes go through a plain `std::fs::File` with a large `BufWriter`: page-cache writes are short,
//! and doing them inline avoids a thread hop per buffer; the slow calls (fsync, rename, directory
//! fsync) are made from `spawn_blocking` by the async wrappers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[cfg(test)]
pub(crate) mod faults;
mod names;
mod partial;
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

/// Moves `from` to `to`; without `overwrite` an existing `to` is never replaced, even by a
/// racing writer (hard link fails on an existing target), with a checked rename as the fallback
/// for file systems without hard links.
fn place(from: &Path, to: &Path, overwrite: bool) -> Result<(), StoreError> {
    if overwrite {
        return fs::rename(from, to).map_err(|e| StoreError::io("renaming into place", to, e));
    }
    match fs::hard_link(from, to) {
        Ok(()) => {
            // The file is in place under its final name: a temporary name left over is only
            // clutter (and crash recovery recognises it as the same file), never a failure.
            if let Err(e) = fs::remove_file(from) {
                tracing::warn!(
                    path = %from.display(),
                    error = %e,
                    "file placed, but its temporary name could not be removed"
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(StoreError::AlreadyExists(to.to_owned()))
        }
        Err(_) => {
            if to.exists() {
                return Err(StoreError::AlreadyExists(to.to_owned()));
            }
            fs::rename(from, to).map_err(|e| StoreError::io("renaming into place", to, e))
        }
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
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(|e| StoreError::io("opening directory", dir, e))?;
        d.sync_all()
            .map_err(|e| StoreError::io("syncing directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` durably to `path` (temp file in the same directory, fsync, rename, directory
/// fsync). Used for small files such as a generated configuration.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(|e| StoreError::io("creating directory", dir, e))?;
    let tmp = partial_path_for(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| StoreError::io("creating temporary file", &tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io("writing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| StoreError::io("renaming into place", path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
    fn write_atomic_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("c.toml");
        write_atomic(&p, b"a").unwrap();
        write_atomic(&p, b"b").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"b");
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }
}
