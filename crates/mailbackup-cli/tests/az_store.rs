//! `--store az://...` end to end against a real Azure Blob server (Azurite, one per test binary)
//! and the Graph emulator, through the documented emulator option
//! (`?use_emulator=true&endpoint=URL`): a backup whose blobs match Graph byte for byte, then
//! status, verify, show, an incremental run with sync deletes, and a restore, all reading the
//! container; a missing container or a secret in the URL stop the command as a configuration
//! error. (`gs://` has no test against a server: no emulator from the registries speaks the
//! XML API that `object_store` uses; see the module documentation of `mailbackup::store::url`.)

mod common;
#[path = "../../mailbackup/tests/support/stored.rs"]
mod stored;
#[path = "../../mailbackup/tests/support/azurite.rs"]
mod support;

use common::*;
use graph_emulator::{
    AppRegistration, DEFAULT_CLIENT_SECRET, Emulator, EmulatorConfig, MailboxSpec, NewMessage,
};
use std::collections::BTreeSet;
use std::path::Path;
use support::azurite;

const BOB: &str = "bob@emulator.test";
const RW_APP: &str = "restore-app";

fn with_az(mut c: assert_cmd::Command, url: &str) -> assert_cmd::Command {
    c.arg("--store").arg(url);
    c
}

fn cmd(args: &[&str], data: &Path, url: &str) -> assert_cmd::Command {
    let mut c = bin();
    c.args(args).arg("--data-folder").arg(data);
    with_az(c, url)
}

fn message_ids(emu: &Emulator, user: &str) -> BTreeSet<String> {
    emu.mailbox(user)
        .expected_messages()
        .into_iter()
        .map(|m| m.info.internet_message_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_azure_blob_is_byte_exact_and_the_commands_work_on_it() {
    let mut app = AppRegistration::confidential_client(RW_APP, DEFAULT_CLIENT_SECRET);
    app.application_permissions = vec!["Mail.ReadWrite".into()];
    let emu = Emulator::start(
        EmulatorConfig::default()
            .with_mailboxes(vec![
                MailboxSpec::new(ALICE).messages(15).seed(31),
                MailboxSpec::new(BOB).messages(0),
            ])
            .with_app(app),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let container = azurite().container("cli");
    let url = azurite().url(&container, "mail");
    let token = app_token(&emu).await;

    let o = run(with_az(run_cmd(&emu, dir.path(), &token), &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("15 saved"), "{}", text(&o));
    azurite().assert_container_holds(&container, "mail", &emu.mailbox(ALICE).expected_messages());
    assert!(
        eml_files(dir.path()).is_empty(),
        "no message in the data folder"
    );

    let o = run(cmd(&["status"], dir.path(), &url)).await;
    assert!(text(&o).contains(": 15 messages"), "{}", text(&o));
    let o = run(cmd(&["verify"], dir.path(), &url)).await;
    assert!(
        o.status.success() && text(&o).contains("verify: 15 ok, 0 missing, 0 corrupt, 0 extra"),
        "{}",
        text(&o)
    );
    let o = run(cmd(&["search", "--json"], dir.path(), &url)).await;
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let key = hits[0]["key"].as_str().unwrap().to_string();
    let o = run(cmd(&["show", &key], dir.path(), &url)).await;
    assert!(
        text(&o).contains(&format!("Path:        az://{container}/mail/{key}")),
        "{}",
        text(&o)
    );

    // Incremental with sync deletes: one new message stored, one deleted one removed.
    let mb = emu.mailbox(ALICE);
    let gone = mb.messages()[2].clone();
    mb.delete_message(&gone.id).unwrap();
    mb.create_message("inbox", NewMessage::default()).unwrap();
    let mut c = run_cmd(&emu, dir.path(), &token);
    c.arg("--sync-deletes");
    let o = run(with_az(c, &url)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 saved")
            && text(&o).contains(&format!("removed az://{container}/mail/")),
        "{}",
        text(&o)
    );
    azurite().assert_container_holds(&container, "mail", &emu.mailbox(ALICE).expected_messages());

    // Restore from the container into Bob's mailbox.
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
    assert_eq!(
        message_ids(&emu, BOB),
        message_ids(&emu, ALICE),
        "every backed-up message restored from Azure Blob"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_container_or_a_key_in_the_url_stops_before_anything_is_recorded() {
    let emu = emulator(3, std::time::Duration::ZERO).await;
    let token = app_token(&emu).await;
    let cases = [
        (
            azurite().url("no-such-container", "mail"),
            "the bucket of az://no-such-container/mail does not exist (or these credentials cannot see it): create it",
        ),
        (
            format!("{}&account_key=c2VjcmV0", azurite().url("c", "p")),
            "carries the secret option account_key",
        ),
        (
            format!("{}&colour=red", azurite().url("c", "p")),
            "unknown az:// option \"colour\"",
        ),
    ];
    for (url, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let o = run(with_az(run_cmd(&emu, dir.path(), &token), &url)).await;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{url}: {err}");
        assert!(err.contains("invalid option Store"), "{err}");
        assert!(
            !err.contains("c2VjcmV0"),
            "the refused secret is not printed: {err}"
        );
        assert!(
            !dir.path().join(".meta/index.sqlite").exists(),
            "nothing recorded: {url}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_account_key_says_to_correct_the_credentials() {
    let emu = emulator(3, std::time::Duration::ZERO).await;
    let token = app_token(&emu).await;
    let container = azurite().container("refused");
    let dir = tempfile::tempdir().unwrap();
    let mut c = with_az(
        run_cmd(&emu, dir.path(), &token),
        &azurite().url(&container, "mail"),
    );
    // A well-formed key that is not the account's.
    c.env("AZURE_STORAGE_ACCOUNT_KEY", "d3Jvbmcta2V5LXdyb25nLWtleQ==");
    let o = run(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("az://{container}/mail refused the credentials or none were found: set them in the environment")),
        "{err}"
    );
    assert!(
        !err.contains("d3Jvbmcta2V5"),
        "the key is not printed: {err}"
    );
    assert!(!dir.path().join(".meta/index.sqlite").exists());
    assert!(azurite().names(&container).is_empty(), "nothing stored");
}
