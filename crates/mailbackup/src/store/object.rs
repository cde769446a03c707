//! A [`MessageStore`] on object storage (AWS S3 and S3-compatible servers, Azure Blob, Google
//! Cloud Storage) through the `object_store` crate.
//!
//! An object is `<store prefix>/<key>`, the key being the same as in the local layout
//! (`<user>/YYYY-MM/<sha1>.eml`), the bytes the same as a local file (backup header included).
//! The quarantine area is the prefix `<store prefix>/.quarantine/`; [`MessageStore::list`] never
//! returns keys whose first segment starts with `.`, as the local store skips hidden folders.
//!
//! **Verified writes.** A message is read into memory (Graph caps a message at 150 MB) while its
//! SHA-256 and MD5 are computed; a SHA-256 mismatch with the caller's expectation stores nothing.
//! The upload then carries the checksum to the server and the answer is checked:
//! - S3 uploads are sent with `x-amz-checksum-sha256` (per part for multipart uploads): AWS S3
//!   recomputes it over the bytes it received and refuses the request (`BadDigest`) when they
//!   differ. Not every S3-compatible server checks it (moto does not), so in addition the ETag the
//!   server returns, which S3 computes itself as the MD5 of the object (for a multipart upload
//!   the MD5 of the parts' MD5s, `-<parts>`), is compared with ours.
//! - When the ETag is not an MD5 (S3 with SSE-KMS or SSE-C, Azure, GCS) the object is read back
//!   and its SHA-256 compared.
//!
//! When the check fails the object is deleted and `put` fails, so the engine records nothing.
//! Messages above [`ObjectMessageStore::with_multipart`]'s threshold (8 MiB by default) go up
//! as multipart uploads (parts of 8 MiB, S3's minimum being 5 MiB); a failed multipart upload is
//! aborted. An upload interrupted by a crash leaves an incomplete multipart upload that the
//! store does not list; a lifecycle rule (`AbortIncompleteMultipartUpload`) removes it, so
//! [`MessageStore::remove_partial`] has nothing to do here. On Azure Blob a multipart upload is
//! a block blob: each part is a block, and the blob appears only when its block list is
//! committed; blocks of an aborted or interrupted upload are never committed and the service
//! drops them after a week.
//!
//! The trait's methods block: they run the async `object_store` calls on the runtime given to
//! [`ObjectMessageStore::new`] and must be called from a blocking thread (the engine's
//! `spawn_blocking`) or from outside the runtime.

use super::{MessageStore, ObjectKey, Stored};
use crate::error::Error;
use bytes::Bytes;
use futures_util::TryStreamExt;
use md5::Md5;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::sync::Arc;
use tokio::runtime::Handle;

/// Prefix (below the store prefix) of quarantined objects.
pub const QUARANTINE_PREFIX: &str = ".quarantine";

const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Messages in an object store.
#[derive(Debug, Clone)]
pub struct ObjectMessageStore {
    store: Arc<dyn ObjectStore>,
    /// Key prefix in the bucket (no leading or trailing `/`), may be empty.
    prefix: String,
    /// The store's URL without prefix (`s3://bucket`), for [`MessageStore::locate`].
    base: String,
    runtime: Handle,
    part_size: usize,
}

/// What was read from the caller and its checksums.
struct Body {
    data: Bytes,
    sha256: String,
    md5: [u8; 16],
}

fn md5_of(b: &[u8]) -> [u8; 16] {
    Md5::digest(b).into()
}

impl ObjectMessageStore {
    /// A store writing below `prefix` (`/`-separated, may be empty) of `store`; `base` is how
    /// people see the bucket (`s3://bucket`); `runtime` runs the store's requests.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        base: impl Into<String>,
        prefix: &str,
        runtime: Handle,
    ) -> ObjectMessageStore {
        ObjectMessageStore {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            base: base.into().trim_end_matches('/').to_string(),
            runtime,
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// Uploads objects larger than `part_size` as multipart uploads of parts of that size
    /// (S3 needs at least 5 MiB per part except the last).
    pub fn with_multipart(mut self, part_size: usize) -> ObjectMessageStore {
        self.part_size = part_size.max(1);
        self
    }

    /// Runs a request to completion from synchronous code.
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        match Handle::try_current() {
            // On a runtime worker thread `block_on` would panic; `block_in_place` moves the
            // worker's other tasks away first. Blocking threads need no such step.
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.runtime.block_on(f))
            }
            _ => self.runtime.block_on(f),
        }
    }

    fn full(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    fn path(&self, key: &ObjectKey) -> StorePath {
        // Keys are checked relative paths, so they always parse.
        StorePath::from(self.full(key.as_str()))
    }

    fn quarantine_path(&self, key: &ObjectKey) -> StorePath {
        StorePath::from(self.full(&format!("{QUARANTINE_PREFIX}/{}", key.as_str())))
    }

    fn url_of(&self, p: &StorePath) -> String {
        format!("{}/{p}", self.base)
    }

    fn err(&self, what: &str, p: &StorePath, e: object_store::Error) -> Error {
        Error::object_store(format!("cannot {what} {}", self.url_of(p)), e)
    }

    fn read_body(body: &mut dyn Read) -> io::Result<Body> {
        let mut data = Vec::new();
        body.read_to_end(&mut data)?;
        Ok(Body {
            sha256: hex::encode(Sha256::digest(&data)),
            md5: md5_of(&data),
            data: data.into(),
        })
    }

    /// Uploads `body`; returns the ETag the store gave and the ETag an S3 server computes
    /// for these bytes (MD5, or MD5 of the parts' MD5s and `-<parts>`).
    async fn upload(&self, p: &StorePath, body: &Body) -> Result<(Option<String>, String), Error> {
        let bytes = body.data.clone();
        if bytes.len() <= self.part_size {
            let r = self
                .store
                .put(p, PutPayload::from(bytes))
                .await
                .map_err(|e| self.err("write", p, e))?;
            return Ok((r.e_tag, hex::encode(body.md5)));
        }
        let upload = self
            .store
            .put_multipart(p)
            .await
            .map_err(|e| self.err("start a multipart upload of", p, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut md5s = Vec::new();
        for part in bytes.chunks(self.part_size) {
            md5s.extend_from_slice(&md5_of(part));
            w.put(bytes.slice_ref(part));
        }
        let parts = md5s.len() / 16;
        let r = w
            .finish()
            .await
            .map_err(|e| self.err("finish the multipart upload of", p, e))?;
        Ok((r.e_tag, format!("{}-{parts}", hex::encode(md5_of(&md5s)))))
    }

    /// Checks that the store holds what was sent: by the ETag the server computed when it is an
    /// MD5, else by reading the object back.
    async fn confirm(
        &self,
        p: &StorePath,
        body: &Body,
        etag: Option<String>,
        want_etag: &str,
    ) -> Result<(), Error> {
        if let Some(tag) = &etag
            && tag.trim_matches('"').eq_ignore_ascii_case(want_etag)
        {
            return Ok(());
        }
        let got = self
            .store
            .get(p)
            .await
            .map_err(|e| self.err("read back", p, e))?
            .bytes()
            .await
            .map_err(|e| self.err("read back", p, e))?;
        let sha = hex::encode(Sha256::digest(&got));
        if sha == body.sha256 {
            return Ok(());
        }
        Err(Error::io(
            format!("cannot write {}", self.url_of(p)),
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the store holds {} bytes with SHA-256 {sha} (ETag {}) where {} bytes with SHA-256 {} were sent",
                    got.len(),
                    etag.as_deref().unwrap_or("none"),
                    body.data.len(),
                    body.sha256
                ),
            ),
        ))
    }
}

impl MessageStore for ObjectMessageStore {
    fn put(
        &self,
        key: &ObjectKey,
        body: &mut dyn Read,
        expected_sha256: Option<&str>,
    ) -> Result<Stored, Error> {
        let p = self.path(key);
        let body = Self::read_body(body)
            .map_err(|e| Error::io(format!("cannot read the content for {key}"), e))?;
        // Nothing is sent when the bytes are not the expected ones.
        super::check_expected(&body.sha256, expected_sha256)
            .map_err(|e| Error::io(format!("cannot write {}", self.url_of(&p)), e))?;
        self.block_on(async {
            let (etag, want_etag) = self.upload(&p, &body).await?;
            if let Err(e) = self.confirm(&p, &body, etag, &want_etag).await {
                // What the store holds is not what was sent: do not leave it as the message.
                let _ = self.store.delete(&p).await;
                return Err(e);
            }
            Ok(())
        })?;
        Ok(Stored {
            size: body.data.len() as u64,
            sha256: body.sha256,
        })
    }

    fn open(&self, key: &ObjectKey) -> Result<Option<Box<dyn Read + Send>>, Error> {
        let p = self.path(key);
        self.block_on(async {
            match self.store.get(&p).await {
                Ok(r) => {
                    let b = r.bytes().await.map_err(|e| self.err("read", &p, e))?;
                    Ok(Some(Box::new(io::Cursor::new(b)) as Box<dyn Read + Send>))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err("read", &p, e)),
            }
        })
    }

    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, Error> {
        let p = self.path(key);
        self.block_on(async {
            match self.store.head(&p).await {
                Ok(m) => Ok(Some(m.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err("look up", &p, e)),
            }
        })
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), Error> {
        let p = self.path(key);
        self.block_on(async {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.err("delete", &p, e)),
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, Error> {
        // Object stores list by whole path segments: list the folder of the prefix, then
        // filter by the text prefix.
        let folder = prefix.rsplit_once('/').map_or("", |(f, _)| f);
        let under = self.full(folder);
        let under = (!under.is_empty()).then(|| StorePath::from(under));
        let metas: Vec<_> = self.block_on(async {
            self.store
                .list(under.as_ref())
                .try_collect()
                .await
                .map_err(|e| {
                    Error::object_store(
                        format!("cannot list {}/{}", self.base, self.full(folder)),
                        e,
                    )
                })
        })?;
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut keys: Vec<ObjectKey> = metas
            .iter()
            .filter_map(|m| {
                let rel = m.location.as_ref().strip_prefix(&strip)?;
                (!rel.starts_with('.') && rel.starts_with(prefix))
                    .then(|| ObjectKey::new(rel).ok())
                    .flatten()
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn quarantine(&self, key: &ObjectKey) -> Result<String, Error> {
        let (from, to) = (self.path(key), self.quarantine_path(key));
        self.block_on(async {
            // Copy then delete: a crash in between leaves the object in both places.
            self.store
                .copy(&from, &to)
                .await
                .map_err(|e| self.err("copy into quarantine", &from, e))?;
            match self.store.delete(&from).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.err("delete", &from, e)),
            }
        })?;
        Ok(self.url_of(&to))
    }

    fn purge_quarantined(&self, key: &ObjectKey) -> Result<(), Error> {
        let p = self.quarantine_path(key);
        self.block_on(async {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.err("delete", &p, e)),
            }
        })
    }

    fn locate(&self, key: &ObjectKey) -> String {
        self.url_of(&self.path(key))
    }

    fn remove_partial(&self, _prefix: &str) -> Result<usize, Error> {
        // Failed uploads are aborted; a crash's incomplete multipart upload is invisible and
        // left to the bucket's lifecycle rule (see the module documentation).
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutOptions, PutResult,
    };

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_store_without_md5_etags_passes_the_conformance_suite_by_reading_back() {
        // InMemory's ETags are counters, so every put is confirmed by reading it back.
        let rt = runtime();
        let store = ObjectMessageStore::new(
            Arc::new(InMemory::new()),
            "memory://",
            "p",
            rt.handle().clone(),
        );
        crate::store::conformance::message_store(&store);
    }

    /// An in-memory store that keeps one byte different from what it was sent.
    #[derive(Debug, Default)]
    struct Tampering(InMemory);

    impl std::fmt::Display for Tampering {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Tampering")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Tampering {
        async fn put_opts(
            &self,
            location: &StorePath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            let mut b = Bytes::from(payload).to_vec();
            b[0] ^= 1;
            self.0.put_opts(location, b.into(), opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &StorePath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &StorePath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<StorePath>>,
        ) -> BoxStream<'static, object_store::Result<StorePath>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&StorePath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&StorePath>,
        ) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &StorePath,
            to: &StorePath,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    #[test]
    fn a_write_the_store_did_not_keep_exactly_fails_and_leaves_nothing() {
        let rt = runtime();
        let store = ObjectMessageStore::new(
            Arc::new(Tampering::default()),
            "s3://b",
            "",
            rt.handle().clone(),
        );
        let key = ObjectKey::new("u/2024-01/x.eml").unwrap();
        let e = store
            .put(&key, &mut &b"Subject: a\r\n\r\nbody"[..], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot write s3://b/u/2024-01/x.eml") && e.contains("SHA-256"),
            "{e}"
        );
        assert_eq!(store.size(&key).unwrap(), None, "the bad copy is removed");
        assert_eq!(store.list("").unwrap(), vec![]);
    }

    #[test]
    fn keys_starting_with_a_dot_are_the_store_s_own_and_not_listed() {
        let rt = runtime();
        let store = ObjectMessageStore::new(
            Arc::new(InMemory::new()),
            "memory://",
            "",
            rt.handle().clone(),
        );
        let key = ObjectKey::new("a/x.eml").unwrap();
        store.put(&key, &mut &b"m"[..], None).unwrap();
        assert_eq!(
            store.quarantine(&key).unwrap(),
            "memory:/.quarantine/a/x.eml"
        );
        assert_eq!(store.list("").unwrap(), vec![]);
        assert_eq!(store.list(".quarantine/").unwrap(), vec![]);
    }
}
