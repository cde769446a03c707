//! End to end: graceful shutdown during a transfer, pending EERPs across sessions, a lying
//! EFID (DeleteOnError), unreadable files in a job list, the PITrail/Transfer events, the idle
//! timeout, recovery from a crash between storing a received file and journalling it (after
//! the rename, after the hard link), file services on both sides, and the removal of partial
//! receptions nobody resumed.
//!
//! The idle timeout is a tokio timer and runs on paused time. The partial-reception sweep
//! compares file ages with the wall clock (`chrono::Utc::now`), so its test runs on real time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use oftp::config::SessionLimits;
use oftp::handler::{Direction, LogEvent, Origin, PiTrail, SessionInfo, TransferInfo};
use oftp::journal::{FileKey, Journal as _, ReceiveState, SendState};
use oftp::oftp_proto::codec::{
    CipherSuite, EfnaReason, FileCompression, FileEnvelope, FileFormat, Password, SecurityLevel,
    Sfid, VirtualFileTime,
};
use oftp::oftp_proto::session::{Event, InitiatorConfig, Session};
use oftp::stamp::{FileStamp, FileStampExt};
use oftp::{ClientReport, ConnectionId, FileOutcome, Handler, OutgoingFile, RunningServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

struct Started(mpsc::UnboundedSender<()>);

impl Handler for Started {
    async fn start_transfer(&self, _s: &SessionInfo, t: &TransferInfo) {
        if t.direction == Direction::Incoming {
            let _ = self.0.send(());
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_the_transfer_finish_and_keeps_the_eerp_for_later() {
    init_tracing();
    let (tx, mut started) = mpsc::unbounded_channel();
    let server = start_server_with(Started(tx), |c| {
        c.settings.shutdown_grace = Duration::from_secs(20);
    })
    .await;
    let data_dir = server.dir.path().to_owned();
    let inbox = server.inbox();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("slow.bin");
    let data = content(3_000_000, 11);
    std::fs::write(&f, &data).unwrap();
    let slow = SessionLimits {
        buffer_size: 1024,
        credit: 1,
        ..SessionLimits::default()
    };
    let c = client(dir.path(), slow);
    let addr = server.addr();
    let run = tokio::spawn(async move { c.run(&addr, vec![OutgoingFile::new(&f)]).await });
    started.recv().await.unwrap();
    let t0 = Instant::now();
    server.running.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "did not need the full grace period"
    );
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        report.files[0].1,
        FileOutcome::AwaitingEndResponse,
        "{report:?}"
    );
    assert_eq!(
        report.ended.reason.map(|r| r.0),
        Some(5),
        "{:?}",
        report.ended
    );
    assert_eq!(std::fs::read(inbox.join("SLOW.BIN")).unwrap(), data);
    let key = FileKey::new(
        CLIENT_SSID.parse().unwrap(),
        "SLOW.BIN",
        report.files[0].0.stamp.unwrap(),
    );

    // The EERP was not sent; the journal keeps it for the next session with this partner.
    let journal = oftp::journal::SqliteJournal::open_in_dir(&data_dir).unwrap();
    assert_eq!(journal.pending_end_responses(CLIENT_SSID).unwrap().len(), 1);
    drop(journal);

    // Next session (same data directory): the server sends it without being asked.
    let dir_cfg = data_dir.clone();
    let running = oftp::Server::new(server_config(&dir_cfg))
        .unwrap()
        .start()
        .await
        .unwrap();
    let c = client(dir.path(), SessionLimits::default());
    let report = c
        .run(&running.local_addr().unwrap().to_string(), vec![])
        .await
        .unwrap();
    assert!(report.files.is_empty());
    // The client's journal now has the send settled.
    assert_eq!(
        c.journal().sent_by_key(&key).unwrap().unwrap().state,
        SendState::Delivered
    );
    let delivered = running
        .journal()
        .end_response_count(oftp::journal::Direction::Sent)
        .unwrap();
    assert_eq!(delivered, 1);
    assert!(
        running
            .journal()
            .pending_end_responses(CLIENT_SSID)
            .unwrap()
            .is_empty()
    );
    running.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_file_does_not_stop_the_others() {
    init_tracing();
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, b"good").unwrap();
    let c = client(dir.path(), SessionLimits::default());
    let report = c
        .run(
            &server.addr(),
            vec![
                OutgoingFile::new(dir.path().join("missing.txt")),
                OutgoingFile::new(&good),
            ],
        )
        .await
        .unwrap();
    assert!(
        matches!(&report.files[0].1, FileOutcome::NotSent { reason } if reason.contains("missing.txt"))
    );
    assert_eq!(report.files[1].1, FileOutcome::Delivered);
    let key = FileKey::new(
        CLIENT_SSID.parse().unwrap(),
        "GOOD.TXT",
        report.files[1].0.stamp.unwrap(),
    );
    assert_eq!(
        c.journal().sent_by_key(&key).unwrap().unwrap().state,
        SendState::Delivered
    );
    server.running.shutdown().await;
}

/// A hand-driven initiator that lies in its EFID: the server must refuse the file (EFNA) and,
/// with DeleteOnError, leave nothing behind.
#[tokio::test]
async fn wrong_efid_counts_are_refused_and_the_data_deleted() {
    init_tracing();
    let server = start_server().await;
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    let mut cfg = InitiatorConfig::new(CLIENT_SSID, Password::new(CLIENT_PW));
    cfg.capabilities.buffer_size = 1024;
    let mut s = Session::initiator(cfg, std::time::Instant::now()).unwrap();
    let mut buf = vec![0u8; 8192];
    let mut refused = None;
    let mut sent_file = false;
    for _ in 0..200 {
        while let Some(out) = s.poll_transmit() {
            tcp.write_all(&out).await.unwrap();
        }
        let mut progressed = false;
        while let Some(ev) = s.poll_event() {
            progressed = true;
            match ev {
                Event::ReadyToSend { .. } if !sent_file => {
                    sent_file = true;
                    s.send_file(Sfid {
                        dsn: "LIAR".into(),
                        date_time: VirtualFileTime::new(2026, 1, 1, 0, 0, 0, 1).unwrap(),
                        user_data: String::new(),
                        destination: SERVER_SSID.into(),
                        originator: CLIENT_SSID.into(),
                        format: FileFormat::Unstructured,
                        max_record_len: 0,
                        file_size: 1,
                        original_file_size: 1,
                        restart_position: 0,
                        security: SecurityLevel::NONE,
                        cipher_suite: CipherSuite::NONE,
                        compression: FileCompression::NONE,
                        envelope: FileEnvelope::NONE,
                        signed_eerp: false,
                        description: String::new(),
                    })
                    .unwrap();
                }
                Event::FileAccepted { .. } => {
                    s.write_data(&[7u8; 100], false).unwrap();
                    s.finish_file(0, 999).unwrap();
                }
                Event::FileRefused { reason, .. } => {
                    refused = Some(reason);
                    let _ = s.end_session(
                        oftp::oftp_proto::codec::EsidReason::UNSPECIFIED,
                        "test done",
                    );
                }
                _ => {}
            }
        }
        if s.is_closed() {
            break;
        }
        if progressed {
            continue;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("server answered")
            .unwrap();
        if n == 0 {
            s.handle_transport_closed(std::time::Instant::now());
        } else {
            s.handle_input(&buf[..n], std::time::Instant::now());
        }
    }
    assert_eq!(refused, Some(EfnaReason::INVALID_BYTE_COUNT));
    while let Some(out) = s.poll_transmit() {
        let _ = tcp.write_all(&out).await;
    }
    drop(tcp);
    let inbox = server.inbox();
    server.running.shutdown().await;
    assert!(visible_files(&inbox).is_empty());
    assert!(
        partial_files(&inbox).is_empty(),
        "DeleteOnError removed the data"
    );
}

#[derive(Default)]
struct Counters {
    trail: AtomicU64,
    ssid_from_peer: AtomicU64,
    progress: AtomicU64,
    logs: AtomicU64,
}

struct Count(Arc<Counters>);

impl Handler for Count {
    async fn pi_trail(&self, _id: ConnectionId, t: &PiTrail) {
        self.0.trail.fetch_add(1, Ordering::SeqCst);
        if t.origin == Origin::Peer && t.command_id == b'X' {
            assert!(t.description.starts_with("SSID"));
            assert!(
                !t.description.contains(CLIENT_PW),
                "no password in the trail"
            );
            self.0.ssid_from_peer.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn transfer(&self, _s: &SessionInfo, _t: &TransferInfo, bytes: u64) {
        self.0.progress.store(bytes, Ordering::SeqCst);
    }

    async fn log(&self, _id: ConnectionId, _e: &LogEvent) {
        self.0.logs.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn pitrail_progress_and_log_events_fire() {
    init_tracing();
    let counters = Arc::new(Counters::default());
    let server = start_server_with(Count(counters.clone()), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.bin");
    std::fs::write(&f, content(600_000, 4)).unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert!(report.all_delivered());
    server.running.shutdown().await;
    assert_eq!(counters.ssid_from_peer.load(Ordering::SeqCst), 1);
    // SSRM, SSID x2, SFID, SFPA, CDTs, EFID, EFPA, CD, EERP, RTR, CD, ESID at least.
    assert!(counters.trail.load(Ordering::SeqCst) >= 12);
    let p = counters.progress.load(Ordering::SeqCst);
    assert!((256 * 1024..=600_000).contains(&p), "progress {p}");
    assert!(counters.logs.load(Ordering::SeqCst) >= 3);
}

/// Paused time: the idle timeout is a tokio timer, so the test takes no real time; the 5 s
/// limit on each read fires (in paused time) if the server never ends the idle session.
#[tokio::test(start_paused = true)]
async fn an_idle_session_is_ended_and_listening_can_be_toggled() {
    init_tracing();
    let server = start_server_with((), |c| {
        c.settings.idle_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    let mut s = Session::initiator(
        InitiatorConfig::new(CLIENT_SSID, Password::new(CLIENT_PW)),
        std::time::Instant::now(),
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut ended = None;
    // Log in, then say nothing while holding the turn.
    for _ in 0..50 {
        while let Some(out) = s.poll_transmit() {
            tcp.write_all(&out).await.unwrap();
        }
        while let Some(ev) = s.poll_event() {
            if let Event::SessionEnded {
                reason, by_peer, ..
            } = ev
            {
                ended = Some((reason, by_peer));
            }
        }
        if s.is_closed() {
            break;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("server acts within its idle timeout")
            .unwrap();
        if n == 0 {
            s.handle_transport_closed(std::time::Instant::now());
        } else {
            s.handle_input(&buf[..n], std::time::Instant::now());
        }
    }
    assert_eq!(
        ended,
        Some((oftp::oftp_proto::codec::EsidReason::TIME_OUT, true))
    );

    server.running.stop_listening().await.unwrap();
    assert!(server.running.local_addr().is_none());
    let addr = server.running.start_listening().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .run(&addr.to_string(), vec![])
        .await
        .unwrap();
    assert!(report.files.is_empty());
    assert_eq!(report.ended.reason.map(|r| r.0), Some(0));
    server.running.shutdown().await;
}

/// Starts a server on `sdir`, the state a crash left behind, and sends it the local file
/// `name` (content `complete`, stamp `stamp`) again; the server and the client's report.
async fn send_again_after_a_crash(
    sdir: &std::path::Path,
    name: &str,
    stamp: FileStamp,
) -> (RunningServer, ClientReport) {
    let running = oftp::Server::new(server_config(sdir))
        .unwrap()
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(name);
    std::fs::write(&f, b"complete").unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .run(
            &running.local_addr().unwrap().to_string(),
            vec![OutgoingFile::new(&f).stamp(stamp)],
        )
        .await
        .unwrap();
    (running, report)
}

/// What the server's journal says of the reception of `key` from the test client.
fn received_state(running: &RunningServer, key: &FileKey) -> ReceiveState {
    running
        .journal()
        .received(CLIENT_SSID, key)
        .unwrap()
        .unwrap()
        .state
}

#[tokio::test]
async fn a_crash_between_rename_and_journal_is_recovered_as_delivered() {
    init_tracing();
    let sdir = tempfile::tempdir().unwrap();
    let inbox = sdir.path().join("inbox").join("client");
    std::fs::create_dir_all(&inbox).unwrap();
    let stamp = oftp::stamp::FileStamp::parse("202605060708090001").unwrap();
    let key = FileKey::new(CLIENT_SSID.parse().unwrap(), "CRASH.TXT", stamp);
    {
        // The state a crash right after the rename leaves behind.
        let j = oftp::journal::SqliteJournal::open_in_dir(sdir.path()).unwrap();
        j.begin_receive(
            CLIENT_SSID,
            &key,
            &inbox.join(".oftp-gone.part"),
            &inbox.join("CRASH.TXT"),
            "",
        )
        .unwrap();
        std::fs::write(inbox.join("CRASH.TXT"), b"complete").unwrap();
    }
    let (running, report) = send_again_after_a_crash(sdir.path(), "crash.txt", stamp).await;
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(received_state(&running, &key), ReceiveState::Complete);
    assert_eq!(std::fs::read(inbox.join("CRASH.TXT")).unwrap(), b"complete");
    running.shutdown().await;
}

/// A stand-in for the security stage: "signs" by reversing the bytes into a copy, "verifies" by
/// reversing them back in place.
struct Reverse;

fn reverse_file(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let mut data = std::fs::read(from)?;
    data.reverse();
    std::fs::write(to, data)
}

impl oftp::transport::FileServices for Reverse {
    fn check_incoming(&self, sfid: &Sfid) -> Result<(), oftp::transport::ServiceRefusal> {
        if sfid.security == SecurityLevel::SIGNED {
            Ok(())
        } else {
            Err(oftp::transport::ServiceRefusal {
                reason: oftp::oftp_proto::codec::SfnaReason::UNSIGNED_FILE_NOT_ALLOWED,
                text: "sign it".into(),
            })
        }
    }

    fn finish_incoming(
        &self,
        _sfid: &Sfid,
        data: &std::path::Path,
    ) -> Result<(), oftp::transport::ServiceFailure> {
        reverse_file(data, data).map_err(|e| oftp::transport::ServiceFailure {
            reason: EfnaReason::INVALID_SIGNATURE,
            text: e.to_string(),
        })
    }

    fn prepare_outgoing(
        &self,
        sfid: &mut Sfid,
        source: &std::path::Path,
    ) -> std::io::Result<Option<std::path::PathBuf>> {
        sfid.security = SecurityLevel::SIGNED;
        sfid.cipher_suite = CipherSuite::AES256_RSA_SHA256;
        let copy = source.with_extension("signed");
        reverse_file(source, &copy)?;
        Ok(Some(copy))
    }
}

#[tokio::test]
async fn the_file_services_stage_runs_on_both_sides() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_config(dir.path());
    cfg.settings.listen = "127.0.0.1:0".parse().unwrap();
    let running = oftp::Server::new(cfg)
        .unwrap()
        .file_services(Reverse)
        .start()
        .await
        .unwrap();
    let addr = running.local_addr().unwrap().to_string();
    let cdir = tempfile::tempdir().unwrap();
    let f = cdir.path().join("doc.txt");
    let data = content(10_000, 21);
    std::fs::write(&f, &data).unwrap();

    // Without the stage on the client, the file goes out unsigned and is refused.
    let plain = client(cdir.path(), SessionLimits::default());
    let report = plain
        .run(&addr, vec![OutgoingFile::new(&f).virtual_name("PLAIN")])
        .await
        .unwrap();
    assert!(matches!(&report.files[0].1, FileOutcome::Rejected { text, .. } if text == "sign it"));

    let signing = client(cdir.path(), SessionLimits::default()).file_services(Reverse);
    let report = signing
        .run(&addr, vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    let inbox = dir.path().join("inbox").join("client");
    assert_eq!(std::fs::read(inbox.join("DOC.TXT")).unwrap(), data);
    assert!(
        !f.with_extension("signed").exists(),
        "processed copy removed"
    );
    running.shutdown().await;
}

/// Sends a 1 MB file to a server on `dir` over a connection cut after 200 KB.
async fn interrupted_reception(dir: &std::path::Path, cdir: &std::path::Path) {
    let mut cfg = server_config(dir);
    cfg.checkpoint_interval = 16 * 1024;
    let running = oftp::Server::new(cfg).unwrap().start().await.unwrap();
    let f = cdir.join("big.bin");
    std::fs::write(&f, content(1_000_000, 4)).unwrap();
    let tcp = TcpStream::connect(running.local_addr().unwrap())
        .await
        .unwrap();
    let cut = Cut {
        inner: tcp,
        written: 0,
        limit: 200_000,
        stall: false,
    };
    let report = client(cdir, SessionLimits::default())
        .run_over(
            cut,
            "127.0.0.1:0".parse().unwrap(),
            vec![OutgoingFile::new(&f)],
        )
        .await
        .unwrap();
    assert!(!report.all_delivered());
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.connection_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_reception_nobody_resumes_is_removed_after_the_retention_period() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cdir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox").join("client");
    interrupted_reception(dir.path(), cdir.path()).await;
    let parts = partial_files(&inbox);
    assert_eq!(parts.len(), 1, "kept for a restart");
    let journal = oftp::journal::SqliteJournal::open_in_dir(dir.path()).unwrap();
    assert_eq!(journal.partial_receptions().unwrap().len(), 1);

    // The default retention (7 days) keeps it across a restart of the server.
    let mut cfg = server_config(dir.path());
    assert_eq!(
        cfg.store.partial_retention,
        Some(oftp::partials::DEFAULT_PARTIAL_RETENTION)
    );
    let running = oftp::Server::new(cfg.clone())
        .unwrap()
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(partial_files(&inbox), parts);
    running.shutdown().await;

    // A running server removes it once nobody resumed it for its retention period (here
    // 1 s, swept every second), with its journal row.
    cfg.store.partial_retention = Some(Duration::from_secs(1));
    let running = oftp::Server::new(cfg).unwrap().start().await.unwrap();
    // The sweep removes the file, then closes the row: wait for both (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while (!partial_files(&inbox).is_empty() || !journal.partial_receptions().unwrap().is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(partial_files(&inbox).is_empty(), "removed");
    assert!(
        journal.partial_receptions().unwrap().is_empty(),
        "row closed"
    );
    running.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_crash_between_hard_link_and_unlink_is_recovered_as_delivered() {
    init_tracing();
    let sdir = tempfile::tempdir().unwrap();
    let inbox = sdir.path().join("inbox").join("client");
    std::fs::create_dir_all(&inbox).unwrap();
    let stamp = oftp::stamp::FileStamp::parse("202605060708090002").unwrap();
    let key = FileKey::new(CLIENT_SSID.parse().unwrap(), "LINKED.TXT", stamp);
    let partial = inbox.join(".oftp-linked.part");
    let target = inbox.join("LINKED.TXT");
    {
        // The state a crash right after the hard link (before the unlink) leaves behind: both
        // names are the same file and the journal still says "receiving".
        let j = oftp::journal::SqliteJournal::open_in_dir(sdir.path()).unwrap();
        j.begin_receive(CLIENT_SSID, &key, &partial, &target, "")
            .unwrap();
        std::fs::write(&partial, b"complete").unwrap();
        std::fs::hard_link(&partial, &target).unwrap();
    }
    let (running, report) = send_again_after_a_crash(sdir.path(), "linked.txt", stamp).await;
    // The resend hears "duplicate" and gets the EERP it missed: delivered, not EFNA 12.
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(received_state(&running, &key), ReceiveState::Complete);
    assert_eq!(std::fs::read(&target).unwrap(), b"complete");
    assert!(!partial.exists(), "the temporary name is cleaned up");
    running.shutdown().await;
}

/// A client logging in as `ssid` (password "OTHERPW").
fn client_as(ssid: &str, dir: &std::path::Path) -> oftp::Client {
    let mut cfg = client_config(dir, SessionLimits::default());
    cfg.local = oftp::config::LocalIdentity {
        ssid: ssid.into(),
        sfid: ssid.into(),
        password: oftp::config::Password::new("OTHERPW"),
    };
    let journal = oftp::journal::SqliteJournal::open_in_dir(dir).unwrap();
    oftp::Client::new(cfg, journal).unwrap()
}

/// A configuration reload (SIGHUP) replaces the partner table of the running server: a
/// partner added can log in, one removed cannot, and a session in progress is not dropped.
#[tokio::test]
async fn partners_replaced_on_a_running_server_count_for_new_sessions_only() {
    init_tracing();
    let (tx, mut started) = mpsc::unbounded_channel();
    let server = start_server_with(Started(tx), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("new.txt");
    std::fs::write(&f, b"from the new partner").unwrap();
    let other = client_as("O0013OTHER", &dir.path().join("other"));
    match other.run(&server.addr(), vec![]).await {
        Err(oftp::ClientError::Rejected { reason, .. }) => assert_eq!(reason.0, 3),
        r => panic!("an unknown partner must be refused: {r:?}"),
    }
    let both = oftp::config::PartnerTable::new([
        partner("client", CLIENT_SSID, CLIENT_PW),
        partner("other", "O0013OTHER", "OTHERPW"),
    ])
    .unwrap();
    server.running.set_partners(both);
    let report = other
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert!(server.dir.path().join("inbox/other/NEW.TXT").exists());
    while started.try_recv().is_ok() {}

    // The client is removed while it sends a file: that session goes on to the end.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, content(4_000_000, 5)).unwrap();
    let cdir = dir.path().join("client");
    let c = client(&cdir, SessionLimits::default());
    let addr = server.addr();
    let sending = tokio::spawn(async move { c.run(&addr, vec![OutgoingFile::new(&big)]).await });
    started.recv().await.unwrap();
    let only_other =
        oftp::config::PartnerTable::new([partner("other", "O0013OTHER", "OTHERPW")]).unwrap();
    server.running.set_partners(only_other);
    let report = sending.await.unwrap().unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(
        std::fs::read(server.inbox().join("BIG.BIN")).unwrap(),
        content(4_000_000, 5)
    );
    match client(&cdir, SessionLimits::default())
        .run(&server.addr(), vec![])
        .await
    {
        Err(oftp::ClientError::Rejected { reason, .. }) => assert_eq!(reason.0, 3),
        r => panic!("a removed partner must be refused: {r:?}"),
    }
    server.running.shutdown().await;
}
