//! `oftp serve` delivers alerts: the real binary with `[gateway.alerts]`, a webhook receiver on
//! loopback that checks the signature, and a configuration it must refuse at start.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::{free_port, oftp, serve_config, texts, write_server_config};

const SECRET: &str = "cli alert secret 31d7";

/// Accepts HTTP requests on `listener` in a thread and sends each (signature header, body)
/// to the returned channel, answering 200.
fn receiver(listener: TcpListener) -> mpsc::Receiver<(String, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let (mut len, mut sig) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if lower.starts_with("x-signature-256:") {
                    sig = line["x-signature-256:".len()..].trim().to_owned();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if tx.send((sig, body)).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn serve_delivers_a_watchdog_alert_to_the_webhook_signed() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got = receiver(listener);
    std::fs::write(dir.path().join("hook-secret"), SECRET).unwrap();
    // No file system has this much free space: the disk watchdog raises an alert at start.
    write_server_config(
        dir.path(),
        free_port(),
        &format!(
            "[gateway.alerts]\npoll_interval_secs = 1\n\
             [[gateway.alerts.webhook]]\nname = \"ops\"\nurl = \"http://{addr}/hook\"\n\
             secret_file = \"hook-secret\"\n\
             [gateway.alerts.watchdog]\ndisk_low_mib = 1000000000000\n"
        ),
    );
    // Started in another directory: the secret file is found next to the configuration.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    let _server = serve_config(elsewhere.path(), config.to_str().unwrap());
    let (sig, body) = got
        .recv_timeout(Duration::from_secs(30))
        .expect("an alert reaches the receiver");
    webhook::verify(&webhook::Secret::new(SECRET), &body, &sig)
        .expect("signed with the configured secret");
    let alert: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(alert["kind"], "disk_space_low", "{alert}");
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .contains(&dir.path().join("sdata").display().to_string()),
        "names the data directory: {alert}"
    );
}

#[test]
fn serve_refuses_an_alert_channel_whose_secret_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    write_server_config(
        dir.path(),
        free_port(),
        "[[gateway.alerts.webhook]]\nname = \"ops\"\nurl = \"https://alerts.example.com/h?token=T0K\"\n\
         secret_file = \"missing-secret\"\n",
    );
    let out = oftp(dir.path(), &["serve", "--config", "server.toml"]);
    let (_, err) = texts(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("[[webhook]] \"ops\": cannot read the secret file")
            && err.contains("missing-secret"),
        "{err}"
    );
    assert!(!err.contains("T0K"), "{err}");

    write_server_config(
        dir.path(),
        free_port(),
        "[[gateway.alerts.webhook]]\nname = \"ops\"\nurl = \"https://alerts.example.com/h\"\n",
    );
    let out = oftp(dir.path(), &["serve", "--config", "server.toml"]);
    let (_, err) = texts(&out);
    assert!(!out.status.success());
    assert!(err.contains("needs a secret: set secret_file"), "{err}");
}
