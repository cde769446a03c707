//! Workers sharing the mailboxes of one tenant through leases in one index, here the SQLite
//! index of one machine (the PostgreSQL form runs in `mailbackup-cli`'s `tests/workers.rs`).

mod common;

use common::*;
use graph_emulator::{EmulatorConfig, MailboxSpec};
use mailbackup::{Backup, Index, Mailboxes, SqliteIndex, StaticToken, WorkerOptions};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn tenant(n: usize, messages: usize) -> Vec<MailboxSpec> {
    (0..n)
        .map(|i| {
            MailboxSpec::new(&format!("user{i}@emulator.test"))
                .messages(messages)
                .seed(40 + i as u64)
        })
        .collect()
}

fn worker(id: &str) -> WorkerOptions {
    let mut w = WorkerOptions::new(id);
    w.lease = Duration::from_secs(5);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_sqlite_index_back_up_each_mailbox_once() {
    let emu = emulator_with(
        EmulatorConfig::default()
            .with_mailboxes(tenant(6, 12))
            .with_latency(Duration::from_millis(5)),
    )
    .await;
    let token = app_token(&emu).await;
    let dir = tempfile::tempdir().unwrap();
    let index: Arc<dyn Index> =
        Arc::new(SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap());
    let run = |id: &str| {
        Backup::builder(dir.path(), Arc::new(StaticToken::new(&token)))
            .graph_url(emu.graph_url())
            .mailboxes(Mailboxes::AllUsers)
            .working_folder(dir.path().join(".meta").join(id))
            .parallel_mailboxes(1)
            .index(index.clone())
            .worker(worker(id))
            .build()
            .unwrap()
    };
    let (a, b) = (run("w1"), run("w2"));
    let (ra, rb) = tokio::join!(a.run(), b.run());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.is_success() && rb.is_success(), "{ra:?}\n{rb:?}");
    let mut all: Vec<&str> = ra
        .mailboxes
        .iter()
        .chain(&rb.mailboxes)
        .map(|m| m.mailbox.as_str())
        .collect();
    all.sort();
    let expected: Vec<String> = (0..6).map(|i| format!("user{i}@emulator.test")).collect();
    assert_eq!(
        all, expected,
        "each mailbox backed up by exactly one of the two"
    );
    for m in &expected {
        assert_complete(&dir.path().join(m), &emu, m);
    }
    let downloads = emu.stats().downloads;
    assert_eq!(downloads.len(), 6 * 12);
    assert!(downloads.values().all(|n| *n == 1), "{downloads:?}");
    let workers = index.workers().unwrap();
    assert_eq!(workers.len(), 2);
    assert!(
        workers
            .iter()
            .all(|w| w.finished.is_some() && w.leases.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_past_its_time_limit_leaves_the_other_mailboxes_to_other_workers() {
    let emu = emulator_with(
        EmulatorConfig::default()
            .with_mailboxes(tenant(5, 40))
            .with_latency(Duration::from_millis(100)),
    )
    .await;
    let token = app_token(&emu).await;
    let dir = tempfile::tempdir().unwrap();
    let report = Backup::builder(dir.path(), Arc::new(StaticToken::new(&token)))
        .graph_url(emu.graph_url())
        .mailboxes(Mailboxes::AllUsers)
        .parallel_mailboxes(1)
        .time_limit(Duration::from_secs(1))
        .worker(worker("w1"))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    // The limit ends the mailbox in progress; the worker takes no further mailbox only to
    // fail it (and mark it done for this round) at once.
    let taken: BTreeSet<&str> = report
        .mailboxes
        .iter()
        .map(|m| m.mailbox.as_str())
        .collect();
    assert_eq!(taken.len(), 1, "{report:?}");
    assert!(
        report.mailboxes[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("time limit")),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_whose_lease_is_taken_over_stops_without_storing_its_delta_links() {
    let user = "user0@emulator.test";
    let emu = emulator_with(
        EmulatorConfig::default()
            .with_mailboxes(tenant(1, 150))
            .with_latency(Duration::from_millis(40)),
    )
    .await;
    let token = app_token(&emu).await;
    let dir = tempfile::tempdir().unwrap();
    let mut w = worker("w1");
    w.lease = Duration::from_secs(1);
    let backup = Backup::builder(dir.path(), Arc::new(StaticToken::new(&token)))
        .graph_url(emu.graph_url())
        .mailboxes(Mailboxes::Users(vec![user.into()]))
        .worker(w)
        .build()
        .unwrap();
    let index_file = dir.path().join(".meta/index.sqlite");
    let take_over = async {
        tokio::time::timeout(
            Duration::from_secs(30),
            emu.wait_for_requests(graph_emulator::EndpointKind::MessageValue, 10),
        )
        .await
        .expect("the backup did not get going");
        // Another worker holds the mailbox now (as after our lease had expired).
        let db = rusqlite::Connection::open(&index_file).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        let far = chrono::Utc::now().timestamp_millis() + 3_600_000;
        let n = db
            .execute(
                "UPDATE leases SET worker='thief', expires=?1 WHERE mailbox=?2 AND worker='w1'",
                rusqlite::params![far, user],
            )
            .unwrap();
        (db, n)
    };
    let (report, (db, taken)) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(backup.run(), take_over)
    })
    .await
    .expect("the worker stops the mailbox");
    assert_eq!(taken, 1, "w1 held the mailbox");
    let report = report.unwrap();
    let m = &report.mailboxes[0];
    assert!(
        m.error.as_deref().is_some_and(|e| e.contains("lease")),
        "{report:?}"
    );
    assert!(m.saved < 150, "stopped before the end: {report:?}");
    let index = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
    assert!(
        index.folder_counts().unwrap().is_empty(),
        "no delta link stored by a worker that lost the mailbox"
    );
    let holder: String = db
        .query_row(
            "SELECT worker FROM leases WHERE mailbox=?1",
            rusqlite::params![user],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(holder, "thief", "w1 leaves a lease it lost alone");
}
