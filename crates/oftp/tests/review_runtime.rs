//! Review tests: hostile raw TCP peers, a peer that stops reading, another partner reusing a
//! file's identity, and the session handle's `send_file`/`logoff`. Hostile-input tests check that
//! the server ends the session with the right ESID (or closes), leaves nothing in the inbox, and
//! keeps serving other partners. Real sockets on 127.0.0.1, real files in temporary directories.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use oftp::ConnectionInfo;
use oftp::Handler;
use oftp::OutgoingFile;
use oftp::config::{PartnerTable, SessionLimits};
use oftp::handler::{Disconnected, EndResponse, SessionInfo};
use oftp::oftp_proto::codec::{
    Command, Efid, EsidReason, FileFormat, Password, ProtocolLevel, SessionMode, Sfid, Sfpa, Ssid,
    Ssrm, VirtualFileTime,
};
use oftp::oftp_proto::sth;
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

fn frame(cmd: &Command) -> Vec<u8> {
    let mut buf = Vec::new();
    cmd.encode(ProtocolLevel::V2_0, &mut buf).unwrap();
    let mut out = Vec::new();
    sth::encode_frame(&buf, &mut out).unwrap();
    out
}

fn ssid(buffer_size: u32, credit: u16) -> Command {
    ssid_as(CLIENT_SSID, CLIENT_PW, buffer_size, credit, false)
}

fn ssid_as(code: &str, pw: &str, buffer_size: u32, credit: u16, restart: bool) -> Command {
    Command::Ssid(Ssid {
        level: ProtocolLevel::V2_0,
        code: code.into(),
        password: Password::new(pw),
        buffer_size,
        mode: SessionMode::Both,
        compression: false,
        restart,
        special_logic: false,
        credit,
        secure_auth: false,
        user_data: String::new(),
    })
}

fn sfid(name: &str) -> Command {
    let stamp = VirtualFileTime::new(2026, 1, 2, 3, 4, 5, 1).unwrap();
    Command::Sfid(Sfid::new(
        name,
        stamp,
        CLIENT_SSID,
        SERVER_SSID,
        FileFormat::Unstructured,
        0,
    ))
}

/// One DATA exchange buffer of `n` subrecords of 63 octets of `byte` (no end of record).
fn data_frame(n: usize, byte: u8) -> Vec<u8> {
    let mut data = vec![b'D'];
    for _ in 0..n {
        data.push(0x3f);
        data.extend_from_slice(&[byte; 63]);
    }
    let mut out = Vec::new();
    sth::encode_frame(&data, &mut out).unwrap();
    out
}

/// Reads STH frames until the command letter `want` arrives; returns its exchange buffer.
/// `None` when the server closed the connection first (or did not answer within 5 s).
async fn next_command(s: &mut TcpStream, buf: &mut Vec<u8>, want: u8) -> Option<Vec<u8>> {
    next_of(s, buf, &[want]).await
}

/// [`next_command`] for any of the command letters in `wants`.
async fn next_of(s: &mut TcpStream, buf: &mut Vec<u8>, wants: &[u8]) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    for _ in 0..1000 {
        while let Ok(Some((range, used))) = sth::decode_frame(buf) {
            let payload = buf[range].to_vec();
            buf.drain(..used);
            if payload.first().is_some_and(|c| wants.contains(c)) {
                return Some(payload);
            }
        }
        let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            _ => return None,
        };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    None
}

fn esid_code(esid: &[u8]) -> u8 {
    std::str::from_utf8(&esid[1..3]).unwrap().parse().unwrap()
}

/// Connects, reads SSRM, sends our SSID and waits for the server's SSID.
async fn logged_on(addr: &str, buffer_size: u32) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    next_command(&mut s, &mut buf, b'I').await.expect("SSRM");
    s.write_all(&frame(&ssid(buffer_size, 999))).await.unwrap();
    next_command(&mut s, &mut buf, b'X')
        .await
        .expect("server SSID");
    (s, buf)
}

/// The server's inbox holds neither a file nor a temporary file.
fn inbox_is_empty(server: &TestServer) {
    assert!(visible_files(&server.inbox()).is_empty());
    assert!(partial_files(&server.inbox()).is_empty());
}

/// A good partner still gets its file through.
async fn still_serves(server: &TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("good.txt");
    std::fs::write(&f, b"still served").unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
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

#[tokio::test]
async fn a_second_sfid_while_a_file_is_open_ends_the_session_and_drops_the_part() {
    init_tracing();
    let (tx, mut gone) = mpsc::unbounded_channel();
    let server = start_server_with(Gone(tx), |_| {}).await;
    let (mut s, mut buf) = logged_on(&server.addr(), 4096).await;
    s.write_all(&frame(&sfid("FIRST"))).await.unwrap();
    next_command(&mut s, &mut buf, b'2').await.expect("SFPA");
    // Some data, so a temporary file exists.
    let mut data = vec![b'D', 0x3f];
    data.extend_from_slice(&[b'x'; 63]);
    let mut out = Vec::new();
    sth::encode_frame(&data, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
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
    let mut data = vec![b'D', 0x3f];
    data.extend_from_slice(&[b'h'; 63]);
    let mut out = Vec::new();
    sth::encode_frame(&data, &mut out).unwrap();
    for b in &out {
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

#[tokio::test]
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
    let mut cfg = client_config(dir.path(), limits);
    cfg.inactivity_timeout = Duration::from_secs(3600);
    let c = oftp::Client::new(
        cfg,
        oftp::journal::SqliteJournal::open_in_dir(dir.path()).unwrap(),
    )
    .unwrap();
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
/// server that accepts a file and then stops reading does not hold the client forever.
#[tokio::test]
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
    let mut cfg = client_config(dir.path(), limits);
    cfg.inactivity_timeout = Duration::from_millis(700);
    let c = oftp::Client::new(
        cfg,
        oftp::journal::SqliteJournal::open_in_dir(dir.path()).unwrap(),
    )
    .unwrap();
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

#[tokio::test]
async fn a_level_the_partner_may_not_use_gets_esid_10_over_plain_tcp() {
    init_tracing();
    let server = start_server_with((), |c| {
        let mut p = partner("client", CLIENT_SSID, CLIENT_PW);
        p.allowed_levels = vec![5];
        c.partners = PartnerTable::new([p]).unwrap();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let limits = SessionLimits {
        level: 4,
        ..SessionLimits::default()
    };
    let mut cfg = client_config(dir.path(), limits);
    cfg.inactivity_timeout = Duration::from_secs(5);
    let c = oftp::Client::new(cfg, oftp::journal::SqliteJournal::in_memory().unwrap()).unwrap();
    let err = c.run(&server.addr(), vec![]).await.unwrap_err();
    assert!(
        matches!(&err, oftp::ClientError::Rejected { reason, .. } if *reason == EsidReason::MODE_INCOMPATIBLE),
        "{err:?}"
    );
    server.running.shutdown().await;
}
