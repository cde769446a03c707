//! The [`Handler`] trait: the application's say in a session, one async method per event of the
//! seed's OFTPServer class.
//!
//! An event that needs a decision returns it (accept/reject with a reason, where to store a file,
//! send the end response now or later). Every method has a default body that does the sensible
//! thing, so `()` is a complete handler: the partner table decides who may log in (unknown SSID
//! -> ESID 03, wrong password -> ESID 04), files land in the partner's inbox, duplicates are
//! refused with SFNA 13, and the EERP goes out as soon as a file is durable. The defaults are
//! computed by the runtime and handed to the method in the event (`default_decision()`), so an
//! override can start from them and change one thing.
//!
//! Handler methods run inside the connection's task: a slow method slows that session (and only
//! that one). To act on a session later, keep its [`SessionHandle`] (in [`SessionInfo`]); its
//! methods only queue a request and never wait, so they are safe to call from a handler method.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use oftp_proto::codec::{EsidReason, FileFormat, NerpReason, ProtocolLevel, SfnaReason};

use crate::config::{Mode, Partner};
use crate::handle::SessionHandle;
use crate::identity::OdetteId;
use crate::listener::{ConnectionId, ConnectionInfo};
use crate::stamp::FileStamp;

/// A TCP connection arrived (seed `ConnectionRequest`).
#[derive(Debug, Clone)]
pub struct ConnectionRequest {
    /// Addresses and id.
    pub info: ConnectionInfo,
    allowed_by_policy: bool,
}

impl ConnectionRequest {
    pub(crate) fn new(info: ConnectionInfo, allowed_by_policy: bool) -> Self {
        Self {
            info,
            allowed_by_policy,
        }
    }

    /// What the allowed/blocked client lists say.
    pub fn default_decision(&self) -> bool {
        self.allowed_by_policy
    }
}

/// A peer asked to start a session (seed `AcceptConnection`): its SSID fields.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    /// Addresses and id.
    pub info: ConnectionInfo,
    /// SSIDCODE of the peer.
    pub peer_ssid: OdetteId,
    peer_password: crate::config::Password,
    /// Protocol level the peer offered (seed `ClientVersion`).
    pub peer_level: ProtocolLevel,
    /// Buffer size the peer offered.
    pub peer_buffer_size: u32,
    /// Credit the peer offered.
    pub peer_credit: u16,
    /// Send/receive capability of the peer (seed `ReceivedConnectionType`).
    pub peer_mode: Mode,
    /// Whether the peer offered buffer compression.
    pub peer_compression: bool,
    /// Whether the peer offered restart.
    pub peer_restart: bool,
    /// Whether the peer asked for secure authentication (not supported yet: security issue).
    pub peer_secure_auth: bool,
    /// SSIDUSER.
    pub peer_user_data: String,
    /// The configured partner with this SSID, if any.
    pub partner: Option<Partner>,
    default: SessionDecision,
}

impl SessionRequest {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        info: ConnectionInfo,
        peer_ssid: OdetteId,
        peer_password: crate::config::Password,
        peer_level: ProtocolLevel,
        peer_buffer_size: u32,
        peer_credit: u16,
        peer_mode: Mode,
        peer_compression: bool,
        peer_restart: bool,
        peer_secure_auth: bool,
        peer_user_data: String,
        partner: Option<Partner>,
        default: SessionDecision,
    ) -> Self {
        Self {
            info,
            peer_ssid,
            peer_password,
            peer_level,
            peer_buffer_size,
            peer_credit,
            peer_mode,
            peer_compression,
            peer_restart,
            peer_secure_auth,
            peer_user_data,
            partner,
            default,
        }
    }

    /// The password the peer presented (seed `ClientPassword`); never log it.
    pub fn peer_password(&self) -> &crate::config::Password {
        &self.peer_password
    }

    /// What the partner table decided: reject unknown SSIDs (ESID 03), wrong passwords
    /// (ESID 04) and levels the partner may not use (ESID 10); otherwise accept with the
    /// partner's inbox and our configured parameters.
    pub fn default_decision(&self) -> SessionDecision {
        self.default.clone()
    }
}

/// Parameters of an accepted session (seed: `DownloadDirectory`, `ServerSSIDCode[ConnectionId]`,
/// `ServerVersion`, `CreditCount`, `ExchangeBufferSize`, `ConnectionType` ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAcceptance {
    /// Name of the partner (for logs and the journal).
    pub partner_name: String,
    /// SFID code of the partner (destination of files and end responses we send).
    pub partner_sfid: OdetteId,
    /// Directory for files received in this session.
    pub inbox: PathBuf,
    /// Directory whose files are sent to the peer when it hands us the speaker role.
    pub outbox: Option<PathBuf>,
    /// Our SSID code in the answer.
    pub local_ssid: OdetteId,
    /// Our SFID code (originator of files and end responses we send).
    pub local_sfid: OdetteId,
    /// Our password in the answer.
    pub local_password: crate::config::Password,
    /// Protocol level to answer with (at most the peer's).
    pub level: ProtocolLevel,
    /// Buffer size to answer with (at most the peer's).
    pub buffer_size: u32,
    /// Credit to answer with (at most the peer's).
    pub credit: u16,
    /// Directions we allow.
    pub mode: Mode,
    /// Buffer compression (only if the peer offered it).
    pub compression: bool,
    /// Restart (only if the peer offered it).
    pub restart: bool,
}

/// The answer to a [`SessionRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum SessionDecision {
    /// Start the session with these parameters.
    Accept(SessionAcceptance),
    /// End it with this ESID reason.
    Reject {
        /// ESID reason code.
        reason: EsidReason,
        /// ESID reason text (OFTP 2.0).
        text: String,
    },
}

/// What every event after log-in knows about its session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Connection id.
    pub id: ConnectionId,
    /// Peer address.
    pub peer: SocketAddr,
    /// Peer SSID code.
    pub peer_ssid: OdetteId,
    /// Partner name (from the partner table or the handler's acceptance).
    pub partner_name: String,
    /// Negotiated protocol level.
    pub level: ProtocolLevel,
    /// Queue requests to this session.
    pub handle: SessionHandle,
}

/// A virtual file the peer offers (seed `AcceptFile`).
#[derive(Debug, Clone)]
pub struct FileOffer {
    /// SFIDDSN (seed `VirtualFileName`).
    pub virtual_file_name: String,
    /// SFIDDATE/SFIDTIME (seed `VirtualFileDate`).
    pub stamp: FileStamp,
    /// SFIDORIG.
    pub originator: OdetteId,
    /// SFIDDEST.
    pub destination: OdetteId,
    /// SFIDUSER.
    pub user_data: String,
    /// SFIDFMT.
    pub format: FileFormat,
    /// SFIDLRECL.
    pub max_record_len: u32,
    /// SFIDFSIZ in KiB.
    pub file_size_kib: u64,
    /// SFIDREST: where the peer wants to restart (0 = from the start).
    pub restart_position: u64,
    /// SFIDDESC (OFTP 2.0).
    pub description: String,
    /// SFIDSEC, SFIDCIPH, SFIDCOMP, SFIDENV, SFIDSIGN, SFIDOSIZ: what the originator applied
    /// (to forward the file unchanged: [`OutgoingFile::forwarded`](crate::handle::OutgoingFile)).
    pub services: crate::handle::FileServiceFields,
    /// Whether the journal already has this file complete (same originator, name, stamp).
    pub duplicate: bool,
    default: FileDecision,
}

impl FileOffer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        virtual_file_name: String,
        stamp: FileStamp,
        originator: OdetteId,
        destination: OdetteId,
        user_data: String,
        format: FileFormat,
        max_record_len: u32,
        file_size_kib: u64,
        restart_position: u64,
        description: String,
        services: crate::handle::FileServiceFields,
        duplicate: bool,
        default: FileDecision,
    ) -> Self {
        Self {
            virtual_file_name,
            stamp,
            originator,
            destination,
            user_data,
            format,
            max_record_len,
            file_size_kib,
            restart_position,
            description,
            services,
            duplicate,
            default,
        }
    }

    /// The runtime's decision: SFNA 13 for a duplicate, SFNA 02 for a file meant for another
    /// destination, SFNA 01 for a name that gives no usable file name, otherwise accept into the
    /// session's inbox under the configured name format, without overwriting.
    pub fn default_decision(&self) -> FileDecision {
        self.default.clone()
    }
}

/// The answer to a [`FileOffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDecision {
    /// Receive the file into `target` (seed `FileName`), replacing an existing file only with
    /// `overwrite` (seed `Overwrite`, default false).
    Accept {
        /// Final path of the file.
        target: PathBuf,
        /// Replace an existing file.
        overwrite: bool,
    },
    /// Refuse it with SFNA (seed `ErrorCode` / `ErrorDescription` / `AllowRetry`).
    Reject {
        /// SFNA reason.
        reason: SfnaReason,
        /// Whether the sender may try again later.
        retry: bool,
        /// Reason text (OFTP 2.0).
        text: String,
    },
}

/// Which way a file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer sends it to us.
    Incoming,
    /// We send it to the peer.
    Outgoing,
}

/// A file transfer (seed `StartTransfer` / `Transfer` / `EndTransfer` parameters).
#[derive(Debug, Clone)]
pub struct TransferInfo {
    /// Which way.
    pub direction: Direction,
    /// Local file (target for incoming, source for outgoing).
    pub local_file: PathBuf,
    /// SFIDDSN.
    pub virtual_file_name: String,
    /// SFIDDATE/SFIDTIME.
    pub stamp: FileStamp,
    /// SFIDORIG.
    pub originator: OdetteId,
    /// SFIDDEST.
    pub destination: OdetteId,
    /// Restart position agreed (0 = from the start).
    pub restart_position: u64,
    /// Hash of the transmitted file (seed `FileHash`), when a signed EERP was asked for
    /// (SFIDSIGN = Y); empty otherwise. Set in `end_transfer`.
    pub file_hash: Vec<u8>,
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferResult {
    /// Incoming: durable under its final name, EFPA sent. Outgoing: EFPA received.
    Completed {
        /// Records (F/V) transferred, in total.
        records: u64,
        /// Octets of user data, in total.
        units: u64,
    },
    /// The file was refused (SFNA/EFNA) or failed locally.
    Failed {
        /// What happened, ready for an operator.
        reason: String,
    },
}

/// When to send the end-to-end response of a received file (seed `SendEndResponse` parameter
/// of `EndTransfer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndResponseTiming {
    /// As soon as we hold the speaker role (default).
    #[default]
    Now,
    /// The application will call [`SessionHandle::send_end_response`] (or a later session
    /// will); the journal keeps it pending.
    Later,
}

/// An end-to-end response, received or to send (seed `EndResponse` / `SendEndResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndResponse {
    /// The file's SFIDDSN.
    pub virtual_file_name: String,
    /// The file's stamp.
    pub stamp: FileStamp,
    /// EERPDEST/NERPDEST: the originator of the file, to whom the response goes.
    pub destination: OdetteId,
    /// EERPORIG/NERPORIG: the final recipient of the file, who answers.
    pub originator: OdetteId,
    /// SFIDUSER of the file (EERP only).
    pub user_data: String,
    /// `None` for an EERP; NERP reason, creator SFID and text otherwise.
    pub negative: Option<NegativeResponse>,
    /// EERPHSH/NERPHSH (seed `FileHash`): received, or to send. When sending, leave it empty
    /// to let the runtime use the hash it recorded for the file.
    pub file_hash: Vec<u8>,
    /// EERPSIG/NERPSIG (seed `Signature`): received, or to send as is (a routed response).
    /// When sending, leave it empty to let the runtime sign when the file asked for it.
    pub signature: Vec<u8>,
    /// Received: the signature was checked against the partner's receipt certificate and the
    /// hash of the file we sent.
    pub signature_verified: bool,
}

/// The NERP part of an [`EndResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegativeResponse {
    /// NERPREAS.
    pub reason: NerpReason,
    /// NERPCREA: who found the problem.
    pub creator: String,
    /// NERPREAST.
    pub text: String,
}

/// What to do when we hold the speaker role and are idle (seed `ReadyToSend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadyAction {
    /// Send what is queued (requests on the [`SessionHandle`], pending end responses, the
    /// partner's outbox), then hand the turn back (CD) or end the session when neither side has
    /// anything left.
    #[default]
    Proceed,
    /// Keep the speaker role and wait for a request on the [`SessionHandle`] (bounded by the
    /// inactivity timeout).
    Wait,
}

/// Why a session ended (seed `Disconnected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    /// The ESID reason, when the session ended with one.
    pub reason: Option<EsidReason>,
    /// Whether the peer ended it.
    pub by_peer: bool,
    /// Operator-readable description ("OK" for a normal end).
    pub description: String,
}

/// A problem in a session (seed `Error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEvent {
    /// Connection it happened on.
    pub connection: ConnectionId,
    /// Operator-readable description.
    pub description: String,
}

/// Which side sent a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The peer.
    Peer,
    /// Us.
    Local,
}

/// One command on the wire (seed `PITrail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiTrail {
    /// Who sent it.
    pub origin: Origin,
    /// Command code as the seed numbers it (the ASCII value of the command letter: 88 = SSID).
    pub command_id: u8,
    /// Name and main fields, e.g. `SFID INVOICE 20260102...`; never passwords.
    pub description: String,
}

/// Log severity of a [`LogEvent`] (seed `LogLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Sessions, files, end responses.
    Info,
    /// Per-buffer detail.
    Verbose,
    /// Everything.
    Debug,
}

/// A log line (seed `Log`). The runtime also emits it through `tracing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Severity.
    pub level: LogLevel,
    /// The line.
    pub message: String,
}

/// The application's hooks. All methods have defaults; implement only what you need.
///
/// Methods return `impl Future + Send` so handlers can be used from multi-threaded runtimes;
/// write them as `async fn` in the `impl`.
pub trait Handler: Send + Sync + 'static {
    /// A TCP connection arrived (seed `ConnectionRequest`); `false` closes it at once.
    fn connection_request(&self, req: &ConnectionRequest) -> impl Future<Output = bool> + Send {
        let d = req.default_decision();
        async move { d }
    }

    /// A peer sent SSID (seed `AcceptConnection`).
    fn accept_session(&self, req: &SessionRequest) -> impl Future<Output = SessionDecision> + Send {
        let d = req.default_decision();
        async move { d }
    }

    /// The session is established: both SSIDs exchanged and, when secure authentication is
    /// used, both sides authenticated (a failed challenge ends the session without this event).
    fn session_started(&self, session: &SessionInfo) -> impl Future<Output = ()> + Send {
        let _ = session;
        async {}
    }

    /// The peer offers a file (seed `AcceptFile`).
    fn accept_file(
        &self,
        session: &SessionInfo,
        offer: &FileOffer,
    ) -> impl Future<Output = FileDecision> + Send {
        let _ = session;
        let d = offer.default_decision();
        async move { d }
    }

    /// A transfer begins (seed `StartTransfer`).
    fn start_transfer(
        &self,
        session: &SessionInfo,
        transfer: &TransferInfo,
    ) -> impl Future<Output = ()> + Send {
        let _ = (session, transfer);
        async {}
    }

    /// Progress: `bytes` of user data moved so far in this transfer (seed `Transfer`).
    fn transfer(
        &self,
        session: &SessionInfo,
        transfer: &TransferInfo,
        bytes: u64,
    ) -> impl Future<Output = ()> + Send {
        let _ = (session, transfer, bytes);
        async {}
    }

    /// A transfer ended (seed `EndTransfer`). For a successful incoming file the answer says
    /// whether to send the EERP now or later; otherwise it is ignored.
    fn end_transfer(
        &self,
        session: &SessionInfo,
        transfer: &TransferInfo,
        result: &TransferResult,
    ) -> impl Future<Output = EndResponseTiming> + Send {
        let _ = (session, transfer, result);
        async { EndResponseTiming::Now }
    }

    /// An EERP or NERP arrived (seed `EndResponse`, direction received). The runtime has
    /// recorded it in the journal and answers RTR itself.
    fn end_response(
        &self,
        session: &SessionInfo,
        response: &EndResponse,
    ) -> impl Future<Output = ()> + Send {
        let _ = (session, response);
        async {}
    }

    /// A certificate arrived in an ODETTE_CERTIFICATE_REQUEST/REPLACE/DELIVER file (seed
    /// `CertificateReceived`); it is stored already. A request from a configured partner whose
    /// `answer_certificate_requests` is on (the default) has been answered with our
    /// certificate already (`certificate.answered`); with the option off, answer it here by
    /// sending an `OutgoingFile::certificate_exchange(Deliver, ...)` on the session handle.
    fn certificate_received(
        &self,
        session: &SessionInfo,
        certificate: &crate::security::ReceivedCertificate,
    ) -> impl Future<Output = ()> + Send {
        let _ = (session, certificate);
        async {}
    }

    /// We hold the speaker role and have nothing in progress (seed `ReadyToSend`).
    fn ready_to_send(&self, session: &SessionInfo) -> impl Future<Output = ReadyAction> + Send {
        let _ = session;
        async { ReadyAction::Proceed }
    }

    /// The connection closed (seed `Disconnected`).
    fn disconnected(
        &self,
        info: &ConnectionInfo,
        why: &Disconnected,
    ) -> impl Future<Output = ()> + Send {
        let _ = (info, why);
        async {}
    }

    /// Something went wrong (seed `Error`); the runtime has already acted on it.
    fn error(&self, error: &ErrorEvent) -> impl Future<Output = ()> + Send {
        let _ = error;
        async {}
    }

    /// A command was sent or received (seed `PITrail`).
    fn pi_trail(&self, id: ConnectionId, trail: &PiTrail) -> impl Future<Output = ()> + Send {
        let _ = (id, trail);
        async {}
    }

    /// A log line (seed `Log`).
    fn log(&self, id: ConnectionId, event: &LogEvent) -> impl Future<Output = ()> + Send {
        let _ = (id, event);
        async {}
    }
}

/// The all-defaults handler.
impl Handler for () {}
