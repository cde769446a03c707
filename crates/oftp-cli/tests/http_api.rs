//! The HTTP API of a real `oftp serve` on loopback (issue #12 §1): every endpoint, the auth
//! refusals on every route, secrets never in a response or the log, `oftp http token` on a
//! running daemon, pagination over 10,000 transfers, and a 200 MB upload with the daemon's
//! memory bounded, delivered byte-identical to a second daemon.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use oftp::journal::{AlertKind, Journal, NewAlert, QueuedSend, SqliteJournal};
use oftp::oftp_proto::codec::FileFormat;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod common;
use common::{Server, free_port, oftp, oftp_serve, openssl, texts};

const PARTNER_PASSWORD: &str = "Pq93a1eZ";
const LOCAL_PASSWORD: &str = "Lq55d2cZ";
const KEY_PASSWORD: &str = "KeyPw-7c1e40";
const KEY_PASSWORD_ENV: &str = "OFTP_TEST_HTTP_KEY_PW";

/// A running `oftp serve` with its HTTP API: where, the first-run admin token, and everything
/// it printed after that token (standard output and error: its log).
struct Daemon {
    server: Server,
    base: String,
    admin: String,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `oftp serve --config <config>` in `dir` and reads its API address and token.
    fn start(dir: &Path, config: &str) -> Daemon {
        let mut child = oftp_serve(dir, &["--config", config])
            .env(KEY_PASSWORD_ENV, KEY_PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let server = Server(child);
        let log = Arc::new(Mutex::new(String::new()));
        drain(stderr, log.clone());
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let mut base = None;
        let admin = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("oftp serve ended: {seen:?} {}", log.lock().unwrap()))
                .unwrap();
            if let Some(url) = line.strip_prefix("console and API on ") {
                base = Some(url.trim_end_matches('/').to_owned());
            }
            if let Some(token) = line.trim().strip_prefix("oftp_") {
                break format!("oftp_{token}");
            }
            seen.push(line);
        };
        let rest = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = rest.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Daemon {
            server,
            base: base.unwrap_or_else(|| panic!("no API address in {seen:?}")),
            admin,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.server.0.id()
    }

    /// Its VmHWM (peak resident memory) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }
}

fn drain(from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let mut log = into.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// A client that records every body it got, to look for secrets in them.
struct Client {
    http: reqwest::Client,
    base: String,
    bodies: Mutex<Vec<String>>,
}

impl Client {
    fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            bodies: Mutex::new(Vec::new()),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        self.bodies.lock().unwrap().push(text.clone());
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text:?}"));
        (status, body)
    }

    async fn call(&self, method: Method, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(
            self.http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, token).await
    }

    async fn post(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, token).await
    }
}

/// A daemon's configuration in `dir/<name>.toml` with its data in `dir/<name>`: partner `b`
/// (at `b_address`, if any) and partner `c` that calls us; our identity from a PKCS#12 file
/// whose password is in an environment variable.
fn write_config(dir: &Path, name: &str, port: u16, b_address: Option<u16>, extra: &str) {
    let address = b_address
        .map(|p| format!("address = \"127.0.0.1:{p}\"\n"))
        .unwrap_or_default();
    let config = format!(
        "[local]\nssid = \"O0013AAA\"\npassword = \"{LOCAL_PASSWORD}\"\n\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{name}\"\n\n\
         [security.identity]\npkcs12 = \"id.p12\"\npassword_env = \"{KEY_PASSWORD_ENV}\"\n\n\
         [gateway.outbox]\ndebounce_ms = 50\npoll_interval_secs = 1\n\n\
         [[partners]]\nname = \"b\"\nssid = \"O0013BBB\"\npassword = \"{PARTNER_PASSWORD}\"\n\
         {address}\n\
         [[partners]]\nname = \"c\"\nssid = \"O0013CCC\"\npassword = \"{PARTNER_PASSWORD}\"\n\
         {extra}"
    );
    std::fs::write(dir.join(format!("{name}.toml")), config).unwrap();
}

/// `id.p12` in `dir`: a self-signed identity encrypted with [`KEY_PASSWORD`].
fn write_identity(dir: &Path) {
    common::self_signed(dir, "ident");
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-in",
            "ident.pem",
            "-inkey",
            "ident.key",
            "-out",
            "id.p12",
            "-passout",
            &format!("pass:{KEY_PASSWORD}"),
        ],
    );
}

fn send(partner: &str, n: usize) -> QueuedSend {
    QueuedSend {
        partner: partner.into(),
        source_path: PathBuf::from(format!("/nowhere/{partner}/F{n}")),
        virtual_file_name: format!("F{n}"),
        destination: None,
        originator: None,
        format: FileFormat::Unstructured,
        max_record_len: 0,
        user_data: String::new(),
        description: String::new(),
    }
}

/// A directory for a daemon's data: on /dev/shm where it exists (10,000 journal commits and
/// 400 MB of files without waiting for a disk shared with other builds), else the temp dir.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_of_a_real_daemon_with_auth_refusals_and_no_secret_in_any_answer_or_log() {
    let dir = tempfile::tempdir().unwrap();
    write_identity(dir.path());
    // Nothing listens on b's address: a call to b fails, which is all this test needs.
    write_config(dir.path(), "a", free_port(), Some(free_port()), "");
    let alert = SqliteJournal::open_in_dir(&dir.path().join("a"))
        .unwrap()
        .raise_alert(
            &NewAlert {
                kind: AlertKind::FileFailed,
                partner: Some("c".into()),
                file: None,
                text: "raised before the start".into(),
            },
            Utc::now(),
        )
        .unwrap();
    let daemon = Daemon::start(dir.path(), "a.toml");
    let api = Client::new(&daemon.base);
    let admin = daemon.admin.clone();

    // A read token made by the command while the daemon runs works at once.
    let out = oftp(
        dir.path(),
        &[
            "http", "token", "create", "--config", "a.toml", "--name", "viewer", "--role", "read",
        ],
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let read = stdout
        .split_whitespace()
        .find(|w| w.starts_with("oftp_"))
        .unwrap()
        .to_owned();
    let out = oftp(dir.path(), &["http", "token", "list", "--config", "a.toml"]);
    let (list, _) = texts(&out);
    assert!(list.contains("admin") && list.contains("viewer"), "{list}");
    assert!(!list.contains(&read) && !list.contains(&admin), "{list}");

    // Reads.
    let (s, status) = api.get("/api/v1/status", &read).await;
    assert_eq!(
        (s, &status["daemon"]["pid"]),
        (StatusCode::OK, &json!(daemon.pid()))
    );
    let (s, partners) = api.get("/api/v1/partners", &read).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(partners[0]["name"], "b");
    assert_eq!(partners[1]["state"]["name"], "c");
    let (s, b) = api.get("/api/v1/partners/b", &read).await;
    assert_eq!((s, &b["ssid"]), (StatusCode::OK, &json!("O0013BBB")));
    let (s, certs) = api.get("/api/v1/certificates", &read).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        certs
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["partner"].is_null()
                && c["subject"].as_str().unwrap().contains("ident")
                && c["days_left"]
                    .as_i64()
                    .is_some_and(|d| (28..=30).contains(&d))),
        "{certs}"
    );
    let (s, doc) = api.get("/api/openapi.json", &read).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/events"]["get"].is_object());

    // Live events: open before the upload, see its transfer appear.
    let mut events = api
        .http
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);

    // Actions: an upload for c (who calls us) is taken over into the queue and stays there.
    let r = api
        .http
        .post(format!(
            "{}/api/v1/partners/c/files?name=ORDERS.edi",
            api.base
        ))
        .bearer_auth(&admin)
        .body(b"UNA:+.? '".to_vec());
    let (s, up) = api.send(r).await;
    assert_eq!(
        (s, up),
        (
            StatusCode::CREATED,
            json!({"partner": "c", "file": "ORDERS.edi", "bytes": 9})
        )
    );
    let id = wait_for("the upload in the queue", async || {
        let (_, page) = api.get("/api/v1/transfers?partner=c", &read).await;
        page["items"][0]["id"].as_i64()
    })
    .await;
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !seen.contains("event: transfer_changed") {
            let chunk = events.chunk().await.unwrap().expect("stream open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no transfer_changed event: {seen}"));
    assert!(seen.contains(&format!("\"transfer_id\":{id}")), "{seen}");

    let (s, one) = api.get(&format!("/api/v1/transfers/{id}"), &read).await;
    assert_eq!(
        (s, &one["virtual_file_name"]),
        (StatusCode::OK, &json!("ORDERS.EDI"))
    );
    let (s, row) = api
        .post(&format!("/api/v1/transfers/{id}/cancel"), &admin)
        .await;
    assert_eq!((s, &row["state"]), (StatusCode::OK, &json!("cancelled")));
    let (s, row) = api
        .post(&format!("/api/v1/transfers/{id}/retry"), &admin)
        .await;
    assert_eq!(
        (s, &row["error"]),
        (StatusCode::CONFLICT, &json!("refused"))
    );
    let (s, body) = api.post("/api/v1/partners/b/call", &admin).await;
    assert_eq!((s, body), (StatusCode::ACCEPTED, json!({"partner": "b"})));
    let (s, body) = api.post("/api/v1/partners/c/call", &admin).await;
    assert_eq!(
        (s, &body["error"]),
        (StatusCode::CONFLICT, &json!("no_address"))
    );
    let (s, open) = api.get("/api/v1/alerts", &read).await;
    assert_eq!((s, &open[0]["id"]), (StatusCode::OK, &json!(alert)));
    let (s, acked) = api
        .post(&format!("/api/v1/alerts/{alert}/acknowledge"), &admin)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(acked["acknowledged_at"].is_string());
    let (_, all) = api.get("/api/v1/alerts?all=true", &read).await;
    assert!(all.as_array().unwrap().iter().any(|a| a["id"] == alert));

    // No token, a wrong token: 401 on every route; the read token on every action: 403.
    for (method, path, _) in oftp_http::api::routes() {
        let path = path
            .replace("{name}", "c")
            .replace("{id}", &id.to_string())
            .replace("/files", "/files?name=NEVER");
        let url = format!("{}{path}", api.base);
        let (s, e) = api.send(api.http.request(method.clone(), &url)).await;
        assert_eq!(
            (s, &e["error"]),
            (StatusCode::UNAUTHORIZED, &json!("unauthorized")),
            "{path}"
        );
        let (s, e) = api.call(method.clone(), &path, "oftp_not_a_token").await;
        assert_eq!(
            (s, &e["error"]),
            (StatusCode::UNAUTHORIZED, &json!("unauthorized")),
            "{path}"
        );
        if method == Method::POST {
            let (s, e) = api.call(method, &path, &read).await;
            assert_eq!(
                (s, &e["error"]),
                (StatusCode::FORBIDDEN, &json!("forbidden")),
                "{path}"
            );
        }
    }
    assert!(!dir.path().join("a/outbox/c/NEVER").exists());

    // A revoked token stops working on the running daemon.
    let out = oftp(
        dir.path(),
        &["http", "token", "revoke", "--config", "a.toml", "viewer"],
    );
    assert!(out.status.success(), "{:?}", texts(&out));
    let (s, _) = api.get("/api/v1/status", &read).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // No password, key password or token in any answer, nor in the log.
    drop(events);
    let secrets = [
        PARTNER_PASSWORD,
        LOCAL_PASSWORD,
        KEY_PASSWORD,
        &admin,
        &read,
    ];
    let bodies = api.bodies.lock().unwrap().join("\n");
    for secret in secrets {
        assert!(!bodies.contains(secret), "{secret} in an answer");
        assert!(!seen.contains(secret), "{secret} in an event");
    }
    drop(daemon.server);
    std::thread::sleep(Duration::from_millis(200));
    let log = daemon.log.lock().unwrap();
    assert!(log.contains("call requested over the API"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "a log written to a pipe has no terminal colour codes: {log}"
    );
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_walks_10000_transfers_newest_first_each_once() {
    const ROWS: usize = 10_000;
    let dir = scratch();
    write_identity(dir.path());
    write_config(dir.path(), "a", free_port(), None, "");
    {
        // Before the start, through the journal trait: rows for c (who calls us), so
        // nothing claims them while the test pages.
        let journal = SqliteJournal::open_in_dir(&dir.path().join("a")).unwrap();
        let at = Utc::now();
        for n in 0..ROWS {
            journal.enqueue(&send("c", n), at).unwrap();
        }
    }
    let daemon = Daemon::start(dir.path(), "a.toml");
    let api = Client::new(&daemon.base);
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/v1/transfers?limit=700".to_owned(),
            Some(c) => format!("/api/v1/transfers?limit=700&cursor={c}"),
        };
        let (s, page) = api.get(&path, &daemon.admin).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages += 1;
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages <= ROWS / 700 + 1, "the walk does not end");
    }
    assert_eq!(pages, ROWS.div_ceil(700));
    assert_eq!(ids.len(), ROWS);
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, each once"
    );
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ROWS, "no row twice");
    assert_eq!(
        (sorted[0], sorted[ROWS - 1]),
        (1, ROWS as i64),
        "none missing"
    );
}

/// Octet `i` of the big upload.
fn octet(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_keeps_the_daemon_under_64_mib_and_arrives_identical_at_the_partner() {
    const SIZE: u64 = 200 * 1024 * 1024;
    const CHUNK: u64 = 256 * 1024;
    let dir = scratch();
    write_identity(dir.path());
    let (port_a, port_b) = (free_port(), free_port());
    write_config(dir.path(), "a", port_a, Some(port_b), "");
    // B: knows A as partner b... of its own; the same identity file and passwords.
    let b = format!(
        "[local]\nssid = \"O0013BBB\"\npassword = \"{PARTNER_PASSWORD}\"\n\n\
         [server]\nlisten = \"127.0.0.1:{port_b}\"\ndata_dir = \"b\"\n\n\
         [[partners]]\nname = \"a\"\nssid = \"O0013AAA\"\npassword = \"{LOCAL_PASSWORD}\"\n"
    );
    std::fs::write(dir.path().join("b.toml"), b).unwrap();
    let _receiver = Daemon::start(dir.path(), "b.toml");
    let sender = Daemon::start(dir.path(), "a.toml");

    let chunks = futures_util::stream::iter((0..SIZE / CHUNK).map(|c| {
        let start = c * CHUNK;
        Ok::<_, std::io::Error>((start..start + CHUNK).map(octet).collect::<Vec<u8>>())
    }));
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/partners/b/files?name=BIG.bin",
            sender.base
        ))
        .bearer_auth(&sender.admin)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["bytes"], SIZE);
    let after_upload = sender.peak_rss_kib();

    // B stores it under its virtual file name in its inbox for A.
    let inbox = dir.path().join("b/inbox/a");
    let received = wait_for_file(&inbox, SIZE, Duration::from_secs(600));
    let peak = sender.peak_rss_kib();
    println!(
        "sending daemon: peak RSS {after_upload} KiB after the upload, {peak} KiB after the transfer"
    );
    assert!(
        peak < 64 * 1024,
        "the sending daemon's peak RSS was {peak} KiB ({after_upload} KiB after the upload)"
    );
    let mut file = std::fs::File::open(&received).unwrap();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut at = 0u64;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, octet(at + k as u64), "octet {} differs", at + k as u64);
        }
        at += n as u64;
    }
    assert_eq!(at, SIZE);
}

/// The first regular file of `size` octets in `dir` (not a dot-name), waiting up to `limit`.
fn wait_for_file(dir: &Path, size: u64, limit: Duration) -> PathBuf {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.map_while(Result::ok) {
                let p = e.path();
                let name = e.file_name();
                if !name.to_string_lossy().starts_with('.')
                    && p.metadata().is_ok_and(|m| m.is_file() && m.len() == size)
                {
                    return p;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing of {size} octets arrived in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `oftp http hash-password` on a pseudo-terminal (Python's `pty`), typing `answers`
/// one per prompt; returns what the terminal showed and the exit code.
fn hash_password_on_a_terminal(answers: &[&str]) -> (String, i32) {
    const DRIVER: &str = r#"
import json, os, pty, select, sys, termios, time
bin, answers = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(bin, [bin, "http", "hash-password"])
shown = b""
def read_until(marker):
    global shown
    while marker is None or shown.count(b": ") < marker:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            sys.exit("no prompt within 30 s; the terminal showed: %r" % shown)
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            return
        if not chunk:
            return
        shown += chunk
def wait_for_no_echo():
    """Types only once the program turned the terminal's echo off (as a person would be
    slower than the program): a terminal that never stops echoing fails the test."""
    for _ in range(500):
        if not termios.tcgetattr(fd)[3] & termios.ECHO:
            return
        time.sleep(0.01)
    sys.exit("the terminal still echoes after the prompt; the terminal showed: %r" % shown)
for i, answer in enumerate(answers):
    read_until(i + 1)
    wait_for_no_echo()
    os.write(fd, answer.encode() + b"\n")
read_until(None)
_, status = os.waitpid(pid, 0)
print(json.dumps({"shown": shown.decode(errors="replace"), "code": os.waitstatus_to_exitcode(status)}))
"#;
    let bin = assert_cmd::cargo::cargo_bin("oftp");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(&bin)
        .args(answers)
        .output()
        .expect("python3 runs (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "the terminal driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["shown"].as_str().unwrap().to_owned(),
        v["code"].as_i64().unwrap() as i32,
    )
}

/// On a terminal the password is asked twice and never shown as it is typed; two different
/// answers are refused, saying what to do.
#[test]
fn hash_password_on_a_terminal_asks_twice_without_showing_the_password() {
    let secret = "Tr0ub4dor&3-horse";
    let (shown, code) = hash_password_on_a_terminal(&[secret, secret]);
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains(secret), "the password was echoed: {shown}");
    assert!(shown.contains("again"), "asked once only: {shown}");
    let phc = shown
        .lines()
        .find(|l| l.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash printed: {shown}"));
    use argon2::PasswordVerifier as _;
    argon2::Argon2::default()
        .verify_password(
            secret.as_bytes(),
            &argon2::PasswordHash::new(phc.trim()).unwrap(),
        )
        .expect("the hash is the typed password's");

    let (shown, code) = hash_password_on_a_terminal(&[secret, "something else"]);
    assert_ne!(code, 0, "{shown}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("differ"), "{shown}");
    assert!(!shown.contains("$argon2id$"), "{shown}");
}
