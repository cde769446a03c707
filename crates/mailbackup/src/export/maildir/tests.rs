//! The Maildir export through both kinds of files, durable or not.

use super::super::{ExportProgress, Format, export_with};
use super::*;
use crate::index::{HeaderRow, SavedRow, SqliteIndex};
use crate::store::{BackupHeader, LocalStore, ObjectKey};
use crate::{Index as _, Selection};

/// A backup of `n` messages in one folder, every other one read; returns the bodies by
/// object name.
fn backup(dir: &Path, n: usize) -> (SqliteIndex, LocalStore, HashMap<String, Vec<u8>>) {
    let ix = SqliteIndex::open(&dir.join(".meta/index.sqlite")).unwrap();
    let store = LocalStore::new(dir);
    let mut bodies = HashMap::new();
    for i in 0..n {
        let id = format!("m{i:03}");
        let body = format!("Subject: {id}\r\n\r\nbody of {id}\r\n").into_bytes();
        let header = BackupHeader {
            id: id.clone(),
            last_modified: "2024-03-01T00:00:00Z".into(),
        };
        let mut stored = header.to_line("\r\n").into_bytes();
        stored.extend_from_slice(&body);
        let key = ObjectKey::new(format!("2024-03/{id}.eml")).unwrap();
        let s = store.put(&key, &mut &stored[..], None).unwrap();
        let row = SavedRow {
            mailbox: "me".into(),
            id: id.clone(),
            key: key.clone(),
            last_modified: header.last_modified.clone(),
            size: s.size,
            sha256: s.sha256,
        };
        let headers = HeaderRow {
            mailbox: "me".into(),
            id: id.clone(),
            key,
            from: String::new(),
            to: String::new(),
            cc: String::new(),
            subject: id.clone(),
            date: None,
            created: None,
            message_id: None,
            folder_id: "inbox".into(),
            size: s.size,
            has_attachment: false,
            is_read: Some(i.is_multiple_of(2)),
        };
        ix.record_message(&row, &headers).unwrap();
        bodies.insert(id, body);
    }
    (ix, store, bodies)
}

/// The files below `dir` whose parent folder is named `leaf`, by file name.
fn files(dir: &Path, leaf: &str) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if d.file_name().is_some_and(|n| n == leaf) {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn anonymous_files_and_tmp_files_both_end_in_cur_once_with_their_flags() {
    // 0: every message through tmp/; 3: the first few anonymous, the rest through tmp/
    // while those wait; unlimited: every message anonymous where the file system has them.
    // Made durable before they are moved, or not (`--no-fsync`).
    #[cfg(target_os = "linux")]
    {
        // Else the cases with a budget would all go through tmp/ and prove nothing more.
        let probe = tempfile::tempdir().unwrap();
        let (cur, tmp) = (probe.path().join("cur"), probe.path().join("tmp"));
        std::fs::create_dir(&cur).unwrap();
        std::fs::create_dir(&tmp).unwrap();
        assert!(
            super::anonymous::AnonymousDir::open(&cur, &tmp).is_some(),
            "anonymous files work in {}",
            probe.path().display()
        );
    }
    let cases = [
        (Durability::Durable, 0),
        (Durability::Durable, 3),
        (Durability::Durable, usize::MAX),
        (Durability::NoFsync, 3),
        (Durability::NoFsync, usize::MAX),
    ];
    for (durability, budget) in cases {
        let backup_dir = tempfile::tempdir().unwrap();
        let (ix, store, bodies) = backup(backup_dir.path(), 40);
        let out = tempfile::tempdir().unwrap();
        // The second export into the same Maildir replaces each file by one of the same
        // name (a link cannot: it goes through tmp/ and a rename).
        for _ in 0..2 {
            let shared = Shared::with_budget(durability, budget);
            let report = export_with(
                &ix,
                &store,
                &Selection::default(),
                Format::Maildir,
                out.path(),
                &ExportProgress::default(),
                &shared,
            )
            .unwrap();
            assert_eq!(report.messages, 40, "{durability:?}, budget {budget}");
            assert_eq!(shared.anonymous_open.load(Ordering::Acquire), 0);
        }
        let cur = files(out.path(), "cur");
        assert_eq!(
            cur.len(),
            40,
            "{durability:?}, budget {budget}: one file per message"
        );
        for (name, bytes) in &cur {
            let id = name.split('.').next().unwrap();
            let n: usize = id[1..].parse().unwrap();
            let flags = if n.is_multiple_of(2) { "S" } else { "" };
            assert_eq!(name, &format!("{id}{MAILDIR_SUFFIX}:2,{flags}"));
            assert_eq!(
                bytes, &bodies[id],
                "{durability:?}, budget {budget}: {name}"
            );
        }
        assert!(
            files(out.path(), "tmp").is_empty(),
            "{durability:?}, budget {budget}"
        );
        assert!(
            files(out.path(), "new").is_empty(),
            "{durability:?}, budget {budget}"
        );
    }
}
