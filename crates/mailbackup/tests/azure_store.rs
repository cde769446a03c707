//! The object-store backend against a real Azure Blob server (Azurite on loopback), reached
//! through the documented `az://CONTAINER/PREFIX?use_emulator=true&endpoint=URL`: the
//! message-store conformance suite, a block (multipart) upload, a backup whose blobs match the
//! Graph emulator byte for byte, and a missing or vanishing container recording nothing.

mod common;
#[path = "support/store_cases.rs"]
mod store_cases;
#[path = "support/stored.rs"]
mod stored;
#[path = "support/azurite.rs"]
mod support;

use mailbackup::{MessageStore, ObjectKey};
use std::sync::Arc;
use support::azurite;

/// The store of `az://container/prefix` on the test binary's Azurite, opened as a command does.
async fn az_store(container: &str, prefix: &str) -> Arc<dyn MessageStore> {
    let dir = std::env::temp_dir();
    mailbackup::store::url::open(Some(&azurite().url(container, prefix)), &dir, None)
        .await
        .unwrap()
}

#[test]
fn azure_store_passes_the_conformance_suite() {
    let rt = store_cases::runtime();
    let container = azurite().container("conformance");
    let store = rt.block_on(az_store(&container, "backups/mail"));
    mailbackup::store::conformance::message_store(&*store);
    // The blobs are below the prefix; quarantined ones below `.quarantine/`, purged by then.
    assert_eq!(
        azurite().names(&container),
        ["backups/mail/alice@x.test/2024-01/aaa.eml"]
    );
    let bare = rt.block_on(az_store(&container, ""));
    assert_eq!(
        bare.list("").unwrap(),
        vec![ObjectKey::new("backups/mail/alice@x.test/2024-01/aaa.eml").unwrap()]
    );
    assert_eq!(
        store.locate(&ObjectKey::new("a/b.eml").unwrap()),
        format!("az://{container}/backups/mail/a/b.eml")
    );
}

#[test]
fn large_messages_go_up_as_blocks_and_read_back_exactly() {
    let rt = store_cases::runtime();
    let container = azurite().container("blocks");
    let store = rt.block_on(az_store(&container, ""));
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
    // Above 8 MiB a message goes up in 8 MiB blocks: two for 12 MiB.
    assert_eq!(
        azurite().committed_blocks(&container, "bob/2024-05/big.eml"),
        2
    );
    let blobs = azurite().blobs(&container);
    assert!(
        blobs.len() == 1 && blobs[0].1 == body,
        "the server holds the bytes sent"
    );
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut store.open(&key).unwrap().unwrap(), &mut back).unwrap();
    assert!(back == body, "the block blob reads back byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_azure_matches_graph_byte_for_byte_then_syncs_deletes() {
    let container = azurite().container("backup");
    let store = az_store(&container, "tenant").await;
    store_cases::backup_matches_graph_then_syncs_deletes(
        store,
        &format!("az://{container}/tenant"),
        |expected| azurite().assert_container_holds(&container, "tenant", expected),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_container_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let url = azurite().url("no-such-container", "mail");
    let Err(e) = mailbackup::store::url::open(Some(&url), dir.path(), None).await else {
        panic!("a missing container is refused");
    };
    let e = e.to_string();
    assert!(
        e.starts_with("invalid option Store")
            && e.contains("az://no-such-container/mail")
            && e.contains("does not exist (or these credentials cannot see it): create it"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_mid_run_stops_the_mailbox_and_records_nothing_unstored() {
    let container = azurite().container("vanishing");
    let store = az_store(&container, "").await;
    let gone = container.clone();
    store_cases::removed_mid_run_records_nothing(
        store,
        move || azurite().remove_container(&gone),
        &format!("az://{container}"),
        "ContainerNotFound",
    )
    .await;
}
