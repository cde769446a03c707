//! Where messages are kept: the [`MessageStore`] trait, its keys, and the saved file format.
//!
//! A message is stored under an [`ObjectKey`], a relative `/`-separated key
//! `<mailbox prefix>/YYYY-MM/<hex SHA-1 of its id>.eml`, the month being its UTC
//! `createdDateTime`. The mailbox prefix is empty when a run backs up one mailbox (`Me`, `UserId`)
//! and the sanitised user name when it backs up several. The object is Graph's MIME content
//! (`/$value`) byte for byte, preceded by one header line added by this crate (the seed's
//! `X-NS-Backup`):
//!
//! ```text
//! X-NS-Backup: v=1; id="<Graph message id>"; lastModified="<lastModifiedDateTime>"\r\n
//! ```
//!
//! Values are RFC 5322 quoted strings (`"` and `\` escaped with `\`); the line ends like the
//! message's first line (CRLF for Graph's MIME). Dropping the first line gives Graph's content.
//!
//! [`LocalStore`] keeps objects as files under the data folder (the key is the relative path),
//! written through `durable-write`: a reader (or a crash) sees the old file or the new one, never
//! a part. The store knows nothing about the index; the engine records an object only after
//! [`MessageStore::put`] returned.
//!
//! [`ObjectMessageStore`] keeps the same keys and bytes in an object store (S3, Azure Blob, GCS);
//! [`url::open`] picks the store of a `--store` URL.
//!
//! Every backend passes [`conformance::message_store`].

use crate::error::Error;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

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

/// Path of a message under a local mailbox root (the [`LocalStore`] layout of
/// [`ObjectKey::for_message`] with an empty prefix).
pub fn default_path(root: &Path, id: &str, created: Option<&str>) -> PathBuf {
    root.join(ObjectKey::for_message("", id, created).as_str())
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

/// The header line to put before `mime`, ending like the message's first line.
pub fn header_line(header: &BackupHeader, mime: &[u8]) -> String {
    header.to_line(eol_of(mime))
}

/// The bytes to store for a message: the backup header then the MIME content unchanged.
pub fn with_header(header: &BackupHeader, mime: &[u8]) -> Vec<u8> {
    let line = header_line(header, mime);
    let mut out = Vec::with_capacity(line.len() + mime.len());
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(mime);
    out
}

/// Reads the backup header from the start of a stored object; `Ok(None)` when it has none.
pub fn read_header(r: impl Read) -> std::io::Result<Option<BackupHeader>> {
    let mut line = String::new();
    // The header line is short; cap the read so a huge first line cannot exhaust memory.
    match BufReader::new(r.take(8192)).read_line(&mut line) {
        Ok(_) => Ok(BackupHeader::parse(&line)),
        // Not UTF-8: not our header.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `Message-ID` of a stored message (its header section, read up to 256 KiB); `None` when
/// it has none.
pub fn read_message_id(r: impl Read) -> std::io::Result<Option<String>> {
    let mut lines = BufReader::new(r.take(256 * 1024)).split(b'\n');
    let mut found: Option<String> = None;
    while let Some(line) = lines.next().transpose()? {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // A folded continuation of the previous header.
            if let Some(f) = found.as_mut().filter(|f| f.is_empty()) {
                f.push_str(line.trim());
            }
            continue;
        }
        if found.as_ref().is_some_and(|f| !f.is_empty()) {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("Message-ID")
        {
            found = Some(value.trim().to_string());
        }
    }
    Ok(found.filter(|f| !f.is_empty()))
}

/// Size and SHA-256 (hex) of everything `r` yields.
pub fn hash_reader(mut r: impl Read) -> std::io::Result<Stored> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok(Stored {
        size,
        sha256: hex::encode(h.finalize()),
    })
}

/// The error of a put whose bytes hash to `got` when the caller expected `want` (`None`: any).
pub(crate) fn check_expected(got: &str, want: Option<&str>) -> std::io::Result<()> {
    match want {
        Some(want) if !want.eq_ignore_ascii_case(got) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the bytes written hash to SHA-256 {got}, not the expected {want}"),
        )),
        _ => Ok(()),
    }
}

/// SHA-256 (hex) of bytes.
pub fn hash_bytes(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The relative key of a stored object: `/`-separated, no leading or trailing `/`, no empty,
/// `.` or `..` segment, no `\` or NUL. For a local store it is the path below the data folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks and wraps a key.
    pub fn new(key: impl Into<String>) -> Result<ObjectKey, Error> {
        let key = key.into();
        let bad = |reason: &str| {
            Err(Error::InvalidKey {
                key: key.clone(),
                reason: reason.to_string(),
            })
        };
        if key.is_empty() {
            return bad("it is empty");
        }
        if key.contains(['\\', '\0']) {
            return bad("it contains a backslash or NUL");
        }
        if key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return bad("it has an empty, `.` or `..` segment (or a leading or trailing `/`)");
        }
        Ok(ObjectKey(key))
    }

    /// The key of a message: `<prefix>/YYYY-MM/<sha1 of id>.eml` (no prefix when it is empty).
    pub fn for_message(prefix: &str, id: &str, created: Option<&str>) -> ObjectKey {
        let rest = format!(
            "{}/{}",
            month_folder(parse_graph_time(created)),
            file_name(id)
        );
        if prefix.is_empty() {
            ObjectKey(rest)
        } else {
            ObjectKey(format!("{prefix}/{rest}"))
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        ObjectKey::new(s)
    }
}

impl From<ObjectKey> for String {
    fn from(k: ObjectKey) -> String {
        k.0
    }
}

/// What [`MessageStore::put`] made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the stored bytes, computed while they were written.
    pub sha256: String,
}

/// Where messages are kept. Methods block (file or network I/O): the engine calls them from
/// `spawn_blocking`, never on an async worker thread. An async backend (an object store through
/// the `object_store` crate) implements them with `tokio::runtime::Handle::block_on`, which is
/// allowed on those blocking threads.
///
/// Contract (checked by [`conformance::message_store`]):
/// - `put` is atomic and durable: once it returns, the object survives a crash; a reader sees
///   the old object or the new one; a failed `put` (a failing reader, a checksum mismatch, a
///   full disk) leaves the old object (or none) and nothing else behind.
/// - `delete` of a missing key is not an error; `list` returns keys in ascending order, and
///   never the quarantine area or the store's own metadata.
pub trait MessageStore: Send + Sync + std::fmt::Debug {
    /// Stores everything `body` yields under `key`, replacing any object there. With
    /// `expected_sha256`, the bytes written must hash to it, else nothing is stored.
    fn put(
        &self,
        key: &ObjectKey,
        body: &mut dyn Read,
        expected_sha256: Option<&str>,
    ) -> Result<Stored, Error>;

    /// Reads an object; `None` when there is none.
    fn open(&self, key: &ObjectKey) -> Result<Option<Box<dyn Read + Send>>, Error>;

    /// Size of an object; `None` when there is none.
    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, Error>;

    /// Removes an object durably (a missing one is not an error).
    fn delete(&self, key: &ObjectKey) -> Result<(), Error>;

    /// Keys starting with `prefix` (plain text prefix; `""` for all), in ascending order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, Error>;

    /// Moves an object into the store's quarantine area under the same key, durably (a crash
    /// leaves it in one place or both, never none). Returns where it now is ([`Self::locate`]
    /// style). An error when the store has no quarantine area.
    fn quarantine(&self, key: &ObjectKey) -> Result<String, Error>;

    /// Removes a quarantined object durably (a missing one is not an error; retention).
    fn purge_quarantined(&self, key: &ObjectKey) -> Result<(), Error>;

    /// Where an object is, for people: a path, or a URL.
    fn locate(&self, key: &ObjectKey) -> String;

    /// Removes what an interrupted `put` may have left (temporary files) below `prefix` (a
    /// plain text prefix of keys, `""` for all); returns how many. Workers sharing a store call
    /// it for the mailboxes they hold only, never while another may be writing below `prefix`.
    fn remove_partial(&self, prefix: &str) -> Result<usize, Error>;
}

pub mod conformance;
pub mod folder_path;
mod local;
mod object;
pub mod url;
pub use local::LocalStore;
pub use object::{ObjectMessageStore, QUARANTINE_PREFIX};

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
    fn keys_are_relative_and_checked() {
        let k = ObjectKey::for_message("alice@x.test", "abc", Some("2023-10-05T10:00:00Z"));
        assert_eq!(
            k.as_str(),
            "alice@x.test/2023-10/a9993e364706816aba3e25717850c26c9cd0d89d.eml"
        );
        assert_eq!(
            ObjectKey::for_message("", "abc", None).as_str(),
            "undated/a9993e364706816aba3e25717850c26c9cd0d89d.eml"
        );
        for bad in ["", "/a", "a/", "a//b", "a/../b", "./a", "a\\b", "a\0"] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::new(".x.eml.tmp-1-2").is_ok());
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<ObjectKey>(&json).unwrap(), k);
        assert!(serde_json::from_str::<ObjectKey>("\"../x\"").is_err());
    }

    #[test]
    fn message_id_is_read_from_the_header_section_only() {
        let m = b"X-NS-Backup: v=1; id=\"i\"; lastModified=\"t\"\r\nSubject: a\r\nMessage-Id: <a@b>\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(read_message_id(&m[..]).unwrap().as_deref(), Some("<a@b>"));
        let folded = b"Message-ID:\r\n <f@x>\r\nTo: y\r\n\r\n";
        assert_eq!(
            read_message_id(&folded[..]).unwrap().as_deref(),
            Some("<f@x>")
        );
        let none = b"Subject: a\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(read_message_id(&none[..]).unwrap(), None);
    }

    #[test]
    fn header_is_read_from_the_start_of_an_object() {
        let h = BackupHeader {
            id: "i".into(),
            last_modified: "t".into(),
        };
        let stored = with_header(&h, b"Subject: a\r\n\r\nbody");
        assert_eq!(read_header(&stored[..]).unwrap(), Some(h));
        assert_eq!(read_header(&b"Subject: a\r\n"[..]).unwrap(), None);
        assert_eq!(read_header(&[0xff, 0xfe, b'\n'][..]).unwrap(), None);
        let s = hash_reader(&stored[..]).unwrap();
        assert_eq!(
            (s.size, s.sha256),
            (stored.len() as u64, hash_bytes(&stored))
        );
    }
}
