//! The header fields of a saved copy ([`HeaderRow`]) and the one-time back-fill of backups made
//! before the index held them.
//!
//! During a backup the fields come from Graph's listing ([`from_info`]: decoded subject and
//! addresses, `sentDateTime`, `internetMessageId`, `hasAttachments`, `isRead`) and are committed
//! with the saved copy. A backup made by an earlier version is back-filled once
//! ([`backfill`], recorded as done under [`BACKFILL_FLAG`]): from the remote mirror when the
//! message is still listed there, else from the stored `.eml` ([`from_eml`]: the header section,
//! unfolded, RFC 2047 encoded words in UTF-8, US-ASCII or ISO-8859-1 decoded; attachments
//! guessed from a `multipart/mixed` content type; the read state unknown).

use crate::error::Error;
use crate::hooks::MessageInfo;
use crate::index::{HeaderRow, Index, SavedRow};
use crate::store::{MessageStore, ObjectKey, parse_graph_time};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

/// Name of the flag recording the header back-fill as done.
pub const BACKFILL_FLAG: &str = "headers-backfilled";

/// A date as stored in the index: UTC, `YYYY-MM-DDTHH:MM:SSZ`.
fn index_date(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The header fields of a message from its listing.
pub fn from_info(info: &MessageInfo, key: &ObjectKey, size: u64) -> HeaderRow {
    let date = parse_graph_time(info.sent.as_deref())
        .or_else(|| parse_graph_time(info.received.as_deref()))
        .or_else(|| parse_graph_time(info.created.as_deref()));
    HeaderRow {
        mailbox: info.mailbox.clone(),
        id: info.id.clone(),
        key: key.clone(),
        from: info.from.clone().unwrap_or_default(),
        to: info.to.clone().unwrap_or_default(),
        cc: info.cc.clone().unwrap_or_default(),
        subject: info.subject.clone().unwrap_or_default(),
        date: date.map(index_date),
        created: parse_graph_time(info.created.as_deref()).map(index_date),
        message_id: info.internet_message_id.clone(),
        folder_id: info.folder_id.clone().unwrap_or_default(),
        size,
        has_attachment: info.has_attachments.unwrap_or(false),
        is_read: info.is_read,
    }
}

/// Decodes RFC 2047 encoded words (`=?utf-8?B?...?=`, `=?iso-8859-1?Q?...?=`); words in other
/// charsets, or malformed, are left as they are. Whitespace between two encoded words is dropped.
pub fn decode_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let decoded = rest[start + 2..].split_once("?=").and_then(|(word, tail)| {
            let mut parts = word.splitn(3, '?');
            let (charset, enc, text) = (parts.next()?, parts.next()?, parts.next()?);
            let bytes = match enc {
                "B" | "b" => base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()?,
                "Q" | "q" => q_decode(text)?,
                _ => return None,
            };
            let charset = charset.split('*').next().unwrap_or("").to_ascii_lowercase();
            let text = match charset.as_str() {
                "utf-8" | "utf8" | "us-ascii" => String::from_utf8(bytes).ok()?,
                "iso-8859-1" | "latin1" => bytes.iter().map(|b| char::from(*b)).collect(),
                _ => return None,
            };
            Some((text, tail))
        });
        match decoded {
            Some((text, tail)) => {
                let between = &rest[..start];
                if !(after_word && between.trim().is_empty()) {
                    out.push_str(between);
                }
                out.push_str(&text);
                rest = tail;
                after_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

fn q_decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

/// The header fields of a stored `.eml` (its header section, read up to 256 KiB). `folder_id`
/// is left empty and the read state unknown: the file does not say.
pub fn from_eml(r: impl Read, row: &SavedRow) -> std::io::Result<HeaderRow> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in BufReader::new(r.take(256 * 1024)).split(b'\n') {
        let line = line?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let get = |name: &str| {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| decode_words(v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let date = DateTime::parse_from_rfc2822(&get("date"))
        .ok()
        .map(|d| index_date(d.with_timezone(&Utc)));
    let message_id = Some(get("message-id")).filter(|m| !m.is_empty());
    Ok(HeaderRow {
        mailbox: row.mailbox.clone(),
        id: row.id.clone(),
        key: row.key.clone(),
        from: get("from"),
        to: get("to"),
        cc: get("cc"),
        subject: get("subject"),
        date,
        created: None,
        message_id,
        folder_id: String::new(),
        size: row.size,
        has_attachment: get("content-type")
            .to_ascii_lowercase()
            .starts_with("multipart/mixed"),
        is_read: None,
    })
}

/// Fills the header fields of every saved copy that has none, once per backup (a second call
/// returns `Ok(0)` at once). Returns how many rows it filled. A copy whose object is missing is
/// left out (`verify` reports it).
pub fn backfill(index: &dyn Index, store: &dyn MessageStore) -> Result<usize, Error> {
    if index.flag(BACKFILL_FLAG)? {
        return Ok(0);
    }
    let rows = index.saved_without_headers()?;
    let mut mirrors: HashMap<String, HashMap<String, MessageInfo>> = HashMap::new();
    let mut n = 0;
    for row in rows {
        if !mirrors.contains_key(&row.mailbox) {
            let infos = index.remote_messages(&row.mailbox)?;
            mirrors.insert(
                row.mailbox.clone(),
                infos.into_iter().map(|m| (m.id.clone(), m)).collect(),
            );
        }
        let headers = match mirrors[&row.mailbox].get(&row.id) {
            Some(info) => HeaderRow {
                mailbox: row.mailbox.clone(),
                ..from_info(info, &row.key, row.size)
            },
            None => match store.open(&row.key)? {
                Some(r) => from_eml(r, &row)
                    .map_err(|e| Error::io(format!("cannot read {}", row.key), e))?,
                None => continue,
            },
        };
        index.record_headers(&headers)?;
        n += 1;
    }
    index.set_flag(BACKFILL_FLAG)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfill_reads_the_mirror_or_the_file_once_and_records_it_done() {
        use crate::index::SqliteIndex;
        use crate::search::{Order, Query, Selection};
        use crate::store::LocalStore;
        let dir = tempfile::tempdir().unwrap();
        let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
        let store = LocalStore::new(dir.path());
        let put = |id: &str, eml: &[u8]| {
            let key = ObjectKey::new(format!("2024-03/{id}.eml")).unwrap();
            let s = store.put(&key, &mut &eml[..], None).unwrap();
            // What an earlier version recorded: the saved copy only.
            ix.record_saved(&SavedRow {
                mailbox: "me".into(),
                id: id.into(),
                key,
                last_modified: "t".into(),
                size: s.size,
                sha256: s.sha256,
            })
            .unwrap();
        };
        put("listed", b"Subject: from the file\r\n\r\n");
        put(
            "gone",
            b"Subject: =?utf-8?Q?Caf=C3=A9?= order\r\nFrom: Bob <bob@x.test>\r\n\r\n",
        );
        put("lost", b"Subject: x\r\n\r\n");
        std::fs::remove_file(dir.path().join("2024-03/lost.eml")).unwrap();
        let info = MessageInfo {
            mailbox: "me".into(),
            id: "listed".into(),
            subject: Some("From the listing".into()),
            folder_id: Some("inbox-id".into()),
            is_read: Some(true),
            ..Default::default()
        };
        ix.apply_remote("me", "inbox-id", &[info], &[]).unwrap();
        let find = |q: &str| -> Vec<String> {
            let sel = Selection {
                query: Query::parse(q).unwrap(),
                ..Default::default()
            };
            ix.select(&sel, Order::Newest, None, 10)
                .unwrap()
                .into_iter()
                .map(|h| h.headers.id)
                .collect()
        };
        assert!(find("").is_empty(), "nothing indexed before the back-fill");
        assert_eq!(backfill(&ix, &store).unwrap(), 2);
        assert_eq!(find("listing is:read"), ["listed"]);
        assert_eq!(find("café from:bob"), ["gone"]);
        assert!(ix.flag(BACKFILL_FLAG).unwrap());
        // Once: a row without headers later is not read again by a back-fill.
        put("later", b"Subject: later\r\n\r\n");
        assert_eq!(backfill(&ix, &store).unwrap(), 0);
    }

    #[test]
    fn encoded_words_are_decoded() {
        assert_eq!(
            decode_words("=?UTF-8?B?TcOkcnogaW52b2ljZQ==?= =?utf-8?Q?_paid?= now"),
            "März invoice paid now"
        );
        assert_eq!(decode_words("=?iso-8859-1?q?caf=E9?="), "café");
        assert_eq!(
            decode_words("=?koi8-r?B?xxx?= plain"),
            "=?koi8-r?B?xxx?= plain"
        );
        assert_eq!(decode_words("a =?utf-8?B?!!?="), "a =?utf-8?B?!!?=");
    }

    #[test]
    fn eml_header_section_gives_the_fields() {
        let eml = b"X-NS-Backup: v=1; id=\"i\"; lastModified=\"t\"\r\nFrom: Alice <alice@x.test>\r\nTo: bob@x.test,\r\n carol@x.test\r\nSubject: =?UTF-8?Q?M=C3=A4rz?= invoice\r\nDate: Tue, 05 Mar 2024 10:00:00 +0100\r\nMessage-ID: <m1@x.test>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\nFrom: body@x.test\r\n";
        let row = SavedRow {
            mailbox: "me".into(),
            id: "i".into(),
            key: ObjectKey::new("2024-03/a.eml").unwrap(),
            last_modified: "t".into(),
            size: eml.len() as u64,
            sha256: String::new(),
        };
        let h = from_eml(&eml[..], &row).unwrap();
        assert_eq!(h.from, "Alice <alice@x.test>");
        assert_eq!(h.to, "bob@x.test, carol@x.test");
        assert_eq!(h.subject, "März invoice");
        assert_eq!(h.date.as_deref(), Some("2024-03-05T09:00:00Z"));
        assert_eq!(h.message_id.as_deref(), Some("<m1@x.test>"));
        assert!(h.has_attachment);
        assert_eq!(h.is_read, None);
    }
}
