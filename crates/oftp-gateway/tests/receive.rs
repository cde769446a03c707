//! End to end, with a real server and client on 127.0.0.1: the `on_receive` command of
//! received files, `eerp_after = "processed"`, resuming after a restart, the concurrency limit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oftp::config::{LocalIdentity, Partner, PartnerTable, Password, ServerSettings};
use oftp::journal::{
    AlertKind, FileKey, Journal, Processing, ProcessingState, ReceivedFile, SendState,
    SqliteJournal,
};
use oftp::stamp::{FileStamp, FileStampExt};
use oftp::{Client, ClientConfig, FileOutcome, OutgoingFile, Server, ServerConfig};
use oftp_gateway::postprocess::{Clock, PartnerPostProcessing};
use oftp_gateway::{EerpAfter, GatewayHandler, OnReceive, PostProcessingSettings, PostProcessor};

const SERVER: &str = "O0013SERVER";
const CLIENT: &str = "O0013CLIENT";

fn partner(name: &str, ssid: &str, pw: &str) -> Partner {
    Partner::new(name, ssid, Password::new(pw))
}

fn identity(ssid: &str, pw: &str) -> LocalIdentity {
    LocalIdentity {
        ssid: ssid.into(),
        sfid: ssid.into(),
        password: Password::new(pw),
    }
}

fn clock() -> Clock {
    Arc::new(chrono::Utc::now)
}

fn sh(script: String, timeout_secs: u64, processed_dir: Option<PathBuf>) -> OnReceive {
    OnReceive {
        command: vec!["/bin/sh".into(), "-c".into(), script],
        timeout_secs,
        processed_dir,
    }
}

fn processor(
    journal: Arc<dyn Journal>,
    cmd: OnReceive,
    eerp_after: EerpAfter,
    max_concurrent: u32,
) -> Arc<PostProcessor> {
    let partners = HashMap::from([(
        CLIENT.to_owned(),
        PartnerPostProcessing {
            name: "client".into(),
            callable: false,
            on_receive: Some(cmd),
            eerp_after,
        },
    )]);
    PostProcessor::new(
        journal,
        partners,
        oftp::identity::OdetteId::new(SERVER).expect("a valid code"),
        &PostProcessingSettings { max_concurrent },
        clock(),
    )
}

/// Polls the journal until `f` holds (10 s at most).
async fn until(journal: &Arc<dyn Journal>, what: &str, f: impl Fn(&dyn Journal) -> bool) {
    for _ in 0..200 {
        if f(&**journal) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn only_row(j: &dyn Journal) -> Option<Processing> {
    j.processing(1).unwrap()
}

#[tokio::test]
async fn eerp_after_processed_holds_the_eerp_while_the_command_fails_and_sends_it_after_a_successful_rerun()
 {
    let dir = tempfile::tempdir().unwrap();
    let (server_dir, client_dir) = (dir.path().join("server"), dir.path().join("client"));
    let (ok_flag, log, done) = (
        dir.path().join("import-is-up"),
        dir.path().join("imported"),
        dir.path().join("done"),
    );
    // Fails (exit 3) until the flag exists, then records what it imported.
    let script = format!(
        "test -f {} || {{ echo import down >&2; exit 3; }}; echo \"$OFTP_DSN $OFTP_SIZE $OFTP_FORMAT\" >> {}",
        ok_flag.display(),
        log.display()
    );
    let mut cfg = ServerConfig::new(
        identity(SERVER, "SRVPW"),
        PartnerTable::new([partner("client", CLIENT, "CLIPW")]).unwrap(),
        server_dir.clone(),
    );
    cfg.settings = ServerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_secs(2),
        ..ServerSettings::default()
    };
    let server = Server::new(cfg).unwrap();
    let journal = Arc::clone(server.journal());
    let pp = processor(
        Arc::clone(&journal),
        sh(script, 10, Some(done.clone())),
        EerpAfter::Processed,
        2,
    );
    let mut handler = GatewayHandler::new();
    handler.post_processing = Some(Arc::clone(&pp));
    let running = server.handler(handler).start().await.unwrap();
    let addr = running.local_addr().unwrap().to_string();

    let mut ccfg = ClientConfig::new(
        identity(CLIENT, "CLIPW"),
        partner("server", SERVER, "SRVPW"),
        client_dir.join("received"),
    );
    ccfg.inactivity_timeout = Duration::from_secs(10);
    let client_journal = SqliteJournal::open_in_dir(&client_dir).unwrap();
    let client = Client::new(ccfg, client_journal.clone()).unwrap();
    let file = dir.path().join("order.edi");
    std::fs::write(&file, b"UNB+order+42").unwrap();

    // Stored and confirmed (EFPA), but no EERP: it waits for the command.
    let report = client
        .run(&addr, vec![OutgoingFile::new(&file)])
        .await
        .unwrap();
    assert_eq!(
        report.files[0].1,
        FileOutcome::AwaitingEndResponse,
        "{report:?}"
    );
    let stamp = report.files[0].0.stamp.unwrap();
    until(&journal, "the command failed", |j| {
        only_row(j).is_some_and(|p| p.state == ProcessingState::Failed)
    })
    .await;
    let row = only_row(&*journal).unwrap();
    let run = row.last_run.clone().unwrap();
    assert_eq!(run.exit_code, Some(3));
    assert!(run.output.contains("import down"), "{run:?}");
    assert!(row.file.path.exists(), "the file stays where it is");
    assert!(!row.moved);
    let alerts = journal.open_alerts().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].alert.kind, AlertKind::PostProcessingFailed);
    assert_eq!(alerts[0].alert.partner.as_deref(), Some("client"));
    assert!(
        alerts[0].alert.text.contains("EERP is held"),
        "{}",
        alerts[0].alert.text
    );

    // A later session: still no EERP.
    let report = client.run(&addr, vec![]).await.unwrap();
    assert!(report.earlier.is_empty(), "{:?}", report.earlier);
    let key = FileKey::new(
        oftp::identity::OdetteId::new(CLIENT).unwrap(),
        "ORDER.EDI",
        stamp,
    );
    assert_eq!(
        client_journal.sent_by_key(&key).unwrap().unwrap().state,
        SendState::AwaitingEndResponse
    );

    // The import is fixed; the operator runs it again: succeeded, moved, EERP released.
    std::fs::write(&ok_flag, b"").unwrap();
    let rerun = pp.rerun(row.id).await.unwrap();
    assert_eq!(rerun.state, ProcessingState::Pending);
    until(&journal, "the rerun succeeded and moved the file", |j| {
        only_row(j).is_some_and(|p| p.state == ProcessingState::Succeeded && p.moved)
    })
    .await;
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "ORDER.EDI 12 U\n");
    let row = only_row(&*journal).unwrap();
    assert_eq!(row.attempts, 2);
    assert_eq!(row.file.path, done.join("ORDER.EDI"));
    assert_eq!(std::fs::read(&row.file.path).unwrap(), b"UNB+order+42");

    // The next session carries the EERP.
    let report = client.run(&addr, vec![]).await.unwrap();
    assert_eq!(report.earlier.len(), 1, "{report:#?}");
    assert!(report.earlier[0].response.negative.is_none());
    assert_eq!(
        client_journal.sent_by_key(&key).unwrap().unwrap().state,
        SendState::Delivered
    );
    running.shutdown().await;
}

fn received_file(dir: &Path, n: u16) -> ReceivedFile {
    let path = dir.join(format!("F{n}"));
    std::fs::write(&path, b"x").unwrap();
    ReceivedFile {
        partner: CLIENT.into(),
        partner_name: "client".into(),
        key: FileKey::new(
            oftp::identity::OdetteId::new(CLIENT).unwrap(),
            &format!("F{n}"),
            FileStamp::parse(&format!("2026050607080900{n:02}")).unwrap(),
        ),
        destination: SERVER.into(),
        path,
        size: 1,
        format: "U".into(),
        security: "none".into(),
        user_data: String::new(),
    }
}

#[tokio::test]
async fn a_command_running_when_the_daemon_stopped_runs_again_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(dir.path()).unwrap());
    let log = dir.path().join("runs");
    let f = received_file(dir.path(), 1);
    let row = journal
        .add_processing(&f, false, chrono::Utc::now())
        .unwrap();
    // The last daemon started it and died.
    journal
        .start_processing(row.id, chrono::Utc::now())
        .unwrap();
    let pp = processor(
        Arc::clone(&journal),
        sh(
            format!("echo \"$OFTP_ATTEMPT\" >> {}", log.display()),
            10,
            None,
        ),
        EerpAfter::Stored,
        1,
    );
    assert_eq!(pp.resume().await.unwrap(), 1);
    until(&journal, "the command ran again", |j| {
        j.processing(row.id).unwrap().unwrap().state == ProcessingState::Succeeded
    })
    .await;
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "2\n");
}

#[tokio::test]
async fn no_more_commands_run_at_once_than_max_concurrent() {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(dir.path()).unwrap());
    let (running, peak) = (dir.path().join("running"), dir.path().join("peak"));
    std::fs::create_dir(&running).unwrap();
    for n in 1..=6 {
        let f = received_file(dir.path(), n);
        journal
            .add_processing(&f, false, chrono::Utc::now())
            .unwrap();
    }
    // Each run marks itself running, notes how many run, and stays a moment.
    let script = format!(
        "touch {r}/$$; ls {r} | wc -l >> {p}; sleep 0.3; rm {r}/$$",
        r = running.display(),
        p = peak.display()
    );
    let pp = processor(
        Arc::clone(&journal),
        sh(script, 10, None),
        EerpAfter::Stored,
        2,
    );
    assert_eq!(pp.resume().await.unwrap(), 6);
    until(&journal, "all six ran", |j| {
        (1..=6).all(|id| j.processing(id).unwrap().unwrap().state == ProcessingState::Succeeded)
    })
    .await;
    let counts: Vec<u32> = std::fs::read_to_string(&peak)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 6);
    assert!(counts.iter().all(|&c| c <= 2), "{counts:?}");
}

#[tokio::test]
async fn a_file_completed_before_its_post_processing_was_recorded_is_processed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open_in_dir(dir.path()).unwrap());
    let log = dir.path().join("runs");
    let f = received_file(dir.path(), 1);
    // The last daemon completed the reception and died before end_transfer recorded the run.
    let id = journal
        .begin_receive(CLIENT, &f.key, &dir.path().join(".part"), &f.path, "UD")
        .unwrap();
    journal.complete_receive(id, &f.path).unwrap();
    let pp = processor(
        Arc::clone(&journal),
        sh(
            format!("echo \"$OFTP_FILE $OFTP_USER_DATA\" >> {}", log.display()),
            10,
            None,
        ),
        EerpAfter::Processed,
        1,
    );
    assert_eq!(pp.resume().await.unwrap(), 1);
    until(&journal, "the command ran", |j| {
        j.processing_of(CLIENT, &f.key)
            .unwrap()
            .is_some_and(|p| p.state == ProcessingState::Succeeded && p.hold_end_response)
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{} UD\n", f.path.display())
    );
    assert_eq!(
        journal.pending_end_responses(CLIENT).unwrap().len(),
        1,
        "released after the run: the next session sends the EERP"
    );
    assert_eq!(pp.resume().await.unwrap(), 0, "nothing to do a second time");
}
