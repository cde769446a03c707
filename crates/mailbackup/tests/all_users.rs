//! `Mailboxes::AllUsers` end to end against the emulator's `GET /users` (paged: the emulator
//! sends at most two users per page here, so the engine must follow `@odata.nextLink`).

mod common;

use common::*;
use graph_emulator::{EmulatorConfig, EndpointKind, MailboxSpec, UserSpec};
use mailbackup::{Backup, Mailboxes, StaticToken};
use std::sync::Arc;

const ROOM: &str = "room@emulator.test";

#[tokio::test]
async fn all_users_backs_up_every_mailbox_and_skips_users_without_one() {
    let cfg = EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(ALICE).messages(7).seed(1),
        MailboxSpec::new(BOB).messages(5).seed(2),
    ]);
    let cfg = EmulatorConfig {
        users_without_mailbox: vec![UserSpec {
            user_principal_name: ROOM.into(),
            display_name: "Room".into(),
            password: None,
        }],
        user_list_max_page: 2,
        ..cfg
    };
    let emu = emulator_with(cfg).await;
    let token = app_token(&emu).await;
    let dir = tempfile::tempdir().unwrap();
    let report = Backup::builder(dir.path(), Arc::new(StaticToken::new(&token)))
        .graph_url(emu.graph_url())
        .mailboxes(Mailboxes::AllUsers)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let skipped: Vec<_> = report
        .mailboxes
        .iter()
        .filter(|m| m.skipped_reason.is_some())
        .map(|m| m.mailbox.as_str())
        .collect();
    assert_eq!(skipped, vec![ROOM]);
    assert_complete(&dir.path().join(ALICE), &emu, ALICE);
    assert_complete(&dir.path().join(BOB), &emu, BOB);
    let stats = emu.stats();
    // Three users at two per page: the engine followed the next link once.
    assert_eq!(stats.count(EndpointKind::UserList), 2);
    assert!(stats.max_concurrency_per_mailbox.values().all(|c| *c <= 4));
}

#[tokio::test]
async fn all_users_without_directory_permission_fails_clearly() {
    let mut cfg =
        EmulatorConfig::default().with_mailboxes(vec![MailboxSpec::new(ALICE).messages(1).seed(1)]);
    for app in &mut cfg.apps {
        app.application_permissions = vec!["Mail.Read".into()];
    }
    let emu = emulator_with(cfg).await;
    let token = app_token(&emu).await;
    let dir = tempfile::tempdir().unwrap();
    let result = Backup::builder(dir.path(), Arc::new(StaticToken::new(&token)))
        .graph_url(emu.graph_url())
        .mailboxes(Mailboxes::AllUsers)
        .build()
        .unwrap()
        .run()
        .await;
    let text = match result {
        Ok(report) => format!("{report:?}"),
        Err(e) => e.to_string(),
    };
    assert!(text.contains("403"), "{text}");
    assert!(!dir.path().join(ALICE).exists());
}
