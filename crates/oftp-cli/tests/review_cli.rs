//! Review tests of the `oftp` command: actionable errors without backtraces for an unreachable
//! partner and a missing file, no password in the logs even at trace level, exit code 3 when a
//! file is refused, and files for us stored in `--receive-dir`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

mod common;
use common::{Server, free_port};

/// Every string value of a key named `password` (at any depth).
fn passwords(v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                match v {
                    toml::Value::String(s) if k.contains("password") => out.push(s.clone()),
                    other => passwords(other, out),
                }
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| passwords(v, out)),
        _ => {}
    }
}

fn flag_send(dir: &Path, port: u16, file: &str) -> std::process::Output {
    Command::cargo_bin("oftp")
        .unwrap()
        .args([
            "send",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--ssid",
            "O0013ME",
            "--partner-ssid",
            "O0013YOU",
            "--data-dir",
            "client-data",
            "--timeout",
            "5",
            file,
        ])
        .env("OFTP_PASSWORD", "MYPW")
        .env("OFTP_PARTNER_PASSWORD", "YOURPW")
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn an_unreachable_partner_is_named_with_exit_1_and_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), b"x").unwrap();
    // A port nobody listens on: bound, then released.
    let port = free_port();
    let out = flag_send(dir.path(), port, "f.txt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(&port.to_string()), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn a_missing_file_is_named_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = flag_send(dir.path(), port, "no-such-file.edi");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-file.edi"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn no_password_appears_in_trace_logs_of_either_side() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server_log = dir.path().join("server.log");
    let mut child = Command::cargo_bin("oftp")
        .unwrap()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OFTP_LOG", "trace")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&server_log).unwrap()))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut printed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("listening on");
        printed.push(line);
        if done {
            break;
        }
    }
    assert!(
        printed.iter().any(|l| l.starts_with("listening on")),
        "{printed:?}"
    );

    std::fs::write(dir.path().join("order.edi"), b"UNB+UNOC:3").unwrap();
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .args([
            "-vv",
            "send",
            "--config",
            "oftp-data/example-partner.toml",
            "--partner",
            "server",
            "order.edi",
        ])
        .env("OFTP_LOG", "trace")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let client_log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{client_log}");
    drop(server);

    let mut secrets = Vec::new();
    for f in ["oftp-data/oftp.toml", "oftp-data/example-partner.toml"] {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
        passwords(&toml::Value::Table(text.parse().unwrap()), &mut secrets);
    }
    assert!(secrets.len() >= 2, "{secrets:?}");
    let server_log = std::fs::read_to_string(&server_log).unwrap();
    assert!(!server_log.is_empty());
    for s in &secrets {
        assert!(
            !server_log.contains(s.as_str()),
            "server log shows a password"
        );
        assert!(
            !client_log.contains(s.as_str()),
            "client log shows a password"
        );
        assert!(!printed.join("\n").contains(s.as_str()));
    }
}

/// Starts `oftp serve` (first run) in `dir`; returns once it listens.
fn serve(dir: &Path, port: u16) -> Server {
    let mut child = Command::cargo_bin("oftp")
        .unwrap()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().starts_with("listening on") {
            return server;
        }
    }
    panic!("server exited before listening");
}

#[test]
fn a_refused_file_gives_exit_3_and_files_for_us_land_in_the_receive_dir() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(dir.path(), port);
    // A file of that name is already in the inbox and overwrite is off: SFNA.
    let inbox = dir.path().join("oftp-data/inbox/example");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("TAKEN.EDI"), b"first").unwrap();
    // Something for the client in its outbox on the server.
    let outbox = dir.path().join("oftp-data/outbox/example");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join("reply.edi"), b"UNB+reply").unwrap();

    std::fs::write(dir.path().join("taken.edi"), b"second").unwrap();
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .args([
            "send",
            "--config",
            "oftp-data/example-partner.toml",
            "--partner",
            "server",
            "--receive-dir",
            "got",
            "taken.edi",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("rejected"), "{stdout}");
    assert_eq!(std::fs::read(inbox.join("TAKEN.EDI")).unwrap(), b"first");
    let got = dir.path().join("got/REPLY.EDI");
    assert_eq!(std::fs::read(&got).unwrap(), b"UNB+reply", "{stdout}");
}
