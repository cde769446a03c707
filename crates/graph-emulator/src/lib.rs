//! Local emulator of the Microsoft Graph mail endpoints and the Microsoft identity platform
//! (OAuth 2.0) endpoints, for tests and for trying the backup tool without a tenant.
//!
//! # Quick start
//!
//! ```no_run
//! use graph_emulator::{Emulator, EmulatorConfig, MailboxSpec, DEFAULT_PUBLIC_CLIENT_ID};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let emu = Emulator::start(
//!     EmulatorConfig::default()
//!         .with_mailboxes(vec![MailboxSpec::new("adele.vance@emulator.test").messages(200).seed(7)]),
//! )
//! .await?;
//! // Client side: token URL, then Graph URLs.
//! let token_url = format!("{}/{}/oauth2/v2.0/token", emu.authority_url(), emu.tenant_id());
//! let folders = format!("{}/users/adele.vance@emulator.test/mailFolders", emu.graph_url());
//! # let _ = (token_url, folders, DEFAULT_PUBLIC_CLIENT_ID);
//! // Test side: what a complete backup must contain, and mutations between runs.
//! let mb = emu.mailbox("adele.vance@emulator.test");
//! let expected = mb.expected_messages(); // (id, folder, MIME bytes)
//! mb.update_message(&expected[0].info.id).ok();
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What is emulated
//!
//! Graph (`{graph_url}` = `{base}/v1.0`; every path works under `/me/...` with a delegated
//! token and under `/users/{object-id-or-UPN}/...` with any token that may read the mailbox):
//!
//! | Path | Notes |
//! |---|---|
//! | `GET /me`, `/users/{id}` | user profile |
//! | `GET /users` | directory listing, every user with or without a mailbox; `$top` (1..=999, default 100), `$select`, `$skiptoken` paging; app-only needs `User.Read.All` (or `User.ReadBasic.All`, `Directory.Read.All`, ...), delegated the same scopes (`User.ReadBasic.All`: basic properties only); else 403 `Authorization_RequestDenied` |
//! | `GET .../mailFolders` | children of `msgfolderroot`; `includeHiddenFolders=true`; `$top` (default 10), `$skip`, `$select`; `@odata.nextLink` |
//! | `GET .../mailFolders/{id}` , `.../childFolders` | ids or well-known names (`msgfolderroot`, `inbox`, `sentitems`, `deleteditems`, `archive`, `junkemail`, `drafts`, `outbox`); the default tree has a `#microsoft.graph.mailSearchFolder` clients must skip |
//! | `GET .../messages`, `.../mailFolders/{id}/messages` | `$top` (default 10, max 1000), `$skip`, `$select`, `$filter`, `$orderby` (default `receivedDateTime desc`), `$count`, `Prefer: odata.maxpagesize=N`; bad query -> 400 with the reason |
//! | `GET .../messages/{id}` | message JSON (`id`, `createdDateTime`, `lastModifiedDateTime`, `changeKey`, `receivedDateTime`, `subject`, `parentFolderId`, `internetMessageId`, `from`, recipients, `body`, ...) |
//! | `GET .../messages/{id}/$value` | RFC 822 MIME bytes |
//! | `GET .../mailFolders/{id}/messages/delta` | `$select`, `$filter=receivedDateTime ge|gt`, `Prefer: odata.maxpagesize`; `$skiptoken` pages, final `$deltatoken`; later rounds report creates/updates and `{"id","@removed":{"reason":"deleted"}}`; expired token -> 410 `syncStateNotFound` |
//! | `GET .../messages/delta` | 400, as Graph (no mailbox-wide message delta) |
//! | `POST /$batch` | up to 20 GET sub-requests, concurrent (each counts against the mailbox limit) or in order with `dependsOn`; binary bodies base64 |
//! | `POST .../mailFolders`, `.../mailFolders/{id}/childFolders` | `displayName`, `isHidden`; 201; same name under the same parent (any case, hidden folders too): 409 `ErrorFolderExists` |
//! | `POST .../messages`, `.../mailFolders/{id}/messages` | base64 MIME (`Content-Type: text/plain`): a draft, `$value` = the posted bytes; or a JSON `message` whose `PidTagMessageFlags` (`Integer 0x0E07`) decides draft and read state and whose `SystemTime 0x0E06` / `0x0039` set `receivedDateTime` / `sentDateTime`; `$value` generated from the fields |
//! | `PATCH .../messages/{id}` | `isRead`, `categories`, `flag`, `importance`; `isDraft` and `PidTagMessageFlags`: 400 `ErrorInvalidPropertySet` |
//! | `POST .../messages/{id}/attachments`, `.../attachments/createUploadSession` | `fileAttachment` up to 3 MiB (else 413); upload sessions for 3 MiB to 150 MiB, `PUT` ranges to the returned URL |
//!
//! `Prefer: IdType="ImmutableId"` switches every id to the immutable id; otherwise a message's
//! id changes when it moves (as in Exchange Online) and the old id answers 404.
//!
//! Errors are Graph-shaped (`{"error":{"code","message","innerError":{"date","request-id",
//! "client-request-id"}}}`): 401 `InvalidAuthenticationToken` + `WWW-Authenticate`, 403
//! `ErrorAccessDenied`, 404 `ErrorItemNotFound` / `ErrorInvalidUser` /
//! `MailboxNotEnabledForRESTAPI`, 400 `BadRequest` / `InefficientFilter` /
//! `RequestBroker--ParseUri`, 410 `syncStateNotFound` (+ `Location`), 429
//! `ApplicationThrottled` "MailboxConcurrency" + `Retry-After`, 503 `ServiceUnavailable`; for
//! writes 403 `ErrorAccessDenied` without `Mail.ReadWrite`, 409 `ErrorFolderExists`, 400
//! `ErrorMimeContentInvalidBase64String` / `ErrorMimeContentInvalid` / `RequestBodyRead` /
//! `ErrorInvalidPropertySet` / `ErrorInvalidProperty` / `ErrorInvalidExtendedPropertyValue`,
//! 413 `RequestEntityTooLarge`.
//!
//! Identity (`{authority_url}/{tenant}/oauth2/v2.0/...`, tenant = the configured tenant id or
//! domain, or `common`/`organizations` except for client credentials and ROPC): `authorize`
//! (code with PKCE S256/plain, implicit `response_type=token`; auto-consent and immediate 302),
//! `token` (`authorization_code`, `refresh_token` with rotation, `client_credentials` with
//! `/.default`, `password`, `urn:ietf:params:oauth:grant-type:device_code`), `devicecode`.
//! See the [`identity`](crate::IdentityHandle) hooks for device-code decline/expiry.
//!
//! # Throttling, latency and faults
//!
//! In-flight Graph requests are counted per mailbox (including time spent in the configured
//! latency); above [`EmulatorConfig::mailbox_concurrency_limit`] (default 4) a request gets 429
//! with `Retry-After` ([`EmulatorConfig::concurrency_retry_after_secs`], default 1; set 0 for
//! fast tests). An optional request budget per mailbox ([`RateLimit`]) answers 429 with the
//! seconds left in its window. [`FaultsHandle`] injects 429, 503 (with or without
//! `Retry-After`) and dropped connections (by probability, every n-th or the next n requests,
//! optionally only for some [`EndpointKind`]s), `$value` downloads cut short or paced to a
//! bandwidth, empty delta pages and repeated delta items, extra latency, and expires all access
//! tokens or all delta tokens at once. [`Stats`] counts requests per [`EndpointKind`], 401s,
//! 410s, 429s (by cause), 503s, drops, accepted connections, and the highest concurrency seen
//! per mailbox.
//!
//! # What the default mailbox contains (and a complete backup must handle)
//!
//! [`FolderSpec::default_tree`]: Inbox with nested folders (one named `2024 / Q1 — Überblick`,
//! one empty), Sent Items, Drafts, Deleted Items, Archive, Junk Email, Outbox, a **hidden**
//! folder with messages (only listed with `includeHiddenFolders=true`), and an "Unread Mail"
//! **search folder** that shows messages of other folders (skip it, or you back up duplicates).
//! Messages have non-ASCII subjects and names (RFC 2047), `multipart/alternative` bodies,
//! base64 attachments with RFC 2231 names, and every 50th message is larger than 1 MiB.
//! [`MailboxHandle::expected_messages`] lists every message exactly once with its MIME bytes.
//!
//! Mutations through [`MailboxHandle`] ([`create_message`](MailboxHandle::create_message),
//! [`update_message`](MailboxHandle::update_message),
//! [`set_read`](MailboxHandle::set_read), [`move_message`](MailboxHandle::move_message),
//! [`delete_message`](MailboxHandle::delete_message),
//! [`create_folder`](MailboxHandle::create_folder),
//! [`rename_folder`](MailboxHandle::rename_folder),
//! [`delete_folder`](MailboxHandle::delete_folder)) are visible to the next request and to the
//! next delta round; `lastModifiedDateTime` advances by at least one second per change.
//!
//! # Determinism
//!
//! A mailbox is generated from its [`MailboxSpec`] (seed, message count, folder tree, date
//! span ending at a fixed [`MailboxSpec::end_date`]): the same spec gives the same ids, JSON
//! and MIME bytes on every run and machine. Tokens and delta tokens are random. Mutations made
//! through [`MailboxHandle`] use the wall clock for their timestamps.
//!
//! # Not emulated
//!
//! DELETE, move, copy and send over HTTP, listing or reading attachments, item and reference
//! attachments, attachments added to messages not created from JSON over HTTP, `$expand`,
//! `$search` (both answer 400 naming the option), write sub-requests in `$batch`, folder
//! delta, JWT access tokens, signed `id_token`s, HTTPS.
//!
//! Dependencies: hyper directly (not axum) so a fault can close a connection without any
//! response; sha2/base64 for ids and PKCE; a local SplitMix64 for portable determinism;
//! mail-parser (0.11; 1.x needs a newer Rust) for MIME posted to `POST .../messages`.

#![warn(missing_docs)]

mod compose;
mod config;
mod delta;
mod error;
mod faults;
mod graph;
mod identity;
mod mailbox;
mod odata;
mod rng;
mod server;
mod stats;
mod synth;
mod util;

pub use config::{
    AppRegistration, DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_PASSWORD,
    DEFAULT_PUBLIC_CLIENT_ID, DEFAULT_TENANT_DOMAIN, DEFAULT_TENANT_ID, DEFAULT_USER,
    EmulatorConfig, FolderKind, FolderSpec, MailboxSpec, RateLimit, UserSpec,
};
pub use error::EmulatorError;
pub use faults::{FaultConfig, FaultsHandle, Trigger};
pub use identity::IdentityHandle;
pub use mailbox::{ExpectedMessage, FolderInfo, MailboxHandle, MessageInfo, NewMessage};
pub use server::Emulator;
pub use stats::{EndpointKind, Stats};
