//! The outbound queue and the alerts of the gateway (issue #11 §2 and §5), as journal rows:
//! the domain types the [`Journal`](super::Journal) queue and alert operations take and
//! return, and the state machine of a queued file ([`QueueState::check_transition`], pure).
//!
//! A file taken over from an outbox is [`enqueue`](super::Journal::enqueue)d in state
//! [`Queued`](QueueState::Queued); a call [`claim`](super::Journal::claim_due)s the due
//! files of its partner ([`InTransfer`](QueueState::InTransfer)) and reports each outcome with
//! a [`transition`](super::Journal::transition). The operator lists, shows, retries and
//! cancels rows by id. Every change of state is kept as a [`Transition`] with its time.
//!
//! Times are the caller's (a clock the caller controls) and are kept to the millisecond.

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use oftp_proto::codec::FileFormat;

use super::FileKey;
use crate::identity::OdetteId;

/// Where a queued outgoing file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueState {
    /// Waiting for a call (due at its next attempt time).
    Queued,
    /// Claimed by a call that is sending it.
    InTransfer,
    /// The partner confirmed it with EFPA; waiting for the EERP/NERP.
    Sent,
    /// The EERP arrived. Terminal.
    Delivered,
    /// A NERP arrived; the file is kept (the operator may retry).
    NotDelivered,
    /// The partner refused it for good (SFNA with retry N, or EFNA); the operator may retry.
    Rejected,
    /// A failure that is not retried, or the retry limits were reached; the operator may
    /// retry.
    Failed,
    /// The operator cancelled it before it was sent. Terminal.
    Cancelled,
}

impl QueueState {
    /// Every state.
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::InTransfer,
        Self::Sent,
        Self::Delivered,
        Self::NotDelivered,
        Self::Rejected,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The stored (and displayed) name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InTransfer => "in_transfer",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::NotDelivered => "not_delivered",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state of a stored name (`oftp transfers --state` uses the same names).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// No transition leaves this state: the source file can be archived.
    pub fn is_terminal(self) -> bool {
        Self::ALL.into_iter().all(|to| !self.allows(to))
    }

    /// Whether a row in state `self` may move to `to`:
    ///
    /// | from | to |
    /// |---|---|
    /// | queued | in transfer (claimed), queued (retried now), failed (limits reached), cancelled |
    /// | in transfer | queued (retried later, or a daemon restart), sent, delivered, not delivered, rejected, failed |
    /// | sent | delivered (EERP), not delivered (NERP) |
    /// | not delivered, rejected, failed | queued (operator retry), cancelled |
    /// | delivered, cancelled | nothing |
    ///
    /// A file in transfer cannot be cancelled (the call has it) and one sent cannot be queued
    /// again (that would send it twice).
    pub fn allows(self, to: Self) -> bool {
        use QueueState::*;
        match self {
            Queued => matches!(to, InTransfer | Queued | Failed | Cancelled),
            InTransfer => matches!(
                to,
                Queued | Sent | Delivered | NotDelivered | Rejected | Failed
            ),
            Sent => matches!(to, Delivered | NotDelivered),
            NotDelivered | Rejected | Failed => matches!(to, Queued | Cancelled),
            Delivered | Cancelled => false,
        }
    }

    /// [`allows`](Self::allows) as a result naming the refused transition.
    pub fn check_transition(self, to: Self) -> Result<(), TransitionRefused> {
        if self.allows(to) {
            Ok(())
        } else {
            Err(TransitionRefused { from: self, to })
        }
    }
}

impl fmt::Display for QueueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} file cannot become {to}")]
pub struct TransitionRefused {
    /// The row's state.
    pub from: QueueState,
    /// The state asked for.
    pub to: QueueState,
}

/// What a send of a queued file needs, as given when it is enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSend {
    /// The partner it goes to (the configured name).
    pub partner: String,
    /// The taken-over file (`<queue>/<id>/<name>`); with the partner, what makes enqueueing
    /// idempotent.
    pub source_path: PathBuf,
    /// SFIDDSN.
    pub virtual_file_name: String,
    /// SFIDDEST; `None` = the partner's SFID.
    pub destination: Option<OdetteId>,
    /// SFIDORIG; `None` = our SFID.
    pub originator: Option<OdetteId>,
    /// SFIDFMT.
    pub format: FileFormat,
    /// SFIDLRECL for F and V files (0 otherwise).
    pub max_record_len: u32,
    /// SFIDUSER.
    pub user_data: String,
    /// SFIDDESC.
    pub description: String,
}

/// A row of the outbound queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedFile {
    /// Row id (positive, never reused).
    pub id: i64,
    /// What to send.
    pub send: QueuedSend,
    /// Where it is.
    pub state: QueueState,
    /// Calls that claimed it so far.
    pub attempts: u32,
    /// The error of the last failed attempt (kept until the next one fails).
    pub last_error: Option<String>,
    /// The wire identity it was (last) offered under, once a call recorded one.
    pub key: Option<FileKey>,
    /// When it was enqueued.
    pub queued_at: DateTime<Utc>,
    /// When it is due (meaningful while queued).
    pub next_attempt_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A change of state asked of [`transition`](super::Journal::transition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueChange {
    /// The new state.
    pub to: QueueState,
    /// When.
    pub at: DateTime<Utc>,
    /// For a failure: its text (becomes `last_error` and the transition's note).
    pub error: Option<String>,
    /// Otherwise why, for the history (e.g. "cancelled by the operator").
    pub note: Option<String>,
    /// For `to` = queued: when it is due (`None` = at once, `at`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The wire identity the file was offered under, if the call knows it (kept when `None`).
    pub key: Option<FileKey>,
}

impl QueueChange {
    /// A change to `to` at `at` with nothing else.
    pub fn to(to: QueueState, at: DateTime<Utc>) -> Self {
        Self {
            to,
            at,
            error: None,
            note: None,
            next_attempt_at: None,
            key: None,
        }
    }

    /// With the error of a failed attempt.
    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// With a note for the history.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// With the time the file is next due (for `to` = queued).
    pub fn due_at(mut self, at: DateTime<Utc>) -> Self {
        self.next_attempt_at = Some(at);
        self
    }

    /// With the wire identity the file was offered under.
    pub fn key(mut self, key: FileKey) -> Self {
        self.key = Some(key);
        self
    }

    /// What the history keeps of this change: the error, else the note.
    pub(crate) fn history_note(&self) -> Option<&str> {
        self.error.as_deref().or(self.note.as_deref())
    }
}

/// One change of state of a queued file, kept for `oftp transfer show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// When.
    pub at: DateTime<Utc>,
    /// The state before (`None` for the enqueueing).
    pub from: Option<QueueState>,
    /// The state after.
    pub to: QueueState,
    /// Why (an error text, the operator, a restart), if anyone said.
    pub note: Option<String>,
}

/// A queued file with its history, oldest transition first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferDetail {
    /// The row.
    pub file: QueuedFile,
    /// Every transition, oldest first (the first is the enqueueing).
    pub history: Vec<Transition>,
}

/// Which rows [`transfers`](super::Journal::transfers) lists: all filters must match; newest
/// (highest id) first, at most `limit`, below `before_id` (the id of the last row of the
/// previous page) if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFilter {
    /// Only this partner's.
    pub partner: Option<String>,
    /// Only rows in this state.
    pub state: Option<QueueState>,
    /// Only rows that changed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows with a smaller id (paging).
    pub before_id: Option<i64>,
    /// At most this many rows.
    pub limit: u32,
}

impl Default for TransferFilter {
    fn default() -> Self {
        Self {
            partner: None,
            state: None,
            since: None,
            before_id: None,
            limit: 100,
        }
    }
}

/// What an alert is about (#11 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A file went to failed or rejected.
    FileFailed,
    /// A NERP arrived.
    NotDelivered,
    /// No EERP within the partner's `eerp_timeout`.
    EerpOverdue,
    /// The partner could not be reached for a number of attempts.
    PartnerUnreachable,
    /// The `on_receive` command failed.
    PostProcessingFailed,
    /// Our certificate or a partner's expires soon.
    CertificateExpiring,
    /// Disk space is low in the data directory.
    DiskSpaceLow,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [Self; 7] = [
        Self::FileFailed,
        Self::NotDelivered,
        Self::EerpOverdue,
        Self::PartnerUnreachable,
        Self::PostProcessingFailed,
        Self::CertificateExpiring,
        Self::DiskSpaceLow,
    ];

    /// The stored (and displayed) name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FileFailed => "file_failed",
            Self::NotDelivered => "not_delivered",
            Self::EerpOverdue => "eerp_overdue",
            Self::PartnerUnreachable => "partner_unreachable",
            Self::PostProcessingFailed => "post_processing_failed",
            Self::CertificateExpiring => "certificate_expiring",
            Self::DiskSpaceLow => "disk_space_low",
        }
    }

    /// The kind of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }
}

/// An alert to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// What it is about.
    pub kind: AlertKind,
    /// The partner concerned, if one is.
    pub partner: Option<String>,
    /// The file concerned, if one is (a path or a virtual file name).
    pub file: Option<String>,
    /// What happened and what to do, for a person.
    pub text: String,
}

/// An alert row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Row id (positive, never reused).
    pub id: i64,
    /// What was raised.
    pub alert: NewAlert,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
    /// When a person acknowledged it (`None` = open).
    pub acknowledged_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::QueueState::*;
    use super::*;

    #[test]
    fn stored_names_of_states_and_alert_kinds_round_trip() {
        for state in QueueState::ALL {
            assert_eq!(QueueState::parse(state.as_str()), Some(state));
        }
        for kind in AlertKind::ALL {
            assert_eq!(AlertKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(QueueState::parse("shipped"), None);
        assert_eq!(AlertKind::parse("bored"), None);
        assert_eq!(NotDelivered.to_string(), "not delivered");
    }

    #[test]
    fn delivered_and_cancelled_are_the_only_terminal_states() {
        let terminal: Vec<_> = QueueState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, [Delivered, Cancelled]);
    }

    #[test]
    fn only_a_queued_file_can_be_claimed() {
        for from in QueueState::ALL {
            assert_eq!(
                from.allows(InTransfer),
                from == Queued,
                "{from} -> in transfer"
            );
        }
    }

    #[test]
    fn a_file_in_transfer_or_sent_cannot_be_cancelled_or_queued_again_after_efpa() {
        assert_eq!(
            InTransfer.check_transition(Cancelled),
            Err(TransitionRefused {
                from: InTransfer,
                to: Cancelled
            })
        );
        assert!(!Sent.allows(Cancelled));
        assert!(
            !Sent.allows(Queued),
            "queuing a sent file would send it twice"
        );
        assert!(Sent.allows(Delivered) && Sent.allows(NotDelivered));
    }

    #[test]
    fn the_outcomes_of_a_transfer_are_all_allowed_from_in_transfer() {
        for to in [Queued, Sent, Delivered, NotDelivered, Rejected, Failed] {
            assert_eq!(
                InTransfer.check_transition(to),
                Ok(()),
                "in transfer -> {to}"
            );
        }
    }

    #[test]
    fn a_settled_failure_can_be_retried_or_cancelled_by_the_operator() {
        for from in [NotDelivered, Rejected, Failed] {
            assert!(from.allows(Queued) && from.allows(Cancelled), "{from}");
            assert!(
                !from.allows(InTransfer),
                "{from} must be queued before a claim"
            );
        }
        assert!(
            Queued.allows(Queued),
            "retrying a queued file makes it due now"
        );
    }

    #[test]
    fn the_refusal_says_both_states() {
        let e = Delivered.check_transition(Queued).unwrap_err();
        assert_eq!(e.to_string(), "a delivered file cannot become queued");
    }
}
