//! End to end: a server with an outbound queue (the gateway's seam, `oftp::outbound`) offers a
//! calling partner its due queued files instead of its outbox and settles each outcome on the
//! row; an EERP or NERP that comes in a later session settles the row in the journal. Real
//! sockets on 127.0.0.1, a real SQLite journal, the queue's clock in the test's hands.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use common::*;
use oftp::config::SessionLimits;
use oftp::handler::{
    Direction, EndResponse, EndResponseTiming, FileDecision, FileOffer, SessionInfo, TransferInfo,
    TransferResult,
};
use oftp::journal::{
    AlertKind, Direction as Way, Journal, JournalError, QueueChange, QueueState, QueuedFile,
    QueuedSend, SessionRole,
};
use oftp::oftp_proto::codec::{FileFormat, SfnaReason};
use oftp::outbound::{OutboundQueue, QueueOutcome};
use oftp::{FileOutcome, Handler, Server};

/// The queue's start time; `TestQueue::advance` moves its clock.
const T0_MS: i64 = 1_780_000_000_000;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// The gateway's part, played by the test over the real journal: claims the due rows, takes
/// the fixed transitions, and for a failure: SFNA with retry N is rejected, anything else is
/// queued again a minute later. Keeps every settlement for the assertions.
#[derive(Debug)]
struct TestQueue {
    journal: Arc<dyn Journal>,
    now_ms: AtomicI64,
    settled: Mutex<Vec<(i64, QueueOutcome)>>,
}

impl TestQueue {
    fn now(&self) -> DateTime<Utc> {
        at(self.now_ms.load(Ordering::SeqCst))
    }

    fn advance(&self, seconds: i64) {
        self.now_ms.fetch_add(seconds * 1000, Ordering::SeqCst);
    }

    fn settled(&self) -> Vec<(i64, QueueOutcome)> {
        self.settled.lock().unwrap().clone()
    }
}

impl OutboundQueue for TestQueue {
    fn claim(&self, partner: &str) -> Result<Vec<QueuedFile>, JournalError> {
        self.journal.claim_due(partner, self.now(), 100)
    }

    fn settle(&self, file: &QueuedFile, outcome: &QueueOutcome) -> Result<(), JournalError> {
        self.settled
            .lock()
            .unwrap()
            .push((file.id, outcome.clone()));
        let now = self.now();
        let change = outcome.fixed_change(now).unwrap_or_else(|| match outcome {
            QueueOutcome::Failed {
                outcome:
                    FileOutcome::Rejected {
                        retry: false, text, ..
                    },
                ..
            } => QueueChange::to(QueueState::Rejected, now).error(text.clone()),
            QueueOutcome::Failed { outcome, .. } => QueueChange::to(QueueState::Queued, now)
                .due_at(now + chrono::Duration::seconds(60))
                .error(format!("{outcome:?}")),
            other => panic!("no fixed transition for {other:?}"),
        });
        self.journal.transition(file.id, &change).map(drop)
    }
}

struct QueueServer {
    server: TestServer,
    queue: Arc<TestQueue>,
}

impl QueueServer {
    async fn start<H: Handler>(handler: H) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::new(server_config(dir.path()))
            .unwrap()
            .handler(handler);
        let queue = Arc::new(TestQueue {
            journal: server.journal().clone(),
            now_ms: AtomicI64::new(T0_MS),
            settled: Mutex::new(Vec::new()),
        });
        let running = server.outbound_queue(queue.clone()).start().await.unwrap();
        Self {
            server: TestServer { dir, running },
            queue,
        }
    }

    fn journal(&self) -> &Arc<dyn Journal> {
        self.server.running.journal()
    }

    /// Writes `data` where the gateway takes files over to (`<outbox>/.queue/<n>/<name>`) and
    /// enqueues it for the client, due `due_in` seconds from the queue's now.
    fn enqueue(&self, name: &str, data: &[u8], due_in: i64) -> i64 {
        let dir = self.server.outbox().join(".queue").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let source_path: PathBuf = dir.join(name);
        std::fs::write(&source_path, data).unwrap();
        let send = QueuedSend {
            partner: "client".into(),
            source_path,
            virtual_file_name: name.to_uppercase(),
            destination: None,
            originator: None,
            format: FileFormat::Unstructured,
            max_record_len: 0,
            user_data: String::new(),
            description: String::new(),
        };
        let due = self.queue.now() + chrono::Duration::seconds(due_in);
        self.journal().enqueue(&send, due).unwrap()
    }

    fn row(&self, id: i64) -> QueuedFile {
        self.journal().transfer(id).unwrap().unwrap().file
    }

    fn states(&self, ids: &[i64]) -> Vec<QueueState> {
        ids.iter().map(|&id| self.row(id).state).collect()
    }
}

fn names(received: &[PathBuf]) -> Vec<String> {
    let mut n: Vec<_> = received
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn a_calling_partner_gets_its_due_queued_files_instead_of_its_outbox() {
    init_tracing();
    let s = QueueServer::start(()).await;
    let a = s.enqueue("a.edi", &content(150_000, 1), 0);
    let b = s.enqueue("b.edi", b"second", 0);
    let later = s.enqueue("later.edi", b"not due yet", 3600);
    std::fs::create_dir_all(s.server.outbox()).unwrap();
    std::fs::write(s.server.outbox().join("loose.edi"), b"outbox").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .run(&s.server.addr(), vec![])
        .await
        .unwrap();
    assert_eq!(names(&report.received), ["A.EDI", "B.EDI"], "{report:?}");
    assert_eq!(
        std::fs::read(dir.path().join("received").join("A.EDI")).unwrap(),
        content(150_000, 1)
    );
    // The client's EERPs came in the same session: the journal settled the rows.
    assert_eq!(
        s.states(&[a, b, later]),
        [
            QueueState::Delivered,
            QueueState::Delivered,
            QueueState::Queued
        ]
    );
    let settled = s.queue.settled();
    let sent: Vec<_> = settled
        .iter()
        .map(|(id, o)| match o {
            QueueOutcome::Sent(key) => (*id, key.dsn.clone()),
            other => panic!("transfer {id}: {other:?}"),
        })
        .collect();
    assert_eq!(sent, [(a, "A.EDI".into()), (b, "B.EDI".into())]);
    let history: Vec<_> = s
        .journal()
        .transfer(a)
        .unwrap()
        .unwrap()
        .history
        .iter()
        .map(|h| h.to)
        .collect();
    assert_eq!(
        history,
        [
            QueueState::Queued,
            QueueState::InTransfer,
            QueueState::Sent,
            QueueState::Delivered
        ]
    );
    // The session that sent them is on the rows' trail (issue #12): written at its end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let trail = loop {
        let trails = s.journal().sessions_of(Way::Sent, a).unwrap();
        if let [t] = trails.as_slice()
            && t.end.is_some()
        {
            break t.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{trails:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(trail.start.role, SessionRole::Responder);
    assert_eq!(trail.start.partner, "client");
    let sent_data: Vec<_> = trail
        .commands
        .iter()
        .filter(|c| c.command == "DATA")
        .map(|c| (c.direction, c.description.as_str()))
        .collect();
    assert_eq!(
        sent_data,
        [
            (Way::Sent, "DATA 150000 octets of file data"),
            (Way::Sent, "DATA 6 octets of file data")
        ],
        "one line per file"
    );
    assert_eq!(
        s.journal().sessions_of(Way::Sent, b).unwrap()[0].id,
        trail.id,
        "both rows moved in the one session"
    );
    assert!(
        s.journal()
            .sessions_of(Way::Sent, later)
            .unwrap()
            .is_empty(),
        "the row not due was not moved"
    );
    let counters = s.journal().partner_counters().unwrap();
    assert_eq!(
        counters
            .iter()
            .map(|c| (c.partner.as_str(), c.files_sent, c.octets_sent))
            .collect::<Vec<_>>(),
        [("client", 2, 150_006)]
    );
    // The outbox is the gateway's to take over now: the server leaves it alone.
    assert!(s.server.outbox().join("loose.edi").exists());
    assert!(!s.server.outbox().join("sent").exists());
    assert!(
        s.row(a).send.source_path.exists(),
        "the queue keeps its file"
    );
    s.server.running.shutdown().await;
}

/// Refuses (SFNA 03, retry N) every file whose name starts with BAD.
struct Refuser;

impl Handler for Refuser {
    async fn accept_file(&self, _s: &SessionInfo, offer: &FileOffer) -> FileDecision {
        if offer.virtual_file_name.starts_with("BAD") {
            FileDecision::Reject {
                reason: SfnaReason::INVALID_DESTINATION,
                retry: false,
                text: "not for us".into(),
            }
        } else {
            offer.default_decision()
        }
    }
}

#[tokio::test]
async fn a_refused_queued_file_is_left_to_the_queues_policy_and_the_session_goes_on() {
    init_tracing();
    let s = QueueServer::start(()).await;
    let bad = s.enqueue("bad.edi", b"refused", 0);
    let good = s.enqueue("good.edi", b"taken", 0);
    let dir = tempfile::tempdir().unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .handler(Refuser)
        .run(&s.server.addr(), vec![])
        .await
        .unwrap();
    assert_eq!(names(&report.received), ["GOOD.EDI"], "{report:?}");
    assert_eq!(
        s.states(&[bad, good]),
        [QueueState::Rejected, QueueState::Delivered]
    );
    assert_eq!(s.row(bad).last_error.as_deref(), Some("not for us"));
    // The stored file is settled at once, the refusal at the end of the session.
    let settled = s.queue.settled();
    assert_eq!(
        settled.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [good, bad]
    );
    match &settled[1].1 {
        QueueOutcome::Failed {
            outcome: FileOutcome::Rejected { reason, retry, .. },
            ended,
            ..
        } => {
            assert_eq!((*reason, *retry), (SfnaReason::INVALID_DESTINATION, false));
            assert_eq!(ended.reason.map(|r| r.0), Some(0), "settled at the end");
        }
        other => panic!("{other:?}"),
    }
    s.server.running.shutdown().await;
}

/// Interrupts the first file the server starts sending (ESID 99), while `armed`.
struct InterruptFirst(AtomicBool);

impl Handler for InterruptFirst {
    async fn start_transfer(&self, s: &SessionInfo, t: &TransferInfo) {
        if t.direction == Direction::Outgoing && self.0.swap(false, Ordering::SeqCst) {
            s.handle.interrupt();
        }
    }
}

#[tokio::test]
async fn claimed_files_a_broken_session_did_not_send_go_back_to_the_queue() {
    init_tracing();
    let s = QueueServer::start(InterruptFirst(AtomicBool::new(true))).await;
    let cut = s.enqueue("cut.bin", &content(2_000_000, 8), 0);
    let waiting = s.enqueue("waiting.edi", b"never offered", 0);
    let dir = tempfile::tempdir().unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .run(&s.server.addr(), vec![])
        .await
        .unwrap();
    assert!(report.received.is_empty(), "{report:?}");
    let settled = s.queue.settled();
    assert!(
        matches!(
            &settled[..],
            [
                (c, QueueOutcome::Failed { outcome: FileOutcome::NotSent { .. }, key: Some(_), .. }),
                (w, QueueOutcome::NotOffered(ended)),
            ] if *c == cut && *w == waiting && ended.reason.map(|r| r.0) == Some(99)
        ),
        "{settled:?}"
    );
    // The cut file waits for its retry; the one never offered is due at once.
    let (c, w) = (s.row(cut), s.row(waiting));
    assert_eq!((c.state, w.state), (QueueState::Queued, QueueState::Queued));
    assert_eq!(
        c.next_attempt_at,
        s.queue.now() + chrono::Duration::seconds(60)
    );
    assert_eq!(w.next_attempt_at, s.queue.now());
    assert_eq!(w.last_error, None, "not offered is no failure");

    // Not due yet: the next call gets only the file never offered.
    let report = client(dir.path(), SessionLimits::default())
        .run(&s.server.addr(), vec![])
        .await
        .unwrap();
    assert_eq!(names(&report.received), ["WAITING.EDI"], "{report:?}");
    s.queue.advance(61);
    let report = client(dir.path(), SessionLimits::default())
        .run(&s.server.addr(), vec![])
        .await
        .unwrap();
    assert_eq!(names(&report.received), ["CUT.BIN"], "{report:?}");
    assert_eq!(
        std::fs::read(dir.path().join("received").join("CUT.BIN")).unwrap(),
        content(2_000_000, 8)
    );
    assert_eq!(
        s.states(&[cut, waiting]),
        [QueueState::Delivered, QueueState::Delivered]
    );
    assert_eq!(s.row(cut).attempts, 2);
    s.server.running.shutdown().await;
}

/// Keeps the end responses of received files for later (`EndResponseTiming::Later`).
#[derive(Default, Clone)]
struct Deferrer(Arc<Mutex<Vec<TransferInfo>>>);

impl Handler for Deferrer {
    async fn end_transfer(
        &self,
        _s: &SessionInfo,
        t: &TransferInfo,
        r: &TransferResult,
    ) -> EndResponseTiming {
        if t.direction == Direction::Incoming && matches!(r, TransferResult::Completed { .. }) {
            self.0.lock().unwrap().push(t.clone());
        }
        EndResponseTiming::Later
    }
}

/// Sends the given end responses when the session starts.
struct Answerer(Vec<EndResponse>);

impl Handler for Answerer {
    async fn session_started(&self, s: &SessionInfo) {
        for r in &self.0 {
            s.handle.send_end_response(r.clone()).unwrap();
        }
    }
}

/// RFC 5024 4.3.6: the response "may be sent in the same or in any subsequent session".
#[tokio::test]
async fn an_eerp_or_nerp_in_a_later_session_settles_the_queued_file() {
    init_tracing();
    let s = QueueServer::start(()).await;
    let ok = s.enqueue("ok.edi", b"processed", 0);
    let bad = s.enqueue("bad.edi", b"cannot be processed", 0);
    let dir = tempfile::tempdir().unwrap();
    let deferrer = Deferrer::default();
    let report = client(dir.path(), SessionLimits::default())
        .handler(deferrer.clone())
        .run(&s.server.addr(), vec![])
        .await
        .unwrap();
    assert_eq!(names(&report.received), ["BAD.EDI", "OK.EDI"], "{report:?}");
    assert_eq!(
        s.states(&[ok, bad]),
        [QueueState::Sent, QueueState::Sent],
        "no end response yet"
    );

    let received = deferrer.0.lock().unwrap().clone();
    let responses = received
        .iter()
        .map(|t| late_response(t, t.virtual_file_name == "BAD.EDI"))
        .collect();
    client(dir.path(), SessionLimits::default())
        .handler(Answerer(responses))
        .run(&s.server.addr(), vec![])
        .await
        .unwrap();
    assert_eq!(
        s.states(&[ok, bad]),
        [QueueState::Delivered, QueueState::NotDelivered]
    );
    let error = s.row(bad).last_error.unwrap();
    assert!(error.contains("NERP 34"), "{error}");
    let alerts = s.journal().open_alerts().unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.alert.kind == AlertKind::NotDelivered
                && a.alert.partner.as_deref() == Some("client")
                && a.alert.text.contains(&format!("transfer {bad}"))),
        "{alerts:?}"
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    s.server.running.shutdown().await;
}
