//! The web console in a real browser against real daemons: headless Chromium (the Debian
//! `chromium` package, see `tests/chromium`) drives the console of an `oftp serve` (A) whose
//! partner is a second `oftp serve` (B) on 127.0.0.1. Every test fails on anything the page
//! reports as a problem (uncaught exceptions, console errors, CSP violations, failed
//! requests) that it did not cause on purpose.
//!
//! Without chromium the tests say so and pass, except under `CI=true` (set by `.ci/run`),
//! where a missing browser fails them: CI must run them.
//!
//! Screenshots of the overview, a transfer's detail and the phone layout are taken on every
//! run; with `OFTP_SCREENSHOTS=docs` they replace `docs/console-*.png` (the README shows them).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use oftp::journal::{Journal, QueueState, QueuedFile, SqliteJournal, TransferFilter};
use serde_json::Value;

mod chromium;
mod common;
use chromium::{Browser, LaunchError, Page};
use common::{Server, free_port, oftp_serve, spawn_listening};

/// The console user of A's configuration and its password.
const USER: (&str, &str) = ("ops", "a long console password");

/// One browser at a time: the machine is small and each test starts two daemons.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This test's turn with a browser, or `None` (the test passes) when chromium is not installed
/// outside CI.
async fn browser_turn() -> Option<(tokio::sync::MutexGuard<'static, ()>, Browser)> {
    let turn = ONE_AT_A_TIME.lock().await;
    browser().await.map(|b| (turn, b))
}

/// Chromium, or `None` (the test passes) when it is not installed outside CI.
async fn browser() -> Option<Browser> {
    match Browser::launch().await {
        Ok(b) => Some(b),
        Err(LaunchError::Missing) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "SKIPPED: the chromium command is missing; scripts/install-test-deps.sh installs it \
                 (under CI=true this fails)"
            );
            None
        }
        Err(e) => {
            panic!("no browser for the console tests: {e}; run scripts/install-test-deps.sh")
        }
    }
}

/// The PHC string `oftp http hash-password` prints for `password`, as an operator makes one.
fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oftp"))
        .args(["http", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "oftp http hash-password failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Two daemons' configurations in one directory: A in `a/` (console users, B as partner
/// `b`), B in `b/` (A as partner `a`, then `b_tables`).
struct Daemons {
    dir: tempfile::TempDir,
    port_a: u16,
    port_b: u16,
}

/// A started daemon A: its console's address and the admin token its first run printed.
struct Console {
    _server: Server,
    url: String,
    token: String,
}

impl Daemons {
    fn new(b_tables: &str) -> Daemons {
        let d = Daemons {
            dir: tempfile::tempdir().unwrap(),
            port_a: free_port(),
            port_b: free_port(),
        };
        let hash = hash_password(USER.1);
        let a = format!(
            "[local]\nssid = \"O0013AAA\"\npassword = \"APW\"\n\n\
             [server]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"a\"\n\n\
             [gateway.outbox]\ndebounce_ms = 50\npoll_interval_secs = 1\n\n\
             [[http.users]]\nname = \"{}\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n\n\
             [[partners]]\nname = \"b\"\nssid = \"O0013BBB\"\npassword = \"BPW\"\n\
             address = \"127.0.0.1:{}\"\n\n\
             [partners.retry]\nfirst_delay_secs = 1\nmax_delay_secs = 2\njitter = 0.0\n",
            d.port_a, USER.0, d.port_b
        );
        std::fs::write(d.path().join("a.toml"), a).unwrap();
        d.write_b(b_tables);
        d
    }

    fn write_b(&self, tables: &str) {
        let b = format!(
            "[local]\nssid = \"O0013BBB\"\npassword = \"BPW\"\n\n\
             [server]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"b\"\n\n\
             [[partners]]\nname = \"a\"\nssid = \"O0013AAA\"\npassword = \"APW\"\n{tables}",
            self.port_b
        );
        std::fs::write(self.path().join("b.toml"), b).unwrap();
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// B and A started, A with its console.
    fn running(b_tables: &str) -> (Daemons, Server, Console) {
        let daemons = Daemons::new(b_tables);
        let b = daemons.start_b();
        let console = daemons.start_a();
        (daemons, b, console)
    }

    fn start_b(&self) -> Server {
        let (server, lines) = spawn_listening(oftp_serve(self.path(), &["--config", "b.toml"]));
        assert_eq!(lines.len(), 1, "B did not start: {lines:?}");
        server
    }

    /// Starts A (its first run) and reads its console's address and admin token from what it
    /// prints.
    fn start_a(&self) -> Console {
        let mut child = oftp_serve(self.path(), &["--config", "a.toml"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let server = Server(child);
        let (mut url, mut lines) = (None, Vec::new());
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(u) = line.strip_prefix("console and API on ") {
                url = Some(u.trim_end_matches('/').to_owned());
            }
            if let Some(token) = line.trim().strip_prefix("oftp_") {
                return Console {
                    _server: server,
                    url: url.expect("the console address comes before the token"),
                    token: format!("oftp_{token}"),
                };
            }
            lines.push(line);
        }
        panic!("A exited without printing its console address and admin token: {lines:?}");
    }

    /// Puts a file into A's outbox for B (written under a dot-name, then renamed).
    fn drop_file(&self, name: &str, content: &[u8]) {
        let outbox = self.path().join("a/outbox/b");
        std::fs::create_dir_all(&outbox).unwrap();
        let tmp = outbox.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, outbox.join(name)).unwrap();
    }

    /// A's queue rows for B, oldest first.
    fn rows(&self) -> Vec<QueuedFile> {
        let journal = SqliteJournal::open_in_dir(&self.path().join("a")).unwrap();
        let mut rows = journal
            .transfers(&TransferFilter {
                partner: Some("b".into()),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        rows.reverse();
        rows
    }

    /// The content of `name` in B's inbox for A, once it is there.
    fn received(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path().join("b/inbox/a").join(name)).ok()
    }
}

/// Waits up to `limit` for `done` (checked every 100 ms).
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where screenshots go: `docs/` with `OFTP_SCREENSHOTS=docs`, else a scratch folder.
fn screenshot_path(scratch: &Path, name: &str) -> PathBuf {
    if std::env::var("OFTP_SCREENSHOTS").as_deref() == Ok("docs") {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(name)
    } else {
        scratch.join(name)
    }
}

fn assert_png(path: &Path) {
    let png = std::fs::read(path).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "{path:?} is no screenshot"
    );
}

/// Logs in on the log-in page with the token.
async fn log_in_with_token(page: &Page<'_>, console: &Console) {
    page.goto(&format!("{}/login", console.url)).await;
    page.fill("#token", &console.token).await;
    page.click("#login-token").await;
    page.wait_for(
        "document.getElementById('who') && document.getElementById('who').textContent === 'admin (admin)'",
        "the console after a token log-in",
    )
    .await;
}

/// A new tab logged in to `console` with its admin token.
async fn logged_in<'b>(browser: &'b Browser, console: &Console) -> Page<'b> {
    let page = browser.new_page().await;
    log_in_with_token(&page, console).await;
    page
}

/// Fails on every problem the page reported.
fn assert_no_problems(page: &Page<'_>) {
    let problems = page.problems();
    assert!(problems.is_empty(), "the browser reported: {problems:#?}");
}

/// Lets through the problems a refused request causes on purpose (HTTP `status` for `path`),
/// fails on any other.
fn expect_refusals(page: &Page<'_>, status: u16, path: &str) {
    for p in page.problems() {
        let expected = p.contains(&format!("{status}")) && p.contains(path);
        assert!(expected, "the browser reported: {p}");
    }
}

#[tokio::test]
async fn logging_in_with_a_password_or_a_token_and_out_and_a_wrong_password_is_refused() {
    let Some((_turn, browser)) = browser_turn().await else {
        return;
    };
    let daemons = Daemons::new("");
    let console = daemons.start_a();
    let page = browser.new_page().await;

    page.goto(&format!("{}/", console.url)).await;
    page.wait_for(
        "location.pathname === '/login'",
        "the log-in page without a session",
    )
    .await;

    // A wrong password and an unknown user: refused, with the same message, no session.
    let mut messages = Vec::new();
    for (user, password) in [(USER.0, "wrong password"), ("nobody", USER.1)] {
        page.goto(&format!("{}/login", console.url)).await;
        page.fill("#user", user).await;
        page.fill("#password", password).await;
        page.click("#login-user").await;
        page.wait_for("document.querySelector('.message')", "the refusal")
            .await;
        messages.push(page.text(".message").await);
        expect_refusals(&page, 401, "/login");
    }
    assert_eq!(messages[0], "wrong token, or wrong user name or password");
    assert_eq!(
        messages[0], messages[1],
        "an unknown user looks like a wrong password"
    );
    let status = page
        .eval("fetch('/api/v1/session').then(r => r.status)")
        .await;
    assert_eq!(status, 401, "no session after refused log-ins");
    expect_refusals(&page, 401, "/api/v1/session");

    // The user and password log in; the session cookie is out of the page's reach.
    page.goto(&format!("{}/login", console.url)).await;
    page.fill("#user", USER.0).await;
    page.fill("#password", USER.1).await;
    page.press("Enter").await; // the keyboard submits the form
    page.wait_for(
        "document.getElementById('who') && document.getElementById('who').textContent === 'ops (admin)'",
        "the console after the password log-in",
    )
    .await;
    let cookies = page
        .call("Network.getCookies", serde_json::json!({}))
        .await
        .unwrap();
    let session = cookies["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "oftp_session")
        .cloned()
        .expect("the session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert_eq!(session["path"], "/", "{session}");
    assert_eq!(
        page.eval("document.cookie.includes('oftp_session')").await,
        false
    );

    // Keyboard: the first Tab reaches the skip link, which is visible when focused.
    page.press("Tab").await;
    assert_eq!(page.eval("document.activeElement.className").await, "skip");

    // Log out: back at the log-in page, and the old session is gone.
    page.click("#logout").await;
    page.wait_for(
        "location.pathname === '/login'",
        "the log-in page after log-out",
    )
    .await;
    let status = page
        .eval("fetch('/api/v1/session').then(r => r.status)")
        .await;
    assert_eq!(status, 401, "the session ended with the log-out");
    expect_refusals(&page, 401, "/api/v1/session");

    // The token logs in too.
    log_in_with_token(&page, &console).await;
    assert_no_problems(&page);
}

#[tokio::test]
async fn a_file_sent_between_two_daemons_appears_live_with_its_history() {
    let Some((_turn, browser)) = browser_turn().await else {
        return;
    };
    let (daemons, _b, console) = Daemons::running("");
    let page = logged_in(&browser, &console).await;

    page.eval("location.hash = '#/live'").await;
    page.wait_for("document.getElementById('live-empty')", "the live page")
        .await;
    page.wait_for(
        "document.getElementById('live-state').textContent === 'Live updates on'",
        "the live event stream",
    )
    .await;
    page.eval("window.sameDocument = true").await;
    let content = vec![b'x'; 3_000_000];
    daemons.drop_file("live.dat", &content);
    page.wait_for(
        "document.querySelector('#live-rows tr[data-transfer-id]')",
        "the transfer appearing on the live page",
    )
    .await;
    page.wait_for(
        "document.querySelector('#live-rows tr[data-state=\"delivered\"]')",
        "the transfer delivered on the live page",
    )
    .await;
    assert_eq!(
        page.eval("window.sameDocument === true").await,
        true,
        "the live page updated without a reload"
    );
    assert_eq!(daemons.received("LIVE.DAT").as_deref(), Some(&content[..]));
    let id = daemons.rows()[0].id;

    // Its detail: every state it went through.
    page.click(&format!("#live-rows tr[data-transfer-id=\"{id}\"] a"))
        .await;
    page.wait_for("location.hash.startsWith('#/transfer/')", "the detail page")
        .await;
    page.wait_for(
        "[...document.querySelectorAll('main table td [data-state]')].some(e => e.dataset.state === 'delivered')",
        "the delivered step in the history",
    )
    .await;
    let history = page.text("main").await;
    for state in ["queued", "in transfer", "delivered"] {
        assert!(history.contains(state), "{state} missing in: {history}");
    }
    assert!(!history.contains("null"), "{history}");
    // The session that moved it: every OFTP command of its PI trail, DATA as one line.
    let commands = session_commands(&page, "EFPA").await;
    for command in ["SSID", "SFID", "SFPA", "DATA", "EFID", "EFPA", "ESID"] {
        assert!(
            commands.iter().any(|c| c == command),
            "{command} missing in the session trail: {commands:?}"
        );
    }
    assert_eq!(
        commands.iter().filter(|c| *c == "DATA").count(),
        1,
        "one DATA line for the file: {commands:?}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let shot = screenshot_path(scratch.path(), "console-transfer.png");
    page.screenshot(&shot).await;
    assert_png(&shot);

    page.eval("location.hash = '#/overview'").await;
    page.wait_for(
        "document.querySelector('tr[data-partner=\"b\"]')",
        "the partners",
    )
    .await;
    // B's counters: the one file sent (3,000,000 octets), nothing received.
    let sent = "tr[data-partner=\"b\"] td:nth-child(6)";
    let received = "tr[data-partner=\"b\"] td:nth-child(7)";
    page.wait_for(
        &format!("document.querySelector('{sent}').textContent === '1 · 2.9 MiB'"),
        "the partner's sent counters",
    )
    .await;
    assert_eq!(page.text(received).await, "0 · 0 B");
    let shot = screenshot_path(scratch.path(), "console-overview.png");
    page.screenshot(&shot).await;
    assert_png(&shot);

    // A phone: nothing wider than the screen.
    page.viewport(390, 844, true).await;
    page.eval("location.hash = '#/history'").await;
    page.wait_for(
        &format!("document.querySelector('#history-results tr[data-transfer-id=\"{id}\"]')"),
        "the history on a phone",
    )
    .await;
    assert_eq!(
        page.eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        true,
        "the page scrolls sideways on a phone"
    );
    assert_eq!(
        page.eval("getComputedStyle(document.getElementById('error')).display")
            .await,
        "none",
        "no error banner without an error"
    );
    let shot = screenshot_path(scratch.path(), "console-phone.png");
    page.screenshot(&shot).await;
    assert_png(&shot);
    assert_no_problems(&page);
}

/// The OFTP commands of the session trail on a transfer's page, in order, once one of them is
/// `last`.
async fn session_commands(page: &Page<'_>, last: &str) -> Vec<String> {
    let commands = "[...document.querySelectorAll('main table td code')].map(e => e.textContent)";
    page.wait_for(
        &format!("{commands}.includes('{last}')"),
        &format!("{last} in the session trail"),
    )
    .await;
    serde_json::from_value(page.eval(commands).await).unwrap()
}

#[tokio::test]
async fn a_received_file_opens_from_the_history_with_its_session_trail() {
    let Some((_turn, browser)) = browser_turn().await else {
        return;
    };
    let daemons = Daemons::new("");
    let console = daemons.start_a();
    // B's code calls A with `oftp send` and sends one file.
    std::fs::write(daemons.path().join("in.dat"), vec![b'y'; 100_000]).unwrap();
    let out = common::flag_send(
        daemons.path(),
        daemons.port_a,
        ("O0013BBB", "BPW"),
        ("O0013AAA", "APW"),
        "30",
        &["in.dat"],
    );
    assert!(out.status.success(), "{:?}", common::texts(&out));
    let page = logged_in(&browser, &console).await;

    page.eval("location.hash = '#/history'").await;
    page.wait_for(
        "document.querySelector('#history-results tr[data-transfer-id^=\"in-\"]')",
        "the received file in the history",
    )
    .await;
    let id = page
        .eval("document.querySelector('#history-results tr[data-transfer-id^=\"in-\"]').dataset.transferId")
        .await;
    let id = id.as_str().unwrap().to_owned();
    page.click(&format!("#history-results tr[data-transfer-id=\"{id}\"] a"))
        .await;
    page.wait_for(
        &format!("location.hash === '#/transfer/{id}'"),
        "the received file's page",
    )
    .await;
    let commands = session_commands(&page, "EFPA").await;
    for command in ["SFID", "SFPA", "DATA", "EFID", "EFPA"] {
        assert!(
            commands.iter().any(|c| c == command),
            "{command} missing in the session trail: {commands:?}"
        );
    }
    let main = page.text("main").await;
    for text in [
        &format!("Transfer {id}"),
        "received",
        "IN.DAT",
        "from partner",
    ] {
        assert!(main.contains(text), "{text} missing in: {main}");
    }
    assert!(
        page.eval("!document.getElementById('retry') && !document.getElementById('cancel')")
            .await
            == true,
        "no retry or cancel for a received file"
    );
    assert_no_problems(&page);
}

#[tokio::test]
async fn the_live_page_falls_back_to_polling_when_the_event_stream_breaks() {
    let Some((_turn, browser)) = browser_turn().await else {
        return;
    };
    let (daemons, _b, console) = Daemons::running("");
    let page = browser.new_page().await;
    // The event stream cannot be reached (as behind a proxy that cuts it).
    page.call(
        "Network.setBlockedURLs",
        serde_json::json!({ "urls": ["*/api/v1/events*"] }),
    )
    .await
    .unwrap();
    log_in_with_token(&page, &console).await;
    page.eval("location.hash = '#/live'").await;
    page.wait_for(
        "document.getElementById('live-state').textContent.includes('interrupted')",
        "the console saying live updates are interrupted",
    )
    .await;
    daemons.drop_file("polled.txt", b"polled");
    page.wait_for(
        "document.querySelector('#live-rows tr[data-state=\"delivered\"]')",
        "the delivered transfer, found by polling",
    )
    .await;
    assert!(page.text("#live-rows").await.contains("POLLED.TXT"));
    for p in page.problems() {
        assert!(p.contains("/api/v1/events"), "the browser reported: {p}");
    }
}

#[tokio::test]
async fn a_refused_transfer_is_retried_from_the_console_and_its_alert_acknowledged() {
    let Some((_turn, browser)) = browser_turn().await else {
        return;
    };
    // B takes only signed files from A: A's plain file is refused for good (SFNA 20).
    let (daemons, mut b, console) =
        Daemons::running("[partners.security]\nrequired_security = \"signed\"\n");
    daemons.drop_file("retry.txt", b"retry me");
    wait_until(Duration::from_secs(30), "the file rejected", || {
        daemons
            .rows()
            .first()
            .is_some_and(|r| r.state == QueueState::Rejected)
    })
    .await;
    let id = daemons.rows()[0].id;

    let page = logged_in(&browser, &console).await;

    // The alert: shown, acknowledged with its button, gone from the open ones.
    page.wait_for(
        "!document.getElementById('alert-count').hidden && document.getElementById('alert-count').textContent === '1'",
        "one open alert in the navigation",
    )
    .await;
    page.eval("location.hash = '#/alerts'").await;
    page.wait_for(
        "document.querySelector('tr[data-alert-id] button')",
        "the alert",
    )
    .await;
    assert!(page.text("main").await.contains("SFNA 20"));
    page.click("tr[data-alert-id] button").await;
    page.wait_for(
        "document.querySelector('main').textContent.includes('No open alerts.') && document.getElementById('alert-count').hidden",
        "the alert acknowledged",
    )
    .await;
    let journal = SqliteJournal::open_in_dir(&daemons.path().join("a")).unwrap();
    assert!(journal.open_alerts().unwrap().is_empty());

    // B takes plain files again; the retry button sends the file once more.
    b.0.kill().unwrap();
    b.0.wait().unwrap();
    daemons.write_b("");
    let _b = daemons.start_b();
    page.eval(&format!("location.hash = '#/transfer/{id}'"))
        .await;
    page.wait_for("document.getElementById('retry')", "the retry button")
        .await;
    page.click("#retry").await;
    page.wait_for(
        "document.querySelector('dl.fields [data-state=\"delivered\"]')",
        "the retried transfer delivered, live on its page",
    )
    .await;
    assert_eq!(
        daemons.received("RETRY.TXT").as_deref(),
        Some(&b"retry me"[..])
    );
    assert_eq!(daemons.rows()[0].attempts, 2);
    assert_no_problems(&page);
}

#[tokio::test]
async fn a_file_uploaded_in_the_console_is_delivered_to_the_other_daemon() {
    let Some((_turn, browser)) = browser_turn().await else {
        return;
    };
    let (daemons, _b, console) = Daemons::running("");
    let page = logged_in(&browser, &console).await;

    let file = daemons.path().join("upload.dat");
    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    page.eval("location.hash = '#/actions'").await;
    page.wait_for("document.getElementById('upload-file')", "the actions page")
        .await;
    page.fill("#upload-partner", "b").await;
    page.set_file("#upload-file", &file).await;
    page.click("#upload-button").await;
    page.wait_for(
        "document.getElementById('upload-result').textContent.includes('Uploaded')",
        "the upload's confirmation",
    )
    .await;
    let bar: Value = page
        .eval("[document.getElementById('upload-progress').value, document.getElementById('upload-progress').max]")
        .await;
    assert_eq!(bar[0], bar[1], "the progress bar is full: {bar}");
    assert_eq!(bar[0], content.len() as u64, "{bar}");
    wait_until(Duration::from_secs(30), "the upload at B", || {
        daemons.received("UPLOAD.DAT").is_some()
    })
    .await;
    assert!(
        daemons.received("UPLOAD.DAT").unwrap() == content,
        "the file arrived whole"
    );
    assert_no_problems(&page);
}

#[tokio::test]
async fn log_in_refuses_other_sites_and_an_address_after_five_failures_and_pages_have_a_strict_csp()
{
    use reqwest::header;
    let daemons = Daemons::new("");
    let console = daemons.start_a();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", console.url);

    let r = http.get(url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert_eq!(csp, oftp_http::console::CONTENT_SECURITY_POLICY);
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let r = http.get(url("/")).send().await.unwrap();
    assert_eq!(r.status(), 303, "no session: the log-in page");
    assert_eq!(r.headers()[header::LOCATION], "/login");

    // Assets: their type, revalidated by ETag.
    let r = http.get(url("/assets/js/app.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
    let etag = r.headers()[header::ETAG].clone();
    let r = http
        .get(url("/assets/js/app.js"))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = http.get(url("/assets/console.css")).send().await.unwrap();
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert_eq!(
        http.get(url("/assets/nothing.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // A log-in form posted from another site is refused, even with the right token.
    let form = [("token", console.token.as_str())];
    let r = http
        .post(url("/login"))
        .header(header::ORIGIN, "http://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("sent from another site"));

    // The right token from this site: a session cookie, a CSRF token, log-out needs it.
    let r = http
        .post(url("/login"))
        .header(header::ORIGIN, &console.url)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/");
    let cookie = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("oftp_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure without TLS: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let me: Value = http
        .get(url("/api/v1/session"))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&me["name"], &me["role"]),
        (&"admin".into(), &"admin".into())
    );
    let csrf = me["csrf"].as_str().unwrap();
    let r = http
        .post(url("/logout"))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "log-out without the CSRF token");
    let r = http
        .post(url("/logout"))
        .header(header::COOKIE, &session)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .get(url("/api/v1/session"))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the session ended");

    // Five failures, then the address waits, whatever it sends.
    for _ in 0..5 {
        let r = http
            .post(url("/login"))
            .form(&[("user", USER.0), ("password", "wrong")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http.post(url("/login")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("too many failed log-ins from your address; wait")
    );
    // Another address is not held up by this one's failures.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = other.post(url("/login")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "127.0.0.2 logs in");
}

#[tokio::test]
async fn over_https_the_session_cookie_is_secure() {
    let daemons = Daemons::new("");
    let pki = oftp_test_pki::Pki::new();
    let leaf = pki.leaf("console", 1, false);
    let mut a = std::fs::read_to_string(daemons.path().join("a.toml")).unwrap();
    a.push_str(&format!(
        "\n[http]\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
        leaf.cert.display(),
        leaf.key.display()
    ));
    std::fs::write(daemons.path().join("a.toml"), a).unwrap();
    let console = daemons.start_a();
    let addr: std::net::SocketAddr = console
        .url
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
        .resolve("console.example", addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("https://console.example:{}/login", addr.port()))
        .form(&[("token", console.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}
