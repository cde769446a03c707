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

/// Alice's `messages` backed up (no latency): the emulator, the data folder, a token that may
/// write mail.
async fn backed_up(messages: usize) -> (Emulator, tempfile::TempDir, String) {
    let emu = emulator_ab(messages, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let token = rw_token(&emu).await;
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    (emu, dir, token)
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
    let (emu, dir, token) = backed_up(total).await;

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

/// The Message-IDs of the messages of every `.mbox` file below `dir`, read by Python's
/// `mailbox` module, sorted.
fn exported_message_ids(dir: &Path) -> Vec<String> {
    const READER: &str = r#"
import json, mailbox, os, sys
ids = []
for dirpath, dirs, files in os.walk(sys.argv[1]):
    for f in files:
        if f.endswith('.mbox'):
            ids += [m['Message-ID'] for m in mailbox.mbox(os.path.join(dirpath, f), create=False)]
print(json.dumps(sorted(ids)))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", READER])
        .arg(dir)
        .output()
        .expect("python3 runs (scripts/install-test-deps.sh installs it)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_search_and_restore_take_the_same_selection_options_and_select_the_same_messages() {
    let (emu, backup, token) = backed_up(30).await;

    let all = emu.mailbox(ALICE).messages();
    let mut days: Vec<chrono::NaiveDate> = all.iter().map(|m| m.created.date_naive()).collect();
    days.sort();
    let mid = days[days.len() / 2];
    let (ymd, slashes) = (
        |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string(),
        |d: chrono::NaiveDate| d.format("%Y/%m/%d").to_string(),
    );
    // Two messages named by key and by Graph id (keys as `search --json` prints them).
    let mut c = bin();
    c.args(["search", "-d"])
        .arg(backup.path())
        .args(["--json", "--limit", "1000"]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), all.len());
    let (key, id) = (
        hits[3]["key"].as_str().unwrap().to_string(),
        hits[7]["id"].as_str().unwrap().to_string(),
    );
    let (m3, m7) = (
        hits[3]["message_id"].as_str().unwrap().to_string(),
        hits[7]["message_id"].as_str().unwrap().to_string(),
    );
    let named = {
        let m3 = m3.clone();
        move |m: &graph_emulator::MessageInfo| {
            m.internet_message_id == m3 || m.internet_message_id == m7
        }
    };
    let mailbox = {
        let ix = mailbackup::SqliteIndex::open(&backup.path().join(".meta/index.sqlite")).unwrap();
        mailbackup::Index::saved_counts(&ix).unwrap()[0].0.clone()
    };
    let in_projects = |m: &graph_emulator::MessageInfo| {
        let p = m.folder_path.to_lowercase();
        p == "inbox/projects" || p.starts_with("inbox/projects/")
    };

    let export = |out: &Path, args: &[String]| {
        let mut c = bin();
        c.args(["export", "-d"])
            .arg(backup.path())
            .arg("-o")
            .arg(out)
            .arg("--no-progress")
            .args(args);
        c
    };

    type Keep = Box<dyn Fn(&graph_emulator::MessageInfo) -> bool>;
    let cases: Vec<(&str, Vec<String>, Keep)> = vec![
        (
            "mailbox",
            vec!["--mailbox".into(), mailbox.clone()],
            Box::new(|_| true),
        ),
        (
            "folder",
            vec!["--folder".into(), "INBOX/projects".into()],
            Box::new(in_projects),
        ),
        (
            "created-from",
            vec!["--created-from".into(), slashes(mid)],
            Box::new(move |m| m.created.date_naive() >= mid),
        ),
        (
            "created-to",
            vec!["--created-to".into(), ymd(mid)],
            Box::new(move |m| m.created.date_naive() <= mid),
        ),
        (
            "message",
            vec![
                "--message".into(),
                key.clone(),
                "--message".into(),
                id.clone(),
            ],
            Box::new(named),
        ),
        (
            "query",
            vec!["--query".into(), "is:read".into()],
            Box::new(|m| m.is_read),
        ),
        (
            "combined",
            vec![
                "--folder".into(),
                "inbox".into(),
                "--created-to".into(),
                ymd(mid),
                "-q".into(),
                "is:unread".into(),
            ],
            Box::new(move |m| {
                m.folder_path.to_lowercase().starts_with("inbox")
                    && m.created.date_naive() <= mid
                    && !m.is_read
            }),
        ),
        // The spellings of earlier versions (hidden): --after/--before/--key.
        (
            "after-before",
            vec!["--after".into(), ymd(days[5]), "--before".into(), ymd(mid)],
            Box::new(move |m| (days[5]..mid).contains(&m.created.date_naive())),
        ),
        (
            "key",
            vec!["--key".into(), key.clone()],
            Box::new(move |m| m.internet_message_id == m3),
        ),
    ];
    for (name, args, keep) in cases {
        let mut want: Vec<String> = all
            .iter()
            .filter(|m| keep(m))
            .map(|m| m.internet_message_id.clone())
            .collect();
        want.sort();
        assert!(!want.is_empty(), "{name}: the case must select something");
        assert!(
            name == "mailbox" || want.len() < all.len(),
            "{name}: the case must leave something out"
        );

        let out = tempfile::tempdir().unwrap();
        let o = run(export(out.path(), &args)).await;
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert_eq!(exported_message_ids(out.path()), want, "export {name}");

        let mut c = bin();
        c.args(["search", "-d"])
            .arg(backup.path())
            .args(["--json", "--limit", "1000"])
            .args(&args);
        let o = run(c).await;
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert_eq!(searched_message_ids(&o), want, "search {name}");

        // A copy of the backup for each restore: its restore log would skip messages an
        // earlier case restored into the same mailbox.
        let copy = tempfile::tempdir().unwrap();
        let cp = std::process::Command::new("cp")
            .arg("-r")
            .arg(backup.path().join("."))
            .arg(copy.path())
            .status()
            .unwrap();
        assert!(cp.success());
        let mut c = bin();
        c.env("MAILBACKUP_AUTHORIZATION", format!("Bearer {token}"))
            .args(["restore", "-d"])
            .arg(copy.path())
            .args(["--graph-url", &emu.graph_url(), "--to-user", BOB])
            .args(["--into-folder", name, "--no-progress"])
            .args(&args);
        let o = run(c).await;
        assert!(o.status.success(), "{name}: {}", text(&o));
        let mut restored: Vec<String> = emu
            .mailbox(BOB)
            .messages()
            .into_iter()
            .filter(|m| m.folder_path == name || m.folder_path.starts_with(&format!("{name}/")))
            .map(|m| m.internet_message_id)
            .collect();
        restored.sort();
        assert_eq!(restored, want, "restore {name}: {}", text(&o));
    }

    // A mailbox the backup does not have: nothing to export; restore says which it has.
    let out = tempfile::tempdir().unwrap();
    let o = run(export(
        out.path(),
        &["--mailbox", "nobody@emulator.test"].map(String::from),
    ))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(exported_message_ids(out.path()).is_empty());
    let mut c = restore_cmd(&emu, backup.path(), &token);
    c.args(["--mailbox", "nobody@emulator.test"]);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(&mailbox), "{}", text(&o));
    // A day written neither way is refused by each command, saying how to write it.
    for cmd in ["export", "restore"] {
        let bad = ["--created-from", "31.01.2024"].map(String::from);
        let c = if cmd == "export" {
            export(out.path(), &bad)
        } else {
            let mut c = restore_cmd(&emu, backup.path(), &token);
            c.args(&bad);
            c
        };
        let o = run(c).await;
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", text(&o));
        assert!(
            text(&o).contains("yyyy/MM/dd or YYYY-MM-DD"),
            "{cmd}: {}",
            text(&o)
        );
    }
}
