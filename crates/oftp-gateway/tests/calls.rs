//! The gateway's call loops in process: a call at a calendar time with a clock the test
//! controls (paused tokio time), and a real call with a plain TCP client to an `oftp` server
//! on 127.0.0.1 that settles the file delivered.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use oftp::config::{LocalIdentity, Partner, PartnerTable, Password, ServerSettings};
use oftp::journal::{Direction, Journal, QueueState, SqliteJournal, TransferFilter};
use oftp::{Client, ClientConfig, ClientError, OutgoingFile, Server, ServerConfig};
use oftp_gateway::ops::GatewayEvent;
use oftp_gateway::{
    Clock, Dialer, Dialing, Gateway, GatewayHandler, GatewayRuntime, PartnerGateway, PartnerPlan,
    ScheduleConfig, WatchSettings,
};

/// The wall clock of the tests: `base` plus the tokio time passed since the start, so it
/// moves with paused time.
struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + (tokio::time::Instant::now() - self.start)
    }
}

/// Records when it was asked to call, and reports the partner as not listening.
struct Recorder {
    clock: Arc<TokioClock>,
    calls: Mutex<Vec<DateTime<Utc>>>,
}

impl Dialer for Recorder {
    fn dial<'a>(&'a self, _: &'a str, _: Vec<OutgoingFile>, _: GatewayHandler) -> Dialing<'a> {
        self.calls.lock().unwrap().push(self.clock.now());
        Box::pin(async {
            Err(ClientError::Connect {
                addr: "127.0.0.1:1".into(),
                error: std::io::ErrorKind::ConnectionRefused.into(),
            })
        })
    }
}

fn plan(dir: &Path, address: &str, gateway: PartnerGateway) -> PartnerPlan {
    PartnerPlan {
        name: "acme".into(),
        address: Some(address.into()),
        outbox: dir.join("outbox/acme"),
        gateway,
    }
}

/// Lets paused time run to `t` in steps of a second. The steps bound how far time moves on
/// while the gateway waits for a journal operation on the blocking pool (paused time jumps
/// to the next timer when the runtime is idle), so a call is seen within its minute.
async fn advance_to(clock: &TokioClock, t: DateTime<Utc>) {
    while clock.now() < t {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn minute(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    t.with_second(0).unwrap().with_nanosecond(0).unwrap()
}

fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, d, h, m, 0).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_calendar_schedule_calls_at_its_time_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TokioClock {
        base: at(7, 6, 0),
        start: tokio::time::Instant::now(),
    });
    let recorder = Arc::new(Recorder {
        clock: clock.clone(),
        calls: Mutex::new(Vec::new()),
    });
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::in_memory().unwrap());
    let gateway = PartnerGateway {
        schedule: Some(ScheduleConfig {
            calendar: vec!["30 6 * * *".into()],
            ..Default::default()
        }),
        alert_after_failed_calls: 0,
        ..Default::default()
    };
    let g = Gateway::start(
        journal.clone(),
        clock.clone(),
        recorder.clone(),
        vec![plan(dir.path(), "127.0.0.1:1", gateway)],
        WatchSettings {
            events: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let calls = || -> Vec<DateTime<Utc>> {
        recorder
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|t| minute(*t))
            .collect()
    };
    advance_to(&clock, at(7, 6, 29)).await;
    assert!(calls().is_empty(), "no call before 06:30");
    assert_eq!(g.partners()[0].next_call, Some(at(7, 6, 30)));
    advance_to(&clock, at(7, 6, 31)).await;
    assert_eq!(calls(), [at(7, 6, 30)]);
    // The next day's call, and nothing in between.
    advance_to(&clock, at(8, 6, 31)).await;
    assert_eq!(calls(), [at(7, 6, 30), at(8, 6, 30)]);
    let last = journal.last_call("acme").unwrap().unwrap();
    assert_eq!(
        minute(last.started_at),
        at(8, 6, 30),
        "the journal keeps the last call"
    );
    assert!(!last.ok);
    assert_eq!(g.partners()[0].next_call, Some(at(9, 6, 30)));
    g.shutdown().await;
}

const SERVER_SSID: &str = "O0013SERVER";
const CLIENT_SSID: &str = "O0013CLIENT";

fn partner(name: &str, ssid: &str, password: &str) -> Partner {
    toml::from_str(&format!(
        "name = \"{name}\"\nssid = \"{ssid}\"\npassword = \"{password}\"\n"
    ))
    .unwrap()
}

/// Calls with a plain TCP client, as `oftp send` without TLS.
struct PlainDialer {
    client: ClientConfig,
    address: String,
    journal: Arc<dyn Journal>,
}

impl Dialer for PlainDialer {
    fn dial<'a>(
        &'a self,
        _: &'a str,
        files: Vec<OutgoingFile>,
        handler: GatewayHandler,
    ) -> Dialing<'a> {
        Box::pin(async move {
            Client::new(self.client.clone(), self.journal.clone())?
                .handler(handler)
                .run(&self.address, files)
                .await
        })
    }
}

#[tokio::test]
async fn a_queued_file_is_called_out_and_delivered_with_its_live_events() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cfg = ServerConfig::new(
        LocalIdentity {
            ssid: SERVER_SSID.into(),
            sfid: String::new(),
            password: Password::new("SRVPW"),
        },
        PartnerTable::new([partner("client", CLIENT_SSID, "CLIPW")]).unwrap(),
        d.join("server"),
    );
    cfg.settings = ServerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_secs(2),
        ..ServerSettings::default()
    };
    let server = Server::new(cfg).unwrap().start().await.unwrap();
    let address = server.local_addr().unwrap().to_string();

    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open_in_dir(&d.join("client")).unwrap());
    let dialer = PlainDialer {
        client: ClientConfig::new(
            LocalIdentity {
                ssid: CLIENT_SSID.into(),
                sfid: String::new(),
                password: Password::new("CLIPW"),
            },
            partner("acme", SERVER_SSID, "SRVPW"),
            d.join("client/inbox"),
        ),
        address: address.clone(),
        journal: journal.clone(),
    };
    let g = Gateway::start(
        journal.clone(),
        Arc::new(oftp_gateway::SystemClock),
        Arc::new(dialer),
        vec![plan(d, &address, PartnerGateway::default())],
        WatchSettings {
            debounce_ms: 20,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut events = g.subscribe();
    std::fs::write(d.join("outbox/acme/.order.tmp"), b"ORDERS").unwrap();
    std::fs::rename(
        d.join("outbox/acme/.order.tmp"),
        d.join("outbox/acme/order.edi"),
    )
    .unwrap();
    // Every live event until the file is delivered and the session has ended (either first).
    let mut seen = Vec::new();
    let delivered = tokio::time::timeout(Duration::from_secs(20), async {
        let done = |seen: &[GatewayEvent]| {
            seen.iter().any(|e| {
                matches!(e, GatewayEvent::TransferChanged { state, .. } if state == "delivered")
            }) && seen
                .iter()
                .any(|e| matches!(e, GatewayEvent::SessionEnded { .. }))
        };
        while !done(&seen) {
            seen.push(events.recv().await.unwrap());
        }
    })
    .await;
    assert!(
        delivered.is_ok(),
        "no delivered or session end event: {seen:?}"
    );
    let rows = journal.transfers(&TransferFilter::default()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, QueueState::Delivered);
    // The events the metrics are fed from: the file with its size and row, its EERP with the
    // time since its EFPA, and the session as our call that ended normally.
    assert!(
        seen.contains(&GatewayEvent::FileCompleted {
            partner: "acme".into(),
            outgoing: true,
            virtual_file_name: "ORDER.EDI".into(),
            bytes: 6,
            transfer_id: Some(rows[0].id),
        }),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(
            e,
            GatewayEvent::EndResponseReceived { partner, virtual_file_name, positive: true, latency_ms: Some(ms) }
                if partner == "acme" && virtual_file_name == "ORDER.EDI" && *ms < 20_000
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(
            e,
            GatewayEvent::SessionEnded { partner, outgoing_call: true, ok: true, .. }
                if partner == "acme"
        )),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, GatewayEvent::TransferRetried { .. })),
        "a first attempt is no retry: {seen:?}"
    );
    assert_eq!(
        std::fs::read(d.join("server/inbox/client/ORDER.EDI")).unwrap(),
        b"ORDERS"
    );
    // The call is recorded after its files are settled.
    let mut state = g.partners()[0].clone();
    for _ in 0..200 {
        if state.last_call.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = g.partners()[0].clone();
    }
    assert!(state.last_call.as_ref().is_some_and(|c| c.ok), "{state:?}");
    assert_eq!(state.sessions, 0, "the call's session slot is free again");
    // The call's session trail is linked to the queue row it sent (written before the
    // session's end event): the row's detail shows every command of the session.
    let trails = journal.sessions_of(Direction::Sent, rows[0].id).unwrap();
    assert_eq!(trails.len(), 1, "{trails:?}");
    assert_eq!(
        trails[0].start.remote, address,
        "the trail names the partner's address we called"
    );
    let commands: Vec<&str> = trails[0]
        .commands
        .iter()
        .map(|c| c.command.as_str())
        .collect();
    for command in ["SFID", "SFPA", "DATA", "EFID", "EFPA"] {
        assert!(
            commands.contains(&command),
            "{command} missing: {commands:?}"
        );
    }
    g.shutdown().await;
    server.shutdown().await;
}
