//! What only the SQLite backend has of the outbound queue: the tables a journal of the
//! previous schema gets, claims from two connections to one file, and the query plans that
//! keep listing fast with a long history.

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use oftp_proto::codec::FileFormat;

use super::super::queue::{CLAIM_DUE, HISTORY, transfers_query};
use super::*;
use crate::journal::{QueueChange, QueueState, QueuedSend, TransferFilter};

pub(super) fn send(partner: &str, name: &str) -> QueuedSend {
    QueuedSend {
        partner: partner.into(),
        source_path: PathBuf::from(format!("/out/.queue/{name}")),
        virtual_file_name: name.to_uppercase(),
        destination: None,
        originator: None,
        format: FileFormat::Unstructured,
        max_record_len: 0,
        user_data: String::new(),
        description: String::new(),
    }
}

/// The tables as the journal made them before the queue existed (the schema of the release
/// before it), with a row in each.
pub(super) const PREVIOUS_SCHEMA: &str = "
CREATE TABLE received (
    id INTEGER PRIMARY KEY, partner TEXT NOT NULL, originator TEXT NOT NULL,
    dsn TEXT NOT NULL, stamp TEXT NOT NULL, state TEXT NOT NULL, partial_path TEXT NOT NULL,
    final_path TEXT NOT NULL, position INTEGER NOT NULL DEFAULT 0,
    file_offset INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0,
    units INTEGER NOT NULL DEFAULT 0, end_response_sent INTEGER NOT NULL DEFAULT 0,
    end_response_deferred INTEGER NOT NULL DEFAULT 0, user_data TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL, UNIQUE (partner, originator, dsn, stamp));
CREATE TABLE file_hashes (
    direction TEXT NOT NULL, partner TEXT NOT NULL, originator TEXT NOT NULL,
    dsn TEXT NOT NULL, stamp TEXT NOT NULL, suite INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (direction, partner, originator, dsn, stamp));
CREATE TABLE sent (
    id INTEGER PRIMARY KEY, partner TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, originator TEXT NOT NULL, dsn TEXT NOT NULL,
    stamp TEXT NOT NULL, destination TEXT NOT NULL, state TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE INDEX sent_by_file ON sent (partner, path, size, mtime_ns);
CREATE INDEX sent_by_key ON sent (originator, dsn, stamp);
CREATE TABLE end_responses (
    id INTEGER PRIMARY KEY, direction TEXT NOT NULL, originator TEXT NOT NULL,
    dsn TEXT NOT NULL, stamp TEXT NOT NULL, destination TEXT NOT NULL, reason INTEGER,
    reason_text TEXT, at TEXT NOT NULL);
CREATE TABLE set_aside (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, row TEXT NOT NULL, problem TEXT NOT NULL,
    at TEXT NOT NULL);
INSERT INTO received (partner, originator, dsn, stamp, state, partial_path, final_path,
                      position, end_response_sent, user_data, updated_at)
VALUES ('P', 'ORIG', 'IN', '202605060708090001', 'complete', 'p', '/in/IN', 9, 0, 'U', 'then');
INSERT INTO file_hashes VALUES ('received', 'P', 'ORIG', 'IN', '202605060708090001', 4, x'0102');
INSERT INTO sent (partner, path, size, mtime_ns, originator, dsn, stamp, destination, state,
                  updated_at)
VALUES ('P', '/out/x', 10, 123, 'ME', 'OUT', '202605060708090002', 'DEST',
        'awaiting_end_response', 'then');
INSERT INTO end_responses (direction, originator, dsn, stamp, destination, at)
VALUES ('received', 'ME', 'OTHER', '202605060708090003', 'ME', 'then');
INSERT INTO set_aside (source, row, problem, at) VALUES ('sent', 'id=1', 'bad stamp', 'then');
";

#[test]
fn a_journal_of_the_previous_schema_gets_an_empty_queue_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    Connection::open(&path)
        .unwrap()
        .execute_batch(PREVIOUS_SCHEMA)
        .unwrap();
    let j = SqliteJournal::open(&path).unwrap();
    let stamp = |s| FileStamp::parse(s).unwrap();
    let received = j
        .received(
            "P",
            &FileKey::new("ORIG".parse().unwrap(), "IN", stamp("202605060708090001")),
        )
        .unwrap()
        .expect("the received file is still there");
    assert_eq!(
        (
            received.state,
            received.checkpoint.position,
            received.user_data.as_str()
        ),
        (ReceiveState::Complete, 9, "U")
    );
    assert_eq!(j.pending_end_responses("P").unwrap().len(), 1);
    let local = LocalFileId {
        partner: "P".into(),
        path: "/out/x".into(),
        size: 10,
        mtime_ns: 123,
    };
    assert_eq!(
        j.latest_send(&local).unwrap().map(|s| s.state),
        Some(SendState::AwaitingEndResponse)
    );
    let key = FileKey::new("ORIG".parse().unwrap(), "IN", stamp("202605060708090001"));
    assert_eq!(
        j.file_hash(Direction::Received, "P", &key).unwrap(),
        Some((4, vec![1, 2]))
    );
    assert_eq!(j.end_response_count(Direction::Received).unwrap(), 1);
    let set_aside: i64 = j
        .lock()
        .query_row("SELECT COUNT(*) FROM set_aside", [], |r| r.get(0))
        .unwrap();
    assert_eq!(set_aside, 1);

    let everything = TransferFilter {
        limit: u32::MAX,
        ..TransferFilter::default()
    };
    assert!(j.transfers(&everything).unwrap().is_empty());
    assert!(j.open_alerts().unwrap().is_empty());
    let at = Utc.with_ymd_and_hms(2026, 5, 6, 7, 0, 0).unwrap();
    let id = j.enqueue(&send("P", "new"), at).unwrap();
    drop(j);
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(
        j.transfer(id).unwrap().map(|d| d.file.state),
        Some(QueueState::Queued),
        "the migrated journal keeps its queue when opened again"
    );
}

/// Two processes on one journal file (two connections): the claim's immediate transaction
/// takes the write lock before it reads, so no row is claimed twice.
#[test]
fn two_connections_to_one_file_never_claim_the_same_row() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        SqliteJournal::open_in_dir(dir.path()).unwrap(),
        SqliteJournal::open_in_dir(dir.path()).unwrap(),
    );
    let at = Utc.with_ymd_and_hms(2026, 5, 6, 7, 0, 0).unwrap();
    let all: HashSet<i64> = (0..40)
        .map(|i| a.enqueue(&send("P", &format!("f{i}")), at).unwrap())
        .collect();
    let claim_all = |j: &SqliteJournal| {
        let mut mine = Vec::new();
        for _ in 0..=all.len() {
            let got = j.claim_due("P", at, 1).unwrap();
            if got.is_empty() {
                return mine;
            }
            mine.extend(got.into_iter().map(|r| r.id));
        }
        panic!("claims still return rows after every row was claimed");
    };
    let (x, y) = std::thread::scope(|s| {
        let x = s.spawn(|| claim_all(&a));
        let y = s.spawn(|| claim_all(&b));
        (x.join().unwrap(), y.join().unwrap())
    });
    let union: HashSet<i64> = x.iter().chain(&y).copied().collect();
    assert_eq!(x.len() + y.len(), union.len(), "a row was claimed twice");
    assert_eq!(union, all);
}

/// The plan of `sql` as SQLite reports it (one line per step).
pub(super) fn plan(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt.query_map(args, |r| r.get::<_, String>(3)).unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
}

/// With 1,000 files of 10 partners and 100,000 history rows, every query of the queue is
/// answered through an index: none scans the history, and no listing scans or sorts the
/// whole queue except the unfiltered one, which walks the primary key backwards.
#[test]
fn queue_queries_use_indexes_with_a_long_history() {
    let j = SqliteJournal::in_memory().unwrap();
    let conn = j.lock();
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO queue (partner, source_path, virtual_file_name, format, max_record_len,
                            user_data, description, state, queued_at, next_attempt_at,
                            updated_at)
         SELECT 'P' || (i % 10), '/q/' || i, 'F' || i, 'U', 0, '', '',
                CASE i % 4 WHEN 0 THEN 'queued' WHEN 1 THEN 'sent' ELSE 'delivered' END,
                i, i, i FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO queue_history (queue_id, at, from_state, to_state)
         SELECT 1 + i % 1000, i, 'queued', 'in_transfer' FROM n;",
    )
    .unwrap();
    let claim = plan(&conn, CLAIM_DUE, params!["P1", 500, 10]);
    assert!(
        claim.contains("INDEX queue_due (partner=? AND state=? AND next_attempt_at<?)"),
        "{claim}"
    );
    let history = plan(&conn, HISTORY, [7]);
    assert!(history.contains("queue_history_by_file"), "{history}");
    let by_key = plan(
        &conn,
        "SELECT id FROM queue WHERE key_originator = ?1 AND key_dsn = ?2 AND key_stamp = ?3
         ORDER BY id DESC LIMIT 1",
        ["O", "D", "S"],
    );
    assert!(by_key.contains("queue_by_key"), "{by_key}");
    let alerts = plan(
        &conn,
        "SELECT id FROM alerts WHERE acknowledged_at IS NULL ORDER BY id",
        [],
    );
    assert!(alerts.contains("alerts_open"), "{alerts}");
    let since = Utc.timestamp_millis_opt(990).unwrap();
    for (filter, index) in [
        (None, None),
        (Some("P3"), None),
        (None, Some(QueueState::Sent)),
        (Some("P3"), Some(QueueState::Queued)),
    ] {
        for since in [None, Some(since)] {
            let f = TransferFilter {
                partner: filter.map(str::to_owned),
                state: index,
                since,
                before_id: Some(900),
                limit: 50,
            };
            let (tail, args) = transfers_query(&f);
            let sql = format!("SELECT id FROM queue {tail}");
            let p = plan(&conn, &sql, rusqlite::params_from_iter(args));
            assert!(p.contains("USING"), "{f:?}: {p}");
            assert!(!p.contains("SCAN queue "), "{f:?}: {p}");
        }
    }
    let (tail, args) = transfers_query(&TransferFilter::default());
    let all = plan(
        &conn,
        &format!("SELECT id FROM queue {tail}"),
        rusqlite::params_from_iter(args),
    );
    assert!(!all.contains("TEMP B-TREE"), "{all}");
}

/// A NERP, its queue transition and its alert are one commit: when the alert cannot be
/// written, neither the response nor the row's new state is kept (the RTR is then not sent,
/// and the partner sends the NERP again).
#[test]
fn an_end_response_and_the_queue_row_it_settles_are_recorded_together_or_not_at_all() {
    let j = SqliteJournal::in_memory().unwrap();
    let at = Utc.with_ymd_and_hms(2026, 5, 6, 7, 0, 0).unwrap();
    let k = key("ATOMIC", 1);
    let id = j.enqueue(&send("P", "atomic"), at).unwrap();
    j.claim_due("P", at, 1).unwrap();
    j.transition(id, &QueueChange::to(QueueState::Sent, at).key(k.clone()))
        .unwrap();
    j.lock().execute_batch("DROP TABLE alerts").unwrap();
    let nerp = EndResponseEntry {
        direction: Direction::Received,
        key: k,
        destination: "ORIG".into(),
        negative: Some((22, "no such mailbox".into())),
        partner: "P".into(),
        at,
    };
    j.record_end_response(&nerp)
        .expect_err("the alert cannot be written");
    assert_eq!(j.end_response_count(Direction::Received).unwrap(), 0);
    assert_eq!(
        j.transfer(id).unwrap().unwrap().file.state,
        QueueState::Sent,
        "the row is not settled without its response"
    );
}

/// The queue's rows by state, counted over every row (what `queue_depth` answered before it
/// read the counts the triggers keep).
fn counted(conn: &Connection) -> Vec<(QueueState, u64)> {
    let mut stmt = conn
        .prepare("SELECT state, COUNT(*) FROM queue GROUP BY state")
        .unwrap();
    let mut rows: Vec<(QueueState, u64)> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
        .map(|r| {
            let (state, n) = r.unwrap();
            (QueueState::parse(&state).unwrap(), n as u64)
        })
        .collect();
    rows.sort_by_key(|(state, _)| QueueState::ALL.iter().position(|s| s == state));
    rows
}

/// The depth read from the counts the triggers keep agrees with a count over every row
/// after each kind of change: enqueue (also of a row that exists), claim, transitions,
/// the start's requeue, cancel, retry, and the history's prune.
#[test]
fn the_queue_depth_follows_every_change_of_the_queue() {
    let j = SqliteJournal::in_memory().unwrap();
    let at = |s: i64| Utc.timestamp_opt(1_780_000_000 + s, 0).unwrap();
    let check = |j: &SqliteJournal, what: &str| {
        let expected = counted(&j.lock());
        assert_eq!(j.queue_depth().unwrap(), expected, "after {what}");
    };
    let ids: Vec<i64> = (0..12)
        .map(|i| j.enqueue(&send("P", &format!("f{i}")), at(0)).unwrap())
        .collect();
    j.enqueue(&send("P", "f0"), at(0)).unwrap();
    check(&j, "enqueue (one twice)");
    let claimed: Vec<i64> = j
        .claim_due("P", at(1), 8)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    check(&j, "claim");
    for (i, id) in claimed.iter().enumerate() {
        let to = match i % 3 {
            0 => QueueState::Delivered,
            1 => QueueState::Sent,
            _ => QueueState::Failed,
        };
        j.transition(*id, &QueueChange::to(to, at(2))).unwrap();
    }
    check(&j, "transitions");
    j.claim_due("P", at(3), 2).unwrap();
    j.requeue_in_transfer(at(4), "restart").unwrap();
    check(&j, "requeue at start");
    j.cancel_transfer(ids[11], at(5)).unwrap();
    j.retry_transfer(claimed[2], at(5)).unwrap();
    check(&j, "cancel and retry");
    j.prune_history(at(100)).unwrap();
    check(&j, "prune");
    assert!(
        j.queue_depth().unwrap().iter().all(|(_, n)| *n > 0),
        "states whose rows were all pruned are left out"
    );
}

/// A journal written before the counts existed gets them from its queue when it is opened.
#[test]
fn a_journal_without_queue_counts_gets_them_from_its_rows_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let at = Utc.with_ymd_and_hms(2026, 5, 6, 7, 0, 0).unwrap();
    {
        let j = SqliteJournal::open_in_dir(dir.path()).unwrap();
        for i in 0..5 {
            j.enqueue(&send("P", &format!("f{i}")), at).unwrap();
        }
        j.claim_due("P", at, 2).unwrap();
        j.lock()
            .execute_batch(
                "DROP TRIGGER queue_counts_insert; DROP TRIGGER queue_counts_delete;
                 DROP TRIGGER queue_counts_update; DROP TABLE queue_counts;",
            )
            .unwrap();
    }
    let j = SqliteJournal::open_in_dir(dir.path()).unwrap();
    assert_eq!(
        j.queue_depth().unwrap(),
        vec![(QueueState::Queued, 3), (QueueState::InTransfer, 2)]
    );
    j.enqueue(&send("P", "f5"), at).unwrap();
    assert_eq!(j.queue_depth().unwrap(), counted(&j.lock()));
}
