//! `mailbackup login` with the interactive flows, each followed by `mailbackup run` from the token
//! cache, against the Graph emulator:
//!
//! - browser (authorization code + PKCE S256) through the system-browser path: `BROWSER` points
//!   at a stand-in browser script (curl) that follows the sign-in redirect to the loopback
//!   listener, as `webbrowser` launches `$BROWSER` on Linux;
//! - browser with PKCE plain and `--no-browser`: the test reads the printed URL and plays the
//!   browser with reqwest;
//! - implicit: the stand-in browser also does what the listener's relay page script does (POST
//!   the URL fragment to `/fragment`);
//! - web profile: a confidential web app with an https callback; the test opens the printed URL,
//!   and pastes the URL it was redirected to into the command's standard input.

mod common;

use common::*;
use graph_emulator::{
    AppRegistration, DEFAULT_PUBLIC_CLIENT_ID, Emulator, EmulatorConfig, MailboxSpec,
};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Stdio};
use std::time::Duration;

const WEB_CLIENT_ID: &str = "5d0c3e2a-7b41-4f6e-9a8d-2c1b0e9f8a77";
const WEB_SECRET: &str = "web-app-secret-for-the-cli-test";
const WEB_CALLBACK: &str = "https://app.example/auth/callback";

/// What a browser does with the sign-in URL, minus the rendering. Logs status codes and the
/// PKCE method only (never a code or token), so the test can tell the browser was used.
const BROWSER_SCRIPT: &str = r#"#!/bin/sh
set -u
log="$(dirname "$0")/browser.log"
echo "opened" >> "$log"
printf '%s\n' "$1" | grep -o 'code_challenge_method=[A-Za-z0-9]*' >> "$log"
loc=$(curl -sS -o /dev/null -w '%{redirect_url}' "$1") || { echo "authorize failed" >> "$log"; exit 1; }
# Each step is logged before it is taken: once the listener has its answer the login ends,
# and the test may read this log before the last request's own output would be written.
case "$loc" in
  "") echo "no redirect" >> "$log"; exit 1 ;;
  *'#'*)
    origin=$(printf '%s' "$loc" | sed -E 's#^(https?://[^/]+).*#\1#')
    curl -sS -o /dev/null -w 'relay page %{http_code}\n' "${loc%%#*}" >> "$log"
    echo "posting the fragment to $origin/fragment" >> "$log"
    curl -sS -o /dev/null \
      -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "${loc#*#}" \
      "$origin/fragment" ;;
  *)
    echo "following the redirect to ${loc%%\?*}" >> "$log"
    curl -sS -o /dev/null "$loc" ;;
esac
"#;

/// Writes the stand-in browser into `dir`; returns its path (for `BROWSER`).
fn fake_browser(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("browser.sh");
    std::fs::write(&p, BROWSER_SCRIPT).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn browser_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("browser.log")).unwrap_or_default()
}

/// The `refresh_token` field of the token cache file (null when there is none).
fn cached_refresh_token(cache: &Path) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(cache).unwrap()).unwrap();
    v["refresh_token"].clone()
}

/// The authority flags of the emulator and a token cache in `dir`.
fn auth_args(emu: &Emulator, client_id: &str, cache: &Path) -> Vec<String> {
    vec![
        "--authority".into(),
        emu.authority_url(),
        "--tenant".into(),
        emu.tenant_id().into(),
        "--client-id".into(),
        client_id.into(),
        "--token-cache".into(),
        cache.display().to_string(),
    ]
}

fn login_cmd(emu: &Emulator, client_id: &str, cache: &Path, flow: &str) -> assert_cmd::Command {
    let mut c = bin();
    c.args(["login", "--flow", flow, "--browser-timeout", "30"])
        .args(auth_args(emu, client_id, cache))
        .env_remove("BROWSER");
    c
}

/// `mailbackup run` of the signed-in user's mailbox (`/me`) with the cached tokens only.
/// Logs at trace level, and checks that no cached token appears in the output.
async fn run_from_cache(emu: &Emulator, client_id: &str, cache: &Path, data: &Path) -> String {
    let secrets = |v: serde_json::Value| -> Vec<String> {
        ["access_token", "refresh_token"]
            .iter()
            .filter_map(|k| v[*k].as_str().map(str::to_owned))
            .collect()
    };
    let read = || serde_json::from_slice(&std::fs::read(cache).unwrap()).unwrap();
    let mut tokens = secrets(read());
    let mut c = bin();
    c.arg("run")
        .arg("-d")
        .arg(data)
        .args(["--graph-url", &emu.graph_url(), "--no-progress"])
        .args(["--log-level", "trace"])
        .args(auth_args(emu, client_id, cache));
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(assert_files_complete(data, emu), 4);
    let out = text(&o);
    assert!(out.contains("initialization phase"), "logs are on: {out}");
    tokens.extend(secrets(read()));
    assert!(!tokens.is_empty());
    for t in tokens {
        assert!(!out.contains(&t), "a cached token was printed");
    }
    out
}

/// Reads the child's stderr until the sign-in URL line; returns it and the rest of the lines.
fn printed_url(stderr: ChildStderr) -> (String, std::sync::mpsc::Receiver<String>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Bounded: the command prints the URL at once, or fails and closes stderr.
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let t = line.trim();
                if t.starts_with("http://") || t.starts_with("https://") {
                    return (t.to_string(), rx);
                }
                seen.push(line);
            }
            Err(e) => panic!("no sign-in URL printed ({e}); stderr so far: {seen:#?}"),
        }
    }
}

async fn wait(child: Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

fn query(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_with_pkce_s256_through_the_system_browser_then_run() {
    let emu = emulator(4, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let mut c = login_cmd(&emu, DEFAULT_PUBLIC_CLIENT_ID, &cache, "browser");
    c.args(["--pkce", "S256"])
        .env("BROWSER", fake_browser(dir.path()));
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("signed in (Browser flow)"),
        "{}",
        text(&o)
    );
    let log = browser_log(dir.path());
    assert!(
        log.contains("opened")
            && log.contains("code_challenge_method=S256")
            && log.contains("following the redirect to http://localhost:"),
        "the browser was not driven through the loopback redirect: {log}"
    );
    assert!(cached_refresh_token(&cache).is_string());
    run_from_cache(
        &emu,
        DEFAULT_PUBLIC_CLIENT_ID,
        &cache,
        &dir.path().join("data"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_with_pkce_plain_and_a_printed_url_then_run() {
    let emu = emulator(4, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailbackup"))
        .args([
            "login",
            "--flow",
            "browser",
            "--pkce",
            "plain",
            "--no-browser",
        ])
        .args(["--browser-timeout", "30"])
        .args(auth_args(&emu, DEFAULT_PUBLIC_CLIENT_ID, &cache))
        .env_remove("BROWSER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, _rest) = printed_url(child.stderr.take().unwrap());
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some("plain")
    );
    // The "browser": follows the emulator's redirect to the loopback listener.
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.url().host_str() == Some("localhost"), "{}", page.url());
    let o = wait(child).await;
    assert!(o.status.success(), "{}", text(&o));
    run_from_cache(
        &emu,
        DEFAULT_PUBLIC_CLIENT_ID,
        &cache,
        &dir.path().join("data"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_login_relays_the_fragment_then_run() {
    let emu = emulator(4, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let mut c = login_cmd(&emu, DEFAULT_PUBLIC_CLIENT_ID, &cache, "implicit");
    c.env("BROWSER", fake_browser(dir.path()));
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let log = browser_log(dir.path());
    assert!(
        log.contains("relay page 200") && log.contains("posting the fragment to http://localhost:"),
        "the fragment did not reach the listener: {log}"
    );
    assert!(
        cached_refresh_token(&cache).is_null(),
        "the implicit grant has no refresh token"
    );
    run_from_cache(
        &emu,
        DEFAULT_PUBLIC_CLIENT_ID,
        &cache,
        &dir.path().join("data"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_profile_login_with_a_pasted_redirect_then_run() {
    let app = AppRegistration::confidential_client(WEB_CLIENT_ID, WEB_SECRET)
        .with_redirect_uri(WEB_CALLBACK);
    let emu = Emulator::start(
        EmulatorConfig::default()
            .with_mailboxes(vec![MailboxSpec::new(ALICE).messages(4).seed(21)])
            .with_app(app),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailbackup"))
        .args(["login", "--flow", "web", "--redirect-uri", WEB_CALLBACK])
        .args(auth_args(&emu, WEB_CLIENT_ID, &cache))
        .env("MAILBACKUP_CLIENT_SECRET", WEB_SECRET)
        .env_remove("BROWSER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, _rest) = printed_url(child.stderr.take().unwrap());
    assert_eq!(query(&url, "redirect_uri").as_deref(), Some(WEB_CALLBACK));
    // Sign in (the emulator consents at once) and note where the browser was sent.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(WEB_CALLBACK), "{location}");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{location}").unwrap();
    drop(stdin);
    let o = wait(child).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = run_from_cache(&emu, WEB_CLIENT_ID, &cache, &dir.path().join("data")).await;
    assert!(
        !out.contains(WEB_SECRET),
        "the client secret must never be printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_never_comes_back_ends_at_the_timeout_with_a_clear_error() {
    let emu = emulator(1, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let mut c = bin();
    c.args([
        "login",
        "--flow",
        "browser",
        "--no-browser",
        "--browser-timeout",
        "1",
    ])
    .args(auth_args(&emu, DEFAULT_PUBLIC_CLIENT_ID, &cache));
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no answer from the browser within 1 s"),
        "{}",
        text(&o)
    );
    assert!(!cache.exists());
}
