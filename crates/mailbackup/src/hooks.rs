//! The hooks trait: one method per event of the seed, each with a default body.
//!
//! Hooks are plain (synchronous) methods called from the engine's tasks; the value a hook returns
//! is its decision (save or skip, retry or give up, delete or keep). They must return quickly:
//! slow work belongs on a channel to another task. Hooks may be called from several tasks at
//! once (messages are processed concurrently), hence `Send + Sync`.

use crate::report::BackupReport;
use crate::store::ObjectKey;
use serde::{Deserialize, Serialize};

/// Properties of a message known before its content is fetched (seed `BeforeMessageBackup`
/// parameters). Dates are Graph's ISO 8601 strings, unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageInfo {
    /// The mailbox this message belongs to (`me`, a user id or principal name).
    pub mailbox: String,
    /// Graph message id.
    pub id: String,
    /// Subject.
    pub subject: Option<String>,
    /// `From` address (`Name <address>`).
    pub from: Option<String>,
    /// `To` recipients, comma separated (seed `SentTo`).
    pub to: Option<String>,
    /// `Cc` recipients, comma separated.
    pub cc: Option<String>,
    /// `Bcc` recipients, comma separated.
    pub bcc: Option<String>,
    /// `receivedDateTime`.
    pub received: Option<String>,
    /// `sentDateTime`.
    pub sent: Option<String>,
    /// `createdDateTime` (decides the `YYYY-MM` folder).
    pub created: Option<String>,
    /// `lastModifiedDateTime` (decides whether a saved copy is current).
    pub last_modified: Option<String>,
    /// Whether Graph reports attachments.
    pub has_attachments: Option<bool>,
    /// The folder the message is in.
    pub folder_id: Option<String>,
    /// `internetMessageId`.
    pub internet_message_id: Option<String>,
    /// `isRead` (kept so that a restore gives the message its read state back).
    #[serde(default)]
    pub is_read: Option<bool>,
}

/// Decision of [`Hooks::before_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeforeAction {
    /// Fetch the message and save it under this key of the message store.
    Save(ObjectKey),
    /// Do not fetch nor save it (seed `Skip = true`).
    Skip,
}

/// Decision of [`Hooks::message_fetched`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchedAction {
    /// Save the content.
    Save,
    /// Drop it.
    Skip,
}

/// Decision of [`Hooks::message_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Try this message again after `RetryInterval`.
    Retry,
    /// Give up on it; it is listed as failed in the report.
    Skip,
}

/// Decision of [`Hooks::before_delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteAction {
    /// Remove the local copy.
    Delete,
    /// Keep it (it stays in the index and is offered again next run).
    Keep,
}

/// A failed attempt at one message (seed `MessageError` parameters).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MessageFailure<'a> {
    /// The message.
    pub info: &'a MessageInfo,
    /// Error code (Graph's `status code`, or a local code such as `IoError`).
    pub code: String,
    /// Error text.
    pub message: String,
    /// How many attempts failed so far (1 after the first failure).
    pub attempt: u32,
}

/// Severity of a [`Hooks::log`] line (seed `LogLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors.
    Error,
    /// Progress and status (the default level).
    Info,
    /// Detail about requests.
    Verbose,
    /// Debugging detail.
    Debug,
}

/// Receives the events of a run. Every method has a default that does what the seed does when
/// the event is not handled.
pub trait Hooks: Send + Sync {
    /// Before a message's content is fetched (seed `BeforeMessageBackup`). `proposed` is what the
    /// engine will do: `Save(default key)`, or `Skip` when an identical copy (same
    /// `lastModifiedDateTime`) is already saved. Return another key to save elsewhere in the
    /// store, `Skip` to skip, or `Save` to force a fetch of an unchanged message.
    fn before_message(&self, info: &MessageInfo, proposed: BeforeAction) -> BeforeAction {
        let _ = info;
        proposed
    }

    /// The full MIME content was fetched, just before it is saved (seed `MessageBackup`).
    fn message_fetched(&self, info: &MessageInfo, mime: &[u8]) -> FetchedAction {
        let _ = (info, mime);
        FetchedAction::Save
    }

    /// The message is durably saved under `key` (seed `AfterMessageBackup`).
    fn message_saved(&self, info: &MessageInfo, key: &ObjectKey) {
        let _ = (info, key);
    }

    /// An attempt at a message failed (seed `MessageError`). `proposed` is `Retry` while fewer
    /// than `MaxRetryCount` retries were made and the error may pass, else `Skip`.
    fn message_error(&self, failure: &MessageFailure<'_>, proposed: ErrorAction) -> ErrorAction {
        let _ = failure;
        proposed
    }

    /// Sync phase: a message is gone remotely and its stored copy `key` is about to be removed
    /// (seed `MessageDelete`).
    fn before_delete(&self, mailbox: &str, id: &str, key: &ObjectKey) -> DeleteAction {
        let _ = (mailbox, id, key);
        DeleteAction::Delete
    }

    /// The run ended, completed or not (seed `EndBackup`).
    fn backup_ended(&self, report: &BackupReport) {
        let _ = report;
    }

    /// One log line (seed `Log`). Lines also go to `tracing`.
    fn log(&self, level: LogLevel, message: &str) {
        let _ = (level, message);
    }
}

/// Hooks that take every default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}
