//! End-to-end tests of the `mailbackup` command against the Graph emulator.

use graph_emulator::{
    DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_PASSWORD,
    DEFAULT_PUBLIC_CLIENT_ID, EndpointKind, FaultConfig, Trigger,
};
use std::time::Duration;

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_status_and_verify() {
    let emu = emulator(25, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let mut c = run_cmd(&emu, dir.path(), &token);
    c.args(["--log-level", "trace"]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("25 messages: 25 saved"), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("initialization phase"),
        "logs are on"
    );
    assert!(
        !text(&o).contains(&token),
        "the token must never be printed"
    );
    assert_eq!(assert_files_complete(dir.path(), &emu), 25);

    let mut c = bin();
    c.args(["status", "--data-folder"]).arg(dir.path());
    let o = run(c).await;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success() && out.contains("25 messages") && out.contains("lock: free"),
        "{}",
        text(&o)
    );
    assert!(out.contains("Completed"), "{out}");

    let mut c = bin();
    c.args(["verify", "-d"]).arg(dir.path());
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("25 ok, 0 missing, 0 corrupt, 0 extra"));

    // Damage: one file changed, one removed, one stray file.
    let files = eml_files(dir.path());
    std::fs::write(&files[0], b"X-NS-Backup: nonsense\r\n").unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    std::fs::write(dir.path().join("stray.eml"), b"x").unwrap();
    let mut c = bin();
    c.args(["verify", "-d"]).arg(dir.path());
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("23 ok, 1 missing, 1 corrupt, 1 extra"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_filter_shows_graphs_message_and_fails() {
    let emu = emulator(5, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = run_cmd(&emu, dir.path(), &app_token(&emu).await);
    c.args(["--filter", "subject eqq 'x'", "--no-progress"]);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ERROR: Graph answered 400"),
        "{}",
        text(&o)
    );

    let mut c = run_cmd(&emu, dir.path(), "x");
    c.args(["--start-date", "2024-01-01"]);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("yyyy/MM/dd"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_folder_is_refused() {
    let emu = emulator(3, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let _lock = mailbackup::lock::RunLock::acquire(&dir.path().join(".meta")).unwrap();
    let o = run(run_cmd(&emu, dir.path(), &app_token(&emu).await)).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_client_credentials_and_password_then_run_from_the_cache() {
    let emu = emulator(8, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, DEFAULT_CLIENT_SECRET).unwrap();
    let auth = |c: &mut assert_cmd::Command, client: &str| {
        c.args([
            "--authority",
            &emu.authority_url(),
            "--tenant",
            emu.tenant_id(),
            "--client-id",
            client,
        ])
        .arg("--token-cache")
        .arg(&cache);
    };

    // Client credentials, secret from a file.
    let mut c = bin();
    c.args(["login", "--flow", "client-credentials"])
        .arg("--client-secret-file")
        .arg(&secret_file);
    auth(&mut c, DEFAULT_CONFIDENTIAL_CLIENT_ID);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(DEFAULT_CLIENT_SECRET));
    assert!(cache.exists());
    let data = dir.path().join("app");
    let mut c = bin();
    c.arg("run")
        .arg("-d")
        .arg(&data)
        .args(["--graph-url", &emu.graph_url(), "--user-id", ALICE]);
    c.args(["--flow", "client-credentials"])
        .env("MAILBACKUP_CLIENT_SECRET", DEFAULT_CLIENT_SECRET);
    auth(&mut c, DEFAULT_CONFIDENTIAL_CLIENT_ID);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(assert_files_complete(&data, &emu), 8);

    // Password (ROPC), password from the environment; then a run of /me from the cache alone.
    std::fs::remove_file(&cache).unwrap();
    let mut c = bin();
    c.args(["login", "--flow", "password", "--username", ALICE])
        .env("MAILBACKUP_PASSWORD", DEFAULT_PASSWORD);
    auth(&mut c, DEFAULT_PUBLIC_CLIENT_ID);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(DEFAULT_PASSWORD));
    // The access token expires: the run renews it with the cached refresh token.
    emu.identity().expire_access_tokens();
    let data = dir.path().join("me");
    let mut c = bin();
    c.arg("run")
        .arg("-d")
        .arg(&data)
        .args(["--graph-url", &emu.graph_url()]);
    auth(&mut c, DEFAULT_PUBLIC_CLIENT_ID);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(assert_files_complete(&data, &emu), 8);

    // Without any sign-in: a clear message naming the login command.
    let mut c = bin();
    c.arg("run")
        .arg("-d")
        .arg(&data)
        .args(["--graph-url", &emu.graph_url()]);
    c.args(["--client-id", "x", "--token-cache"])
        .arg(dir.path().join("none.json"));
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("mailbackup login"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_supplies_the_options() {
    let emu = emulator(6, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mailbackup.toml");
    let auth_file = dir.path().join("authorization");
    let token = app_token(&emu).await;
    std::fs::write(&auth_file, format!("Bearer {token}\n")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "data_folder = {:?}\ngraph_url = {:?}\nuser_id = {ALICE:?}\nmax_connections = 10\nsync_deletes = true\n[auth]\nauthorization_file = {:?}\n",
            dir.path().join("data"),
            emu.graph_url(),
            auth_file
        ),
    )
    .unwrap();
    let mut c = bin();
    c.args(["--log-level", "trace", "--config"])
        .arg(&cfg)
        .arg("run");
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains(&token),
        "the token from the authorization file must never be printed"
    );
    assert_eq!(assert_files_complete(&dir.path().join("data"), &emu), 6);
    assert!(emu.stats().max_concurrency <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_rerun_fetches_only_what_is_not_durable() {
    let total = 150;
    let emu = emulator(total, Duration::from_millis(15)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailbackup"));
    cmd.env("MAILBACKUP_AUTHORIZATION", format!("Bearer {token}"))
        .arg("run")
        .arg("-d")
        .arg(dir.path())
        .args(["--graph-url", &emu.graph_url(), "--user-id", ALICE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // Wait (bounded, no polling) until the run is well into the backup phase, then slow Graph
    // down so that the run cannot finish before the kill lands, whatever the machine's load.
    tokio::time::timeout(
        Duration::from_secs(30),
        emu.wait_for_requests(EndpointKind::MessageValue, 40),
    )
    .await
    .expect("the run did not get going");
    emu.faults().set(FaultConfig {
        extra_latency: Duration::from_millis(200),
        ..FaultConfig::default()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let durable = assert_files_complete(dir.path(), &emu);
    assert!(durable < total, "killed too late to test anything");
    let mut c = bin();
    c.args(["status", "-d"]).arg(dir.path());
    let o = run(c).await;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("interrupted") && out.contains("no longer running"),
        "{out}"
    );

    // Requests of the killed process may still be served by the emulator (and would count
    // against its concurrency limit): wait until they are over.
    emu.faults().set(FaultConfig::default());
    tokio::time::timeout(Duration::from_secs(30), emu.mailbox(ALICE).wait_idle())
        .await
        .expect("the killed run's requests end");
    emu.reset_stats();
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    // The rerun's own account is exact: what was durable is unchanged, the rest is fetched.
    let out = String::from_utf8_lossy(&o.stdout);
    let expect = format!("{total} messages: {} saved", total - durable);
    assert!(
        out.contains(&expect) && out.contains(&format!("{durable} unchanged")),
        "a message durable before the kill was fetched again: {}",
        text(&o)
    );
    // The emulator agrees (a request the killed process had sent but Graph had not yet read
    // could only add to its count, never hide a refetch).
    assert!(
        emu.stats().count(EndpointKind::MessageValue) >= (total - durable) as u64,
        "{:?}",
        emu.stats()
    );
    assert_eq!(assert_files_complete(dir.path(), &emu), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_without_a_display_uses_the_device_code_flow() {
    let emu = emulator(2, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .arg("login");
    c.args([
        "--authority",
        &emu.authority_url(),
        "--tenant",
        emu.tenant_id(),
        "--client-id",
        DEFAULT_PUBLIC_CLIENT_ID,
    ]);
    c.arg("--token-cache").arg(dir.path().join("c.json"));
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("DeviceCode flow"),
        "{}",
        text(&o)
    );
    assert!(dir.path().join("c.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_finally_fail_are_listed_and_the_exit_code_is_1() {
    let emu = emulator(4, Duration::ZERO).await;
    emu.faults().set(FaultConfig {
        drop_connection: Trigger::EveryNth(1),
        only: Some(vec![EndpointKind::MessageValue]),
        ..FaultConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut c = run_cmd(&emu, dir.path(), &app_token(&emu).await);
    c.args(["--max-retry-count", "1"]);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("4 failed") && out.contains("failed messages:"),
        "{out}"
    );
    assert_eq!(out.matches("TransportError").count(), 4, "{out}");
    // Each message was tried twice (one retry), then given up.
    assert_eq!(emu.stats().count(EndpointKind::MessageValue), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_aborts_cleanly_with_exit_130_and_a_rerun_completes() {
    let total = 120;
    let emu = emulator(total, Duration::from_millis(15)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mailbackup"))
        .env("MAILBACKUP_AUTHORIZATION", format!("Bearer {token}"))
        .arg("run")
        .arg("-d")
        .arg(dir.path())
        .args(["--graph-url", &emu.graph_url(), "--user-id", ALICE])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        emu.wait_for_requests(EndpointKind::MessageValue, 30),
    )
    .await
    .expect("the run did not get going");
    // From here on the run cannot finish before the signal lands, whatever the machine's load.
    emu.faults().set(FaultConfig {
        extra_latency: Duration::from_millis(200),
        ..FaultConfig::default()
    });
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("aborted (run again to continue)"),
        "{}",
        text(&o)
    );
    let saved = assert_files_complete(dir.path(), &emu);
    assert!(saved < total, "aborted too late to test anything");
    // The abort waited for the requests it had sent: Graph served exactly what was saved.
    assert_eq!(
        emu.stats().count(EndpointKind::MessageValue),
        saved as u64,
        "{}",
        text(&o)
    );
    emu.faults().set(FaultConfig::default());

    let mut c = bin();
    c.args(["verify", "-d"]).arg(dir.path());
    let v = run(c).await;
    assert!(
        v.status.success(),
        "an abort leaves no partial or unindexed file: {}",
        text(&v)
    );

    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(assert_files_complete(dir.path(), &emu), total);
}

/// Temporary files the writer leaves only when interrupted (`.<name>.tmp-*`).
fn temp_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    files_below(
        root,
        |_| true,
        |p| p.file_name().unwrap().to_string_lossy().contains(".tmp-"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_mid_file_stops_with_a_clear_error_and_leaves_nothing_half_written() {
    // Every 4th message is over 1 MiB. The run gets a file size limit (the index and small
    // messages stay below), so writing a large message fails part way, like a disk that fills
    // up.
    let emu = emulator_with_large_messages(12).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let mut c = bin_with_file_size_limit();
    c.args([
        "run",
        "--no-progress",
        "--graph-url",
        &emu.graph_url(),
        "--user-id",
        ALICE,
        "--retry-interval",
        "0.05",
        "-d",
    ])
    .arg(dir.path())
    .env("MAILBACKUP_AUTHORIZATION", format!("Bearer {token}"));
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ERROR: cannot write")
            && out.contains("File too large")
            && out.contains("free space"),
        "{}",
        text(&o)
    );
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );
    let saved = assert_files_complete(dir.path(), &emu);
    assert!(saved < 12, "the limit did not bite");
    let mut v = bin();
    v.args(["verify", "-d"]).arg(dir.path());
    let v = run(v).await;
    assert!(v.status.success(), "{}", text(&v));

    // With room again, the next run completes.
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(assert_files_complete(dir.path(), &emu), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_data_folder_and_unknown_flags_are_clear_errors() {
    let emu = emulator(1, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    // A data folder below a regular file cannot be created, even by root.
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let o = run(run_cmd(&emu, &file.join("data"), &app_token(&emu).await)).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("error:")
            && err.contains("not-a-folder")
            && err.matches("Not a directory").count() == 1,
        "{}",
        text(&o)
    );

    for args in [
        vec!["run", "--bogus"],
        vec!["status", "--max-connections", "3"],
        vec!["frobnicate"],
    ] {
        let mut c = bin();
        c.args(&args);
        let o = run(c).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("unexpected argument") || err.contains("unrecognized subcommand"),
            "{args:?}: {}",
            text(&o)
        );
        assert!(err.contains("Usage:"), "{}", text(&o));
    }
}
