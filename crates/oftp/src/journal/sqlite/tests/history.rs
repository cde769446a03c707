//! What only the SQLite backend has of the history: the cursor walked over 10,000 rows while
//! rows are inserted, the query plans of the first page with 100,000 rows, and a journal of
//! the previous schema opening with its received files listed.

use std::collections::HashMap;

use chrono::{Duration, TimeZone, Utc};

use super::super::history::{inbound_query, outbound_query};
use super::queue::{PREVIOUS_SCHEMA, plan, send};
use super::*;
use crate::journal::{HistoryEntry, HistoryQuery, HistoryState};

/// Walks 10,000 rows (5,000 each way, many of them in the same millisecond, so the direction
/// and the id decide) in pages of 97, inserting rows of both directions before every page:
/// each row there at the start is seen exactly once, and no row twice.
#[test]
fn a_walk_in_pages_sees_every_row_once_while_rows_are_inserted() {
    let j = SqliteJournal::in_memory().unwrap();
    let base = Utc.with_ymd_and_hms(2026, 5, 6, 7, 0, 0).unwrap();
    for i in 0..5_000 {
        // 50 rows per millisecond of queue time.
        j.enqueue(
            &send("P", &format!("f{i}")),
            base + Duration::milliseconds(i / 50),
        )
        .unwrap();
        j.begin_receive(
            "P",
            &key("IN", i as u16),
            Path::new("p"),
            Path::new("f"),
            "",
        )
        .unwrap();
    }
    // The received files in the same milliseconds as the queue rows.
    j.lock()
        .execute(
            "UPDATE received SET received_at = ?1 + (id - 1) / 50",
            [base.timestamp_millis()],
        )
        .unwrap();
    let mut expected: HashMap<(bool, i64), u32> = HashMap::new();
    for e in j
        .transfer_page(&HistoryQuery {
            limit: 20_000,
            ..HistoryQuery::default()
        })
        .unwrap()
        .entries
    {
        let p = e.position();
        expected.insert((p.direction == Direction::Sent, p.id), 0);
    }
    assert_eq!(expected.len(), 10_000);

    let mut seen = expected.clone();
    let mut q = HistoryQuery {
        limit: 97,
        ..HistoryQuery::default()
    };
    let mut inserted = 0u16;
    let mut last = None;
    loop {
        // Newer rows arrive during the walk, and one at the oldest time of all.
        inserted += 1;
        j.enqueue(&send("P", &format!("new{inserted}")), Utc::now())
            .unwrap();
        j.enqueue(
            &send("P", &format!("old{inserted}")),
            base - Duration::days(1),
        )
        .unwrap();
        j.begin_receive(
            "P",
            &key("NEW", inserted),
            Path::new("p"),
            Path::new("f"),
            "",
        )
        .unwrap();
        let page = j.transfer_page(&q).unwrap();
        for e in &page.entries {
            let p = e.position();
            let order = p.order();
            assert!(last.is_none_or(|l| order < l), "newest first: {p:?}");
            last = Some(order);
            *seen
                .entry((p.direction == Direction::Sent, p.id))
                .or_default() += 1;
        }
        match page.next {
            Some(next) => q.after = Some(next.to_string().parse().unwrap()),
            None => break,
        }
    }
    for (row, n) in &seen {
        if expected.contains_key(row) {
            assert_eq!(*n, 1, "row {row:?} seen {n} times");
        } else {
            assert!(*n <= 1, "inserted row {row:?} seen {n} times");
        }
    }
}

/// With 100,000 rows of 10 partners in each direction, the first page of every filter walks
/// an index in order (no sort of the table, no scan without an index).
#[test]
fn the_first_page_walks_an_index_with_100000_rows() {
    let j = SqliteJournal::in_memory().unwrap();
    let conn = j.lock();
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO queue (partner, source_path, virtual_file_name, format, max_record_len,
                            user_data, description, state, queued_at, next_attempt_at,
                            updated_at)
         SELECT 'P' || (i % 10), '/q/' || i, 'F' || i, 'U', 0, '', '',
                CASE i % 4 WHEN 0 THEN 'queued' WHEN 1 THEN 'sent' ELSE 'delivered' END,
                i, i, i FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO received (partner, originator, dsn, stamp, state, partial_path,
                               final_path, updated_at, received_at)
         SELECT 'C' || (i % 10), 'O', 'F' || i, '202605060708090001', 'complete', 'p', 'f',
                '2026-05-06T07:08:09+00:00', i FROM n;
         ANALYZE;",
    )
    .unwrap();
    let after = "out-50000-50000".parse().ok();
    for partner in [None, Some("P3")] {
        for state in [None, Some("sent")] {
            for after in [None, after] {
                let q = HistoryQuery {
                    partner: partner.map(str::to_owned),
                    state: state.and_then(HistoryState::parse),
                    after,
                    limit: 50,
                    ..HistoryQuery::default()
                };
                let (tail, args) = outbound_query(&q, 51);
                let p = plan(
                    &conn,
                    &format!("SELECT id FROM queue {tail}"),
                    rusqlite::params_from_iter(args),
                );
                assert!(p.contains("USING"), "{q:?}: {p}");
                assert!(!p.contains("TEMP B-TREE"), "{q:?}: {p}");
            }
        }
    }
    for codes in [None, Some(vec!["C3".to_owned()])] {
        for after in [None, after] {
            let q = HistoryQuery {
                after,
                limit: 50,
                ..HistoryQuery::default()
            };
            let (sql, args) = inbound_query(&q, codes.as_deref(), 51);
            let p = plan(&conn, &sql, rusqlite::params_from_iter(args));
            assert!(p.contains("USING"), "{codes:?} {q:?}: {p}");
            assert!(!p.contains("TEMP B-TREE"), "{codes:?} {q:?}: {p}");
        }
    }
}

/// A journal made by the schema before the history (no reception times, no session tables)
/// opens: its received files get their last change as reception time and are listed.
#[test]
fn a_journal_of_the_previous_schema_lists_its_received_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(PREVIOUS_SCHEMA).unwrap();
    conn.execute_batch(
        "INSERT INTO received (partner, originator, dsn, stamp, state, partial_path,
                               final_path, updated_at)
         VALUES ('P', 'ORIG', 'LATER', '202605060708090009', 'complete', 'p', '/in/LATER',
                 '2026-05-07T08:09:10.250+00:00');",
    )
    .unwrap();
    drop(conn);
    let j = SqliteJournal::open(&path).unwrap();
    let rows = j.transfer_page(&HistoryQuery::default()).unwrap().entries;
    let received: Vec<_> = rows
        .iter()
        .filter_map(|e| match e {
            HistoryEntry::In(f) => Some((f.key.dsn.as_str(), f.received_at)),
            HistoryEntry::Out(_) => None,
        })
        .collect();
    let later = Utc.with_ymd_and_hms(2026, 5, 7, 8, 9, 10).unwrap() + Duration::milliseconds(250);
    assert_eq!(
        received,
        [
            ("LATER", later),
            ("IN", Utc.timestamp_millis_opt(0).unwrap())
        ],
        "the reception time is the last change (an unreadable one sorts last)"
    );
    drop(j);
    // Opening it again changes nothing more.
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(
        j.transfer_page(&HistoryQuery::default()).unwrap().entries,
        rows
    );
}
