//! The object-store backend against a real S3-compatible server (moto on loopback): the
//! message-store conformance suite, multipart uploads, a backup whose objects match the Graph
//! emulator byte for byte, and a bucket that disappears mid-way recording nothing.

mod common;
#[path = "support/moto.rs"]
mod support;

use common::*;
use graph_emulator::MailboxSpec;
use mailbackup::store::ObjectMessageStore;
use mailbackup::{Index, MessageStore, ObjectKey, SqliteIndex};
use object_store::aws::{AmazonS3Builder, Checksum};
use std::sync::Arc;
use support::{ACCESS_KEY, REGION, SECRET_KEY, moto};

/// A store on `bucket` of the test binary's moto server.
fn s3_store(bucket: &str, prefix: &str, rt: tokio::runtime::Handle) -> ObjectMessageStore {
    let s3 = AmazonS3Builder::new()
        .with_endpoint(&moto().endpoint)
        .with_allow_http(true)
        .with_region(REGION)
        .with_bucket_name(bucket)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_checksum_algorithm(Checksum::SHA256)
        .build()
        .unwrap();
    ObjectMessageStore::new(Arc::new(s3), format!("s3://{bucket}"), prefix, rt)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn s3_store_passes_the_conformance_suite() {
    let rt = runtime();
    let bucket = moto().bucket("conformance");
    let store = s3_store(&bucket, "backups/mail", rt.handle().clone());
    mailbackup::store::conformance::message_store(&store);
    // The objects are below the prefix; quarantined ones below `.quarantine/`.
    let keys: Vec<String> = moto()
        .objects(&bucket)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["backups/mail/alice@x.test/2024-01/aaa.eml"]);
    let bare = s3_store(&bucket, "", rt.handle().clone());
    assert_eq!(
        bare.list("").unwrap(),
        vec![ObjectKey::new("backups/mail/alice@x.test/2024-01/aaa.eml").unwrap()]
    );
}

#[test]
fn large_messages_go_up_as_multipart_uploads_and_read_back_exactly() {
    let rt = runtime();
    let bucket = moto().bucket("multipart");
    let store = s3_store(&bucket, "", rt.handle().clone()).with_multipart(5 * 1024 * 1024);
    let key = ObjectKey::new("bob/2024-05/big.eml").unwrap();
    let body: Vec<u8> = (0..12 * 1024 * 1024 + 17)
        .map(|i| (i % 251) as u8)
        .collect();
    let stored = store
        .put(
            &key,
            &mut &body[..],
            Some(&mailbackup::store::hash_bytes(&body)),
        )
        .unwrap();
    assert_eq!(stored.size, body.len() as u64);
    // S3's ETag of a multipart object ends with the number of parts.
    let (status, head) = moto()
        .request("HEAD", &format!("/{bucket}/bob/2024-05/big.eml"))
        .unwrap();
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("-3\""),
        "three parts: {head}"
    );
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut store.open(&key).unwrap().unwrap(), &mut back).unwrap();
    assert!(back == body, "multipart object reads back byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_s3_matches_graph_byte_for_byte_then_syncs_deletes() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(25).seed(21)]).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = moto().bucket("backup");
    let store = Arc::new(s3_store(
        &bucket,
        "tenant",
        tokio::runtime::Handle::current(),
    ));
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

    // What the server holds, read without our code, is Graph's content after our header.
    let check = |expected: Vec<graph_emulator::ExpectedMessage>| {
        moto().assert_bucket_holds(&bucket, "tenant", &expected)
    };
    check(emu.mailbox(ALICE).expected_messages());
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .all(|e| { e.unwrap().file_name().to_string_lossy().starts_with('.') }),
        "no message file in the data folder"
    );

    // Incremental: a new message saved, a deleted one removed from the bucket.
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
        r.removed[0]
            .location
            .starts_with(&format!("s3://{bucket}/tenant/")),
        "{r:?}"
    );
    check(emu.mailbox(ALICE).expected_messages());

    let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
    let v = tokio::task::spawn_blocking({
        let store = store.clone();
        move || mailbackup::verify_store(&*store, &ix)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(v.is_clean() && v.ok == 25, "{v:?}");
}

/// Removes the bucket when the first message is about to be saved: the listing went well, the
/// writes are refused.
struct RemoveBucketOnFirstMessage {
    bucket: String,
    done: std::sync::Once,
}

impl mailbackup::Hooks for RemoveBucketOnFirstMessage {
    fn before_message(
        &self,
        _info: &mailbackup::MessageInfo,
        proposed: mailbackup::BeforeAction,
    ) -> mailbackup::BeforeAction {
        self.done.call_once(|| moto().remove_bucket(&self.bucket));
        proposed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_removed_mid_run_stops_the_mailbox_and_records_nothing_unstored() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(12).seed(8)]).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = moto().bucket("vanishing");
    let store = Arc::new(s3_store(&bucket, "", tokio::runtime::Handle::current()));
    let token = app_token(&emu).await;
    let report = builder(&emu, dir.path(), token, ALICE)
        .message_store(store)
        .hooks(Arc::new(RemoveBucketOnFirstMessage {
            bucket: bucket.clone(),
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
        e.starts_with(&format!("cannot write s3://{bucket}/"))
            && e.contains("NoSuchBucket")
            && e.contains("check that the bucket"),
        "the error names the object, the cause and what to do: {e}"
    );
    let ix = SqliteIndex::open(&dir.path().join(".meta/index.sqlite")).unwrap();
    assert!(ix.saved(None).unwrap().is_empty(), "nothing recorded");
}
