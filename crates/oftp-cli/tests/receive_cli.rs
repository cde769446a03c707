//! `oftp serve` runs a partner's `on_receive` command for each file it receives, and holds the
//! EERP until it succeeded with `eerp_after = "processed"` (oftp-gateway's `postprocess`).

use std::time::{Duration, Instant};

mod common;
use common::{call_args, free_port, oftp, serve_config, texts, write_server_config};

#[test]
fn serve_runs_on_receive_with_the_files_metadata_and_holds_the_eerp_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    // Records its environment, then fails: the EERP stays held.
    write_server_config(
        d,
        port,
        r#"
[[partners]]
name = "client"
ssid = "O0013CLIENT"
password = "CLIPW"
eerp_after = "processed"

[partners.on_receive]
command = ["/bin/sh", "-c", "env | grep ^OFTP_ | sort > env.txt; exit 4"]
timeout_secs = 10
"#,
    );
    let _server = serve_config(d, "server.toml");
    std::fs::write(d.join("order.edi"), "UNB+1").unwrap();
    let port = port.to_string();
    let mut args = call_args(&port, ("O0013CLIENT", "CLIPW"), ("O0013SERVER", "SRVPW"));
    args.push("order.edi");
    let out = oftp(d, &args);
    let (stdout, stderr) = texts(&out);
    assert!(
        stdout.starts_with("not confirmed  order.edi"),
        "{stdout}\n{stderr}"
    );
    let env = d.join("env.txt");
    let started = Instant::now();
    while !env.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let env = std::fs::read_to_string(&env).unwrap();
    for line in [
        "OFTP_DSN=ORDER.EDI",
        "OFTP_ORIGINATOR=O0013CLIENT",
        "OFTP_DESTINATION=O0013SERVER",
        "OFTP_SIZE=5",
        "OFTP_FORMAT=U",
        "OFTP_PARTNER=client",
        "OFTP_PARTNER_SSID=O0013CLIENT",
        "OFTP_ATTEMPT=1",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from\n{env}");
    }
    let file = env
        .lines()
        .find_map(|l| l.strip_prefix("OFTP_FILE="))
        .unwrap();
    assert_eq!(std::fs::read_to_string(file).unwrap(), "UNB+1");
    // A later call gets no EERP for it: the command failed.
    let out = oftp(
        d,
        &call_args(&port, ("O0013CLIENT", "CLIPW"), ("O0013SERVER", "SRVPW")),
    );
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success() && !stdout.contains("order.edi"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn eerp_after_processed_without_a_command_is_refused_with_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_server_config(
        d,
        free_port(),
        "[[partners]]\nname = \"client\"\nssid = \"O0013CLIENT\"\npassword = \"CLIPW\"\neerp_after = \"processed\"\n",
    );
    let out = oftp(d, &["serve", "--config", "server.toml"]);
    let (_, stderr) = texts(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("needs a [partners.on_receive] command"),
        "{stderr}"
    );
}
