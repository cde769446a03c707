//! The behaviour every [`MessageStore`] must have. A backend's test calls
//! [`message_store`] with an empty store that has a quarantine area; the function panics (with a
//! message naming the broken rule) when the backend misbehaves.
//!
//! ```no_run
//! # fn demo(dir: &std::path::Path, q: &std::path::Path) {
//! let store = mailbackup::store::LocalStore::new(dir).with_quarantine(q);
//! mailbackup::store::conformance::message_store(&store);
//! # }
//! ```

use super::{MessageStore, ObjectKey, hash_bytes};
use std::io::{self, Read};

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("valid key")
}

fn read_all(store: &dyn MessageStore, k: &ObjectKey) -> Option<Vec<u8>> {
    let mut r = store.open(k).expect("open")?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).expect("read");
    Some(out)
}

/// A reader that yields some bytes, then fails.
struct Failing(u8);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("the source broke mid-stream"));
        }
        self.0 -= 1;
        buf[0] = b'x';
        Ok(1)
    }
}

/// Runs every check against `store`, which must be empty and have a quarantine area.
pub fn message_store(store: &dyn MessageStore) {
    assert_eq!(
        store.list("").expect("list"),
        vec![],
        "a new store is empty"
    );

    // put then get, in several chunks, with the size and checksum of what was stored.
    let a = key("alice@x.test/2024-01/aaa.eml");
    let body = b"X-NS-Backup: v=1\r\nSubject: a\r\n\r\nbody".to_vec();
    let mut chunks = io::Read::chain(&body[..10], &body[10..]);
    let stored = store.put(&a, &mut chunks, None).expect("put");
    assert_eq!(stored.size, body.len() as u64, "put reports the size");
    assert_eq!(stored.sha256, hash_bytes(&body), "put reports the SHA-256");
    assert_eq!(
        read_all(store, &a),
        Some(body.clone()),
        "get returns what put stored"
    );
    assert_eq!(store.size(&a).expect("size"), Some(body.len() as u64));

    // A verified put with the right checksum replaces the object.
    let body2 = b"second version".to_vec();
    store
        .put(&a, &mut &body2[..], Some(&hash_bytes(&body2)))
        .expect("verified put");
    assert_eq!(read_all(store, &a), Some(body2.clone()), "put replaces");

    // A checksum mismatch stores nothing and keeps the old object.
    let e = store
        .put(
            &a,
            &mut &b"tampered"[..],
            Some(&hash_bytes(b"something else")),
        )
        .expect_err("a checksum mismatch must fail the put");
    assert!(
        e.to_string().contains("SHA-256"),
        "the mismatch is named: {e}"
    );
    assert_eq!(read_all(store, &a), Some(body2.clone()), "old object kept");

    // A failing source stores nothing: no new key, no leftovers.
    let b = key("alice@x.test/2024-02/bbb.eml");
    store
        .put(&b, &mut Failing(5), None)
        .expect_err("a failing reader fails the put");
    assert!(store.open(&b).expect("open").is_none(), "nothing stored");
    assert_eq!(store.size(&b).expect("size"), None);
    assert_eq!(
        store.list("").expect("list"),
        vec![a.clone()],
        "a failed put leaves nothing behind"
    );
    assert_eq!(store.remove_partial("").expect("remove_partial"), 0);

    // list by prefix, in order.
    let c = key("bob@x.test/2024-01/ccc.eml");
    let d = key("alice@x.test/2023-12/ddd.eml");
    for k in [&c, &d] {
        store.put(k, &mut &b"m"[..], None).expect("put");
    }
    assert_eq!(
        store.list("").expect("list"),
        vec![d.clone(), a.clone(), c.clone()]
    );
    assert_eq!(
        store.list("alice@x.test/").expect("list"),
        vec![d.clone(), a.clone()]
    );
    assert_eq!(store.list("carol@").expect("list"), vec![]);

    // delete, twice.
    store.delete(&c).expect("delete");
    store
        .delete(&c)
        .expect("deleting a missing key is not an error");
    assert!(store.open(&c).expect("open").is_none());

    // quarantine moves the object out of the listing, keeping its content.
    let where_ = store.quarantine(&d).expect("quarantine");
    assert!(
        where_.contains(d.as_str()),
        "the quarantined copy keeps its key: {where_}"
    );
    assert!(store.open(&d).expect("open").is_none());
    assert_eq!(store.list("").expect("list"), vec![a.clone()]);
    assert!(!store.locate(&a).is_empty());

    // purging a quarantined copy, twice; the live objects stay.
    store.purge_quarantined(&d).expect("purge_quarantined");
    store
        .purge_quarantined(&d)
        .expect("purging a missing quarantined copy is not an error");
    assert_eq!(store.list("").expect("list"), vec![a.clone()]);
}
