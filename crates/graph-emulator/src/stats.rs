//! Request statistics: counts per endpoint kind, fault and throttling counters, and the
//! highest number of concurrent requests seen per mailbox.
//!
//! Counters are updated by the request pipeline; [`crate::Emulator::stats`] takes a snapshot.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::util::lock;

/// Kind of endpoint a request hit (used in [`Stats`] and to scope faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointKind {
    /// `POST {tenant}/oauth2/v2.0/token`.
    Token,
    /// `GET {tenant}/oauth2/v2.0/authorize`.
    Authorize,
    /// `POST {tenant}/oauth2/v2.0/devicecode`.
    DeviceCode,
    /// OpenID discovery document and device login page.
    IdentityOther,
    /// `/me`, `/users/{id}` (user profile).
    User,
    /// `GET /users` (directory listing, each page).
    UserList,
    /// Folder listing or folder lookup.
    Folders,
    /// Message listing (`/messages`, `/mailFolders/{id}/messages`).
    Messages,
    /// Single message JSON (`/messages/{id}`).
    Message,
    /// MIME content (`/messages/{id}/$value`).
    MessageValue,
    /// Delta query (`/mailFolders/{id}/messages/delta`, including skip and delta tokens).
    Delta,
    /// `POST mailFolders`, `POST mailFolders/{id}/childFolders` (folder creation).
    FolderCreate,
    /// `POST messages`, `POST mailFolders/{id}/messages` (message creation, MIME or JSON).
    MessageCreate,
    /// `PATCH messages/{id}`.
    MessageUpdate,
    /// `POST messages/{id}/attachments` and `.../attachments/createUploadSession`.
    AttachmentCreate,
    /// `PUT` of a byte range to an attachment upload URL.
    AttachmentUpload,
    /// `POST /$batch` (its sub-requests are counted under their own kinds as well).
    Batch,
    /// Anything else (unknown paths).
    Other,
}

/// Snapshot of the request statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests per endpoint kind (every request, including those answered with an error).
    pub requests: BTreeMap<EndpointKind, u64>,
    /// 429 answers because the per-mailbox concurrency limit was exceeded.
    pub throttled_concurrency: u64,
    /// 429 answers because the per-mailbox request budget ([`crate::RateLimit`]) was used up.
    pub throttled_rate: u64,
    /// 429 answers injected by faults.
    pub throttled_injected: u64,
    /// 503 answers injected by faults.
    pub unavailable_injected: u64,
    /// TCP connections accepted (identity and Graph endpoints alike).
    pub connections_accepted: u64,
    /// Connections dropped by faults.
    pub dropped_connections: u64,
    /// `$value` answers cut short by faults.
    pub truncated_values: u64,
    /// Empty delta pages and repeated delta items injected by faults.
    pub delta_quirks: u64,
    /// 401 answers (missing, unknown or expired access token).
    pub unauthorized: u64,
    /// 410 answers to expired delta or skip tokens.
    pub delta_gone: u64,
    /// Highest number of concurrent Graph requests seen for any one mailbox, counting requests
    /// that were then refused with 429 (so a client that exceeds the limit shows here).
    pub max_concurrency: usize,
    /// Highest number of concurrent Graph requests per mailbox (by user principal name).
    pub max_concurrency_per_mailbox: BTreeMap<String, usize>,
    /// `$value` contents served, per (user principal name, message id as requested): how
    /// often each message was downloaded.
    pub downloads: BTreeMap<(String, String), u64>,
}

impl Stats {
    /// Requests of one kind.
    pub fn count(&self, kind: EndpointKind) -> u64 {
        self.requests.get(&kind).copied().unwrap_or(0)
    }

    /// All 429 answers (concurrency, budget and injected).
    pub fn throttled(&self) -> u64 {
        self.throttled_concurrency + self.throttled_rate + self.throttled_injected
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// Counter store shared by the request pipeline.
#[derive(Debug, Default)]
pub(crate) struct StatsCollector {
    inner: Mutex<Stats>,
    /// Woken on every counted request ([`crate::Emulator::wait_for_requests`]).
    counted: tokio::sync::Notify,
}

/// Counter to bump in [`StatsCollector::bump`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Accepted,
    ThrottledConcurrency,
    ThrottledRate,
    ThrottledInjected,
    UnavailableInjected,
    Dropped,
    Truncated,
    DeltaQuirk,
    Unauthorized,
    DeltaGone,
}

impl StatsCollector {
    pub(crate) fn request(&self, kind: EndpointKind) {
        *lock(&self.inner).requests.entry(kind).or_insert(0) += 1;
        self.counted.notify_waiters();
    }

    /// Waits until at least `n` requests of `kind` have been counted since the last reset.
    pub(crate) async fn wait_for(&self, kind: EndpointKind, n: u64) {
        loop {
            let counted = self.counted.notified();
            tokio::pin!(counted);
            // Register before checking, so a request between the check and the wait is not missed.
            counted.as_mut().enable();
            if self.snapshot().count(kind) >= n {
                return;
            }
            counted.await;
        }
    }

    pub(crate) fn bump(&self, counter: Counter) {
        let mut s = lock(&self.inner);
        match counter {
            Counter::ThrottledConcurrency => s.throttled_concurrency += 1,
            Counter::ThrottledRate => s.throttled_rate += 1,
            Counter::ThrottledInjected => s.throttled_injected += 1,
            Counter::UnavailableInjected => s.unavailable_injected += 1,
            Counter::Accepted => s.connections_accepted += 1,
            Counter::Dropped => s.dropped_connections += 1,
            Counter::Truncated => s.truncated_values += 1,
            Counter::DeltaQuirk => s.delta_quirks += 1,
            Counter::Unauthorized => s.unauthorized += 1,
            Counter::DeltaGone => s.delta_gone += 1,
        }
    }

    pub(crate) fn download(&self, mailbox: &str, id: &str) {
        *lock(&self.inner)
            .downloads
            .entry((mailbox.to_owned(), id.to_owned()))
            .or_insert(0) += 1;
    }

    pub(crate) fn concurrency(&self, mailbox: &str, current: usize) {
        let mut s = lock(&self.inner);
        s.max_concurrency = s.max_concurrency.max(current);
        let e = s
            .max_concurrency_per_mailbox
            .entry(mailbox.to_owned())
            .or_insert(0);
        *e = (*e).max(current);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        lock(&self.inner).clone()
    }

    pub(crate) fn reset(&self) {
        *lock(&self.inner) = Stats::default();
    }
}
