//! Crash-safe file writes, in one place for the whole workspace.
//!
//! [`write_with`] (and its shorthand [`write`]) creates a temporary file next to the target
//! (`.<name>.tmp-<pid>-<n>`, opened with `create_new`), lets the caller write it, fsyncs it,
//! renames it over the target and fsyncs the folder, so that after a crash the target holds the
//! old content or the new one, never a part, and the new one survives a power loss once the
//! call returned. On any failure (the caller's writer failing or panicking, the disk, the
//! rename) the temporary file is removed: a failed write leaves nothing behind and the target
//! is untouched.
//!
//! Temporary files of a process that was killed mid-write can only be removed by the next run;
//! [`is_temp`] recognises them.
//!
//! [`Options::without_fsync`] keeps the temporary file and the rename but leaves out the
//! fsyncs, for a caller whose user chose speed over surviving a power loss.
//!
//! Directory fsync is done on Unix, where a directory can be opened and synced; elsewhere
//! [`sync_dir`] does nothing.

#![warn(missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What was being done when an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Creating a folder.
    CreateDir,
    /// Creating the temporary file.
    CreateTemp,
    /// Writing (or fsyncing) the temporary file.
    Write,
    /// Renaming into place.
    Rename,
    /// Fsyncing a folder.
    SyncDir,
    /// Removing a file.
    Remove,
    /// Reading a file (the copy fallback of [`rename`]).
    Read,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::CreateDir => "cannot create folder",
            Step::CreateTemp => "cannot create",
            Step::Write => "cannot write",
            Step::Rename => "cannot rename into",
            Step::SyncDir => "cannot fsync folder",
            Step::Remove => "cannot remove",
            Step::Read => "cannot read",
        }
    }
}

/// A failed durable operation: the step, the path it concerned and the I/O error.
#[derive(Debug, thiserror::Error)]
#[error("{} {}: {source}", step.verb(), path.display())]
pub struct Error {
    /// The step that failed.
    pub step: Step,
    /// The file or folder concerned.
    pub path: PathBuf,
    /// The underlying error (its `kind()` tells a full disk from a transient failure).
    #[source]
    pub source: io::Error,
}

impl Error {
    fn new(step: Step, path: &Path, source: io::Error) -> Self {
        Error {
            step,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The step and path without the I/O error, e.g. `cannot write /b/.x.eml.tmp-1-2`.
    pub fn context(&self) -> String {
        format!("{} {}", self.step.verb(), self.path.display())
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

/// Options of [`write_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    mode: Option<u32>,
    no_fsync: bool,
}

impl Options {
    /// Unix permission bits of the new file (e.g. `0o600` for secrets); ignored elsewhere.
    /// Default: the process's umask applied to `0o666`.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Skips the fsyncs (of the file, the folder, the folders created): the target is still
    /// never partial (a temporary file renamed over it) when the process dies, but a crash of
    /// the machine may lose the new file. For copies a caller makes durable otherwise, or
    /// whose user asked for speed over that guarantee (like `cp`).
    pub fn without_fsync(mut self) -> Self {
        self.no_fsync = true;
        self
    }
}

/// Marker in the names of temporary files.
pub const TEMP_MARK: &str = ".tmp-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether `path` names a temporary file of this crate (`.<name>.tmp-<pid>-<n>`).
pub fn is_temp(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.starts_with('.') && n.contains(TEMP_MARK)
    })
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to `path` durably (see the crate docs), creating missing folders.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_with(path, &Options::default(), |f| f.write_all(bytes))
}

/// Writes `path` durably with what `fill` writes into the temporary file, creating missing
/// folders. When `fill` fails, nothing is left behind and its error is returned (step
/// [`Step::Write`]).
pub fn write_with<T>(
    path: &Path,
    options: &Options,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> Result<T, Error> {
    let dir = parent_of(path);
    let name = path.file_name().ok_or_else(|| {
        Error::new(
            Step::CreateTemp,
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        )
    })?;
    if options.no_fsync {
        create_dir_all_unsynced(&dir)?;
    } else {
        create_dir_all(&dir)?;
    }
    let tmp = dir.join(format!(
        ".{}{TEMP_MARK}{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = create_new(&tmp, options).map_err(|e| Error::new(Step::CreateTemp, &tmp, e))?;
    // Removes the temporary file on any way out but success, a panic of `fill` included
    // (callers such as the OFTP runtime catch a decoder's panic and carry on): it may hold
    // secrets and must not linger.
    let mut guard = RemoveOnDrop(Some(&tmp));
    // The closure owns the file, so it is closed before the guard removes it.
    let value = (|| {
        let value = fill(&mut file)
            .and_then(|v| match options.no_fsync {
                true => Ok(v),
                false => file.sync_all().map(|()| v),
            })
            .map_err(|e| Error::new(Step::Write, &tmp, e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| Error::new(Step::Rename, path, e))?;
        Ok(value)
    })()?;
    guard.0 = None;
    if !options.no_fsync {
        sync_dir(&dir)?;
    }
    Ok(value)
}

/// Removes the file it names when dropped, unless disarmed (`.0 = None`).
struct RemoveOnDrop<'a>(Option<&'a Path>);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            // Best effort: there is no one to report a failure to.
            let _ = fs::remove_file(path);
        }
    }
}

fn create_new(path: &Path, options: &Options) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if let Some(mode) = options.mode {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = options;
    o.open(path)
}

/// Fsyncs a folder so that a create, rename or remove in it is durable (Unix only).
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::new(Step::SyncDir, dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `dir` and its missing parents, fsyncing each parent whose entries changed.
pub fn create_dir_all(dir: &Path) -> Result<(), Error> {
    create_dir_all_unsynced(dir)?
        .iter()
        .try_for_each(|parent| sync_dir(parent))
}

/// Creates `dir` and its missing parents without fsyncing; returns the parents whose entries
/// changed, outermost first: the caller makes them durable later, with [`sync_dir`] on each
/// or with one flush of the whole file system that covers them.
pub fn create_dir_all_unsynced(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut changed = Vec::new();
    create_missing(dir, &mut changed)?;
    Ok(changed)
}

fn create_missing(dir: &Path, changed: &mut Vec<PathBuf>) -> Result<(), Error> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_missing(parent, changed)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::new(Step::CreateDir, dir, e)),
    }
    let parent = parent_of(dir);
    if !changed.contains(&parent) {
        changed.push(parent);
    }
    Ok(())
}

/// Removes a file durably; a missing file is not an error.
pub fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(&parent_of(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::new(Step::Remove, path, e)),
    }
}

/// What [`place`] does when its target exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it, atomically (a rename).
    Replace,
    /// Keep it: [`place`] fails with [`io::ErrorKind::AlreadyExists`] (step [`Step::Rename`]),
    /// even when another process creates the target at the same moment.
    Keep,
}

/// A file that [`place`] put under its new name.
#[derive(Debug)]
#[must_use = "a leftover old name should be reported"]
pub struct Placed {
    /// The file is in place and durable, but its old name could not be removed. That name is
    /// only clutter: it names the same file (same device and inode).
    pub leftover: Option<Error>,
}

/// Gives a file written in place (e.g. a received file completed under a temporary name) its
/// final name in the same file system and makes that durable: the folders of both names are
/// fsynced. It never copies (unlike [`rename`]): a rename that fails is an error.
///
/// With [`Existing::Keep`] an existing `to` is never replaced, even by a racing writer: the file
/// is hard-linked under `to` (which fails on an existing target) and `from` is then removed;
/// where hard links are not supported, it is renamed after a check that `to` does not exist.
pub fn place(from: &Path, to: &Path, existing: Existing) -> Result<Placed, Error> {
    let rename = || fs::rename(from, to).map_err(|e| Error::new(Step::Rename, to, e));
    let exists = || {
        Error::new(
            Step::Rename,
            to,
            io::Error::new(io::ErrorKind::AlreadyExists, "the target exists"),
        )
    };
    let mut leftover = None;
    match existing {
        Existing::Replace => rename()?,
        Existing::Keep => match fs::hard_link(from, to) {
            Ok(()) => {
                if let Err(e) = fs::remove_file(from) {
                    leftover = Some(Error::new(Step::Remove, from, e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
            Err(_) if to.exists() => return Err(exists()),
            Err(_) => rename()?,
        },
    }
    let dir = parent_of(to);
    sync_dir(&dir)?;
    let src = parent_of(from);
    if src != dir {
        sync_dir(&src)?;
    }
    Ok(Placed { leftover })
}

/// Moves a file durably to `to`, creating its folders. Across file systems it copies durably
/// and then removes the original, so a crash leaves the file in one place or both, never none.
pub fn rename(from: &Path, to: &Path) -> Result<(), Error> {
    let dir = parent_of(to);
    create_dir_all(&dir)?;
    match fs::rename(from, to) {
        Ok(()) => {
            sync_dir(&dir)?;
            let src = parent_of(from);
            if src != dir {
                sync_dir(&src)?;
            }
            Ok(())
        }
        Err(_) => {
            let data = fs::read(from).map_err(|e| Error::new(Step::Read, from, e))?;
            write(to, &data)?;
            remove(from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_creates_folders_replaces_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/x.eml");
        write(&p, b"one").unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(entries(&dir.path().join("a/b")), vec!["x.eml"]);
    }

    #[test]
    fn without_fsync_the_target_is_still_replaced_whole_and_folders_created() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/x.mbox");
        let opts = Options::default().without_fsync();
        write_with(&p, &opts, |f| f.write_all(b"one")).unwrap();
        write_with(&p, &opts, |f| f.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(entries(&dir.path().join("a/b")), vec!["x.mbox"]);
        write_with(&p, &opts, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(io::Error::other("no"))
        })
        .unwrap_err();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(entries(&dir.path().join("a/b")), vec!["x.mbox"]);
    }

    #[test]
    fn unsynced_folder_creation_names_each_changed_parent_once_outermost_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let changed = create_dir_all_unsynced(&root.join("a/b/c")).unwrap();
        assert_eq!(
            changed,
            vec![root.to_path_buf(), root.join("a"), root.join("a/b")]
        );
        assert!(root.join("a/b/c").is_dir());
        // Siblings under an existing parent: only that parent changed.
        let changed = create_dir_all_unsynced(&root.join("a/b/d")).unwrap();
        assert_eq!(changed, vec![root.join("a/b")]);
        assert!(
            create_dir_all_unsynced(&root.join("a/b/d"))
                .unwrap()
                .is_empty()
        );
        // A file in the way is an error naming the step.
        fs::write(root.join("f"), b"").unwrap();
        let e = create_dir_all_unsynced(&root.join("f/g")).unwrap_err();
        assert_eq!(e.step, Step::CreateDir);
    }

    #[test]
    fn a_failing_writer_leaves_nothing_and_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        write(&p, b"old").unwrap();
        let e = write_with(&p, &Options::default(), |f| {
            f.write_all(b"half")?;
            Err::<(), _>(io::Error::other("the source broke"))
        })
        .unwrap_err();
        assert_eq!(e.step, Step::Write);
        assert!(e.to_string().contains("the source broke"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["x"]);

        // A first write that fails leaves no file at all.
        let q = dir.path().join("new");
        write_with(&q, &Options::default(), |_| {
            Err::<(), _>(io::Error::other("no"))
        })
        .unwrap_err();
        assert_eq!(entries(dir.path()), vec!["x"]);
    }

    #[test]
    fn a_panicking_writer_leaves_nothing_and_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        write(&p, b"old").unwrap();
        // A decoder bug on hostile input panics inside the writer; the caller catches it.
        let caught = std::panic::catch_unwind(|| {
            write_with::<()>(&p, &Options::default(), |f| {
                f.write_all(b"half")?;
                panic!("decoder bug")
            })
        });
        assert!(caught.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["x"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty folder: rename over it fails.
        let p = dir.path().join("busy");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("inside"), b"x").unwrap();
        let e = write(&p, b"data").unwrap_err();
        assert_eq!(e.step, Step::Rename);
        assert_eq!(entries(dir.path()), vec!["busy"]);
    }

    #[test]
    fn the_writer_value_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let n = write_with(&dir.path().join("x"), &Options::default(), |f| {
            f.write_all(b"12345")?;
            Ok(5u64)
        })
        .unwrap();
        assert_eq!(n, 5);
    }

    #[cfg(unix)]
    #[test]
    fn mode_is_applied_to_the_new_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_with(&p, &Options::default().mode(0o600), |f| f.write_all(b"s")).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn errors_name_the_step_and_path_and_keep_the_io_kind() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        // A folder cannot be created below a file.
        let e = write(&blocker.join("sub/x"), b"d").unwrap_err();
        assert_eq!(e.step, Step::CreateDir);
        assert!(e.context().starts_with("cannot create folder"), "{e}");
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::NotADirectory);
    }

    #[test]
    fn remove_and_rename_are_idempotent_where_it_matters() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        write(&a, b"x").unwrap();
        let b = dir.path().join("q/b");
        rename(&a, &b).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&b).unwrap(), b"x");
        remove(&b).unwrap();
        remove(&b).unwrap();
        assert!(!b.exists());
    }

    #[test]
    fn place_keeps_or_replaces_an_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join(".part"), dir.path().join("f"));
        fs::write(&from, b"new").unwrap();
        fs::write(&to, b"old").unwrap();
        let e = place(&from, &to, Existing::Keep).unwrap_err();
        assert_eq!(
            (e.step, e.source.kind()),
            (Step::Rename, io::ErrorKind::AlreadyExists)
        );
        assert_eq!(fs::read(&to).unwrap(), b"old");
        assert_eq!(
            fs::read(&from).unwrap(),
            b"new",
            "the new file is kept for the caller"
        );

        let placed = place(&from, &to, Existing::Replace).unwrap();
        assert!(placed.leftover.is_none());
        assert_eq!(fs::read(&to).unwrap(), b"new");
        assert_eq!(entries(dir.path()), vec!["f"]);

        let g = dir.path().join("g");
        fs::write(&from, b"third").unwrap();
        assert!(place(&from, &g, Existing::Keep).unwrap().leftover.is_none());
        assert_eq!(fs::read(&g).unwrap(), b"third");
        assert_eq!(entries(dir.path()), vec!["f", "g"]);
    }

    #[test]
    fn place_never_copies() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        fs::write(&from, b"x").unwrap();
        // A missing source is an error, and nothing appears under the target.
        let missing = dir.path().join("missing");
        let to = dir.path().join("b");
        assert_eq!(
            place(&missing, &to, Existing::Replace).unwrap_err().step,
            Step::Rename
        );
        // A folder in the way of a rename: an error, not a copy into it.
        let busy = dir.path().join("busy");
        fs::create_dir(&busy).unwrap();
        fs::write(busy.join("inside"), b"y").unwrap();
        assert_eq!(
            place(&from, &busy, Existing::Replace).unwrap_err().step,
            Step::Rename
        );
        assert_eq!(entries(dir.path()), vec!["a", "busy"]);
    }

    #[test]
    fn temporary_names_are_recognised() {
        assert!(is_temp(Path::new("/a/.x.eml.tmp-1-2")));
        assert!(!is_temp(Path::new("/a/x.eml")));
        assert!(!is_temp(Path::new("/a/.hidden")));
    }
}
