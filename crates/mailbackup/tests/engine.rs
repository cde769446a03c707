//! End-to-end tests of the library against the Graph emulator (real sockets on 127.0.0.1).

mod common;

use common::*;
use graph_emulator::{EmulatorConfig, EndpointKind, MailboxSpec, NewMessage, Trigger};
use mailbackup::{
    Backup, BeforeAction, DeleteAction, Error, Hooks, Mailboxes, MessageInfo, ObjectKey, RunStatus,
    StaticToken,
};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn builder(
    emu: &graph_emulator::Emulator,
    dir: &Path,
    token: String,
    user: &str,
) -> mailbackup::BackupBuilder {
    Backup::builder(dir, Arc::new(StaticToken::new(format!("Bearer {token}"))))
        .graph_url(emu.graph_url())
        .mailboxes(Mailboxes::User(user.to_string()))
        .retry_interval(Duration::from_millis(50))
}

#[tokio::test]
async fn full_backup_is_byte_exact_and_a_rerun_fetches_nothing() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(60).seed(3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let backup = builder(&emu, dir.path(), token.clone(), ALICE)
        .max_connections(10)
        .message_page_size(7)
        .build()
        .unwrap();
    assert_eq!(backup.options().connections_per_mailbox, 4);
    let report = backup.run().await.unwrap();
    assert!(report.is_success(), "{report:?}");
    let mb = &report.mailboxes[0];
    assert_eq!((mb.message_count, mb.saved), (60, 60));
    assert!(mb.max_concurrency <= 4);
    assert_complete(dir.path(), &emu, ALICE);
    let stats = emu.stats();
    assert_eq!(stats.count(EndpointKind::MessageValue), 60);
    assert!(
        stats.max_concurrency <= 4 && stats.throttled() == 0,
        "{stats:?}"
    );

    // A no-change run: only folder listings and one delta request per folder.
    emu.reset_stats();
    let folders = emu
        .mailbox(ALICE)
        .folders()
        .iter()
        .filter(|f| !f.is_search_folder)
        .count() as u64;
    let report = builder(&emu, dir.path(), token, ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let mb = &report.mailboxes[0];
    assert_eq!((mb.saved, mb.unchanged), (0, 60));
    assert_eq!(
        mb.incremental_listings,
        folders - 1,
        "every mail folder but the root is incremental"
    );
    let stats = emu.stats();
    assert_eq!(stats.count(EndpointKind::MessageValue), 0);
    assert!(stats.count(EndpointKind::Delta) <= folders, "{stats:?}");
    assert!(
        stats.total() <= 3 * folders,
        "a no-change run costs a handful of requests per folder: {stats:?}"
    );
}

#[tokio::test]
async fn incremental_after_creates_updates_deletes_and_moves_then_sync_deletes() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(30).seed(5)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    builder(&emu, dir.path(), token.clone(), ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();

    let mb = emu.mailbox(ALICE);
    let msgs = mb.messages();
    let created = mb.create_message("inbox", NewMessage::default()).unwrap();
    mb.create_message("Archive", NewMessage::default()).unwrap();
    mb.update_message(&msgs[0].id).unwrap();
    mb.delete_message(&msgs[1].id).unwrap();
    let moved = mb.move_message(&msgs[2].id, "deleteditems").unwrap();
    emu.reset_stats();

    let report = builder(&emu, dir.path(), token.clone(), ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert!(report.is_success(), "{report:?}");
    // 2 created + 1 updated (+ the moved one when the move changed lastModifiedDateTime).
    let moved_changed = moved.last_modified != msgs[2].last_modified;
    assert_eq!(r.saved, 3 + moved_changed as u64, "{r:?}");
    assert_eq!(emu.stats().count(EndpointKind::MessageValue), r.saved);
    assert!(r.removed.is_empty());
    let deleted_path = expected_path(dir.path(), &msgs[1].immutable_id, msgs[1].created);
    assert!(deleted_path.exists(), "SyncDeletes off keeps local copies");
    assert!(expected_path(dir.path(), &created.immutable_id, created.created).exists());

    // SyncDeletes on: the deleted message's copy goes, the moved one stays (immutable id).
    let report = builder(&emu, dir.path(), token, ALICE)
        .sync_deletes(true)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert_eq!(r.removed.len(), 1, "{r:?}");
    assert_eq!(r.removed[0].id, msgs[1].immutable_id);
    assert!(!deleted_path.exists());
    assert_complete(dir.path(), &emu, ALICE);
    let v = mailbackup::verify(dir.path()).unwrap();
    assert!(v.is_clean(), "{v:?}");
}

#[tokio::test]
async fn date_range_and_filter_select_messages_and_bad_filter_shows_graphs_message() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(40).seed(9)]).await;
    let token = app_token(&emu).await;
    let all = emu.mailbox(ALICE).messages();
    let mut created: Vec<_> = all.iter().map(|m| m.created.date_naive()).collect();
    created.sort();
    let (start, end) = (created[10], created[25]);
    let expect = all
        .iter()
        .filter(|m| (start..=end).contains(&m.created.date_naive()))
        .count() as u64;

    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token.clone(), ALICE)
        .start_date(start.format("%Y/%m/%d").to_string())
        .end_date(end.format("%Y/%m/%d").to_string())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.mailboxes[0].saved, expect);
    assert_eq!(eml_files(dir.path()).len() as u64, expect);

    // A Filter goes to Graph as $filter; here: the Inbox only.
    let inbox = emu.mailbox(ALICE).folder("inbox").unwrap();
    let in_inbox = all.iter().filter(|m| m.folder_id == inbox.id).count() as u64;
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token.clone(), ALICE)
        .filter(format!("parentFolderId eq '{}'", inbox.id))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.mailboxes[0].saved, in_inbox);

    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token, ALICE)
        .filter("subject eqq 'x'")
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let err = report.mailboxes[0].error.clone().unwrap();
    assert!(err.contains("400"), "{err}");

    // Bad dates are refused before anything runs.
    let e = builder(&emu, dir.path(), String::new(), ALICE)
        .start_date("2023-07-01")
        .build()
        .err()
        .unwrap();
    assert!(e.to_string().contains("StartDate"), "{e}");
}

struct AbortAfter {
    n: u64,
    saved: AtomicU64,
    cancel: CancellationToken,
}

impl Hooks for AbortAfter {
    fn message_saved(&self, _info: &MessageInfo, _key: &ObjectKey) {
        if self.saved.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            self.cancel.cancel();
        }
    }
}

#[tokio::test]
async fn abort_leaves_a_consistent_state_and_resume_fetches_only_the_rest() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(50).seed(11)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let b = builder(&emu, dir.path(), token.clone(), ALICE);
    // The hook needs the backup's token: build, then wire the hook through a shared token.
    let cancel = CancellationToken::new();
    let hooks = Arc::new(AbortAfter {
        n: 12,
        saved: AtomicU64::new(0),
        cancel: cancel.clone(),
    });
    let backup = b.hooks(hooks.clone()).build().unwrap();
    let bc = backup.cancel_token();
    let watcher = tokio::spawn(async move {
        cancel.cancelled().await;
        bc.cancel();
    });
    let report = backup.run().await.unwrap();
    watcher.await.unwrap();
    assert_eq!(report.status, RunStatus::Aborted);
    let saved_first = hooks.saved.load(Ordering::SeqCst);
    assert!((12..50).contains(&saved_first), "{saved_first}");
    // The abort let the requests already sent finish before `run` returned: Graph has served
    // exactly the downloads the run received, and each of them was saved (none is still
    // travelling to be served later, which would blur the count below).
    assert_eq!(
        emu.stats().count(EndpointKind::MessageValue),
        saved_first,
        "every $value request sent before the abort was answered and saved"
    );
    let v = mailbackup::verify(dir.path()).unwrap();
    assert!(v.is_clean() && v.ok == saved_first, "{v:?}");
    assert_eq!(
        mailbackup::status(dir.path(), None).unwrap().lock,
        mailbackup::LockState::Free
    );

    emu.reset_stats();
    let report = builder(&emu, dir.path(), token, ALICE)
        .build()
        .unwrap()
        .resume()
        .await
        .unwrap();
    assert!(report.is_success());
    assert_eq!(
        emu.stats().count(EndpointKind::MessageValue),
        50 - saved_first,
        "nothing durable is fetched again"
    );
    assert_complete(dir.path(), &emu, ALICE);
}

#[tokio::test]
async fn a_second_run_on_the_same_folder_is_refused() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(5)]).await;
    let dir = tempfile::tempdir().unwrap();
    let _held = mailbackup::lock::RunLock::acquire(&dir.path().join(".meta")).unwrap();
    let e = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    assert!(e.to_string().contains("in use"));
}

#[tokio::test]
async fn throttling_and_503_storm_still_backs_up_everything_within_the_cap() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(40).seed(2)]).await;
    emu.faults().throttle(Trigger::EveryNth(9), 1);
    emu.faults().unavailable(Trigger::Next(2), None);
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .max_connections(8)
        .max_retry_count(0)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let r = &report.mailboxes[0];
    assert!(r.throttled >= 3, "{r:?}");
    assert!(r.max_concurrency <= 4);
    let stats = emu.stats();
    assert!(
        stats.max_concurrency <= 4 && stats.throttled_concurrency == 0,
        "{stats:?}"
    );
    assert_complete(dir.path(), &emu, ALICE);
}

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

struct Recorder {
    seen: Mutex<Vec<String>>,
}

impl Hooks for Recorder {
    fn before_message(&self, info: &MessageInfo, proposed: BeforeAction) -> BeforeAction {
        self.seen.lock().unwrap().push(info.id.clone());
        // Skip everything with an even position, save the rest at the proposed place.
        if self.seen.lock().unwrap().len().is_multiple_of(2) {
            BeforeAction::Skip
        } else {
            proposed
        }
    }
    fn before_delete(&self, _mailbox: &str, _id: &str, _key: &ObjectKey) -> DeleteAction {
        DeleteAction::Keep
    }
}

#[tokio::test]
async fn expired_delta_tokens_mean_a_full_listing_and_hooks_can_skip() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(20).seed(4)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let hooks = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
    });
    let report = builder(&emu, dir.path(), token.clone(), ALICE)
        .hooks(hooks.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert_eq!((r.saved, r.skipped), (10, 10), "{r:?}");
    assert_eq!(hooks.seen.lock().unwrap().len(), 20);

    emu.faults().expire_delta_tokens();
    emu.reset_stats();
    let report = builder(&emu, dir.path(), token, ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert!(report.is_success(), "{report:?}");
    assert_eq!(r.incremental_listings, 0);
    assert!(emu.stats().delta_gone > 0);
    assert_eq!((r.saved, r.unchanged), (10, 10), "{r:?}");
    assert_complete(dir.path(), &emu, ALICE);
}

#[tokio::test]
async fn endless_throttling_ends_at_the_time_limit_with_a_clear_report() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(5)]).await;
    emu.faults().throttle(Trigger::EveryNth(1), 1);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let report = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .time_limit(Duration::from_millis(2500))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(report.status, RunStatus::Failed);
    let r = &report.mailboxes[0];
    assert!(r.error.as_deref().unwrap().contains("time limit"), "{r:?}");
    assert!(r.throttled >= 1);
    // Throttling is not a retry: no message was reported failed, nothing half-written.
    assert!(r.failed.is_empty());
    assert!(eml_files(dir.path()).is_empty());
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

/// Exercises the per-message decisions: redirect, drop after fetch, a message deleted between
/// listing and fetch, and giving up after an error.
struct Decider {
    emu_mailbox: graph_emulator::MailboxHandle,
    /// Where the first message is saved instead of its default key.
    redirect_to: ObjectKey,
    order: Mutex<Vec<String>>,
    errors: Mutex<Vec<(String, u32)>>,
    fetched: AtomicU64,
}

impl Hooks for Decider {
    fn before_message(&self, info: &MessageInfo, proposed: BeforeAction) -> BeforeAction {
        let n = {
            let mut o = self.order.lock().unwrap();
            o.push(info.id.clone());
            o.len()
        };
        match n {
            1 => BeforeAction::Save(self.redirect_to.clone()),
            2 => {
                // Deleted remotely after the listing: the fetch gets 404.
                self.emu_mailbox.delete_message(&info.id).unwrap();
                proposed
            }
            _ => proposed,
        }
    }
    fn message_fetched(&self, _info: &MessageInfo, mime: &[u8]) -> mailbackup::FetchedAction {
        assert!(!mime.is_empty());
        // The second fetched message is dropped.
        if self.fetched.fetch_add(1, Ordering::SeqCst) == 1 {
            mailbackup::FetchedAction::Skip
        } else {
            mailbackup::FetchedAction::Save
        }
    }
    fn message_error(
        &self,
        failure: &mailbackup::MessageFailure<'_>,
        proposed: mailbackup::ErrorAction,
    ) -> mailbackup::ErrorAction {
        assert_eq!(
            proposed,
            mailbackup::ErrorAction::Retry,
            "a transport error is retried by default"
        );
        self.errors
            .lock()
            .unwrap()
            .push((failure.code.clone(), failure.attempt));
        mailbackup::ErrorAction::Skip
    }
}

#[tokio::test]
async fn hooks_redirect_skip_and_give_up_and_deleted_in_flight_is_not_an_error() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(8).seed(6)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let decider = || {
        Arc::new(Decider {
            emu_mailbox: emu.mailbox(ALICE),
            redirect_to: ObjectKey::new("elsewhere/first.eml").unwrap(),
            order: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            fetched: AtomicU64::new(0),
        })
    };
    let hooks = decider();
    let report = builder(&emu, dir.path(), token.clone(), ALICE)
        .max_connections(1)
        .hooks(hooks.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert!(report.is_success(), "{report:?}");
    assert_eq!((r.gone_in_flight, r.skipped, r.saved), (1, 1, 6), "{r:?}");
    let first = dir.path().join("elsewhere/first.eml");
    let (h, _) = split_saved(&std::fs::read(&first).unwrap());
    assert_eq!(h.id, hooks.order.lock().unwrap()[0]);

    // One $value request fails at the transport level; the hook gives up on that message.
    emu.faults().set(graph_emulator::FaultConfig {
        drop_connection: Trigger::Next(1),
        only: Some(vec![EndpointKind::MessageValue]),
        ..Default::default()
    });
    let hooks = decider();
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token, ALICE)
        .max_connections(1)
        .hooks(hooks.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert_eq!(r.failed[0].code, "TransportError");
    assert_eq!(
        *hooks.errors.lock().unwrap(),
        vec![("TransportError".to_string(), 1)]
    );
    assert!(
        !report.is_success(),
        "a failed message makes the run unsuccessful"
    );
}

#[tokio::test]
async fn sync_deletes_can_quarantine_instead_of_deleting() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(10).seed(12)]).await;
    let dir = tempfile::tempdir().unwrap();
    let quarantine = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    builder(&emu, dir.path(), token.clone(), ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let mb = emu.mailbox(ALICE);
    let gone = mb.messages()[3].clone();
    mb.delete_message(&gone.id).unwrap();
    let report = builder(&emu, dir.path(), token, ALICE)
        .sync_deletes(true)
        .quarantine_folder(quarantine.path())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert_eq!(r.removed.len(), 1, "{r:?}");
    let original = expected_path(dir.path(), &gone.immutable_id, gone.created);
    let moved = std::path::PathBuf::from(r.removed[0].quarantined_to.clone().unwrap());
    assert_eq!(r.removed[0].location, original.display().to_string());
    assert_eq!(
        moved,
        quarantine
            .path()
            .join(original.strip_prefix(dir.path()).unwrap())
    );
    assert!(!original.exists());
    let (h, _) = split_saved(&std::fs::read(&moved).unwrap());
    assert_eq!(h.id, gone.immutable_id);
    assert_complete(dir.path(), &emu, ALICE);
    assert!(mailbackup::verify(dir.path()).unwrap().is_clean());
}

fn tokens_of(dir: &Path) -> u64 {
    mailbackup::status(dir, None)
        .unwrap()
        .folders_with_token
        .iter()
        .map(|(_, n)| *n)
        .sum()
}

#[tokio::test]
async fn a_failed_message_holds_back_its_folders_delta_token_and_the_next_run_fetches_it() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(20).seed(8)]).await;
    let token = app_token(&emu).await;
    // Reference: a clean run stores a token for every folder.
    let clean = tempfile::tempdir().unwrap();
    let report = builder(&emu, clean.path(), token.clone(), ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let all_tokens = tokens_of(clean.path());

    // One $value download fails for good (no retries): its folder's round is not durable.
    emu.faults().set(graph_emulator::FaultConfig {
        drop_connection: Trigger::Next(1),
        only: Some(vec![EndpointKind::MessageValue]),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token.clone(), ALICE)
        .max_retry_count(0)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert_eq!((r.failed.len(), r.saved), (1, 19), "{r:?}");
    assert_eq!(tokens_of(dir.path()), all_tokens - 1);

    // The next run lists that folder again in full and fetches the message; now every folder
    // has its token.
    emu.reset_stats();
    let report = builder(&emu, dir.path(), token, ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert!(report.is_success(), "{report:?}");
    assert_eq!((r.saved, r.unchanged), (1, 19), "{r:?}");
    assert_eq!(emu.stats().count(EndpointKind::MessageValue), 1);
    assert_eq!(tokens_of(dir.path()), all_tokens);
    assert_complete(dir.path(), &emu, ALICE);
}

#[derive(Default)]
struct LogLines(Mutex<Vec<String>>);

impl Hooks for LogLines {
    fn log(&self, _level: mailbackup::LogLevel, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

#[tokio::test]
async fn retry_after_of_a_503_is_honoured_and_is_not_a_retry() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(3).seed(9)]).await;
    emu.faults().unavailable(Trigger::Next(1), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let logs = Arc::new(LogLines::default());
    let started = std::time::Instant::now();
    let report = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .max_retry_count(0)
        .hooks(logs.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    // A lower bound only: it cannot fail on a slow machine.
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.mailboxes[0].throttled, 1);
    let lines = logs.0.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("throttled (503 ServiceUnavailable)") && l.contains("waits 2.0s")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_download_still_running_at_the_time_limit_is_cut_there() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(2).seed(10)]).await;
    // At 100 bytes/s a message takes minutes: only the time limit can end the run early.
    emu.faults().value_bandwidth(Some(100));
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let report = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .time_limit(Duration::from_millis(1500))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let r = &report.mailboxes[0];
    assert!(
        r.error.as_deref().unwrap_or("").contains("time limit"),
        "{r:?}"
    );
    assert_eq!(report.status, RunStatus::Failed);
    assert!(eml_files(dir.path()).is_empty());
    let v = mailbackup::verify(dir.path()).unwrap();
    assert!(v.is_clean(), "{v:?}");
}

#[tokio::test]
async fn an_abort_waits_for_slow_requests_only_up_to_its_grace_period() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(3).seed(12)]).await;
    // At 100 bytes/s each download takes many seconds: the abort must not wait for them.
    emu.faults().value_bandwidth(Some(100));
    let dir = tempfile::tempdir().unwrap();
    let backup = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .abort_grace(Duration::from_millis(300))
        .build()
        .unwrap();
    let cancel = backup.cancel_token();
    let run = backup.run();
    tokio::pin!(run);
    // Abort once the downloads are under way (awaited, not polled).
    tokio::select! {
        r = &mut run => panic!("the run ended before the abort: {r:?}"),
        _ = emu.wait_for_requests(EndpointKind::MessageValue, 3) => {}
    }
    let aborted_at = std::time::Instant::now();
    cancel.cancel();
    let report = run.await.unwrap();
    assert!(aborted_at.elapsed() < Duration::from_secs(10));
    assert_eq!(report.status, RunStatus::Aborted);
    assert!(eml_files(dir.path()).is_empty());
    let v = mailbackup::verify(dir.path()).unwrap();
    assert!(v.is_clean(), "{v:?}");
}
