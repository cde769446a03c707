//! The `oftp` command end to end: first-run configuration, a real send to a real server
//! process, actionable errors without backtraces (a wrong password, missing flags, an
//! unreachable partner, a missing file, a full server), no password in the logs even at trace
//! level, exit code 3 when a file is refused, and files for us stored in `--receive-dir`.

use std::path::Path;
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

mod common;
use common::{flag_send, free_port, oftp_serve, send_example, serve_listen, spawn_listening};

fn toml_of(path: &Path) -> toml::Table {
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

#[test]
fn first_run_creates_config_and_the_printed_send_command_works() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_server, lines) = serve_listen(dir.path(), port);
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
    let out = send_example(dir.path(), &["hello.edi"]);
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
    let (_server, _) = serve_listen(dir.path(), port);
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
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
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
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
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
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
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
    drop(serve_listen(dir.path(), port));
    let cfg_path = dir.path().join("oftp-data/oftp.toml");
    let mut cfg = toml_of(&cfg_path);
    let server = cfg["server"].as_table_mut().unwrap();
    server.insert("max_connections".into(), 1.into());
    server.insert("login_timeout_secs".into(), 30.into());
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();
    let (_server, _) = serve_listen(dir.path(), port);
    // A silent client holds the only slot (until its login timeout).
    let mut holder = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut ssrm = [0u8; 4];
    std::io::Read::read_exact(&mut holder, &mut ssrm).unwrap();

    std::fs::write(dir.path().join("hello.edi"), b"UNA").unwrap();
    let out = send_example(dir.path(), &["hello.edi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the partner's server is full, try later"),
        "{stderr}"
    );
}

/// `oftp send` by flags as O0013ME to O0013YOU on 127.0.0.1:`port`, giving up after 5 s.
fn send_by_flags(dir: &Path, port: u16, file: &str) -> std::process::Output {
    flag_send(
        dir,
        port,
        ("O0013ME", "MYPW"),
        ("O0013YOU", "YOURPW"),
        "5",
        &[file],
    )
}

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

#[test]
fn an_unreachable_partner_is_named_with_exit_1_and_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), b"x").unwrap();
    // A port nobody listens on: bound, then released.
    let port = free_port();
    let out = send_by_flags(dir.path(), port, "f.txt");
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
    let out = send_by_flags(dir.path(), port, "no-such-file.edi");
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
    let mut serve = oftp_serve(dir.path(), &["--listen", &format!("127.0.0.1:{port}")]);
    serve
        .env("OFTP_LOG", "trace")
        .stderr(Stdio::from(std::fs::File::create(&server_log).unwrap()));
    let (server, printed) = spawn_listening(serve);
    assert!(
        printed.iter().any(|l| l.starts_with("listening on")),
        "{printed:?}"
    );

    std::fs::write(dir.path().join("order.edi"), b"UNB+UNOC:3").unwrap();
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
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

#[test]
fn a_refused_file_gives_exit_3_and_files_for_us_land_in_the_receive_dir() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve_listen(dir.path(), port);
    // A file of that name is already in the inbox and overwrite is off: SFNA.
    let inbox = dir.path().join("oftp-data/inbox/example");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("TAKEN.EDI"), b"first").unwrap();
    // Something for the client in its outbox on the server.
    let outbox = dir.path().join("oftp-data/outbox/example");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join("reply.edi"), b"UNB+reply").unwrap();

    std::fs::write(dir.path().join("taken.edi"), b"second").unwrap();
    let out = send_example(dir.path(), &["--receive-dir", "got", "taken.edi"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("rejected"), "{stdout}");
    assert_eq!(std::fs::read(inbox.join("TAKEN.EDI")).unwrap(), b"first");
    let got = dir.path().join("got/REPLY.EDI");
    assert_eq!(std::fs::read(&got).unwrap(), b"UNB+reply", "{stdout}");
}
