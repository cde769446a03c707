//! Back up Microsoft 365 mailboxes over Microsoft Graph into plain `.eml` files.
//!
//! This is the Rust shape of the Office365Backup component (see
//! `docs/mailbackup-seed-mapping.md`): a [`BackupBuilder`] holds its properties and config
//! settings with the same defaults, [`Backup::run`] is `StartBackup` (async; `tokio::spawn` it
//! for the non-blocking form), [`Backup::abort`] is `AbortBackup`, the [`Hooks`] trait carries
//! its events, and [`Progress`] exposes `Phase` and `MessageCount`.
//!
//! Beyond the seed it fetches full-fidelity MIME (`/$value`), lists incrementally with one delta
//! token per folder, keeps to Graph's per-mailbox concurrency limit, waits out throttling, writes
//! every file crash-safely, and resumes after an abort or a `kill -9` without fetching again what
//! is already durable. See the module docs of [`engine`], [`store`] and [`index`] (and of the private `graph` module for the HTTP policies).
//!
//! ```no_run
//! # async fn demo() -> Result<(), mailbackup::Error> {
//! use std::sync::Arc;
//! use mailbackup::{Backup, StaticToken};
//! let backup = Backup::builder("/backups/alice", Arc::new(StaticToken::new("Bearer eyJ...")))
//!     .start_date("2023/07/01")
//!     .end_date("2023/07/31")
//!     .build()?;
//! let report = backup.run().await?;
//! println!("saved {} messages", report.mailboxes[0].saved);
//! # Ok(()) }
//! ```
//!
//! [`Restore`] brings backed-up messages back into a mailbox (JSON by default, MIME as an
//! option; idempotent through the index's restore log): see the [`restore`] module.
//!
//! Storage is behind two traits: [`MessageStore`] (objects under relative keys; [`LocalStore`]
//! writes files under the data folder) and [`Index`] ([`SqliteIndex`], [`PostgresIndex`]). Each has a conformance
//! suite a new backend's tests call ([`store::conformance`], [`index::conformance`]).
//!
//! Dependencies: `reqwest` (rustls) for HTTP, `rusqlite` (bundled SQLite, with FTS5) for the index,
//! the synchronous `postgres` crate for the shared [`PostgresIndex`] (index calls already run on
//! blocking threads, so an async client with a pool such as `deadpool-postgres` or `sqlx` would
//! only add a runtime hop; see [`index`]'s `postgres` module) with `unicode-normalization` for
//! its FTS5-equivalent words,
//! `sha1`/`sha2` for file names and content hashes, `durable-write` for crash-safe files,
//! `mail-parser` (lenient MIME parsing, also used by the emulator) and `base64` for restores,
//! `rustix` for `syncfs` (Maildir export batches). Retry and throttling logic is written here
//! rather than taken from `backon`, because throttling waits must not count as retries and must
//! stop every request of a mailbox at once, which a per-call retry wrapper does not express.

#![warn(missing_docs)]

pub mod engine;
pub mod error;
pub mod export;
mod graph;
pub mod headers;
pub mod hooks;
pub mod index;
pub mod lock;
pub mod options;
mod pacer;
pub mod report;
mod reporter;
pub mod restore;
pub mod retention;
pub mod search;
pub mod store;
pub mod token;
pub mod verify;

pub use engine::{Backup, BackupBuilder, META_DIR};
pub use error::Error;
pub use hooks::{
    BeforeAction, DeleteAction, ErrorAction, FetchedAction, Hooks, LogLevel, MessageFailure,
    MessageInfo, NoHooks,
};
pub use index::{HeaderRow, Hit, Index, PostgresIndex, QuarantinedRow, SqliteIndex};
pub use lock::LockState;
pub use options::{MAILBOX_CONCURRENCY_LIMIT, Mailboxes, Options, WorkerOptions};
pub use report::{
    BackupReport, FailedMessage, MailboxProgress, MailboxReport, Phase, Progress, RemovedMessage,
    RunStatus,
};
pub use restore::{Placement, Restore, RestoreMode, RestoreReport, RestoreRequest};
pub use search::Selection;
pub use store::{BACKUP_HEADER, BackupHeader, LocalStore, MessageStore, ObjectKey};
pub use token::{StaticToken, TokenError, TokenSource};
pub use verify::{
    CorruptFile, StatusReport, VerifyReport, status, status_of, verify, verify_store,
};
