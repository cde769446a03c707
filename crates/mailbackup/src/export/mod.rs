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
//!   read state and get no flag). Two writer threads write each message completely into an
//!   anonymous file (`O_TMPFILE`, no name yet) or, where the file system has none, into
//!   `tmp/`; a committer thread per folder gathers the messages finished in the last 100 ms,
//!   makes them durable (one `syncfs`, else an fsync per file), links or renames them into
//!   `cur/` and fsyncs `cur/`, while the next ones (of this folder or the next) are written:
//!   a crash or a failure never leaves a partial message in `cur/`, and a failure removes
//!   from `tmp/` what it did not move. Exporting into a Maildir an earlier export wrote
//!   replaces each message's earlier file (same name before the `:`) in `cur/` or `new/`,
//!   whatever its flags: a re-run after a failure, or after the read state changed, leaves
//!   one file per message.
//!
//! [`Durability::NoFsync`] (`--no-fsync`) leaves out every fsync and `syncfs`, like `cp`:
//! files still appear only whole (renamed or linked into place once written), so a killed
//! export leaves no partial file, but a crash of the machine may lose what it reported.
//!
//! A write the export folder refuses for good (disk full, quota, read-only, permission, file
//! size limit) stops the export with [`Error::ExportStorage`], which names the file and says what
//! to do; what was finished before stays complete.
//!
//! Memory stays constant: header rows come from the index in pages of [`PAGE`], and message
//! bytes are streamed from the store to the output through 64 KiB buffers (the mboxrd quoting
//! looks at most at the first bytes of each line).
//!
//! Here: the selection's feed from the index, output paths, the copy of a stored message and
//! the export loop; the mbox writing is in `mbox`, the Maildir writing (with its committer
//! threads) in `maildir`.
//!
//! Folder path segments are made safe as file names (`..`, a leading dot, `\\` and NUL become
//! `_`; a `/` inside a display name makes one more folder level); two folders with the same
//! path get ` (2)`, ` (3)`.

use crate::error::Error;
use crate::index::{Hit, Index};
use crate::search::{Cursor, Order, Selection};
use crate::store::{BackupHeader, MessageStore};
use std::collections::{HashSet, VecDeque};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

mod maildir;
mod mbox;

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

/// Whether an export waits for what it writes to be on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Each mbox file is fsynced before it is renamed into place; Maildir messages are made
    /// durable in batches before they are moved into `cur/`: what the export reports written
    /// survives a crash of the machine.
    Durable,
    /// No fsync (`--no-fsync`), like `cp`: files still appear only complete (renamed or linked
    /// into place once written), so a killed export leaves no partial message, but a crash of
    /// the machine may lose what the export reported written.
    NoFsync,
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

    /// Up to `n` next hits of the same group as `group`.
    fn take_in(
        &mut self,
        group: &(String, String),
        format: Format,
        n: usize,
    ) -> Result<Vec<Hit>, Error> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.next_in(group, format)? {
                Some(hit) => out.push(hit),
                None => break,
            }
        }
        Ok(out)
    }

    /// The next hit when it is in the same group as `group`.
    fn next_in(&mut self, group: &(String, String), format: Format) -> Result<Option<Hit>, Error> {
        match self.peek()? {
            Some(h) if in_group(h, group, format) => Ok(self.buf.pop_front()),
            _ => Ok(None),
        }
    }
}

/// The group of messages written to one output: (mailbox, folder id), the folder left empty
/// with one mbox per mailbox.
fn group_of(h: &Hit, format: Format) -> (String, String) {
    match format {
        Format::MboxPerMailbox => (h.headers.mailbox.clone(), String::new()),
        _ => (h.headers.mailbox.clone(), h.headers.folder_id.clone()),
    }
}

/// Whether `h` is in `group` ([`group_of`] without building one for every message).
fn in_group(h: &Hit, group: &(String, String), format: Format) -> bool {
    h.headers.mailbox == group.0
        && (format == Format::MboxPerMailbox || h.headers.folder_id == group.1)
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

/// Back from `mbox::io_err` (or a real I/O error, which is a write into the export folder) to the
/// crate's error.
fn from_durable(e: durable_write::Error) -> Error {
    if e.source.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = e.source.into_inner().expect("checked");
        return *inner.downcast::<Error>().expect("checked");
    }
    Error::export_io(e.context(), e.source)
}

/// Most open files [`raise_open_file_limit`] asks for.
const OPEN_FILES_WANTED: u64 = 65_536;

/// Raises the process's soft limit of open files towards its hard limit (at most 65,536) and
/// returns the soft limit now in force (`None` when unknown, or not Linux). A Maildir export
/// keeps up to a quarter of that limit open as anonymous files waiting for their batch, and
/// sends the rest through `tmp/`, which is slower; 1,024 is a common default soft limit, kept
/// low for programs using `select`, and raising it is left to programs that need more. For a
/// program that starts no other process while exporting: children inherit the limit.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let now = getrlimit(Resource::Nofile);
        let current = now.current?;
        let wanted = now
            .maximum
            .map_or(OPEN_FILES_WANTED, |max| max.min(OPEN_FILES_WANTED));
        if wanted <= current {
            return Some(current);
        }
        let raised = Rlimit {
            current: Some(wanted),
            maximum: now.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => Some(wanted),
            Err(_) => Some(current),
        }
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Exports the messages of `selection` into `out` in `format`. A message whose object is missing
/// is listed in the report and left out; any other failure stops the export with the outputs
/// written so far complete and the one being written removed.
pub fn export(
    index: &dyn Index,
    store: &dyn MessageStore,
    selection: &Selection,
    format: Format,
    durability: Durability,
    out: &Path,
    progress: &ExportProgress,
) -> Result<ExportReport, Error> {
    let maildir_shared = maildir::Shared::new(durability);
    export_with(
        index,
        store,
        selection,
        format,
        out,
        progress,
        &maildir_shared,
    )
}

/// [`export`] with the Maildir writers' shared state given (tests limit its anonymous files);
/// it carries the durability asked for.
fn export_with(
    index: &dyn Index,
    store: &dyn MessageStore,
    selection: &Selection,
    format: Format,
    out: &Path,
    progress: &ExportProgress,
    maildir_shared: &maildir::Shared,
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
    std::thread::scope(|scope| {
        // Maildir committers still moving an earlier folder's last messages while the next
        // folder is written.
        let mut committers = VecDeque::new();
        let written = (|| {
            while let Some(first) = feed.peek()? {
                if maildir_shared.failed() {
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
                        let committer = maildir::write_maildir(
                            scope,
                            &mut feed,
                            &group,
                            store,
                            &target,
                            progress,
                            maildir_shared,
                            &mut report,
                        )?;
                        committers.push_back(committer);
                        while committers.len() > maildir::COMMITTERS_BEHIND {
                            if let Some(c) = committers.pop_front() {
                                maildir::join_committer(c, &mut report)?;
                            }
                        }
                    }
                    _ => mbox::write_mbox(
                        &mut feed,
                        &group,
                        format,
                        maildir_shared.durability(),
                        store,
                        &target,
                        progress,
                        &mut report,
                    )?,
                }
                report.outputs.push(target);
            }
            Ok(())
        })();
        // Every committer is joined, whatever happened; the first error is returned.
        let mut joined = Ok(());
        for c in committers {
            let r = maildir::join_committer(c, &mut report);
            if joined.is_ok() {
                joined = r;
            }
        }
        joined.and(written)
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_open_file_limit_is_raised_towards_the_hard_limit_and_never_lowered() {
        use rustix::process::{Resource, getrlimit};
        let before = getrlimit(Resource::Nofile);
        let now = raise_open_file_limit().expect("Linux has a limit");
        let after = getrlimit(Resource::Nofile);
        assert_eq!(after.current, Some(now));
        assert_eq!(after.maximum, before.maximum, "the hard limit is kept");
        let ceiling = after
            .maximum
            .map_or(OPEN_FILES_WANTED, |hard| hard.min(OPEN_FILES_WANTED));
        assert_eq!(now, before.current.unwrap().max(ceiling));
        // Again: nothing changes.
        assert_eq!(raise_open_file_limit(), Some(now));
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
