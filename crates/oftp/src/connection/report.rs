//! What a connection reports when it ends: the outcome of each file the initiator was asked to
//! send ([`FileOutcome`]), end responses for files of earlier runs ([`EarlierEndResponse`]),
//! and the [`ConnectionReport`] the server and client read. Plain data; nothing here does I/O.

use std::path::PathBuf;

use oftp_proto::codec::EfnaReason;
use oftp_proto::session::Negotiated;

use crate::handle::OutgoingFile;
use crate::handler::{Disconnected, EndResponse};

/// Outcome of one file the initiator was asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// EERP received: the partner has the file.
    Delivered,
    /// NERP received.
    NotDelivered {
        /// NERP reason.
        reason: oftp_proto::codec::NerpReason,
        /// NERP text.
        text: String,
    },
    /// EFPA received but no EERP yet (it may come in a later session).
    AwaitingEndResponse,
    /// SFNA: the partner refused the file.
    Rejected {
        /// SFNA reason.
        reason: oftp_proto::codec::SfnaReason,
        /// Whether the partner invites a retry later.
        retry: bool,
        /// SFNA text.
        text: String,
    },
    /// EFNA: the partner refused the file after the transfer.
    Refused {
        /// EFNA reason.
        reason: EfnaReason,
        /// EFNA text.
        text: String,
    },
    /// An EERP/NERP arrived but was not accepted (missing or invalid signature, wrong file
    /// hash); the file still awaits a valid end response.
    EndResponseRejected {
        /// Why.
        text: String,
    },
    /// Not sent (local error, session ended first, ...).
    NotSent {
        /// Why.
        reason: String,
    },
}

impl FileOutcome {
    /// Whether the partner confirmed delivery end to end.
    pub fn is_delivered(&self) -> bool {
        matches!(self, FileOutcome::Delivered)
    }

    /// A file of this run that the end of the session (`ended`) cut off `at` a step: not sent,
    /// saying at which step and whether sending it again restarts it.
    pub(super) fn cut(at: CutAt, ended: &Disconnected) -> Self {
        let how = match (ended.reason, ended.by_peer) {
            (Some(_), true) => format!("the partner ended the session: {}", ended.description),
            (Some(_), false) => format!("we ended the session: {}", ended.description),
            (None, _) => ended.description.clone(),
        };
        let reason = match at {
            CutAt::Confirmation => format!(
                "sent to the end (EFID), but not confirmed (no EFPA): {how}; \
                 sending it again restarts it"
            ),
            CutAt::Transfer => format!("transfer cut: {how}; sending it again restarts it"),
            CutAt::Offer => format!("offered (SFID), but the partner did not accept it: {how}"),
            CutAt::Queue => format!(
                "not offered: the session ended first: {}",
                ended.description
            ),
        };
        FileOutcome::NotSent { reason }
    }
}

/// How far a file of this run had come when the session ended (see [`FileOutcome::cut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CutAt {
    /// Still queued: never offered.
    Queue,
    /// Offered (SFID), not accepted yet.
    Offer,
    /// Accepted; its data was being sent.
    Transfer,
    /// Sent to the end (EFID); its EFPA did not arrive.
    Confirmation,
}

/// An EERP/NERP that settled no file of this run: it answers a file sent in an earlier run
/// (whose journal entry it settled all the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierEndResponse {
    /// The local file the journal says was sent under that identity, if it knows one.
    pub local_file: Option<PathBuf>,
    /// The response.
    pub response: EndResponse,
}

/// What a connection reports when it ends.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionReport {
    pub(crate) negotiated: Option<Negotiated>,
    /// The session got past login: the SSID exchange and, when used, secure authentication.
    pub(crate) logged_in: bool,
    pub(crate) outcomes: Vec<(OutgoingFile, FileOutcome)>,
    pub(crate) earlier: Vec<EarlierEndResponse>,
    pub(crate) received: Vec<PathBuf>,
    pub(crate) ended: Disconnected,
}

#[cfg(test)]
mod tests {
    use oftp_proto::codec::EsidReason;

    use super::*;

    fn reason(o: FileOutcome) -> String {
        match o {
            FileOutcome::NotSent { reason } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cut_file_says_at_which_step_and_who_ended_the_session() {
        let by_peer = Disconnected {
            reason: Some(EsidReason::TIME_OUT),
            by_peer: true,
            description: "Time out (ESID 09)".into(),
        };
        assert_eq!(
            reason(FileOutcome::cut(CutAt::Confirmation, &by_peer)),
            "sent to the end (EFID), but not confirmed (no EFPA): the partner ended the \
             session: Time out (ESID 09); sending it again restarts it"
        );
        let by_us = Disconnected {
            by_peer: false,
            ..by_peer.clone()
        };
        assert_eq!(
            reason(FileOutcome::cut(CutAt::Transfer, &by_us)),
            "transfer cut: we ended the session: Time out (ESID 09); sending it again restarts it"
        );
        let closed = Disconnected {
            reason: None,
            by_peer: true,
            description: "connection closed".into(),
        };
        assert_eq!(
            reason(FileOutcome::cut(CutAt::Offer, &closed)),
            "offered (SFID), but the partner did not accept it: connection closed"
        );
        assert_eq!(
            reason(FileOutcome::cut(CutAt::Queue, &by_peer)),
            "not offered: the session ended first: Time out (ESID 09)"
        );
    }
}
