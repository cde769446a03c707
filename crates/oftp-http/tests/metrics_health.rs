//! `/metrics`, `/healthz` and `/readyz` of a real HTTP server on 127.0.0.1 over a real SQLite
//! journal in a temporary data directory; the gateway runtime is a stand-in whose live events
//! the test publishes (the real runtime's events are checked in oftp-gateway's tests, the
//! whole daemon in oftp-cli's `http_metrics`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oftp::journal::{Journal, QueuedSend, SqliteJournal};
use oftp::oftp_proto::codec::FileFormat;
use oftp_gateway::control::Operations;
use oftp_gateway::{CallNowError, GatewayEvent, GatewayRuntime, PartnerState, SystemClock};
use oftp_http::{HttpContext, HttpServer, HttpSettings, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

/// A runtime whose events the test sends.
struct Runtime {
    events: broadcast::Sender<GatewayEvent>,
}

impl GatewayRuntime for Runtime {
    fn partners(&self) -> Vec<PartnerState> {
        Vec::new()
    }

    fn call_now(&self, partner: &str) -> Result<(), CallNowError> {
        Err(CallNowError::UnknownPartner(partner.into()))
    }

    fn files_due(&self, _: &str) {}

    fn subscribe(&self) -> broadcast::Receiver<GatewayEvent> {
        self.events.subscribe()
    }
}

/// A daemon's HTTP face over a fresh data directory.
struct Face {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    journal: Arc<dyn Journal>,
    events: broadcast::Sender<GatewayEvent>,
    /// What the listener probe answers.
    listening: Arc<Mutex<Option<SocketAddr>>>,
    server: HttpServer,
    token: String,
}

impl Face {
    async fn start(disk_low_mib: u64) -> Face {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_owned();
        let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(&data_dir).unwrap());
        let events = broadcast::channel(64).0;
        let runtime: Arc<dyn GatewayRuntime> = Arc::new(Runtime {
            events: events.clone(),
        });
        let listening = Arc::new(Mutex::new(Some("127.0.0.1:3305".parse().unwrap())));
        let probe = listening.clone();
        let ctx = HttpContext {
            ops: Operations::new(journal.clone(), runtime.clone(), Arc::new(SystemClock)),
            runtime,
            journal: journal.clone(),
            data_dir: data_dir.clone(),
            partners: Vec::new(),
            certificates: Arc::new(Vec::new),
            disk_low_mib,
            listeners: Arc::new(move || {
                vec![Listener {
                    kind: "plain",
                    addr: *probe.lock().unwrap(),
                }]
            }),
        };
        let settings = HttpSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..HttpSettings::default()
        };
        let server = HttpServer::start(settings, ctx).await.unwrap();
        let token = server.first_admin_token().unwrap().to_owned();
        Face {
            _dir: dir,
            data_dir,
            journal,
            events,
            listening,
            server,
            token,
        }
    }

    /// `GET path` with the admin token, or none.
    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        get(self.server.local_addr(), path, token).await
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request on its own connection.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// The value of the sample `name` with exactly `labels`, as the Prometheus parser reads it.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        })
}

fn queued(partner: &str, name: &str) -> QueuedSend {
    QueuedSend {
        partner: partner.into(),
        source_path: format!("/out/{partner}/.queue/1/{name}").into(),
        virtual_file_name: name.to_uppercase(),
        destination: None,
        originator: None,
        format: FileFormat::Unstructured,
        max_record_len: 0,
        user_data: String::new(),
        description: String::new(),
    }
}

#[tokio::test]
async fn metrics_need_a_token_and_show_live_events_and_the_journal_at_scrape_time() {
    let face = Face::start(0).await;
    let r = face.get("/metrics", None).await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = face.get("/metrics", Some("not-a-token")).await;
    assert_eq!(r.status, 401, "{r:?}");

    face.journal
        .enqueue(&queued("acme", "orders"), chrono::Utc::now())
        .unwrap();
    face.journal
        .enqueue(&queued("acme", "invoic"), chrono::Utc::now())
        .unwrap();
    for e in [
        GatewayEvent::SessionStarted {
            partner: "acme".into(),
            outgoing_call: true,
        },
        GatewayEvent::FileCompleted {
            partner: "acme".into(),
            outgoing: true,
            virtual_file_name: "ORDERS".into(),
            bytes: 4321,
            transfer_id: Some(1),
        },
    ] {
        face.events.send(e).unwrap();
    }
    // The feeding task counts them soon after.
    let mut text = String::new();
    for _ in 0..100 {
        let r = face.get("/metrics", Some(&face.token)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.head
                .contains("content-type: application/openmetrics-text"),
            "{r:?}"
        );
        text = r.body;
        if value(
            &text,
            "oftp_files_total",
            &[("partner", "acme"), ("direction", "out")],
        )
        .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = |name, labels: &[(&str, &str)]| value(&text, name, labels);
    assert_eq!(
        v(
            "oftp_files_total",
            &[("partner", "acme"), ("direction", "out")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        v(
            "oftp_bytes_total",
            &[("partner", "acme"), ("direction", "out")]
        ),
        Some(4321.0)
    );
    assert_eq!(v("oftp_sessions_active", &[("role", "caller")]), Some(1.0));
    assert_eq!(v("oftp_queue_files", &[("state", "queued")]), Some(2.0));
    assert_eq!(v("oftp_queue_files", &[("state", "delivered")]), Some(0.0));
    assert_eq!(v("oftp_alerts_open", &[]), Some(0.0));
    let size = v("oftp_journal_size_bytes", &[]).unwrap();
    let file = std::fs::metadata(face.data_dir.join(oftp::journal::JOURNAL_FILE))
        .unwrap()
        .len();
    assert!(size >= file as f64, "{size} < {file}");
    assert!(
        !text.contains("oftp_certificate_expiry_seconds"),
        "no certificates, no expiry\n{text}"
    );
    face.server.shutdown().await;
}

#[tokio::test]
async fn healthz_answers_without_a_token() {
    let face = Face::start(0).await;
    let r = face.get("/healthz", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    face.server.shutdown().await;
}

fn failed_checks(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn readyz_is_200_when_listening_writable_and_with_room() {
    let face = Face::start(1).await;
    let r = face.get("/readyz", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({"ready": true, "failed": []}));
    face.server.shutdown().await;
}

#[tokio::test]
async fn readyz_is_503_naming_a_listener_that_does_not_listen() {
    let face = Face::start(0).await;
    *face.listening.lock().unwrap() = None;
    let r = face.get("/readyz", None).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(failed_checks(&r.body), ["listening"], "{}", r.body);
    assert!(r.body.contains("plain"), "{}", r.body);
    face.server.shutdown().await;
}

#[tokio::test]
async fn readyz_is_503_naming_the_journal_while_another_writer_holds_it_locked() {
    let face = Face::start(0).await;
    let other =
        rusqlite::Connection::open(face.data_dir.join(oftp::journal::JOURNAL_FILE)).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = face.get("/readyz", None).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(failed_checks(&r.body), ["journal"], "{}", r.body);
    other.execute_batch("ROLLBACK").unwrap();
    let r = face.get("/readyz", None).await;
    assert_eq!(r.status, 200, "ready again once the lock is gone: {r:?}");
    face.server.shutdown().await;
}

#[tokio::test]
async fn readyz_is_503_naming_the_disk_below_disk_low_mib() {
    // More MiB than any disk has.
    let face = Face::start(u64::MAX / 2).await;
    let r = face.get("/readyz", None).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(failed_checks(&r.body), ["disk"], "{}", r.body);
    assert!(r.body.contains("disk_low_mib"), "{}", r.body);
    face.server.shutdown().await;
}
