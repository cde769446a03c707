//! End to end: records of F and V files in local files (the partner's `record_mapping`): binary
//! records survive octet for octet, bad local files are refused before they are offered, the
//! line mapping refuses what it cannot hold (restart of raw records: `e2e_sessions`). Real
//! server and client on 127.0.0.1.

mod common;

use common::*;
use oftp::config::{RecordMapping, SessionLimits};
use oftp::oftp_proto::codec::{EfnaReason, FileFormat};
use oftp::{Client, FileOutcome, OutgoingFile};

fn limits() -> SessionLimits {
    SessionLimits {
        buffer_size: 512,
        ..SessionLimits::default()
    }
}

/// Records whose octets include everything a line mapping or a C string trips over.
fn binary_records(n: usize, width: impl Fn(usize) -> usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            (0..width(i))
                .map(|j| [b'\r', b'\n', 0, 0xFF, b'Z', 0x0D, 0x25][(i * 3 + j) % 7])
                .collect()
        })
        .collect()
}

/// Raw V: each record after its 2-octet big-endian length.
fn prefixed(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len() as u16).to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

fn client_with(dir: &std::path::Path, mapping: RecordMapping) -> Client {
    let mut cfg = client_config(dir, limits());
    cfg.partner.record_mapping = mapping;
    Client::new(cfg, oftp::journal::SqliteJournal::open_in_dir(dir).unwrap()).unwrap()
}

async fn server_with(mapping: RecordMapping) -> TestServer {
    start_server_with((), |c| {
        let mut p = partner("client", CLIENT_SSID, CLIENT_PW);
        p.record_mapping = mapping;
        c.partners = oftp::config::PartnerTable::new([p]).unwrap();
    })
    .await
}

#[tokio::test]
async fn binary_records_are_sent_received_and_sent_again_octet_for_octet() {
    init_tracing();
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let fixed = binary_records(300, |_| 80).concat();
    let variable = prefixed(&binary_records(300, |i| (i * 37) % 700));
    let (f, v, u) = (
        dir.path().join("fixed.dat"),
        dir.path().join("variable.dat"),
        dir.path().join("after.bin"),
    );
    std::fs::write(&f, &fixed).unwrap();
    std::fs::write(&v, &variable).unwrap();
    std::fs::write(&u, content(5000, 3)).unwrap();
    let c = client(dir.path(), limits());
    // A fixed record holding LF used to split the record and end the session (ESID 99): the
    // file after it lost its EERP.
    let report = c
        .run(
            &server.addr(),
            vec![
                OutgoingFile::new(&f).format(FileFormat::Fixed, 80),
                OutgoingFile::new(&v).format(FileFormat::Variable, 700),
                OutgoingFile::new(&u),
            ],
        )
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    let inbox = server.inbox();
    assert_eq!(std::fs::read(inbox.join("FIXED.DAT")).unwrap(), fixed);
    assert_eq!(std::fs::read(inbox.join("VARIABLE.DAT")).unwrap(), variable);

    // What was stored goes out again as the same records.
    let report = c
        .run(
            &server.addr(),
            vec![
                OutgoingFile::new(inbox.join("FIXED.DAT"))
                    .virtual_name("FIXED2")
                    .format(FileFormat::Fixed, 80),
                OutgoingFile::new(inbox.join("VARIABLE.DAT"))
                    .virtual_name("VARIABLE2")
                    .format(FileFormat::Variable, 700),
            ],
        )
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(std::fs::read(inbox.join("FIXED2")).unwrap(), fixed);
    assert_eq!(std::fs::read(inbox.join("VARIABLE2")).unwrap(), variable);
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_bad_local_record_file_is_refused_before_the_offer_and_the_session_goes_on() {
    init_tracing();
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.dat");
    std::fs::write(&short, [7u8; 250]).unwrap();
    let mut long = prefixed(&binary_records(4, |_| 10));
    long.extend_from_slice(&500u16.to_be_bytes());
    long.extend_from_slice(&[1u8; 500]);
    let long_path = dir.path().join("long.dat");
    std::fs::write(&long_path, &long).unwrap();
    let good = dir.path().join("good.dat");
    let good_data = binary_records(10, |_| 80).concat();
    std::fs::write(&good, &good_data).unwrap();
    let report = client(dir.path(), limits())
        .run(
            &server.addr(),
            vec![
                OutgoingFile::new(&short).format(FileFormat::Fixed, 80),
                OutgoingFile::new(&long_path).format(FileFormat::Variable, 300),
                OutgoingFile::new(&good).format(FileFormat::Fixed, 80),
            ],
        )
        .await
        .unwrap();
    let reason = |i: usize| match &report.files[i].1 {
        FileOutcome::NotSent { reason } => reason.clone(),
        other => panic!("file {i}: {other:?}"),
    };
    let r = reason(0);
    assert!(
        r.contains(&short.display().to_string()) && r.contains("record 4:"),
        "{r}"
    );
    assert!(r.contains("not a multiple of the record length"), "{r}");
    let r = reason(1);
    assert!(
        r.contains(&long_path.display().to_string()) && r.contains("record 5:"),
        "{r}"
    );
    assert!(r.contains("more than the maximum record length 300"), "{r}");
    for i in 0..2 {
        assert!(
            !reason(i).contains("again"),
            "no restart advice: {}",
            reason(i)
        );
    }
    assert_eq!(report.files[2].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(
        report.ended.reason.map(|r| r.0),
        Some(0),
        "{:?}",
        report.ended
    );
    assert_eq!(visible_files(&server.inbox()), ["GOOD.DAT"]);
    assert_eq!(
        std::fs::read(server.inbox().join("GOOD.DAT")).unwrap(),
        good_data
    );
    server.running.shutdown().await;
}

/// Collects the descriptions of the error events the client's handler is given.
#[derive(Clone, Default)]
struct ErrorEvents(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl oftp::Handler for ErrorEvents {
    async fn error(&self, error: &oftp::handler::ErrorEvent) {
        self.0.lock().unwrap().push(error.description.clone());
    }
}

#[tokio::test]
async fn a_file_that_is_not_sent_is_also_an_error_event_with_the_same_reason() {
    init_tracing();
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let not_a_file = dir.path().join("a-directory");
    std::fs::create_dir(&not_a_file).unwrap();
    let short = dir.path().join("short.dat");
    std::fs::write(&short, [7u8; 250]).unwrap();
    let errors = ErrorEvents::default();
    let report = client(dir.path(), limits())
        .handler(errors.clone())
        .run(
            &server.addr(),
            vec![
                OutgoingFile::new(&not_a_file),
                OutgoingFile::new(&short).format(FileFormat::Fixed, 80),
            ],
        )
        .await
        .unwrap();
    let reasons: Vec<String> = report
        .files
        .iter()
        .map(|(_, outcome)| match outcome {
            FileOutcome::NotSent { reason } => reason.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(reasons[0].contains("is not a regular file"), "{reasons:?}");
    assert!(reasons[1].contains("record 4:"), "{reasons:?}");
    assert_eq!(*errors.0.lock().unwrap(), reasons);
    server.running.shutdown().await;
}

#[tokio::test]
async fn lines_mapping_round_trips_records_as_lines_and_refuses_a_short_line() {
    init_tracing();
    let server = server_with(RecordMapping::Lines).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client_with(dir.path(), RecordMapping::Lines);
    // CR inside and at the end of a record survives: only CR LF ends a line.
    let text = b"ABCD\r\nA\rCD\r\nABC\r\r\n";
    let f = dir.path().join("lines.txt");
    std::fs::write(&f, text).unwrap();
    let v = dir.path().join("lines-v.txt");
    std::fs::write(&v, b"one\r\n\r\nthree\r\n").unwrap();
    // A fixed record that held a line feed is two short lines: refused before the offer.
    let broken = dir.path().join("broken.txt");
    std::fs::write(&broken, b"ABCD\r\nA\nCD\r\n").unwrap();
    let report = c
        .run(
            &server.addr(),
            vec![
                OutgoingFile::new(&f).format(FileFormat::Fixed, 4),
                OutgoingFile::new(&broken).format(FileFormat::Fixed, 4),
                OutgoingFile::new(&v).format(FileFormat::Variable, 10),
            ],
        )
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(report.files[2].1, FileOutcome::Delivered, "{report:?}");
    match &report.files[1].1 {
        FileOutcome::NotSent { reason } => {
            assert!(
                reason.contains("record 2:") && reason.contains("line break"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read(server.inbox().join("LINES.TXT")).unwrap(),
        text
    );
    assert_eq!(
        std::fs::read(server.inbox().join("LINES-V.TXT")).unwrap(),
        b"one\r\n\r\nthree\r\n"
    );
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_record_holding_a_line_feed_is_refused_by_a_lines_receiver_and_the_next_file_goes() {
    init_tracing();
    let server = server_with(RecordMapping::LinesLf).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client_with(dir.path(), RecordMapping::Raw);
    let bad = dir.path().join("bad.dat");
    std::fs::write(&bad, prefixed(&[b"fine".to_vec(), b"has\nLF".to_vec()])).unwrap();
    let good = dir.path().join("good.dat");
    std::fs::write(&good, prefixed(&[b"ok\r".to_vec(), b"".to_vec()])).unwrap();
    let report = c
        .run(
            &server.addr(),
            vec![
                OutgoingFile::new(&bad).format(FileFormat::Variable, 100),
                OutgoingFile::new(&good).format(FileFormat::Variable, 100),
            ],
        )
        .await
        .unwrap();
    match &report.files[0].1 {
        FileOutcome::Refused { reason, text } => {
            assert_eq!(*reason, EfnaReason::RECORD_FORMAT_NOT_SUPPORTED);
            assert!(text.contains("record 2 contains a line feed"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(report.files[1].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(visible_files(&server.inbox()), ["GOOD.DAT"]);
    // LF only: the CR stays in the record.
    assert_eq!(
        std::fs::read(server.inbox().join("GOOD.DAT")).unwrap(),
        b"ok\r\n\n"
    );
    assert!(partial_files(&server.inbox()).is_empty());
    server.running.shutdown().await;
}
