//! The object-store backend against a real S3-compatible server (moto on loopback): the
//! message-store conformance suite, multipart uploads, a backup whose objects match the Graph
//! emulator byte for byte, and a bucket that disappears mid-way recording nothing.

mod common;
#[path = "support/store_cases.rs"]
mod store_cases;
#[path = "support/stored.rs"]
mod stored;
#[path = "support/moto.rs"]
mod support;

use mailbackup::store::ObjectMessageStore;
use mailbackup::{MessageStore, ObjectKey};
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

#[test]
fn s3_store_passes_the_conformance_suite() {
    let rt = store_cases::runtime();
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
    let rt = store_cases::runtime();
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
    let bucket = moto().bucket("backup");
    let store = Arc::new(s3_store(
        &bucket,
        "tenant",
        tokio::runtime::Handle::current(),
    ));
    store_cases::backup_matches_graph_then_syncs_deletes(
        store,
        &format!("s3://{bucket}/tenant"),
        |expected| moto().assert_bucket_holds(&bucket, "tenant", expected),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_removed_mid_run_stops_the_mailbox_and_records_nothing_unstored() {
    let bucket = moto().bucket("vanishing");
    let store = Arc::new(s3_store(&bucket, "", tokio::runtime::Handle::current()));
    let gone = bucket.clone();
    store_cases::removed_mid_run_records_nothing(
        store,
        move || moto().remove_bucket(&gone),
        &format!("s3://{bucket}"),
        "NoSuchBucket",
    )
    .await;
}
