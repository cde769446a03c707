//! The backup scenarios every object-store server runs the same way (S3 through moto, Azure
//! Blob through Azurite): what differs is only how a test reaches its server, which the
//! caller passes in.

use crate::common::*;
use graph_emulator::{ExpectedMessage, MailboxSpec};
use mailbackup::{Index, MessageStore, SqliteIndex};
use std::sync::Arc;

/// The runtime the synchronous store tests drive an async store with.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A backup of 25 messages into `store`, then an incremental run with sync deletes: after each,
/// `holds` checks what the server has (read without our code) against Graph's messages; the
/// removed message is reported at `location` (`s3://bucket/prefix/...`); `verify` is clean.
pub(crate) async fn backup_matches_graph_then_syncs_deletes(
    store: Arc<dyn MessageStore>,
    location: &str,
    holds: impl Fn(&[ExpectedMessage]),
) {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(25).seed(21)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let run = |sync: bool| {
        builder(&emu, dir.path(), token.clone(), ALICE)
            .message_store(store.clone())
            .sync_deletes(sync)
            .build()
            .unwrap()
    };
    let report = run(false).run().await.unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.mailboxes[0].saved, 25);
    holds(&emu.mailbox(ALICE).expected_messages());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "no message file in the data folder"
    );

    // Incremental: a new message saved, a deleted one removed from the store.
    let mb = emu.mailbox(ALICE);
    let gone = mb.messages()[4].clone();
    mb.delete_message(&gone.id).unwrap();
    mb.create_message("inbox", graph_emulator::NewMessage::default())
        .unwrap();
    let report = run(true).run().await.unwrap();
    let r = &report.mailboxes[0];
    assert!(report.is_success(), "{report:?}");
    assert_eq!((r.saved, r.removed.len()), (1, 1), "{r:?}");
    assert!(
        r.removed[0].location.starts_with(&format!("{location}/")),
        "{r:?}"
    );
    holds(&emu.mailbox(ALICE).expected_messages());

    let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
    let v = tokio::task::spawn_blocking(move || mailbackup::verify_store(&*store, &ix))
        .await
        .unwrap()
        .unwrap();
    assert!(v.is_clean() && v.ok == 25, "{v:?}");
}

/// Runs `remove` (the bucket or container goes) when the first message is about to be saved:
/// the listing went well, the writes are refused.
struct RemoveOnFirstMessage<F> {
    remove: F,
    done: std::sync::Once,
}

impl<F: Fn() + Send + Sync> mailbackup::Hooks for RemoveOnFirstMessage<F> {
    fn before_message(
        &self,
        _info: &mailbackup::MessageInfo,
        proposed: mailbackup::BeforeAction,
    ) -> mailbackup::BeforeAction {
        self.done.call_once(&self.remove);
        proposed
    }
}

/// A backup into `store` whose bucket `remove` takes away before the first write: the mailbox
/// stops with an error that names the object (below `location`), the server's `cause` and
/// what to do, and the index records nothing.
pub(crate) async fn removed_mid_run_records_nothing(
    store: Arc<dyn MessageStore>,
    remove: impl Fn() + Send + Sync + 'static,
    location: &str,
    cause: &str,
) {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(12).seed(8)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let report = builder(&emu, dir.path(), token, ALICE)
        .message_store(store)
        .hooks(Arc::new(RemoveOnFirstMessage {
            remove,
            done: std::sync::Once::new(),
        }))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert!(!report.is_success(), "{report:?}");
    assert_eq!(r.saved, 0, "{r:?}");
    let e = r.error.as_deref().unwrap_or_default();
    assert!(
        e.starts_with(&format!("cannot write {location}/"))
            && e.contains(cause)
            && e.contains("check that the bucket"),
        "the error names the object, the cause and what to do: {e}"
    );
    let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
    assert!(ix.saved(None).unwrap().is_empty(), "nothing recorded");
}
