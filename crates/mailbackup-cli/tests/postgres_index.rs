//! `--index postgres://...` end to end, against a throw-away PostgreSQL cluster
//! (`pg-test-cluster`): a backup from the Graph emulator indexed in PostgreSQL, an incremental
//! run, status, verify, search, show, export and restore through the same index; and the
//! errors a bad URL, a wrong password and a server that is down give.

use graph_emulator::{
    AppRegistration, DEFAULT_CLIENT_SECRET, Emulator, EmulatorConfig, MailboxSpec,
};

mod common;

use common::*;

const RW_APP: &str = "restore-app";
const BOB: &str = "bob@emulator.test";

/// A command with the index given as a URL without its password, the password in PGPASSWORD.
fn with_index(mut c: assert_cmd::Command, url: &str) -> assert_cmd::Command {
    let cluster = pg_test_cluster::cluster();
    c.env("PGPASSWORD", cluster.password())
        .arg("--index")
        .arg(url.replace(&format!(":{}@", cluster.password()), "@"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_indexed_in_postgres_runs_incrementally_searches_verifies_and_restores() {
    let url = pg_test_cluster::cluster().new_database();
    let mut app = AppRegistration::confidential_client(RW_APP, DEFAULT_CLIENT_SECRET);
    app.application_permissions = vec!["Mail.ReadWrite".into()];
    let emu = Emulator::start(
        EmulatorConfig::default()
            .with_mailboxes(vec![
                MailboxSpec::new(ALICE).messages(30).seed(21),
                MailboxSpec::new(BOB).messages(0),
            ])
            .with_app(app),
    )
    .await
    .unwrap();
    let token = app_token_of(&emu, RW_APP).await;
    let dir = tempfile::tempdir().unwrap();

    let o = run(with_index(run_cmd(&emu, dir.path(), &token), &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(assert_files_complete(dir.path(), &emu), 30);
    let sqlite = dir.path().join(".meta/index.sqlite");
    assert!(
        !sqlite.exists(),
        "the index is in PostgreSQL, not in the folder"
    );

    // Incremental: one changed message is fetched again, nothing else.
    let changed = emu.mailbox(ALICE).messages()[3].id.clone();
    emu.mailbox(ALICE).update_message(&changed).unwrap();
    let o = run(with_index(run_cmd(&emu, dir.path(), &token), &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("30 messages: 1 saved"),
        "{}",
        text(&o)
    );
    assert_eq!(assert_files_complete(dir.path(), &emu), 30);

    // status, through the config file's `index` key.
    let conf_dir = tempfile::tempdir().unwrap();
    let config = conf_dir.path().join("mailbackup.toml");
    std::fs::write(&config, format!("index = {url:?}\n")).unwrap();
    let mut c = bin();
    c.arg("-c")
        .arg(&config)
        .args(["status", "-d"])
        .arg(dir.path());
    let o = run(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("last run: #2 Completed"), "{}", text(&o));
    assert!(
        out.contains(&format!("mailbox {ALICE}: 30 messages")),
        "{}",
        text(&o)
    );

    let mut c = bin();
    c.args(["verify", "-d"]).arg(dir.path());
    let o = run(with_index(c, &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("verify: 30 ok, 0 missing, 0 corrupt, 0 extra"),
        "{}",
        text(&o)
    );

    let query = "is:read";
    let mut c = bin();
    c.args(["search", "-d"])
        .arg(dir.path())
        .args(["--json", "--limit", "1000", query]);
    let o = run(with_index(c, &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    let found = searched_message_ids(&o);
    let mut truth: Vec<String> = emu
        .mailbox(ALICE)
        .expected_messages()
        .into_iter()
        .filter(|m| m.info.is_read)
        .map(|m| m.info.internet_message_id)
        .collect();
    truth.sort();
    assert!(!truth.is_empty() && truth.len() < 30, "{}", truth.len());
    assert_eq!(found, truth, "search finds the read messages");

    // show and export read the same index.
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let key = hits[0]["key"].as_str().unwrap().to_string();
    let mut c = bin();
    c.args(["show", "-d"]).arg(dir.path()).arg(&key);
    let o = run(with_index(c, &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("Key:         {key}")),
        "{}",
        text(&o)
    );
    let out = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.args(["export", "-d"])
        .arg(dir.path())
        .args(["--format", "maildir", "--no-progress", "-q", query, "-o"])
        .arg(out.path());
    let o = run(with_index(c, &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("export: {} messages", truth.len())),
        "{}",
        text(&o)
    );

    let mut c = bin();
    c.env("MAILBACKUP_AUTHORIZATION", format!("Bearer {token}"))
        .args(["restore", "-d"])
        .arg(dir.path())
        .args(["--graph-url", &emu.graph_url(), "--to-user", BOB])
        .args(["--into-folder", "Restored", "--retry-interval", "0.05"])
        .args(["--query", query]);
    let o = run(with_index(c, &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    let mut restored: Vec<String> = emu
        .mailbox(BOB)
        .expected_messages()
        .into_iter()
        .map(|m| m.info.internet_message_id)
        .collect();
    restored.sort();
    assert_eq!(restored, truth, "{}", text(&o));

    // Without --index the folder holds no backup: said so, nothing made up.
    let mut c = bin();
    c.args(["search", "-d"]).arg(dir.path()).arg("invoice");
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("holds no backup"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_index_url_a_wrong_password_and_a_server_down_say_what_to_do() {
    let cluster = pg_test_cluster::cluster();
    let url = cluster.new_database();
    let dir = tempfile::tempdir().unwrap();
    let status = |index: String| {
        let mut c = bin();
        c.args(["status", "-d"])
            .arg(dir.path())
            .arg("--index")
            .arg(index);
        c
    };

    let o = run(status(url.replace(cluster.password(), "wrong-secret"))).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refused the password of user mailbackup") && err.contains("PGPASSWORD"),
        "{}",
        text(&o)
    );
    assert!(
        !err.contains("wrong-secret"),
        "the password is never printed: {err}"
    );

    let o = run(status("mysql://db.example/backup".into())).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("postgres://USER@HOST:PORT/DATABASE"),
        "{}",
        text(&o)
    );

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = run(status(format!(
        "postgres://mailbackup:pw@127.0.0.1:{free}/x"
    )))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot reach PostgreSQL") && text(&o).contains("start the server"),
        "{}",
        text(&o)
    );
}
