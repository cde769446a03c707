//! Alerts end to end on loopback: delivery to a webhook receiver and an SMTP sink written
//! here, a receiver that is down and comes up, and the watchdogs (EERP overdue, certificates
//! expiring, disk space low) with a clock the test controls.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use oftp::journal::{
    Alert, AlertKind, Journal, NewAlert, QueueChange, QueueState, QueuedSend, SqliteJournal,
};
use oftp::oftp_proto::codec::FileFormat;
use oftp::security::{IdentityConfig, LocalSecurityConfig, PartnerSecurityConfig, SecurityContext};
use oftp::space::FreeSpace;
use oftp_gateway::PartnerEntry;
use oftp_gateway::alerts::config::WatchdogConfig;
use oftp_gateway::alerts::delivery::PassReport;
use oftp_gateway::alerts::{
    Alerts, AlertsConfig, Deliverer, DeliverySchedule, Watchdog, certificates_of,
    channels_from_config,
};

const SECRET: &str = "alert hook secret 5f1e";
const SMTP_PASSWORD: &str = "smtp alert password 9c2b";

fn t(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, s).single().unwrap()
}

fn journal(dir: &Path) -> Arc<dyn Journal> {
    SqliteJournal::open_in_dir(dir).unwrap().into()
}

fn alert(kind: AlertKind, text: &str) -> NewAlert {
    NewAlert {
        kind,
        partner: Some("acme".into()),
        file: Some("/data/out/acme/.queue/1/INVOICE".into()),
        text: text.into(),
    }
}

/// What a webhook receiver got: the signature header and the body.
type Hits = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Serves a webhook receiver on `listener` that records every request and answers 200.
fn serve_receiver(listener: tokio::net::TcpListener) -> Hits {
    let hits: Hits = Arc::default();
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let h = h.clone();
            async move {
                let sig = headers
                    .get(webhook::SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                h.lock().unwrap().push((sig, body.to_vec()));
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    hits
}

/// `[gateway.alerts]` with one webhook to `addr` (secret in a file under `dir`).
fn hook_config(dir: &Path, addr: std::net::SocketAddr) -> AlertsConfig {
    let secret = dir.join("hook-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    toml::from_str(&format!(
        "poll_interval_secs = 1\n\
         [delivery]\nfirst_delay_secs = 30\nmax_delay_secs = 600\ngive_up_after_hours = 24\n\
         [[webhook]]\nname = \"ops-hook\"\nurl = \"http://{addr}/alerts?token=t0k3n\"\n\
         secret_file = {secret:?}\ntimeout_secs = 2\n"
    ))
    .unwrap()
}

fn deliverer(j: Arc<dyn Journal>, config: &AlertsConfig) -> Deliverer {
    Deliverer::new(
        j,
        channels_from_config(config).unwrap(),
        DeliverySchedule::try_from(&config.delivery).unwrap(),
    )
}

/// Checks the signature of a received body and returns it as JSON.
fn verified(hit: &(String, Vec<u8>)) -> serde_json::Value {
    webhook::verify(&webhook::Secret::new(SECRET), &hit.1, &hit.0)
        .expect("the signature is the HMAC-SHA256 of the body under the shared secret");
    serde_json::from_slice(&hit.1).unwrap()
}

#[tokio::test]
async fn a_webhook_alert_reaches_the_receiver_signed_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = hook_config(dir.path(), listener.local_addr().unwrap());
    let hits = serve_receiver(listener);
    let j = journal(dir.path());
    let raised = t(2026, 12, 6, 10, 0, 0);
    let id = j
        .raise_alert(
            &alert(AlertKind::FileFailed, "INVOICE failed: SFNA 03"),
            raised,
        )
        .unwrap();

    let d = deliverer(j.clone(), &config);
    let report = d.deliver_due(raised).await.unwrap();
    assert_eq!(report.delivered, 1);
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1);
    let body = verified(&hits[0]);
    assert_eq!(
        body,
        serde_json::json!({
            "schema_version": 1,
            "id": id,
            "kind": "file_failed",
            "partner": "acme",
            "file": "/data/out/acme/.queue/1/INVOICE",
            "text": "INVOICE failed: SFNA 03",
            "raised_at": "2026-12-06T10:00:00Z",
        })
    );
    assert_eq!(
        d.deliver_due(raised + chrono::TimeDelta::hours(1))
            .await
            .unwrap(),
        PassReport::default(),
        "a delivered alert is not sent again"
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_alert_once_after_a_retry_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver's address, with nothing listening yet.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = hook_config(dir.path(), addr);
    let t0 = t(2026, 12, 6, 10, 0, 0);
    let id = {
        let j = journal(dir.path());
        let id = j
            .raise_alert(&alert(AlertKind::NotDelivered, "NERP for INVOICE"), t0)
            .unwrap();
        let d = deliverer(j, &config);
        let r = d.deliver_due(t0).await.unwrap();
        assert_eq!((r.delivered, r.retrying), (0, 1), "down: retried later");
        assert_eq!(
            d.deliver_due(t0 + chrono::TimeDelta::seconds(5))
                .await
                .unwrap(),
            PassReport::default(),
            "not tried again before the back-off"
        );
        id
    };
    // The daemon restarts (a new journal connection and deliverer); the receiver comes up.
    let hits = serve_receiver(tokio::net::TcpListener::bind(addr).await.unwrap());
    let d = deliverer(journal(dir.path()), &config);
    // first_delay_secs = 30 with jitter 0.25: due within 22.5..=30 s after the failure.
    let r = d
        .deliver_due(t0 + chrono::TimeDelta::seconds(30))
        .await
        .unwrap();
    assert_eq!(r.delivered, 1, "delivered after the retry");
    d.deliver_due(t0 + chrono::TimeDelta::hours(2))
        .await
        .unwrap();
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "delivered once");
    assert_eq!(verified(&hits[0])["id"], id);
}

#[tokio::test]
async fn an_alert_older_than_the_give_up_age_is_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = hook_config(dir.path(), listener.local_addr().unwrap());
    let hits = serve_receiver(listener);
    let j = journal(dir.path());
    let t0 = t(2026, 12, 6, 10, 0, 0);
    j.raise_alert(&alert(AlertKind::DiskSpaceLow, "old"), t0)
        .unwrap();
    let d = deliverer(j, &config);
    let r = d
        .deliver_due(t0 + chrono::TimeDelta::hours(24))
        .await
        .unwrap();
    assert_eq!(r.given_up, 1);
    assert!(hits.lock().unwrap().is_empty());
    assert_eq!(
        d.deliver_due(t0 + chrono::TimeDelta::hours(25))
            .await
            .unwrap(),
        PassReport::default()
    );
}

#[tokio::test]
async fn a_mail_alert_reaches_the_smtp_sink_with_the_configured_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mails) = smtp_mail::sink::start().await;
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, SMTP_PASSWORD).unwrap();
    let config: AlertsConfig = toml::from_str(&format!(
        "[[mail]]\nname = \"ops-mail\"\nserver = \"127.0.0.1\"\nport = {port}\n\
         security = \"none\"\nfrom = \"oftp@example.com\"\n\
         to = [\"edi-ops@example.com\", \"oncall@example.com\"]\n\
         username = \"oftp\"\npassword_file = {pw:?}\ntimeout_secs = 5\n"
    ))
    .unwrap();
    let j = journal(dir.path());
    let raised = t(2026, 12, 6, 11, 0, 0);
    let id = j
        .raise_alert(
            &alert(AlertKind::EerpOverdue, "INVOICE: no EERP within 24 hours"),
            raised,
        )
        .unwrap();
    let r = deliverer(j, &config).deliver_due(raised).await.unwrap();
    assert_eq!(r.delivered, 1);
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.auth.as_deref(), Some(&*format!("|oftp|{SMTP_PASSWORD}")));
    assert_eq!(m.rcpt, ["<edi-ops@example.com>", "<oncall@example.com>"]);
    assert!(
        m.data
            .contains("Subject: oftp alert: eerp overdue (partner acme)"),
        "{}",
        m.data
    );
    assert!(
        m.data.contains("INVOICE: no EERP within 24 hours"),
        "{}",
        m.data
    );
    assert!(
        m.data.contains(&format!("oftp alerts --ack {id}")),
        "{}",
        m.data
    );
    assert!(!m.data.contains(SMTP_PASSWORD));
}

#[tokio::test]
async fn the_running_alert_tasks_deliver_an_alert_raised_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = hook_config(dir.path(), listener.local_addr().unwrap());
    config.watchdog.disk_low_mib = 0;
    let hits = serve_receiver(listener);
    let j = journal(dir.path());
    let watchdog = Watchdog::new(j.clone(), config.watchdog.clone(), &[], dir.path().into());
    let alerts = Alerts::start(j.clone(), &config, watchdog).unwrap();
    // Raised by another part of the gateway, straight into the journal.
    j.raise_alert(
        &alert(AlertKind::PartnerUnreachable, "acme down"),
        Utc::now(),
    )
    .unwrap();
    let mut waited = Duration::ZERO;
    while hits.lock().unwrap().is_empty() {
        assert!(
            waited < Duration::from_secs(20),
            "not delivered within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    alerts.shutdown().await;
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1);
    assert_eq!(verified(&hits[0])["text"], "acme down");
}

// ---- watchdogs --------------------------------------------------------------------------

fn partner(name: &str, ssid: &str, extra: &str) -> PartnerEntry {
    toml::from_str(&format!(
        "name = {name:?}\nssid = {ssid:?}\npassword = \"PW\"\n{extra}"
    ))
    .unwrap()
}

fn quiet_watchdog() -> WatchdogConfig {
    WatchdogConfig {
        cert_warning_days: 0,
        disk_low_mib: 0,
        ..WatchdogConfig::default()
    }
}

fn open_of(j: &dyn Journal, kind: AlertKind) -> Vec<Alert> {
    j.open_alerts()
        .unwrap()
        .into_iter()
        .filter(|a| a.alert.kind == kind)
        .collect()
}

/// Enqueues `name` for `partner` at `at` and moves it to sent (EFPA) at `sent`.
fn sent_file(
    j: &dyn Journal,
    partner: &str,
    name: &str,
    at: DateTime<Utc>,
    sent: DateTime<Utc>,
) -> i64 {
    let id = j
        .enqueue(
            &QueuedSend {
                partner: partner.into(),
                source_path: format!("/data/out/{partner}/.queue/1/{name}").into(),
                virtual_file_name: name.into(),
                destination: None,
                originator: None,
                format: FileFormat::Unstructured,
                max_record_len: 0,
                user_data: String::new(),
                description: String::new(),
            },
            at,
        )
        .unwrap();
    let claimed = j.claim_due(partner, at, 100).unwrap();
    assert!(claimed.iter().any(|f| f.id == id));
    j.transition(id, &QueueChange::to(QueueState::Sent, sent))
        .unwrap()
        .unwrap();
    id
}

#[tokio::test]
async fn a_file_without_eerp_past_its_partners_timeout_raises_one_alert() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let t0 = t(2026, 12, 6, 8, 0, 0);
    let sent = t0 + chrono::TimeDelta::minutes(1);
    let id = sent_file(&*j, "acme", "INVOICE", t0, sent);
    // A partner with the default timeout (24 h), and one no longer configured (24 h too).
    sent_file(&*j, "beta", "ORDERS", t0, sent);
    sent_file(&*j, "gone", "DESADV", t0, sent);
    let partners = [
        partner("acme", "O0013ACME", "eerp_timeout_hours = 2"),
        partner("beta", "O0013BETA", ""),
    ];
    let w = Watchdog::new(j.clone(), quiet_watchdog(), &partners, dir.path().into());

    let just_before = sent + chrono::TimeDelta::hours(2) - chrono::TimeDelta::seconds(1);
    assert_eq!(w.sweep(just_before).await.unwrap().eerp_overdue, 0);
    assert_eq!(
        w.sweep(sent + chrono::TimeDelta::hours(2))
            .await
            .unwrap()
            .eerp_overdue,
        1,
        "acme's file is overdue after its 2 hours"
    );
    let open = open_of(&*j, AlertKind::EerpOverdue);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].alert.partner.as_deref(), Some("acme"));
    assert_eq!(
        open[0].alert.file.as_deref(),
        Some("/data/out/acme/.queue/1/INVOICE")
    );
    assert!(
        open[0]
            .alert
            .text
            .contains(&format!("oftp transfer show {id}"))
            && open[0].alert.text.contains("within 2 hours"),
        "{}",
        open[0].alert.text
    );
    assert_eq!(
        w.sweep(sent + chrono::TimeDelta::hours(3))
            .await
            .unwrap()
            .eerp_overdue,
        0,
        "one alert per file, not one per sweep"
    );
    // After a restart (a new watchdog and journal connection): still not raised again.
    let w = Watchdog::new(
        journal(dir.path()),
        quiet_watchdog(),
        &partners,
        dir.path().into(),
    );
    assert_eq!(
        w.sweep(sent + chrono::TimeDelta::hours(24))
            .await
            .unwrap()
            .eerp_overdue,
        2,
        "beta's and the unconfigured partner's files after the default 24 hours, acme's not again"
    );
    // An EERP settles a file: no alert for a delivered file.
    let fresh = sent_file(
        &*j,
        "acme",
        "LATER",
        t0,
        sent + chrono::TimeDelta::hours(30),
    );
    j.transition(
        fresh,
        &QueueChange::to(QueueState::Delivered, sent + chrono::TimeDelta::hours(31)),
    )
    .unwrap();
    assert_eq!(
        w.sweep(sent + chrono::TimeDelta::hours(40))
            .await
            .unwrap()
            .eerp_overdue,
        0
    );
}

#[tokio::test]
async fn an_expiring_certificate_raises_one_alert_and_again_after_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let pki = oftp_test_pki::Pki::new();
    let ours = pki.leaf("Our Gateway", 1, false); // valid until 2040-01-01
    let theirs = pki.leaf_expiring("Acme Partner", 2, (2031, 3, 1));
    let local = LocalSecurityConfig {
        identity: Some(IdentityConfig {
            cert: Some(ours.cert.clone()),
            key: Some(ours.key.clone()),
            ..IdentityConfig::default()
        }),
        ..LocalSecurityConfig::default()
    };
    let acme = PartnerSecurityConfig {
        certificate: Some(theirs.cert.clone()),
        ..PartnerSecurityConfig::default()
    };
    let sec = Arc::new(
        SecurityContext::builder("O0013OURS", &local, dir.path().join("security"))
            .unwrap()
            .partner("acme", "O0013ACME", "O0013ACME", &acme)
            .unwrap()
            .build(),
    );
    let names = vec![("acme".to_owned(), "O0013ACME".to_owned())];
    let j = journal(dir.path());
    let config = WatchdogConfig {
        cert_warning_days: 30,
        cert_repeat_days: 7,
        disk_low_mib: 0,
        ..WatchdogConfig::default()
    };
    let s = sec.clone();
    let w = Watchdog::new(j.clone(), config, &[], dir.path().into())
        .certificates(Arc::new(move || certificates_of(&s, &names)));

    assert_eq!(
        w.sweep(t(2031, 1, 1, 0, 0, 0)).await.unwrap().certificates,
        0,
        "59 days left"
    );
    assert_eq!(
        w.sweep(t(2031, 2, 10, 0, 0, 0)).await.unwrap().certificates,
        1,
        "19 days left: one alert for the certificate, whatever it is used for"
    );
    let open = open_of(&*j, AlertKind::CertificateExpiring);
    assert_eq!(open.len(), 1);
    let text = &open[0].alert.text;
    assert_eq!(open[0].alert.partner.as_deref(), Some("acme"));
    assert!(
        text.contains("partner acme's")
            && text.contains("Acme Partner")
            && text.contains("in 19 days"),
        "{text}"
    );
    assert_eq!(
        w.sweep(t(2031, 2, 11, 0, 0, 0)).await.unwrap().certificates,
        0
    );

    j.acknowledge_alert(open[0].id, t(2031, 2, 11, 0, 0, 0))
        .unwrap();
    assert_eq!(
        w.sweep(t(2031, 2, 17, 23, 59, 0))
            .await
            .unwrap()
            .certificates,
        0,
        "acknowledged: quiet for cert_repeat_days"
    );
    assert_eq!(
        w.sweep(t(2031, 2, 18, 0, 0, 0)).await.unwrap().certificates,
        1,
        "still expiring 7 days after the acknowledgement: raised again"
    );
    // Our own certificate, near its end in 2040 (the partner's alert is open: not again).
    assert_eq!(
        w.sweep(t(2039, 12, 20, 0, 0, 0))
            .await
            .unwrap()
            .certificates,
        1
    );
    let ours = open_of(&*j, AlertKind::CertificateExpiring)
        .into_iter()
        .find(|a| a.alert.partner.is_none())
        .expect("an alert for our certificate");
    assert!(
        ours.alert.text.starts_with("our ") && ours.alert.text.contains("Our Gateway"),
        "{}",
        ours.alert.text
    );
}

/// Free space the test sets.
#[derive(Debug, Default)]
struct SetSpace(AtomicU64);

impl FreeSpace for SetSpace {
    fn available(&self, _dir: &Path) -> io::Result<u64> {
        Ok(self.0.load(Ordering::SeqCst))
    }
}

#[tokio::test]
async fn low_disk_space_raises_once_while_low_and_again_after_it_recovered() {
    const MIB: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let space = Arc::new(SetSpace::default());
    let config = WatchdogConfig {
        cert_warning_days: 0,
        disk_low_mib: 100,
        ..WatchdogConfig::default()
    };
    let watchdog = |j: Arc<dyn Journal>| {
        Watchdog::new(j, config.clone(), &[], dir.path().into()).free_space(space.clone())
    };
    let w = watchdog(j.clone());
    let now = t(2026, 12, 6, 12, 0, 0);

    space.0.store(200 * MIB, Ordering::SeqCst);
    assert_eq!(w.sweep(now).await.unwrap().disk, 0);
    space.0.store(50 * MIB, Ordering::SeqCst);
    assert_eq!(w.sweep(now).await.unwrap().disk, 1);
    let open = open_of(&*j, AlertKind::DiskSpaceLow);
    assert!(
        open[0].alert.text.contains("has 50 MiB free"),
        "{}",
        open[0].alert.text
    );
    assert_eq!(w.sweep(now).await.unwrap().disk, 0, "once while low");
    assert_eq!(
        watchdog(journal(dir.path())).sweep(now).await.unwrap().disk,
        0,
        "also after a restart"
    );
    space.0.store(100 * MIB, Ordering::SeqCst);
    assert_eq!(w.sweep(now).await.unwrap().disk, 0, "recovered");
    space.0.store(10 * MIB, Ordering::SeqCst);
    assert_eq!(
        w.sweep(now).await.unwrap().disk,
        1,
        "low again: a new alert"
    );
    assert_eq!(open_of(&*j, AlertKind::DiskSpaceLow).len(), 2);
}

#[tokio::test]
async fn a_receiver_that_hangs_does_not_hold_up_the_other_channels() {
    let dir = tempfile::tempdir().unwrap();
    // A webhook receiver that accepts and never answers (timeout_secs = 10 below).
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let (port, mails) = smtp_mail::sink::start().await;
    std::fs::write(dir.path().join("s"), SECRET).unwrap();
    let config: AlertsConfig = toml::from_str(&format!(
        "[[webhook]]\nname = \"hook\"\nurl = \"http://{hang_addr}/\"\nsecret_file = {:?}\n\
         timeout_secs = 10\n\
         [[mail]]\nname = \"mail\"\nserver = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
         from = \"oftp@example.com\"\nto = [\"ops@example.com\"]\n",
        dir.path().join("s")
    ))
    .unwrap();
    let j = journal(dir.path());
    let now = Utc::now();
    j.raise_alert(&alert(AlertKind::FileFailed, "x"), now)
        .unwrap();
    let d = deliverer(j, &config);
    let pass = tokio::spawn(async move { d.deliver_due(now).await.unwrap() });
    let mut waited = Duration::ZERO;
    while mails.lock().unwrap().is_empty() {
        assert!(
            waited < Duration::from_secs(8),
            "the mail waited for the hanging webhook"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    let r = pass.await.unwrap();
    assert_eq!((r.delivered, r.retrying), (1, 1));
}
