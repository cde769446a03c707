//! One error type for the connection: why we refuse an offered file (SFNA), refuse a received
//! file (EFNA) or end the session (ESID), and the local faults we report. Each variant's
//! message is what the log and the handler's `Error` event say; [`ConnectionError::answer`] is
//! the one place that says which reason code (and text) the partner is sent for it, so call
//! sites name what went wrong and never pick a code.
//!
//! Reason codes are those of RFC 5024 5.3.5 (SFNA), 5.3.10 (EFNA) and 5.3.11 (ESID).

use std::path::PathBuf;
use std::time::Duration;

use oftp_proto::codec::{EfnaReason, EsidReason, NerpReason, SfnaReason};
use oftp_proto::session::UsageError;

use crate::connection::Connection;
use crate::handler::{FileDecision, Handler};
use crate::identity::IdentityError;
use crate::journal::JournalError;
use crate::security::{SecureAuthRefusal, SecurityError};
use crate::store::StoreError;
use crate::transport::{FileServices, ServiceFailure, ServiceRefusal, Transport};

/// What went wrong in a connection (see the module doc).
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectionError {
    // ---- an offered file is refused (SFNA) ---------------------------------------------------
    /// A file was offered before a session was accepted.
    #[error("no session")]
    NoSession,
    /// The journal failed (an offer meeting it is refused for now).
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The temporary file of an offered file could not be created or taken over.
    #[error("cannot store {name}: {cause}")]
    CannotCreate {
        /// The virtual file name.
        name: String,
        /// Why.
        cause: CreateError,
    },
    /// The file services' opener of an offered file could not start.
    #[error("cannot receive {name}: {error}")]
    CannotOpen {
        /// The virtual file name.
        name: String,
        /// Why.
        error: std::io::Error,
    },
    /// The writer of an offered file could not start.
    #[error("cannot receive {name}: {error}")]
    CannotStartWriter {
        /// The virtual file name.
        name: String,
        /// Why.
        error: StoreError,
    },
    /// Another session is receiving the same file.
    #[error("this file is being received in another session")]
    BeingReceived,
    /// The file does not fit in the free space where it goes.
    #[error("not enough free space for {kib} KiB, retry later")]
    NoRoom {
        /// What the file still needs, in KiB.
        kib: u64,
    },
    /// The task deciding about an offered file failed.
    #[error("file decision task failed: {0}")]
    DecisionFailed(String),
    /// SFIDORIG is not an identification code (blank).
    #[error("invalid originator {code:?}: {error}")]
    InvalidOrigin {
        /// SFIDORIG as received.
        code: String,
        /// What is wrong with it.
        error: IdentityError,
    },
    /// SFIDDEST is not an identification code (blank).
    #[error("invalid destination {code:?}: {error}")]
    InvalidDestination {
        /// SFIDDEST as received.
        code: String,
        /// What is wrong with it.
        error: IdentityError,
    },
    /// The file services refused an offered file (their reason).
    #[error("{}", .0.text)]
    ServicesRefused(ServiceRefusal),
    /// The file services' check of an offered file failed (their task panicked).
    #[error("file services failed: {0}")]
    ServicesTask(String),

    // ---- a received file is refused (EFNA) ---------------------------------------------------
    /// A record is longer than the file allows or than we can store.
    #[error("{0}")]
    RecordTooLong(String),
    /// A record cannot be stored in the partner's record mapping (lines).
    #[error("{0}")]
    RecordNotStorable(String),
    /// EFID names another record count than arrived.
    #[error("EFID says {said} records, {arrived} arrived")]
    RecordCount {
        /// EFIDRCNT.
        said: u64,
        /// Records received.
        arrived: u64,
    },
    /// EFID names another octet count than arrived.
    #[error("EFID says {said} octets, {arrived} arrived")]
    ByteCount {
        /// EFIDUCNT.
        said: u64,
        /// Octets received.
        arrived: u64,
    },
    /// The received data could not be written out at the end of the file.
    #[error("cannot write received data: {0}")]
    CannotFinishWrite(StoreError),
    /// The received file could not be placed under its final name.
    #[error("cannot store {name}: {error}")]
    CannotPlace {
        /// The virtual file name.
        name: String,
        /// Why.
        error: StoreError,
    },
    /// The file services could not open the received file (their reason).
    #[error("{}", .0.text)]
    Services(ServiceFailure),
    /// The file services' work on a received file failed (their task panicked).
    #[error("file services failed: {0}")]
    ServicesCrashed(String),

    // ---- the session ends (ESID) -------------------------------------------------------------
    /// The received data could not be written during the transfer.
    #[error("cannot write received data: {0}")]
    CannotStoreData(StoreError),
    /// Data could not be written to the session for a file we send.
    #[error("cannot send {}: {error}", path.display())]
    CannotSend {
        /// The local file.
        path: PathBuf,
        /// Why.
        error: UsageError,
    },
    /// A file we send could not be read.
    #[error("cannot read {}: {error}", path.display())]
    CannotRead {
        /// The local file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The operator interrupted the transfer.
    #[error("transfer interrupted by the operator")]
    Interrupted,
    /// The server is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// The listener's limits keep the peer out (connections, sessions per address).
    #[error("{0}")]
    NotAdmitted(&'static str),
    /// A session over TLS that is not OFTP 2.0.
    #[error("sessions over TLS need ODETTE-FTP 2.0 (SSID level 5)")]
    NeedsV2,
    /// The SSID code does not belong to the TLS client certificate presented.
    #[error("the TLS client certificate {subject} does not belong to {code}")]
    NotCertificateOwner {
        /// The certificate's subject.
        subject: String,
        /// The SSID code.
        code: String,
    },
    /// The SSID code is not an identification code (blank): no partner has it.
    #[error("unknown SSID code {code:?}: {error}")]
    InvalidSsid {
        /// The code as received.
        code: String,
        /// What is wrong with it.
        error: IdentityError,
    },
    /// The secure-authentication policy refuses the peer.
    #[error("{0}")]
    SecureAuthPolicy(SecureAuthRefusal),
    /// Our challenge for secure authentication could not be made.
    #[error("secure authentication failed: {0}")]
    ChallengeFailed(AuthStepError),
    /// The session could not be accepted.
    #[error("cannot accept session: {0}")]
    CannotAccept(UsageError),
    /// No random numbers for an answer that cannot match.
    #[error("random number generator failed")]
    NoRandom,
    /// No SSID arrived in time.
    #[error("no start session (SSID) within {} s of connecting", .0.as_secs_f32())]
    LoginTimeout(Duration),
    /// Nothing happened for the idle timeout.
    #[error("idle timeout")]
    IdleTimeout,

    // ---- reported only -----------------------------------------------------------------------
    /// A blocking task failed (panicked or was cancelled).
    #[error("{task} task failed: {cause}")]
    Task {
        /// Which task.
        task: &'static str,
        /// Why.
        cause: String,
    },
    /// The received data could not be made durable at a checkpoint.
    #[error("cannot sync received data: {0}")]
    CannotSync(StoreError),
    /// An end response from the partner is not accepted (signature, hash, security settings).
    #[error("{0}")]
    Receipt(String),
    /// The signature of an end response from the partner does not verify.
    #[error("{0}")]
    ReceiptNotValid(SecurityError),
}

/// Why the temporary file of an offered file could not be created or taken over.
#[derive(Debug, thiserror::Error)]
pub(super) enum CreateError {
    /// The partial file of an earlier reception could not be removed (its journal row stays,
    /// so it is tried again later).
    #[error("the earlier partial file stays: {0}")]
    EarlierStays(StoreError),
    /// The temporary file could not be created.
    #[error(transparent)]
    Store(StoreError),
    /// The task on the blocking pool failed.
    #[error("file task failed: {0}")]
    Task(tokio::task::JoinError),
}

/// Why a secure-authentication step (our challenge, our answer) could not be done.
#[derive(Debug, thiserror::Error)]
pub(super) enum AuthStepError {
    /// No security settings, or not the key the step needs.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// The security settings refused or failed the step.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The step's task on the blocking pool failed.
    #[error("challenge task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What the partner is sent for a [`ConnectionError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// SFNA: reason, retry indicator, text.
    Sfna(SfnaReason, bool, String),
    /// EFNA: reason, text.
    Efna(EfnaReason, String),
    /// ESID: reason, text.
    Esid(EsidReason, String),
    /// Nothing: only reported locally.
    Nothing,
}

impl ConnectionError {
    /// What the partner is sent for this error: the one mapping from error to reason code.
    pub(super) fn answer(&self) -> Answer {
        use ConnectionError as E;
        let text = || self.to_string();
        match self {
            E::NoSession => Answer::Sfna(SfnaReason::UNSPECIFIED, false, text()),
            E::Journal(_) => Answer::Sfna(
                SfnaReason::ACCESS_METHOD_FAILURE,
                true,
                "receiver journal unavailable".into(),
            ),
            E::CannotCreate { .. } => Answer::Sfna(
                SfnaReason::ACCESS_METHOD_FAILURE,
                true,
                "cannot create the file".into(),
            ),
            E::CannotOpen { .. } | E::CannotStartWriter { .. } | E::DecisionFailed(_) => {
                Answer::Sfna(
                    SfnaReason::ACCESS_METHOD_FAILURE,
                    true,
                    "receiver busy, try again later".into(),
                )
            }
            E::BeingReceived => Answer::Sfna(SfnaReason::UNSPECIFIED, true, text()),
            // "Lack of storage space" (RFC 5024 5.3.5, SFNARRTR): retry later.
            E::NoRoom { .. } => Answer::Sfna(SfnaReason::ACCESS_METHOD_FAILURE, true, text()),
            E::ServicesRefused(r) => Answer::Sfna(r.reason, false, r.text.clone()),
            E::InvalidOrigin { .. } => Answer::Sfna(SfnaReason::INVALID_ORIGIN, false, text()),
            E::InvalidDestination { .. } => {
                Answer::Sfna(SfnaReason::INVALID_DESTINATION, false, text())
            }
            E::ServicesTask(_) => Answer::Sfna(SfnaReason::UNSPECIFIED, false, text()),
            E::RecordTooLong(_) => Answer::Efna(EfnaReason::RECORD_LENGTH_NOT_SUPPORTED, text()),
            E::RecordNotStorable(_) => {
                Answer::Efna(EfnaReason::RECORD_FORMAT_NOT_SUPPORTED, text())
            }
            E::RecordCount { .. } => Answer::Efna(EfnaReason::INVALID_RECORD_COUNT, text()),
            E::ByteCount { .. } => Answer::Efna(EfnaReason::INVALID_BYTE_COUNT, text()),
            E::CannotFinishWrite(_) => Answer::Efna(EfnaReason::ACCESS_METHOD_FAILURE, text()),
            E::CannotPlace { .. } => Answer::Efna(
                EfnaReason::ACCESS_METHOD_FAILURE,
                "receiver cannot store the file".into(),
            ),
            E::Services(f) => Answer::Efna(f.reason, f.text.clone()),
            E::ServicesCrashed(_) => Answer::Efna(EfnaReason::UNSPECIFIED, text()),
            E::CannotStoreData(_) => Answer::Esid(
                EsidReason::RESOURCES_NOT_AVAILABLE,
                "receiver cannot store the file".into(),
            ),
            E::CannotSend { .. } | E::CannotRead { .. } => Answer::Esid(
                EsidReason::UNSPECIFIED,
                "sender cannot read the file".into(),
            ),
            E::Interrupted | E::NoRandom => Answer::Esid(EsidReason::UNSPECIFIED, text()),
            E::ShuttingDown => Answer::Esid(EsidReason::EMERGENCY_CLOSE_DOWN, text()),
            // Resources not available, retry later (RFC 5024 5.3.11, ESID 08).
            E::NotAdmitted(_) => Answer::Esid(EsidReason::RESOURCES_NOT_AVAILABLE, text()),
            E::CannotAccept(e) => Answer::Esid(EsidReason::RESOURCES_NOT_AVAILABLE, e.to_string()),
            E::NeedsV2 => Answer::Esid(EsidReason::MODE_INCOMPATIBLE, text()),
            // "Unknown or invalid Identification Code" (ESID 03).
            E::NotCertificateOwner { .. } | E::InvalidSsid { .. } => {
                Answer::Esid(EsidReason::USER_CODE_NOT_KNOWN, text())
            }
            E::SecureAuthPolicy(t) => {
                Answer::Esid(EsidReason::SECURE_AUTH_INCOMPATIBLE, t.to_string())
            }
            E::ChallengeFailed(t) => {
                Answer::Esid(EsidReason::SECURE_AUTH_INCOMPATIBLE, t.to_string())
            }
            E::LoginTimeout(_) | E::IdleTimeout => Answer::Esid(EsidReason::TIME_OUT, text()),
            E::Task { .. } | E::CannotSync(_) | E::Receipt(_) | E::ReceiptNotValid(_) => {
                Answer::Nothing
            }
        }
    }

    /// The NERP to send the originator of a relayed file the file services could not open, in
    /// place of the EFNA (RFC 5024 4.3.7): `None` when the failure has no NERP counterpart.
    pub(super) fn nerp(&self) -> Option<NerpReason> {
        match self {
            ConnectionError::Services(f) => match f.reason {
                EfnaReason::INVALID_SIGNATURE => Some(NerpReason::INVALID_SIGNATURE),
                EfnaReason::DECRYPTION_FAILURE => Some(NerpReason::DECRYPTION_FAILED),
                EfnaReason::DECOMPRESSION_FAILURE => Some(NerpReason::DECOMPRESSION_FAILED),
                _ => None,
            },
            _ => None,
        }
    }

    /// The default decision about an offered file this error refuses (the handler may still
    /// decide otherwise).
    pub(super) fn decision(&self) -> FileDecision {
        match self.answer() {
            Answer::Sfna(reason, retry, text) => FileDecision::Reject {
                reason,
                retry,
                text,
            },
            _ => FileDecision::Reject {
                reason: SfnaReason::UNSPECIFIED,
                retry: false,
                text: self.to_string(),
            },
        }
    }
}

impl From<ServiceRefusal> for ConnectionError {
    fn from(r: ServiceRefusal) -> Self {
        ConnectionError::ServicesRefused(r)
    }
}

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    /// Sends the partner what `problem` answers (SFNA, EFNA or ESID, see
    /// [`ConnectionError::answer`]); the session refuses what its state does not allow.
    pub(super) fn send_refusal(&mut self, problem: &ConnectionError) {
        let _ = match problem.answer() {
            Answer::Sfna(reason, retry, text) => self.session.reject_file(reason, retry, &text),
            Answer::Efna(reason, text) => self.session.refuse_file(reason, &text),
            Answer::Esid(reason, text) => self.session.end_session(reason, &text),
            Answer::Nothing => Ok(()),
        };
    }

    /// Refuses the session at its SSID for `problem`, with its ESID (see
    /// [`ConnectionError::answer`]; 99 for an error that names none).
    pub(super) fn reject_session_for(&mut self, problem: &ConnectionError) {
        let (reason, text) = match problem.answer() {
            Answer::Esid(reason, text) => (reason, text),
            _ => (EsidReason::UNSPECIFIED, problem.to_string()),
        };
        let _ = self.session.reject_session(reason, &text);
    }

    /// Reports a local fault: the log and the handler's `Error` event.
    pub(super) async fn fail(&self, problem: impl Into<ConnectionError>) {
        self.error(problem.into().to_string()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_faults_at_an_offer_ask_for_a_retry_with_sfna_12() {
        for e in [
            ConnectionError::NoRoom { kib: 5 },
            ConnectionError::DecisionFailed("boom".into()),
            ConnectionError::CannotCreate {
                name: "F".into(),
                cause: CreateError::Store(StoreError::Io {
                    action: "create",
                    path: "F".into(),
                    error: std::io::Error::other("disk"),
                }),
            },
        ] {
            match e.answer() {
                Answer::Sfna(reason, retry, _) => {
                    assert_eq!(reason, SfnaReason::ACCESS_METHOD_FAILURE, "{e}");
                    assert!(retry, "{e}");
                }
                other => panic!("{e}: {other:?}"),
            }
        }
        assert_eq!(
            ConnectionError::NoRoom { kib: 5 }.answer(),
            Answer::Sfna(
                SfnaReason::ACCESS_METHOD_FAILURE,
                true,
                "not enough free space for 5 KiB, retry later".into()
            )
        );
    }

    #[test]
    fn count_mismatches_are_refused_with_their_efna_and_say_both_counts() {
        assert_eq!(
            ConnectionError::RecordCount {
                said: 3,
                arrived: 2
            }
            .answer(),
            Answer::Efna(
                EfnaReason::INVALID_RECORD_COUNT,
                "EFID says 3 records, 2 arrived".into()
            )
        );
        assert_eq!(
            ConnectionError::ByteCount {
                said: 10,
                arrived: 9
            }
            .answer(),
            Answer::Efna(
                EfnaReason::INVALID_BYTE_COUNT,
                "EFID says 10 octets, 9 arrived".into()
            )
        );
    }

    #[test]
    fn shutdown_and_timeouts_end_the_session_with_their_esid() {
        assert_eq!(
            ConnectionError::ShuttingDown.answer(),
            Answer::Esid(
                EsidReason::EMERGENCY_CLOSE_DOWN,
                "server shutting down".into()
            )
        );
        assert_eq!(
            ConnectionError::LoginTimeout(Duration::from_secs(2)).answer(),
            Answer::Esid(
                EsidReason::TIME_OUT,
                "no start session (SSID) within 2 s of connecting".into()
            )
        );
        assert_eq!(
            ConnectionError::IdleTimeout.answer(),
            Answer::Esid(EsidReason::TIME_OUT, "idle timeout".into())
        );
    }

    #[test]
    fn a_services_failure_keeps_its_reason_and_maps_to_its_nerp() {
        let e = ConnectionError::Services(ServiceFailure {
            reason: EfnaReason::DECRYPTION_FAILURE,
            text: "bad key".into(),
        });
        assert_eq!(
            e.answer(),
            Answer::Efna(EfnaReason::DECRYPTION_FAILURE, "bad key".into())
        );
        assert_eq!(e.nerp(), Some(NerpReason::DECRYPTION_FAILED));
        let other = ConnectionError::Services(ServiceFailure {
            reason: EfnaReason::UNSPECIFIED,
            text: "x".into(),
        });
        assert_eq!(other.nerp(), None);
    }
}
