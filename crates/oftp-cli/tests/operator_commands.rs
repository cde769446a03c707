//! The operator commands against a real `oftp serve` on 127.0.0.1: a file dropped into the
//! outbox of partner `b`, whose address nobody listens on, is queued, fails its one attempt
//! and raises an alert; the commands list, show, retry, cancel and acknowledge through the
//! daemon's control socket, and say so clearly when the daemon is not running.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Server, free_port, oftp, oftp_serve, spawn_listening, texts};

fn write_config(dir: &Path, port: u16) {
    let config = format!(
        "[local]\nssid = \"O0013AAA\"\npassword = \"APW\"\n\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"a\"\n\n\
         [gateway.outbox]\ndebounce_ms = 50\npoll_interval_secs = 1\n\n\
         [[partners]]\nname = \"b\"\nssid = \"O0013BBB\"\npassword = \"BPW\"\n\
         address = \"127.0.0.1:{}\"\nalert_after_failed_calls = 1\n\n\
         [partners.retry]\nfirst_delay_secs = 1\nmax_delay_secs = 1\njitter = 0.0\nmax_attempts = 1\n",
        free_port()
    );
    std::fs::write(dir.join("a.toml"), config).unwrap();
}

fn start(dir: &Path) -> Server {
    let (server, lines) = spawn_listening(oftp_serve(dir, &["--config", "a.toml"]));
    assert_eq!(lines.len(), 1, "the daemon did not start: {lines:?}");
    server
}

fn drop_file(dir: &Path, name: &str) {
    let outbox = dir.join("a/outbox/b");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join(format!("{name}.tmp")), b"UNA:+.? '").unwrap();
    std::fs::rename(outbox.join(format!("{name}.tmp")), outbox.join(name)).unwrap();
}

/// `oftp <args> --config a.toml`.
fn run(dir: &Path, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--config", "a.toml"]);
    oftp(dir, &all)
}

/// `oftp <args> --config a.toml --json`, which must succeed, parsed.
fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(dir, &all);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "oftp {args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("oftp {args:?}: {e}: {stdout}"))
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "oftp {args:?}: {stderr}");
    stdout
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success(), "oftp {args:?} succeeded: {stdout}");
    stderr
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "waited 30 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn state(dir: &Path, id: i64) -> String {
    json(dir, &["transfer", "show", &id.to_string()])["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_operator_commands_list_show_retry_cancel_and_acknowledge_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_config(dir, free_port());
    let daemon = start(dir);
    drop_file(dir, "INVOICE");

    wait_for("the file to be queued", || {
        json(dir, &["transfers"]).as_array().unwrap().len() == 1
    });
    let rows = json(dir, &["transfers", "--partner", "b"]);
    let id = rows[0]["id"].as_i64().unwrap();
    assert_eq!(rows[0]["virtual_file_name"], "INVOICE");
    wait_for("its one attempt to fail", || state(dir, id) == "failed");

    let table = ok(dir, &["transfers", "--state", "failed"]);
    assert!(table.starts_with("ID  PARTNER  FILE     STATE"), "{table}");
    assert!(
        table.contains(&format!("{id}   b        INVOICE  failed")),
        "{table}"
    );
    assert_eq!(
        json(dir, &["transfers", "--state", "queued"]),
        Value::Array(vec![])
    );
    let bad_state = fails(dir, &["transfers", "--state", "lost"]);
    assert!(
        bad_state.contains("unknown state \"lost\"; states are: queued"),
        "{bad_state}"
    );

    let last_page = run(dir, &["transfers", "--limit", "1"]);
    assert!(
        !texts(&last_page).1.contains("page full"),
        "the only row is the last page: {:?}",
        texts(&last_page)
    );
    assert_eq!(
        json(dir, &["transfers", "--before", &id.to_string()]),
        Value::Array(vec![])
    );
    let bad_cursor = fails(dir, &["transfers", "--cursor", "tomorrow"]);
    assert!(bad_cursor.contains("invalid cursor"), "{bad_cursor}");

    let shown = ok(dir, &["transfer", "show", &id.to_string()]);
    assert!(shown.contains("history:"), "{shown}");
    assert!(shown.contains("in_transfer  failed"), "{shown}");

    // Retry: queued again, tried again at once (call_on_new_file), failed again.
    let retried = json(dir, &["transfer", "retry", &id.to_string()]);
    assert_eq!(retried["id"], id);
    wait_for("the retried file to fail again", || {
        let d = json(dir, &["transfer", "show", &id.to_string()]);
        d["state"] == "failed" && d["attempts"] == 2
    });
    let history = json(dir, &["transfer", "show", &id.to_string()])["history"].clone();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["note"] == "retried by the operator"),
        "{history}"
    );

    let cancelled = ok(dir, &["transfer", "cancel", &id.to_string()]);
    assert_eq!(cancelled, format!("transfer {id}: cancelled\n"));
    let refused = fails(dir, &["transfer", "retry", &id.to_string()]);
    assert!(
        refused.contains(&format!(
            "transfer {id}: a cancelled file cannot become queued"
        )),
        "{refused}"
    );
    let unknown = fails(dir, &["transfer", "show", "999"]);
    assert!(unknown.contains("no transfer 999"), "{unknown}");

    assert_eq!(ok(dir, &["call", "b"]), "calling b now\n");
    let nobody = fails(dir, &["call", "nobody"]);
    assert!(nobody.contains("no partner named \"nobody\""), "{nobody}");

    // The failed calls raised alerts; acknowledging one takes it off the open list.
    wait_for("an alert", || {
        !json(dir, &["alerts"]).as_array().unwrap().is_empty()
    });
    let alert = json(dir, &["alerts"])[0]["id"].as_i64().unwrap();
    assert_eq!(
        ok(dir, &["alerts", "--ack", &alert.to_string()]),
        format!("alert {alert} acknowledged\n")
    );
    let open = json(dir, &["alerts"]);
    assert!(
        open.as_array().unwrap().iter().all(|a| a["id"] != alert),
        "{open}"
    );
    let all = json(dir, &["alerts", "--all"]);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == alert && a["acknowledged_at"].is_string()),
        "{all}"
    );

    let status = json(dir, &["status"]);
    assert_eq!(status["daemon"]["pid"], daemon.0.id());
    assert_eq!(status["partners"][0]["name"], "b");
    assert!(
        status["partners"][0]["last_call"]["text"].is_string(),
        "{status}"
    );
    assert_eq!(
        status["queue"],
        serde_json::json!([{"state": "cancelled", "count": 1}])
    );
    let table = ok(dir, &["status"]);
    assert!(table.starts_with("daemon: running, pid "), "{table}");
    assert!(table.contains("queue: cancelled 1"), "{table}");

    // Pages: the listing covers both directions, so a page that has a next one names its
    // cursor (an outbound id would page only the outbound rows; --before still does).
    drop_file(dir, "ORDERS");
    wait_for("the second file to be queued", || {
        json(dir, &["transfers"]).as_array().unwrap().len() == 2
    });
    let page = run(dir, &["transfers", "--limit", "1"]);
    let hint = texts(&page).1;
    let cursor = hint
        .split("(page full; the next page: --cursor ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("a cursor hint: {hint:?}"))
        .to_owned();
    assert!(cursor.starts_with("out-"), "{cursor}");
    let next = json(dir, &["transfers", "--limit", "1", "--cursor", &cursor]);
    assert_eq!(next[0]["id"], id, "the older row on the next page: {next}");

    // A second daemon on the same data directory is refused before it starts anything.
    write_config(dir, free_port());
    let second = oftp(dir, &["serve", "--config", "a.toml"]);
    let (_, stderr) = texts(&second);
    assert!(!second.status.success());
    assert!(
        stderr.contains(&format!(
            "another oftp serve (pid {}) uses the data directory",
            daemon.0.id()
        )),
        "{stderr}"
    );
    assert!(
        ok(dir, &["status"]).starts_with("daemon: running"),
        "the first one still runs"
    );
}

#[test]
fn without_a_daemon_changes_are_refused_and_listings_read_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_config(dir, free_port());
    let socket = dir.join("a/oftp.sock");
    {
        let _daemon = start(dir);
        drop_file(dir, "ORDERS");
        wait_for("the file to be queued", || {
            json(dir, &["transfers"]).as_array().unwrap().len() == 1
        });
        assert!(socket.exists());
        // Dropped here: killed with SIGKILL, the socket stays behind.
    }
    assert!(socket.exists(), "a killed daemon leaves its socket");

    for args in [
        &["status"][..],
        &["transfer", "retry", "1"],
        &["transfer", "cancel", "1"],
        &["call", "b"],
        &["alerts", "--ack", "1"],
    ] {
        let stderr = fails(dir, args);
        assert!(
            stderr.contains("the daemon is not running")
                && stderr.contains("start it with `oftp serve`"),
            "oftp {args:?}: {stderr}"
        );
    }
    let out = run(dir, &["transfers", "--json"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the daemon is not running"), "{stderr}");
    assert!(stderr.contains("reading the journal directly"), "{stderr}");
    let rows: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows[0]["virtual_file_name"], "ORDERS");
    assert!(ok(dir, &["transfer", "show", "1"]).contains("ORDERS"));
    assert!(ok(dir, &["alerts", "--all"]).ends_with('\n'));

    // The next daemon replaces the stale socket.
    let _daemon = start(dir);
    assert!(ok(dir, &["status"]).starts_with("daemon: running"));
}
