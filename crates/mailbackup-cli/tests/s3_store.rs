//! `--store s3://...` end to end against a real S3-compatible server (moto, one per test binary)
//! and the Graph emulator: a backup whose objects match Graph byte for byte, then status,
//! verify, search, show, export, an incremental run with sync deletes, and a restore, all
//! reading the bucket; a missing bucket or a bad URL stop the command as a configuration error.

mod common;
#[path = "../../mailbackup/tests/support/stored.rs"]
mod stored;
#[path = "../../mailbackup/tests/support/moto.rs"]
mod support;

use common::*;
use graph_emulator::{
    AppRegistration, DEFAULT_CLIENT_SECRET, Emulator, EmulatorConfig, MailboxSpec, NewMessage,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use support::moto;

const BOB: &str = "bob@emulator.test";
const RW_APP: &str = "restore-app";

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn with_s3(mut c: assert_cmd::Command, url: &str) -> assert_cmd::Command {
    for (k, v) in moto().env() {
        c.env(k, v);
    }
    c.arg("--store").arg(url);
    c
}

fn assert_bucket_matches(emu: &Emulator, bucket: &str, prefix: &str) {
    moto().assert_bucket_holds(bucket, prefix, &emu.mailbox(ALICE).expected_messages());
}

fn cmd(args: &[&str], data: &Path, url: &str) -> assert_cmd::Command {
    let mut c = bin();
    c.args(args).arg("--data-folder").arg(data);
    with_s3(c, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_s3_is_byte_exact_and_every_command_works_on_it() {
    let mut app = AppRegistration::confidential_client(RW_APP, DEFAULT_CLIENT_SECRET);
    app.application_permissions = vec!["Mail.ReadWrite".into()];
    let emu = Emulator::start(
        EmulatorConfig::default()
            .with_mailboxes(vec![
                MailboxSpec::new(ALICE).messages(20).seed(21),
                MailboxSpec::new(BOB).messages(0),
            ])
            .with_app(app),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bucket = moto().bucket("cli");
    let url = moto().url(&bucket, "mail");
    let token = app_token(&emu).await;

    let o = run(with_s3(run_cmd(&emu, dir.path(), &token), &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("20 saved"), "{}", text(&o));
    assert_bucket_matches(&emu, &bucket, "mail");
    assert!(
        eml_files(dir.path()).is_empty(),
        "no message in the data folder"
    );

    let o = run(cmd(&["status"], dir.path(), &url)).await;
    assert!(text(&o).contains(": 20 messages"), "{}", text(&o));
    let o = run(cmd(&["verify"], dir.path(), &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("verify: 20 ok, 0 missing, 0 corrupt, 0 extra"),
        "{}",
        text(&o)
    );

    // search and show: keys as in the local layout, the location an s3:// URL.
    let o = run(cmd(&["search", "--json"], dir.path(), &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hits.as_array().unwrap().len(), 20);
    let key = hits[0]["key"].as_str().unwrap().to_string();
    let o = run(cmd(&["show", &key], dir.path(), &url)).await;
    assert!(
        text(&o).contains(&format!("Path:        s3://{bucket}/mail/{key}")),
        "{}",
        text(&o)
    );

    // export to Maildir: each message is Graph's MIME (the backup header dropped).
    let out = tempfile::tempdir().unwrap();
    let mut c = cmd(
        &["export", "--format", "maildir", "--no-progress"],
        dir.path(),
        &url,
    );
    c.arg("--out").arg(out.path());
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let mut exported = BTreeSet::new();
    let mut stack = vec![out.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .parent()
                .unwrap()
                .file_name()
                .is_some_and(|n| n == "cur" || n == "new")
            {
                exported.insert(sha(&std::fs::read(&p).unwrap()));
            }
        }
    }
    let want: BTreeSet<String> = emu
        .mailbox(ALICE)
        .expected_messages()
        .iter()
        .map(|m| sha(&m.mime))
        .collect();
    assert_eq!(exported, want, "the export holds Graph's messages exactly");

    // Incremental with sync deletes: one new message stored, one deleted one removed.
    let mb = emu.mailbox(ALICE);
    let gone = mb.messages()[2].clone();
    mb.delete_message(&gone.id).unwrap();
    mb.create_message("inbox", NewMessage::default()).unwrap();
    let mut c = run_cmd(&emu, dir.path(), &token);
    c.arg("--sync-deletes");
    let o = run(with_s3(c, &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 saved"), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("removed s3://{bucket}/mail/")),
        "{}",
        text(&o)
    );
    assert_bucket_matches(&emu, &bucket, "mail");

    // Restore from the bucket into Bob's mailbox.
    let rw = app_token_of(&emu, RW_APP).await;
    let mut c = cmd(&["restore"], dir.path(), &url);
    c.env("MAILBACKUP_AUTHORIZATION", format!("Bearer {rw}"))
        .args([
            "--graph-url",
            &emu.graph_url(),
            "--to-user",
            BOB,
            "--into-folder",
            "Restored",
            "--retry-interval",
            "0.05",
            "--no-progress",
        ]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let restored: BTreeSet<String> = emu
        .mailbox(BOB)
        .expected_messages()
        .into_iter()
        .map(|m| m.info.internet_message_id)
        .collect();
    let alice: BTreeSet<String> = emu
        .mailbox(ALICE)
        .expected_messages()
        .into_iter()
        .map(|m| m.info.internet_message_id)
        .collect();
    assert_eq!(restored, alice, "every backed-up message restored from S3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_or_a_bad_store_url_stops_before_anything_is_recorded() {
    let emu = emulator(5, std::time::Duration::ZERO).await;
    let token = app_token(&emu).await;
    let cases = [
        (
            moto().url("no-such-bucket-here", "mail"),
            "does not exist (or these credentials cannot see it): create it",
        ),
        ("ftp://host/x".to_string(), "unknown scheme ftp://"),
        (
            format!("{}&colour=red", moto().url("b", "p")),
            "unknown s3:// option \"colour\"",
        ),
    ];
    for (url, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let o = run(with_s3(run_cmd(&emu, dir.path(), &token), &url)).await;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{url}: {err}");
        assert!(err.contains("invalid option Store"), "{err}");
        assert!(
            !dir.path().join(".meta/index.sqlite").exists(),
            "nothing recorded: {url}"
        );
    }
}
