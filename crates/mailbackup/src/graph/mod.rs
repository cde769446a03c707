//! A small Microsoft Graph client: exactly the requests a mail backup needs, with the policies
//! that keep it polite and correct.
//!
//! - Concurrency: every request of a mailbox goes through its [`Gate`], a semaphore with at most
//!   [`crate::MAILBOX_CONCURRENCY_LIMIT`] permits held for the whole request, body included, and
//!   the mailbox's own connection pool that keeps no more connections than permits. A permit
//!   covers a request only: what the caller does with the answer (a message's save) never
//!   holds one of Graph's places. The backup bounds the messages downloaded and not yet
//!   recorded with its own per-mailbox bound (`engine::fetching::Unrecorded`).
//! - Throttling: 429 and 503 make the whole mailbox wait (a fence every request of the gate
//!   respects) for `Retry-After` (seconds or HTTP date), else an exponential backoff 1 s..60 s.
//!   Except a 429 for Graph's concurrency limit ("MailboxConcurrency"): the mailbox is within its
//!   budget and our permits keep it at the limit, so only that request waits its `Retry-After`.
//!   Throttling waits never count as retries; only the run's time limit bounds them.
//! - 401: one token refresh (`TokenSource::on_unauthorized`) and the request is repeated; a second
//!   401 is [`Error::Unauthorized`]. One refresh per refused token: requests refused with the
//!   same token wait for it and share its outcome (a failed refresh is not tried again by each).
//! - Other errors are returned to the caller, which decides about retries (listing requests use
//!   [`Graph::get_retrying`]: `MaxRetryCount` retries `RetryInterval` apart for transient errors).
//! - `@odata.nextLink` / `@odata.deltaLink` are followed verbatim, but only on the configured
//!   Graph origin, so a bearer token is never sent elsewhere.
//!
//! It does not do `$batch`: batching saves round trips but Graph counts every sub-request against
//! the same per-mailbox limits, and binary `$value` sub-responses complicate full-fidelity MIME.

use crate::error::Error;
use crate::options::Options;
use crate::pacer::Pacer;
use crate::report::MailboxProgress;
use crate::reporter::Reporter;
use crate::token::TokenSource;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod wire;

use wire::GraphErrorBody;
pub(crate) use wire::{Body, Folder, Page, RawMessage, User};

/// Properties requested when listing messages.
pub(crate) const MESSAGE_SELECT: &str = "id,createdDateTime,lastModifiedDateTime,receivedDateTime,sentDateTime,subject,from,toRecipients,ccRecipients,bccRecipients,hasAttachments,parentFolderId,internetMessageId,isRead";

/// Per-mailbox concurrency cap, connection pool and throttling fence.
#[derive(Debug)]
pub(crate) struct Gate {
    /// The mailbox's own HTTP client: its pool keeps at most as many connections as permits,
    /// so a mailbox does not hold more connections than it may use at once.
    http: reqwest::Client,
    sem: Semaphore,
    fence: std::sync::Mutex<Option<Instant>>,
    consecutive_throttles: AtomicU32,
    in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
    pub(crate) progress: Arc<MailboxProgress>,
}

impl Gate {
    pub(crate) fn new(opts: &Options, progress: Arc<MailboxProgress>) -> Result<Gate, Error> {
        let permits = opts.connections_per_mailbox.max(1);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(opts.request_timeout)
            .pool_max_idle_per_host(permits)
            .build()
            .map_err(|e| Error::Transport {
                url: opts.graph_url.clone(),
                message: e.to_string(),
            })?;
        Ok(Gate {
            http,
            sem: Semaphore::new(permits),
            fence: std::sync::Mutex::new(None),
            consecutive_throttles: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            progress,
        })
    }

    fn fence(&self) -> Option<Instant> {
        *self.fence.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn raise_fence(&self, until: Instant) {
        let mut f = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none_or(|cur| cur < until) {
            *f = Some(until);
        }
    }
}

/// Percent-encodes a path segment (ids may contain `/`, `+`, `=`).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `Retry-After` (delta-seconds or HTTP date).
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// How a request ended without an answer.
enum Ended {
    Failed(reqwest::Error),
    Aborted,
    TimeLimit,
}

/// The Graph client of a run.
pub(crate) struct Graph {
    base: String,
    origin: String,
    tokens: Arc<dyn TokenSource>,
    /// The last refresh: the refused token and its outcome (the fresh token, or why there is
    /// none). Held while a refresh runs, so requests refused with the same token wait for that
    /// one refresh and share its outcome instead of each trying again; a provider that keeps
    /// returning the refused token from `access_token` still gets the fresh one used.
    refreshed: Mutex<Option<(String, Result<String, String>)>>,
    opts: Arc<Options>,
    cancel: CancellationToken,
    deadline: Instant,
    reporter: Reporter,
    /// The worker's share of the app's request budget, when workers share the mailboxes.
    pacer: Option<Arc<Pacer>>,
}

impl Graph {
    pub(crate) fn new(
        opts: Arc<Options>,
        tokens: Arc<dyn TokenSource>,
        cancel: CancellationToken,
        reporter: Reporter,
    ) -> Result<Graph, Error> {
        let base = opts.graph_url.trim_end_matches('/').to_string();
        let url = url::Url::parse(&base).map_err(|e| Error::InvalidOption {
            option: "GraphUrl",
            reason: format!("{base:?} is not a URL: {e}"),
        })?;
        let origin = url.origin().ascii_serialization();
        Ok(Graph {
            base,
            origin,
            tokens,
            refreshed: Mutex::new(None),
            deadline: Instant::now() + opts.time_limit,
            pacer: opts
                .worker
                .as_ref()
                .map(|w| Arc::new(Pacer::new(f64::from(w.tenant_requests_per_second)))),
            opts,
            cancel,
            reporter,
        })
    }

    /// The pacer of a worker ([`crate::options::WorkerOptions`]).
    pub(crate) fn pacer(&self) -> Option<&Arc<Pacer>> {
        self.pacer.as_ref()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Whether the run's time limit is reached.
    pub(crate) fn past_time_limit(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// `me` or `users/{id}`.
    pub(crate) fn mailbox_path(mailbox: &str) -> String {
        if mailbox == "me" {
            "me".into()
        } else {
            format!("users/{}", encode_segment(mailbox))
        }
    }

    pub(crate) fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut u = format!("{}/{}", self.base, path);
        if !query.is_empty() {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            u.push('?');
            u.push_str(&q);
        }
        u
    }

    fn check_link(&self, link: &str) -> Result<(), Error> {
        let ok = url::Url::parse(link)
            .map(|u| u.origin().ascii_serialization() == self.origin)
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(Error::Protocol {
                url: self.base.clone(),
                reason: format!("a paging link points outside the Graph endpoint: {link}"),
            })
        }
    }

    async fn sleep(&self, d: Duration) -> Result<(), Error> {
        let until = Instant::now() + d;
        if until > self.deadline {
            return Err(Error::TimeLimit {
                limit: self.opts.time_limit,
            });
        }
        tokio::select! {
            _ = self.cancel.cancelled() => Err(Error::Aborted),
            _ = tokio::time::sleep_until(until) => Ok(()),
        }
    }

    /// Sleeps `RetryInterval` (cancellable, bounded by the time limit).
    pub(crate) async fn retry_pause(&self) -> Result<(), Error> {
        self.sleep(self.opts.retry_interval).await
    }

    async fn token(&self) -> Result<String, Error> {
        let t = self
            .tokens
            .access_token()
            .await
            .map_err(|e| Error::Token(e.to_string()))?;
        let r = self.refreshed.lock().await;
        Ok(match r.as_ref() {
            Some((refused, Ok(fresh))) if *refused == t => fresh.clone(),
            _ => t,
        })
    }

    /// Gets a fresh token after `refused` was refused: once per refused token, whatever the
    /// number of requests waiting on it.
    async fn refresh(&self, refused: &str) -> Result<(), Error> {
        let failed = |why: &str| Error::SignIn {
            message: why.to_string(),
        };
        let mut r = self.refreshed.lock().await;
        if let Some((old, outcome)) = r.as_ref()
            && old == refused
        {
            // Another request already refreshed this token (or found it cannot be).
            return outcome.as_ref().map(|_| ()).map_err(|why| failed(why));
        }
        let now = self
            .tokens
            .access_token()
            .await
            .map_err(|e| Error::Token(e.to_string()))?;
        if now != refused
            && r.as_ref()
                .is_none_or(|(_, fresh)| fresh.as_deref() != Ok(refused))
        {
            // The provider already hands out a newer token.
            return Ok(());
        }
        let outcome = self
            .tokens
            .on_unauthorized(refused)
            .await
            .map_err(|e| e.to_string());
        let result = outcome.as_ref().map(|_| ()).map_err(|why| failed(why));
        *r = Some((refused.to_string(), outcome));
        result
    }

    /// One GET through the gate, with throttling and 401 handling. `Ok` only for 2xx.
    pub(crate) async fn get(
        &self,
        gate: &Gate,
        url: &str,
        page_size: Option<u32>,
    ) -> Result<Bytes, Error> {
        self.send(gate, reqwest::Method::GET, url, None, page_size)
            .await
    }

    /// One request through the gate, with throttling and 401 handling (the same policies for
    /// reads and the writes of a restore). The body is sent again as is when the request is
    /// repeated. `Ok` only for 2xx.
    pub(crate) async fn send(
        &self,
        gate: &Gate,
        method: reqwest::Method,
        url: &str,
        body: Option<&Body>,
        page_size: Option<u32>,
    ) -> Result<Bytes, Error> {
        let mut refreshed_once = false;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Aborted);
            }
            if Instant::now() >= self.deadline {
                return Err(Error::TimeLimit {
                    limit: self.opts.time_limit,
                });
            }
            if let Some(f) = gate.fence() {
                let now = Instant::now();
                if f > now {
                    self.sleep(f - now).await?;
                }
            }
            let permit = tokio::select! {
                _ = self.cancel.cancelled() => return Err(Error::Aborted),
                p = gate.sem.acquire() => p.map_err(|_| Error::Aborted)?,
            };
            // A fence raised while we waited for the permit applies to us too.
            if gate.fence().is_some_and(|f| f > Instant::now()) {
                drop(permit);
                continue;
            }
            if let Some(p) = &self.pacer {
                loop {
                    let (at, token) = p.reserve();
                    let now = Instant::now();
                    if at > now {
                        self.sleep(at - now).await?;
                    }
                    if p.still_valid(token) {
                        break;
                    }
                }
            }
            let token = self.token().await?;
            let mut prefer = Vec::new();
            if self.opts.immutable_ids {
                prefer.push("IdType=\"ImmutableId\"".to_string());
            }
            if let Some(n) = page_size {
                prefer.push(format!("odata.maxpagesize={n}"));
            }
            let mut req = gate.http.request(method.clone(), url);
            match body {
                Some(b) => {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, b.content_type)
                        .body(b.bytes.clone());
                    match &b.content_range {
                        // Upload session URLs are pre-authorised (and may be on another host):
                        // no bearer token goes there.
                        Some(range) => req = req.header(reqwest::header::CONTENT_RANGE, range),
                        None => req = req.bearer_auth(&token),
                    }
                }
                None => req = req.bearer_auth(&token),
            }
            if !prefer.is_empty() {
                req = req.header("Prefer", prefer.join(", "));
            }
            let n = gate.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            gate.max_in_flight.fetch_max(n, Ordering::SeqCst);
            gate.progress.requests.fetch_add(1, Ordering::Relaxed);
            let exchange = async {
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, retry_after, body))
            };
            tokio::pin!(exchange);
            // The run's time limit also bounds a request in flight (a slow download must not
            // keep the run going past it).
            let result = tokio::select! {
                r = tokio::time::timeout_at(self.deadline, &mut exchange) => match r {
                    Ok(r) => r.map_err(Ended::Failed),
                    Err(_) => Err(Ended::TimeLimit),
                },
                _ = self.cancel.cancelled() => {
                    // An abort lets a request that may already be on the wire finish (bounded),
                    // so that when the run returns, Graph has answered everything it was sent
                    // and no request of this run is still being served behind its back. Only a
                    // request slower than the grace period is dropped.
                    match tokio::time::timeout(self.opts.abort_grace, &mut exchange).await {
                        Ok(r) => r.map_err(Ended::Failed),
                        Err(_) => Err(Ended::Aborted),
                    }
                }
            };
            gate.in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            let (status, retry_after, body) = match result {
                Ok(x) => x,
                Err(Ended::Aborted) => return Err(Error::Aborted),
                Err(Ended::TimeLimit) => {
                    return Err(Error::TimeLimit {
                        limit: self.opts.time_limit,
                    });
                }
                Err(Ended::Failed(e)) => {
                    return Err(Error::Transport {
                        url: strip_query(url),
                        message: e.to_string(),
                    });
                }
            };
            if (200..300).contains(&status) {
                gate.consecutive_throttles.store(0, Ordering::Relaxed);
                return Ok(body);
            }
            let (code, message) = match serde_json::from_slice::<GraphErrorBody>(&body) {
                Ok(b) => (b.error.code, b.error.message),
                Err(_) => (
                    String::new(),
                    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                ),
            };
            match status {
                401 if !refreshed_once => {
                    self.reporter
                        .info("Graph refused the access token (401); refreshing it once");
                    self.refresh(&token).await?;
                    refreshed_once = true;
                }
                401 => return Err(Error::Unauthorized { message }),
                429 if is_concurrency_limit(&message) => {
                    // Too many requests at once (ours raced the server's slot release): only
                    // this request waits; the others of the mailbox are within the limit.
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    gate.progress.throttled.fetch_add(1, Ordering::Relaxed);
                    self.reporter.info(&format!(
                        "{} throttled ({status} {code}, concurrency); this request waits {:.1}s",
                        strip_query(url),
                        wait.as_secs_f64()
                    ));
                    self.sleep(wait).await?;
                }
                429 | 503 => {
                    let n = gate.consecutive_throttles.fetch_add(1, Ordering::Relaxed);
                    let wait = retry_after.unwrap_or_else(|| {
                        Duration::from_secs(1u64 << n.min(6)).min(Duration::from_secs(60))
                    });
                    gate.progress.throttled.fetch_add(1, Ordering::Relaxed);
                    gate.raise_fence(Instant::now() + wait);
                    self.reporter.info(&format!(
                        "{} throttled ({status} {code}); mailbox {} waits {:.1}s",
                        strip_query(url),
                        gate.progress.mailbox(),
                        wait.as_secs_f64()
                    ));
                }
                _ => {
                    return Err(Error::Graph {
                        status,
                        code,
                        message,
                    });
                }
            }
        }
    }

    /// [`Graph::get`] with `MaxRetryCount` retries `RetryInterval` apart for transient errors
    /// (used by listing requests; message fetches go through the `message_error` hook instead).
    pub(crate) async fn get_retrying(
        &self,
        gate: &Gate,
        url: &str,
        page_size: Option<u32>,
    ) -> Result<Bytes, Error> {
        let mut attempt = 0;
        loop {
            match self.get(gate, url, page_size).await {
                Err(e) if e.is_transient() && attempt < self.opts.max_retry_count => {
                    attempt += 1;
                    self.reporter.info(&format!(
                        "{}: {e}; retry {attempt} of {} in {}s",
                        strip_query(url),
                        self.opts.max_retry_count,
                        self.opts.retry_interval.as_secs_f64()
                    ));
                    self.retry_pause().await?;
                }
                r => return r,
            }
        }
    }

    /// GETs and decodes one page (following a link verbatim when it is one).
    pub(crate) async fn page<T: serde::de::DeserializeOwned>(
        &self,
        gate: &Gate,
        url: &str,
        page_size: Option<u32>,
    ) -> Result<Page<T>, Error> {
        if url.starts_with("http") {
            self.check_link(url)?;
        }
        let body = self.get_retrying(gate, url, page_size).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            url: strip_query(url),
            reason: format!("cannot decode the page: {e}"),
        })
    }

    /// Every mail folder of a mailbox (depth first through `childFolders`), search folders left out.
    pub(crate) async fn folders(&self, gate: &Gate, mailbox: &str) -> Result<Vec<Folder>, Error> {
        let mbp = Self::mailbox_path(mailbox);
        let mut out = Vec::new();
        let mut pending = vec![(
            self.url(
                &format!("{mbp}/mailFolders"),
                &[("includeHiddenFolders", "true"), ("$top", "250")],
            ),
            Vec::<String>::new(),
        )];
        // Bounded: a mailbox with more folders than this is beyond what Graph supports anyway.
        const MAX_FOLDERS: usize = 100_000;
        while let Some((mut url, parent)) = pending.pop() {
            loop {
                let page: Page<Folder> = self.page(gate, &url, None).await?;
                for mut f in page.value {
                    if f.odata_type
                        .as_deref()
                        .is_some_and(|t| t.contains("mailSearchFolder"))
                    {
                        continue;
                    }
                    let mut segments = parent.clone();
                    segments.push(f.display_name.clone());
                    f.path = crate::store::folder_path::join(&segments);
                    if f.child_folder_count.unwrap_or(0) > 0 {
                        pending.push((
                            self.url(
                                &format!(
                                    "{mbp}/mailFolders/{}/childFolders",
                                    encode_segment(&f.id)
                                ),
                                &[("includeHiddenFolders", "true"), ("$top", "250")],
                            ),
                            segments,
                        ));
                    }
                    out.push(f);
                    if out.len() > MAX_FOLDERS {
                        return Err(Error::Protocol {
                            url: strip_query(&url),
                            reason: format!("more than {MAX_FOLDERS} folders"),
                        });
                    }
                }
                match page.next_link {
                    Some(n) => url = n,
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// First URL of a folder's delta round.
    pub(crate) fn delta_url(&self, mailbox: &str, folder: &str) -> String {
        self.url(
            &format!(
                "{}/mailFolders/{}/messages/delta",
                Self::mailbox_path(mailbox),
                encode_segment(folder)
            ),
            &[("$select", MESSAGE_SELECT)],
        )
    }

    /// First URL of a filtered listing (seed `Filter`).
    pub(crate) fn filtered_url(&self, mailbox: &str, filter: &str) -> String {
        let top = self.opts.page_size.to_string();
        self.url(
            &format!("{}/messages", Self::mailbox_path(mailbox)),
            &[
                ("$filter", filter),
                ("$select", MESSAGE_SELECT),
                ("$top", &top),
            ],
        )
    }

    /// Full MIME content of a message.
    pub(crate) async fn mime(&self, gate: &Gate, mailbox: &str, id: &str) -> Result<Bytes, Error> {
        let url = self.url(
            &format!(
                "{}/messages/{}/$value",
                Self::mailbox_path(mailbox),
                encode_segment(id)
            ),
            &[],
        );
        self.get(gate, &url, None).await
    }

    /// Whether a message still exists (sync phase of a filtered run).
    pub(crate) async fn exists(&self, gate: &Gate, mailbox: &str, id: &str) -> Result<bool, Error> {
        let url = self.url(
            &format!(
                "{}/messages/{}",
                Self::mailbox_path(mailbox),
                encode_segment(id)
            ),
            &[("$select", "id")],
        );
        match self.get_retrying(gate, &url, None).await {
            Ok(_) => Ok(true),
            Err(Error::Graph { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every user of the tenant (app-only).
    pub(crate) async fn users(&self, gate: &Gate) -> Result<Vec<User>, Error> {
        let mut url = self.url(
            "users",
            &[("$select", "id,userPrincipalName"), ("$top", "999")],
        );
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let page: Page<User> = self.page(gate, &url, None).await?;
            out.extend(page.value);
            match page.next_link {
                Some(n) => url = n,
                None => return Ok(out),
            }
        }
        Err(Error::Protocol {
            url: strip_query(&url),
            reason: "the user list does not end".into(),
        })
    }
}

/// Whether a 429's message is Graph's per-mailbox concurrency limit ("Application is over its
/// MailboxConcurrency limit."), as opposed to a request budget or other throttling.
fn is_concurrency_limit(message: &str) -> bool {
    message.contains("MailboxConcurrency")
}

/// A URL without its query, for logs and errors (queries can be long; they hold no secrets).
pub(crate) fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("AAMk/a+b="), "AAMk%2Fa%2Bb%3D");
        assert_eq!(Graph::mailbox_path("me"), "me");
        assert_eq!(Graph::mailbox_path("a@b.c"), "users/a@b.c");
    }

    #[test]
    fn raw_message_maps_recipients() {
        let raw: RawMessage = serde_json::from_str(
            r#"{"id":"1","subject":"s","from":{"emailAddress":{"name":"A","address":"a@x"}},
                "toRecipients":[{"emailAddress":{"address":"b@x"}},{"emailAddress":{"name":"C","address":"c@x"}}]}"#,
        )
        .unwrap();
        let i = raw.into_info("me", Some("F"));
        assert_eq!(i.from.as_deref(), Some("A <a@x>"));
        assert_eq!(i.to.as_deref(), Some("b@x, C <c@x>"));
        assert_eq!(i.folder_id.as_deref(), Some("F"));
    }
}
