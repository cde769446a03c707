//! The on-disk layout and the crash-safe writer.
//!
//! A message is stored as `<root>/YYYY-MM/<hex SHA-1 of its id>.eml`, the month being its UTC
//! `createdDateTime`. The file is Graph's MIME content (`/$value`) byte for byte, preceded by one
//! header line added by this crate (the seed's `X-NS-Backup`):
//!
//! ```text
//! X-NS-Backup: v=1; id="<Graph message id>"; lastModified="<lastModifiedDateTime>"\r\n
//! ```
//!
//! Values are RFC 5322 quoted strings (`"` and `\` escaped with `\`); the line ends like the
//! message's first line (CRLF for Graph's MIME). Dropping the first line gives Graph's content.
//!
//! Writes go to a temporary file in the target folder, are fsynced, renamed over the target and
//! the folder is fsynced: a reader (or a crash) sees the old file or the new one, never a part.
//! Temporary files are named `.<name>.tmp-<pid>-<n>` and removed by the next run.
//! This module does not touch the index; the engine records a file only after `write_atomic`
//! returned.

use crate::error::Error;
use chrono::{DateTime, Utc};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Name of the backup header.
pub const BACKUP_HEADER: &str = "X-NS-Backup";

/// File name of a message: hex SHA-1 of its id, `.eml`.
pub fn file_name(id: &str) -> String {
    format!("{}.eml", hex::encode(Sha1::digest(id.as_bytes())))
}

/// Month folder (`YYYY-MM`) for a creation time; `undated` when Graph gave none.
pub fn month_folder(created: Option<DateTime<Utc>>) -> String {
    match created {
        Some(c) => c.format("%Y-%m").to_string(),
        None => "undated".to_string(),
    }
}

/// Parses a Graph date-time.
pub fn parse_graph_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// Default path of a message under a mailbox root.
pub fn default_path(root: &Path, id: &str, created: Option<&str>) -> PathBuf {
    root.join(month_folder(parse_graph_time(created)))
        .join(file_name(id))
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        // Header values must stay on one line.
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// The contents of an `X-NS-Backup` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupHeader {
    /// Graph message id.
    pub id: String,
    /// `lastModifiedDateTime` when the copy was fetched.
    pub last_modified: String,
}

impl BackupHeader {
    /// The header line, ending with `eol`.
    pub fn to_line(&self, eol: &str) -> String {
        format!(
            "{BACKUP_HEADER}: v=1; id={}; lastModified={}{eol}",
            quote(&self.id),
            quote(&self.last_modified)
        )
    }

    /// Parses a header line (with or without its line end). `None` when it is not ours.
    pub fn parse(line: &str) -> Option<BackupHeader> {
        let line = line.trim_end_matches(['\r', '\n']);
        let (name, rest) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case(BACKUP_HEADER) {
            return None;
        }
        let mut id = None;
        let mut last_modified = None;
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ' ' || *c == ';') {
                chars.next();
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if key.is_empty() {
                break;
            }
            let value = if chars.peek() == Some(&'"') {
                chars.next();
                let mut v = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => v.extend(chars.next()),
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                if !closed {
                    return None;
                }
                v
            } else {
                chars.by_ref().take_while(|c| *c != ';').collect::<String>()
            };
            match key.trim() {
                "id" => id = Some(value),
                "lastModified" => last_modified = Some(value),
                _ => {}
            }
        }
        Some(BackupHeader {
            id: id?,
            last_modified: last_modified?,
        })
    }
}

/// The line ending of the first line of `mime` (CRLF unless the first line ends with a bare LF).
fn eol_of(mime: &[u8]) -> &'static str {
    match mime.iter().position(|b| *b == b'\n') {
        Some(i) if i > 0 && mime[i - 1] == b'\r' => "\r\n",
        Some(_) => "\n",
        None => "\r\n",
    }
}

/// The bytes to store for a message: the backup header then the MIME content unchanged.
pub fn with_header(header: &BackupHeader, mime: &[u8]) -> Vec<u8> {
    let line = header.to_line(eol_of(mime));
    let mut out = Vec::with_capacity(line.len() + mime.len());
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(mime);
    out
}

/// Reads the backup header of a saved file; `Ok(None)` when the file is missing or has none.
pub fn read_header(path: &Path) -> Result<Option<BackupHeader>, Error> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
    };
    let mut line = String::new();
    // The header line is short; cap the read so a huge first line cannot exhaust memory.
    let mut r = BufReader::new(f).take(8192);
    match r.read_line(&mut line) {
        Ok(_) => Ok(BackupHeader::parse(&line)),
        // Not UTF-8: not our header.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

/// SHA-256 (hex) of a file's content.
pub fn hash_file(path: &Path) -> Result<String, std::io::Error> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// SHA-256 (hex) of bytes.
pub fn hash_bytes(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Prefix of temporary files.
pub(crate) const TMP_MARK: &str = ".tmp-";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Fsyncs a directory so a rename or create in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    // Directories cannot be opened for fsync on every platform; where they can, do it.
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("cannot fsync folder {}", dir.display()), e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `dir` and its parents, fsyncing each parent whose content changed.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io(format!("cannot create {}", dir.display()), e)),
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Writes `data` to `path` atomically and durably (temp file, fsync, rename, fsync folder).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().ok_or_else(|| {
        Error::io(
            format!("{} has no parent folder", path.display()),
            std::io::ErrorKind::InvalidInput.into(),
        )
    })?;
    create_dir_durable(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}{TMP_MARK}{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("cannot rename {} to {}", tmp.display(), path.display()),
                e,
            )
        })?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a file durably; a missing file is not an error.
pub(crate) fn remove_durable(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("cannot remove {}", path.display()), e)),
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Moves a file durably to `to` (creating folders). Across file systems it copies, fsyncs and
/// then removes the original, so a crash leaves the file in one place or both, never in none.
pub(crate) fn move_durable(from: &Path, to: &Path) -> Result<(), Error> {
    let dir = to.parent().ok_or_else(|| {
        Error::io(
            format!("{} has no parent folder", to.display()),
            std::io::ErrorKind::InvalidInput.into(),
        )
    })?;
    create_dir_durable(dir)?;
    match fs::rename(from, to) {
        Ok(()) => {
            sync_dir(dir)?;
            if let Some(src) = from.parent() {
                sync_dir(src)?;
            }
            Ok(())
        }
        Err(_) => {
            let data = fs::read(from)
                .map_err(|e| Error::io(format!("cannot read {}", from.display()), e))?;
            write_atomic(to, &data)?;
            remove_durable(from)
        }
    }
}

/// Every file under `root` (recursively), skipping folders whose name starts with `.`
/// (`.meta`). Temporary files are returned too; callers tell them apart with [`is_temp`].
pub(crate) fn walk_files(root: &Path, skip: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("cannot list {}", dir.display()), e)),
        };
        for entry in rd {
            let entry =
                entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
            let p = entry.path();
            let ft = entry
                .file_type()
                .map_err(|e| Error::io(format!("cannot stat {}", p.display()), e))?;
            if ft.is_dir() {
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if !hidden && !skip.iter().any(|s| s == &p) {
                    stack.push(p);
                }
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Whether a file name is one of our temporary files.
pub(crate) fn is_temp(path: &Path) -> bool {
    path.file_name()
        .map(|n| {
            let n = n.to_string_lossy();
            n.starts_with('.') && n.contains(TMP_MARK)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_escaping() {
        let h = BackupHeader {
            id: "AAMkAD\"x\\y=".into(),
            last_modified: "2024-01-02T03:04:05Z".into(),
        };
        let line = h.to_line("\r\n");
        assert!(line.starts_with("X-NS-Backup: v=1; id=\"AAMkAD\\\"x\\\\y=\""));
        assert_eq!(BackupHeader::parse(&line), Some(h));
        assert_eq!(BackupHeader::parse("Subject: hi"), None);
        assert_eq!(BackupHeader::parse("X-NS-Backup: id=\"unterminated"), None);
        assert_eq!(BackupHeader::parse("X-NS-Backup: v=1; id=\"a\""), None);
    }

    proptest::proptest! {
        /// The header is read back from files on disk that anything may have changed: any
        /// line parses or is refused without panicking, and every id/timestamp free of line
        /// breaks (Graph's never contain them) survives a round trip.
        #[test]
        fn header_parse_is_total_and_roundtrips(
            junk in "\\PC{0,120}",
            id in "[^\r\n]{0,80}",
            last_modified in "[^\r\n]{0,40}",
        ) {
            let _ = BackupHeader::parse(&junk);
            let _ = BackupHeader::parse(&format!("X-NS-Backup:{junk}"));
            let h = BackupHeader { id, last_modified };
            proptest::prop_assert_eq!(BackupHeader::parse(&h.to_line("\r\n")), Some(h.clone()));
            proptest::prop_assert_eq!(BackupHeader::parse(&h.to_line("\n")), Some(h));
        }
    }

    #[test]
    fn header_follows_message_line_ending() {
        let h = BackupHeader {
            id: "i".into(),
            last_modified: "t".into(),
        };
        assert!(
            with_header(&h, b"Subject: a\r\n\r\nbody")
                .starts_with(b"X-NS-Backup: v=1; id=\"i\"; lastModified=\"t\"\r\nSubject")
        );
        assert!(
            with_header(&h, b"Subject: a\n\nbody")
                .starts_with(b"X-NS-Backup: v=1; id=\"i\"; lastModified=\"t\"\nSubject")
        );
        let stored = with_header(&h, b"Subject: a\r\n\r\nbody");
        let cut = stored.iter().position(|b| *b == b'\n').unwrap() + 1;
        assert_eq!(&stored[cut..], b"Subject: a\r\n\r\nbody");
    }

    #[test]
    fn paths_use_sha1_and_creation_month() {
        let p = default_path(Path::new("/d"), "abc", Some("2023-10-05T10:00:00Z"));
        assert_eq!(
            p,
            Path::new("/d/2023-10/a9993e364706816aba3e25717850c26c9cd0d89d.eml")
        );
        assert_eq!(
            default_path(Path::new("/d"), "abc", None).parent().unwrap(),
            Path::new("/d/undated")
        );
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("2024-01").join("x.eml");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let files = walk_files(dir.path(), &[]).unwrap();
        assert_eq!(files, vec![p.clone()]);
        assert!(is_temp(Path::new("/a/.x.eml.tmp-1-2")));
        assert!(!is_temp(&p));
        assert_eq!(read_header(&dir.path().join("missing")).unwrap(), None);
    }
}
