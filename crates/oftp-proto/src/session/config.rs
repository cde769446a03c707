//! Session configuration, negotiation result, events and errors.

use std::time::Duration;

use crate::codec::{
    Eerp, EfnaReason, EncodeError, EsidReason, Nerp, Password, ProtocolLevel, SessionMode, Sfid,
    SfnaReason, Ssid,
};
use crate::data::DataError;

/// Default inactivity timeout (RFC 5024 leaves the value to implementations;
/// 60 s is the common default).
pub const DEFAULT_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(60);

/// What this location offers in its SSID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Highest protocol level spoken (the lower of the two SSIDs is used).
    pub max_level: ProtocolLevel,
    /// Largest DATA exchange buffer accepted, 128..=99999 (the lower wins).
    pub buffer_size: u32,
    /// Credit window, 1..=999 (the responder answers at most the initiator's).
    pub credit: u16,
    /// Buffer compression supported (used only if both say yes).
    pub compression: bool,
    /// Restart supported (used only if both say yes).
    pub restart: bool,
    /// Send, receive or both.
    pub mode: SessionMode,
    /// Secure authentication required (2.0 only; both sides must agree).
    pub secure_auth: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            max_level: ProtocolLevel::V2_0,
            buffer_size: 4096,
            credit: 64,
            compression: false,
            restart: true,
            mode: SessionMode::Both,
            secure_auth: false,
        }
    }
}

impl Capabilities {
    pub(crate) fn validate(&self) -> Result<(), UsageError> {
        if !(128..=99_999).contains(&self.buffer_size) {
            return Err(UsageError::Config(format!(
                "buffer size {} is outside 128..=99999",
                self.buffer_size
            )));
        }
        if !(1..=999).contains(&self.credit) {
            return Err(UsageError::Config(format!(
                "credit {} is outside 1..=999",
                self.credit
            )));
        }
        if !self.max_level.is_known() {
            return Err(UsageError::Config(format!(
                "protocol level {} is not one of 1, 2, 4, 5",
                self.max_level.0
            )));
        }
        if self.secure_auth && !self.max_level.is_v2() {
            return Err(UsageError::Config(
                "secure authentication needs protocol level 5 (ODETTE-FTP 2.0)".into(),
            ));
        }
        Ok(())
    }
}

/// Configuration of the calling side.
#[derive(Clone, Debug)]
pub struct InitiatorConfig {
    /// Our identification code (SSIDCODE).
    pub ssid_code: String,
    /// Our password (SSIDPSWD).
    pub password: Password,
    /// SSID user data.
    pub user_data: String,
    /// What we offer.
    pub capabilities: Capabilities,
    /// If set, the responder's SSIDCODE must equal it, else ESID 03.
    pub expected_peer_code: Option<String>,
    /// If set, the responder's SSIDPSWD must equal it, else ESID 04.
    pub expected_peer_password: Option<Password>,
    /// End the session with ESID 09 after this long without the peer answering.
    pub inactivity_timeout: Duration,
}

impl InitiatorConfig {
    /// A configuration with default capabilities and timeout.
    pub fn new(ssid_code: impl Into<String>, password: Password) -> Self {
        InitiatorConfig {
            ssid_code: ssid_code.into(),
            password,
            user_data: String::new(),
            capabilities: Capabilities::default(),
            expected_peer_code: None,
            expected_peer_password: None,
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
        }
    }
}

/// Configuration of the called side before it knows who is calling.
#[derive(Clone, Debug)]
pub struct ResponderConfig {
    /// End the session with ESID 09 after this long without the peer answering.
    pub inactivity_timeout: Duration,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        ResponderConfig {
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
        }
    }
}

/// The responder's answer to an SSID, given to
/// [`Session::accept_session`](super::Session::accept_session) once the
/// application has checked the caller's code and password: it can pick the
/// identity and capabilities per partner.
#[derive(Clone, Debug)]
pub struct ResponderParams {
    /// Our identification code (SSIDCODE).
    pub ssid_code: String,
    /// Our password (SSIDPSWD).
    pub password: Password,
    /// SSID user data.
    pub user_data: String,
    /// What we offer; buffer size, credit, level, compression and restart are
    /// lowered to the caller's values where the caller offers less.
    pub capabilities: Capabilities,
}

/// The session parameters both sides agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Protocol level in use (the lower of the two).
    pub level: ProtocolLevel,
    /// DATA exchange buffer size in use (the lower of the two).
    pub buffer_size: u32,
    /// Credit window in use.
    pub credit: u16,
    /// Buffer compression in use (both said yes).
    pub compression: bool,
    /// Restart in use (both said yes).
    pub restart: bool,
    /// Secure authentication in use.
    pub secure_auth: bool,
    /// Whether we may send files in this session (we can send, the peer can receive).
    pub can_send: bool,
    /// Whether we may receive files in this session.
    pub can_receive: bool,
    /// The peer's SSID as received (its password is redacted in `Debug`).
    pub peer: Ssid,
}

/// A file this side offers: the SFID to send. Its `restart_position` asks to
/// resume (records for F/V, 1 KiB blocks for U/T).
pub type OutgoingFile = Sfid;

/// An end-to-end response: EERP (delivered) or NERP (not delivered, levels 4
/// and 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndResponse {
    /// EERP.
    Positive(Eerp),
    /// NERP.
    Negative(Nerp),
}

/// Something that happened in the session. Events that need a decision name
/// the method to call; the session waits for it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Responder: the caller's SSID arrived. Check its code and password, then
    /// call [`accept_session`](super::Session::accept_session) or
    /// [`reject_session`](super::Session::reject_session) (ESID 03/04/08...).
    SsidReceived {
        /// The caller's SSID.
        peer: Ssid,
    },
    /// Both SSIDs were exchanged and the parameters agreed.
    SessionEstablished {
        /// The agreed parameters.
        negotiated: Negotiated,
    },
    /// Secure authentication: the peer sent its challenge. Decrypt the CMS
    /// envelope and call [`answer_challenge`](super::Session::answer_challenge).
    AuthChallengeReceived {
        /// The CMS EnvelopedData (AUCHCHAL).
        challenge: Vec<u8>,
    },
    /// Secure authentication: it is our turn to challenge the peer. Envelope 20
    /// random octets to the peer's certificate and call
    /// [`send_challenge`](super::Session::send_challenge).
    AuthChallengeRequested,
    /// Secure authentication completed in both directions.
    Authenticated,
    /// A command was sent (audit trail; DATA buffers are not reported).
    CommandSent {
        /// RFC command name.
        name: &'static str,
        /// One-line summary without secrets.
        summary: String,
    },
    /// A command was received (audit trail; DATA buffers are not reported).
    CommandReceived {
        /// RFC command name.
        name: &'static str,
        /// One-line summary without secrets.
        summary: String,
    },
    /// We are the speaker and idle: call
    /// [`send_file`](super::Session::send_file),
    /// [`send_end_response`](super::Session::send_end_response),
    /// [`change_direction`](super::Session::change_direction) (if
    /// `may_change_direction`) or [`end_session`](super::Session::end_session)
    /// (with reason 00 only if `may_end_session`).
    ReadyToSend {
        /// The peer just gave us the turn with an unsolicited CD: it has
        /// nothing more to send, so a normal end (ESID 00) is allowed now and
        /// handing the turn back is not (RFC 5024 3.3.4.2 rule 4, 3.4.1).
        may_end_session: bool,
        /// Whether [`change_direction`](super::Session::change_direction) is allowed.
        may_change_direction: bool,
    },
    /// The peer offers a file (SFID). Call
    /// [`accept_file`](super::Session::accept_file) or
    /// [`reject_file`](super::Session::reject_file).
    FileOffered {
        /// The peer's SFID.
        sfid: Sfid,
    },
    /// File data arrived, in record order.
    DataReceived {
        /// Record bytes (decompressed).
        bytes: Vec<u8>,
        /// The record ends here (for U/T files: the file ends here).
        end_of_record: bool,
    },
    /// The peer ended the file (EFID). Make the data durable, then call
    /// [`confirm_file`](super::Session::confirm_file) or
    /// [`refuse_file`](super::Session::refuse_file).
    FileEnded {
        /// Records in the whole file according to the peer (F/V).
        record_count: u64,
        /// Octets in the whole file according to the peer.
        unit_count: u64,
        /// Records received in this session (after the restart position).
        received_records: u64,
        /// Octets received in this session (after the restart position).
        received_units: u64,
        /// The restart position this transfer started from.
        restart_position: u64,
        /// A record broke the SFIDLRECL rule (a reason to refuse with EFNA 05).
        record_length_violation: Option<DataError>,
    },
    /// Our SFID was accepted (SFPA). Seek to `restart_position` (records for
    /// F/V, 1 KiB blocks for U/T), then feed data with
    /// [`write_data`](super::Session::write_data) while
    /// [`can_accept_data`](super::Session::can_accept_data), and call
    /// [`finish_file`](super::Session::finish_file).
    FileAccepted {
        /// Position to resume from, at most the one we asked for.
        restart_position: u64,
    },
    /// Credit arrived (CDT): [`write_data`](super::Session::write_data) may go on.
    ReadyForData,
    /// Our SFID was refused (SFNA).
    FileRejected {
        /// Reason.
        reason: SfnaReason,
        /// Whether the peer invites a retry later.
        retry: bool,
        /// Reason text (2.0).
        text: String,
    },
    /// Our file was confirmed (EFPA). If `change_direction`, the session has
    /// already sent the CD the peer asked for and we are now the listener.
    FileConfirmed {
        /// The peer asked for the turn.
        change_direction: bool,
    },
    /// Our file was refused after transfer (EFNA).
    FileRefused {
        /// Reason.
        reason: EfnaReason,
        /// Reason text (2.0).
        text: String,
    },
    /// An EERP or NERP arrived; the session has answered RTR.
    EndResponseReceived(EndResponse),
    /// The peer acknowledged our EERP/NERP with RTR.
    EndResponseAcknowledged,
    /// The session is over. After this, drain
    /// [`poll_transmit`](super::Session::poll_transmit) and close the transport.
    SessionEnded {
        /// ESID reason (sent or received).
        reason: EsidReason,
        /// ESID reason text.
        text: String,
        /// Whether the peer ended it (ESID received or connection lost).
        by_peer: bool,
    },
}

/// A session method was called at the wrong time or with unusable arguments.
/// The session is unchanged; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The method does not apply in the current state.
    #[error("{method} is not allowed now: the session is {state}")]
    WrongState {
        /// The method called.
        method: &'static str,
        /// The current state.
        state: &'static str,
    },
    /// The configuration or parameters are invalid.
    #[error("invalid session configuration: {0}")]
    Config(String),
    /// What was asked is not allowed by the negotiated parameters.
    #[error("{0}")]
    NotAllowed(String),
    /// A command could not be encoded.
    #[error("cannot encode command: {0}")]
    Encode(#[from] EncodeError),
    /// File data breaks the file format's record rules.
    #[error("file data does not fit the file format: {0}")]
    Data(#[from] DataError),
}
