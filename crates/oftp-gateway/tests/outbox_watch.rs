//! The outbox watcher on real directories: events, debouncing, the polling fallback and the
//! take-over convention, end to end.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oftp_gateway::outbox::{Outbox, OutboxError, OutboxEvent, TakenOver, WatchSettings, watch};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

struct Running {
    events: mpsc::Receiver<OutboxEvent>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start(outboxes: Vec<Outbox>, settings: WatchSettings) -> Running {
    let (tx, events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watch(outboxes, settings, tx, shutdown.clone()));
    Running {
        events,
        shutdown,
        task,
    }
}

impl Running {
    /// The next event, or `None` if none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<OutboxEvent> {
        timeout(wait, self.events.recv()).await.ok().flatten()
    }

    /// The next file taken over; panics on a problem or after `wait`.
    async fn taken(&mut self, wait: Duration) -> TakenOver {
        match self.next(wait).await {
            Some(OutboxEvent::TakenOver(t)) => t,
            other => panic!("expected a file taken over, got {other:?}"),
        }
    }

    /// Asserts that nothing is reported for `wait`.
    async fn quiet(&mut self, wait: Duration) {
        if let Some(e) = self.next(wait).await {
            panic!("nothing expected, got {e:?}");
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the watcher stops on shutdown")
            .unwrap();
    }
}

fn settings(events: bool, debounce_ms: u64, poll_interval_secs: u64) -> WatchSettings {
    WatchSettings {
        events,
        debounce_ms,
        poll_interval_secs,
    }
}

/// Writes `name` the conventional way: `name.tmp`, then a rename.
fn drop_file(dir: &Path, name: &str, content: &[u8]) {
    let tmp = dir.join(format!("{name}.tmp"));
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Every file in the queue.
fn queue_files(outbox: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for folder in fs::read_dir(outbox.join(".queue")).unwrap() {
        for file in fs::read_dir(folder.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files
}

const SOON: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_file_is_reported_by_events_before_any_poll() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new("acme", dir.path()).unwrap();
    // The only poll is the one at start: a file dropped later can only be found by an event.
    let mut w = start(vec![outbox], settings(true, 50, 3600));
    w.quiet(Duration::from_millis(300)).await;
    drop_file(dir.path(), "INVOICE", b"data");
    let t = w.taken(SOON).await;
    assert_eq!(t.name, "INVOICE");
    assert_eq!(&*t.partner, "acme");
    assert_eq!(fs::read(&t.path).unwrap(), b"data");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowly_written_file_is_reported_once_after_its_rename() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new("acme", dir.path()).unwrap();
    let mut w = start(vec![outbox], settings(true, 50, 1));
    // Written over two seconds, through two polls and many write events.
    let tmp = dir.path().join("ORDERS.tmp");
    let mut file = fs::File::create(&tmp).unwrap();
    let mut expected = Vec::new();
    for i in 0..10u8 {
        let chunk = vec![b'a' + i; 1000];
        file.write_all(&chunk).unwrap();
        file.flush().unwrap();
        expected.extend_from_slice(&chunk);
        w.quiet(Duration::from_millis(200)).await;
    }
    drop(file);
    fs::rename(&tmp, dir.path().join("ORDERS")).unwrap();
    let t = w.taken(SOON).await;
    assert_eq!(t.name, "ORDERS");
    assert_eq!(fs::read(&t.path).unwrap(), expected);
    // Neither the event of our own rename nor the next polls report it again.
    w.quiet(Duration::from_millis(2500)).await;
    assert_eq!(queue_files(dir.path()).len(), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_and_hidden_files_are_never_reported() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new("acme", dir.path()).unwrap();
    let mut w = start(vec![outbox], settings(true, 50, 1));
    for name in ["a.tmp", "B.TMP", ".hidden", ".x.edi.tmp-1-2"] {
        fs::write(dir.path().join(name), b"half").unwrap();
    }
    fs::create_dir(dir.path().join("folder")).unwrap();
    w.quiet(Duration::from_millis(2500)).await;
    // The watcher is alive: a ready file next to them is taken, and only it.
    drop_file(dir.path(), "READY", b"x");
    assert_eq!(w.taken(SOON).await.name, "READY");
    w.quiet(Duration::from_millis(1500)).await;
    for name in ["a.tmp", "B.TMP", ".hidden", ".x.edi.tmp-1-2", "folder"] {
        assert!(dir.path().join(name).exists(), "{name} was touched");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_files_is_reported_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new("acme", dir.path()).unwrap();
    let mut w = start(vec![outbox], settings(true, 100, 1));
    let path = dir.path().to_path_buf();
    let writer = tokio::task::spawn_blocking(move || {
        for i in 0..1000 {
            drop_file(
                &path,
                &format!("F{i:04}"),
                format!("content {i}").as_bytes(),
            );
        }
    });
    let mut names = BTreeSet::new();
    while names.len() < 1000 {
        let t = w.taken(Duration::from_secs(60)).await;
        let i: usize = t.name.to_str().unwrap()[1..].parse().unwrap();
        assert_eq!(
            fs::read(&t.path).unwrap(),
            format!("content {i}").as_bytes()
        );
        assert!(names.insert(t.name.clone()), "{:?} reported twice", t.name);
    }
    writer.await.unwrap();
    w.quiet(Duration::from_millis(2500)).await;
    assert_eq!(queue_files(dir.path()).len(), 1000);
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [".queue"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_alone_finds_files() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new("acme", dir.path()).unwrap();
    let mut w = start(vec![outbox], settings(false, 0, 1));
    w.quiet(Duration::from_millis(300)).await;
    drop_file(dir.path(), "POLLED", b"x");
    assert_eq!(w.taken(Duration::from_secs(5)).await.name, "POLLED");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_that_cannot_be_watched_is_polled_and_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let outbox = Outbox::new("acme", &out).unwrap();
    // Gone when the watcher starts: neither watching nor reading it works.
    fs::remove_dir_all(&out).unwrap();
    let mut w = start(vec![outbox], settings(true, 50, 1));
    let mut watch_problem = false;
    let mut read_problem = false;
    while !(watch_problem && read_problem) {
        match w.next(SOON).await {
            Some(OutboxEvent::Problem {
                partner,
                error: OutboxError::Watch { dir, .. },
            }) => {
                assert_eq!(&*partner, "acme");
                assert_eq!(dir, out);
                assert!(!watch_problem, "watch problem reported twice");
                watch_problem = true;
            }
            Some(OutboxEvent::Problem {
                error: OutboxError::Io { path, .. },
                ..
            }) => {
                assert_eq!(path, out);
                assert!(!read_problem, "read problem reported twice");
                read_problem = true;
            }
            other => panic!("expected the problems, got {other:?}"),
        }
    }
    // Not reported again on the next passes.
    w.quiet(Duration::from_millis(2500)).await;
    // The operator creates it: polling finds the file.
    fs::create_dir_all(out.join(".queue")).unwrap();
    drop_file(&out, "LATE", b"x");
    assert_eq!(w.taken(Duration::from_secs(5)).await.name, "LATE");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_vanishing_under_the_watcher_are_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new("acme", dir.path()).unwrap();
    let mut w = start(vec![outbox], settings(true, 0, 1));
    let path = dir.path().to_path_buf();
    // A writer that drops files and takes most of them back at once.
    let writer = tokio::task::spawn_blocking(move || {
        let mut kept = BTreeSet::new();
        for i in 0..300 {
            let name = format!("V{i:03}");
            drop_file(&path, &name, b"x");
            // Taken back after 0 to 3 ms: some before the watcher lists it, some between its
            // listing and its rename, some too late.
            std::thread::sleep(Duration::from_micros((i * 37 % 3000) as u64));
            match fs::remove_file(path.join(&name)) {
                Ok(()) => {}
                // The watcher was faster: the file is the gateway's now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    kept.insert(name);
                }
                Err(e) => panic!("{e}"),
            }
        }
        kept
    });
    let taken_back = writer.await.unwrap();
    let mut reported = BTreeSet::new();
    while let Some(event) = w.next(Duration::from_millis(2500)).await {
        match event {
            OutboxEvent::TakenOver(t) => {
                assert!(t.path.exists());
                reported.insert(t.name.into_string().unwrap());
            }
            problem => panic!("no problem expected, got {problem:?}"),
        }
    }
    // Exactly the files the writer could not take back, each once.
    assert_eq!(reported, taken_back);
    assert_eq!(queue_files(dir.path()).len(), reported.len());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_watcher_serves_many_outboxes() {
    let dir = tempfile::tempdir().unwrap();
    let mut outboxes = Vec::new();
    for p in 0..50 {
        let out = dir.path().join(format!("p{p}"));
        fs::create_dir(&out).unwrap();
        outboxes.push(Outbox::new(&format!("partner{p}"), out).unwrap());
    }
    let mut w = start(outboxes, settings(true, 50, 3600));
    w.quiet(Duration::from_millis(300)).await;
    for p in 0..50 {
        drop_file(&dir.path().join(format!("p{p}")), "FILE", b"x");
    }
    let mut partners = BTreeSet::new();
    for _ in 0..50 {
        let t = w.taken(SOON).await;
        let p = &t.partner["partner".len()..];
        assert!(
            t.path
                .starts_with(dir.path().join(format!("p{p}")).join(".queue"))
        );
        assert!(
            partners.insert(t.partner.to_string()),
            "{} twice",
            t.partner
        );
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_when_the_receiver_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new("acme", dir.path()).unwrap();
    let w = start(vec![outbox], settings(true, 50, 1));
    drop(w.events);
    drop_file(dir.path(), "X", b"x");
    timeout(Duration::from_secs(10), w.task)
        .await
        .expect("the watcher stops without a receiver")
        .unwrap();
}
