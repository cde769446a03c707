//! Full and incremental backups: byte-exact copies, delta rounds, expired tokens, deletions and moves synced, a failed message holding back its folder's delta token.
//! End to end against the Graph emulator (real sockets on 127.0.0.1).

mod common;

use common::*;
use graph_emulator::{EndpointKind, MailboxSpec, NewMessage, Trigger};
use mailbackup::{BeforeAction, DeleteAction, Hooks, MessageInfo, ObjectKey};
use std::path::Path;
use std::sync::{Arc, Mutex};

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

#[tokio::test]
async fn with_mutable_ids_a_moved_message_is_reported_as_moved_not_deleted() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(10).seed(17)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let run = |sync: bool| {
        builder(&emu, dir.path(), token.clone(), ALICE)
            .immutable_ids(false)
            .sync_deletes(sync)
            .build()
            .unwrap()
    };
    run(false).run().await.unwrap();
    let mb = emu.mailbox(ALICE);
    let before = mb.messages()[2].clone();
    let moved = mb.move_message(&before.id, "deleteditems").unwrap();
    assert_ne!(moved.id, before.id, "a move changes a mutable id");

    let report = run(true).run().await.unwrap();
    let r = &report.mailboxes[0];
    assert!(report.is_success(), "{report:?}");
    assert_eq!(r.removed.len(), 1, "{r:?}");
    assert_eq!(r.removed[0].id, before.id);
    assert_eq!(r.removed[0].moved_to.as_deref(), Some(moved.id.as_str()));
    assert_eq!(eml_files(dir.path()).len(), 10, "one copy per message");
}
