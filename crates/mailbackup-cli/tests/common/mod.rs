//! Helpers shared by the CLI end-to-end tests: the command, an emulator, file checks.

#![allow(dead_code)] // each test file uses a different subset

use graph_emulator::{
    DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, Emulator, EmulatorConfig, MailboxSpec,
};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub(crate) const ALICE: &str = "alice@emulator.test";

pub(crate) fn bin() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_mailbackup"));
    c.env_remove("MAILBACKUP_AUTHORIZATION")
        .env_remove("MAILBACKUP_CLIENT_SECRET")
        .env_remove("MAILBACKUP_PASSWORD")
        .env_remove("MAILBACKUP_CONFIG")
        .env_remove("MAILBACKUP_STORE")
        .env_remove("RUST_LOG")
        .timeout(Duration::from_secs(60));
    c
}

pub(crate) async fn run(mut c: assert_cmd::Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("mailbackup runs"))
        .await
        .unwrap()
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The Message-IDs of what `search --json` printed, sorted.
pub(crate) fn searched_message_ids(o: &Output) -> Vec<String> {
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut found: Vec<String> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message_id"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    found
}

pub(crate) async fn emulator(messages: usize, latency: Duration) -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .with_mailboxes(vec![MailboxSpec::new(ALICE).messages(messages).seed(21)])
            .with_latency(latency),
    )
    .await
    .unwrap()
}

pub(crate) async fn app_token(emu: &Emulator) -> String {
    app_token_of(emu, DEFAULT_CONFIDENTIAL_CLIENT_ID).await
}

/// An app-only token of an app registration with secret `DEFAULT_CLIENT_SECRET`.
pub(crate) async fn app_token_of(emu: &Emulator, client_id: &str) -> String {
    let v: serde_json::Value = reqwest::Client::new()
        .post(emu.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

pub(crate) fn run_cmd(emu: &Emulator, dir: &Path, token: &str) -> assert_cmd::Command {
    let mut c = bin();
    c.env("MAILBACKUP_AUTHORIZATION", format!("Bearer {token}"))
        .arg("run")
        .arg("--data-folder")
        .arg(dir)
        .args([
            "--graph-url",
            &emu.graph_url(),
            "--user-id",
            ALICE,
            "--retry-interval",
            "0.05",
        ]);
    c
}

/// The `mailbackup` command under a file size limit of 1024 blocks (512 KiB or 1 MiB depending
/// on the shell's block size): writing a file larger than that fails part way (`File too
/// large`), like a disk that fills up, with no root and no mount.
pub(crate) fn bin_with_file_size_limit() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new("sh");
    c.args([
        "-c",
        "trap '' XFSZ; ulimit -f 1024 && exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_mailbackup"),
    ])
    .env_remove("MAILBACKUP_AUTHORIZATION")
    .env_remove("MAILBACKUP_CLIENT_SECRET")
    .env_remove("MAILBACKUP_PASSWORD")
    .env_remove("MAILBACKUP_CONFIG")
    .env_remove("RUST_LOG")
    .timeout(Duration::from_secs(60));
    c
}

/// An emulator with one mailbox of `messages` messages, every 4th over 1 MiB.
pub(crate) async fn emulator_with_large_messages(messages: usize) -> Emulator {
    Emulator::start(EmulatorConfig::default().with_mailboxes(vec![
            MailboxSpec::new(ALICE)
                .messages(messages)
                .seed(21)
                .large_every(4),
        ]))
    .await
    .unwrap()
}

/// Files below `root` that `keep` keeps, in folders `enter` enters.
pub(crate) fn files_below(
    root: &Path,
    enter: impl Fn(&Path) -> bool,
    keep: impl Fn(&Path) -> bool,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if enter(&p) {
                    stack.push(p);
                }
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out
}

pub(crate) fn eml_files(root: &Path) -> Vec<PathBuf> {
    files_below(
        root,
        |d| !d.file_name().unwrap().to_string_lossy().starts_with('.'),
        |p| p.extension().is_some_and(|x| x == "eml"),
    )
}

/// Every .eml file is complete: its header names a message whose MIME follows byte for byte.
pub(crate) fn assert_files_complete(root: &Path, emu: &Emulator) -> usize {
    let mb = emu.mailbox(ALICE);
    let files = eml_files(root);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let cut = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        let h = mailbackup::BackupHeader::parse(std::str::from_utf8(&bytes[..cut]).unwrap())
            .unwrap_or_else(|| panic!("{} has no backup header", f.display()));
        assert!(
            bytes[cut..] == mb.mime(&h.id).unwrap()[..],
            "{} is truncated or differs",
            f.display()
        );
    }
    files.len()
}
