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

/// `oftp serve` with `args`, run in `dir`, its standard error discarded (until the caller
/// says otherwise).
pub(crate) fn oftp_serve(dir: &Path, args: &[&str]) -> Command {
    let mut serve = Command::cargo_bin("oftp").unwrap();
    serve
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null());
    serve
}

/// Spawns `serve` (an `oftp serve` command) and waits for its `listening on` line; returns
/// the server and the lines it printed up to and with that one.
pub(crate) fn spawn_listening(mut serve: Command) -> (Server, Vec<String>) {
    let mut child = serve.stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("listening on");
        lines.push(line);
        if done {
            return (server, lines);
        }
    }
    panic!("oftp serve exited before listening: {lines:?}");
}

/// Starts `oftp serve --listen 127.0.0.1:<port>` in `dir` (the first run writes the example
/// configuration in `oftp-data`) and waits until it listens; returns it with the lines it
/// printed.
pub(crate) fn serve_listen(dir: &Path, port: u16) -> (Server, Vec<String>) {
    spawn_listening(oftp_serve(dir, &["--listen", &format!("127.0.0.1:{port}")]))
}

/// Starts `oftp serve --config <config>` in `dir` and waits until it listens.
pub(crate) fn serve_config(dir: &Path, config: &str) -> Server {
    let (server, lines) = spawn_listening(oftp_serve(dir, &["--config", config]));
    assert_eq!(
        lines.len(),
        1,
        "oftp serve --config {config} did not start: {lines:?}"
    );
    server
}

/// Runs `oftp send --config oftp-data/example-partner.toml --partner server` with `extra` in
/// `dir`: the client side of the example configuration a first `oftp serve` writes.
pub(crate) fn send_example(dir: &Path, extra: &[&str]) -> Output {
    Command::cargo_bin("oftp")
        .unwrap()
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
        .args([
            "send",
            "--config",
            "oftp-data/example-partner.toml",
            "--partner",
            "server",
        ])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Runs `oftp send` in `dir` with flags only: to 127.0.0.1:`port` as `ssid` calling
/// `partner_ssid`, the passwords in `OFTP_PASSWORD` and `OFTP_PARTNER_PASSWORD`, the journal
/// in `client-data`, `--timeout` `timeout` seconds, then `files`.
pub(crate) fn flag_send(
    dir: &Path,
    port: u16,
    (ssid, password): (&str, &str),
    (partner_ssid, partner_password): (&str, &str),
    timeout: &str,
    files: &[&str],
) -> Output {
    Command::cargo_bin("oftp")
        .unwrap()
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
        .args([
            "send",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--ssid",
            ssid,
            "--partner-ssid",
            partner_ssid,
            "--data-dir",
            "client-data",
            "--timeout",
            timeout,
        ])
        .args(files)
        .env("OFTP_PASSWORD", password)
        .env("OFTP_PARTNER_PASSWORD", partner_password)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Runs `oftp` with `args` in `dir`, without the password variables of the environment.
pub(crate) fn oftp(dir: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("oftp")
        .unwrap()
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
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
