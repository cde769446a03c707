//! `/metrics` and `/readyz` of real `oftp serve` daemons, end to end: daemon A sends a file to
//! daemon B (both on 127.0.0.1); A's and B's `/metrics`, read with their first admin tokens,
//! are checked with a Prometheus text-format parser and must have moved by exactly that file;
//! the sample Grafana dashboard may only use metrics that A's `/metrics` has.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use oftp::journal::{Journal, QueueState, SqliteJournal, TransferFilter};

mod common;
use common::{Server, free_port, oftp_serve, self_signed};

/// A daemon with its HTTP face's address and first admin token.
struct Daemon {
    _server: Server,
    http: SocketAddr,
    token: String,
}

/// Starts `oftp serve --config <which>.toml` in `dir` and reads from its standard output
/// where the HTTP face listens and the admin token made at this first start.
fn start(dir: &Path, which: &str) -> Daemon {
    let mut child = oftp_serve(dir, &["--config", &format!("{which}.toml")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let server = Server(child);
    let mut seen = Vec::new();
    let mut http = None;
    let mut token = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("console and API on http://") {
            http = Some(url.trim_end_matches('/').parse().unwrap());
        }
        // The token is the indented line after "Created the admin API token ...".
        if seen
            .iter()
            .any(|l: &String| l.starts_with("Created the admin API token"))
            && line.starts_with("    ")
        {
            token = Some(line.trim().to_owned());
        }
        seen.push(line);
        if http.is_some() && token.is_some() {
            break;
        }
    }
    // Whatever it prints later is read and dropped.
    std::thread::spawn(move || lines.for_each(drop));
    Daemon {
        _server: server,
        http: http.unwrap_or_else(|| panic!("{which}: no HTTP address in {seen:?}")),
        token: token.unwrap_or_else(|| panic!("{which}: no admin token in {seen:?}")),
    }
}

/// `GET path` (with the token, if any): status and body.
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.into(),
    )
}

fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `/metrics` of `d`, validated: every line a sample or a comment the format knows, every
/// sample of a family that has a `# TYPE`, `# EOF` last; and parsed by `prometheus-parse`.
fn scrape(d: &Daemon) -> (String, prometheus_parse::Scrape) {
    let (status, text) = get(d.http, "/metrics", Some(&d.token));
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF" {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_total", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f)))
            .unwrap_or(name);
        assert!(
            families.contains(family),
            "sample without its # TYPE: {line}"
        );
    }
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| !l.contains("_bucket{"))
        .count();
    let histogram_series = parsed
        .samples
        .iter()
        .filter(|s| matches!(s.value, prometheus_parse::Value::Histogram(_)))
        .count();
    assert_eq!(
        parsed.samples.len() - histogram_series,
        samples,
        "every sample line parses\n{text}"
    );
    (text, parsed)
}

/// The value of `name` with exactly `labels`.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| {
            x.metric == name
                && x.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
        })
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            other => panic!("{name}: {other:?}"),
        })
}

#[test]
fn metrics_of_two_daemons_move_by_the_file_one_sent_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port_a, port_b) = (free_port(), free_port());
    // A has a certificate (30 days), for the expiry metric.
    self_signed(d, "a");
    std::fs::write(
        d.join("a.toml"),
        format!(
            "[local]\nssid = \"O0013AAA\"\npassword = \"APW\"\n\n\
             [server]\nlisten = \"127.0.0.1:{port_a}\"\ndata_dir = \"a\"\n\n\
             [gateway.outbox]\ndebounce_ms = 50\npoll_interval_secs = 1\n\n\
             [[partners]]\nname = \"b\"\nssid = \"O0013BBB\"\npassword = \"BPW\"\n\
             address = \"127.0.0.1:{port_b}\"\n\n\
             [security.identity]\ncert = \"a.pem\"\nkey = \"a.key\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("b.toml"),
        format!(
            "[local]\nssid = \"O0013BBB\"\npassword = \"BPW\"\n\n\
             [server]\nlisten = \"127.0.0.1:{port_b}\"\ndata_dir = \"b\"\n\n\
             [[partners]]\nname = \"a\"\nssid = \"O0013AAA\"\npassword = \"APW\"\n"
        ),
    )
    .unwrap();
    let b = start(d, "b");
    let a = start(d, "a");

    let (status, body) = get(a.http, "/metrics", None);
    assert_eq!(status, 401, "no token: {body}");
    let (status, body) = get(a.http, "/readyz", None);
    assert_eq!(status, 200, "{body}");

    let (_, before) = scrape(&a);
    assert_eq!(
        value(
            &before,
            "oftp_files_total",
            &[("partner", "b"), ("direction", "out")]
        ),
        Some(0.0),
        "nothing sent yet"
    );

    let content = vec![b'x'; 100_000];
    let outbox = d.join("a/outbox/b");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join(".invoice.tmp"), &content).unwrap();
    std::fs::rename(outbox.join(".invoice.tmp"), outbox.join("invoice.txt")).unwrap();
    let journal = SqliteJournal::open_in_dir(&d.join("a")).unwrap();
    wait_for(Duration::from_secs(30), "the file delivered", || {
        journal
            .transfers(&TransferFilter::default())
            .unwrap()
            .iter()
            .any(|r| r.state == QueueState::Delivered)
    });
    // The call's session ends right after the settlement; its end is counted then.
    let mut after = scrape(&a);
    wait_for(
        Duration::from_secs(10),
        "A's session counted as ended",
        || {
            after = scrape(&a);
            value(
                &after.1,
                "oftp_sessions_total",
                &[("role", "caller"), ("result", "ok")],
            )
            .is_some()
        },
    );
    let (text_a, a_now) = after;
    let v = |name, labels: &[(&str, &str)]| value(&a_now, name, labels);
    assert_eq!(
        v(
            "oftp_files_total",
            &[("partner", "b"), ("direction", "out")]
        ),
        Some(1.0),
        "{text_a}"
    );
    assert_eq!(
        v(
            "oftp_bytes_total",
            &[("partner", "b"), ("direction", "out")]
        ),
        Some(content.len() as f64)
    );
    assert_eq!(
        v(
            "oftp_sessions_total",
            &[("role", "caller"), ("result", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(v("oftp_sessions_active", &[("role", "caller")]), Some(0.0));
    assert_eq!(
        v("oftp_eerp_latency_seconds", &[("partner", "b")]),
        Some(1.0),
        "one EERP observed (the +Inf bucket)\n{text_a}"
    );
    assert_eq!(v("oftp_queue_files", &[("state", "delivered")]), Some(1.0));
    assert_eq!(v("oftp_queue_files", &[("state", "queued")]), Some(0.0));
    assert_eq!(v("oftp_retries_total", &[("partner", "b")]), Some(0.0));
    // The 30-day certificate is within `cert_warning_days` (30): the watchdog's alert.
    let open = journal.open_alerts().unwrap();
    assert!(
        open.iter()
            .any(|a| a.alert.kind == oftp::journal::AlertKind::CertificateExpiring),
        "{open:?}"
    );
    assert_eq!(v("oftp_alerts_open", &[]), Some(open.len() as f64));
    let expiry = a_now
        .samples
        .iter()
        .find(|s| s.metric == "oftp_certificate_expiry_seconds")
        .unwrap_or_else(|| panic!("no certificate expiry\n{text_a}"));
    assert_eq!(expiry.labels.get("owner"), Some("local"));
    let days = v(
        "oftp_certificate_expiry_seconds",
        &[
            ("owner", "local"),
            ("purpose", expiry.labels.get("purpose").unwrap()),
        ],
    )
    .unwrap()
        / 86400.0;
    assert!((29.0..=30.0).contains(&days), "{days} days");
    let size = std::fs::metadata(d.join("a").join(oftp::journal::JOURNAL_FILE))
        .unwrap()
        .len() as f64;
    assert!(v("oftp_journal_size_bytes", &[]).unwrap() >= size);

    // B received it, as the partner called it.
    let (_, b_now) = scrape(&b);
    assert_eq!(
        value(
            &b_now,
            "oftp_files_total",
            &[("partner", "a"), ("direction", "in")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &b_now,
            "oftp_bytes_total",
            &[("partner", "a"), ("direction", "in")]
        ),
        Some(content.len() as f64)
    );

    // Every metric the sample dashboard queries is one A serves.
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/grafana/oftp-dashboard.json"),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut used = BTreeSet::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            used.extend(metric_names(expr));
        }
    }
    assert!(used.len() >= 8, "{used:?}");
    for name in &used {
        assert!(
            text_a
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
                || text_a.contains(&format!("# TYPE {name} ")),
            "the dashboard uses {name}, which /metrics does not have"
        );
    }
}

/// The `oftp_...` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("oftp_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}
