//! End to end at OFTP 1.4 (level 4) and below: the extended date and time stamp travels with
//! its counter, NERP exists from level 4 on, and below it the runtime sends nothing and tells
//! the operator; the server's SSID checks (release level, the levels a partner may use,
//! send/receive mode) as a partner sees them on the wire. Real server and client over
//! 127.0.0.1.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::raw::read_until;
use common::*;
use oftp::config::{PartnerTable, SessionLimits};
use oftp::oftp_proto::codec::{EsidReason, NerpReason};
use oftp::stamp::{FileStamp, FileStampExt};
use oftp::{FileOutcome, OutgoingFile};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn limits(level: u8) -> SessionLimits {
    SessionLimits {
        level,
        ..SessionLimits::default()
    }
}

/// RFC 5024 1.2: OFTP 1.4 added the extended date and time stamp. The stamp the client chose,
/// counter included, is the one the server receives and the one its EERP names, so the client
/// sees the file delivered.
#[tokio::test]
async fn level_4_keeps_the_stamp_counter_from_sfid_to_eerp() {
    init_tracing();
    let (app, mut probe) = late_answer();
    let server = start_server_with(app, |_| {}).await;
    probe.hold.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("stamped.edi");
    std::fs::write(&f, b"UNA:+.? 'UNB+UNOC:3'").unwrap();
    let stamp = FileStamp::parse("203112312359584321").unwrap();
    let c = client(dir.path(), limits(4));
    let addr = server.addr();
    let run =
        tokio::spawn(async move { c.run(&addr, vec![OutgoingFile::new(&f).stamp(stamp)]).await });
    let (handle, t) = probe.received.recv().await.expect("file received");
    assert_eq!(t.stamp, stamp, "the server sees the client's stamp");
    handle.send_end_response(late_response(&t, false)).unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.negotiated.level.0, 4);
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert!(
        probe.errors.lock().unwrap().is_empty(),
        "{:?}",
        probe.errors
    );
    server.running.shutdown().await;
}

/// NERP exists from level 4 on: it reaches the originator (without its reason text, which
/// only 2.0 carries).
#[tokio::test]
async fn nerp_at_level_4_reaches_the_originator() {
    init_tracing();
    let (app, mut probe) = late_answer();
    let server = start_server_with(app, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.edi");
    std::fs::write(&f, b"not EDIFACT").unwrap();
    let c = client(dir.path(), limits(4));
    let addr = server.addr();
    let run = tokio::spawn(async move { c.run(&addr, vec![OutgoingFile::new(&f)]).await });
    let (handle, t) = probe.received.recv().await.expect("file received");
    assert_ne!(t.stamp.counter, 0, "level 4 carries the counter");
    probe.hold.store(false, Ordering::SeqCst);
    handle.send_end_response(late_response(&t, true)).unwrap();
    let report = run.await.unwrap().unwrap();
    assert!(
        matches!(
            &report.files[0].1,
            FileOutcome::NotDelivered { reason, text }
                if *reason == NerpReason::PROCESSING_FAILED && text.is_empty()
        ),
        "{report:?}"
    );
    server.running.shutdown().await;
}

/// Below level 4 there is no NERP: the runtime sends nothing (no NERP the partner could not
/// read, no EERP that would claim a delivery), the session ends normally, the sender keeps
/// waiting for an end response, and the operator gets an error that says what to do.
#[tokio::test]
async fn nerp_below_level_4_is_not_sent_and_the_operator_is_told() {
    init_tracing();
    for level in [2u8, 1] {
        let (app, mut probe) = late_answer();
        let server = start_server_with(app, |_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.edi");
        std::fs::write(&f, b"not EDIFACT").unwrap();
        let c = client(dir.path(), limits(level));
        let addr = server.addr();
        let run = tokio::spawn(async move { c.run(&addr, vec![OutgoingFile::new(&f)]).await });
        let (handle, t) = probe.received.recv().await.expect("file received");
        probe.hold.store(false, Ordering::SeqCst);
        handle.send_end_response(late_response(&t, true)).unwrap();
        let report = run.await.unwrap().unwrap();
        assert_eq!(report.negotiated.level.0, level);
        assert_eq!(
            report.files[0].1,
            FileOutcome::AwaitingEndResponse,
            "{report:?}"
        );
        let errors = probe.errors.lock().unwrap().clone();
        let told = errors
            .iter()
            .find(|e| e.contains("not sending NERP 34 for BAD.EDI"))
            .unwrap_or_else(|| panic!("no error about the NERP: {errors:?}"));
        assert!(
            told.contains(&format!("OFTP level {level}")) && told.contains("tell the originator"),
            "{told}"
        );
        server.running.shutdown().await;
    }
}

/// The client's SSID with SSIDLEV `level` and SSIDSR `mode` (RFC 2204 layout: no SSIDAUTH).
fn raw_ssid(level: u8, mode: u8) -> Vec<u8> {
    let mut ssid = format!(
        "X{}{:<25}{:<8}04096{}NYN064     {:<8}\r",
        level as char, CLIENT_SSID, CLIENT_PW, mode as char, ""
    )
    .into_bytes();
    assert_eq!(ssid.len(), 61);
    let mut frame = Vec::new();
    oftp::oftp_proto::sth::encode_frame(&ssid, &mut frame).unwrap();
    std::mem::swap(&mut ssid, &mut frame);
    ssid
}

/// RFC 5024 5.3.2 and 9.8.2 G: an SSIDLEV that is no release level (0, 3, a letter) fails the
/// SSID negotiation with ESID 10; it used to get ESID 08 ("resources not available", which
/// tells the partner to call again later) or 06.
#[tokio::test]
async fn ssid_level_that_is_no_release_level_gets_esid_10() {
    init_tracing();
    let server = start_server().await;
    for level in [b'3', b'0', b'X'] {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        read_until(&mut s, b'I').await;
        s.write_all(&raw_ssid(level, b'B')).await.unwrap();
        let esid = read_until(&mut s, b'F').await;
        assert_eq!(
            &esid[1..3],
            b"10",
            "SSIDLEV {}: {:?}",
            level as char,
            String::from_utf8_lossy(&esid)
        );
    }
    server.running.shutdown().await;
}

/// RFC 5024 3.2.1 (Mode): the server can send and receive; to a Sender-only caller it answers
/// SSIDSR 'R', to a Receiver-only caller 'S'.
#[tokio::test]
async fn server_answers_a_one_way_caller_with_the_opposite_mode() {
    init_tracing();
    let server = start_server().await;
    for (level, ours, answer) in [
        (b'4', b'S', b'R'),
        (b'4', b'R', b'S'),
        (b'1', b'S', b'R'),
        (b'4', b'B', b'B'),
    ] {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        read_until(&mut s, b'I').await;
        s.write_all(&raw_ssid(level, ours)).await.unwrap();
        let ssid = read_until(&mut s, b'X').await;
        assert_eq!(
            ssid[40] as char,
            answer as char,
            "caller {}: {:?}",
            ours as char,
            String::from_utf8_lossy(&ssid)
        );
    }
    server.running.shutdown().await;
}

/// A send broken off at level 2 (stamp without counter, recorded for a restart) and tried again
/// when the partner speaks level 4: the counter-less identity cannot be offered at 4 (RFC 5024
/// 5.3.3 counter 0001-9999), so the file goes again under a new one instead of never.
#[tokio::test]
async fn a_send_broken_at_level_2_is_sent_again_at_level_4() {
    init_tracing();
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.bin");
    let data = content(1_000_000, 12);
    std::fs::write(&f, &data).unwrap();
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let cut = Cut {
        inner: tcp,
        written: 0,
        limit: 300_000,
        stall: false,
    };
    let report = client(dir.path(), limits(2))
        .run_over(
            cut,
            "127.0.0.1:0".parse().unwrap(),
            vec![OutgoingFile::new(&f)],
        )
        .await
        .unwrap();
    assert!(!report.all_delivered());
    let report = client(dir.path(), limits(4))
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert_eq!(report.negotiated.level.0, 4);
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert_ne!(report.files[0].0.stamp.unwrap().counter, 0);
    assert_eq!(std::fs::read(server.inbox().join("BIG.BIN")).unwrap(), data);
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
