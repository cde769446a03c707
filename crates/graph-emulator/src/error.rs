//! Errors of the emulator's library API (configuration and mutation hooks).
//!
//! Errors sent to HTTP clients are not Rust errors: they are Graph or OAuth error bodies built
//! in `graph.rs` and `identity.rs`.

/// Error of an emulator API call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The configuration is inconsistent.
    #[error("invalid emulator configuration: {0}")]
    InvalidConfig(String),
    /// No mailbox for this user.
    #[error("no mailbox for user '{0}' (configured mailboxes: {1})")]
    UnknownMailbox(String, String),
    /// The folder does not exist in the mailbox.
    #[error(
        "mailbox '{mailbox}' has no folder '{folder}' (use a folder id, a well-known name such as 'inbox', or a display-name path such as 'Inbox/Projects')"
    )]
    UnknownFolder {
        /// User principal name of the mailbox.
        mailbox: String,
        /// The folder as given.
        folder: String,
    },
    /// The message does not exist (never existed, was deleted, or the id is a REST id from
    /// before a move).
    #[error("mailbox '{mailbox}' has no message with id '{id}'")]
    UnknownMessage {
        /// User principal name of the mailbox.
        mailbox: String,
        /// The id as given.
        id: String,
    },
    /// Messages cannot be created in or moved into a search folder.
    #[error("folder '{0}' is a search folder; it cannot hold messages of its own")]
    SearchFolder(String),
    /// The root and well-known folders cannot be deleted (nor the root renamed).
    #[error("folder '{0}' is the root or a well-known folder; Exchange does not allow this change")]
    ProtectedFolder(String),
    /// The device code is unknown.
    #[error("no device code with user code '{0}'")]
    UnknownDeviceCode(String),
}
