//! Peers that misbehave, end to end: raw TCP peers that break the protocol (DATA before any
//! SFID, a second SFID while a file is open, a buffer larger than negotiated), half-close or
//! write one octet at a time, trickle a frame or fall silent, or claim another partner's
//! interrupted reception; transports that stop reading (on either side); a partner address
//! that never answers the connection. The server ends such a session with the right ESID (or
//! closes), leaves nothing in the inbox and keeps serving other partners; the client gives up
//! with a clear reason. Real sockets on 127.0.0.1, real files in temporary directories.
//!
//! The timeouts here (a trickling or silent peer, a transport that stops reading, a partner
//! address that never answers) run on paused tokio time, so they take no real time: the
//! connection driver reads the clock it passes to `oftp_proto::session::Session` from tokio,
//! and arms the session's deadline as a tokio timer.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::raw::*;
use common::*;
use oftp::config::{PartnerTable, SessionLimits};
use oftp::handler::Disconnected;
use oftp::oftp_proto::codec::{Command, Efid, EsidReason, ProtocolLevel, Sfpa, Ssrm};
use oftp::oftp_proto::sth;
use oftp::transport::Connector;
use oftp::{ClientError, ConnectionInfo, Handler, OutgoingFile};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Reports every disconnection with its reason.
struct Gone(mpsc::UnboundedSender<Disconnected>);

impl Handler for Gone {
    async fn disconnected(&self, _i: &ConnectionInfo, d: &Disconnected) {
        let _ = self.0.send(d.clone());
    }
}

/// The server's inbox holds neither a file nor a temporary file.
fn inbox_is_empty(server: &TestServer) {
    assert!(visible_files(&server.inbox()).is_empty());
    assert!(partial_files(&server.inbox()).is_empty());
}

#[tokio::test]
async fn data_before_any_sfid_is_a_protocol_violation() {
    init_tracing();
    let (tx, mut gone) = mpsc::unbounded_channel();
    let server = start_server_with(Gone(tx), |_| {}).await;
    let (mut s, mut buf) = logged_on(&server.addr(), 4096).await;
    // One subrecord header (64 octets, no end of record) and its data.
    let mut data = vec![b'D', 0x40];
    data.extend_from_slice(&[b'a'; 64]);
    let mut out = Vec::new();
    sth::encode_frame(&data, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    let esid = next_command(&mut s, &mut buf, b'F').await.expect("ESID");
    assert_eq!(esid_code(&esid), EsidReason::PROTOCOL_VIOLATION.0);
    let d = gone.recv().await.unwrap();
    assert_eq!(d.reason, Some(EsidReason::PROTOCOL_VIOLATION));
    inbox_is_empty(&server);
    still_serves(&server).await;
    server.running.shutdown().await;
}

/// SFIDORIG and SFIDDEST are identification codes (RFC 5024 5.3.3, 5.4): an SFID whose
/// originator or destination is blank names no one and is refused, SFNA 03 (invalid origin)
/// or 02 (invalid destination); the session goes on.
#[tokio::test]
async fn an_offer_with_a_blank_originator_or_destination_is_refused_with_sfna_03_or_02() {
    init_tracing();
    let server = start_server().await;
    let (mut s, mut buf) = logged_on(&server.addr(), 4096).await;
    for (blank_originator, reason) in [(true, 3), (false, 2)] {
        let Command::Sfid(mut offer) = sfid("BLANK") else {
            unreachable!("sfid() makes an SFID")
        };
        if blank_originator {
            offer.originator = String::new();
        } else {
            offer.destination = String::new();
        }
        s.write_all(&frame(&Command::Sfid(offer))).await.unwrap();
        let sfna = next_command(&mut s, &mut buf, b'3').await.expect("SFNA");
        // SFNAREAS follows the command code, as ESIDREAS does.
        assert_eq!(esid_code(&sfna), reason);
    }
    inbox_is_empty(&server);
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_second_sfid_while_a_file_is_open_ends_the_session_and_drops_the_part() {
    init_tracing();
    let (tx, mut gone) = mpsc::unbounded_channel();
    let server = start_server_with(Gone(tx), |_| {}).await;
    let (mut s, mut buf) = logged_on(&server.addr(), 4096).await;
    s.write_all(&frame(&sfid("FIRST"))).await.unwrap();
    next_command(&mut s, &mut buf, b'2').await.expect("SFPA");
    // Some data, so a temporary file exists.
    s.write_all(&data_frame(1, b'x')).await.unwrap();
    s.write_all(&frame(&sfid("SECOND"))).await.unwrap();
    let esid = next_command(&mut s, &mut buf, b'F').await.expect("ESID");
    assert_eq!(esid_code(&esid), EsidReason::PROTOCOL_VIOLATION.0);
    gone.recv().await.unwrap();
    // Restart was not negotiated, so nothing of FIRST may stay behind.
    inbox_is_empty(&server);
    still_serves(&server).await;
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_data_buffer_larger_than_negotiated_gets_esid_07() {
    init_tracing();
    let (tx, mut gone) = mpsc::unbounded_channel();
    let server = start_server_with(Gone(tx), |_| {}).await;
    let (mut s, mut buf) = logged_on(&server.addr(), 128).await;
    s.write_all(&frame(&sfid("BIG"))).await.unwrap();
    next_command(&mut s, &mut buf, b'2').await.expect("SFPA");
    // The largest frame STH allows: 100003 octets (99999-octet exchange buffer).
    let mut data = vec![b'D'];
    while data.len() + 64 <= 99_999 {
        data.push(0x3f);
        data.extend_from_slice(&[b'y'; 63]);
    }
    let mut out = Vec::new();
    sth::encode_frame(&data, &mut out).unwrap();
    // The server may close while we are still writing; that is fine.
    let _ = s.write_all(&out).await;
    let esid = next_command(&mut s, &mut buf, b'F').await.expect("ESID");
    assert_eq!(esid_code(&esid), EsidReason::BUFFER_SIZE_ERROR.0);
    gone.recv().await.unwrap();
    inbox_is_empty(&server);
    server.running.shutdown().await;
}

#[tokio::test]
async fn half_closed_sockets_and_tiny_writes_end_cleanly() {
    init_tracing();
    let (tx, mut gone) = mpsc::unbounded_channel();
    let server = start_server_with(Gone(tx), |_| {}).await;

    // Half-close right after SSRM: the server must end the session, not wait for the timeout.
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let mut buf = Vec::new();
    next_command(&mut s, &mut buf, b'I').await.expect("SSRM");
    s.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), gone.recv())
        .await
        .expect("half-closed session ended")
        .unwrap();

    // A valid SSID written one octet per write, then a file and half-close in the middle of it.
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let mut buf = Vec::new();
    next_command(&mut s, &mut buf, b'I').await.expect("SSRM");
    for b in frame(&ssid(4096, 999)) {
        s.write_all(&[b]).await.unwrap();
    }
    next_command(&mut s, &mut buf, b'X').await.expect("SSID");
    s.write_all(&frame(&sfid("HALF"))).await.unwrap();
    next_command(&mut s, &mut buf, b'2').await.expect("SFPA");
    for b in &data_frame(1, b'h') {
        s.write_all(&[*b]).await.unwrap();
    }
    s.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), gone.recv())
        .await
        .expect("half-closed session ended")
        .unwrap();
    inbox_is_empty(&server);
    still_serves(&server).await;
    server.running.shutdown().await;
}

#[tokio::test]
async fn another_partner_cannot_continue_an_interrupted_reception() {
    init_tracing();
    let (tx, mut gone) = mpsc::unbounded_channel();
    let server = start_server_with(Gone(tx), |c| {
        c.partners = PartnerTable::new([
            partner("client", CLIENT_SSID, CLIENT_PW),
            partner("other", "O0013OTHER", "OTHPW"),
        ])
        .unwrap();
        c.checkpoint_interval = 1024;
    })
    .await;

    // The real client starts SHARED with restart on, sends 2079 octets, and the line drops.
    let mut a = TcpStream::connect(server.addr()).await.unwrap();
    let mut buf = Vec::new();
    next_command(&mut a, &mut buf, b'I').await.expect("SSRM");
    a.write_all(&frame(&ssid_as(CLIENT_SSID, CLIENT_PW, 4096, 999, true)))
        .await
        .unwrap();
    next_command(&mut a, &mut buf, b'X').await.expect("SSID");
    a.write_all(&frame(&sfid("SHARED"))).await.unwrap();
    next_command(&mut a, &mut buf, b'2').await.expect("SFPA");
    a.write_all(&data_frame(33, b'A')).await.unwrap();
    drop(a);
    gone.recv().await.unwrap();

    // Another partner offers a file with the same name and stamp, claiming the same
    // originator, asking to restart at block 2.
    let mut b = TcpStream::connect(server.addr()).await.unwrap();
    let mut buf = Vec::new();
    next_command(&mut b, &mut buf, b'I').await.expect("SSRM");
    b.write_all(&frame(&ssid_as("O0013OTHER", "OTHPW", 4096, 999, true)))
        .await
        .unwrap();
    next_command(&mut b, &mut buf, b'X').await.expect("SSID");
    let Command::Sfid(mut offer) = sfid("SHARED") else {
        unreachable!()
    };
    offer.restart_position = 2;
    b.write_all(&frame(&Command::Sfid(offer))).await.unwrap();
    if let Some(sfpa) = next_command(&mut b, &mut buf, b'2').await {
        let Ok(Command::Sfpa(sfpa)) = Command::decode(&sfpa, ProtocolLevel::V2_0) else {
            panic!("bad SFPA")
        };
        b.write_all(&data_frame(1, b'B')).await.unwrap();
        let efid = Command::Efid(Efid {
            record_count: 0,
            unit_count: sfpa.answer_count * 1024 + 63,
        });
        b.write_all(&frame(&efid)).await.unwrap();
        // EFPA or EFNA; either way the answer comes before we end.
        let _ = next_of(&mut b, &mut buf, b"45").await;
    }
    drop(b);
    gone.recv().await.unwrap();

    // Nothing the other partner sent may land in the client's inbox.
    let target = server.inbox().join("SHARED");
    if let Ok(bytes) = std::fs::read(&target) {
        assert!(
            !bytes.contains(&b'B'),
            "the other partner's data landed in the client's inbox"
        );
    }
    server.running.shutdown().await;
}

/// Paused time: the session's inactivity deadline is read from tokio's clock, so the test
/// takes no real time; the 5 s limit fires (in paused time) if the server never times out.
#[tokio::test(start_paused = true)]
async fn a_frame_header_then_a_trickle_or_silence_times_out() {
    init_tracing();
    let (tx, mut gone) = mpsc::unbounded_channel();
    let server = start_server_with(Gone(tx), |c| {
        c.settings.inactivity_timeout = Duration::from_millis(600);
    })
    .await;

    // Header announcing 100003 octets, then one octet every 100 ms: no complete buffer ever
    // arrives, so the peer is inactive however many octets it sends.
    let s = TcpStream::connect(server.addr()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        let _ = wr.write_all(&[0x10, 0x01, 0x86, 0xA3]).await;
        for _ in 0..100 {
            if wr.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        ended.is_ok(),
        "a trickling peer held the session past the timeout"
    );
    let d = gone.recv().await.unwrap();
    assert_eq!(d.reason, Some(EsidReason::TIME_OUT), "{d:?}");

    // Same header, then silence.
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let mut buf = Vec::new();
    next_command(&mut s, &mut buf, b'I').await.expect("SSRM");
    s.write_all(&[0x10, 0x01, 0x86, 0xA3]).await.unwrap();
    let esid = next_command(&mut s, &mut buf, b'F').await.expect("ESID");
    assert_eq!(esid_code(&esid), EsidReason::TIME_OUT.0);
    gone.recv().await.unwrap();
    server.running.shutdown().await;
}

/// The session's inactivity deadline runs on tokio's clock: with paused time a silent peer is
/// timed out after the configured 60 s of (paused) time, while almost no real time passes. A
/// driver that read the session's clock from `std::time::Instant` would make this wait the
/// full minute of real time.
#[tokio::test(start_paused = true)]
async fn the_inactivity_deadline_follows_tokio_time() {
    init_tracing();
    let server = start_server_with((), |c| {
        c.settings.inactivity_timeout = Duration::from_secs(60);
        // Only the session's deadline can end this session.
        c.settings.login_timeout = Duration::from_secs(3600);
    })
    .await;
    let real = std::time::Instant::now();
    let paused = tokio::time::Instant::now();
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let mut buf = Vec::new();
    next_command(&mut s, &mut buf, b'I').await.expect("SSRM");
    // Everything up to the close (`next_command` gives up after 5 s of silence).
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut buf))
        .await
        .expect("the server never timed out the silent peer")
        .unwrap();
    let esid = next_command(&mut s, &mut buf, b'F').await.expect("ESID");
    assert_eq!(esid_code(&esid), EsidReason::TIME_OUT.0);
    assert!(paused.elapsed() >= Duration::from_secs(60));
    let waited = real.elapsed();
    assert!(
        waited < Duration::from_secs(30),
        "the 60 s deadline took {waited:?} of real time"
    );
    server.running.shutdown().await;
}

/// A transport that stops reading (reads stay pending forever) once `limit` octets were read,
/// while the socket stays open: a partner whose application hung.
struct StopsReading {
    inner: TcpStream,
    read: u64,
    limit: u64,
}

impl AsyncRead for StopsReading {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.read >= self.limit {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.read += n;
        r
    }
}

impl AsyncWrite for StopsReading {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Paused time: the bound on each write is a tokio timer, so the test takes no real time; the
/// 8 s limit fires (in paused time) if the server never gives up writing.
#[tokio::test(start_paused = true)]
async fn a_partner_that_stops_reading_is_timed_out() {
    init_tracing();
    let (tx, mut gone) = mpsc::unbounded_channel();
    let server = start_server_with(Gone(tx), |c| {
        c.settings.inactivity_timeout = Duration::from_millis(700);
    })
    .await;
    // Far more than the loopback socket buffers hold, so the server's writes block.
    std::fs::create_dir_all(server.outbox()).unwrap();
    std::fs::write(server.outbox().join("huge.bin"), vec![0x5a; 48 << 20]).unwrap();

    let dir = tempfile::tempdir().unwrap();
    // A credit window (999 x 99999 octets) far larger than the socket buffers.
    let limits = SessionLimits {
        compression: false,
        buffer_size: 99_999,
        credit: 999,
        ..SessionLimits::default()
    };
    // The stuck partner never gives up by itself: only the server can end this session.
    let c = client_timing_out_after(dir.path(), limits, Duration::from_secs(3600));
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let stream = StopsReading {
        inner: tcp,
        read: 0,
        limit: 300_000,
    };
    let stuck = tokio::spawn(async move {
        let _ = c
            .run_over(stream, "127.0.0.1:0".parse().unwrap(), vec![])
            .await;
    });
    // 700 ms of inactivity allowed; 8 s is plenty.
    let ended = tokio::time::timeout(Duration::from_secs(8), gone.recv()).await;
    stuck.abort();
    let ended = ended
        .expect("the server still waits to write to a partner that stopped reading")
        .unwrap();
    // Said so to the operator; no ESID could be sent to a partner that does not read.
    assert_eq!(ended.reason, Some(EsidReason::TIME_OUT), "{ended:?}");
    assert!(!ended.by_peer, "{ended:?}");
    assert!(ended.description.contains("stopped reading"), "{ended:?}");
    // The file was not delivered, so it stays in the outbox for the next session.
    assert!(server.outbox().join("huge.bin").exists());
    server.running.shutdown().await;
}

/// The client's own inactivity timeout (`oftp send --timeout`) also bounds its writes: a
/// server that accepts a file and then stops reading does not hold the client forever. Paused
/// time, as for the server above: the 10 s limit fires if the client never gives up.
#[tokio::test(start_paused = true)]
async fn a_client_whose_partner_stops_reading_gives_up() {
    init_tracing();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        s.write_all(&frame(&Command::Ssrm(Ssrm))).await.unwrap();
        next_command(&mut s, &mut buf, b'X')
            .await
            .expect("client SSID");
        s.write_all(&frame(&ssid_as(SERVER_SSID, SERVER_PW, 99_999, 999, false)))
            .await
            .unwrap();
        next_command(&mut s, &mut buf, b'H').await.expect("SFID");
        s.write_all(&frame(&Command::Sfpa(Sfpa { answer_count: 0 })))
            .await
            .unwrap();
        // From here on nothing is read; the socket stays open until the task is aborted.
        std::future::pending::<()>().await;
        drop(s);
    });
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("huge.bin");
    std::fs::write(&f, vec![0x5a; 48 << 20]).unwrap();
    let limits = SessionLimits {
        compression: false,
        buffer_size: 99_999,
        credit: 999,
        ..SessionLimits::default()
    };
    let c = client_timing_out_after(dir.path(), limits, Duration::from_millis(700));
    let run = tokio::time::timeout(
        Duration::from_secs(10),
        c.run(&addr, vec![OutgoingFile::new(&f)]),
    )
    .await;
    peer.abort();
    let report = run
        .expect("the client still waits to write to a server that stopped reading")
        .unwrap();
    assert!(
        matches!(report.files[0].1, oftp::FileOutcome::NotSent { .. }),
        "{report:?}"
    );
    assert_eq!(
        report.ended.reason,
        Some(EsidReason::TIME_OUT),
        "{report:?}"
    );
    assert!(
        report.ended.description.contains("stopped reading"),
        "{report:?}"
    );
}

/// A connector whose connection never completes, like SYNs to an address that drops them.
struct BlackHole;

impl Connector for BlackHole {
    type Stream = TcpStream;
    async fn connect(&self, _addr: &str) -> std::io::Result<TcpStream> {
        std::future::pending().await
    }
}

/// Paused time: the connect timeout is a tokio timer, so the test takes no real time; the
/// 10 s limit around it fires (in paused time) if the client never gives up.
#[tokio::test(start_paused = true)]
async fn connecting_gives_up_after_the_connect_timeout() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = client_config(dir.path(), SessionLimits::default());
    cfg.connect_timeout = Duration::from_millis(300);
    let c = oftp::Client::new(
        cfg,
        oftp::journal::SqliteJournal::open_in_dir(dir.path()).unwrap(),
    )
    .unwrap()
    .connector(BlackHole);
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), c.run("192.0.2.1:3305", Vec::new()))
        .await
        .expect("the client still waits for the connection");
    let Err(ClientError::Connect { addr, error }) = r else {
        panic!("expected a connect error, got {r:?}");
    };
    assert_eq!(addr, "192.0.2.1:3305");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        oftp::client::DEFAULT_CONNECT_TIMEOUT,
        oftp::ClientConfig::new(
            client_identity(),
            partner("s", SERVER_SSID, SERVER_PW),
            dir.path().into()
        )
        .connect_timeout
    );
}
