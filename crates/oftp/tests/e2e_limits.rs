//! Limits against connection exhaustion (hundreds of connections beyond the limit, a blocked
//! address closed before any octet), what a refused client is told, refusals in our log, and
//! a file refused at its offer when it cannot fit: real server and clients over loopback
//! (127.0.0.2 and up stand for other partners' addresses).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use oftp::handler::{Direction, LogEvent, SessionInfo, TransferInfo};
use oftp::oftp_proto::codec::{Command, EsidReason, ProtocolLevel, SfnaReason};
use oftp::oftp_proto::sth;
use oftp::space::FreeSpace;
use oftp::stamp::FileStampExt as _;
use oftp::{ClientError, ConnectionId, FileOutcome, Handler, OutgoingFile};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `server` from the local address `from`.
async fn connect_from(from: &str, server: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(server.parse().unwrap()).await.unwrap()
}

/// Everything the server sends until it closes, decoded.
async fn commands_until_closed(s: &mut TcpStream) -> Vec<Command> {
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes).await;
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while let Ok(Some((range, len))) = sth::decode_frame(rest) {
        out.push(Command::decode(&rest[range], ProtocolLevel::V2_0).unwrap());
        rest = &rest[len..];
    }
    out
}

/// Sends `data` as virtual file `name` from a fresh client in `dir`, connecting from `from`.
async fn send_from(
    from: &str,
    server: &str,
    dir: &Path,
    name: &str,
    data: &[u8],
) -> Result<oftp::ClientReport, ClientError> {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join(name);
    std::fs::write(&src, data).unwrap();
    let c = client(dir, oftp::config::SessionLimits::default());
    let io = connect_from(from, server).await;
    c.run_over(io, server.parse().unwrap(), vec![OutgoingFile::new(src)])
        .await
}

#[tokio::test]
async fn a_partner_logs_in_while_one_address_holds_more_silent_connections_than_the_limit() {
    init_tracing();
    let server = start_server_with((), |c| {
        c.settings.max_connections = 8;
        c.settings.max_unauthenticated_per_address = 4;
    })
    .await;
    let addr = server.addr();
    // More silent connections than the server takes in all, from one address.
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(connect_from("127.0.0.1", &addr).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let report = send_from("127.0.0.2", &addr, dir.path(), "HELLO", b"hello")
        .await
        .expect("the partner at another address logs in");
    assert_eq!(report.files[0].1, FileOutcome::Delivered);
    assert_eq!(
        std::fs::read(server.inbox().join("HELLO")).unwrap(),
        b"hello"
    );
    drop(silent);
    server.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_ssid_is_ended_with_esid_09_after_the_login_timeout() {
    init_tracing();
    let server = start_server_with((), |c| {
        c.settings.login_timeout = Duration::from_secs(10);
        c.settings.inactivity_timeout = Duration::from_secs(60);
    })
    .await;
    let t0 = tokio::time::Instant::now();
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let got = commands_until_closed(&mut s).await;
    let waited = t0.elapsed();
    assert!(matches!(got.first(), Some(Command::Ssrm(_))), "{got:?}");
    match got.last() {
        Some(Command::Esid(e)) => {
            assert_eq!(e.reason, EsidReason::TIME_OUT, "{e:?}");
            assert!(e.text.contains("SSID"), "{e:?}");
        }
        other => panic!("expected ESID 09, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(60),
        "ended after {waited:?}: the login timeout, not the inactivity timeout"
    );
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_client_refused_at_the_connection_limit_is_told_esid_08() {
    init_tracing();
    let server = start_server_with((), |c| c.settings.max_connections = 1).await;
    let addr = server.addr();
    let _holder = connect_from("127.0.0.1", &addr).await;
    // The holder is counted once the supervisor has accepted it.
    while server.running.connection_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let err = send_from("127.0.0.2", &addr, dir.path(), "F", b"x")
        .await
        .unwrap_err();
    match &err {
        ClientError::PartnerFull { text } => assert!(text.contains("connection limit"), "{text}"),
        other => panic!("expected ESID 08, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("the partner's server is full, try later"),
        "{err}"
    );
    server.running.shutdown().await;
}

/// Holds the first incoming transfer until released; records every log line.
#[derive(Clone, Default)]
struct HoldAndRecord {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
    held: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
}

impl HoldAndRecord {
    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Handler for HoldAndRecord {
    async fn start_transfer(&self, _s: &SessionInfo, t: &TransferInfo) {
        if t.direction == Direction::Incoming
            && !self.held.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.started.notify_one();
            self.release.notified().await;
        }
    }

    async fn log(&self, _id: ConnectionId, event: &LogEvent) {
        self.log.lock().unwrap().push(event.message.clone());
    }
}

#[tokio::test]
async fn sessions_per_address_are_limited_and_every_refusal_is_logged() {
    init_tracing();
    let handler = HoldAndRecord::default();
    let server =
        start_server_with(handler.clone(), |c| c.settings.max_sessions_per_address = 1).await;
    let addr = server.addr();
    let work = tempfile::tempdir().unwrap();
    let stamp = oftp::stamp::FileStamp::now();
    let offer = |name: &str| {
        let d = work.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let src = d.join("SAME");
        std::fs::write(&src, b"same content").unwrap();
        (
            client(&d, oftp::config::SessionLimits::default()),
            OutgoingFile::new(src).stamp(stamp),
        )
    };
    let (first, file) = offer("first");
    let a = addr.clone();
    let first = tokio::spawn(async move {
        let io = connect_from("127.0.0.1", &a).await;
        first.run_over(io, a.parse().unwrap(), vec![file]).await
    });
    handler.started.notified().await;

    // A second session from the same address: over the per-address limit.
    let (second, file) = offer("second");
    let io = connect_from("127.0.0.1", &addr).await;
    let err = second
        .run_over(io, addr.parse().unwrap(), vec![file.clone()])
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::PartnerFull { .. }), "{err:?}");

    // From another address it logs in; its offer of the file being received is refused.
    let io = connect_from("127.0.0.3", &addr).await;
    let report = second
        .run_over(io, addr.parse().unwrap(), vec![file])
        .await
        .unwrap();
    assert!(
        matches!(&report.files[0].1, FileOutcome::Rejected { reason, retry: true, .. } if *reason == SfnaReason::UNSPECIFIED),
        "{:?}",
        report.files[0].1
    );
    handler.release.notify_one();
    assert_eq!(
        first.await.unwrap().unwrap().files[0].1,
        FileOutcome::Delivered
    );

    // Both refusals are in our log with the partner, the file and the reason.
    let lines = handler.lines();
    let esid = lines
        .iter()
        .find(|l| l.contains("ESID") && l.contains("(08)"))
        .unwrap_or_else(|| panic!("no ESID 08 in {lines:#?}"));
    assert!(
        esid.contains(CLIENT_SSID)
            && esid.contains("127.0.0.1")
            && esid.contains("too many sessions"),
        "{esid}"
    );
    let sfna = lines
        .iter()
        .find(|l| l.contains("SFNA"))
        .unwrap_or_else(|| panic!("no SFNA in {lines:#?}"));
    assert!(
        sfna.contains(CLIENT_SSID)
            && sfna.contains("127.0.0.3")
            && sfna.contains("file SAME")
            && sfna.contains("(99)")
            && sfna.contains("another session"),
        "{sfna}"
    );
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_refusal_is_logged_with_the_code_presented() {
    init_tracing();
    let handler = HoldAndRecord::default();
    let server = start_server_with(handler.clone(), |c| {
        c.partners =
            oftp::config::PartnerTable::new([partner("client", CLIENT_SSID, "OTHER")]).unwrap();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let err = send_from("127.0.0.1", &server.addr(), dir.path(), "F", b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Rejected { .. }), "{err:?}");
    let lines = handler.lines();
    assert!(
        lines.iter().any(|l| l.contains("ESID")
            && l.contains("(04)")
            && l.contains(&format!("{CLIENT_SSID} (not logged in)"))),
        "{lines:#?}"
    );
    server.running.shutdown().await;
}

/// A file system with this many octets free.
#[derive(Debug)]
struct Free(u64);

impl FreeSpace for Free {
    fn available(&self, _dir: &Path) -> std::io::Result<u64> {
        Ok(self.0)
    }
}

#[tokio::test]
async fn a_file_that_cannot_fit_is_refused_at_its_offer_with_sfna_12_retry() {
    init_tracing();
    let server = start_server_with((), |c| {
        c.free_space = Arc::new(Free(3 << 20));
        c.settings.free_space_reserve = 1 << 20;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // 2 MiB + 1 KiB: more than the 3 MiB free less the 1 MiB reserve.
    let big = content((2 << 20) + 1024, 3);
    let report = send_from("127.0.0.1", &server.addr(), dir.path(), "BIG", &big)
        .await
        .unwrap();
    match &report.files[0].1 {
        FileOutcome::Rejected {
            reason,
            retry,
            text,
        } => {
            assert_eq!(*reason, SfnaReason::ACCESS_METHOD_FAILURE);
            assert!(*retry);
            assert!(text.contains("free space"), "{text}");
        }
        other => panic!("expected SFNA 12 at the offer, got {other:?}"),
    }
    assert!(visible_files(&server.inbox()).is_empty());
    assert!(partial_files(&server.inbox()).is_empty(), "nothing opened");
    // Exactly 2 MiB fits.
    let fits = content(2 << 20, 4);
    let report = send_from("127.0.0.1", &server.addr(), dir.path(), "FITS", &fits)
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered);
    server.running.shutdown().await;
}

#[tokio::test]
async fn three_hundred_connections_beyond_the_limit_are_refused_and_service_resumes() {
    init_tracing();
    let server = start_server_with((), |c| {
        c.settings.max_connections = 8;
    })
    .await;
    let mut socks = Vec::new();
    for _ in 0..308 {
        socks.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    assert!(server.running.connection_count() <= 8);
    // The first 8 get SSRM; so do 64 more, only to be told ESID 08 at their SSID (at most 64
    // such refusals at once, taking no slot); the rest are closed promptly (end of stream).
    let mut served = 0;
    let mut refused = 0;
    for s in socks.iter_mut() {
        let mut chunk = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => refused += 1,
            Ok(Ok(_)) => served += 1,
            Err(_) => panic!("a connection was neither served nor closed"),
        }
    }
    assert_eq!(served, 8 + 64, "refused {refused}");
    assert!(server.running.connection_count() <= 8);
    drop(socks);
    // Bounded wait for the 8 sessions to notice their peers went away.
    for _ in 0..500 {
        if server.running.connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.running.connection_count(), 0);
    still_serves(&server).await;
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_blocked_address_is_closed_before_any_byte() {
    init_tracing();
    let server = start_server_with((), |c| {
        c.settings.addresses.blocked = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let mut chunk = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "a blocked client got {n} octets");
    server.running.shutdown().await;
}
