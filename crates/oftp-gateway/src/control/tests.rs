//! The control channel in process: a fake runtime, a real SQLite journal, a real Unix socket.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use oftp::journal::{
    AlertKind, Journal, NewAlert, QueueChange, QueueState, QueuedSend, SqliteJournal,
};
use oftp::oftp_proto::codec::FileFormat;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::broadcast;

use super::*;
use crate::ops::{CallNowError, CallSummary, GatewayEvent, GatewayRuntime, PartnerState};
use crate::runtime::Clock;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0)
        .single()
        .unwrap()
        + chrono::Duration::seconds(seconds)
}

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        t(100)
    }
}

/// Partners `acme` (called, with a last call) and `shop` (calls us); remembers what it was
/// asked.
#[derive(Default)]
struct FakeRuntime {
    called: Mutex<Vec<String>>,
    due: Mutex<Vec<String>>,
}

impl GatewayRuntime for FakeRuntime {
    fn partners(&self) -> Vec<PartnerState> {
        vec![
            PartnerState {
                name: "acme".into(),
                address: Some("127.0.0.1:3305".into()),
                last_call: Some(CallSummary {
                    started_at: t(10),
                    ended_at: Some(t(12)),
                    ok: false,
                    text: "connection refused".into(),
                }),
                next_call: Some(t(200)),
                sessions: 0,
                max_sessions: 1,
            },
            PartnerState {
                name: "shop".into(),
                address: None,
                last_call: None,
                next_call: None,
                sessions: 1,
                max_sessions: 2,
            },
        ]
    }

    fn call_now(&self, partner: &str) -> Result<(), CallNowError> {
        match partner {
            "acme" => {
                self.called.lock().unwrap().push(partner.into());
                Ok(())
            }
            "shop" => Err(CallNowError::NoAddress(partner.into())),
            _ => Err(CallNowError::UnknownPartner(partner.into())),
        }
    }

    fn files_due(&self, partner: &str) {
        self.due.lock().unwrap().push(partner.into());
    }

    fn subscribe(&self) -> broadcast::Receiver<GatewayEvent> {
        broadcast::channel(1).1
    }
}

fn send(partner: &str, name: &str) -> QueuedSend {
    QueuedSend {
        partner: partner.into(),
        source_path: PathBuf::from(format!("/out/{partner}/.queue/1/{name}")),
        virtual_file_name: name.to_uppercase(),
        destination: None,
        originator: None,
        format: FileFormat::Unstructured,
        max_record_len: 0,
        user_data: String::new(),
        description: String::new(),
    }
}

struct Daemon {
    dir: tempfile::TempDir,
    journal: Arc<dyn Journal>,
    runtime: Arc<FakeRuntime>,
    server: Option<ControlServer>,
}

impl Daemon {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(dir.path()).unwrap());
        let runtime = Arc::new(FakeRuntime::default());
        let ops = Operations::new(journal.clone(), runtime.clone(), Arc::new(FixedClock));
        let socket = ControlSocket::bind(dir.path(), &dir.path().join(DEFAULT_SOCKET)).unwrap();
        let server = Some(socket.serve(ops));
        Self {
            dir,
            journal,
            runtime,
            server,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join(DEFAULT_SOCKET)
    }

    async fn ask<T: serde::de::DeserializeOwned>(&self, op: Op) -> Result<T, ClientError> {
        client::request(&self.socket(), op).await
    }

    async fn refusal(&self, op: Op) -> ErrorView {
        match self.ask::<serde_json::Value>(op).await {
            Err(ClientError::Refused(e)) => e,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await;
    }
}

/// The responses to `lines` written at once, until the daemon closes the connection (a reset
/// after a refusal, with our lines unread, ends the list too).
async fn raw(socket: &Path, lines: &[u8]) -> Vec<Response> {
    let (read, mut write) = UnixStream::connect(socket).await.unwrap().into_split();
    let lines = lines.to_vec();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&lines).await;
        let _ = write.shutdown().await;
    });
    let mut read = BufReader::new(read).lines();
    let mut out = Vec::new();
    while let Ok(Some(line)) = read.next_line().await {
        out.push(serde_json::from_str(&line).unwrap());
    }
    writer.await.unwrap();
    out
}

#[tokio::test]
async fn transfers_are_listed_newest_first_filtered_and_paged() {
    let d = Daemon::start();
    let a = d.journal.enqueue(&send("acme", "a"), t(0)).unwrap();
    let b = d.journal.enqueue(&send("shop", "b"), t(1)).unwrap();
    let c = d.journal.enqueue(&send("acme", "c"), t(2)).unwrap();
    d.journal.cancel_transfer(c, t(3)).unwrap();

    let all: Vec<TransferView> = d
        .ask(Op::Transfers(TransferQuery::default()))
        .await
        .unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [c, b, a]);
    assert_eq!(all[0].state, "cancelled");
    assert_eq!(all[0].virtual_file_name, "C");

    let acme_queued: Vec<TransferView> = d
        .ask(Op::Transfers(TransferQuery {
            partner: Some("acme".into()),
            state: Some("queued".into()),
            ..TransferQuery::default()
        }))
        .await
        .unwrap();
    assert_eq!(acme_queued.iter().map(|r| r.id).collect::<Vec<_>>(), [a]);

    let page: Vec<TransferView> = d
        .ask(Op::Transfers(TransferQuery {
            before_id: Some(c),
            limit: Some(1),
            ..TransferQuery::default()
        }))
        .await
        .unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [b]);

    let since: Vec<TransferView> = d
        .ask(Op::Transfers(TransferQuery {
            since: Some(t(2)),
            ..TransferQuery::default()
        }))
        .await
        .unwrap();
    assert_eq!(since.iter().map(|r| r.id).collect::<Vec<_>>(), [c]);

    let bad = d
        .refusal(Op::Transfers(TransferQuery {
            state: Some("lost".into()),
            ..TransferQuery::default()
        }))
        .await;
    assert_eq!(bad.code, "unknown_state");
    assert!(
        bad.message.contains("queued, in_transfer"),
        "{}",
        bad.message
    );
    d.stop().await;
}

#[tokio::test]
async fn a_retried_file_is_queued_again_and_its_partners_loop_woken() {
    let d = Daemon::start();
    let id = d.journal.enqueue(&send("acme", "inv"), t(0)).unwrap();
    d.journal.claim_due("acme", t(1), 10).unwrap();
    d.journal
        .transition(
            id,
            &QueueChange::to(QueueState::Failed, t(2)).error("SFNA 03"),
        )
        .unwrap();

    let row: TransferView = d.ask(Op::Retry { id }).await.unwrap();
    assert_eq!(row.state, "queued");
    assert_eq!(
        row.next_attempt_at,
        t(100),
        "due now, by the daemon's clock"
    );
    assert_eq!(*d.runtime.due.lock().unwrap(), ["acme"]);

    let shown: TransferDetailView = d.ask(Op::Transfer { id }).await.unwrap();
    let steps: Vec<(Option<&str>, &str)> = shown
        .history
        .iter()
        .map(|h| (h.from.as_deref(), h.to.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (None, "queued"),
            (Some("queued"), "in_transfer"),
            (Some("in_transfer"), "failed"),
            (Some("failed"), "queued")
        ]
    );
    assert_eq!(shown.history[2].note.as_deref(), Some("SFNA 03"));
    assert_eq!(
        shown.history[3].note.as_deref(),
        Some("retried by the operator")
    );
    d.stop().await;
}

#[tokio::test]
async fn retry_and_cancel_refused_by_the_state_say_why_and_unknown_ids_say_so() {
    let d = Daemon::start();
    let id = d.journal.enqueue(&send("acme", "inv"), t(0)).unwrap();
    d.journal.claim_due("acme", t(1), 10).unwrap();

    let refused = d.refusal(Op::Cancel { id }).await;
    assert_eq!(refused.code, "refused");
    assert_eq!(
        refused.message,
        format!("transfer {id}: a in transfer file cannot become cancelled")
    );
    d.journal
        .transition(id, &QueueChange::to(QueueState::Delivered, t(2)))
        .unwrap();
    let refused = d.refusal(Op::Retry { id }).await;
    assert_eq!(
        refused.message,
        format!("transfer {id}: a delivered file cannot become queued")
    );
    assert!(d.runtime.due.lock().unwrap().is_empty(), "nothing woken");

    for op in [
        Op::Retry { id: 999 },
        Op::Cancel { id: 999 },
        Op::Transfer { id: 999 },
    ] {
        let e = d.refusal(op).await;
        assert_eq!(e.code, "unknown_transfer");
        assert_eq!(e.message, "no transfer 999; `oftp transfers` lists them");
    }
    d.stop().await;
}

#[tokio::test]
async fn a_call_reaches_the_runtime_and_its_refusals_keep_their_codes() {
    let d = Daemon::start();
    let () = d
        .ask(Op::Call {
            partner: "acme".into(),
        })
        .await
        .unwrap();
    assert_eq!(*d.runtime.called.lock().unwrap(), ["acme"]);
    let unknown = d
        .refusal(Op::Call {
            partner: "nobody".into(),
        })
        .await;
    assert_eq!(unknown.code, "unknown_partner");
    assert_eq!(
        unknown.message,
        "no partner named \"nobody\" in the configuration"
    );
    let no_address = d
        .refusal(Op::Call {
            partner: "shop".into(),
        })
        .await;
    assert_eq!(no_address.code, "no_address");
    d.stop().await;
}

#[tokio::test]
async fn status_has_the_daemon_partners_queue_depth_and_open_alerts() {
    let d = Daemon::start();
    d.journal.enqueue(&send("acme", "a"), t(0)).unwrap();
    d.journal.enqueue(&send("acme", "b"), t(0)).unwrap();
    let c = d.journal.enqueue(&send("shop", "c"), t(0)).unwrap();
    d.journal.cancel_transfer(c, t(1)).unwrap();
    let alert = NewAlert {
        kind: AlertKind::PartnerUnreachable,
        partner: Some("acme".into()),
        file: None,
        text: "acme unreachable for 5 attempts".into(),
    };
    let open = d.journal.raise_alert(&alert, t(2)).unwrap();

    let status: StatusView = d.ask(Op::Status).await.unwrap();
    assert_eq!(status.daemon.pid, std::process::id());
    assert_eq!(status.daemon.started_at, t(100));
    assert_eq!(status.partners, d.runtime.partners());
    assert_eq!(
        status.queue,
        [
            QueueDepthView {
                state: "queued".into(),
                count: 2
            },
            QueueDepthView {
                state: "cancelled".into(),
                count: 1
            }
        ]
    );
    assert_eq!(
        status.open_alerts.iter().map(|a| a.id).collect::<Vec<_>>(),
        [open]
    );
    assert_eq!(status.open_alerts[0].kind, "partner_unreachable");
    d.stop().await;
}

#[tokio::test]
async fn an_acknowledged_alert_leaves_the_open_list_and_stays_in_all() {
    let d = Daemon::start();
    let alert = |text: &str| NewAlert {
        kind: AlertKind::FileFailed,
        partner: Some("acme".into()),
        file: Some("INV".into()),
        text: text.into(),
    };
    let first = d.journal.raise_alert(&alert("one"), t(0)).unwrap();
    let second = d.journal.raise_alert(&alert("two"), t(1)).unwrap();
    let acked: AlertView = d.ask(Op::Ack { id: first }).await.unwrap();
    assert_eq!(acked.acknowledged_at, Some(t(100)));
    let open: Vec<AlertView> = d.ask(Op::Alerts { all: false }).await.unwrap();
    assert_eq!(open.iter().map(|a| a.id).collect::<Vec<_>>(), [second]);
    let all: Vec<AlertView> = d.ask(Op::Alerts { all: true }).await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.id).collect::<Vec<_>>(),
        [second, first]
    );
    let unknown = d.refusal(Op::Ack { id: 999 }).await;
    assert_eq!(unknown.code, "unknown_alert");
    d.stop().await;
}

#[tokio::test]
async fn malformed_requests_and_other_versions_get_an_error_line_and_the_connection_goes_on() {
    let d = Daemon::start();
    let answers = raw(
        &d.socket(),
        b"not json\n{\"v\":2,\"op\":\"status\"}\n{\"op\":\"status\"}\n{\"v\":1,\"op\":\"reboot\"}\n{\"v\":1,\"op\":\"alerts\"}\n",
    )
    .await;
    let codes: Vec<Option<&str>> = answers
        .iter()
        .map(|r| r.error.as_ref().map(|e| e.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            Some("bad_request"),
            Some("unsupported_version"),
            Some("unsupported_version"),
            Some("bad_request"),
            None
        ]
    );
    assert!(answers[4].ok);
    assert!(
        answers[1]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("version 1, the request has version 2"),
        "{:?}",
        answers[1]
    );
    d.stop().await;
}

#[tokio::test]
async fn a_line_longer_than_the_limit_is_refused_and_the_connection_closed() {
    let d = Daemon::start();
    let mut long = vec![b' '; protocol::MAX_LINE + 10];
    long.push(b'\n');
    long.extend_from_slice(b"{\"v\":1,\"op\":\"alerts\"}\n");
    let answers = raw(&d.socket(), &long).await;
    assert_eq!(answers.len(), 1, "closed after the refusal: {answers:?}");
    assert_eq!(answers[0].error.as_ref().unwrap().code, "bad_request");
    d.stop().await;
}

#[tokio::test]
async fn the_socket_is_private_and_removed_at_shutdown() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();
    let socket = d.socket();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let Daemon {
        dir: _dir,
        mut server,
        ..
    } = d;
    server.take().unwrap().shutdown().await;
    assert!(!socket.exists(), "the socket is removed");
    match client::request::<StatusView>(&socket, Op::Status).await {
        Err(e @ ClientError::NotRunning { .. }) => assert!(
            e.to_string().starts_with("the daemon is not running"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_directory_is_refused() {
    let d = Daemon::start();
    let second = ControlSocket::bind(d.dir.path(), &d.dir.path().join("other.sock"));
    match second {
        Err(e @ ControlError::AlreadyRunning { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("(pid {})", std::process::id())),
                "{text}"
            );
            assert!(text.contains("stop it first"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let _: Vec<AlertView> = d
        .ask(Op::Alerts { all: false })
        .await
        .expect("the first one still answers");
    d.stop().await;
}

#[tokio::test]
async fn a_stale_socket_of_a_killed_daemon_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_SOCKET);
    // What a daemon killed with -9 leaves: the socket file, nobody listening, no lock held.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(dir.path()).unwrap());
    let ops = Operations::new(
        journal,
        Arc::new(FakeRuntime::default()),
        Arc::new(FixedClock),
    );
    let server = ControlSocket::bind(dir.path(), &path).unwrap().serve(ops);
    let _: Vec<AlertView> = client::request(&path, Op::Alerts { all: false })
        .await
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_file_in_the_sockets_place_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_SOCKET);
    std::fs::write(&path, "keep me").unwrap();
    let e = ControlSocket::bind(dir.path(), &path).unwrap_err();
    assert!(matches!(e, ControlError::NotASocket { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[tokio::test]
async fn offline_operations_read_the_journal_and_refuse_changes() {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(dir.path()).unwrap());
    let id = journal.enqueue(&send("acme", "a"), t(0)).unwrap();
    let ops = Operations::offline(journal, Arc::new(FixedClock));
    assert_eq!(ops.transfer(id).await.unwrap().transfer.state, "queued");
    assert_eq!(ops.retry(id).await.unwrap_err(), OpsError::NotRunning);
    assert_eq!(ops.cancel(id).await.unwrap_err(), OpsError::NotRunning);
    assert_eq!(ops.status().await.unwrap_err(), OpsError::NotRunning);
    assert_eq!(ops.call("acme").unwrap_err(), OpsError::NotRunning);
    assert_eq!(ops.acknowledge(1).await.unwrap_err(), OpsError::NotRunning);
}

fn session(
    partner: &str,
    code: &str,
    transfers: Vec<oftp::journal::SessionTransfer>,
) -> oftp::journal::SessionBatch {
    use oftp::journal::{Direction, SessionCommand, SessionEnd, SessionRole, SessionStart};
    oftp::journal::SessionBatch {
        session: None,
        start: SessionStart {
            partner: partner.into(),
            partner_code: code.into(),
            role: SessionRole::Responder,
            remote: "127.0.0.1:5000".into(),
            started_at: t(1),
        },
        commands: vec![SessionCommand {
            at: t(1),
            direction: Direction::Received,
            command: "SSID".into(),
            description: "SSID level 5 code ACME".into(),
        }],
        transfers,
        end: Some(SessionEnd {
            at: t(2),
            result: "OK".into(),
        }),
    }
}

fn moved(direction: oftp::journal::Direction, row: i64) -> oftp::journal::SessionTransfer {
    oftp::journal::SessionTransfer {
        direction,
        row: Some(row),
        octets: 10,
        done: true,
    }
}

fn key(dsn: &str) -> oftp::journal::FileKey {
    oftp::journal::FileKey::new(
        "ACME".parse().unwrap(),
        dsn,
        <oftp::stamp::FileStamp as oftp::stamp::FileStampExt>::from_datetime(t(0).naive_utc(), 1),
    )
}

#[tokio::test]
async fn transfers_of_both_directions_are_paged_with_a_cursor() {
    use oftp::journal::Direction;
    let d = Daemon::start();
    let out = d.journal.enqueue(&send("acme", "early"), t(-3600)).unwrap();
    let received = d
        .journal
        .begin_receive("ACME", &key("IN"), Path::new("p"), Path::new("/in/IN"), "")
        .unwrap();
    d.journal
        .complete_receive(received, Path::new("/in/IN"))
        .unwrap();
    d.journal
        .record_session(&session(
            "acme",
            "ACME",
            vec![moved(Direction::Received, received)],
        ))
        .unwrap();

    let first: TransferPage = d
        .ask(Op::TransferPage(TransferQuery {
            limit: Some(1),
            ..TransferQuery::default()
        }))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    let inbound = &first.items[0];
    assert_eq!(
        (
            inbound.direction.as_str(),
            inbound.transfer_id.clone(),
            inbound.partner.as_str()
        ),
        ("in", format!("in-{received}"), "acme"),
        "the received file (newest) first, under the partner's name"
    );
    assert_eq!(inbound.state, "received");
    let cursor = first.next_cursor.clone().expect("a second page");
    let second: TransferPage = d
        .ask(Op::TransferPage(TransferQuery {
            limit: Some(1),
            cursor: Some(cursor),
            ..TransferQuery::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|r| (r.direction.as_str(), r.transfer_id.as_str()))
            .collect::<Vec<_>>(),
        [("out", out.to_string().as_str())]
    );
    assert_eq!(second.next_cursor, None, "the last page");

    let outbound: Vec<TransferView> = d
        .ask(Op::Transfers(TransferQuery {
            direction: Some("out".into()),
            ..TransferQuery::default()
        }))
        .await
        .unwrap();
    assert_eq!(outbound.iter().map(|r| r.id).collect::<Vec<_>>(), [out]);

    let bad = d
        .refusal(Op::TransferPage(TransferQuery {
            cursor: Some("yesterday".into()),
            ..TransferQuery::default()
        }))
        .await;
    assert_eq!(bad.code, "bad_cursor");
    assert!(bad.message.contains("next_cursor"), "{}", bad.message);
    let bad = d
        .refusal(Op::Transfers(TransferQuery {
            direction: Some("sideways".into()),
            ..TransferQuery::default()
        }))
        .await;
    assert_eq!(bad.code, "unknown_direction");
    assert!(bad.message.contains("in, out"), "{}", bad.message);
    d.stop().await;
}

#[tokio::test]
async fn a_transfers_detail_has_the_sessions_that_moved_it_with_their_commands() {
    use oftp::journal::Direction;
    let d = Daemon::start();
    let out = d.journal.enqueue(&send("acme", "inv"), t(0)).unwrap();
    let received = d
        .journal
        .begin_receive("ACME", &key("IN"), Path::new("p"), Path::new("/in/IN"), "")
        .unwrap();
    d.journal
        .record_session(&session(
            "acme",
            "ACME",
            vec![
                moved(Direction::Sent, out),
                moved(Direction::Received, received),
            ],
        ))
        .unwrap();

    for transfer in [out.to_string(), format!("in-{received}")] {
        let detail: TransferDetailView = d
            .ask(Op::TransferDetail {
                transfer: transfer.clone(),
            })
            .await
            .unwrap();
        assert_eq!(detail.transfer.transfer_id, transfer);
        assert_eq!(detail.sessions.len(), 1, "{transfer}");
        let s = &detail.sessions[0];
        assert_eq!((s.role.as_str(), s.partner.as_str()), ("responder", "acme"));
        assert_eq!(s.result.as_deref(), Some("OK"));
        assert_eq!(
            s.commands
                .iter()
                .map(|c| (c.direction.as_str(), c.command.as_str()))
                .collect::<Vec<_>>(),
            [("in", "SSID")]
        );
    }
    let shown: TransferDetailView = d.ask(Op::Transfer { id: out }).await.unwrap();
    assert_eq!(shown.sessions.len(), 1, "`oftp transfer show` has them too");
    assert_eq!(shown.history.len(), 1);

    let unknown = d
        .refusal(Op::TransferDetail {
            transfer: "in-999".into(),
        })
        .await;
    assert_eq!(unknown.code, "unknown_transfer");
    assert!(unknown.message.contains("in-999"), "{}", unknown.message);
    let bad = d
        .refusal(Op::TransferDetail {
            transfer: "nine".into(),
        })
        .await;
    assert_eq!(bad.code, "bad_transfer_id");

    let ops = Operations::offline(d.journal.clone(), Arc::new(FixedClock));
    assert_eq!(
        ops.partner_counters().await.unwrap(),
        [PartnerCountersView {
            partner: "acme".into(),
            files_sent: 1,
            bytes_sent: 10,
            files_received: 1,
            bytes_received: 10,
        }]
    );
    d.stop().await;
}
