//! `mailbackup run --report` and the end-of-run notifications, end to end: the Graph emulator,
//! a webhook receiver that verifies the signature, and an SMTP sink, all on loopback.

use graph_emulator::{EndpointKind, FaultConfig, Trigger};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::*;

const SECRET: &str = "webhook secret 9f2c";
const SMTP_PASSWORD: &str = "smtp password 77aa";

fn read_report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("the report exists")).unwrap()
}

/// A webhook receiver: records each body whose signature verifies, answers `status`
/// (401 to a bad signature).
async fn receiver(status: u16) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let sig = h
                    .get(webhook::SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if webhook::verify(&webhook::Secret::new(SECRET), &body, sig).is_err() {
                    return StatusCode::UNAUTHORIZED;
                }
                g.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, got)
}

/// A config file with the [notify] table of this test's receivers.
fn notify_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("webhook-secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(dir.join("smtp-password"), SMTP_PASSWORD).unwrap();
    let cfg = dir.join("mailbackup.toml");
    std::fs::write(
        &cfg,
        format!(
            "[notify]\nwebhook_secret_file = {:?}\nwebhook_attempts = 3\nwebhook_backoff = 0.05\n\
             webhook_timeout = 2\nsmtp_password_file = {:?}\n{extra}",
            dir.join("webhook-secret"),
            dir.join("smtp-password")
        ),
    )
    .unwrap();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_is_written_after_a_successful_run() {
    let emu = emulator(6, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let report = dir.path().join("reports/last-run.json");
    let mut c = run_cmd(&emu, &data, &app_token(&emu).await);
    c.arg("--no-progress").arg("--report").arg(&report);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));

    let r = read_report(&report);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["outcome"], "completed");
    assert!(r["run_id"].as_i64().unwrap() >= 1, "{r}");
    assert!(r["error"].is_null());
    let started = chrono::DateTime::parse_from_rfc3339(r["started"].as_str().unwrap()).unwrap();
    let finished = chrono::DateTime::parse_from_rfc3339(r["finished"].as_str().unwrap()).unwrap();
    assert!(started <= finished);
    let mb = &r["mailboxes"][0];
    assert_eq!(mb["mailbox"], ALICE);
    assert_eq!(mb["saved"], 6);
    assert_eq!(mb["errors"], 0);
    assert!(mb["requests"].as_u64().unwrap() > 0);
    assert_eq!(
        mb["bytes"].as_u64().unwrap(),
        eml_files(&data)
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum::<u64>(),
        "bytes are what was written"
    );
    assert_eq!(r["totals"]["saved"], 6);
    assert_eq!(r["totals"]["throttling_waits"], 0);
    let left: Vec<_> = std::fs::read_dir(report.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left.len(),
        1,
        "no temporary file is left beside it: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_is_written_when_the_run_fails() {
    let emu = emulator(3, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    // The data folder is a file: the run cannot start.
    let data = dir.path().join("not-a-folder");
    std::fs::write(&data, b"x").unwrap();
    let report = dir.path().join("run.json");
    let (url, hooks) = receiver(200).await;
    let cfg = notify_config(dir.path(), &format!("webhook_url = {url:?}\n"));
    let mut c = run_cmd(&emu, &data, &app_token(&emu).await);
    c.arg("--no-progress")
        .arg("--report")
        .arg(&report)
        .arg("-c")
        .arg(&cfg);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let r = read_report(&report);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["outcome"], "failed");
    assert!(r["run_id"].is_null());
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("not-a-folder"), "{error}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(error),
        "the report carries the error the user saw: {}",
        text(&o)
    );
    assert_eq!(r["mailboxes"].as_array().unwrap().len(), 0);
    assert_eq!(r["totals"]["saved"], 0);
    let hooks = hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1, "a failed run always notifies");
    assert_eq!(hooks[0], r, "the webhook body is the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_warnings_notifies_the_webhook_and_by_mail_without_being_asked() {
    let emu = emulator(4, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, hooks) = receiver(200).await;
    let (port, mails) = smtp_mail::sink::start().await;
    let cfg = notify_config(
        dir.path(),
        &format!(
            "webhook_url = {url:?}\nsmtp_server = \"127.0.0.1\"\nsmtp_port = {port}\n\
             smtp_security = \"none\"\nsmtp_username = \"backup\"\n\
             mail_from = \"mailbackup@example.test\"\nmail_to = [\"ops@example.test\"]\n"
        ),
    );
    // Every message body arrives cut short and is not retried: each message finally fails, the
    // run completes with warnings.
    emu.faults().set(FaultConfig {
        truncate_value: Trigger::EveryNth(1),
        only: Some(vec![EndpointKind::MessageValue]),
        ..FaultConfig::default()
    });
    let mut c = run_cmd(&emu, &dir.path().join("data"), &app_token(&emu).await);
    c.args(["--no-progress", "--max-retry-count", "0"])
        .arg("--config")
        .arg(&cfg);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!text(&o).contains(SECRET) && !text(&o).contains(SMTP_PASSWORD));

    let hooks = hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1, "one signed delivery: {}", text(&o));
    assert_eq!(hooks[0]["outcome"], "completed_with_warnings");
    assert_eq!(hooks[0]["schema_version"], 1);
    assert_eq!(hooks[0]["totals"]["errors"], 4);
    let texts = hooks[0]["mailboxes"][0]["error_texts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(texts.len(), 4, "{texts:?}");

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "{}", text(&o));
    let m = &mails[0];
    assert_eq!(
        m.auth.as_deref(),
        Some(&*format!("|backup|{SMTP_PASSWORD}"))
    );
    assert_eq!(m.rcpt, ["<ops@example.test>"]);
    assert!(
        m.data
            .contains("Subject: mailbackup: run #1 completed with warnings (4 errors)"),
        "{}",
        m.data
    );
    assert!(
        m.data.contains("\"outcome\": \"completed_with_warnings\""),
        "{}",
        m.data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_run_notifies_only_with_notify_success() {
    let emu = emulator(2, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, hooks) = receiver(204).await;
    let cfg = notify_config(dir.path(), "");
    let token = app_token(&emu).await;

    let mut c = run_cmd(&emu, &dir.path().join("data"), &token);
    c.args(["--no-progress", "--webhook-url", &url])
        .arg("-c")
        .arg(&cfg);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(hooks.lock().unwrap().len(), 0, "not asked for");

    let mut c = run_cmd(&emu, &dir.path().join("data"), &token);
    c.args(["--no-progress", "--notify-success", "--webhook-url", &url])
        .arg("-c")
        .arg(&cfg);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let hooks = hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1, "{}", text(&o));
    assert_eq!(hooks[0]["outcome"], "completed");
    assert_eq!(
        hooks[0]["totals"]["unchanged"], 2,
        "second run: nothing new"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_stays_down_is_logged_and_leaves_the_exit_code() {
    let emu = emulator(2, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, hooks) = receiver(503).await;
    let cfg = notify_config(
        dir.path(),
        &format!("success = true\nwebhook_url = {url:?}\n"),
    );
    let report = dir.path().join("r.json");
    let mut c = run_cmd(&emu, &dir.path().join("data"), &app_token(&emu).await);
    c.args(["--no-progress", "-c"])
        .arg(&cfg)
        .arg("--report")
        .arg(&report);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(hooks.lock().unwrap().len(), 3, "webhook_attempts = 3");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("run notification not delivered")
            && err.contains("after 3 attempts; last: HTTP 503"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains(SECRET));
    assert_eq!(read_report(&report)["outcome"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_without_a_secret_stops_the_run_before_it_starts() {
    let emu = emulator(2, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let mut c = run_cmd(&emu, &dir.path().join("data"), &app_token(&emu).await);
    c.args(["--no-progress", "--webhook-url", "http://127.0.0.1:9/hook"])
        .arg("--report")
        .arg(&report)
        .env_remove("MAILBACKUP_WEBHOOK_SECRET");
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("MAILBACKUP_WEBHOOK_SECRET"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("data").exists(), "nothing was backed up");
    assert_eq!(read_report(&report)["outcome"], "failed");
}
