//! End to end: the session trail both sides record in their journals (issue #12): every
//! command as the PI trail reports it, DATA summed up per file instead of one line per buffer,
//! no password in any line, the received file linked to the session, and the partner counters.

mod common;

use std::time::{Duration, Instant};

use common::*;
use oftp::OutgoingFile;
use oftp::config::SessionLimits;
use oftp::journal::{Direction, HistoryEntry, HistoryQuery, Journal, SessionRole, SqliteJournal};

#[tokio::test]
async fn both_sides_record_the_session_trail_without_passwords_or_data_buffers() {
    init_tracing();
    let server = start_server().await;
    let cdir = tempfile::tempdir().unwrap();
    let path = cdir.path().join("trail.bin");
    let data = content(300_000, 7);
    std::fs::write(&path, &data).unwrap();
    let limits = SessionLimits {
        buffer_size: 4096,
        credit: 16,
        ..SessionLimits::default()
    };
    let report = client(cdir.path(), limits)
        .run(&server.addr(), vec![OutgoingFile::new(&path)])
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");

    // The server writes the end of its session once the connection is gone.
    let journal = SqliteJournal::open_in_dir(server.dir.path()).unwrap();
    let inbound = |j: &SqliteJournal| {
        j.transfer_page(&HistoryQuery {
            direction: Some(Direction::Received),
            ..HistoryQuery::default()
        })
        .unwrap()
        .entries
    };
    let file = match inbound(&journal).as_slice() {
        [HistoryEntry::In(f)] => f.clone(),
        other => panic!("one received file: {other:?}"),
    };
    assert_eq!(
        (file.partner.as_str(), file.partner_code.as_str()),
        ("client", CLIENT_SSID),
        "listed under the partner's configured name"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let session = loop {
        let trails = journal.sessions_of(Direction::Received, file.id).unwrap();
        if let [s] = trails.as_slice()
            && s.end.is_some()
        {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "the session's end: {trails:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(session.start.role, SessionRole::Responder);
    assert_eq!(session.start.partner, "client");
    assert_eq!(session.end.as_ref().unwrap().result, "OK");
    let lines: Vec<(Direction, &str)> = session
        .commands
        .iter()
        .map(|c| (c.direction, c.command.as_str()))
        .collect();
    for expected in [
        (Direction::Sent, "SSRM"),
        (Direction::Received, "SSID"),
        (Direction::Sent, "SSID"),
        (Direction::Received, "SFID"),
        (Direction::Sent, "SFPA"),
        (Direction::Received, "DATA"),
        (Direction::Received, "EFID"),
        (Direction::Sent, "EFPA"),
    ] {
        assert!(lines.contains(&expected), "{expected:?} in {lines:?}");
    }
    let data_lines: Vec<_> = session
        .commands
        .iter()
        .filter(|c| c.command == "DATA")
        .collect();
    assert_eq!(data_lines.len(), 1, "about 75 DATA buffers are one line");
    assert_eq!(data_lines[0].description, "DATA 300000 octets of file data");
    for c in &session.commands {
        for secret in [CLIENT_PW, SERVER_PW] {
            assert!(
                !c.description.contains(secret),
                "a password in the trail: {c:?}"
            );
        }
    }
    let counters = journal.partner_counters().unwrap();
    assert_eq!(counters.len(), 1, "{counters:?}");
    assert_eq!(
        (
            counters[0].partner.as_str(),
            counters[0].files_received,
            counters[0].octets_received
        ),
        ("client", 1, 300_000)
    );

    // The calling side records its session too (its file came from no queue: counted only).
    let cj = SqliteJournal::open_in_dir(cdir.path()).unwrap();
    let counters = cj.partner_counters().unwrap();
    assert_eq!(
        counters
            .iter()
            .map(|c| (c.partner.as_str(), c.files_sent, c.octets_sent))
            .collect::<Vec<_>>(),
        [("server", 1, 300_000)]
    );
    let roles: Vec<String> = rusqlite::Connection::open(cj.path())
        .unwrap()
        .prepare("SELECT role FROM sessions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(roles, ["initiator"]);
    server.running.shutdown().await;
}
