//! Graph throttling (429/503, Retry-After), the concurrency cap and the run's time limit.
//! End to end against the Graph emulator (real sockets on 127.0.0.1).

mod common;

use common::*;
use graph_emulator::{EndpointKind, MailboxSpec, Trigger};
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

/// When the mailbox was throttled and when messages were saved.
#[derive(Default)]
struct Timeline {
    throttled_at: Mutex<Vec<std::time::Instant>>,
    saved_at: Mutex<Vec<std::time::Instant>>,
}

impl Hooks for Timeline {
    fn log(&self, _level: mailbackup::LogLevel, message: &str) {
        if message.contains("throttled") {
            self.throttled_at
                .lock()
                .unwrap()
                .push(std::time::Instant::now());
        }
    }
    fn message_saved(&self, _info: &mailbackup::MessageInfo, _key: &mailbackup::ObjectKey) {
        self.saved_at
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
    }
}

/// Saves between 0.2 s and 1.8 s after the (first) throttling answer of a run.
async fn saves_during_a_two_second_throttle(
    faults: graph_emulator::FaultConfig,
    budget: Option<graph_emulator::RateLimit>,
) -> usize {
    let emu = emulator_with(graph_emulator::EmulatorConfig {
        mailbox_rate_limit: budget,
        ..graph_emulator::EmulatorConfig::default()
            .with_mailboxes(vec![MailboxSpec::new(ALICE).messages(60).seed(31)])
            .with_latency(Duration::from_millis(20))
    })
    .await;
    let token = app_token(&emu).await;
    emu.faults().set(faults);
    let timeline = Arc::new(Timeline::default());
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token, ALICE)
        .hooks(timeline.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_complete(dir.path(), &emu, ALICE);
    let t = timeline.throttled_at.lock().unwrap()[0];
    let window = (t + Duration::from_millis(200))..(t + Duration::from_millis(1800));
    timeline
        .saved_at
        .lock()
        .unwrap()
        .iter()
        .filter(|s| window.contains(s))
        .count()
}

#[tokio::test]
async fn a_concurrency_429_delays_only_its_own_request() {
    let saved = saves_during_a_two_second_throttle(
        graph_emulator::FaultConfig {
            throttle: Trigger::Next(1),
            throttle_retry_after_secs: 2,
            only: Some(vec![EndpointKind::MessageValue]),
            ..Default::default()
        },
        None,
    )
    .await;
    assert!(
        saved >= 5,
        "the other requests go on while one waits out its Retry-After ({saved} saved)"
    );
}

#[tokio::test]
async fn a_503_still_pauses_the_whole_mailbox() {
    let saved = saves_during_a_two_second_throttle(
        graph_emulator::FaultConfig {
            unavailable: Trigger::Next(1),
            unavailable_retry_after_secs: Some(2),
            only: Some(vec![EndpointKind::MessageValue]),
            ..Default::default()
        },
        None,
    )
    .await;
    assert_eq!(
        saved, 0,
        "no request of the mailbox starts during the pause"
    );
}

#[tokio::test]
async fn a_429_for_an_exhausted_request_budget_still_pauses_the_whole_mailbox() {
    let budget = graph_emulator::RateLimit {
        requests: 30,
        window: Duration::from_secs(2),
    };
    let saved = saves_during_a_two_second_throttle(Default::default(), Some(budget)).await;
    assert_eq!(
        saved, 0,
        "no request of the mailbox starts during the pause"
    );
}

#[tokio::test]
async fn a_mailbox_opens_no_more_connections_than_its_permits() {
    let emu = emulator_with(
        graph_emulator::EmulatorConfig::default()
            .with_mailboxes(vec![MailboxSpec::new(ALICE).messages(600).seed(41)]),
    )
    .await;
    let token = app_token(&emu).await;
    let before = emu.stats().connections_accepted;
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token, ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let opened = emu.stats().connections_accepted - before;
    assert!(
        opened <= 4,
        "{opened} connections for one mailbox with 4 permits"
    );
}

/// The most messages of a mailbox whose download has started and that are not yet recorded:
/// twice its 4 request permits (README, "Several workers on one tenant").
const UNRECORDED_BOUND: usize = 8;

/// Holds writes back until it is opened.
#[derive(Debug, Default)]
struct Latch {
    open: Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Latch {
    fn opened() -> Latch {
        Latch {
            open: Mutex::new(true),
            opened: std::sync::Condvar::new(),
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let open = self.open.lock().unwrap();
        drop(self.opened.wait_while(open, |open| !*open).unwrap());
    }
}

/// A local store whose writes wait for `latch` and then take `delay` (a remote object store),
/// counting the messages downloaded and not yet stored (`message_fetched` raises the count, a
/// finished `put` lowers it) and the most there ever were.
#[derive(Debug)]
struct SlowStore {
    inner: mailbackup::LocalStore,
    latch: Arc<Latch>,
    delay: Duration,
    unstored: Arc<Mutex<(usize, usize)>>,
}

impl mailbackup::MessageStore for SlowStore {
    fn put(
        &self,
        key: &mailbackup::ObjectKey,
        body: &mut dyn std::io::Read,
        expected_sha256: Option<&str>,
    ) -> Result<mailbackup::store::Stored, mailbackup::Error> {
        self.latch.wait();
        std::thread::sleep(self.delay);
        let stored = self.inner.put(key, body, expected_sha256);
        self.unstored.lock().unwrap().0 -= 1;
        stored
    }
    fn open(
        &self,
        key: &mailbackup::ObjectKey,
    ) -> Result<Option<Box<dyn std::io::Read + Send>>, mailbackup::Error> {
        self.inner.open(key)
    }
    fn size(&self, key: &mailbackup::ObjectKey) -> Result<Option<u64>, mailbackup::Error> {
        self.inner.size(key)
    }
    fn delete(&self, key: &mailbackup::ObjectKey) -> Result<(), mailbackup::Error> {
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<mailbackup::ObjectKey>, mailbackup::Error> {
        self.inner.list(prefix)
    }
    fn quarantine(&self, key: &mailbackup::ObjectKey) -> Result<String, mailbackup::Error> {
        self.inner.quarantine(key)
    }
    fn purge_quarantined(&self, key: &mailbackup::ObjectKey) -> Result<(), mailbackup::Error> {
        self.inner.purge_quarantined(key)
    }
    fn locate(&self, key: &mailbackup::ObjectKey) -> String {
        self.inner.locate(key)
    }
    fn remove_partial(&self, prefix: &str) -> Result<usize, mailbackup::Error> {
        self.inner.remove_partial(prefix)
    }
}

#[derive(Debug)]
struct CountFetched(Arc<Mutex<(usize, usize)>>);

impl Hooks for CountFetched {
    fn message_fetched(
        &self,
        _info: &mailbackup::MessageInfo,
        _mime: &[u8],
    ) -> mailbackup::FetchedAction {
        let mut c = self.0.lock().unwrap();
        c.0 += 1;
        c.1 = c.1.max(c.0);
        mailbackup::FetchedAction::Save
    }
}

/// What a worker killed at any moment loses (and the next one downloads again) is what it had
/// downloaded and not yet stored: a message keeps its place in the mailbox's unrecorded bound
/// from before its request until it is stored and recorded, so that is never more than the
/// bound, however slow the store.
#[tokio::test]
async fn messages_downloaded_and_not_yet_stored_never_exceed_the_unrecorded_bound_of_a_mailbox() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(80).seed(43)]).await;
    let dir = tempfile::tempdir().unwrap();
    let unstored = Arc::new(Mutex::new((0, 0)));
    let report = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .message_store(Arc::new(SlowStore {
            inner: mailbackup::LocalStore::new(dir.path()),
            latch: Arc::new(Latch::opened()),
            delay: Duration::from_millis(30),
            unstored: unstored.clone(),
        }))
        .hooks(Arc::new(CountFetched(unstored.clone())))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_complete(dir.path(), &emu, ALICE);
    let (now, most) = *unstored.lock().unwrap();
    assert_eq!(now, 0);
    assert!(
        most <= UNRECORDED_BOUND,
        "{most} messages were downloaded and not yet stored at once (bound {UNRECORDED_BOUND})"
    );
}

/// A save does not take one of Graph's places: while the store holds every write back, the
/// mailbox's requests go on until the unrecorded bound is full (twice its 4 permits), and no
/// download starts past it.
#[tokio::test]
async fn downloads_go_on_while_saves_wait_until_the_unrecorded_bound_is_full() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(40).seed(44)]).await;
    let dir = tempfile::tempdir().unwrap();
    let unstored = Arc::new(Mutex::new((0, 0)));
    let latch = Arc::new(Latch::default());
    let backup = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .message_store(Arc::new(SlowStore {
            inner: mailbackup::LocalStore::new(dir.path()),
            latch: latch.clone(),
            delay: Duration::ZERO,
            unstored: unstored.clone(),
        }))
        .hooks(Arc::new(CountFetched(unstored.clone())))
        .build()
        .unwrap();
    let downloaded = || unstored.lock().unwrap().0;
    let (report, (filled, held)) = tokio::join!(backup.run(), async {
        let filled = tokio::time::timeout(Duration::from_secs(20), async {
            while downloaded() < UNRECORDED_BOUND {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .is_ok();
        // Time for a download past the bound to start and end, were it allowed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let held = (downloaded(), emu.stats().downloads.values().sum::<u64>());
        // Opened before any assertion, so that a failure does not leave the run blocked.
        latch.open();
        (filled, held)
    });
    assert!(
        filled,
        "only {} messages were downloaded while the first saves waited (the saves held the \
         requests' places)",
        held.0
    );
    assert_eq!(
        held,
        (UNRECORDED_BOUND, UNRECORDED_BOUND as u64),
        "downloaded and not stored, downloads started, while every save waited"
    );
    let report = report.unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_complete(dir.path(), &emu, ALICE);
}
