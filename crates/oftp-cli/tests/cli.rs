//! The `oftp` command end to end: first-run configuration, a real send to a real server
//! process, and the message and exit code of a wrong password.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

mod common;
use common::{Server, free_port};

/// Starts `oftp serve` in `dir` and waits for its "listening on" line; returns it with the
/// lines printed before.
fn serve(dir: &Path, port: u16) -> (Server, Vec<String>) {
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
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("listening on");
        lines.push(line);
        if done {
            return (server, lines);
        }
    }
    panic!("server exited before listening: {lines:?}");
}

fn toml_of(path: &Path) -> toml::Table {
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

#[test]
fn first_run_creates_config_and_the_printed_send_command_works() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_server, lines) = serve(dir.path(), port);
    let text = lines.join("\n");
    assert!(dir.path().join("oftp-data/oftp.toml").is_file());
    assert!(dir.path().join("oftp-data/example-partner.toml").is_file());
    assert!(
        text.contains("oftp send --config oftp-data/example-partner.toml --partner server FILE"),
        "{text}"
    );
    assert!(
        text.contains(&format!("listening on 127.0.0.1:{port}")),
        "{text}"
    );
    // No password is printed.
    let server_cfg = toml_of(&dir.path().join("oftp-data/oftp.toml"));
    let pw = server_cfg["local"]["password"].as_str().unwrap();
    assert!(!text.contains(pw));

    std::fs::write(dir.path().join("hello.edi"), b"UNA:+.? 'UNB+UNOC:3'").unwrap();
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .args([
            "send",
            "--config",
            "oftp-data/example-partner.toml",
            "--partner",
            "server",
            "hello.edi",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("delivered"), "{stdout}");
    let stored = dir.path().join("oftp-data/inbox/example/HELLO.EDI");
    assert_eq!(std::fs::read(stored).unwrap(), b"UNA:+.? 'UNB+UNOC:3'");
}

#[test]
fn wrong_password_gives_an_actionable_message_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_server, _) = serve(dir.path(), port);
    let server_cfg = toml_of(&dir.path().join("oftp-data/oftp.toml"));
    let server_ssid = server_cfg["local"]["ssid"].as_str().unwrap().to_owned();
    let server_pw = server_cfg["local"]["password"].as_str().unwrap().to_owned();
    let partner_ssid = server_cfg["partners"][0]["ssid"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(dir.path().join("f.txt"), b"x").unwrap();
    let pwfile = dir.path().join("their-pw");
    std::fs::write(&pwfile, format!("{server_pw}\n")).unwrap();

    let out = Command::cargo_bin("oftp")
        .unwrap()
        .args([
            "send",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--ssid",
            &partner_ssid,
            "--partner-ssid",
            &server_ssid,
            "--partner-password-file",
            pwfile.to_str().unwrap(),
            "--data-dir",
            "client-data",
            "f.txt",
        ])
        .env("OFTP_PASSWORD", "WRONGPW")
        .env_remove("OFTP_PARTNER_PASSWORD")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: partner rejected session: invalid password (ESID 04)"
    );
    assert!(!stderr.contains("backtrace"));
}

#[test]
fn missing_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .args(["send", "--host", "127.0.0.1", "x"])
        .env_remove("OFTP_PASSWORD")
        .env_remove("OFTP_PARTNER_PASSWORD")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--ssid is needed without --config"),
        "{stderr}"
    );

    let out = Command::cargo_bin("oftp")
        .unwrap()
        .args(["send", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_full_server_tells_oftp_send_to_try_later() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // First run writes the configuration; then one connection is all the server takes.
    drop(serve(dir.path(), port));
    let cfg_path = dir.path().join("oftp-data/oftp.toml");
    let mut cfg = toml_of(&cfg_path);
    let server = cfg["server"].as_table_mut().unwrap();
    server.insert("max_connections".into(), 1.into());
    server.insert("login_timeout_secs".into(), 30.into());
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();
    let (_server, _) = serve(dir.path(), port);
    // A silent client holds the only slot (until its login timeout).
    let mut holder = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut ssrm = [0u8; 4];
    std::io::Read::read_exact(&mut holder, &mut ssrm).unwrap();

    std::fs::write(dir.path().join("hello.edi"), b"UNA").unwrap();
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .args([
            "send",
            "--config",
            "oftp-data/example-partner.toml",
            "--partner",
            "server",
            "hello.edi",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the partner's server is full, try later"),
        "{stderr}"
    );
}
