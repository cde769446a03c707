//! Tests of the review fixes that need no raw protocol peer: crash recovery after the hard
//! link into place, the client's connect time limit, and the session handle's
//! `change_direction` and `disconnect` end to end. Real sockets on 127.0.0.1, real files in
//! temporary directories.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use oftp::config::SessionLimits;
use oftp::handler::{Disconnected, ReadyAction, SessionInfo};
use oftp::journal::{FileKey, Journal as _};
use oftp::oftp_proto::codec::EsidReason;
use oftp::transport::Connector;
use oftp::{ClientError, ConnectionInfo, FileOutcome, Handler, OutgoingFile, SessionHandle};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[cfg(unix)]
#[tokio::test]
async fn a_crash_between_hard_link_and_unlink_is_recovered_as_delivered() {
    init_tracing();
    let sdir = tempfile::tempdir().unwrap();
    let inbox = sdir.path().join("inbox").join("client");
    std::fs::create_dir_all(&inbox).unwrap();
    let stamp = oftp::stamp::FileStamp::parse("202605060708090002").unwrap();
    let key = FileKey::new(CLIENT_SSID, "LINKED.TXT", stamp);
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
    let running = oftp::Server::new(server_config(sdir.path()))
        .unwrap()
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("linked.txt");
    std::fs::write(&f, b"complete").unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .run(
            &running.local_addr().unwrap().to_string(),
            vec![OutgoingFile::new(&f).stamp(stamp)],
        )
        .await
        .unwrap();
    // The resend hears "duplicate" and gets the EERP it missed: delivered, not EFNA 12.
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(
        running
            .journal()
            .received(CLIENT_SSID, &key)
            .unwrap()
            .unwrap()
            .state,
        oftp::journal::ReceiveState::Complete
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"complete");
    assert!(!partial.exists(), "the temporary name is cleaned up");
    running.shutdown().await;
}

/// A connector whose connection never completes, like SYNs to an address that drops them.
struct BlackHole;

impl Connector for BlackHole {
    type Stream = TcpStream;
    async fn connect(&self, _addr: &str) -> std::io::Result<TcpStream> {
        std::future::pending().await
    }
}

#[tokio::test]
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
    let started = Instant::now();
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
    let mut cfg = client_config(dir.path(), SessionLimits::default());
    cfg.inactivity_timeout = Duration::from_secs(60);
    let c = oftp::Client::new(
        cfg,
        oftp::journal::SqliteJournal::open_in_dir(dir.path()).unwrap(),
    )
    .unwrap();
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
    let mut cfg = client_config(dir.path(), SessionLimits::default());
    cfg.inactivity_timeout = Duration::from_secs(60);
    let c = oftp::Client::new(
        cfg,
        oftp::journal::SqliteJournal::open_in_dir(dir.path()).unwrap(),
    )
    .unwrap();
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
