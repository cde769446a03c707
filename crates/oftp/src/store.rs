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
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::stamp::{FileStamp, FileStampExt};

/// Seed default of `ReceivedFileNameFormat`: the virtual file name as sent.
pub const DEFAULT_NAME_FORMAT: &str = "%VirtualFileName%";

/// Size of the write buffer in front of a partial file.
const WRITE_BUFFER: usize = 32 * 1024;

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
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            error: source,
        }
    }
}

/// Values the name macros expand to.
#[derive(Debug, Clone)]
pub struct NameContext<'a> {
    /// `%VirtualFileName%`: the dataset name (SFIDDSN), as sent.
    pub virtual_file_name: &'a str,
    /// `%VirtualFileDate%` / `%VirtualFileDate:FORMAT%`.
    pub stamp: FileStamp,
    /// `%Originator%`: SFIDORIG.
    pub originator: &'a str,
    /// `%Destination%`: SFIDDEST.
    pub destination: &'a str,
    /// `%UserData%`: SFIDUSER.
    pub user_data: &'a str,
}

/// A received-file name format such as `%Originator%_%VirtualFileName%_%VirtualFileDate%`.
///
/// The rendered result is always one file name: every character that could name another
/// directory is replaced (see [`sanitize_file_name`]), so a format cannot place files outside the
/// target directory either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFormat(String);

impl Default for NameFormat {
    fn default() -> Self {
        Self(DEFAULT_NAME_FORMAT.to_owned())
    }
}

impl NameFormat {
    /// Checks the macros of `format` and keeps it.
    pub fn new(format: impl Into<String>) -> Result<Self, StoreError> {
        let format = Self(format.into());
        // Render once with dummy values so a typo is reported at start-up, not per file.
        let probe = NameContext {
            virtual_file_name: "X",
            stamp: FileStamp::now(),
            originator: "O",
            destination: "D",
            user_data: "",
        };
        format.expand(&probe)?;
        Ok(format)
    }

    /// The format text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Expands the macros and sanitises the result into a single safe file name.
    pub fn render(&self, ctx: &NameContext<'_>) -> Result<String, StoreError> {
        let raw = self.expand(ctx)?;
        sanitize_file_name(&raw)
    }

    fn expand(&self, ctx: &NameContext<'_>) -> Result<String, StoreError> {
        let mut out = String::new();
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find('%') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after
                .find('%')
                .ok_or_else(|| StoreError::UnterminatedMacro(self.0.clone()))?;
            let name = &after[..end];
            match name {
                "" => out.push('%'),
                "VirtualFileName" => out.push_str(ctx.virtual_file_name.trim_end()),
                "VirtualFileDate" => out.push_str(&ctx.stamp.digits()),
                "Originator" => out.push_str(ctx.originator.trim_end()),
                "Destination" => out.push_str(ctx.destination.trim_end()),
                "UserData" => out.push_str(ctx.user_data.trim_end()),
                "CurrentTime" => {
                    out.push_str(&chrono::Local::now().format("%Y%m%d%H%M%S%3f").to_string())
                }
                "GUID" => out.push_str(&uuid::Uuid::new_v4().to_string()),
                other => match other.strip_prefix("VirtualFileDate:") {
                    Some(pattern) => out.push_str(&ctx.stamp.format(pattern)),
                    None => return Err(StoreError::UnknownMacro(other.to_owned())),
                },
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Device names Windows reserves in every directory (with or without an extension).
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM0", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7",
    "COM8", "COM9", "LPT0", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    "CONIN$", "CONOUT$",
];

/// Longest file name (in bytes) most file systems accept.
const MAX_NAME_BYTES: usize = 255;

/// Turns a name received from a peer into one safe file name.
///
/// Path separators (`/`, `\`), NUL, control characters and the characters Windows forbids
/// (`: * ? " < > |`) become `_`; leading dots become `_` (no hidden files, no `..`, and no clash
/// with this store's `.oftp-*.part` temporaries); trailing dots and spaces are removed; reserved
/// device names (`CON`, `NUL`, `COM1`, ... also with an extension) get a `_` prefix; the result is cut
/// to 255 bytes on a character boundary. A name that ends up empty is an error.
pub fn sanitize_file_name(name: &str) -> Result<String, StoreError> {
    let mut out: String = name
        .trim()
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    let leading_dots = out.len() - out.trim_start_matches('.').len();
    out.replace_range(..leading_dots, &"_".repeat(leading_dots));
    let trimmed_len = out.trim_end_matches(['.', ' ']).len();
    out.truncate(trimmed_len);
    if out.is_empty() || out.chars().all(|c| c == '_') && name.trim().chars().all(|c| c == '.') {
        return Err(StoreError::UnusableName(name.to_owned()));
    }
    let stem = out.split('.').next().unwrap_or("").trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        out.insert(0, '_');
    }
    if out.len() > MAX_NAME_BYTES {
        let mut cut = MAX_NAME_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    Ok(out)
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

/// A reception in progress: a temporary file in the target directory.
#[derive(Debug)]
pub struct PartialFile {
    writer: BufWriter<File>,
    partial_path: PathBuf,
    final_path: PathBuf,
    written: u64,
}

/// Path of a new temporary file for `final_path` (same directory, hidden, unique).
pub fn partial_path_for(final_path: &Path) -> PathBuf {
    let dir = final_path.parent().unwrap_or_else(|| Path::new("."));
    dir.join(format!(".oftp-{}.part", uuid::Uuid::new_v4().simple()))
}

impl PartialFile {
    /// Creates a new, empty temporary file for `final_path` (its directory is created if missing).
    pub fn create(final_path: &Path) -> Result<Self, StoreError> {
        let dir = final_path.parent().unwrap_or_else(|| Path::new("."));
        fs::create_dir_all(dir).map_err(|e| StoreError::io("creating directory", dir, e))?;
        let partial_path = partial_path_for(final_path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial_path)
            .map_err(|e| StoreError::io("creating temporary file", &partial_path, e))?;
        Ok(Self::from_parts(
            file,
            partial_path,
            final_path.to_owned(),
            0,
        ))
    }

    /// Reopens the temporary file of an interrupted reception and cuts it to `keep` bytes (the
    /// durable position agreed with the sender); later writes continue there.
    pub fn resume(partial_path: &Path, final_path: &Path, keep: u64) -> Result<Self, StoreError> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(partial_path)
            .map_err(|e| StoreError::io("reopening temporary file", partial_path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("reading temporary file", partial_path, e))?
            .len();
        if len < keep {
            return Err(StoreError::io(
                "resuming temporary file",
                partial_path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("it holds {len} bytes, the journal says {keep} are durable"),
                ),
            ));
        }
        file.set_len(keep)
            .and_then(|()| file.seek(SeekFrom::Start(keep)).map(|_| ()))
            .map_err(|e| StoreError::io("truncating temporary file", partial_path, e))?;
        Ok(Self::from_parts(
            file,
            partial_path.to_owned(),
            final_path.to_owned(),
            keep,
        ))
    }

    fn from_parts(file: File, partial_path: PathBuf, final_path: PathBuf, written: u64) -> Self {
        Self {
            writer: BufWriter::with_capacity(WRITE_BUFFER, file),
            partial_path,
            final_path,
            written,
        }
    }

    /// Appends bytes (buffered; not durable until [`checkpoint`](Self::checkpoint) or
    /// [`commit`](Self::commit)).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        #[cfg(test)]
        faults::check_write(&self.partial_path, self.written + bytes.len() as u64)?;
        self.writer
            .write_all(bytes)
            .map_err(|e| StoreError::io("writing", &self.partial_path, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Hands buffered bytes to the OS (not durable yet).
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        self.writer
            .flush()
            .map_err(|e| StoreError::io("flushing", &self.partial_path, e))
    }

    /// Bytes written so far (including any not yet durable).
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// The temporary file.
    pub fn partial_path(&self) -> &Path {
        &self.partial_path
    }

    /// Where the file will appear after [`commit`](Self::commit).
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes and fsyncs the temporary file: all bytes written so far are durable when this
    /// returns.
    pub async fn checkpoint(&mut self) -> Result<u64, StoreError> {
        self.writer
            .flush()
            .map_err(|e| StoreError::io("flushing", &self.partial_path, e))?;
        let file = self
            .writer
            .get_ref()
            .try_clone()
            .map_err(|e| StoreError::io("syncing", &self.partial_path, e))?;
        let path = self.partial_path.clone();
        blocking(move || {
            file.sync_data()
                .map_err(|e| StoreError::io("syncing", &path, e))
        })
        .await?;
        Ok(self.written)
    }

    /// Flushes buffered bytes to the OS and returns a job that fsyncs them, to run on a blocking
    /// thread while reception goes on: when the job returns, at least everything written before
    /// this call is durable.
    pub fn sync_job(&mut self) -> Result<SyncJob, StoreError> {
        self.writer
            .flush()
            .map_err(|e| StoreError::io("flushing", &self.partial_path, e))?;
        let file = self
            .writer
            .get_ref()
            .try_clone()
            .map_err(|e| StoreError::io("syncing", &self.partial_path, e))?;
        Ok(SyncJob {
            file,
            path: self.partial_path.clone(),
            len: self.written,
        })
    }

    /// Makes the file durable under its final name: fsync, no-clobber rename (unless
    /// `policy.overwrite`), fsync of the directory. Returns the final path.
    pub async fn commit(self, policy: &StorePolicy) -> Result<PathBuf, StoreError> {
        let overwrite = policy.overwrite;
        let Self {
            writer,
            partial_path,
            final_path,
            ..
        } = self;
        let file = writer.into_inner().map_err(|e| {
            StoreError::io(
                "flushing",
                &partial_path,
                io::Error::new(e.error().kind(), e.to_string()),
            )
        })?;
        blocking(move || {
            file.sync_all()
                .map_err(|e| StoreError::io("syncing", &partial_path, e))?;
            drop(file);
            place(&partial_path, &final_path, overwrite)?;
            sync_dir(final_path.parent().unwrap_or_else(|| Path::new(".")))?;
            Ok(final_path)
        })
        .await
    }

    /// Gives up this reception: with `delete`, the temporary file is removed; otherwise it is
    /// flushed and left (for inspection or a later restart).
    pub async fn abandon(self, delete: bool) -> Result<(), StoreError> {
        let Self {
            writer,
            partial_path,
            ..
        } = self;
        let flushed = writer.into_inner();
        blocking(move || {
            if delete {
                drop(flushed);
                remove_partial(&partial_path)
            } else {
                if let Ok(file) = flushed {
                    file.sync_data()
                        .map_err(|e| StoreError::io("syncing", &partial_path, e))?;
                }
                Ok(())
            }
        })
        .await
    }
}

/// Removes the temporary file of a reception; a file already gone is fine. Every removal of a
/// partial file goes through here (blocking: call from a blocking thread).
pub fn remove_partial(path: &Path) -> Result<(), StoreError> {
    #[cfg(test)]
    faults::check_removal(path)?;
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("removing", path, e)),
    }
}

/// Test-only fault injection for the file store: makes writes into, and removals from, one
/// directory fail as an inbox that became unwritable does (tests run as root, whom file
/// permissions do not stop). Faults are per directory, so tests running in parallel in other
/// directories are not affected.
#[cfg(test)]
pub(crate) mod faults {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::StoreError;

    struct Fault {
        dir: PathBuf,
        /// Writes that would make a file longer than this fail.
        writes_after: u64,
    }

    static FAULTS: Mutex<Vec<Fault>> = Mutex::new(Vec::new());

    /// Disarms the fault when dropped.
    pub(crate) struct Armed(PathBuf);

    impl Drop for Armed {
        fn drop(&mut self) {
            let mut f = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
            f.retain(|x| x.dir != self.0);
        }
    }

    /// From now on, files in `dir` cannot grow beyond `writes_after` octets and cannot be
    /// removed ("read-only file system").
    pub(crate) fn unwritable_dir(dir: &Path, writes_after: u64) -> Armed {
        let mut f = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
        f.push(Fault {
            dir: dir.to_owned(),
            writes_after,
        });
        Armed(dir.to_owned())
    }

    fn armed(path: &Path) -> Option<u64> {
        let f = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
        f.iter()
            .find(|x| path.parent() == Some(x.dir.as_path()))
            .map(|x| x.writes_after)
    }

    fn read_only(action: &'static str, path: &Path) -> StoreError {
        StoreError::io(
            action,
            path,
            std::io::Error::from_raw_os_error(30), // EROFS
        )
    }

    pub(super) fn check_write(path: &Path, new_len: u64) -> Result<(), StoreError> {
        match armed(path) {
            Some(limit) if new_len > limit => Err(read_only("writing", path)),
            _ => Ok(()),
        }
    }

    pub(super) fn check_removal(path: &Path) -> Result<(), StoreError> {
        match armed(path) {
            Some(_) => Err(read_only("removing", path)),
            None => Ok(()),
        }
    }
}

/// A pending fsync of a [`PartialFile`] (see [`PartialFile::sync_job`]).
#[derive(Debug)]
pub struct SyncJob {
    file: File,
    path: PathBuf,
    len: u64,
}

impl SyncJob {
    /// Fsyncs (blocking); returns the length that is now durable.
    pub fn run(self) -> Result<u64, StoreError> {
        self.file
            .sync_data()
            .map_err(|e| StoreError::io("syncing", &self.path, e))?;
        Ok(self.len)
    }
}

/// Bytes gathered before a hand-over to the writer thread: one wake-up of the thread per
/// 128 KiB, not per DATA buffer. Larger would save few wake-ups more but costs memory per
/// reception (200 concurrent receptions hold up to 200 times this).
const HANDOVER: usize = 128 * 1024;

/// Pieces smaller than this (F/V records, their CR LF, small DATA buffers) are copied into one
/// gathering buffer of [`GATHER`] octets; larger ones are handed over as they are, without a
/// copy.
const SMALL_PIECE: usize = 8 * 1024;

/// Capacity of a gathering buffer for small pieces.
const GATHER: usize = 64 * 1024;

/// Bytes that may wait for the writer thread. The queue is bounded by bytes, not by
/// hand-overs: a disk write that stalls for a moment (page-cache write-back) is absorbed
/// without stalling socket reads, and memory per reception stays bounded. Back-pressure reaches
/// the socket only beyond this.
const QUEUE_BYTES: usize = 4 * 1024 * 1024;

enum WriterCmd {
    /// Pieces to append in order, and the queue budget they hold.
    Write(Vec<Vec<u8>>, u32),
    Sync(tokio::sync::oneshot::Sender<Result<SyncJob, StoreError>>),
    Finish(tokio::sync::oneshot::Sender<Result<PartialFile, StoreError>>),
}

/// A [`PartialFile`] written by a blocking thread of its own, so a connection can read the
/// network while the previous data is copied into the page cache.
///
/// Order is kept: a [`sync_job`](Self::sync_job) covers every byte written before it. A write
/// error is kept by the thread and reported by the next `sync_job` or [`finish`](Self::finish);
/// nothing is confirmed to a peer without one of those succeeding.
#[derive(Debug)]
pub struct BackgroundWriter {
    tx: tokio::sync::mpsc::UnboundedSender<WriterCmd>,
    /// The byte budget of the queue (see [`QUEUE_BYTES`]); closed when the thread ends.
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    /// Pieces gathered for the next hand-over.
    pending: Vec<Vec<u8>>,
    /// Small pieces gathered into one buffer (goes to `pending` when full or before a large
    /// piece, keeping order).
    small: Vec<u8>,
    /// Bytes in `pending` and `small`.
    pending_bytes: usize,
    len: u64,
    partial_path: PathBuf,
}

impl std::fmt::Debug for WriterCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriterCmd::Write(..) => "Write",
            WriterCmd::Sync(_) => "Sync",
            WriterCmd::Finish(_) => "Finish",
        })
    }
}

impl BackgroundWriter {
    /// Hands `file` to a new writer thread. A thread of its own rather than one of tokio's
    /// blocking pool: the pool is capped, and receptions holding every pool thread would starve
    /// the journal calls and fsyncs they wait for.
    pub fn spawn(file: PartialFile) -> Result<Self, StoreError> {
        Self::spawn_tapped(file, None)
    }

    /// Like [`spawn`](Self::spawn); with a `tap`, every piece is handed on after it was
    /// written, and the tap is completed when [`finish`](Self::finish) succeeds (dropped, so
    /// the reader sees an error, however else the thread ends).
    pub(crate) fn spawn_tapped(
        file: PartialFile,
        tap: Option<crate::stream::Tap>,
    ) -> Result<Self, StoreError> {
        // Unbounded as a channel, bounded by the byte budget: writes take budget before they
        // are sent, the thread gives it back once the bytes are in the page cache.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<WriterCmd>();
        let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(QUEUE_BYTES));
        let len = file.len();
        let partial_path = file.partial_path().to_owned();
        let thread = std::thread::Builder::new().name("oftp-writer".into());
        let thread_budget = budget.clone();
        let spawned = thread.spawn(move || {
            // However the thread ends (even by a panic), a writer waiting for budget is told.
            struct CloseOnExit(std::sync::Arc<tokio::sync::Semaphore>);
            impl Drop for CloseOnExit {
                fn drop(&mut self) {
                    self.0.close();
                }
            }
            let budget = CloseOnExit(thread_budget);
            let mut file = file;
            let mut tap = tap;
            let mut failed: Option<StoreError> = None;
            while let Some(cmd) = rx.blocking_recv() {
                match cmd {
                    WriterCmd::Write(pieces, held) => {
                        for piece in &pieces {
                            if failed.is_none()
                                && let Err(e) = file.write(piece)
                            {
                                failed = Some(e);
                            }
                        }
                        budget.0.add_permits(held as usize);
                        match &mut tap {
                            // A reader of a file that could not be stored would wait for the
                            // rest in vain: it sees an error instead.
                            Some(_) if failed.is_some() => tap = None,
                            Some(t) => pieces.into_iter().for_each(|p| t.feed(p)),
                            None => drop(pieces),
                        }
                    }
                    WriterCmd::Sync(reply) => {
                        let r = match failed.take() {
                            Some(e) => Err(e),
                            None => file.sync_job(),
                        };
                        if let Err(e) = &r {
                            failed = Some(StoreError::Task(e.to_string()));
                        }
                        let _ = reply.send(r);
                    }
                    WriterCmd::Finish(reply) => {
                        let r = match failed.take() {
                            Some(e) => Err(e),
                            // The reader may go on to read the stored file itself (the
                            // default `FileServices::open_incoming`): all of it is in the
                            // file before the stream ends.
                            None => match file.flush() {
                                Ok(()) => {
                                    if let Some(t) = tap.take() {
                                        t.complete();
                                    }
                                    Ok(file)
                                }
                                Err(e) => Err(e),
                            },
                        };
                        let _ = reply.send(r);
                        return;
                    }
                }
            }
        });
        if let Err(e) = spawned {
            return Err(StoreError::io(
                "starting a writer thread for",
                &partial_path,
                e,
            ));
        }
        Ok(Self {
            tx,
            budget,
            pending: Vec::new(),
            small: Vec::new(),
            pending_bytes: 0,
            len,
            partial_path,
        })
    }

    /// Appends bytes (batched; a large piece is handed over without a copy; waits only when
    /// the writer is more than [`QUEUE_BYTES`] behind).
    pub async fn write(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        if bytes.len() < SMALL_PIECE {
            return self.write_slice(&bytes).await;
        }
        self.len += bytes.len() as u64;
        self.close_small();
        self.pending_bytes += bytes.len();
        self.pending.push(bytes);
        self.hand_over_if_full().await
    }

    /// Appends a copy of `bytes` (for small pieces such as a record's CR LF).
    pub async fn write_slice(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.len += bytes.len() as u64;
        if self.small.capacity() - self.small.len() < bytes.len() {
            self.close_small();
        }
        if self.small.capacity() == 0 {
            self.small = Vec::with_capacity(GATHER.max(bytes.len()));
        }
        self.small.extend_from_slice(bytes);
        self.pending_bytes += bytes.len();
        self.hand_over_if_full().await
    }

    fn close_small(&mut self) {
        if !self.small.is_empty() {
            self.pending.push(std::mem::take(&mut self.small));
        }
    }

    async fn hand_over_if_full(&mut self) -> Result<(), StoreError> {
        if self.pending_bytes >= HANDOVER {
            self.hand_over_pending().await?;
        }
        Ok(())
    }

    fn stopped() -> StoreError {
        StoreError::Task("the file writer stopped".into())
    }

    fn send(&self, cmd: WriterCmd) -> Result<(), StoreError> {
        self.tx.send(cmd).map_err(|_| Self::stopped())
    }

    async fn hand_over_pending(&mut self) -> Result<(), StoreError> {
        self.close_small();
        if self.pending.is_empty() {
            return Ok(());
        }
        // A hand-over larger than the whole budget takes all of it.
        let held = self.pending_bytes.min(QUEUE_BYTES) as u32;
        self.budget
            .acquire_many(held)
            .await
            .map_err(|_| Self::stopped())?
            .forget();
        let pieces = std::mem::replace(&mut self.pending, Vec::with_capacity(8));
        self.pending_bytes = 0;
        self.send(WriterCmd::Write(pieces, held))
    }

    /// Bytes written so far (including those still queued).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The temporary file.
    pub fn partial_path(&self) -> &Path {
        &self.partial_path
    }

    /// Everything written so far, handed to the OS; the returned job fsyncs it.
    pub async fn sync_job(&mut self) -> Result<SyncJob, StoreError> {
        self.hand_over_pending().await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(WriterCmd::Sync(tx))?;
        rx.await.map_err(|_| Self::stopped())?
    }

    /// Stops the thread and returns the file with everything written (or the first write
    /// error).
    pub async fn finish(mut self) -> Result<PartialFile, StoreError> {
        self.hand_over_pending().await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(WriterCmd::Finish(tx))?;
        rx.await.map_err(|_| Self::stopped())?
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
    use chrono::NaiveDate;

    fn ctx<'a>(name: &'a str) -> NameContext<'a> {
        let dt = NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap();
        NameContext {
            virtual_file_name: name,
            stamp: FileStamp::from_datetime(dt, 7),
            originator: "O0013000000ACME",
            destination: "O0013000000BETA",
            user_data: "USR",
        }
    }

    #[test]
    fn default_format_is_the_virtual_file_name() {
        let f = NameFormat::default();
        assert_eq!(f.render(&ctx("INVOICE.EDI")).unwrap(), "INVOICE.EDI");
    }

    #[test]
    fn macros_expand() {
        let f = NameFormat::new(
            "%Originator%-%Destination%-%UserData%-%VirtualFileName%-%VirtualFileDate%-%VirtualFileDate:yyMMdd%-100%%",
        )
        .unwrap();
        assert_eq!(
            f.render(&ctx("A")).unwrap(),
            "O0013000000ACME-O0013000000BETA-USR-A-202601020304050007-260102-100%"
        );
        let g = NameFormat::new("%GUID%").unwrap();
        assert_eq!(g.render(&ctx("A")).unwrap().len(), 36);
        let t = NameFormat::new("%CurrentTime%").unwrap();
        assert_eq!(t.render(&ctx("A")).unwrap().len(), 17);
    }

    #[test]
    fn date_macro_with_slashes_stays_one_name() {
        let f = NameFormat::new("%VirtualFileDate:MM/dd/yyyy%_%VirtualFileName%").unwrap();
        assert_eq!(f.render(&ctx("X")).unwrap(), "01_02_2026_X");
    }

    #[test]
    fn bad_formats_are_reported() {
        assert!(matches!(
            NameFormat::new("%Nope%"),
            Err(StoreError::UnknownMacro(m)) if m == "Nope"
        ));
        assert!(matches!(
            NameFormat::new("%VirtualFileName"),
            Err(StoreError::UnterminatedMacro(_))
        ));
    }

    #[test]
    fn sanitising_keeps_names_inside_the_directory() {
        let cases = [
            ("../../etc/passwd", "___.._etc_passwd"),
            ("..\\..\\boot.ini", "___.._boot.ini"),
            ("/abs/path", "_abs_path"),
            ("a\0b\x07c", "a_b_c"),
            ("CON", "_CON"),
            ("nul.txt", "_nul.txt"),
            ("com1.edi", "_com1.edi"),
            ("COM10", "COM10"),
            (".hidden", "_hidden"),
            ("trailing. . ", "trailing"),
            ("a:b*c?d\"e<f>g|h", "a_b_c_d_e_f_g_h"),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_file_name(input).unwrap(), want, "{input:?}");
        }
        for unusable in ["", "   ", ".", "..", "..."] {
            assert!(sanitize_file_name(unusable).is_err(), "{unusable:?}");
        }
        let long = "é".repeat(300);
        let cut = sanitize_file_name(&long).unwrap();
        assert!(cut.len() <= 255 && cut.chars().all(|c| c == 'é'));
    }

    proptest::proptest! {
        #[test]
        fn sanitised_names_are_single_components(name in "\\PC{0,40}") {
            if let Ok(out) = sanitize_file_name(&name) {
                let p = Path::new(&out);
                let comps: Vec<_> = p.components().collect();
                proptest::prop_assert_eq!(comps.len(), 1);
                proptest::prop_assert!(matches!(comps[0], std::path::Component::Normal(_)));
                proptest::prop_assert!(!out.starts_with('.'));
                proptest::prop_assert!(!out.contains(['/', '\\', '\0']));
            }
        }
    }

    #[tokio::test]
    async fn commit_makes_the_file_appear_only_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("in").join("FILE.EDI");
        let mut p = PartialFile::create(&target).unwrap();
        p.write(b"hello ").unwrap();
        assert!(!target.exists());
        assert_eq!(p.checkpoint().await.unwrap(), 6);
        p.write(b"world").unwrap();
        let partial = p.partial_path().to_owned();
        assert!(partial.starts_with(dir.path().join("in")));
        let placed = p.commit(&StorePolicy::default()).await.unwrap();
        assert_eq!(placed, target);
        assert_eq!(fs::read(&target).unwrap(), b"hello world");
        assert!(!partial.exists());
    }

    #[tokio::test]
    async fn no_overwrite_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("F");
        fs::write(&target, b"old").unwrap();
        let mut p = PartialFile::create(&target).unwrap();
        p.write(b"new").unwrap();
        let partial = p.partial_path().to_owned();
        let err = p.commit(&StorePolicy::default()).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert!(partial.exists(), "the data is kept for the operator");

        let mut p = PartialFile::create(&target).unwrap();
        p.write(b"new").unwrap();
        let policy = StorePolicy {
            overwrite: true,
            ..StorePolicy::default()
        };
        p.commit(&policy).await.unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
    }

    #[tokio::test]
    async fn resume_truncates_to_the_durable_position() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("F");
        let mut p = PartialFile::create(&target).unwrap();
        p.write(&[1u8; 3000]).unwrap();
        p.checkpoint().await.unwrap();
        let partial = p.partial_path().to_owned();
        p.abandon(false).await.unwrap();
        assert_eq!(fs::metadata(&partial).unwrap().len(), 3000);

        let mut r = PartialFile::resume(&partial, &target, 2048).unwrap();
        assert_eq!(r.len(), 2048);
        r.write(&[2u8; 10]).unwrap();
        r.commit(&StorePolicy::default()).await.unwrap();
        let data = fs::read(&target).unwrap();
        assert_eq!(data.len(), 2058);
        assert!(data[..2048].iter().all(|&b| b == 1) && data[2048..].iter().all(|&b| b == 2));

        assert!(PartialFile::resume(&dir.path().join("missing"), &target, 0).is_err());
    }

    #[tokio::test]
    async fn abandon_with_delete_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = PartialFile::create(&dir.path().join("F")).unwrap();
        p.write(b"x").unwrap();
        let partial = p.partial_path().to_owned();
        p.abandon(true).await.unwrap();
        assert!(!partial.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn background_writer_keeps_order_and_reports_at_sync() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("F");
        let mut w = BackgroundWriter::spawn(PartialFile::create(&target).unwrap()).unwrap();
        let mut want = Vec::new();
        for i in 0..500u32 {
            let piece: Vec<u8> = (0..(i % 300)).map(|j| (i + j) as u8).collect();
            want.extend_from_slice(&piece);
            w.write(piece).await.unwrap();
            if i % 7 == 0 {
                want.extend_from_slice(b"\r\n");
                w.write_slice(b"\r\n").await.unwrap();
            }
        }
        // Hand-overs larger than half the queue budget: each waits for the thread to give
        // budget back, and one larger than all of it takes the whole budget.
        for (i, size) in [3 << 20, 3 << 20, 5 << 20, 20_000].into_iter().enumerate() {
            let piece = vec![i as u8; size];
            want.extend_from_slice(&piece);
            w.write(piece).await.unwrap();
        }
        w.write(vec![9u8; 200_000]).await.unwrap();
        want.extend(std::iter::repeat_n(9u8, 200_000));
        assert_eq!(w.len(), want.len() as u64);
        let durable = tokio::task::spawn_blocking({
            let job = w.sync_job().await.unwrap();
            move || job.run()
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(durable, want.len() as u64);
        let partial = w.finish().await.unwrap();
        partial.commit(&StorePolicy::default()).await.unwrap();
        assert_eq!(fs::read(&target).unwrap(), want);
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
