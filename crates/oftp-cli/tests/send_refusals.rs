//! A session the partner refuses before the first file (secure authentication failed, TLS
//! refused; a wrong password is in `cli.rs`) ends `oftp send` with exit code 1 and one line
//! that names the reason, against a real `oftp serve` on 127.0.0.1. Exit code 3 is for a
//! session that ran and left a file undelivered.

use std::path::Path;
use std::process::Output;

mod common;
use common::{call_args, free_port, oftp, self_signed, serve_config, texts};

/// Asserts exit code 1 and exactly one line on standard error, `error: ...` with all of
/// `expected`; nothing on standard output (no file line: no file got anywhere).
fn assert_refused(out: &Output, expected: &[&str]) {
    let (stdout, stderr) = texts(out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stdout, "", "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for e in expected {
        assert!(lines[0].contains(e), "{e:?} not in {stderr}");
    }
}

fn server_config(d: &Path, port: u16, tls_port: u16, partner_cert: &str) {
    common::write_server_config(
        d,
        port,
        &format!(
            r#"
[security.identity]
cert = "server.pem"
key = "server.key"

[tls]
enabled = true
listen = "127.0.0.1:{tls_port}"
client_auth = "required"
client_cas = ["client.pem"]

[[partners]]
name = "client"
ssid = "O0013CLIENT"
password = "CLIPW"

[partners.security]
certificate = "{partner_cert}"
secure_authentication = "required"
"#
        ),
    );
}

fn send(d: &Path, port: u16, extra: &[&str]) -> Output {
    let port = port.to_string();
    let mut args = call_args(&port, ("O0013CLIENT", "CLIPW"), ("O0013SERVER", "SRVPW"));
    args.extend_from_slice(&["--cert", "client.pem", "--key", "client.key"]);
    args.extend_from_slice(extra);
    args.push("f.edi");
    oftp(d, &args)
}

#[test]
fn failed_secure_authentication_is_a_refused_session_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in ["server", "client", "stranger"] {
        self_signed(d, name);
    }
    std::fs::write(d.join("f.edi"), b"x").unwrap();
    let (port, tls_port) = (free_port(), free_port());
    // The server envelopes its challenge to a certificate that is not ours.
    server_config(d, port, tls_port, "stranger.pem");
    let server = serve_config(d, "server.toml");
    let out = send(
        d,
        port,
        &["--partner-cert", "server.pem", "--secure-auth", "required"],
    );
    assert_refused(&out, &["ESID 1"]);
    drop(server);

    // The server holds our certificate, but we envelope our challenge to one it has no key
    // for: the server cannot open it, answers anyway (RFC 5024 9.8.2 row I), and we, the
    // challenger, end the session with ESID 11 (row K).
    server_config(d, port, tls_port, "client.pem");
    let _server = serve_config(d, "server.toml");
    let out = send(
        d,
        port,
        &[
            "--partner-cert",
            "server.pem",
            "--auth-cert",
            "stranger.pem",
        ],
    );
    assert_refused(
        &out,
        &[
            "session not started: secure authentication failed",
            "ESID 11",
        ],
    );
    // Both partners can authenticate: the file goes (exit 0), so the refusals above were
    // about authentication.
    let out = send(
        d,
        port,
        &["--partner-cert", "server.pem", "--auth-cert", "server.pem"],
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
}

#[test]
fn a_refused_tls_handshake_is_a_refused_session_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in ["server", "client", "stranger"] {
        self_signed(d, name);
    }
    std::fs::write(d.join("f.edi"), b"x").unwrap();
    let (port, tls_port) = (free_port(), free_port());
    server_config(d, port, tls_port, "client.pem");
    let _server = serve_config(d, "server.toml");
    let tls = [
        "--tls",
        "--partner-cert",
        "server.pem",
        "--secure-auth",
        "required",
    ];

    // The server requires a client certificate and we present none.
    let mut args = tls.to_vec();
    args.extend_from_slice(&["--tls-pin", "server.pem"]);
    let out = send(d, tls_port, &args);
    assert_refused(&out, &["TLS"]);

    // We do not trust the server's certificate.
    let mut args = tls.to_vec();
    args.extend_from_slice(&["--tls-pin", "stranger.pem", "--tls-client-cert"]);
    let out = send(d, tls_port, &args);
    assert_refused(&out, &["TLS", "certificate"]);

    // With both right, the file goes.
    let mut args = tls.to_vec();
    args.extend_from_slice(&["--tls-pin", "server.pem", "--tls-client-cert"]);
    let out = send(d, tls_port, &args);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
}
