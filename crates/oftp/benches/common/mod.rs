//! Shared by the benchmarks: a separate `oftp serve` process, a client of it, /proc figures.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use oftp::config::{LocalIdentity, Partner, Password, SessionLimits};
use oftp::journal::SqliteJournal;
use oftp::{Client, ClientConfig};

/// An `oftp serve` process, killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin serve` in `dir` on a free loopback port with `[server]` lines `server` and
/// `[session]` lines `session` added to the benchmark identity and partner; returns it with its
/// address once it listens.
pub fn start_server(bin: &Path, dir: &Path, server: &str, session: &str) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        r#"
[local]
ssid = "O0013BENCHSRV"
password = "SRV"

[server]
listen = "127.0.0.1:{port}"
data_dir = "data"
{server}

[session]
{session}

[[partners]]
name = "bench"
ssid = "O0013BENCHCLI"
password = "CLI"
"#
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("oftp.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&path)
        .env("OFTP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("OFTP_BIN runs");
    let out = child.stdout.take().unwrap();
    let server = Server(child);
    for line in BufReader::new(out).lines() {
        if line.unwrap().starts_with("listening on") {
            return (server, format!("127.0.0.1:{port}"));
        }
    }
    panic!("oftp serve did not start");
}

/// A client of the benchmark server with its journal in `dir`.
pub fn client(dir: &Path, limits: SessionLimits) -> Client {
    let local = LocalIdentity {
        ssid: "O0013BENCHCLI".into(),
        sfid: String::new(),
        password: Password::new("CLI"),
    };
    let partner = Partner::new("server", "O0013BENCHSRV", Password::new("SRV"));
    let mut cfg = ClientConfig::new(local, partner, dir.join("received"));
    cfg.limits = limits;
    Client::new(cfg, SqliteJournal::open_in_dir(dir).unwrap()).unwrap()
}

/// A number field of `/proc/<pid>/status` (`VmHWM:` in KiB, `Threads:`).
pub fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
