//! CRLs from the certificates' CRL distribution points: fetching over HTTP and caching.
//!
//! What it does: downloads the CRL named by an `http://` URI of a certificate's
//! cRLDistributionPoints extension (RFC 5280 4.2.1.13) with an HTTP/1.1 GET, bounded in time
//! (connect and total timeout), size and redirects; accepts DER or PEM; checks that the bytes
//! are a CRL `rustls-webpki` can use and reads thisUpdate/nextUpdate; caches the result per
//! URL in memory until nextUpdate. [`crate::validate::TrustPolicy`] then verifies the CRL
//! exactly like a CRL file (signature by the certificate's issuer, expiry policy) and looks the
//! certificate up in it.
//!
//! With [`CrlFetchOptions::cache_dir`] every downloaded CRL is also kept on disk (durably,
//! through the workspace crate `durable-write`: temporary file, fsync, rename, fsync of the
//! directory; a failed write leaves nothing behind), so a restart neither refetches a
//! CRL that is still current nor loses the last CRL when the distribution point is down. A
//! cached file is only a copy: it is verified against the issuer at every use, like a download.
//!
//! What it does not do: `ldap:`, `https:` or other URI schemes (skipped with a debug log;
//! `https:` distribution points are discouraged by RFC 5280 because they need revocation
//! checking themselves), indirect CRLs (cRLIssuer), delta CRLs, OCSP. It
//! never decides trust on its own: a CRL that cannot be fetched is reported as a
//! [`FetchError`] and the policy decides what an unknown revocation status means.
//!
//! Behaviour worth knowing:
//! - Concurrent validations that need the same URL wait for one fetch instead of each
//!   fetching (a lock per URL is held during the download); different URLs fetch in parallel.
//! - A failed fetch is remembered for [`CrlFetchOptions::retry_after_failure`] so that an
//!   unreachable distribution point does not stall every validation for a full timeout.
//! - When a cached CRL is past nextUpdate and the refetch fails, the stale CRL is still
//!   returned (with a warning); the policy's CRL expiry setting decides whether it counts,
//!   as for CRL files.
//! - The HTTP client honours the usual proxy environment variables (`HTTP_PROXY`,
//!   `ALL_PROXY`, `NO_PROXY`), as CRL downloads from inside a company network usually must.
//!
//! HTTP client: `ureq` 3 with its default features off (no TLS, no compression, no cookies):
//! a small, maintained, blocking HTTP/1.1 client whose agent has connect/global timeouts, a
//! redirect limit and a body size limit built in. Validation runs in blocking contexts, so a
//! blocking client fits, and it keeps tokio/hyper out of this crate; a hand-written HTTP client
//! would have to get chunked encoding, redirects and timeouts right again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::FromDer;

use crate::cert::unix;

/// Limits for downloading CRLs from distribution points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlFetchOptions {
    connect_timeout: Duration,
    timeout: Duration,
    max_size: u64,
    max_redirects: u32,
    retry_after_failure: Duration,
    cache_dir: Option<PathBuf>,
}

impl Default for CrlFetchOptions {
    /// 10 s to connect, 10 s in total, 10 MiB, 3 redirects, retry a failed URL after 60 s,
    /// no disk cache.
    fn default() -> Self {
        CrlFetchOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            max_size: 10 * 1024 * 1024,
            max_redirects: 3,
            retry_after_failure: Duration::from_secs(60),
            cache_dir: None,
        }
    }
}

impl CrlFetchOptions {
    /// The defaults (see [`Default`]).
    pub fn new() -> Self {
        CrlFetchOptions::default()
    }

    /// Time allowed to open the TCP connection (default 10 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Time allowed for the whole download, redirects included (default 10 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Largest CRL accepted, in bytes (default 10 MiB).
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// Redirects followed (default 3; 0 refuses any redirect).
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }

    /// How long a failed download is remembered before the URL is tried again (default 60 s).
    pub fn retry_after_failure(mut self, t: Duration) -> Self {
        self.retry_after_failure = t;
        self
    }

    /// Also keeps downloaded CRLs in this directory (created when needed), one file per URL
    /// named after the URL's SHA-256, and reads them back after a restart (default: memory
    /// only).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }
}

/// Why no CRL could be obtained from a distribution point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connecting or transferring failed (refused, DNS, reset, bad URL...).
    #[error("CRL distribution point {url} cannot be reached: {detail}")]
    Unreachable {
        /// The distribution point.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The server did not answer in time.
    #[error("CRL distribution point {url} did not answer in time ({detail})")]
    Timeout {
        /// The distribution point.
        url: String,
        /// Which limit was exceeded.
        detail: String,
    },
    /// The server answered with an HTTP error status.
    #[error("CRL distribution point {url} answered HTTP status {status}")]
    Status {
        /// The distribution point.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// More redirects than allowed.
    #[error("CRL distribution point {url} redirected more than {limit} times")]
    TooManyRedirects {
        /// The distribution point.
        url: String,
        /// The redirect limit.
        limit: u32,
    },
    /// The CRL is larger than the size limit.
    #[error("CRL from {url} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The distribution point.
        url: String,
        /// The size limit in bytes.
        limit: u64,
    },
    /// The answer is not a CRL (or one this implementation cannot use).
    #[error("the answer of CRL distribution point {url} is not a usable CRL: {detail}")]
    NotACrl {
        /// The distribution point.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// thisUpdate lies in the future: the CRL is not valid yet (or a clock is wrong).
    #[error(
        "CRL from {url} is not valid before {this_update} (UNIX time); check this host's clock"
    )]
    NotYetValid {
        /// The distribution point.
        url: String,
        /// thisUpdate, UNIX seconds.
        this_update: i64,
    },
}

/// A downloaded CRL with its update times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchedCrl {
    /// DER encoding (PEM answers are decoded).
    pub(crate) der: Vec<u8>,
    /// thisUpdate, UNIX seconds.
    pub(crate) this_update: i64,
    /// nextUpdate, UNIX seconds (webpki requires it, so every usable CRL has one).
    pub(crate) next_update: i64,
    /// The issuer Name's content as webpki compares it.
    pub(crate) issuer: Vec<u8>,
}

/// Tolerated clock difference when checking thisUpdate.
const CLOCK_SKEW_SECS: i64 = 300;

/// Downloads CRLs with the configured limits.
pub(crate) struct CrlFetcher {
    agent: ureq::Agent,
    options: CrlFetchOptions,
}

impl CrlFetcher {
    pub(crate) fn new(options: CrlFetchOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.timeout))
            .max_redirects(options.max_redirects)
            .max_redirects_will_error(true)
            .http_status_as_error(true)
            .user_agent(concat!(
                "oftp-security/",
                env!("CARGO_PKG_VERSION"),
                " CRL fetch"
            ))
            .build();
        CrlFetcher {
            agent: config.into(),
            options,
        }
    }

    /// GETs `url` and checks that the answer is a CRL valid at `now` (thisUpdate not in the
    /// future). Signature and issuer are checked by the caller against the certificate chain.
    pub(crate) fn fetch(&self, url: &str, now: SystemTime) -> Result<FetchedCrl, FetchError> {
        let body = self.download(url)?;
        let crl = decode(url, &body)?;
        if crl.this_update > unix(now).saturating_add(CLOCK_SKEW_SECS) {
            return Err(FetchError::NotYetValid {
                url: url.to_owned(),
                this_update: crl.this_update,
            });
        }
        Ok(crl)
    }

    fn download(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let map = |e: ureq::Error| match e {
            ureq::Error::StatusCode(status) => FetchError::Status {
                url: url.to_owned(),
                status,
            },
            ureq::Error::Timeout(which) => FetchError::Timeout {
                url: url.to_owned(),
                detail: format!(
                    "{which} timeout; limits: {:?} to connect, {:?} in total",
                    self.options.connect_timeout, self.options.timeout
                ),
            },
            ureq::Error::TooManyRedirects => FetchError::TooManyRedirects {
                url: url.to_owned(),
                limit: self.options.max_redirects,
            },
            ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge {
                url: url.to_owned(),
                limit: self.options.max_size,
            },
            other => FetchError::Unreachable {
                url: url.to_owned(),
                detail: other.to_string(),
            },
        };
        tracing::debug!(url, "fetching CRL from distribution point");
        let mut response = self.agent.get(url).call().map_err(map)?;
        response
            .body_mut()
            .with_config()
            .limit(self.options.max_size)
            .read_to_vec()
            .map_err(map)
    }
}

/// Decodes a DER or PEM CRL and reads its update times.
fn decode(url: &str, body: &[u8]) -> Result<FetchedCrl, FetchError> {
    let not_a_crl = |detail: String| FetchError::NotACrl {
        url: url.to_owned(),
        detail,
    };
    let der = if body.windows(10).any(|w| w == b"-----BEGIN") {
        CertificateRevocationListDer::from_pem_slice(body)
            .map_err(|e| not_a_crl(format!("PEM: {e}")))?
            .to_vec()
    } else {
        body.to_vec()
    };
    // The owned form parses every entry, so a malformed CRL is refused here, once; later
    // validations use the cheap borrowed form.
    let owned =
        webpki::OwnedCertRevocationList::from_der(&der).map_err(|e| not_a_crl(format!("{e:?}")))?;
    let issuer = webpki::CertRevocationList::from(owned).issuer().to_vec();
    let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
        .map_err(|e| not_a_crl(e.to_string()))?;
    let next_update = parsed
        .next_update()
        .ok_or_else(|| not_a_crl("no nextUpdate".into()))?
        .timestamp();
    Ok(FetchedCrl {
        this_update: parsed.last_update().timestamp(),
        next_update,
        issuer,
        der,
    })
}

/// Most URLs kept; beyond it an arbitrary entry is dropped (URLs come from certificates that
/// already chain to a trusted CA, so this bound is never reached in practice).
const MAX_CACHED_URLS: usize = 1024;

#[derive(Default)]
struct Slot {
    /// The disk cache was consulted for this URL (once per process).
    disk_checked: bool,
    crl: Option<Arc<FetchedCrl>>,
    /// The CRL is used without refetching until then (UNIX seconds).
    fresh_until: i64,
    /// The last failure and when to try again (UNIX seconds).
    failure: Option<(FetchError, i64)>,
}

/// CRLs per distribution point URL, shared by every clone of a trust policy.
pub(crate) struct DpCache {
    fetcher: CrlFetcher,
    slots: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
}

impl std::fmt::Debug for DpCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpCache")
            .field("options", &self.fetcher.options)
            .field("cached_urls", &lock(&self.slots).len())
            .finish()
    }
}

/// A poisoned lock only means another validation panicked; the cache data stays consistent
/// (every update is a single assignment), so it is used anyway.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DpCache {
    pub(crate) fn new(options: CrlFetchOptions) -> Self {
        DpCache {
            fetcher: CrlFetcher::new(options),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The CRL of `url`: cached until its nextUpdate, otherwise fetched now. Blocks while
    /// another thread fetches the same URL, then uses that result.
    pub(crate) fn get(&self, url: &str, now: SystemTime) -> Result<Arc<FetchedCrl>, FetchError> {
        let slot = {
            let mut slots = lock(&self.slots);
            if !slots.contains_key(url)
                && slots.len() >= MAX_CACHED_URLS
                && let Some(victim) = slots.keys().next().cloned()
            {
                slots.remove(&victim);
            }
            Arc::clone(slots.entry(url.to_owned()).or_default())
        };
        // Held across the download on purpose: concurrent validations of this URL queue here.
        let mut slot = lock(&slot);
        let t = unix(now);
        if !slot.disk_checked {
            slot.disk_checked = true;
            if let Some(crl) = self.load(url) {
                slot.fresh_until = crl.next_update;
                slot.crl = Some(Arc::new(crl));
            }
        }
        if let Some(crl) = &slot.crl
            && t < slot.fresh_until
        {
            return Ok(Arc::clone(crl));
        }
        if let Some((error, retry_at)) = &slot.failure
            && t < *retry_at
        {
            return match &slot.crl {
                Some(stale) => Ok(Arc::clone(stale)),
                None => Err(error.clone()),
            };
        }
        let retry =
            i64::try_from(self.fetcher.options.retry_after_failure.as_secs()).unwrap_or(i64::MAX);
        match self.fetcher.fetch(url, now) {
            Ok(crl) => {
                // A CRL already past nextUpdate when fetched is kept for the retry interval
                // rather than refetched on every validation.
                slot.fresh_until = crl.next_update.max(t.saturating_add(retry));
                self.store(url, &crl);
                let crl = Arc::new(crl);
                slot.crl = Some(Arc::clone(&crl));
                slot.failure = None;
                Ok(crl)
            }
            Err(error) => {
                slot.failure = Some((error.clone(), t.saturating_add(retry)));
                match &slot.crl {
                    Some(stale) => {
                        tracing::warn!(
                            url,
                            next_update = stale.next_update,
                            "using the cached CRL past its nextUpdate: {error}"
                        );
                        Ok(Arc::clone(stale))
                    }
                    None => Err(error),
                }
            }
        }
    }
}

impl DpCache {
    fn cache_file(&self, url: &str) -> Option<PathBuf> {
        let dir = self.fetcher.options.cache_dir.as_ref()?;
        let name = hex::encode(crate::suite::HashAlgorithm::Sha256.digest(url.as_bytes()));
        Some(dir.join(format!("{name}.crl")))
    }

    /// The CRL kept on disk for `url`, if there is a usable one (problems are logged: the
    /// distribution point is then simply asked).
    fn load(&self, url: &str) -> Option<FetchedCrl> {
        let path = self.cache_file(url)?;
        let max = self.fetcher.options.max_size;
        let read = || -> std::io::Result<Option<Vec<u8>>> {
            match std::fs::metadata(&path) {
                Ok(m) if m.len() > max => Ok(None),
                Ok(_) => std::fs::read(&path).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        match read() {
            Ok(Some(bytes)) => match decode(url, &bytes) {
                Ok(crl) => {
                    tracing::debug!(url, file = %path.display(), "CRL read from the disk cache");
                    Some(crl)
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), "ignoring cached CRL: {e}");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(file = %path.display(), "cannot read cached CRL: {e}");
                None
            }
        }
    }

    /// Keeps a downloaded CRL on disk; a failure only costs a download after a restart.
    fn store(&self, url: &str, crl: &FetchedCrl) {
        let Some(path) = self.cache_file(url) else {
            return;
        };
        if let Err(e) = durable_write::write(&path, &crl.der) {
            tracing::warn!(file = %path.display(), "cannot keep the CRL of {url} on disk: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oftp_test_pki::{HttpServer, Pki, Response};

    fn quick() -> CrlFetchOptions {
        CrlFetchOptions::new()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
    }

    #[test]
    fn fetches_der_and_pem_and_follows_redirects() {
        let pki = Pki::new();
        let der = std::fs::read(pki.crl(&[7])).unwrap();
        let server = HttpServer::start();
        server.set("/ca.crl", Response::ok(der.clone()));
        server.set("/ca.pem", Response::ok(pem("X509 CRL", &der)));
        server.set("/moved", Response::redirect(&server.url("/ca.crl")));
        let fetcher = CrlFetcher::new(quick());
        let now = SystemTime::now();
        for path in ["/ca.crl", "/ca.pem", "/moved"] {
            let crl = fetcher.fetch(&server.url(path), now).unwrap();
            assert_eq!(crl.der, der, "{path}");
            assert!(crl.this_update < crl.next_update);
        }
    }

    #[test]
    fn errors_name_the_cause() {
        let server = HttpServer::start();
        server.set("/big", Response::ok(vec![0x30; 4096]));
        server.set("/junk", Response::ok(b"<html>not found</html>".to_vec()));
        server.set("/gone", Response::status(404));
        server.set("/loop", Response::redirect(&server.url("/loop")));
        let fetcher = CrlFetcher::new(quick().max_size(1024).max_redirects(2));
        let now = SystemTime::now();
        let err = |p: &str| fetcher.fetch(&server.url(p), now).unwrap_err();
        assert!(matches!(
            err("/big"),
            FetchError::TooLarge { limit: 1024, .. }
        ));
        let junk = err("/junk");
        assert!(matches!(junk, FetchError::NotACrl { .. }), "{junk}");
        assert!(junk.to_string().contains("not a usable CRL"), "{junk}");
        assert!(matches!(
            err("/gone"),
            FetchError::Status { status: 404, .. }
        ));
        assert!(matches!(
            err("/loop"),
            FetchError::TooManyRedirects { limit: 2, .. }
        ));
        let closed = oftp_test_pki::closed_port_url("/ca.crl");
        let e = fetcher.fetch(&closed, now).unwrap_err();
        assert!(matches!(e, FetchError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("cannot be reached"), "{e}");
    }

    #[test]
    fn a_silent_server_times_out() {
        // Accepted by the kernel (backlog) but never answered.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ca.crl", silent.local_addr().unwrap());
        let fetcher = CrlFetcher::new(quick().timeout(Duration::from_millis(300)));
        let e = fetcher.fetch(&url, SystemTime::now()).unwrap_err();
        assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
    }

    #[test]
    fn future_crl_is_not_valid_yet() {
        let pki = Pki::new();
        let server = HttpServer::start();
        server.set(
            "/ca.crl",
            Response::ok(std::fs::read(pki.crl(&[])).unwrap()),
        );
        // The test CRL's thisUpdate is 2024-01-01.
        let before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        let e = CrlFetcher::new(quick())
            .fetch(&server.url("/ca.crl"), before)
            .unwrap_err();
        assert!(matches!(e, FetchError::NotYetValid { .. }), "{e}");
    }

    #[test]
    fn cache_keeps_until_next_update_and_remembers_failures() {
        let pki = Pki::new();
        let server = HttpServer::start();
        server.set(
            "/ca.crl",
            Response::ok(std::fs::read(pki.crl(&[])).unwrap()),
        );
        let cache = DpCache::new(quick().retry_after_failure(Duration::from_secs(60)));
        let url = server.url("/ca.crl");
        let now = SystemTime::now();
        let first = cache.get(&url, now).unwrap();
        cache.get(&url, now).unwrap();
        assert_eq!(server.requests("/ca.crl"), 1);
        // Past nextUpdate (2044) it is fetched again.
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(first.next_update as u64 + 1);
        cache.get(&url, later).unwrap();
        assert_eq!(server.requests("/ca.crl"), 2);
        // The server now fails: the stale CRL is still returned, and the failure is
        // remembered for the retry interval.
        server.set("/ca.crl", Response::status(500));
        let much_later = later + Duration::from_secs(3600 * 24 * 365 * 30);
        assert_eq!(cache.get(&url, much_later).unwrap(), first);
        assert_eq!(cache.get(&url, much_later).unwrap(), first);
        assert_eq!(server.requests("/ca.crl"), 3);
        // A URL that never worked reports its error, also from the negative cache.
        let missing = server.url("/missing");
        assert!(cache.get(&missing, now).is_err());
        assert!(matches!(
            cache.get(&missing, now),
            Err(FetchError::Status { status: 404, .. })
        ));
        assert_eq!(server.requests("/missing"), 1);
        let retry = now + Duration::from_secs(61);
        assert!(cache.get(&missing, retry).is_err());
        assert_eq!(server.requests("/missing"), 2);
    }

    /// A server with a CRL at `/ca.crl`: the server, the CRL, its URL.
    fn served_crl() -> (HttpServer, Vec<u8>, String) {
        let pki = Pki::new();
        let server = HttpServer::start();
        let der = std::fs::read(pki.crl(&[5])).unwrap();
        server.set("/ca.crl", Response::ok(der.clone()));
        let url = server.url("/ca.crl");
        (server, der, url)
    }

    #[test]
    fn the_disk_cache_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (server, der, url) = served_crl();
        let now = SystemTime::now();
        let opts = || quick().cache_dir(dir.path().join("crl-cache"));
        assert_eq!(DpCache::new(opts()).get(&url, now).unwrap().der, der);
        assert_eq!(server.requests("/ca.crl"), 1);
        // A new cache (a restart) uses the file while it is current, even with the server down.
        server.set("/ca.crl", Response::status(503));
        assert_eq!(DpCache::new(opts()).get(&url, now).unwrap().der, der);
        assert_eq!(server.requests("/ca.crl"), 1);
        // Past nextUpdate it asks again and, the server failing, falls back to the stale file.
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(2_400_000_000);
        assert_eq!(DpCache::new(opts()).get(&url, later).unwrap().der, der);
        assert_eq!(server.requests("/ca.crl"), 2);
        // A damaged file is ignored, not trusted.
        let files: Vec<_> = std::fs::read_dir(dir.path().join("crl-cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        std::fs::write(&files[0], b"garbage").unwrap();
        assert!(DpCache::new(opts()).get(&url, now).is_err());
        assert_eq!(server.requests("/ca.crl"), 3);
    }

    #[test]
    fn a_crl_that_cannot_be_kept_on_disk_is_used_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, der, url) = served_crl();
        let cache = DpCache::new(quick().cache_dir(dir.path().join("crl-cache")));
        // The cache file's name is taken by a folder that is not empty: the rename fails.
        let taken = cache.cache_file(&url).unwrap();
        std::fs::create_dir_all(taken.join("inside")).unwrap();
        assert_eq!(cache.get(&url, SystemTime::now()).unwrap().der, der);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("crl-cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(names, std::slice::from_ref(&taken));
        assert!(taken.join("inside").is_dir());
    }

    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        crate::cert::pem_encode(label, der).into_bytes()
    }
}
