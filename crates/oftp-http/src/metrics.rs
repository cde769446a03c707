//! `/metrics` in the Prometheus text format (issue #12 §2), OpenMetrics 1.0 flavour as
//! `prometheus-client` writes it (Prometheus scrapes it as it is; counters end in `_total`,
//! the body ends with `# EOF`). Needs a read-role token or a console session.
//!
//! The live counters start at 0 for both roles and results and for every partner configured
//! at the start (so `increase()` sees a file's first count, and a dashboard finds every
//! series); a partner added by a reload appears with its first count. A family without any
//! sample (no certificate) is left out of the text, as `prometheus-client` does.
//!
//! Two kinds of values:
//! - **live counters**, fed by [`feed`] from [`GatewayRuntime::subscribe`]: sessions (active,
//!   and ended by role and result), files and bytes per partner and direction, EERP latency,
//!   retries. They count from the daemon's start (a restart begins them at 0 again, which
//!   Prometheus' `rate()` and `increase()` expect of a counter);
//! - **read at scrape time**, so they survive a restart and never drift: files by queue state
//!   (`Journal::queue_depth`, one `GROUP BY` over the state index), open alerts, seconds to the
//!   earliest certificate expiry ([`HttpContext::certificates`]) and the journal's size on
//!   disk (SQLite file + WAL). No scrape reads a table whole.
//!
//! `prometheus-client` is the Prometheus project's own Rust client (typed families and label
//! sets, no global registry); the journal-read values go into a registry made per scrape.
//! The meaning of each metric is also in `docs/oftp-operations.md` ("Monitoring").
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `oftp_sessions_active` | gauge | `role` | OFTP sessions running now; `role` = `caller` (we called) or `responder` (the partner called us) |
//! | `oftp_sessions_total` | counter | `role`, `result` | sessions ended; `result` = `ok` (ESID 00, normal end) or `failed` (any other end) |
//! | `oftp_files_total` | counter | `partner`, `direction` | files that went through (EFPA); `direction` = `in` or `out` |
//! | `oftp_bytes_total` | counter | `partner`, `direction` | their octets of user data (the whole file) |
//! | `oftp_eerp_latency_seconds` | histogram | `partner` | from a sent file's EFPA to its EERP (files sent by this process) |
//! | `oftp_retries_total` | counter | `partner` | queued files tried again (an attempt after the first) |
//! | `oftp_queue_files` | gauge | `state` | queued files by state (every state of the queue, 0 included) |
//! | `oftp_alerts_open` | gauge | | alerts not acknowledged |
//! | `oftp_certificate_expiry_seconds` | gauge | `owner`, `purpose` | seconds until the earliest of our and the partners' certificates expires (negative: expired); `owner` = `local` (ours) or the partner's name; absent without certificates |
//! | `oftp_journal_size_bytes` | gauge | | the journal's SQLite file plus its WAL |

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oftp::journal::{JOURNAL_FILE, QueueState};
use oftp_gateway::GatewayEvent;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::auth::{ApiError, ReadAccess};
use crate::state::{AppState, HttpContext};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the EERP latency buckets, in seconds: from an EERP in the same session
/// (well under a second) to one a day later.
const EERP_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0, 86400.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    role: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    partner: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartnerLabels {
    partner: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    owner: String,
    purpose: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

fn eerp_histogram() -> Histogram {
    Histogram::new(EERP_BUCKETS)
}

fn role(outgoing_call: bool) -> &'static str {
    if outgoing_call { "caller" } else { "responder" }
}

fn direction(outgoing: bool) -> &'static str {
    if outgoing { "out" } else { "in" }
}

/// The live counters of the daemon; cheap to clone (the families are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    sessions_active: Family<RoleLabels, Gauge>,
    sessions: Family<SessionLabels, Counter>,
    files: Family<FileLabels, Counter>,
    bytes: Family<FileLabels, Counter>,
    eerp_latency: Family<PartnerLabels, Histogram, fn() -> Histogram>,
    retries: Family<PartnerLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every live counter at 0, with the series of `partners` (configured names).
    pub fn new<'a>(partners: impl IntoIterator<Item = &'a str>) -> Self {
        let sessions_active = Family::<RoleLabels, Gauge>::default();
        let sessions = Family::<SessionLabels, Counter>::default();
        let files = Family::<FileLabels, Counter>::default();
        let bytes = Family::<FileLabels, Counter>::default();
        let eerp_latency = Family::new_with_constructor(eerp_histogram as fn() -> Histogram);
        let retries = Family::<PartnerLabels, Counter>::default();
        let mut r = Registry::default();
        r.register(
            "oftp_sessions_active",
            "OFTP sessions running now, by role (caller: we called; responder: the partner called)",
            sessions_active.clone(),
        );
        r.register(
            "oftp_sessions",
            "OFTP sessions ended, by role and result (ok: normal end, ESID 00)",
            sessions.clone(),
        );
        r.register(
            "oftp_files",
            "Files that went through (EFPA), by partner and direction",
            files.clone(),
        );
        r.register(
            "oftp_bytes",
            "Octets of user data of the files that went through, by partner and direction",
            bytes.clone(),
        );
        r.register(
            "oftp_eerp_latency_seconds",
            "Time from a sent file's EFPA to its EERP, by partner",
            eerp_latency.clone(),
        );
        r.register(
            "oftp_retries",
            "Queued files tried again (an attempt after the first), by partner",
            retries.clone(),
        );
        for outgoing_call in [true, false] {
            let role = role(outgoing_call);
            drop(sessions_active.get_or_create(&RoleLabels { role }));
            for result in ["ok", "failed"] {
                drop(sessions.get_or_create(&SessionLabels { role, result }));
            }
        }
        for partner in partners {
            for outgoing in [true, false] {
                let labels = FileLabels {
                    partner: partner.to_owned(),
                    direction: direction(outgoing),
                };
                drop(files.get_or_create(&labels));
                drop(bytes.get_or_create(&labels));
            }
            let labels = PartnerLabels {
                partner: partner.to_owned(),
            };
            drop(eerp_latency.get_or_create(&labels));
            drop(retries.get_or_create(&labels));
        }
        Self {
            registry: std::sync::Arc::new(r),
            sessions_active,
            sessions,
            files,
            bytes,
            eerp_latency,
            retries,
        }
    }

    /// Counts one live event.
    pub fn record(&self, event: &GatewayEvent) {
        match event {
            GatewayEvent::SessionStarted { outgoing_call, .. } => {
                self.sessions_active
                    .get_or_create(&RoleLabels {
                        role: role(*outgoing_call),
                    })
                    .inc();
            }
            GatewayEvent::SessionEnded {
                outgoing_call, ok, ..
            } => {
                let role = role(*outgoing_call);
                let active = self.sessions_active.get_or_create(&RoleLabels { role });
                // A session that started before the counting did is not taken below 0.
                if active.get() > 0 {
                    active.dec();
                }
                self.sessions
                    .get_or_create(&SessionLabels {
                        role,
                        result: if *ok { "ok" } else { "failed" },
                    })
                    .inc();
            }
            GatewayEvent::FileCompleted {
                partner,
                outgoing,
                bytes,
                ..
            } => {
                let labels = FileLabels {
                    partner: partner.clone(),
                    direction: direction(*outgoing),
                };
                self.files.get_or_create(&labels).inc();
                self.bytes.get_or_create(&labels).inc_by(*bytes);
            }
            GatewayEvent::EndResponseReceived {
                partner,
                positive: true,
                latency_ms: Some(ms),
                ..
            } => {
                self.eerp_latency
                    .get_or_create(&PartnerLabels {
                        partner: partner.clone(),
                    })
                    .observe(*ms as f64 / 1000.0);
            }
            GatewayEvent::TransferRetried { partner, .. } => {
                self.retries
                    .get_or_create(&PartnerLabels {
                        partner: partner.clone(),
                    })
                    .inc();
            }
            _ => {}
        }
    }

    /// The text of `/metrics`: the live counters and `snapshot`.
    pub fn encode(&self, snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)?;
        encode_registry(&mut out, &snapshot.registry())?;
        encode_eof(&mut out)?;
        Ok(out)
    }
}

/// Counts the gateway's live events into `metrics` until `stop` (or the runtime is gone).
/// Subscribe before the server serves, so no event between is missed.
pub async fn feed(
    metrics: Metrics,
    mut events: broadcast::Receiver<GatewayEvent>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            () = stop.cancelled() => return,
        };
        match event {
            Ok(e) => metrics.record(&e),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("metrics: {n} live events lost (a burst); counters miss them");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The certificate that expires first.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateExpiry {
    /// `local` (ours) or the partner's name.
    pub owner: String,
    /// What it is used for ("signing", ...).
    pub purpose: &'static str,
    /// Seconds until it expires; negative once expired.
    pub seconds: f64,
}

/// What `/metrics` reads at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Rows of the queue in each state (every state, 0 included).
    pub queue: Vec<(QueueState, u64)>,
    /// Alerts not acknowledged.
    pub alerts_open: u64,
    /// The certificate that expires first; `None` without certificates.
    pub earliest_certificate: Option<CertificateExpiry>,
    /// The journal's file and WAL, in bytes.
    pub journal_bytes: u64,
}

impl Snapshot {
    /// Reads the journal, the certificates and the journal's files of `ctx` now.
    pub async fn take(ctx: &HttpContext) -> Result<Self, oftp::journal::JournalError> {
        let (depth, alerts_open) = ctx
            .journal
            .call(|j| Ok((j.queue_depth()?, j.open_alerts()?.len() as u64)))
            .await?;
        let queue = QueueState::ALL
            .iter()
            .map(|s| {
                let n = depth.iter().find(|(d, _)| d == s).map_or(0, |(_, n)| *n);
                (*s, n)
            })
            .collect();
        let now = std::time::SystemTime::now();
        let earliest_certificate = (ctx.certificates)()
            .into_iter()
            .map(|w| CertificateExpiry {
                owner: w.partner.unwrap_or_else(|| "local".to_owned()),
                purpose: w.purpose,
                seconds: seconds_between(now, w.cert.not_after()),
            })
            .min_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let data_dir = ctx.data_dir.clone();
        let journal_bytes = tokio::task::spawn_blocking(move || journal_bytes(&data_dir))
            .await
            .unwrap_or(0);
        Ok(Self {
            queue,
            alerts_open,
            earliest_certificate,
            journal_bytes,
        })
    }

    fn registry(&self) -> Registry {
        let mut r = Registry::default();
        let queue = Family::<StateLabels, Gauge>::default();
        for (state, n) in &self.queue {
            queue
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        r.register(
            "oftp_queue_files",
            "Files of the outbound queue by state (from the journal)",
            queue,
        );
        let alerts = Gauge::<i64>::default();
        alerts.set(i64::try_from(self.alerts_open).unwrap_or(i64::MAX));
        r.register("oftp_alerts_open", "Alerts not acknowledged", alerts);
        let expiry =
            Family::<CertificateLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        if let Some(c) = &self.earliest_certificate {
            expiry
                .get_or_create(&CertificateLabels {
                    owner: c.owner.clone(),
                    purpose: c.purpose,
                })
                .set(c.seconds);
        }
        r.register(
            "oftp_certificate_expiry_seconds",
            "Seconds until the earliest of our and the partners' certificates expires \
             (negative: expired), with its owner (local or the partner) and purpose",
            expiry,
        );
        let size = Gauge::<i64>::default();
        size.set(i64::try_from(self.journal_bytes).unwrap_or(i64::MAX));
        r.register(
            "oftp_journal_size_bytes",
            "The journal on disk: its SQLite file and WAL",
            size,
        );
        r
    }
}

/// `to - from` in seconds, negative when `to` is earlier.
fn seconds_between(from: std::time::SystemTime, to: std::time::SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The size of the journal's SQLite file and its WAL in `data_dir` (0 for what is missing).
fn journal_bytes(data_dir: &Path) -> u64 {
    let file = data_dir.join(JOURNAL_FILE);
    let mut wal = file.clone().into_os_string();
    wal.push("-wal");
    [file, wal.into()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The metrics route.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Longest a scrape waits for the journal: a scraper's own timeout is usually 10 s.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

async fn metrics(ReadAccess(_): ReadAccess, State(state): State<AppState>) -> Response {
    let unavailable = |message: String| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "journal", message).into_response()
    };
    let snapshot = match tokio::time::timeout(SCRAPE_TIMEOUT, Snapshot::take(state.ctx())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return unavailable(format!("cannot read the journal for the metrics: {e}")),
        Err(_) => {
            return unavailable(format!(
                "the journal did not answer within {} s; the daemon may be overloaded",
                SCRAPE_TIMEOUT.as_secs()
            ));
        }
    };
    match state.metrics().encode(&snapshot) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            "the metrics could not be written",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        m.encode(&Snapshot {
            queue: vec![(QueueState::Queued, 3)],
            alerts_open: 2,
            earliest_certificate: Some(CertificateExpiry {
                owner: "acme".into(),
                purpose: "signing",
                seconds: -5.0,
            }),
            journal_bytes: 4096,
        })
        .unwrap()
    }

    #[test]
    fn every_series_of_the_configured_partners_starts_at_zero() {
        let t = text(&Metrics::new(["acme"]));
        for line in [
            "oftp_sessions_total{role=\"caller\",result=\"failed\"} 0\n",
            "oftp_sessions_total{role=\"responder\",result=\"ok\"} 0\n",
            "oftp_files_total{partner=\"acme\",direction=\"in\"} 0\n",
            "oftp_bytes_total{partner=\"acme\",direction=\"out\"} 0\n",
            "oftp_eerp_latency_seconds_count{partner=\"acme\"} 0\n",
            "oftp_retries_total{partner=\"acme\"} 0\n",
        ] {
            assert!(t.contains(line), "{line} missing in\n{t}");
        }
    }

    #[test]
    fn live_events_move_the_counters_of_their_labels() {
        let m = Metrics::new([]);
        m.record(&GatewayEvent::SessionStarted {
            partner: "acme".into(),
            outgoing_call: true,
        });
        m.record(&GatewayEvent::SessionStarted {
            partner: "acme".into(),
            outgoing_call: false,
        });
        let t = text(&m);
        assert!(
            t.contains("oftp_sessions_active{role=\"caller\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("oftp_sessions_active{role=\"responder\"} 1\n"),
            "{t}"
        );
        m.record(&GatewayEvent::SessionEnded {
            partner: "acme".into(),
            text: "normal session termination".into(),
            outgoing_call: true,
            ok: true,
        });
        m.record(&GatewayEvent::FileCompleted {
            partner: "acme".into(),
            outgoing: true,
            virtual_file_name: "ORDERS".into(),
            bytes: 1234,
            transfer_id: Some(1),
        });
        m.record(&GatewayEvent::FileCompleted {
            partner: "acme".into(),
            outgoing: false,
            virtual_file_name: "INVOIC".into(),
            bytes: 10,
            transfer_id: None,
        });
        m.record(&GatewayEvent::EndResponseReceived {
            partner: "acme".into(),
            virtual_file_name: "ORDERS".into(),
            positive: true,
            latency_ms: Some(2500),
        });
        m.record(&GatewayEvent::TransferRetried {
            transfer_id: 1,
            partner: "acme".into(),
            attempt: 2,
        });
        let t = text(&m);
        for line in [
            "oftp_sessions_active{role=\"caller\"} 0\n",
            "oftp_sessions_active{role=\"responder\"} 1\n",
            "oftp_sessions_total{role=\"caller\",result=\"ok\"} 1\n",
            "oftp_files_total{partner=\"acme\",direction=\"out\"} 1\n",
            "oftp_files_total{partner=\"acme\",direction=\"in\"} 1\n",
            "oftp_bytes_total{partner=\"acme\",direction=\"out\"} 1234\n",
            "oftp_bytes_total{partner=\"acme\",direction=\"in\"} 10\n",
            "oftp_eerp_latency_seconds_count{partner=\"acme\"} 1\n",
            "oftp_eerp_latency_seconds_bucket{le=\"1.0\",partner=\"acme\"} 0\n",
            "oftp_eerp_latency_seconds_bucket{le=\"5.0\",partner=\"acme\"} 1\n",
            "oftp_retries_total{partner=\"acme\"} 1\n",
            "oftp_queue_files{state=\"queued\"} 3\n",
            "oftp_alerts_open 2\n",
            "oftp_certificate_expiry_seconds{owner=\"acme\",purpose=\"signing\"} -5.0\n",
            "oftp_journal_size_bytes 4096\n",
        ] {
            assert!(t.contains(line), "{line} missing in\n{t}");
        }
        assert!(t.ends_with("# EOF\n"), "{t}");
    }

    #[test]
    fn a_session_end_never_takes_the_active_count_below_zero_and_a_nerp_is_no_latency() {
        let m = Metrics::new([]);
        m.record(&GatewayEvent::SessionEnded {
            partner: "acme".into(),
            text: "connection closed".into(),
            outgoing_call: false,
            ok: false,
        });
        m.record(&GatewayEvent::EndResponseReceived {
            partner: "acme".into(),
            virtual_file_name: "ORDERS".into(),
            positive: false,
            latency_ms: Some(10),
        });
        let t = text(&m);
        assert!(
            t.contains("oftp_sessions_active{role=\"responder\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("oftp_sessions_total{role=\"responder\",result=\"failed\"} 1\n"),
            "{t}"
        );
        assert!(!t.contains("oftp_eerp_latency_seconds_count"), "{t}");
    }

    #[test]
    fn the_journal_size_is_its_file_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(journal_bytes(dir.path()), 0);
        std::fs::write(dir.path().join(JOURNAL_FILE), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join(format!("{JOURNAL_FILE}-wal")), [0u8; 20]).unwrap();
        std::fs::write(dir.path().join(format!("{JOURNAL_FILE}-shm")), [0u8; 7]).unwrap();
        assert_eq!(journal_bytes(dir.path()), 120);
    }

    #[test]
    fn certificate_expiry_is_negative_once_expired() {
        let now = std::time::SystemTime::now();
        let day = Duration::from_secs(86400);
        assert_eq!(seconds_between(now, now + day), 86400.0);
        assert_eq!(seconds_between(now, now - day), -86400.0);
    }
}
