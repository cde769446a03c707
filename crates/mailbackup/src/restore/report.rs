//! [`RestoreReport`]: what a restore did, message by message counts and failures.

use super::*;

/// What a restore did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RestoreReport {
    /// Source mailbox key.
    pub source: String,
    /// Target mailbox.
    pub target: String,
    /// Messages selected.
    pub selected: u64,
    /// Messages created by this run.
    pub restored: u64,
    /// Messages an interrupted run had created, found and recorded (not created again).
    pub adopted: u64,
    /// Messages already restored by an earlier run (nothing done).
    pub already_restored: u64,
    /// Restored messages that are drafts (MIME mode).
    pub drafts: u64,
    /// Messages over the MIME size limit created from JSON instead.
    pub mime_fallbacks: u64,
    /// Folders created.
    pub folders_created: u64,
    /// Messages that failed (Graph id, code, object key and error).
    pub failed: Vec<FailedMessage>,
    /// The run was aborted (Ctrl-C) or stopped by an error for the whole mailbox.
    pub stopped: Option<String>,
    /// HTTP requests sent.
    pub requests: u64,
    /// 429/503 answers.
    pub throttled: u64,
    /// Duration.
    pub elapsed: Duration,
}

impl RestoreReport {
    /// Every selected message is in the target and the run was not stopped.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.stopped.is_none()
    }
}
