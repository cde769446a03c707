//! Which mailboxes a run backs up and with which token: several users, the signed-in user, a shared mailbox, a token refreshed after 401.
//! End to end against the Graph emulator (real sockets on 127.0.0.1).

mod common;

use common::*;
use graph_emulator::{EmulatorConfig, MailboxSpec, NewMessage};
use mailbackup::{Backup, Mailboxes, StaticToken};
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn two_mailboxes_in_one_run() {
    let cfg = EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(ALICE).messages(15).seed(1),
        MailboxSpec::new(BOB).messages(12).seed(2),
    ]);
    let emu = emulator_with(cfg).await;
    let token = app_token(&emu).await;
    let dir = tempfile::tempdir().unwrap();
    let report = Backup::builder(dir.path(), Arc::new(StaticToken::new(&token)))
        .graph_url(emu.graph_url())
        .mailboxes(Mailboxes::Users(vec![ALICE.into(), BOB.into()]))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_complete(&dir.path().join(ALICE), &emu, ALICE);
    assert_complete(&dir.path().join(BOB), &emu, BOB);
    assert!(
        emu.stats()
            .max_concurrency_per_mailbox
            .values()
            .all(|c| *c <= 4)
    );
}

#[tokio::test]
async fn delegated_me_mailbox_and_expired_token_refreshes_once() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(10)]).await;
    let dir = tempfile::tempdir().unwrap();
    let report = Backup::builder(
        dir.path(),
        Arc::new(StaticToken::new(user_token(&emu, ALICE).await)),
    )
    .graph_url(emu.graph_url())
    .build()
    .unwrap()
    .run()
    .await
    .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_complete(dir.path(), &emu, ALICE);

    // Expired app token: refreshed once, then the run completes.
    let tokens = EmuTokens::new(&emu).await;
    emu.identity().expire_access_tokens();
    emu.mailbox(ALICE)
        .create_message("inbox", NewMessage::default())
        .unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let report = Backup::builder(dir2.path(), tokens.clone())
        .graph_url(emu.graph_url())
        .mailboxes(Mailboxes::User(ALICE.into()))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(report.mailboxes[0].saved, 11);

    // A fixed token that expired cannot be refreshed: a clear error, no endless retries.
    let stale = app_token(&emu).await;
    emu.identity().expire_access_tokens();
    let report = builder(&emu, dir2.path(), stale, ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let err = report.mailboxes[0].error.clone().unwrap();
    assert!(err.contains("refused"), "{err}");
}

#[tokio::test]
async fn shared_mailbox_through_user_id_with_a_delegated_token() {
    let emu = emulator(vec![
        MailboxSpec::new(ALICE).messages(3),
        MailboxSpec::new(BOB).messages(9).seed(8),
    ])
    .await;
    // Alice reads Bob's (shared) mailbox: needs Mail.Read.Shared.
    let token =
        user_token_with_scope(&emu, ALICE, "Mail.Read Mail.Read.Shared offline_access").await;
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token, BOB)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_complete(dir.path(), &emu, BOB);

    // Without the shared scope Graph refuses, and the report says so.
    let token = user_token(&emu, ALICE).await;
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token, BOB)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let err = report.mailboxes[0].error.clone().unwrap();
    assert!(
        err.contains("403") && err.contains("ErrorAccessDenied"),
        "{err}"
    );
}
