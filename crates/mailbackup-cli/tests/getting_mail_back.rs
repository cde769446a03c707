//! `export`, `search`, `show`, `prune` and `--keep-deleted-days` end to end: a backup of the emulator's mailbox, exported to mbox and
//! Maildir, read back by an independent reader (Python's `mailbox` module, through `python3`)
//! and compared with the backup message by message, byte for byte (SHA-256 of each message).

mod common;

use common::*;
use graph_emulator::{Emulator, NewMessage};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Per output file or folder (relative to the export folder): sorted (SHA-256, flags).
type Seen = BTreeMap<String, Vec<(String, String)>>;

const READER: &str = r#"
import json, mailbox, os, re, sys, hashlib
root, kind = sys.argv[1], sys.argv[2]
out = {}
unquote = re.compile(rb'^>(>*From )', re.M)
for dirpath, dirs, files in os.walk(root):
    if kind == 'mbox':
        for f in files:
            if f.endswith('.mbox'):
                p = os.path.join(dirpath, f)
                box = mailbox.mbox(p, create=False)
                out[os.path.relpath(p, root)] = sorted(
                    [hashlib.sha256(unquote.sub(rb'\1', box.get_bytes(k))).hexdigest(), '']
                    for k in box.keys())
    elif {'cur', 'new', 'tmp'} <= set(dirs):
        box = mailbox.Maildir(dirpath, factory=None, create=False)
        out[os.path.relpath(dirpath, root)] = sorted(
            [hashlib.sha256(box.get_bytes(k)).hexdigest(), box.get_message(k).get_flags()]
            for k in box.keys())
print(json.dumps(out))
"#;

fn read_back(dir: &Path, kind: &str) -> Seen {
    let o = std::process::Command::new("python3")
        .args(["-c", READER])
        .arg(dir)
        .arg(kind)
        .output()
        .expect("python3 runs (scripts/install-test-deps.sh installs it)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: BTreeMap<String, Vec<(String, String)>> = serde_json::from_slice(&o.stdout).unwrap();
    v
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// What the export must hold: per folder path, (SHA-256 of the MIME, Maildir flags).
fn expected(emu: &Emulator, keep: impl Fn(&graph_emulator::MessageInfo) -> bool) -> Seen {
    let mb = emu.mailbox(ALICE);
    let mut want: Seen = BTreeMap::new();
    for m in mb.messages().into_iter().filter(|m| keep(m)) {
        let mime = mb.mime(&m.id).unwrap();
        let flags = if m.is_read { "S" } else { "" };
        want.entry(m.folder_path.clone())
            .or_default()
            .push((sha(&mime), flags.to_string()));
    }
    for v in want.values_mut() {
        v.sort();
    }
    want
}

fn mailbox_dir(data: &Path) -> String {
    // A one-mailbox backup's mailbox key, as `status` prints it.
    let ix = mailbackup::SqliteIndex::open(&data.join(".meta/index.sqlite")).unwrap();
    let counts = mailbackup::Index::saved_counts(&ix).unwrap();
    counts[0].0.clone()
}

/// Strips `<mailbox>/` and `.mbox`, and drops flags (mbox has none), to compare with `expected`.
fn by_folder(seen: Seen, mailbox: &str, mbox: bool) -> Seen {
    seen.into_iter()
        .map(|(k, v)| {
            let k = k
                .strip_prefix(&format!("{mailbox}/"))
                .unwrap_or(&k)
                .to_string();
            let k = k.strip_suffix(".mbox").unwrap_or(&k).to_string();
            let mut v: Vec<_> = v
                .into_iter()
                .map(|(h, f)| (h, if mbox { String::new() } else { f }))
                .collect();
            v.sort();
            (k, v)
        })
        .collect()
}

fn no_flags(mut s: Seen) -> Seen {
    for v in s.values_mut() {
        for e in v.iter_mut() {
            e.1.clear();
        }
        v.sort();
    }
    s
}

async fn backed_up() -> (Emulator, tempfile::TempDir) {
    let emu = emulator(30, Duration::ZERO).await;
    let mb = emu.mailbox(ALICE);
    // Lines an mbox reader would take for separators, quoted ones, and no final line end.
    let tricky = b"From: Mallory <mallory@x.test>\r\nSubject: From lines\r\nMessage-ID: <tricky@x.test>\r\nDate: Tue, 05 Mar 2024 10:00:00 +0000\r\n\r\nFrom here on\r\n>From there\r\n>>From far away\r\nFrom\r\n".to_vec();
    mb.create_message(
        "inbox",
        NewMessage {
            raw_mime: Some(tricky),
            subject: Some("From lines".into()),
            is_read: true,
            ..Default::default()
        },
    )
    .unwrap();
    let march = b"From: Alice <alice@x.test>\r\nSubject: March invoice\r\nMessage-ID: <march@x.test>\r\n\r\nsee attached\r\n".to_vec();
    mb.create_message(
        "inbox",
        NewMessage {
            raw_mime: Some(march),
            subject: Some("March invoice".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    (emu, dir)
}

fn export_cmd(data: &Path, out: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = bin();
    c.arg("export")
        .arg("-d")
        .arg(data)
        .arg("-o")
        .arg(out)
        .args(extra);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbox_and_maildir_exports_read_back_byte_for_byte_with_read_flags() {
    let (emu, dir) = backed_up().await;
    let mailbox = mailbox_dir(dir.path());
    let all = expected(&emu, |_| true);
    assert!(
        all.len() > 1,
        "the emulator's messages are in several folders"
    );

    // mbox, one file per folder.
    let out = tempfile::tempdir().unwrap();
    let o = run(export_cmd(dir.path(), out.path(), &["--format", "mbox"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let n: usize = all.values().map(Vec::len).sum();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("export: {n} messages")),
        "{}",
        text(&o)
    );
    let seen = by_folder(read_back(out.path(), "mbox"), &mailbox, true);
    assert_eq!(seen, no_flags(all.clone()), "mbox per folder");

    // mbox, one file per mailbox.
    let out = tempfile::tempdir().unwrap();
    let o = run(export_cmd(
        dir.path(),
        out.path(),
        &["--format", "mbox", "--mbox-per", "mailbox"],
    ))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let seen = read_back(out.path(), "mbox");
    let mut every: Vec<(String, String)> = no_flags(all.clone()).into_values().flatten().collect();
    every.sort();
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        [&format!("{mailbox}.mbox")]
    );
    assert_eq!(
        seen.into_values().next().unwrap(),
        every,
        "mbox per mailbox"
    );

    // Maildir, flags from the read state.
    let out = tempfile::tempdir().unwrap();
    let o = run(export_cmd(dir.path(), out.path(), &["--format", "maildir"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let seen = by_folder(read_back(out.path(), "maildir"), &mailbox, false);
    assert_eq!(seen, all, "Maildir with S for read messages");
    assert!(
        all.values().flatten().any(|(_, f)| f.is_empty())
            && all.values().flatten().any(|(_, f)| f == "S"),
        "both read and unread messages are checked"
    );

    // --no-fsync writes the same files (only the waits for the disk are left out), and again
    // into the same folders replaces them: one copy of each message.
    let out = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        for format in ["maildir", "mbox"] {
            let o = run(export_cmd(
                dir.path(),
                &out.path().join(format),
                &["--format", format, "--no-fsync"],
            ))
            .await;
            assert!(o.status.success(), "{}", text(&o));
        }
    }
    let seen = by_folder(
        read_back(&out.path().join("maildir"), "maildir"),
        &mailbox,
        false,
    );
    assert_eq!(seen, all, "Maildir with --no-fsync");
    let seen = by_folder(read_back(&out.path().join("mbox"), "mbox"), &mailbox, true);
    assert_eq!(seen, no_flags(all.clone()), "mbox with --no-fsync");
    assert!(files_in(&out.path().join("maildir"), "tmp").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_selection_options_and_search_show() {
    let (emu, dir) = backed_up().await;
    let mailbox = mailbox_dir(dir.path());

    // --folder and --query select the same messages as the emulator says.
    let out = tempfile::tempdir().unwrap();
    let o = run(export_cmd(
        dir.path(),
        out.path(),
        &[
            "--format",
            "maildir",
            "--folder",
            "inbox",
            "--query",
            "subject:\"march invoice\"",
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let seen = by_folder(read_back(out.path(), "maildir"), &mailbox, false);
    let want = expected(&emu, |m| m.subject == "March invoice");
    assert_eq!(seen, want, "{}", text(&o));

    // Dates: the tricky message is dated 2024-03-05 by its listing (sentDateTime = received).
    let mb = emu.mailbox(ALICE);
    let all = mb.messages();
    let day = all
        .iter()
        .find(|m| m.subject == "From lines")
        .unwrap()
        .received
        .format("%Y-%m-%d")
        .to_string();
    let next = (all
        .iter()
        .find(|m| m.subject == "From lines")
        .unwrap()
        .received
        + chrono::Duration::days(1))
    .format("%Y-%m-%d")
    .to_string();
    let out = tempfile::tempdir().unwrap();
    let o = run(export_cmd(
        dir.path(),
        out.path(),
        &["--after", &day, "--before", &next, "--query", "lines"],
    ))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let seen = by_folder(read_back(out.path(), "mbox"), &mailbox, true);
    assert_eq!(
        seen,
        no_flags(expected(&emu, |m| m.subject == "From lines")),
        "{}",
        text(&o)
    );

    // search --json finds it; show prints its headers and path; --key exports it alone.
    let mut c = bin();
    c.args(["search", "-d"])
        .arg(dir.path())
        .args(["--json", "subject:\"from lines\""]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    let key = hits[0]["key"].as_str().unwrap().to_string();
    assert_eq!(hits[0]["is_read"], true);
    assert_eq!(hits[0]["folder_path"], "Inbox");

    let mut c = bin();
    c.args(["show", "-d"]).arg(dir.path()).arg(&key);
    let o = run(c).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.contains("Subject:     From lines"), "{out}");
    assert!(
        out.contains(&dir.path().join(&key).display().to_string()),
        "{out}"
    );

    let out = tempfile::tempdir().unwrap();
    let o = run(export_cmd(dir.path(), out.path(), &["--key", &key])).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("export: 1 messages"));

    // The table lists it with its folder.
    let mut c = bin();
    c.args(["search", "-d"])
        .arg(dir.path())
        .args(["subject:lines"]);
    let o = run(c).await;
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("From lines") && table.contains("Inbox") && table.contains("(1 found)"),
        "{table}"
    );

    // A malformed query is a clear error, exit 2.
    for q in ["frm:alice", "after:2024-02-30", "subject:\"open"] {
        let mut c = bin();
        c.args(["search", "-d"]).arg(dir.path()).arg(q);
        let o = run(c).await;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("invalid search query"),
            "{}",
            text(&o)
        );
    }
    let mut c = bin();
    c.args(["show", "-d"])
        .arg(dir.path())
        .arg("2020-01/nothing.eml");
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_failure_mid_export_leaves_no_half_written_mbox() {
    let (emu, dir) = backed_up().await;
    let mailbox = mailbox_dir(dir.path());
    // The tricky message's object now fails to read (EIO from /proc/self/mem at offset 0).
    let mut c = bin();
    c.args(["search", "-d"])
        .arg(dir.path())
        .args(["--json", "subject:\"from lines\""]);
    let o = run(c).await;
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let key = hits[0]["key"].as_str().unwrap().to_string();
    let file = dir.path().join(&key);
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/proc/self/mem", &file).unwrap();

    let out = tempfile::tempdir().unwrap();
    let o = run(export_cmd(dir.path(), out.path(), &["--format", "mbox"])).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&key),
        "the error names the message: {}",
        text(&o)
    );
    // No temporary file, no Inbox.mbox; every file that exists is complete.
    let mut files = Vec::new();
    let mut stack = vec![out.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(
        files
            .iter()
            .all(|p| p.extension().is_some_and(|x| x == "mbox")),
        "{files:?}"
    );
    assert!(!out.path().join(&mailbox).join("Inbox.mbox").exists());
    let seen = by_folder(read_back(out.path(), "mbox"), &mailbox, true);
    let all = no_flags(expected(&emu, |_| true));
    for (folder, msgs) in &seen {
        assert_eq!(Some(msgs), all.get(folder), "{folder} is complete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_copies_are_kept_then_pruned_and_a_dry_run_only_lists_them() {
    let (emu, dir) = backed_up().await;
    let q = tempfile::tempdir().unwrap();
    let mb = emu.mailbox(ALICE);
    let gone: Vec<_> = mb.messages().into_iter().take(2).collect();
    for m in &gone {
        mb.delete_message(&m.id).unwrap();
    }
    let token = app_token(&emu).await;
    let mut c = run_cmd(&emu, dir.path(), &token);
    c.arg("--sync-deletes")
        .arg("--quarantine-folder")
        .arg(q.path())
        .args(["--keep-deleted-days", "30"]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let quarantined = eml_files(q.path());
    assert_eq!(quarantined.len(), 2, "{}", text(&o));

    let prune = |dry: bool| {
        let mut c = bin();
        c.args(["prune", "-d"])
            .arg(dir.path())
            .arg("--quarantine-folder")
            .arg(q.path())
            .args(["--keep-deleted-days", "0"]);
        if dry {
            c.arg("--dry-run");
        }
        c
    };
    let o = run(prune(true)).await;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    for f in &quarantined {
        assert!(
            out.contains(&format!("would remove {}", f.display())),
            "{out}"
        );
        assert!(f.exists(), "a dry run removes nothing");
    }
    let o = run(prune(false)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("prune: 2 quarantined copies"));
    assert!(eml_files(q.path()).is_empty());
    let o = run(prune(false)).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("prune: 0 quarantined copies"));

    // A run with a retention of 0 days purges what it quarantined at its end.
    let third = mb.messages().into_iter().next().unwrap();
    mb.delete_message(&third.id).unwrap();
    let mut c = run_cmd(&emu, dir.path(), &token);
    c.arg("--sync-deletes")
        .arg("--quarantine-folder")
        .arg(q.path())
        .args(["--keep-deleted-days", "0", "--log-level", "info"]);
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("purged"), "{}", text(&o));
    assert!(eml_files(q.path()).is_empty(), "{}", text(&o));

    // Retention without a quarantine folder is refused.
    let mut c = run_cmd(&emu, dir.path(), &token);
    c.args(["--sync-deletes", "--keep-deleted-days", "3"]);
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--quarantine-folder"), "{}", text(&o));
}

/// Every file below `root` whose parent folder is named `name` (`tmp`, `new`, `cur`).
fn files_in(root: &Path, name: &str) -> Vec<std::path::PathBuf> {
    files_below(
        root,
        |_| true,
        |p| p.parent().and_then(Path::file_name) == Some(name.as_ref()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maildir_export_failing_mid_batch_keeps_only_complete_messages_and_a_rerun_completes_once()
 {
    // Every 4th message is over 1 MiB; the export gets a file size limit, so writing the first
    // large message fails part way, like a disk that fills up.
    let emu = emulator_with_large_messages(16).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    let mailbox = mailbox_dir(dir.path());
    let all = expected(&emu, |_| true);
    let total: usize = all.values().map(Vec::len).sum();

    let out = tempfile::tempdir().unwrap();
    let mut c = bin_with_file_size_limit();
    c.args(["export", "--format", "maildir", "--no-progress", "-d"])
        .arg(dir.path())
        .arg("-o")
        .arg(out.path());
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&out.path().display().to_string())
            && err.contains("File too large")
            && err.contains("free space")
            && err.contains("run the export again"),
        "the error names the file, the cause and what to do: {}",
        text(&o)
    );
    assert!(
        !err.contains("backup folder"),
        "the export folder is full, not the backup: {}",
        text(&o)
    );
    // Nothing staged is left in tmp/, nothing in new/; what is in cur/ is complete.
    assert_eq!(
        files_in(out.path(), "tmp"),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_in(out.path(), "new"),
        Vec::<std::path::PathBuf>::new()
    );
    let seen = by_folder(read_back(out.path(), "maildir"), &mailbox, false);
    for (folder, msgs) in &seen {
        let want = all.get(folder).cloned().unwrap_or_default();
        for m in msgs {
            assert!(
                want.contains(m),
                "{folder}: {m:?} is not a complete message"
            );
        }
    }
    let partial: usize = seen.values().map(Vec::len).sum();
    assert!(partial < total, "the limit did not bite");
    assert!(
        partial > 0,
        "the export failed after some messages, not at the first"
    );

    // With room again, a re-run completes: every message once.
    let o = run(export_cmd(dir.path(), out.path(), &["--format", "maildir"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let seen = by_folder(read_back(out.path(), "maildir"), &mailbox, false);
    assert_eq!(seen, all, "every message exactly once");
    // (Python's reader keys a Maildir by the name before `:`, so it would not see two files of
    // one message with different flags: count the files.)
    assert_eq!(files_in(out.path(), "cur").len(), total);

    // A message read since: the next backup records it, and a re-export into the same folder
    // replaces its file (another flag, another name) instead of adding a second copy.
    let mb = emu.mailbox(ALICE);
    let unread = mb.messages().into_iter().find(|m| !m.is_read).unwrap();
    mb.set_read(&unread.id, true).unwrap();
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    let o = run(export_cmd(dir.path(), out.path(), &["--format", "maildir"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let seen = by_folder(read_back(out.path(), "maildir"), &mailbox, false);
    assert_eq!(seen, expected(&emu, |_| true), "the new flags");
    assert_eq!(
        files_in(out.path(), "cur").len(),
        total,
        "no copy with the old flags: {:?}",
        files_in(out.path(), "cur")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maildir_move_into_cur_refused_stops_the_export_and_leaves_nothing_in_tmp() {
    let (emu, dir) = backed_up().await;
    let mailbox = mailbox_dir(dir.path());
    let all = expected(&emu, |_| true);
    let total: usize = all.values().map(Vec::len).sum();
    let out = tempfile::tempdir().unwrap();
    let o = run(export_cmd(dir.path(), out.path(), &["--format", "maildir"])).await;
    assert!(o.status.success(), "{}", text(&o));

    // One message's name in cur/ is taken by a folder with a file in it: moving the message
    // there fails (the committer's part of the export, after the file was written).
    let mut cur = files_in(out.path(), "cur");
    cur.sort();
    let blocked = cur[cur.len() / 2].clone();
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    let o = run(export_cmd(dir.path(), out.path(), &["--format", "maildir"])).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot move") && err.contains(&blocked.display().to_string()),
        "the error names the move that failed: {}",
        text(&o)
    );
    assert_eq!(
        files_in(out.path(), "tmp"),
        Vec::<std::path::PathBuf>::new(),
        "nothing staged stays in tmp/"
    );

    // The obstacle gone, a re-run completes: every message once.
    std::fs::remove_dir_all(&blocked).unwrap();
    let o = run(export_cmd(dir.path(), out.path(), &["--format", "maildir"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let seen = by_folder(read_back(out.path(), "maildir"), &mailbox, false);
    assert_eq!(seen, all, "every message exactly once");
    assert_eq!(files_in(out.path(), "cur").len(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mbox_export_failing_part_way_names_the_export_folder_and_a_rerun_completes() {
    let emu = emulator_with_large_messages(16).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let o = run(run_cmd(&emu, dir.path(), &token)).await;
    assert!(o.status.success(), "{}", text(&o));
    let mailbox = mailbox_dir(dir.path());
    let all = no_flags(expected(&emu, |_| true));

    let out = tempfile::tempdir().unwrap();
    let mut c = bin_with_file_size_limit();
    c.args(["export", "--format", "mbox", "--no-progress", "-d"])
        .arg(dir.path())
        .arg("-o")
        .arg(out.path());
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&out.path().display().to_string())
            && err.contains("File too large")
            && err.contains("the export folder cannot take more data: free space")
            && err.contains("run the export again")
            && !err.contains("backup folder"),
        "{}",
        text(&o)
    );
    // No temporary file; each mbox that exists is complete.
    let stray = files_below(
        out.path(),
        |_| true,
        |p| p.extension().is_none_or(|x| x != "mbox"),
    );
    assert!(stray.is_empty(), "{stray:?}");
    let seen = by_folder(read_back(out.path(), "mbox"), &mailbox, true);
    assert!(seen.len() < all.len(), "the limit did not bite: {seen:?}");
    for (folder, msgs) in &seen {
        assert_eq!(Some(msgs), all.get(folder), "{folder} is complete");
    }

    let o = run(export_cmd(dir.path(), out.path(), &["--format", "mbox"])).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        by_folder(read_back(out.path(), "mbox"), &mailbox, true),
        all
    );
}
