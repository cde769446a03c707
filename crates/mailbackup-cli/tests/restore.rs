//! `mailbackup restore` end to end: a kill -9 midway then a resumed run restores each message
//! exactly once, a re-run restores nothing, a token without Mail.ReadWrite is told so.

use graph_emulator::{
    AppRegistration, DEFAULT_CLIENT_SECRET, Emulator, EmulatorConfig, EndpointKind, FaultConfig,
    MailboxSpec,
};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

mod common;

use common::*;

const RW_APP: &str = "restore-app";
const BOB: &str = "bob@emulator.test";

async fn emulator_ab(messages: usize, latency: Duration) -> Emulator {
    let mut app = AppRegistration::confidential_client(RW_APP, DEFAULT_CLIENT_SECRET);
    app.application_permissions = vec!["Mail.ReadWrite".into()];
    Emulator::start(
        EmulatorConfig::default()
            .with_mailboxes(vec![
                MailboxSpec::new(ALICE).messages(messages).seed(21),
                MailboxSpec::new(BOB).messages(0),
            ])
            .with_app(app)
            .with_latency(latency),
    )
    .await
    .unwrap()
}

async fn rw_token(emu: &Emulator) -> String {
    app_token_of(emu, RW_APP).await
}

fn restore_args(emu: &Emulator, dir: &Path) -> Vec<String> {
    vec![
        "restore".into(),
        "-d".into(),
        dir.display().to_string(),
        "--graph-url".into(),
        emu.graph_url(),
        "--to-user".into(),
        BOB.into(),
        "--into-folder".into(),
        "Restored".into(),
        "--retry-interval".into(),
        "0.05".into(),
    ]
}

fn restore_cmd(emu: &Emulator, dir: &Path, token: &str) -> assert_cmd::Command {
    let mut c = bin();
    c.env("MAILBACKUP_AUTHORIZATION", format!("Bearer {token}"))
        .args(restore_args(emu, dir));
    c
}

/// How many copies of each of Alice's messages Bob has.
fn copies(emu: &Emulator) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = emu
        .mailbox(ALICE)
        .expected_messages()
        .into_iter()
        .map(|m| (m.info.internet_message_id, 0))
        .collect();
    for m in emu.mailbox(BOB).expected_messages() {
        *seen.entry(m.info.internet_message_id).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_midway_and_run_again_restores_each_message_exactly_once() {
    let total = 120;
    let emu = emulator_ab(total, Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = rw_token(&emu).await;
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailbackup"))
        .env("MAILBACKUP_AUTHORIZATION", format!("Bearer {token}"))
        .args(restore_args(&emu, dir.path()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        emu.wait_for_requests(EndpointKind::MessageCreate, 30),
    )
    .await
    .expect("the restore did not get going");
    // Creates in flight when the kill lands are served after it: the window between Graph
    // creating a message and the restore log recording it.
    emu.faults().set(FaultConfig {
        extra_latency: Duration::from_millis(200),
        ..FaultConfig::default()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    emu.faults().set(FaultConfig::default());
    tokio::time::timeout(Duration::from_secs(30), emu.mailbox(BOB).wait_idle())
        .await
        .expect("the killed run's requests end");
    let before = emu.mailbox(BOB).expected_messages().len();
    assert!(before < total, "killed too late to test anything");

    let o = run(restore_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        copies(&emu).values().all(|n| *n == 1),
        "each message exactly once: {:?}\n{}",
        copies(&emu).values().filter(|n| **n != 1).count(),
        text(&o)
    );
    assert_eq!(emu.mailbox(BOB).expected_messages().len(), total);

    // A re-run restores nothing.
    let o = run(restore_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "{total} selected: 0 restored, {total} already restored"
        )),
        "{}",
        text(&o)
    );
    assert_eq!(emu.mailbox(BOB).expected_messages().len(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_mail_readwrite_is_told_to_get_it_and_exits_2() {
    let emu = emulator_ab(5, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    // The default app may read mail but not write it.
    let token = app_token(&emu).await;
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    let o = run(restore_cmd(&emu, dir.path(), &token)).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("403") && err.contains("needs the Mail.ReadWrite permission"),
        "{}",
        text(&o)
    );
    assert!(emu.mailbox(BOB).expected_messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_a_query_restores_exactly_what_search_finds() {
    let total = 30;
    let emu = emulator_ab(total, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let token = rw_token(&emu).await;
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));

    let query = "is:read";
    let mut c = bin();
    c.args(["search", "-d"])
        .arg(dir.path())
        .args(["--json", "--limit", "1000", query]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let found = searched_message_ids(&o);
    assert!(
        !found.is_empty() && found.len() < total,
        "the query must select some messages, not all: {}",
        found.len()
    );

    let mut c = restore_cmd(&emu, dir.path(), &token);
    c.args(["--query", query]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let mut restored: Vec<String> = emu
        .mailbox(BOB)
        .expected_messages()
        .into_iter()
        .map(|m| m.info.internet_message_id)
        .collect();
    restored.sort();
    assert_eq!(restored, found, "{}", text(&o));

    // A malformed query is refused before anything is created.
    let mut c = restore_cmd(&emu, dir.path(), &token);
    c.args(["--query", "frm:alice"]);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(emu.mailbox(BOB).expected_messages().len(), found.len());
}
