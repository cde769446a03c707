//! Tests of the SQLite journal: the conformance suite (in memory, on disk, reopened) and what
//! only SQLite has (the file and its durability settings, migrations of earlier versions, rows
//! set aside).

use super::schema::STAMPED_TABLES;
use super::*;
use crate::journal::conformance;
use chrono::NaiveDate;

mod history;
mod queue;

fn key(dsn: &str, counter: u16) -> FileKey {
    let dt = NaiveDate::from_ymd_opt(2026, 5, 6)
        .unwrap()
        .and_hms_opt(7, 8, 9)
        .unwrap();
    FileKey::new(
        "ORIG  ".parse().unwrap(),
        dsn,
        FileStamp::from_datetime(dt, counter),
    )
}

#[test]
fn an_sqlite_journal_in_memory_passes_the_conformance_suite() {
    conformance::journal(&SqliteJournal::in_memory().unwrap());
}

#[test]
fn an_sqlite_journal_on_disk_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    conformance::journal(&SqliteJournal::open_in_dir(dir.path()).unwrap());
}

#[test]
fn an_sqlite_journal_keeps_what_was_recorded_when_reopened() {
    let dir = tempfile::tempdir().unwrap();
    conformance::reopened(&|| -> Arc<dyn Journal> {
        Arc::new(SqliteJournal::open_in_dir(dir.path()).unwrap())
    });
}

/// Today's file name, in the data directory, with WAL and `synchronous=FULL` (2): an existing
/// data directory opens as before, and every commit is on disk when it returns.
#[test]
fn the_journal_is_one_durable_file_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open_in_dir(dir.path()).unwrap();
    assert_eq!(j.path(), dir.path().join("oftp-journal.sqlite3"));
    assert!(j.path().is_file());
    let conn = j.lock();
    let pragma = |name: &str| -> String {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .unwrap()
    };
    assert_eq!(pragma("journal_mode"), "wal");
    assert_eq!(pragma("synchronous"), "2");
}

/// The write probe commits (a page in the WAL), fails within about a second while another
/// connection holds the write lock, and leaves the journal's own wait as it was.
#[test]
fn the_write_probe_commits_and_fails_quickly_while_another_writer_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open_in_dir(dir.path()).unwrap();
    let wal = dir.path().join(format!("{JOURNAL_FILE}-wal"));
    let before = std::fs::metadata(&wal).unwrap().len();
    j.check_writable().unwrap();
    assert!(
        std::fs::metadata(&wal).unwrap().len() > before,
        "nothing written"
    );
    let other = rusqlite::Connection::open(j.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let start = std::time::Instant::now();
    let e = j.check_writable().unwrap_err();
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "{e}");
    assert!(e.to_string().contains("oftp-journal.sqlite3"), "{e}");
    other.execute_batch("ROLLBACK").unwrap();
    j.check_writable().unwrap();
    let timeout: i64 = j
        .lock()
        .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
        .unwrap();
    assert_eq!(timeout, 10_000);
}

/// A backend error names the journal file and says what SQLite said, without SQLite types in
/// the error's API.
#[test]
fn a_journal_that_cannot_be_opened_says_which_file_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    std::fs::write(&path, b"this is not a database, it is a text file of more than 100 octets, so SQLite reads its header and says so").unwrap();
    let e = SqliteJournal::open(&path).unwrap_err();
    assert!(matches!(e, JournalError::Backend { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("journal {}: ", path.display())),
        "{text}"
    );
    assert!(text.contains("not a database"), "{text}");
}

#[test]
fn a_journal_without_partners_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    {
        // The received table as earlier versions created it.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE received (
                id INTEGER PRIMARY KEY, originator TEXT NOT NULL, dsn TEXT NOT NULL,
                stamp TEXT NOT NULL, state TEXT NOT NULL, partial_path TEXT NOT NULL,
                final_path TEXT NOT NULL, position INTEGER NOT NULL DEFAULT 0,
                file_offset INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0,
                units INTEGER NOT NULL DEFAULT 0,
                end_response_sent INTEGER NOT NULL DEFAULT 0,
                end_response_deferred INTEGER NOT NULL DEFAULT 0,
                user_data TEXT NOT NULL DEFAULT '', updated_at TEXT NOT NULL,
                UNIQUE (originator, dsn, stamp));
            CREATE TABLE file_hashes (
                direction TEXT NOT NULL, originator TEXT NOT NULL, dsn TEXT NOT NULL,
                stamp TEXT NOT NULL, suite INTEGER NOT NULL, hash BLOB NOT NULL,
                PRIMARY KEY (direction, originator, dsn, stamp));",
        )
        .unwrap();
        c.execute(
            "INSERT INTO file_hashes VALUES ('received', 'ORIG', 'OLD', ?1, 4, x'01'),
                                            ('sent', 'ORIG', 'OLD', ?1, 4, x'02')",
            params![key("OLD", 3).stamp.digits()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO received (originator, dsn, stamp, state, partial_path, final_path,
                                   position, updated_at, user_data)
             VALUES ('ORIG', 'OLD', ?1, 'receiving', 'p', 'f', 7, 'then', 'U')",
            params![key("OLD", 3).stamp.digits()],
        )
        .unwrap();
    }
    let j = SqliteJournal::open(&path).unwrap();
    let e = j.received("ORIG", &key("OLD", 3)).unwrap().unwrap();
    assert_eq!(e.checkpoint.position, 7);
    assert_eq!(e.user_data, "U");
    assert!(j.received("OTHER", &key("OLD", 3)).unwrap().is_none());
    assert_eq!(
        j.file_hash(Direction::Received, "ORIG", &key("OLD", 3))
            .unwrap(),
        Some((4, vec![1]))
    );
    assert_eq!(
        j.file_hash(Direction::Received, "OTHER", &key("OLD", 3))
            .unwrap(),
        None
    );
    assert_eq!(
        j.file_hash(Direction::Sent, "", &key("OLD", 3)).unwrap(),
        Some((4, vec![2]))
    );
    // The new unique key lets another partner have its own entry.
    j.begin_receive("OTHER", &key("OLD", 3), Path::new("q"), Path::new("g"), "")
        .unwrap();
    drop(j);
    // Opening again is a no-op.
    let j = SqliteJournal::open(&path).unwrap();
    assert!(j.received("ORIG", &key("OLD", 3)).unwrap().is_some());
    assert!(j.received("OTHER", &key("OLD", 3)).unwrap().is_some());
}

/// A stamp no calendar has (a partner's `2006-06-43 51:86:72`).
fn impossible() -> FileStamp {
    FileStamp {
        year: 2006,
        month: 6,
        day: 43,
        hour: 51,
        minute: 86,
        second: 72,
        counter: 0,
    }
}

#[test]
fn invalid_stamps_are_never_written() {
    let j = SqliteJournal::in_memory().unwrap();
    let bad = FileKey::new("ORIG".parse().unwrap(), "BAD", impossible());
    let local = LocalFileId {
        partner: "p".into(),
        path: PathBuf::from("x"),
        size: 1,
        mtime_ns: 1,
    };
    let refused = |r: Result<(), JournalError>| {
        let e = r.expect_err("an invalid stamp was recorded");
        assert!(matches!(e, JournalError::InvalidStamp { .. }), "{e}");
        assert!(e.to_string().contains("BAD from ORIG"), "{e}");
    };
    refused(
        j.begin_receive("ORIG", &bad, Path::new("p"), Path::new("f"), "")
            .map(drop),
    );
    refused(j.begin_send(&local, &bad, "D").map(drop));
    refused(j.record_file_hash(Direction::Received, "ORIG", &bad, 4, &[1]));
    refused(j.record_end_response(&EndResponseEntry {
        direction: Direction::Sent,
        key: bad.clone(),
        destination: "ORIG".into(),
        negative: None,
        partner: "ORIG".into(),
        at: chrono::Utc::now(),
    }));
    let conn = j.lock();
    for table in STAMPED_TABLES {
        let n: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
}

/// Collects what is logged while `f` runs.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || out.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
}

/// Journals of earlier versions stored whatever stamp a partner sent; every later session
/// then failed with "corrupt entry". Opening the journal sets such rows aside with one
/// warning each, once; the rest of the journal works.
#[test]
fn rows_with_invalid_stamps_are_reported_once_and_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    let j = SqliteJournal::open(&path).unwrap();
    let good = key("GOOD", 1);
    let id = j
        .begin_receive("PARTNER", &good, Path::new("p"), Path::new("in/GOOD"), "")
        .unwrap();
    j.complete_receive(id, Path::new("in/GOOD")).unwrap();
    {
        // As an earlier version wrote them.
        let bad = impossible().digits();
        let conn = j.lock();
        conn.execute(
            "INSERT INTO received (partner, originator, dsn, stamp, state, partial_path,
                                   final_path, updated_at)
             VALUES ('PARTNER', 'ORIG', 'BROKEN', ?1, 'complete', 'p2', 'in/BROKEN', 'then'),
                    ('PARTNER', 'ORIG', 'HALF', ?1, 'receiving', 'in/.half.part', 'in/HALF',
                     'then')",
            [&bad],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO sent (partner, path, size, mtime_ns, originator, dsn, stamp,
                               destination, state, updated_at)
             VALUES ('PARTNER', '/out/x.edi', 1, 1, 'US', 'X.EDI', ?1, 'D', 'sending', 'then')",
            [&bad],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO file_hashes (direction, partner, originator, dsn, stamp, suite, hash)
             VALUES ('received', 'PARTNER', 'ORIG', 'BROKEN', ?1, 4, x'0102')",
            [&bad],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO end_responses (direction, originator, dsn, stamp, destination, at)
             VALUES ('received', 'US', 'X.EDI', ?1, 'D', 'then')",
            [&bad],
        )
        .unwrap();
    }
    assert!(matches!(
        j.pending_end_responses("PARTNER"),
        Err(JournalError::Corrupt { .. })
    ));
    drop(j);

    let mut reopened = None;
    let first = logged(|| reopened = Some(SqliteJournal::open(&path).unwrap()));
    let j = reopened.unwrap();
    let warnings: Vec<&str> = first.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 5, "{first}");
    for what in [
        "the reception of BROKEN from ORIG (partner PARTNER), stored as in/BROKEN",
        "the unfinished reception of HALF from ORIG",
        "in/.half.part can be deleted",
        "the send of /out/x.edi as X.EDI to PARTNER",
        "the recorded hash of BROKEN from ORIG",
        "the received end response for X.EDI from US",
        "table set_aside",
    ] {
        assert!(first.contains(what), "{what}: {first}");
    }
    // The rest of the journal works again.
    let pending = j.pending_end_responses("PARTNER").unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, good);
    let set_aside: Vec<(String, String)> = {
        let conn = j.lock();
        let mut stmt = conn
            .prepare("SELECT source, row FROM set_aside ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let sources: Vec<&str> = set_aside.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        sources,
        [
            "received",
            "received",
            "sent",
            "file_hashes",
            "end_responses"
        ]
    );
    assert!(
        set_aside[3].1.contains("hash=x'0102'"),
        "{:?}",
        set_aside[3]
    );
    drop(j);

    // Reported once: the next open (the next session's process) says nothing.
    let second = logged(|| drop(SqliteJournal::open(&path).unwrap()));
    assert!(!second.contains("WARN"), "{second}");
}
