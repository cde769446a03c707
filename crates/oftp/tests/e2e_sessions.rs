//! End to end: rejections, duplicates, names, both directions, late EERP, restart, timeouts,
//! malformed input, two sessions receiving the same name at once, and the session handle
//! (`send_file` to a receive-only client, `change_direction`, `disconnect`). Real sockets on
//! 127.0.0.1, real files in temporary directories.
//!
//! The silent peer's test runs on real time. The session's inactivity deadline is on tokio's
//! clock, but the stalled peer leaves a file half received, and ending that session waits for
//! the store's background writer, a plain thread: paused tokio time sees the runtime idle while
//! it waits and jumps to the next timer (the test's own limit, or another session's deadline).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::raw::read_until;
use common::*;
use oftp::config::SessionLimits;
use oftp::handler::{
    Direction, Disconnected, EndResponse, FileDecision, FileOffer, ReadyAction, SessionInfo,
    TransferInfo,
};
use oftp::oftp_proto::codec::{EsidReason, SfnaReason};
use oftp::oftp_proto::sth;
use oftp::stamp::FileStampExt as _;
use oftp::{ClientError, ConnectionInfo, FileOutcome, Handler, OutgoingFile, SessionHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn limits() -> SessionLimits {
    SessionLimits::default()
}

#[tokio::test]
async fn unknown_ssid_and_wrong_password_are_refused_with_esid() {
    init_tracing();
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();

    let mut cfg = client_config(dir.path(), limits());
    cfg.local.ssid = "O0013STRANGER".into();
    let c = oftp::Client::new(cfg, oftp::journal::SqliteJournal::in_memory().unwrap()).unwrap();
    let err = c.run(&server.addr(), vec![]).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected { reason, .. } if *reason == EsidReason::USER_CODE_NOT_KNOWN),
        "{err:?}"
    );

    let mut cfg = client_config(dir.path(), limits());
    cfg.local.password = oftp::config::Password::new("WRONG");
    let c = oftp::Client::new(cfg, oftp::journal::SqliteJournal::in_memory().unwrap()).unwrap();
    let err = c.run(&server.addr(), vec![]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "partner rejected session: invalid password (ESID 04)"
    );

    // The client checks the server's answer too.
    let mut cfg = client_config(dir.path(), limits());
    cfg.partner.password = oftp::config::Password::new("NOTTHIS");
    let c = oftp::Client::new(cfg, oftp::journal::SqliteJournal::in_memory().unwrap()).unwrap();
    let err = c.run(&server.addr(), vec![]).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { reason, .. } if *reason == EsidReason::INVALID_PASSWORD),
        "{err:?}"
    );
    server.running.shutdown().await;
}

/// Refuses files whose name starts with `NO`.
struct Picky;

impl Handler for Picky {
    async fn accept_file(&self, _s: &SessionInfo, offer: &FileOffer) -> FileDecision {
        if offer.virtual_file_name.starts_with("NO") {
            FileDecision::Reject {
                reason: SfnaReason::INVALID_FILENAME,
                retry: true,
                text: "names starting with NO are not wanted".into(),
            }
        } else {
            offer.default_decision()
        }
    }
}

#[tokio::test]
async fn accept_file_rejection_duplicates_and_hostile_names() {
    init_tracing();
    let server = start_server_with(Picky, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.txt");
    std::fs::write(&a, b"first").unwrap();
    std::fs::write(&b, b"second").unwrap();
    let stamp = oftp::stamp::FileStamp::parse("202601020304050001").unwrap();
    let files = vec![
        OutgoingFile::new(&a).virtual_name("NOPE").stamp(stamp),
        OutgoingFile::new(&a)
            .virtual_name("../../ESCAPE")
            .stamp(stamp),
        OutgoingFile::new(&b).virtual_name("CON").stamp(stamp),
        OutgoingFile::new(&a).virtual_name("KEEP").stamp(stamp),
        // Same originator, name and stamp as the one before: a duplicate.
        OutgoingFile::new(&b).virtual_name("KEEP").stamp(stamp),
    ];
    let c = client(dir.path(), limits());
    let report = c.run(&server.addr(), files).await.unwrap();
    let outcomes: Vec<&FileOutcome> = report.files.iter().map(|(_, o)| o).collect();
    assert!(matches!(
        outcomes[0],
        FileOutcome::Rejected { reason, retry: true, text }
            if *reason == SfnaReason::INVALID_FILENAME && text.contains("not wanted")
    ));
    assert_eq!(*outcomes[1], FileOutcome::Delivered);
    assert_eq!(*outcomes[2], FileOutcome::Delivered);
    assert_eq!(*outcomes[3], FileOutcome::Delivered);
    assert!(matches!(
        outcomes[4],
        FileOutcome::Rejected { reason, retry: false, .. } if *reason == SfnaReason::DUPLICATE_FILE
    ));
    assert!(!report.all_delivered());

    let inbox = server.inbox();
    assert_eq!(visible_files(&inbox), vec!["KEEP", "_CON", "___.._ESCAPE"]);
    assert_eq!(std::fs::read(inbox.join("KEEP")).unwrap(), b"first");
    // Nothing escaped the inbox.
    assert!(!server.dir.path().join("ESCAPE").exists());
    assert!(!server.dir.path().join("inbox").join("ESCAPE").exists());
    assert!(!server.dir.path().parent().unwrap().join("ESCAPE").exists());
    server.running.shutdown().await;
}

#[tokio::test]
async fn server_sends_its_outbox_after_the_client_hands_over_the_turn() {
    init_tracing();
    let server = start_server().await;
    std::fs::create_dir_all(server.outbox()).unwrap();
    let data = content(150_000, 9);
    std::fs::write(server.outbox().join("for-client.bin"), &data).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.bin");
    std::fs::write(&up, content(1000, 3)).unwrap();
    let c = client(dir.path(), limits());
    let report = c
        .run(&server.addr(), vec![OutgoingFile::new(&up)])
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(report.received.len(), 1, "{report:?}");
    assert_eq!(std::fs::read(&report.received[0]).unwrap(), data);
    assert!(report.received[0].ends_with("FOR-CLIENT.BIN"));
    // Sent files leave the outbox, so the next session does not send them again.
    assert!(!server.outbox().join("for-client.bin").exists());
    assert!(server.outbox().join("sent").join("for-client.bin").exists());
    // The client's EERP reached the server's journal.
    let j = server.running.journal();
    assert_eq!(
        j.end_response_count(oftp::journal::Direction::Received)
            .unwrap(),
        1
    );
    server.running.shutdown().await;
}

#[tokio::test]
async fn eerp_sent_later_through_the_session_handle() {
    init_tracing();
    let (app, mut probe) = late_answer();
    let server = start_server_with(app, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("late.edi");
    std::fs::write(&f, b"UNA:+.? 'UNB+...'").unwrap();
    let c = client(dir.path(), limits());
    let addr = server.addr();
    let run = tokio::spawn(async move { c.run(&addr, vec![OutgoingFile::new(&f)]).await });

    let (handle, t) = probe.received.recv().await.expect("end_transfer seen");
    probe.hold.store(false, Ordering::SeqCst);
    handle.send_end_response(late_response(&t, false)).unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    server.running.shutdown().await;
}

#[tokio::test]
async fn nerp_sent_later_reaches_the_client_as_not_delivered() {
    init_tracing();
    let (app, mut probe) = late_answer();
    let server = start_server_with(app, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.edi");
    std::fs::write(&f, b"not EDIFACT").unwrap();
    let c = client(dir.path(), limits());
    let addr = server.addr();
    let run = tokio::spawn(async move { c.run(&addr, vec![OutgoingFile::new(&f)]).await });
    let (handle, t) = probe.received.recv().await.expect("end_transfer seen");
    probe.hold.store(false, Ordering::SeqCst);
    handle.send_end_response(late_response(&t, true)).unwrap();
    let report = run.await.unwrap().unwrap();
    assert!(
        matches!(
            &report.files[0].1,
            FileOutcome::NotDelivered { reason, text }
                if *reason == oftp::oftp_proto::codec::NerpReason::PROCESSING_FAILED
                    && text.contains("application")
        ),
        "{report:?}"
    );
    assert!(!report.all_delivered());
    server.running.shutdown().await;
}

/// Reports incoming restart positions and disconnections.
struct Watch {
    restarts: Arc<AtomicU64>,
    gone: mpsc::UnboundedSender<()>,
}

impl Handler for Watch {
    async fn start_transfer(&self, _s: &SessionInfo, t: &TransferInfo) {
        if t.direction == Direction::Incoming {
            self.restarts.store(t.restart_position, Ordering::SeqCst);
        }
    }

    async fn disconnected(&self, _i: &ConnectionInfo, _d: &Disconnected) {
        let _ = self.gone.send(());
    }
}

#[tokio::test]
async fn restart_after_a_dropped_connection_resumes_from_the_durable_position() {
    init_tracing();
    let restarts = Arc::new(AtomicU64::new(u64::MAX));
    let (gone, mut gone_rx) = mpsc::unbounded_channel();
    let server = start_server_with(
        Watch {
            restarts: restarts.clone(),
            gone,
        },
        |c| c.checkpoint_interval = 64 * 1024,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.bin");
    let data = content(1_000_000, 77);
    std::fs::write(&f, &data).unwrap();
    let c = client(dir.path(), limits());

    // First attempt: the connection breaks after about 600 kB.
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let cut = Cut {
        inner: tcp,
        written: 0,
        limit: 600_000,
        stall: false,
    };
    let report = c
        .run_over(
            cut,
            "127.0.0.1:0".parse().unwrap(),
            vec![OutgoingFile::new(&f)],
        )
        .await
        .unwrap();
    assert!(!report.all_delivered());
    gone_rx.recv().await.expect("server saw the break");
    assert_eq!(restarts.load(Ordering::SeqCst), 0);
    assert!(
        visible_files(&server.inbox()).is_empty(),
        "nothing under a final name"
    );
    assert_eq!(partial_files(&server.inbox()).len(), 1, "durable part kept");

    // Second attempt with the same file: same identity, restarts past the start.
    let report = c
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    let pos = restarts.load(Ordering::SeqCst);
    assert!(pos > 0 && pos * 1024 <= 600_000, "restart position {pos}");
    assert_eq!(std::fs::read(server.inbox().join("BIG.BIN")).unwrap(), data);
    assert!(partial_files(&server.inbox()).is_empty());
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_silent_peer_times_out_while_other_sessions_are_served() {
    init_tracing();
    let (gone, mut gone_rx) = mpsc::unbounded_channel();
    let server = start_server_with(
        Watch {
            restarts: Arc::new(AtomicU64::new(0)),
            gone,
        },
        |c| {
            c.settings.inactivity_timeout = Duration::from_millis(700);
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("stalled.bin");
    std::fs::write(&f, content(500_000, 5)).unwrap();
    let stalled_client = client(dir.path(), limits());
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let stall = Cut {
        inner: tcp,
        written: 0,
        limit: 100_000,
        stall: true,
    };
    let stalled = tokio::spawn(async move {
        let _ = stalled_client
            .run_over(
                stall,
                "127.0.0.1:0".parse().unwrap(),
                vec![OutgoingFile::new(&f)],
            )
            .await;
    });

    // Meanwhile another partner session goes through.
    let dir2 = tempfile::tempdir().unwrap();
    let g = dir2.path().join("other.bin");
    std::fs::write(&g, b"other").unwrap();
    let report = client(dir2.path(), limits())
        .run(&server.addr(), vec![OutgoingFile::new(&g)])
        .await
        .unwrap();
    assert!(report.all_delivered());
    gone_rx.recv().await.unwrap(); // the good session

    // The stalled one is ended by the server's inactivity timer.
    tokio::time::timeout(Duration::from_secs(10), gone_rx.recv())
        .await
        .expect("server ended the silent session")
        .unwrap();
    assert_eq!(visible_files(&server.inbox()), vec!["OTHER.BIN"]);
    stalled.abort();
    server.running.shutdown().await;
}

#[tokio::test]
async fn malformed_bytes_get_the_matching_esid() {
    init_tracing();
    let server = start_server().await;

    // A well-framed buffer with an unknown command: ESID 01.
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    read_until(&mut s, b'I').await; // SSRM
    let mut frame = Vec::new();
    sth::encode_frame(b"Zgarbage", &mut frame).unwrap();
    s.write_all(&frame).await.unwrap();
    let esid = read_until(&mut s, b'F').await;
    assert_eq!(&esid[1..3], b"01", "{:?}", String::from_utf8_lossy(&esid));

    // An SSID with letters where digits belong: ESID 06 (invalid data) or 02.
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    read_until(&mut s, b'I').await;
    let mut bad = b"X5O0013CLIENT              CLIPW   0XXXXBNNN064N            ".to_vec();
    bad.push(b'\r');
    let mut frame = Vec::new();
    sth::encode_frame(&bad, &mut frame).unwrap();
    s.write_all(&frame).await.unwrap();
    let esid = read_until(&mut s, b'F').await;
    let code = std::str::from_utf8(&esid[1..3]).unwrap();
    assert!(code == "06" || code == "02", "ESID {code}");

    // Not STH at all.
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    read_until(&mut s, b'I').await;
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let esid = read_until(&mut s, b'F').await;
    assert_ne!(&esid[1..3], b"00");
    server.running.shutdown().await;
}

#[tokio::test]
async fn restart_of_a_variable_record_file_resumes_at_a_record() {
    init_tracing();
    let restarts = Arc::new(AtomicU64::new(u64::MAX));
    let (gone, mut gone_rx) = mpsc::unbounded_channel();
    let server = start_server_with(
        Watch {
            restarts: restarts.clone(),
            gone,
        },
        |c| c.checkpoint_interval = 32 * 1024,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("records.txt");
    // Raw V records (the default record mapping): each after its 2-octet length.
    let mut data = Vec::new();
    for i in 0..8000usize {
        let len = 20 + (i * 13) % 90;
        data.extend_from_slice(&(len as u16).to_be_bytes());
        data.extend((0..len).map(|j| [b'a', b'\n', 0, 0xFF, b'\r'][(i + j) % 5]));
    }
    std::fs::write(&f, &data).unwrap();
    let file = || OutgoingFile::new(&f).format(oftp::oftp_proto::codec::FileFormat::Variable, 200);
    let c = client(dir.path(), limits());
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let cut = Cut {
        inner: tcp,
        written: 0,
        limit: 300_000,
        stall: false,
    };
    let report = c
        .run_over(cut, "127.0.0.1:0".parse().unwrap(), vec![file()])
        .await
        .unwrap();
    assert!(!report.all_delivered());
    gone_rx.recv().await.expect("server saw the break");

    let report = c.run(&server.addr(), vec![file()]).await.unwrap();
    assert!(report.all_delivered(), "{report:?}");
    let pos = restarts.load(Ordering::SeqCst);
    assert!(pos > 0 && pos < 8000, "restart at record {pos}");
    assert_eq!(
        std::fs::read(server.inbox().join("RECORDS.TXT")).unwrap(),
        data
    );
    server.running.shutdown().await;
}

#[tokio::test]
async fn restart_of_a_raw_fixed_record_file_resumes_at_a_record() {
    init_tracing();
    let restarts = Arc::new(AtomicU64::new(u64::MAX));
    let (gone, mut gone_rx) = mpsc::unbounded_channel();
    let server = start_server_with(
        Watch {
            restarts: restarts.clone(),
            gone,
        },
        |c| c.checkpoint_interval = 16 * 1024,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("fixed.dat");
    let data = (0..4000usize * 120)
        .map(|i| [b'\r', b'\n', 0, 0xFF, b'Z'][i % 5])
        .collect::<Vec<u8>>();
    std::fs::write(&f, &data).unwrap();
    let file = || OutgoingFile::new(&f).format(oftp::oftp_proto::codec::FileFormat::Fixed, 120);
    let c = client(dir.path(), limits());
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let cut = Cut {
        inner: tcp,
        written: 0,
        limit: 250_000,
        stall: false,
    };
    let report = c
        .run_over(cut, "127.0.0.1:0".parse().unwrap(), vec![file()])
        .await
        .unwrap();
    assert!(!report.all_delivered());
    gone_rx.recv().await.expect("server saw the break");

    let report = c.run(&server.addr(), vec![file()]).await.unwrap();
    assert!(report.all_delivered(), "{report:?}");
    let pos = restarts.load(Ordering::SeqCst);
    assert!(pos > 0 && pos < 4000, "restart at record {pos}");
    assert_eq!(
        std::fs::read(server.inbox().join("FIXED.DAT")).unwrap(),
        data
    );
    server.running.shutdown().await;
}

/// Interrupts every file it starts sending.
struct Interrupter;

impl Handler for Interrupter {
    async fn start_transfer(&self, s: &SessionInfo, t: &TransferInfo) {
        if t.direction == Direction::Outgoing {
            s.handle.interrupt();
        }
    }
}

#[tokio::test]
async fn interrupt_stops_the_file_being_sent_and_nothing_half_arrives() {
    init_tracing();
    let server = start_server_with(Interrupter, |_| {}).await;
    std::fs::create_dir_all(server.outbox()).unwrap();
    std::fs::write(server.outbox().join("cut.bin"), content(2_000_000, 8)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = client(dir.path(), limits())
        .run(&server.addr(), vec![])
        .await
        .unwrap();
    assert!(report.received.is_empty());
    assert_eq!(
        report.ended.reason.map(|r| r.0),
        Some(99),
        "{:?}",
        report.ended
    );
    assert!(
        report.ended.description.contains("interrupted"),
        "{:?}",
        report.ended
    );
    assert!(visible_files(&dir.path().join("received")).is_empty());
    // Not sent: it stays in the outbox for the next session.
    assert!(server.outbox().join("cut.bin").exists());
    server.running.shutdown().await;
}

/// A program writing into an outbox writes under a `.tmp` name (any case) or a name starting
/// with a dot, then renames: such files are never offered, so none goes out half written.
#[tokio::test]
async fn the_outbox_scan_leaves_temporary_and_hidden_names_alone() {
    init_tracing();
    let server = start_server().await;
    std::fs::create_dir_all(server.outbox()).unwrap();
    std::fs::write(server.outbox().join("ready.edi"), b"ready").unwrap();
    for writing in ["half.tmp", "HALF2.TMP", "half3.Tmp", ".hidden"] {
        std::fs::write(server.outbox().join(writing), b"still being written").unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let report = client(dir.path(), limits())
        .run(&server.addr(), vec![])
        .await
        .unwrap();
    let names: Vec<_> = report
        .received
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["READY.EDI"], "{report:?}");
    for writing in ["half.tmp", "HALF2.TMP", "half3.Tmp", ".hidden"] {
        assert!(
            server.outbox().join(writing).exists(),
            "{writing} was taken"
        );
    }
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_send_only_client_is_not_offered_the_outbox() {
    init_tracing();
    let server = start_server().await;
    std::fs::create_dir_all(server.outbox()).unwrap();
    std::fs::write(server.outbox().join("waiting.txt"), b"later").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("up.txt");
    std::fs::write(&f, b"up").unwrap();
    let send_only = SessionLimits {
        mode: oftp::config::Mode::Send,
        ..SessionLimits::default()
    };
    let report = client(dir.path(), send_only)
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert!(report.received.is_empty());
    assert_eq!(
        report.ended.reason.map(|r| r.0),
        Some(0),
        "{:?}",
        report.ended
    );
    assert!(server.outbox().join("waiting.txt").exists());
    server.running.shutdown().await;
}

/// Pushes one file through the session handle when the session starts, logs off once it is
/// confirmed, and reports the end response.
struct Pusher {
    file: std::path::PathBuf,
    eerp: mpsc::UnboundedSender<EndResponse>,
}

impl Handler for Pusher {
    async fn session_started(&self, s: &SessionInfo) {
        s.handle.send_file(OutgoingFile::new(&self.file)).unwrap();
    }

    async fn end_response(&self, s: &SessionInfo, r: &EndResponse) {
        let _ = self.eerp.send(r.clone());
        let _ = s.handle.logoff();
    }
}

#[tokio::test]
async fn handle_send_file_reaches_a_receive_only_client_and_its_eerp_comes_back() {
    init_tracing();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("pushed.edi");
    let data = content(70_000, 11);
    std::fs::write(&file, &data).unwrap();
    let (eerp, mut eerp_rx) = mpsc::unbounded_channel();
    let server = start_server_with(Pusher { file, eerp }, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .run(&server.addr(), vec![])
        .await
        .unwrap();
    assert_eq!(report.received.len(), 1, "{report:?}");
    assert_eq!(std::fs::read(&report.received[0]).unwrap(), data);
    let r = tokio::time::timeout(Duration::from_secs(5), eerp_rx.recv())
        .await
        .expect("EERP reported")
        .unwrap();
    assert_eq!(r.virtual_file_name.trim_end(), "PUSHED.EDI");
    assert!(r.negative.is_none(), "{r:?}");
    server.running.shutdown().await;
}

/// Accepts a file only once two offers are waiting, so both receptions run at the same time.
struct BothOffered(std::sync::Arc<tokio::sync::Barrier>);

impl Handler for BothOffered {
    async fn accept_file(
        &self,
        _s: &SessionInfo,
        offer: &oftp::handler::FileOffer,
    ) -> oftp::handler::FileDecision {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.0.wait()).await;
        offer.default_decision()
    }
}

#[tokio::test]
async fn two_sessions_receiving_the_same_name_never_mix_or_lose_a_file() {
    init_tracing();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let server = start_server_with(BothOffered(barrier), |_| {}).await;
    let mut runs = Vec::new();
    for seed in 1..=2u64 {
        let addr = server.addr();
        runs.push(tokio::spawn(async move {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("same.bin");
            let data = content(400_000, seed);
            std::fs::write(&f, &data).unwrap();
            let stamp = oftp::stamp::FileStamp::parse(&format!("20260102030405000{seed}")).unwrap();
            let report = client(dir.path(), SessionLimits::default())
                .run(&addr, vec![OutgoingFile::new(&f).stamp(stamp)])
                .await
                .unwrap();
            (data, report.all_delivered())
        }));
    }
    let mut delivered = Vec::new();
    for r in runs {
        let (data, ok) = r.await.unwrap();
        if ok {
            delivered.push(data);
        }
    }
    // Overwrite is off: at most one can have the name, and a sender told "delivered" must
    // find exactly its bytes there.
    assert!(delivered.len() <= 1);
    let names = visible_files(&server.inbox());
    assert_eq!(names.len(), delivered.len(), "{names:?}");
    if let Some(data) = delivered.first() {
        assert_eq!(
            &std::fs::read(server.inbox().join("SAME.BIN")).unwrap(),
            data
        );
    }
    assert!(partial_files(&server.inbox()).is_empty());
    server.running.shutdown().await;
}

/// Keeps the speaker role the first time it gets it and hands the session handle to the test;
/// reports every disconnection.
struct Holder {
    handles: mpsc::UnboundedSender<SessionHandle>,
    gone: mpsc::UnboundedSender<Disconnected>,
    held: AtomicBool,
}

impl Holder {
    fn new() -> (
        Self,
        mpsc::UnboundedReceiver<SessionHandle>,
        mpsc::UnboundedReceiver<Disconnected>,
    ) {
        let (handles, h) = mpsc::unbounded_channel();
        let (gone, g) = mpsc::unbounded_channel();
        let holder = Self {
            handles,
            gone,
            held: AtomicBool::new(false),
        };
        (holder, h, g)
    }
}

impl Handler for Holder {
    async fn ready_to_send(&self, session: &SessionInfo) -> ReadyAction {
        if self.held.swap(true, Ordering::SeqCst) {
            return ReadyAction::Proceed;
        }
        let _ = self.handles.send(session.handle.clone());
        ReadyAction::Wait
    }

    async fn disconnected(&self, _i: &ConnectionInfo, d: &Disconnected) {
        let _ = self.gone.send(d.clone());
    }
}

/// A server that would wait 60 s on its own; only the handle's request moves it on.
async fn holding_server() -> (
    TestServer,
    mpsc::UnboundedReceiver<SessionHandle>,
    mpsc::UnboundedReceiver<Disconnected>,
) {
    let (holder, handles, gone) = Holder::new();
    let server = start_server_with(holder, |c| {
        c.settings.inactivity_timeout = Duration::from_secs(60);
    })
    .await;
    (server, handles, gone)
}

#[tokio::test]
async fn change_direction_through_the_session_handle_hands_the_turn_back() {
    init_tracing();
    let (server, mut handles, mut gone) = holding_server().await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("first.txt");
    std::fs::write(&f, b"first").unwrap();
    let c = client_timing_out_after(
        dir.path(),
        SessionLimits::default(),
        Duration::from_secs(60),
    );
    let addr = server.addr();
    let run = tokio::spawn(async move { c.run(&addr, vec![OutgoingFile::new(&f)]).await });

    // The server holds the turn (after receiving the file) until the application hands it on.
    let handle = tokio::time::timeout(Duration::from_secs(10), handles.recv())
        .await
        .expect("the server got the turn")
        .unwrap();
    handle.change_direction().unwrap();
    // With the turn back and nothing left, the client ends the session normally.
    let report = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the client still waits for the turn")
        .unwrap()
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(report.ended.reason, Some(EsidReason::NORMAL), "{report:?}");
    assert!(!report.ended.by_peer, "{report:?}");
    let ended = gone.recv().await.unwrap();
    assert_eq!(ended.reason, Some(EsidReason::NORMAL), "{ended:?}");
    assert!(ended.by_peer, "{ended:?}");
    assert_eq!(
        std::fs::read(server.inbox().join("FIRST.TXT")).unwrap(),
        b"first"
    );
    server.running.shutdown().await;
}

#[tokio::test]
async fn disconnect_through_the_session_handle_drops_the_connection() {
    init_tracing();
    let (server, mut handles, mut gone) = holding_server().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client_timing_out_after(
        dir.path(),
        SessionLimits::default(),
        Duration::from_secs(60),
    );
    let addr = server.addr();
    let run = tokio::spawn(async move { c.run(&addr, vec![]).await });

    let handle = tokio::time::timeout(Duration::from_secs(10), handles.recv())
        .await
        .expect("the server got the turn")
        .unwrap();
    handle.disconnect().unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), gone.recv())
        .await
        .expect("the server ended the connection")
        .unwrap();
    assert_eq!(ended.description, "disconnected by the application");
    assert!(!ended.by_peer);
    // The client sees the connection close without End Session.
    let report = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the client noticed the closed connection")
        .unwrap()
        .unwrap();
    assert!(report.ended.by_peer, "{report:?}");
    assert_ne!(report.ended.reason, Some(EsidReason::NORMAL), "{report:?}");
    // The session is gone: requests are refused.
    assert!(handle.logoff().is_err());
    server.running.shutdown().await;
}
