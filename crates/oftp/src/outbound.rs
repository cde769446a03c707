//! [`OutboundQueue`]: the seam through which a [`Server`](crate::Server) offers a calling
//! partner the files of an outbound queue (the gateway's, issue #11) instead of scanning the
//! partner's outbox directory.
//!
//! The connection stays a driver: at its first turn in a session in which it may send, it asks
//! the queue for the partner's due files ([`OutboundQueue::claim`]), sends them like any other
//! file (the journal's send record keeps the identity of an interrupted attempt, so the next
//! one restarts it), and reports what became of each ([`OutboundQueue::settle`] with a
//! [`QueueOutcome`]). What a failure means (retry later, rejected, failed, an alert) is the
//! queue's decision: the gateway's retry policy, from the same outcome types a client call
//! reports. A file stored by the partner (EFPA) is settled at once, so its EERP or NERP,
//! whenever and in whichever session it arrives, finds the row in state sent and settles it in
//! the journal ([`Journal::record_end_response`](crate::journal::Journal::record_end_response)).
//!
//! Without a queue (library users, the responder role of `oftp send`) the server scans the
//! outbox as before.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::client::FileOutcome;
use crate::handler::Disconnected;
use crate::journal::{FileKey, JournalError, QueueChange, QueueState, QueuedFile};

/// An outbound queue a server offers calling partners from. Its methods are synchronous (like
/// the journal's, which an implementation uses) and run on the blocking pool.
pub trait OutboundQueue: fmt::Debug + Send + Sync + 'static {
    /// Claims the files due now for `partner` (its configured name), to offer in a session
    /// with it in which we may send. Each returned row is in transfer and belongs to the
    /// session until settled.
    fn claim(&self, partner: &str) -> Result<Vec<QueuedFile>, JournalError>;

    /// Records what became of `file` (a row as [`claim`](Self::claim) returned it). Every
    /// claimed row is settled once, by the end of the session at the latest.
    fn settle(&self, file: &QueuedFile, outcome: &QueueOutcome) -> Result<(), JournalError>;
}

/// What became of a claimed file in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueOutcome {
    /// The partner stored it under this identity (EFPA, or SFNA 13 for the identity of an
    /// earlier attempt: it had that attempt already): to sent. Its EERP or NERP settles the
    /// row later, in the journal.
    Sent(FileKey),
    /// The journal's send record says its EERP arrived already (sent under this identity
    /// earlier): to delivered.
    Delivered(FileKey),
    /// Never offered: the session ended first (how: `ended`). To queued again, due now; an
    /// earlier attempt's restart position stays in the journal.
    NotOffered(Disconnected),
    /// Offered and not stored: refused (SFNA, EFNA), cut off (the session ended during its
    /// transfer), or it could not be sent (a local problem with the file). `outcome` and
    /// `ended` are what a client call reports for a file, so the gateway's retry policy
    /// decides as for its own calls: queued later, rejected or failed.
    Failed {
        /// The file's outcome (`Rejected`, `Refused` or `NotSent`).
        outcome: FileOutcome,
        /// How the session ended.
        ended: Disconnected,
        /// The identity it was offered under, if it got that far.
        key: Option<FileKey>,
    },
}

impl QueueOutcome {
    /// The transition of an outcome that needs no retry policy, at `at`: sent and delivered
    /// with their identity, a file never offered back to queued (due at `at`). `None` for
    /// [`Failed`](Self::Failed), which the queue's policy decides.
    pub fn fixed_change(&self, at: DateTime<Utc>) -> Option<QueueChange> {
        match self {
            Self::Sent(key) => Some(QueueChange::to(QueueState::Sent, at).key(key.clone())),
            Self::Delivered(key) => {
                Some(QueueChange::to(QueueState::Delivered, at).key(key.clone()))
            }
            Self::NotOffered(ended) => Some(QueueChange::to(QueueState::Queued, at).note(format!(
                "not offered: the session ended first ({})",
                ended.description
            ))),
            Self::Failed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::{FileStamp, FileStampExt};

    #[test]
    fn outcomes_without_a_policy_have_a_fixed_transition() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        let key = FileKey::new(
            crate::identity::OdetteId::new("ME").unwrap(),
            "INVOICE",
            FileStamp::now(),
        );
        let sent = QueueOutcome::Sent(key.clone()).fixed_change(at).unwrap();
        assert_eq!((sent.to, sent.key.as_ref()), (QueueState::Sent, Some(&key)));
        let delivered = QueueOutcome::Delivered(key.clone())
            .fixed_change(at)
            .unwrap();
        assert_eq!(delivered.to, QueueState::Delivered);
        let ended = Disconnected {
            reason: None,
            by_peer: true,
            description: "connection closed".into(),
        };
        let back = QueueOutcome::NotOffered(ended.clone())
            .fixed_change(at)
            .unwrap();
        assert_eq!((back.to, back.next_attempt_at), (QueueState::Queued, None));
        assert_eq!(
            back.note.as_deref(),
            Some("not offered: the session ended first (connection closed)")
        );
        let failed = QueueOutcome::Failed {
            outcome: FileOutcome::NotSent {
                reason: "cut".into(),
            },
            ended,
            key: None,
        };
        assert_eq!(
            failed.fixed_change(at),
            None,
            "the policy decides a failure"
        );
    }
}
