//! Graph throttling (429/503, Retry-After), the concurrency cap and the run's time limit.
//! End to end against the Graph emulator (real sockets on 127.0.0.1).

mod common;

use common::*;
use graph_emulator::{MailboxSpec, Trigger};
use mailbackup::{Hooks, RunStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn throttling_and_503_storm_still_backs_up_everything_within_the_cap() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(40).seed(2)]).await;
    emu.faults().throttle(Trigger::EveryNth(9), 1);
    emu.faults().unavailable(Trigger::Next(2), None);
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .max_connections(8)
        .max_retry_count(0)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let r = &report.mailboxes[0];
    assert!(r.throttled >= 3, "{r:?}");
    assert!(r.max_concurrency <= 4);
    let stats = emu.stats();
    assert!(
        stats.max_concurrency <= 4 && stats.throttled_concurrency == 0,
        "{stats:?}"
    );
    assert_complete(dir.path(), &emu, ALICE);
}

#[tokio::test]
async fn endless_throttling_ends_at_the_time_limit_with_a_clear_report() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(5)]).await;
    emu.faults().throttle(Trigger::EveryNth(1), 1);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let report = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .time_limit(Duration::from_millis(2500))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(report.status, RunStatus::Failed);
    let r = &report.mailboxes[0];
    assert!(r.error.as_deref().unwrap().contains("time limit"), "{r:?}");
    assert!(r.throttled >= 1);
    // Throttling is not a retry: no message was reported failed, nothing half-written.
    assert!(r.failed.is_empty());
    assert!(eml_files(dir.path()).is_empty());
}

#[derive(Default)]
struct LogLines(Mutex<Vec<String>>);

impl Hooks for LogLines {
    fn log(&self, _level: mailbackup::LogLevel, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

#[tokio::test]
async fn retry_after_of_a_503_is_honoured_and_is_not_a_retry() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(3).seed(9)]).await;
    emu.faults().unavailable(Trigger::Next(1), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let logs = Arc::new(LogLines::default());
    let started = std::time::Instant::now();
    let report = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .max_retry_count(0)
        .hooks(logs.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    // A lower bound only: it cannot fail on a slow machine.
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.mailboxes[0].throttled, 1);
    let lines = logs.0.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("throttled (503 ServiceUnavailable)") && l.contains("waits 2.0s")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_download_still_running_at_the_time_limit_is_cut_there() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(2).seed(10)]).await;
    // At 100 bytes/s a message takes minutes: only the time limit can end the run early.
    emu.faults().value_bandwidth(Some(100));
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let report = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .time_limit(Duration::from_millis(1500))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let r = &report.mailboxes[0];
    assert!(
        r.error.as_deref().unwrap_or("").contains("time limit"),
        "{r:?}"
    );
    assert_eq!(report.status, RunStatus::Failed);
    assert!(eml_files(dir.path()).is_empty());
    let v = mailbackup::verify(dir.path()).unwrap();
    assert!(v.is_clean(), "{v:?}");
}
