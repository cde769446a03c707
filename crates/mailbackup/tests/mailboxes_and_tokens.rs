//! Which mailboxes a run backs up and with which token: several users, the signed-in user, a shared mailbox, a token refreshed after 401.
//! End to end against the Graph emulator (real sockets on 127.0.0.1).

mod common;

use common::*;
use graph_emulator::{EmulatorConfig, MailboxSpec, NewMessage};
use mailbackup::{Backup, Hooks, Mailboxes, MessageInfo, ObjectKey, StaticToken};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// A token that works until `revoke` is set, then is refused; refreshing it always fails.
struct RevokedMidRun {
    good: String,
    revoked: std::sync::atomic::AtomicBool,
    refresh_attempts: std::sync::atomic::AtomicU32,
}

impl mailbackup::TokenSource for RevokedMidRun {
    fn access_token(
        &self,
    ) -> futures_util::future::BoxFuture<'_, Result<String, mailbackup::TokenError>> {
        let t = if self.revoked.load(Ordering::SeqCst) {
            "revoked-token".to_string()
        } else {
            self.good.clone()
        };
        Box::pin(async move { Ok(t) })
    }

    fn on_unauthorized<'a>(
        &'a self,
        _rejected: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<String, mailbackup::TokenError>> {
        self.refresh_attempts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            // As slow as a real token endpoint, so other refused requests pile up behind it.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err("invalid_grant: the refresh token was revoked".into())
        })
    }
}

/// Revokes the token once some messages are saved.
struct RevokeAfter(Arc<RevokedMidRun>, AtomicU64);

impl Hooks for RevokeAfter {
    fn message_saved(&self, _info: &MessageInfo, _key: &ObjectKey) {
        if self.1.fetch_add(1, Ordering::SeqCst) == 5 {
            self.0.revoked.store(true, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_for_all_requests_waiting_on_it() {
    let emu = emulator_with(
        EmulatorConfig::default()
            .with_mailboxes(vec![MailboxSpec::new(ALICE).messages(60).seed(21)])
            .with_latency(Duration::from_millis(30)),
    )
    .await;
    let tokens = Arc::new(RevokedMidRun {
        good: app_token(&emu).await,
        revoked: Default::default(),
        refresh_attempts: Default::default(),
    });
    let dir = tempfile::tempdir().unwrap();
    let report = Backup::builder(dir.path(), tokens.clone())
        .graph_url(emu.graph_url())
        .mailboxes(Mailboxes::User(ALICE.into()))
        .hooks(Arc::new(RevokeAfter(tokens.clone(), AtomicU64::new(0))))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    let error = r.error.as_deref().unwrap_or_default();
    assert!(error.contains("revoked"), "{r:?}");
    assert_eq!(
        tokens.refresh_attempts.load(Ordering::SeqCst),
        1,
        "every request refused with the same token waits for one refresh"
    );
}
