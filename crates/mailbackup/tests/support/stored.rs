//! What an object-store test server holds, checked against the Graph emulator: shared by the
//! S3 (moto) and Azure Blob (Azurite) helpers, which read the objects without our code.

#![allow(dead_code, unreachable_pub)]

/// Asserts that `objects` (key and content, below `prefix`) are exactly `expected`, under the
/// keys of the local layout, each object the backup header then Graph's MIME byte for byte.
pub fn assert_holds(
    objects: &[(String, Vec<u8>)],
    prefix: &str,
    expected: &[graph_emulator::ExpectedMessage],
) {
    assert_eq!(objects.len(), expected.len(), "one object per message");
    for m in expected {
        let created = m.info.created.to_rfc3339();
        let key = mailbackup::ObjectKey::for_message("", &m.info.immutable_id, Some(&created));
        let key = format!("{prefix}/{key}");
        let (_, bytes) = objects
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("{key} is not in the store"));
        let cut = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        let h = mailbackup::BackupHeader::parse(std::str::from_utf8(&bytes[..cut]).unwrap())
            .expect("backup header");
        assert_eq!(h.id, m.info.immutable_id);
        assert!(
            bytes[cut..] == m.mime[..],
            "{key} differs from Graph's MIME"
        );
    }
}
