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
