//! `mailbackup export`: messages of a backup to mbox or Maildir.
//!
//! What is exported is a [`Selection`] answered by the index's header rows (mailbox, folder,
//! creation date range, search query, messages by key or Graph id: the selection `restore`
//! takes). Each message is written as Graph gave it: the stored
//! object without the first line this crate added (`X-NS-Backup`, see [`crate::store`]).
//!
//! Formats:
//! - mbox (mboxrd): one file per folder (`<out>/<mailbox>/<folder path>.mbox`) or one per
//!   mailbox (`<out>/<mailbox>.mbox`). Each message is preceded by a
//!   `From MAILER-DAEMON <date>` line; every line of the message matching `>*From ` gets one
//!   more `>` (mboxrd quoting, undone by a reader by removing one `>`); a message that does not
//!   end with a line end gets an LF; then an empty line. The file is written to a temporary file
//!   next to it, fsynced and renamed (`durable-write`): a failure or a crash leaves the previous
//!   file or none, never a part.
//! - Maildir: one Maildir per folder (`<out>/<mailbox>/<folder path>/{cur,new,tmp}`); a message
//!   is the file `cur/<object name>:2,<flags>` with `S` when it was read when backed up (the
//!   index records `isRead` from the listing; messages indexed by an earlier version have no
//!   read state and get no flag). Each message is written in `tmp/`; a second thread gathers the
//!   messages finished in the last 100 ms, makes them durable (one `syncfs`, else an fsync
//!   per file), renames them into `cur/` and fsyncs `cur/`, while the next ones (of this folder or the
//!   next) are written: a
//!   crash or a failure never leaves a partial message in `cur/`, and a failure removes from
//!   `tmp/` what it did not move. Exporting into a Maildir an earlier export wrote replaces
//!   each message's earlier file (same name before the `:`) in `cur/` or `new/`, whatever its
//!   flags: a re-run after a failure, or after the read state changed, leaves one file per
//!   message.
//!
//! A write the export folder refuses for good (disk full, quota, read-only, permission, file
//! size limit) stops the export with [`Error::ExportStorage`], which names the file and says what
//! to do; what was finished before stays complete.
//!
//! Memory stays constant: header rows come from the index in pages of [`PAGE`], and message
//! bytes are streamed from the store to the output through 64 KiB buffers (the mboxrd quoting
//! looks at most at the first bytes of each line).
//!
//! Folder path segments are made safe as file names (`..`, a leading dot, `\\` and NUL become
//! `_`; a `/` inside a display name makes one more folder level); two folders with the same
//! path get ` (2)`, ` (3)`.

use crate::error::Error;
use crate::index::{Hit, Index};
use crate::search::{Cursor, Order, Selection};
use crate::store::{BackupHeader, MessageStore};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

/// Header rows read from the index at a time.
pub const PAGE: usize = 1000;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// mboxrd, one file per folder.
    MboxPerFolder,
    /// mboxrd, one file per mailbox.
    MboxPerMailbox,
    /// Maildir, one per folder.
    Maildir,
}

/// Live counters, for a progress bar.
#[derive(Debug, Default)]
pub struct ExportProgress {
    /// Messages selected.
    pub total: AtomicU64,
    /// Messages written.
    pub done: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Messages written.
    pub messages: u64,
    /// Message bytes written (without mbox separators and quoting).
    pub bytes: u64,
    /// mbox files or Maildir folders written.
    pub outputs: Vec<PathBuf>,
    /// Selected messages whose object is missing from the store (`verify` says more).
    pub missing: Vec<String>,
}

/// Pages of hits from the index, in folder order.
struct Feed<'a> {
    index: &'a dyn Index,
    selection: &'a Selection,
    buf: VecDeque<Hit>,
    cursor: Option<Cursor>,
    done: bool,
}

impl Feed<'_> {
    fn peek(&mut self) -> Result<Option<&Hit>, Error> {
        if self.buf.is_empty() && !self.done {
            let page =
                self.index
                    .select(self.selection, Order::Folder, self.cursor.as_ref(), PAGE)?;
            self.done = page.len() < PAGE;
            self.cursor = page.last().map(Hit::cursor);
            self.buf.extend(page);
        }
        Ok(self.buf.front())
    }

    /// The next hit when it is in the same group as `group`.
    fn next_in(&mut self, group: &(String, String), format: Format) -> Result<Option<Hit>, Error> {
        match self.peek()? {
            Some(h) if group_of(h, format) == *group => Ok(self.buf.pop_front()),
            _ => Ok(None),
        }
    }
}

fn group_of(h: &Hit, format: Format) -> (String, String) {
    match format {
        Format::MboxPerMailbox => (h.headers.mailbox.clone(), String::new()),
        _ => (h.headers.mailbox.clone(), h.headers.folder_id.clone()),
    }
}

/// A name safe as one path segment (a `/` inside a folder's display name included).
fn safe_segment(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if matches!(c, '\0' | '\\' | '/') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let s = s.trim().to_string();
    if s.is_empty() || s == "." || s == ".." {
        return "_".to_string();
    }
    match s.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => s,
    }
}

/// `<out>/<mailbox>/<folder path segments>` made safe.
fn folder_dir(out: &Path, hit: &Hit) -> PathBuf {
    let mut p = out.join(safe_segment(&hit.headers.mailbox));
    let path = if hit.folder_path.is_empty() {
        "(no folder)"
    } else {
        hit.folder_path.as_str()
    };
    for seg in crate::store::folder_path::split(path) {
        p.push(safe_segment(&seg));
    }
    p
}

/// `path`, or `path (2)`, `path (3)`... when already used by this export.
fn unique(used: &mut HashSet<PathBuf>, path: PathBuf, ext: &str) -> PathBuf {
    let mut n = 1;
    loop {
        let candidate = if n == 1 {
            PathBuf::from(format!("{}{ext}", path.display()))
        } else {
            PathBuf::from(format!("{} ({n}){ext}", path.display()))
        };
        if used.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

/// Opens a stored object positioned after the backup header line (when it has one).
fn open_message(
    store: &dyn MessageStore,
    hit: &Hit,
) -> Result<Option<BufReader<Box<dyn Read + Send>>>, Error> {
    let Some(r) = store.open(&hit.headers.key)? else {
        return Ok(None);
    };
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let buf = r
        .fill_buf()
        .map_err(|e| Error::io(format!("cannot read {}", hit.headers.key), e))?;
    let line_end = buf.iter().take(8192).position(|b| *b == b'\n');
    if let Some(end) = line_end
        && std::str::from_utf8(&buf[..=end])
            .ok()
            .and_then(BackupHeader::parse)
            .is_some()
    {
        r.consume(end + 1);
    }
    Ok(Some(r))
}

/// Writes what it is given with mboxrd quoting of `>*From ` lines; remembers the last byte.
struct MboxrdWriter<'w, W: Write> {
    w: &'w mut W,
    /// At a line start: `>` seen, then bytes of `From ` matched. `None` inside a line.
    start: Option<(usize, usize)>,
    last: Option<u8>,
}

const FROM: &[u8] = b"From ";

impl<'w, W: Write> MboxrdWriter<'w, W> {
    fn new(w: &'w mut W) -> Self {
        MboxrdWriter {
            w,
            start: Some((0, 0)),
            last: None,
        }
    }

    fn flush_pending(&mut self, quote: bool) -> io::Result<()> {
        if let Some((gts, matched)) = self.start.take() {
            if quote {
                self.w.write_all(b">")?;
            }
            for _ in 0..gts {
                self.w.write_all(b">")?;
            }
            self.w.write_all(&FROM[..matched])?;
        }
        Ok(())
    }

    fn push(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while let Some(&b) = buf.first() {
            match self.start {
                None => {
                    let end = buf
                        .iter()
                        .position(|c| *c == b'\n')
                        .map_or(buf.len(), |i| i + 1);
                    self.w.write_all(&buf[..end])?;
                    self.last = Some(buf[end - 1]);
                    if buf[end - 1] == b'\n' {
                        self.start = Some((0, 0));
                    }
                    buf = &buf[end..];
                }
                Some((gts, matched)) => {
                    if matched == 0 && b == b'>' {
                        self.start = Some((gts + 1, 0));
                    } else if b == FROM[matched] {
                        if matched + 1 == FROM.len() {
                            self.start = Some((gts, FROM.len()));
                            self.flush_pending(true)?;
                        } else {
                            self.start = Some((gts, matched + 1));
                        }
                    } else {
                        // Not a From line: write what was held back, then the byte as usual.
                        self.flush_pending(false)?;
                        continue;
                    }
                    self.last = Some(b);
                    buf = &buf[1..];
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.flush_pending(false)?;
        if self.last != Some(b'\n') {
            self.w.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Which side of a copy failed: reading the backup or writing the export.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl CopyError {
    /// The crate's error: a read names the object of the backup, a write the file exported to.
    fn into_error(self, hit: &Hit, target: &Path) -> Error {
        let key = &hit.headers.key;
        match self {
            CopyError::Read(e) => Error::io(format!("cannot read {key} from the backup"), e),
            CopyError::Write(e) => {
                Error::export_io(format!("cannot export {key} to {}", target.display()), e)
            }
        }
    }
}

/// Size of the buffer messages are copied through.
const COPY_BUFFER: usize = 64 * 1024;

/// Copies `r` into `sink` through `buf` (one buffer for a whole export, not one per message);
/// returns the bytes copied.
fn pump(
    r: &mut impl Read,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64, CopyError> {
    let mut n = 0u64;
    loop {
        let k = match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        sink(&buf[..k]).map_err(CopyError::Write)?;
        n += k as u64;
    }
}

/// The `From ` separator line of a message (asctime of its date, UTC).
fn from_line(hit: &Hit) -> String {
    let date = hit
        .headers
        .date
        .as_deref()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    format!(
        "From MAILER-DAEMON {}\n",
        date.format("%a %b %e %H:%M:%S %Y")
    )
}

fn io_err(e: Error) -> io::Error {
    io::Error::other(e)
}

/// Back from `io_err` (or a real I/O error, which is a write into the export folder) to the
/// crate's error.
fn from_durable(e: durable_write::Error) -> Error {
    if e.source.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = e.source.into_inner().expect("checked");
        return *inner.downcast::<Error>().expect("checked");
    }
    Error::export_io(e.context(), e.source)
}

/// Exports the messages of `selection` into `out` in `format`. A message whose object is missing
/// is listed in the report and left out; any other failure stops the export with the outputs
/// written so far complete and the one being written removed.
pub fn export(
    index: &dyn Index,
    store: &dyn MessageStore,
    selection: &Selection,
    format: Format,
    out: &Path,
    progress: &ExportProgress,
) -> Result<ExportReport, Error> {
    progress
        .total
        .store(index.count(selection, u64::MAX)?, Ordering::Relaxed);
    let mut feed = Feed {
        index,
        selection,
        buf: VecDeque::new(),
        cursor: None,
        done: false,
    };
    let mut report = ExportReport::default();
    let mut used = HashSet::new();
    let committer_failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Maildir committers still moving an earlier folder's last messages while the next
        // folder is written.
        let mut committers = VecDeque::new();
        let written = (|| {
            while let Some(first) = feed.peek()? {
                if committer_failed.load(Ordering::Acquire) {
                    // A committer's error, returned when it is joined below.
                    break;
                }
                let group = group_of(first, format);
                let target = match format {
                    Format::MboxPerFolder => unique(&mut used, folder_dir(out, first), ".mbox"),
                    Format::MboxPerMailbox => unique(
                        &mut used,
                        out.join(safe_segment(&first.headers.mailbox)),
                        ".mbox",
                    ),
                    Format::Maildir => unique(&mut used, folder_dir(out, first), ""),
                };
                match format {
                    Format::Maildir => {
                        let committer = write_maildir(
                            scope,
                            &mut feed,
                            &group,
                            store,
                            &target,
                            progress,
                            &committer_failed,
                            &mut report,
                        )?;
                        committers.push_back(committer);
                        while committers.len() > COMMITTERS_BEHIND {
                            if let Some(c) = committers.pop_front() {
                                join_committer(c, &mut report)?;
                            }
                        }
                    }
                    _ => {
                        let opts = durable_write::Options::default();
                        durable_write::write_with(&target, &opts, |f| {
                            let mut w = BufWriter::with_capacity(256 * 1024, f);
                            let mut buf = vec![0u8; COPY_BUFFER];
                            while let Some(hit) = feed.next_in(&group, format).map_err(io_err)? {
                                let Some(mut r) = open_message(store, &hit).map_err(io_err)? else {
                                    report.missing.push(hit.headers.key.to_string());
                                    continue;
                                };
                                w.write_all(from_line(&hit).as_bytes())?;
                                let mut q = MboxrdWriter::new(&mut w);
                                let n = pump(&mut r, &mut buf, |b| q.push(b))
                                    .map_err(|e| io_err(e.into_error(&hit, &target)))?;
                                q.finish()?;
                                w.write_all(b"\n")?;
                                report.messages += 1;
                                report.bytes += n;
                                progress.done.fetch_add(1, Ordering::Relaxed);
                                progress.bytes.fetch_add(n, Ordering::Relaxed);
                            }
                            w.flush()
                        })
                        .map_err(from_durable)?;
                    }
                }
                report.outputs.push(target);
            }
            Ok(())
        })();
        // Every committer is joined, whatever happened; the first error is returned.
        let mut joined = Ok(());
        for c in committers {
            let r = join_committer(c, &mut report);
            if joined.is_ok() {
                joined = r;
            }
        }
        joined.and(written)
    })?;
    Ok(report)
}

/// Folders whose committer may still be finishing while the next folder is written.
const COMMITTERS_BEHIND: usize = 2;

/// The Maildir committer of one folder: the messages and bytes it moved into `cur/`.
type Committer<'scope> = std::thread::ScopedJoinHandle<'scope, Result<(u64, u64), Error>>;

/// Waits for a committer and counts what it moved.
fn join_committer(committer: Committer<'_>, report: &mut ExportReport) -> Result<(), Error> {
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
fn write_maildir<'scope>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(input: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut q = MboxrdWriter::new(&mut out);
        for chunk in input {
            q.push(chunk).unwrap();
        }
        q.finish().unwrap();
        out
    }

    #[test]
    fn from_lines_get_one_more_quote_whatever_the_chunking() {
        let msg: &[u8] =
            b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n>>From far\r\nFrom\r\n>Fro\r\nnot From \r\nFrom ";
        let want: &[u8] =
            b"Subject: x\r\n\r\n>From here\r\n>>From there\r\n>>>From far\r\nFrom\r\n>Fro\r\nnot From \r\n>From \n";
        assert_eq!(quote(&[msg]), want);
        // Split at every position: the same output.
        for i in 0..msg.len() {
            assert_eq!(quote(&[&msg[..i], &msg[i..]]), want, "split at {i}");
        }
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(quote(&bytes), want, "byte by byte");
        assert_eq!(quote(&[b">>>"]), b">>>\n");
        assert_eq!(quote(&[b"a\n"]), b"a\n");
    }

    #[test]
    fn folder_names_become_safe_segments() {
        assert_eq!(safe_segment(".."), "_");
        assert_eq!(safe_segment(".hidden"), "_hidden");
        assert_eq!(safe_segment("a\\b\0"), "a_b_");
        assert_eq!(safe_segment(" "), "_");
        assert_eq!(safe_segment("Inbox"), "Inbox");
    }

    #[test]
    fn a_slash_inside_a_folder_name_stays_in_one_directory() {
        let hit = Hit {
            headers: crate::index::HeaderRow {
                mailbox: "me".into(),
                id: "1".into(),
                key: crate::store::ObjectKey::new("2024-01/a.eml").unwrap(),
                from: String::new(),
                to: String::new(),
                cc: String::new(),
                subject: String::new(),
                date: None,
                created: None,
                message_id: None,
                folder_id: "f".into(),
                size: 0,
                has_attachment: false,
                is_read: None,
            },
            folder_path: crate::store::folder_path::join(&["Inbox", "a/b", "..", "50%"]),
            seq: 0,
        };
        assert_eq!(
            folder_dir(Path::new("/out"), &hit),
            Path::new("/out/me/Inbox/a_b/_/50%")
        );
    }
}
