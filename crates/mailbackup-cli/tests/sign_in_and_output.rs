//! Exit codes of sign-in failures, settings reused from the token cache, and log output fit
//! for files (no colour codes), against the Graph emulator.

use graph_emulator::{DEFAULT_PASSWORD, DEFAULT_PUBLIC_CLIENT_ID};
use std::path::Path;
use std::time::Duration;

mod common;

use common::*;

/// Signs ALICE in with the password flow into `cache`.
async fn login(emu: &graph_emulator::Emulator, cache: &Path) {
    let mut c = bin();
    c.args(["login", "--flow", "password", "--username", ALICE])
        .args([
            "--authority",
            &emu.authority_url(),
            "--tenant",
            emu.tenant_id(),
            "--client-id",
            DEFAULT_PUBLIC_CLIENT_ID,
        ])
        .arg("--token-cache")
        .arg(cache)
        .env("MAILBACKUP_PASSWORD", DEFAULT_PASSWORD);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_during_a_run_exits_2_and_asks_to_sign_in_again() {
    let emu = emulator(5, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    login(&emu, &cache).await;
    emu.identity().revoke_refresh_tokens();
    emu.identity().expire_access_tokens();
    let mut c = bin();
    c.arg("run")
        .arg("-d")
        .arg(dir.path().join("data"))
        .args(["--graph-url", &emu.graph_url()])
        .args([
            "--authority",
            &emu.authority_url(),
            "--tenant",
            emu.tenant_id(),
            "--client-id",
            DEFAULT_PUBLIC_CLIENT_ID,
        ])
        .arg("--token-cache")
        .arg(&cache);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let all = text(&o);
    assert!(all.contains("sign in again"), "{all}");
    assert!(!all.contains("permission"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_or_with_no_color_carry_no_colour_codes() {
    let emu = emulator(3, Duration::ZERO).await;
    let token = app_token(&emu).await;
    for no_color in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = run_cmd(&emu, dir.path(), &token);
        c.args(["--log-level", "info"]);
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let o = run(c).await;
        assert!(o.status.success(), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("initialization phase"), "logs are on: {err}");
        assert!(!err.contains('\u{1b}'), "colour codes in {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_client_id_authority_and_tenant_from_the_token_cache() {
    let emu = emulator(4, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    login(&emu, &cache).await;
    let data = dir.path().join("data");
    let mut c = bin();
    c.arg("run")
        .arg("-d")
        .arg(&data)
        .args(["--graph-url", &emu.graph_url()])
        .arg("--token-cache")
        .arg(&cache);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(assert_files_complete(&data, &emu), 4);
}
