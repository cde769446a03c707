//! Helpers shared by the `oftp` command's end-to-end tests.
#![allow(dead_code)]

pub(crate) mod scripted;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;

/// A child process (an `oftp serve`) killed when the test ends, whatever happens.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago (for a server started as a separate process).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `openssl` with `args` in `dir`; its standard output.
pub(crate) fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed RSA certificate `<name>.pem` with key `<name>.key`.
pub(crate) fn self_signed(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "30",
            "-subj",
            &format!("/CN={name}/O=OFTP Test"),
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
    );
}

/// Starts `oftp serve --config <config>` in `dir` and waits until it listens.
pub(crate) fn serve_config(dir: &Path, config: &str) -> Server {
    let mut child = Command::cargo_bin("oftp")
        .unwrap()
        .args(["serve", "--config", config])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let first = BufReader::new(stdout).lines().next();
    match first {
        Some(Ok(line)) if line.starts_with("listening on") => server,
        other => panic!("oftp serve --config {config} did not start: {other:?}"),
    }
}

/// Runs `oftp` with `args` in `dir`, without the password variables of the environment.
pub(crate) fn oftp(dir: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("oftp")
        .unwrap()
        .args(args)
        .env_remove("OFTP_PASSWORD")
        .env_remove("OFTP_PARTNER_PASSWORD")
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Standard output and standard error of `out`, for assertions and their messages.
pub(crate) fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `server.toml` in `dir` for an `oftp serve` as O0013SERVER (password SRVPW) listening
/// on 127.0.0.1:`port` with its data in `sdata`, followed by `rest` (security, TLS, partners).
pub(crate) fn write_server_config(dir: &Path, port: u16, rest: &str) {
    let head = format!(
        "[local]\nssid = \"O0013SERVER\"\npassword = \"SRVPW\"\n\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"sdata\"\n"
    );
    std::fs::write(dir.join("server.toml"), head + rest).unwrap();
}

/// `oftp send` arguments to call 127.0.0.1:`port` without a configuration: our code and
/// password, the partner's, and `cdata` for our journal.
pub(crate) fn call_args<'a>(
    port: &'a str,
    (ssid, password): (&'a str, &'a str),
    (partner_ssid, partner_password): (&'a str, &'a str),
) -> Vec<&'a str> {
    vec![
        "send",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--ssid",
        ssid,
        "--password",
        password,
        "--partner-ssid",
        partner_ssid,
        "--partner-password",
        partner_password,
        "--data-dir",
        "cdata",
    ]
}
