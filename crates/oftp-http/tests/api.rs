//! The REST API over a real `HttpServer` on loopback, with a real SQLite journal and
//! `Operations`; the running gateway is a small `GatewayRuntime` of this test (its call state,
//! calls asked for and a broadcast channel of events). The API against a real `oftp serve` is
//! tested in `crates/oftp-cli/tests/http_api.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use oftp::journal::{AlertKind, Journal, NewAlert, QueuedSend, SqliteJournal};
use oftp::oftp_proto::codec::FileFormat;
use oftp_gateway::control::Operations;
use oftp_gateway::{CallNowError, GatewayEvent, GatewayRuntime, PartnerState, SystemClock};
use oftp_http::auth::Role;
use oftp_http::auth::tokens::TokenStore;
use oftp_http::{HttpContext, HttpServer, HttpSettings, PartnerInfo};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

/// The gateway as the API sees it: two partners, `acme` callable, `beta` calling us.
struct TestRuntime {
    events: broadcast::Sender<GatewayEvent>,
    calls: Mutex<Vec<String>>,
}

impl GatewayRuntime for TestRuntime {
    fn partners(&self) -> Vec<PartnerState> {
        ["acme", "beta"]
            .iter()
            .map(|n| PartnerState {
                name: (*n).into(),
                address: (*n == "acme").then(|| "127.0.0.1:1".into()),
                last_call: None,
                next_call: None,
                sessions: 0,
                max_sessions: 1,
            })
            .collect()
    }
    fn call_now(&self, partner: &str) -> Result<(), CallNowError> {
        match partner {
            "acme" => {
                self.calls.lock().unwrap().push(partner.into());
                Ok(())
            }
            "beta" => Err(CallNowError::NoAddress(partner.into())),
            _ => Err(CallNowError::UnknownPartner(partner.into())),
        }
    }
    fn files_due(&self, _: &str) {}
    fn subscribe(&self) -> broadcast::Receiver<GatewayEvent> {
        self.events.subscribe()
    }
}

struct Api {
    server: Option<HttpServer>,
    base: String,
    admin: String,
    read: String,
    journal: Arc<dyn Journal>,
    runtime: Arc<TestRuntime>,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

fn partner(dir: &Path, name: &str) -> PartnerInfo {
    PartnerInfo {
        name: name.into(),
        ssid: format!("O0013{}", name.to_uppercase()),
        address: None,
        outbox: dir.join("outbox").join(name),
        settings: json!({ "sfid": "O0013X" }),
    }
}

/// What the daemon would hand over for data directory `dir`: a SQLite journal in it, a
/// [`TestRuntime`] with a channel of `events_capacity`, partners `acme` and `beta`.
fn context(dir: &Path, events_capacity: usize) -> (HttpContext, Arc<TestRuntime>) {
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(dir).unwrap());
    let runtime = Arc::new(TestRuntime {
        events: broadcast::channel(events_capacity).0,
        calls: Mutex::new(Vec::new()),
    });
    let rt: Arc<dyn GatewayRuntime> = runtime.clone();
    let ctx = HttpContext {
        ops: Operations::new(journal.clone(), rt.clone(), Arc::new(SystemClock)),
        runtime: rt,
        journal,
        data_dir: dir.to_path_buf(),
        partners: vec![partner(dir, "acme"), partner(dir, "beta")],
        certificates: Arc::new(Vec::new),
        disk_low_mib: 0,
        listeners: Arc::new(Vec::new),
    };
    (ctx, runtime)
}

async fn start(settings: HttpSettings, events_capacity: usize) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, runtime) = context(dir.path(), events_capacity);
    let journal = ctx.journal.clone();
    let settings = HttpSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..settings
    };
    let server = HttpServer::start(settings.clone(), ctx).await.unwrap();
    let admin = server.first_admin_token().unwrap().to_owned();
    let read = TokenStore::open(&settings.tokens_path(dir.path()))
        .unwrap()
        .create("viewer", Role::Read, Utc::now())
        .unwrap();
    Api {
        base: format!("http://{}", server.local_addr()),
        server: Some(server),
        admin,
        read,
        journal,
        runtime,
        dir,
        client: reqwest::Client::new(),
    }
}

impl Api {
    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        json_of(r).await
    }

    async fn post(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        json_of(r).await
    }

    async fn upload(&self, partner: &str, name: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}/api/v1/partners/{partner}/files", self.base))
            .query(&[("name", name)])
            .bearer_auth(&self.admin)
            .body(body)
            .send()
            .await
            .unwrap();
        json_of(r).await
    }

    fn enqueue(&self, partner: &str, name: &str) -> i64 {
        self.journal
            .enqueue(&send(partner, name), Utc::now())
            .unwrap()
    }

    fn outbox(&self, partner: &str) -> PathBuf {
        self.dir.path().join("outbox").join(partner)
    }
}

fn send(partner: &str, name: &str) -> QueuedSend {
    QueuedSend {
        partner: partner.into(),
        source_path: PathBuf::from(format!("/q/{partner}/{name}")),
        virtual_file_name: name.into(),
        destination: None,
        originator: None,
        format: FileFormat::Unstructured,
        max_record_len: 0,
        user_data: String::new(),
        description: String::new(),
    }
}

/// The status and JSON body of `r`; a body that is not JSON fails the test (errors are JSON).
async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"));
    (status, body)
}

fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{:?}", got.1);
    assert_eq!(got.1["error"], code, "{:?}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{:?}",
        got.1
    );
}

#[tokio::test]
async fn reads_answer_with_the_operations_views_and_errors_are_json() {
    let api = start(HttpSettings::default(), 16).await;
    let id = api.enqueue("acme", "ORDERS");
    api.enqueue("beta", "INVOIC");

    let (s, status) = api.get("/api/v1/status", &api.read).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["daemon"]["pid"], std::process::id());
    assert_eq!(status["queue"][0], json!({"state": "queued", "count": 2}));

    let (s, partners) = api.get("/api/v1/partners", &api.read).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(partners.as_array().unwrap().len(), 2);
    assert_eq!(partners[0]["name"], "acme");
    assert_eq!(partners[0]["ssid"], "O0013ACME");
    assert_eq!(partners[0]["settings"]["sfid"], "O0013X");
    assert_eq!(partners[0]["state"]["address"], "127.0.0.1:1");
    assert_eq!(partners[0]["state"]["max_sessions"], 1);
    let (s, beta) = api.get("/api/v1/partners/beta", &api.read).await;
    assert_eq!((s, &beta["name"]), (StatusCode::OK, &json!("beta")));
    assert_error(
        &api.get("/api/v1/partners/nobody", &api.read).await,
        StatusCode::NOT_FOUND,
        "unknown_partner",
    );

    let (s, page) = api.get("/api/v1/transfers?partner=acme", &api.read).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["virtual_file_name"], "ORDERS");
    assert_eq!(
        page["next_cursor"],
        Value::Null,
        "a page that is not full is the last"
    );
    let (_, page) = api.get("/api/v1/transfers?limit=1", &api.read).await;
    assert_eq!(
        page["items"][0]["virtual_file_name"], "INVOIC",
        "newest first"
    );
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a full page has a cursor");
    let (_, page) = api
        .get(
            &format!("/api/v1/transfers?limit=1&cursor={cursor}"),
            &api.read,
        )
        .await;
    assert_eq!(page["items"][0]["id"], id);
    assert_error(
        &api.get("/api/v1/transfers?cursor=nonsense", &api.read)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_cursor",
    );

    let (s, one) = api.get(&format!("/api/v1/transfers/{id}"), &api.read).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["history"][0]["to"], "queued");
    for (path, status, code) in [
        (
            "/api/v1/transfers/999",
            StatusCode::NOT_FOUND,
            "unknown_transfer",
        ),
        (
            "/api/v1/transfers?state=lost",
            StatusCode::BAD_REQUEST,
            "unknown_state",
        ),
        // A transfer id that is neither `42` nor `in-42`.
        (
            "/api/v1/transfers/abc",
            StatusCode::BAD_REQUEST,
            "bad_transfer_id",
        ),
        // axum's own rejections come as the same JSON shape, 400.
        (
            "/api/v1/transfers?limit=many",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/transfers?colour=red",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/alerts?all=maybe",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        assert_error(&api.get(path, &api.read).await, status, code);
    }

    let r = api
        .client
        .delete(format!("{}/api/v1/status", api.base))
        .bearer_auth(&api.read)
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(r).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    let (s, certs) = api.get("/api/v1/certificates", &api.read).await;
    assert_eq!((s, certs), (StatusCode::OK, json!([])));
    let (s, doc) = api.get("/api/openapi.json", &api.read).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/transfers/{id}/retry"]["post"].is_object());
}

#[tokio::test]
async fn actions_change_the_journal_and_refusals_have_their_status() {
    let api = start(HttpSettings::default(), 16).await;
    let id = api.enqueue("acme", "ORDERS");

    let (s, body) = api.post("/api/v1/partners/acme/call", &api.admin).await;
    assert_eq!(
        (s, body),
        (StatusCode::ACCEPTED, json!({"partner": "acme"}))
    );
    assert_eq!(*api.runtime.calls.lock().unwrap(), ["acme"]);
    assert_error(
        &api.post("/api/v1/partners/beta/call", &api.admin).await,
        StatusCode::CONFLICT,
        "no_address",
    );
    assert_error(
        &api.post("/api/v1/partners/nobody/call", &api.admin).await,
        StatusCode::NOT_FOUND,
        "unknown_partner",
    );

    // A retry makes it due now; a cancel ends it; then both are refused by the journal.
    let (s, row) = api
        .post(&format!("/api/v1/transfers/{id}/retry"), &api.admin)
        .await;
    assert_eq!((s, &row["state"]), (StatusCode::OK, &json!("queued")));
    let (s, row) = api
        .post(&format!("/api/v1/transfers/{id}/cancel"), &api.admin)
        .await;
    assert_eq!((s, &row["state"]), (StatusCode::OK, &json!("cancelled")));
    assert_error(
        &api.post(&format!("/api/v1/transfers/{id}/cancel"), &api.admin)
            .await,
        StatusCode::CONFLICT,
        "refused",
    );
    assert_error(
        &api.post(&format!("/api/v1/transfers/{id}/retry"), &api.admin)
            .await,
        StatusCode::CONFLICT,
        "refused",
    );
    assert_error(
        &api.post("/api/v1/transfers/999/cancel", &api.admin).await,
        StatusCode::NOT_FOUND,
        "unknown_transfer",
    );
    // A received file has no queue row to act on: refused, saying so.
    for action in ["retry", "cancel"] {
        let got = api
            .post(&format!("/api/v1/transfers/in-1/{action}"), &api.admin)
            .await;
        assert_error(&got, StatusCode::CONFLICT, "refused");
        assert!(got.1["message"].as_str().unwrap().contains("received file"));
    }

    let alert = api
        .journal
        .raise_alert(
            &NewAlert {
                kind: AlertKind::FileFailed,
                partner: Some("acme".into()),
                file: Some("ORDERS".into()),
                text: "it failed".into(),
            },
            Utc::now(),
        )
        .unwrap();
    let (_, open) = api.get("/api/v1/alerts", &api.read).await;
    assert_eq!(open[0]["id"], alert);
    let (s, acked) = api
        .post(&format!("/api/v1/alerts/{alert}/acknowledge"), &api.admin)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(acked["acknowledged_at"].is_string());
    assert_eq!(api.get("/api/v1/alerts", &api.read).await.1, json!([]));
    assert_eq!(
        api.get("/api/v1/alerts?all=true", &api.read).await.1[0]["id"],
        alert
    );
    assert_error(
        &api.post("/api/v1/alerts/999/acknowledge", &api.admin).await,
        StatusCode::NOT_FOUND,
        "unknown_alert",
    );
}

#[tokio::test]
async fn no_token_wrong_token_and_read_token_on_an_action_are_refused_as_json() {
    let api = start(HttpSettings::default(), 16).await;
    let routes = oftp_http::api::routes();
    for (method, path, _) in &routes {
        let path = path
            .replace("{name}", "acme")
            .replace("{id}", "1")
            .replace("/files", "/files?name=x");
        let url = format!("{}{path}", api.base);
        for token in [None, Some("oftp_wrong")] {
            let mut req = api.client.request(method.clone(), &url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert!(r.headers().contains_key("www-authenticate"), "{path}");
            assert_error(&json_of(r).await, StatusCode::UNAUTHORIZED, "unauthorized");
        }
        if *method == reqwest::Method::POST {
            let r = api
                .client
                .post(&url)
                .bearer_auth(&api.read)
                .send()
                .await
                .unwrap();
            assert_error(&json_of(r).await, StatusCode::FORBIDDEN, "forbidden");
        }
    }
    assert!(api.runtime.calls.lock().unwrap().is_empty());
    assert!(!api.outbox("acme").join("x").exists());
}

async fn read_until(stream: &mut reqwest::Response, buf: &mut String, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !buf.contains(what) {
            let chunk = stream.chunk().await.unwrap().expect("stream ended");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what:?} in {buf:?}"));
}

#[tokio::test(flavor = "current_thread")]
async fn live_events_are_named_by_their_tag_and_a_lagging_client_is_told_and_goes_on() {
    let api = start(HttpSettings::default(), 4).await;
    let mut stream = api
        .client
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&api.read)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let changed = |n: i64| GatewayEvent::TransferChanged {
        transfer_id: n,
        partner: "acme".into(),
        state: "queued".into(),
    };
    // Subscribed once the headers came; on this one thread nothing reads while these go.
    for n in 0..10 {
        api.runtime.events.send(changed(n)).unwrap();
    }
    let mut buf = String::new();
    read_until(&mut stream, &mut buf, "event: lagged\ndata: {\"missed\":6}").await;
    read_until(&mut stream, &mut buf, "\"transfer_id\":9").await;
    assert!(
        buf.contains(
            "event: transfer_changed\ndata: {\"event\":\"transfer_changed\",\"transfer_id\":6,"
        ),
        "{buf}"
    );
    // It goes on after the lag.
    api.runtime
        .events
        .send(GatewayEvent::AlertRaised { alert_id: 7 })
        .unwrap();
    read_until(
        &mut stream,
        &mut buf,
        "event: alert_raised\ndata: {\"event\":\"alert_raised\",\"alert_id\":7}",
    )
    .await;
}

#[tokio::test]
async fn shutdown_returns_promptly_with_an_event_stream_open_and_ends_it() {
    let mut api = start(HttpSettings::default(), 16).await;
    let mut stream = api
        .client
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&api.read)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let server = api.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown waited for the open event stream");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the stream did not end");
    end.unwrap();
}

#[tokio::test]
async fn an_upload_lands_whole_under_its_name_and_bad_ones_leave_nothing() {
    let api = start(
        HttpSettings {
            max_upload_mib: 1,
            ..HttpSettings::default()
        },
        16,
    )
    .await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (s, body) = api.upload("acme", "ORDERS.edi", data.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        body,
        json!({"partner": "acme", "file": "ORDERS.edi", "bytes": 300_000})
    );
    assert_eq!(
        std::fs::read(api.outbox("acme").join("ORDERS.edi")).unwrap(),
        data
    );

    assert_error(
        &api.upload("acme", "ORDERS.edi", b"other".to_vec()).await,
        StatusCode::CONFLICT,
        "exists",
    );
    assert_eq!(
        std::fs::read(api.outbox("acme").join("ORDERS.edi")).unwrap(),
        data,
        "an existing file is never replaced"
    );
    for bad in ["../escape", ".hidden", "x.tmp", ""] {
        assert_error(
            &api.upload("acme", bad, b"x".to_vec()).await,
            StatusCode::BAD_REQUEST,
            "invalid_name",
        );
    }
    assert_error(
        &api.upload("nobody", "x", b"x".to_vec()).await,
        StatusCode::NOT_FOUND,
        "unknown_partner",
    );
    // Over the limit: said up front (Content-Length) ...
    assert_error(
        &api.upload("acme", "big", vec![0; 1024 * 1024 + 1]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    // ... or found while streaming (chunked, no length).
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![0u8; 64 * 1024])));
    let r = api
        .client
        .post(format!("{}/api/v1/partners/acme/files?name=big", api.base))
        .bearer_auth(&api.admin)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(r).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert_eq!(outbox_names(&api.outbox("acme")), ["ORDERS.edi"]);
    assert!(!api.outbox("acme").join("../escape").exists());
}

fn outbox_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_no_file_and_no_temporary() {
    let api = start(HttpSettings::default(), 16).await;
    let mut tcp = tokio::net::TcpStream::connect(api.server.as_ref().unwrap().local_addr())
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/partners/acme/files?name=PART HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {}\r\ncontent-length: 1000000\r\n\r\n",
        api.admin
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[7u8; 200_000]).await.unwrap();
    // The temporary appears while the body comes ...
    let outbox = api.outbox("acme");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !outbox.is_dir() || outbox_names(&outbox).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no temporary appeared");
    let names = outbox_names(&outbox);
    assert!(
        names.len() == 1 && names[0].starts_with(".upload-") && names[0].ends_with(".tmp"),
        "{names:?}"
    );
    // ... and goes with the client.
    drop(tcp);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !outbox_names(&outbox).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("left behind: {:?}", outbox_names(&outbox)));
    // The server is still fine.
    let mut tcp = tokio::net::TcpStream::connect(api.server.as_ref().unwrap().local_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /api/v1/partners HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test]
async fn with_a_certificate_and_key_the_api_is_served_over_https_only() {
    let pki = oftp_test_pki::Pki::new();
    let leaf = pki.leaf("api", 1, false);
    let api = start(
        HttpSettings {
            tls_certificate: Some(leaf.cert.clone()),
            tls_key: Some(leaf.key.clone()),
            ..HttpSettings::default()
        },
        16,
    )
    .await;
    let addr = api.server.as_ref().unwrap().local_addr();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
        .resolve("api.example", addr)
        .build()
        .unwrap();
    let r = client
        .get(format!("https://api.example:{}/api/v1/status", addr.port()))
        .bearer_auth(&api.read)
        .send()
        .await
        .unwrap();
    let (s, status) = json_of(r).await;
    assert_eq!(
        (s, &status["daemon"]["pid"]),
        (StatusCode::OK, &json!(std::process::id()))
    );
    // Plain HTTP on the same port gets no answer.
    let plain = api
        .client
        .get(format!("http://{addr}/api/v1/status"))
        .bearer_auth(&api.read)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test]
async fn a_certificate_without_its_key_or_an_unreadable_one_stops_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = oftp_test_pki::Pki::new();
    let leaf = pki.leaf("api", 1, false);
    let other = pki.leaf("other", 2, false);
    for (cert, key, says) in [
        (Some(leaf.cert.clone()), None, "go together"),
        (
            Some(dir.path().join("missing.pem")),
            Some(leaf.key.clone()),
            "missing.pem",
        ),
        (
            Some(leaf.cert.clone()),
            Some(other.key.clone()),
            "usable pair",
        ),
    ] {
        let (ctx, _) = context(dir.path(), 1);
        let settings = HttpSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_certificate: cert,
            tls_key: key,
            ..HttpSettings::default()
        };
        let e = HttpServer::start(settings.clone(), ctx).await.unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
        // No admin token was made by a start that failed (it could never be shown).
        let tokens = TokenStore::open(&settings.tokens_path(dir.path())).unwrap();
        assert!(tokens.list().unwrap().is_empty());
    }
}
