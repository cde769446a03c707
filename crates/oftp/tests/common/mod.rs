//! Shared set-up for the end-to-end tests: a real server and a real client over 127.0.0.1.
#![allow(dead_code, unreachable_pub)]

pub mod raw;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oftp::config::{LocalIdentity, Partner, PartnerTable, Password, ServerSettings, SessionLimits};
use oftp::handler::{
    Direction, EndResponse, EndResponseTiming, ErrorEvent, NegativeResponse, ReadyAction,
    SessionInfo, TransferInfo, TransferResult,
};
use oftp::journal::SqliteJournal;
use oftp::oftp_proto::codec::NerpReason;
use oftp::{
    Client, ClientConfig, Handler, OutgoingFile, RunningServer, Server, ServerConfig, SessionHandle,
};
use tokio::sync::mpsc;

pub const SERVER_SSID: &str = "O0013SERVER";
pub const SERVER_PW: &str = "SRVPW";
pub const CLIENT_SSID: &str = "O0013CLIENT";
pub const CLIENT_PW: &str = "CLIPW";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn server_identity() -> LocalIdentity {
    LocalIdentity {
        ssid: SERVER_SSID.into(),
        sfid: SERVER_SSID.into(),
        password: Password::new(SERVER_PW),
    }
}

pub fn client_identity() -> LocalIdentity {
    LocalIdentity {
        ssid: CLIENT_SSID.into(),
        sfid: CLIENT_SSID.into(),
        password: Password::new(CLIENT_PW),
    }
}

pub fn partner(name: &str, ssid: &str, pw: &str) -> Partner {
    Partner::new(name, ssid, Password::new(pw))
}

/// A server with the client as its only partner, on an ephemeral port.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub running: RunningServer,
}

impl TestServer {
    pub fn addr(&self) -> String {
        self.running.local_addr().expect("listening").to_string()
    }

    pub fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox").join("client")
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox").join("client")
    }
}

pub fn server_config(dir: &Path) -> ServerConfig {
    let partners = PartnerTable::new([partner("client", CLIENT_SSID, CLIENT_PW)]).unwrap();
    let mut cfg = ServerConfig::new(server_identity(), partners, dir.to_owned());
    cfg.settings = ServerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_secs(2),
        ..ServerSettings::default()
    };
    cfg.limits = SessionLimits {
        compression: true,
        buffer_size: 99_999,
        credit: 999,
        ..SessionLimits::default()
    };
    cfg
}

pub async fn start_server_with<H: Handler>(
    handler: H,
    tweak: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_config(dir.path());
    tweak(&mut cfg);
    let running = Server::new(cfg)
        .unwrap()
        .handler(handler)
        .start()
        .await
        .unwrap();
    TestServer { dir, running }
}

pub async fn start_server() -> TestServer {
    start_server_with((), |_| {}).await
}

/// A client talking to the test server; its journal and receive directory live in `dir`.
pub fn client_config(dir: &Path, limits: SessionLimits) -> ClientConfig {
    let mut cfg = ClientConfig::new(
        client_identity(),
        partner("server", SERVER_SSID, SERVER_PW),
        dir.join("received"),
    );
    cfg.limits = limits;
    cfg.inactivity_timeout = Duration::from_secs(10);
    cfg
}

pub fn client(dir: &Path, limits: SessionLimits) -> Client {
    let journal = SqliteJournal::open_in_dir(dir).unwrap();
    Client::new(client_config(dir, limits), journal).unwrap()
}

/// [`client`] whose inactivity timeout is `timeout`.
pub fn client_timing_out_after(dir: &Path, limits: SessionLimits, timeout: Duration) -> Client {
    let journal = SqliteJournal::open_in_dir(dir).unwrap();
    let mut cfg = client_config(dir, limits);
    cfg.inactivity_timeout = timeout;
    Client::new(cfg, journal).unwrap()
}

/// Deterministic pseudo-random content (xorshift), so failures are reproducible.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Files in `dir` whose names do not start with a dot.
pub fn visible_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Temporary (partial) files left in `dir`.
pub fn partial_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".oftp-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A transport that fails (or stalls) once `limit` bytes were written.
pub struct Cut<T> {
    pub inner: T,
    pub written: u64,
    pub limit: u64,
    pub stall: bool,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Cut<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Cut<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.written >= self.limit {
            if self.stall {
                // Never completes: the peer sees a partner that stopped talking.
                return std::task::Poll::Pending;
            }
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut by the test",
            )));
        }
        let room = (self.limit - self.written) as usize;
        let n = buf.len().min(room);
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..n]);
        if let std::task::Poll::Ready(Ok(k)) = &r {
            self.written += *k as u64;
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A server application that answers received files itself ([`EndResponseTiming::Later`]): it
/// hands each completed reception (session handle and transfer) to the test, waits with its turn
/// while `hold` is set, and keeps the errors the runtime reports.
pub struct LateAnswer {
    hold: Arc<AtomicBool>,
    received: mpsc::UnboundedSender<(SessionHandle, TransferInfo)>,
    errors: Arc<Mutex<Vec<String>>>,
}

/// The test's side of a [`LateAnswer`] application.
pub struct LateAnswerProbe {
    /// Set (the start value): the server keeps its turn; clear it to let the server send.
    pub hold: Arc<AtomicBool>,
    /// Completed receptions, in order.
    pub received: mpsc::UnboundedReceiver<(SessionHandle, TransferInfo)>,
    /// Descriptions of the runtime's error events.
    pub errors: Arc<Mutex<Vec<String>>>,
}

pub fn late_answer() -> (LateAnswer, LateAnswerProbe) {
    let hold = Arc::new(AtomicBool::new(true));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::unbounded_channel();
    let app = LateAnswer {
        hold: hold.clone(),
        received: tx,
        errors: errors.clone(),
    };
    let probe = LateAnswerProbe {
        hold,
        received: rx,
        errors,
    };
    (app, probe)
}

impl Handler for LateAnswer {
    async fn end_transfer(
        &self,
        s: &SessionInfo,
        t: &TransferInfo,
        r: &TransferResult,
    ) -> EndResponseTiming {
        if t.direction == Direction::Incoming && matches!(r, TransferResult::Completed { .. }) {
            let _ = self.received.send((s.handle.clone(), t.clone()));
            EndResponseTiming::Later
        } else {
            EndResponseTiming::Now
        }
    }

    async fn ready_to_send(&self, _s: &SessionInfo) -> ReadyAction {
        if self.hold.load(Ordering::SeqCst) {
            ReadyAction::Wait
        } else {
            ReadyAction::Proceed
        }
    }

    async fn error(&self, error: &ErrorEvent) {
        self.errors.lock().unwrap().push(error.description.clone());
    }
}

/// The end response for received file `t`: an EERP, or with `negative` a NERP 34 (processing
/// failed) "rejected by the application".
pub fn late_response(t: &TransferInfo, negative: bool) -> EndResponse {
    EndResponse {
        virtual_file_name: t.virtual_file_name.clone(),
        stamp: t.stamp,
        destination: t.originator.clone(),
        originator: t.destination.clone(),
        user_data: String::new(),
        negative: negative.then(|| NegativeResponse {
            reason: NerpReason::PROCESSING_FAILED,
            creator: t.destination.to_string(),
            text: "rejected by the application".into(),
        }),
        file_hash: Vec::new(),
        signature: Vec::new(),
        signature_verified: false,
    }
}

/// A good partner still gets its file through.
pub async fn still_serves(server: &TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("good.txt");
    std::fs::write(&f, b"still served").unwrap();
    let report = client(dir.path(), SessionLimits::default())
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
}
