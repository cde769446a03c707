//! Shared set-up for the end-to-end tests: a real server and a real client over 127.0.0.1.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use oftp::config::{LocalIdentity, Partner, PartnerTable, Password, ServerSettings, SessionLimits};
use oftp::journal::Journal;
use oftp::{Client, ClientConfig, Handler, RunningServer, Server, ServerConfig};

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
    Partner {
        name: name.into(),
        ssid: ssid.into(),
        password: Password::new(pw),
        sfid: String::new(),
        our_password: None,
        inbox: None,
        outbox: None,
        allowed_levels: vec![],
        address: None,
        security: Default::default(),
        tls: Default::default(),
    }
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
    let journal = Journal::open_in_dir(dir).unwrap();
    Client::new(client_config(dir, limits), journal).unwrap()
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

/// Reads STH frames from a raw socket until `want` command letter arrives; returns its payload.
pub async fn read_until(s: &mut tokio::net::TcpStream, want: u8) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..100 {
        while let Ok(Some((range, used))) = oftp::oftp_proto::sth::decode_frame(&buf) {
            let payload = buf[range].to_vec();
            buf.drain(..used);
            if payload.first() == Some(&want) {
                return payload;
            }
        }
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(s, &mut chunk),
        )
        .await
        .expect("server answered")
        .unwrap();
        assert!(n > 0, "connection closed before the expected command");
        buf.extend_from_slice(&chunk[..n]);
    }
    panic!("command {} not received", want as char)
}
