//! The crate's error type.
//!
//! Errors that end a whole run (bad options, a locked folder, an unreadable index) come back as
//! `Err(Error)` from [`crate::Backup::run`]. Errors that end one mailbox (Graph rejected the filter,
//! the token was refused twice, the time limit was reached) are recorded in that mailbox's
//! [`crate::MailboxReport`] so the other mailboxes of the run still proceed.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option has a value that cannot work; the message says which and why.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// Name of the option (as in the seed and the CLI, e.g. `StartDate`).
        option: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// Another run holds the lock of this backup folder.
    #[error(
        "the backup folder is in use: lock {path} is held by {holder}; wait for that run to end or stop it"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it (pid, host, start time), as written in the lock file.
        holder: String,
    },
    /// Another live worker registered with the same worker id in the shared index.
    #[error(
        "worker id {worker} is in use by a running worker (last heartbeat {heartbeat}); give each worker its own --worker-id, or wait until that one ends or its heartbeat expires"
    )]
    WorkerIdInUse {
        /// The worker id.
        worker: String,
        /// The other worker's last heartbeat (RFC 3339, the index's clock).
        heartbeat: String,
    },
    /// Graph answered with an error status that is not retried (or no longer retried).
    #[error("Graph answered {status} {code}: {message}")]
    Graph {
        /// HTTP status.
        status: u16,
        /// Graph's error code (`error.code`), e.g. `BadRequest`, `ErrorItemNotFound`.
        code: String,
        /// Graph's error message (`error.message`), shown to the user verbatim.
        message: String,
    },
    /// Graph refused a write (403): the token lacks `Mail.ReadWrite`.
    #[error(
        "Graph refused to write into mailbox {mailbox} (403 {code}: {message}). Restore needs the Mail.ReadWrite permission: an application permission with admin consent, or for a signed-in user the delegated Mail.ReadWrite (Mail.ReadWrite.Shared for another user's mailbox) with consent; add it to the app registration and sign in again"
    )]
    WritePermission {
        /// The target mailbox.
        mailbox: String,
        /// Graph's error code, e.g. `ErrorAccessDenied`.
        code: String,
        /// Graph's message.
        message: String,
    },
    /// Graph refused the access token, also after one refresh.
    #[error(
        "Graph refused the access token even after a refresh ({message}); log in again or check the app's permissions (Mail.Read, Mail.Read.Shared or Mail.Read application permission)"
    )]
    Unauthorized {
        /// Graph's message for the last refusal.
        message: String,
    },
    /// Graph refused the access token and no new one could be obtained without the user (the
    /// refresh token expired or was revoked, the password changed, the authority is down).
    #[error(
        "the access token was refused and a new one could not be obtained ({message}); sign in again"
    )]
    SignIn {
        /// Why no new token could be obtained.
        message: String,
    },
    /// The token source could not produce a token.
    #[error("cannot obtain an access token: {0}; sign in again")]
    Token(String),
    /// A transport failure (connection refused, TLS, timeout) that persisted through the retries.
    #[error("cannot reach Graph ({url}): {message}")]
    Transport {
        /// The request URL (without query secrets; Graph URLs carry none).
        url: String,
        /// What failed.
        message: String,
    },
    /// Graph sent something this crate cannot understand.
    #[error("unexpected answer from Graph for {url}: {reason}")]
    Protocol {
        /// The request URL.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file system of the backup folder refused a write for good: it is full, over quota,
    /// read-only, or the process may not write there. Retrying cannot help, so the mailbox
    /// stops at once (what was saved before is kept and complete).
    #[error(
        "{context}: {source}; the backup folder cannot take more data: free space (or fix its permissions or quota), then run again; what was saved is kept"
    )]
    Storage {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The folder an export writes into refused a write for good: it is full, over quota,
    /// read-only, or the process may not write there. The export stops; what it finished is
    /// complete, and a re-run writes those messages again in place (not twice).
    #[error(
        "{context}: {source}; the export folder cannot take more data: free space (or fix its permissions or quota, or give another --output folder), then run the export again; the messages already exported are complete and are replaced, not duplicated"
    )]
    ExportStorage {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The index failed (its backend's error is the source).
    #[error("backup index {location}: {source}")]
    Index {
        /// Where the index is (a file path, or a database address without credentials).
        location: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The run's total time limit was reached (typically under endless throttling).
    #[error(
        "the time limit of {}s was reached (Graph kept throttling or failing); what was saved is kept, run again later to continue",
        limit.as_secs()
    )]
    TimeLimit {
        /// The configured limit.
        limit: Duration,
    },
    /// A message store key that is not a clean relative key.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An object store (S3, Azure Blob, GCS) failed or refused a request.
    #[error("{context}: {source}{}", if *permanent {
        "; the store refuses this: check that the bucket (container) exists and that the credentials may read and write it (see --store in README.md), then run again; what was saved is kept"
    } else {
        ""
    })]
    ObjectStore {
        /// What was being done, with the object's URL.
        context: String,
        /// The `object_store` error.
        #[source]
        source: Box<object_store::Error>,
        /// Whether retrying cannot help (missing bucket, refused or missing credentials).
        permanent: bool,
    },
    /// The run was aborted through its cancellation token.
    #[error("the backup was aborted")]
    Aborted,
}

/// Disk full, quota, read-only file system, permission denied, file size limit: a write that
/// no retry can fix.
fn is_storage_refusal(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull
            | K::QuotaExceeded
            | K::ReadOnlyFilesystem
            | K::PermissionDenied
            | K::FileTooLarge
    )
}

impl Error {
    /// A local file error; the ones no retry can fix (disk full, quota, read-only file system,
    /// permission denied, file size limit) become [`Error::Storage`].
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        if is_storage_refusal(&source) {
            Error::Storage { context, source }
        } else {
            Error::Io { context, source }
        }
    }

    /// A failed write into an export's output folder: like [`Error::io`], but the errors no
    /// retry can fix become [`Error::ExportStorage`] (which names the export folder, not the
    /// backup).
    pub(crate) fn export_io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        if is_storage_refusal(&source) {
            Error::ExportStorage { context, source }
        } else {
            Error::Io { context, source }
        }
    }

    /// A failed durable write, classified like [`Error::io`].
    pub(crate) fn durable(e: durable_write::Error) -> Self {
        Error::io(e.context(), e.source)
    }

    /// An object store error; a missing bucket and refused or missing credentials are permanent.
    pub(crate) fn object_store(context: impl Into<String>, source: object_store::Error) -> Self {
        use object_store::Error as E;
        let text = source.to_string();
        let permanent = matches!(
            source,
            E::NotFound { .. } | E::PermissionDenied { .. } | E::Unauthenticated { .. }
        ) || [
            "NoSuchBucket",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ContainerNotFound",
            "AuthenticationFailed",
            "AuthorizationFailure",
            "AuthorizationPermissionMismatch",
            "credential",
        ]
        .iter()
        .any(|m| text.contains(m));
        Error::ObjectStore {
            context: context.into(),
            source: Box::new(source),
            permanent,
        }
    }

    /// Whether only signing in again can help (no token could be obtained or renewed).
    pub fn is_sign_in(&self) -> bool {
        matches!(self, Error::SignIn { .. } | Error::Token(_))
    }

    /// Whether retrying the same request later may succeed (server errors, transport failures).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Graph { status, .. } => *status >= 500 || *status == 408,
            Error::Transport { .. } | Error::Io { .. } => true,
            Error::ObjectStore { permanent, .. } => !permanent,
            _ => false,
        }
    }

    /// A short code for reports and the `message_error` hook (Graph's code, or a local one).
    pub fn code(&self) -> String {
        match self {
            Error::Graph { status, code, .. } => format!("{status} {code}"),
            Error::InvalidOption { .. } => "InvalidOption".into(),
            Error::Locked { .. } => "Locked".into(),
            Error::WorkerIdInUse { .. } => "WorkerIdInUse".into(),
            Error::Unauthorized { .. } => "Unauthorized".into(),
            Error::WritePermission { code, .. } => format!("403 {code}"),
            Error::SignIn { .. } => "SignInRequired".into(),
            Error::Token(_) => "TokenError".into(),
            Error::Transport { .. } => "TransportError".into(),
            Error::Protocol { .. } => "ProtocolError".into(),
            Error::Io { .. } => "IoError".into(),
            Error::Storage { .. } => "StorageError".into(),
            Error::ExportStorage { .. } => "ExportStorageError".into(),
            Error::Index { .. } => "IndexError".into(),
            Error::InvalidKey { .. } => "InvalidKey".into(),
            Error::TimeLimit { .. } => "TimeLimit".into(),
            Error::ObjectStore { .. } => "ObjectStoreError".into(),
            Error::Aborted => "Aborted".into(),
        }
    }

    /// Errors after which the mailbox cannot go on (as opposed to one message failing).
    pub(crate) fn is_fatal_for_mailbox(&self) -> bool {
        matches!(
            self,
            Error::Unauthorized { .. }
                | Error::WritePermission { .. }
                | Error::SignIn { .. }
                | Error::Token(_)
                | Error::TimeLimit { .. }
                | Error::Aborted
                | Error::Index { .. }
                | Error::Storage { .. }
                | Error::ObjectStore {
                    permanent: true,
                    ..
                }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn storage_errors_are_fatal_and_say_what_to_do() {
        for kind in [
            ErrorKind::StorageFull,
            ErrorKind::QuotaExceeded,
            ErrorKind::ReadOnlyFilesystem,
            ErrorKind::PermissionDenied,
            ErrorKind::FileTooLarge,
        ] {
            let e = Error::io("cannot write /b/x.eml", kind.into());
            assert!(matches!(e, Error::Storage { .. }), "{kind:?}");
            assert!(e.is_fatal_for_mailbox() && !e.is_transient());
            assert_eq!(e.code(), "StorageError");
            assert!(e.to_string().contains("free space"), "{e}");
        }
        let full = Error::io(
            "cannot write /b/x.eml",
            std::io::Error::from_raw_os_error(28),
        );
        assert!(
            full.to_string()
                .starts_with("cannot write /b/x.eml: No space left on device"),
            "{full}"
        );
        let other = Error::io("cannot read /b/x.eml", ErrorKind::InvalidData.into());
        assert!(matches!(other, Error::Io { .. }) && other.is_transient());
    }

    #[test]
    fn azure_refusing_the_key_stops_the_mailbox_and_says_what_to_check() {
        for code in [
            "AuthenticationFailed",
            "AuthorizationFailure",
            "AuthorizationPermissionMismatch",
        ] {
            let source = object_store::Error::Generic {
                store: "MicrosoftAzure",
                source: format!("403 Forbidden: <Code>{code}</Code>").into(),
            };
            let e = Error::object_store("cannot write az://c/x.eml", source);
            assert!(e.is_fatal_for_mailbox() && !e.is_transient(), "{code}");
            assert!(e.to_string().contains("check that the bucket"), "{e}");
        }
    }

    #[test]
    fn a_full_export_folder_is_named_as_such_with_what_to_do() {
        let e = Error::export_io(
            "cannot export k.eml to /out/me/Inbox/tmp/k",
            std::io::Error::from_raw_os_error(28),
        );
        assert!(matches!(e, Error::ExportStorage { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("cannot export k.eml to /out/me/Inbox/tmp/k: No space left on device")
                && text.contains("the export folder cannot take more data: free space")
                && text.contains("run the export again")
                && !text.contains("backup folder"),
            "{text}"
        );
        let other = Error::export_io("cannot export k.eml", ErrorKind::InvalidData.into());
        assert!(matches!(other, Error::Io { .. }));
    }
}
