//! [`SessionHandle`]: requests to a running session (seed methods `SendFile`,
//! `SendEndResponse`, `ChangeDirection`, `Logoff`, `Disconnect`, `Interrupt`), and
//! [`OutgoingFile`], a file to send.
//!
//! Requests are queued and carried out by the connection task when the protocol allows (files
//! and end responses only while we hold the speaker role). They never wait, so they can be made
//! from inside a handler method; outcomes arrive as handler events (`end_transfer`,
//! `end_response`, `disconnected`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oftp_proto::codec::{CipherSuite, FileCompression, FileEnvelope, FileFormat, SecurityLevel};
use tokio::sync::mpsc;

use crate::handler::EndResponse;
use crate::identity::OdetteId;
use crate::listener::ConnectionId;
use crate::stamp::FileStamp;

/// Longest virtual file name (SFIDDSN is 26 characters).
pub const MAX_VIRTUAL_NAME: usize = 26;

/// A local file to send as a virtual file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    /// The local file.
    pub path: PathBuf,
    /// SFIDDSN; defaults to the file name in upper case, cut to 26 characters.
    pub virtual_file_name: String,
    /// SFIDDEST; `None` = the partner's SFID.
    pub destination: Option<OdetteId>,
    /// SFIDORIG; `None` = our SFID.
    pub originator: Option<OdetteId>,
    /// SFIDDATE/SFIDTIME; `None` = reuse the stamp of an unfinished earlier attempt (so the
    /// partner can restart it), else now.
    pub stamp: Option<FileStamp>,
    /// SFIDFMT (seed `VirtualFileFormat`, default U).
    pub format: FileFormat,
    /// SFIDLRECL for F and V files (seed `MaxRecordSize`); F/V files are read as records in
    /// the partner's [`RecordMapping`](crate::config::RecordMapping).
    pub max_record_len: u32,
    /// SFIDUSER.
    pub user_data: String,
    /// SFIDDESC (seed `FileDescription`).
    pub description: String,
    /// For a file we forward as an intermediary (neither from nor for us): the file-service
    /// fields it arrived with ([`FileOffer::services`](crate::handler::FileOffer)). It is sent
    /// unchanged with these fields; no file service of ours is applied.
    pub forwarded: Option<FileServiceFields>,
    /// The outbound queue's row this file sends, when the caller claimed it from the queue
    /// itself (the gateway's calls): the session trail links the session to that row, so the
    /// row's history shows the session's commands. The caller settles the row from the
    /// outcome; the connection does not.
    pub queue_row: Option<i64>,
}

/// The file-service fields of an SFID (RFC 5024 5.3.3): what the originator applied to a
/// virtual file. An intermediary passes them on with the unchanged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileServiceFields {
    /// SFIDSEC.
    pub security: SecurityLevel,
    /// SFIDCIPH.
    pub cipher_suite: CipherSuite,
    /// SFIDCOMP.
    pub compression: FileCompression,
    /// SFIDENV.
    pub envelope: FileEnvelope,
    /// SFIDSIGN: the originator asked for a signed EERP.
    pub signed_eerp: bool,
    /// SFIDOSIZ in KiB: the size of the original file.
    pub original_size_kib: u64,
}

impl FileServiceFields {
    /// The fields of `sfid`.
    pub fn of(sfid: &oftp_proto::codec::Sfid) -> Self {
        Self {
            security: sfid.security,
            cipher_suite: sfid.cipher_suite,
            compression: sfid.compression,
            envelope: sfid.envelope,
            signed_eerp: sfid.signed_eerp,
            original_size_kib: sfid.original_file_size,
        }
    }

    /// Whether the file was signed, encrypted, compressed or enveloped: it then travels as U
    /// (see `Sfid::has_file_services`).
    pub fn has_file_services(&self) -> bool {
        self.security != SecurityLevel::NONE
            || self.compression != FileCompression::NONE
            || self.envelope != FileEnvelope::NONE
    }

    /// Writes them into `sfid`.
    pub(crate) fn apply(&self, sfid: &mut oftp_proto::codec::Sfid) {
        sfid.security = self.security;
        sfid.cipher_suite = self.cipher_suite;
        sfid.compression = self.compression;
        sfid.envelope = self.envelope;
        sfid.signed_eerp = self.signed_eerp;
        sfid.original_file_size = self.original_size_kib;
    }
}

impl OutgoingFile {
    /// An unstructured (U) file named after its local file name.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let virtual_file_name = default_virtual_name(&path);
        Self {
            path,
            virtual_file_name,
            destination: None,
            originator: None,
            stamp: None,
            format: FileFormat::Unstructured,
            max_record_len: 0,
            user_data: String::new(),
            description: String::new(),
            forwarded: None,
            queue_row: None,
        }
    }

    /// Sets the virtual file name.
    pub fn virtual_name(mut self, name: impl Into<String>) -> Self {
        self.virtual_file_name = name.into();
        self
    }

    /// Sets the format and maximum record length.
    pub fn format(mut self, format: FileFormat, max_record_len: u32) -> Self {
        self.format = format;
        self.max_record_len = max_record_len;
        self
    }

    /// A certificate-exchange file (seed `ExchangeCertificate`): the certificate file (PEM or
    /// DER) under the reserved name ODETTE_CERTIFICATE_REQUEST, _REPLACE or _DELIVER. It gets
    /// the partner's usual file services (a replace is only accepted signed).
    pub fn certificate_exchange(
        kind: crate::security::CertificateExchange,
        certificate: impl Into<PathBuf>,
    ) -> Self {
        Self::new(certificate).virtual_name(kind.virtual_file_name())
    }

    /// Sets the destination SFID.
    pub fn destination(mut self, sfid: OdetteId) -> Self {
        self.destination = Some(sfid);
        self
    }

    /// Sets the stamp.
    pub fn stamp(mut self, stamp: FileStamp) -> Self {
        self.stamp = Some(stamp);
        self
    }

    /// Sets the originator SFID (for a file we forward).
    pub fn originator(mut self, sfid: OdetteId) -> Self {
        self.originator = Some(sfid);
        self
    }

    /// Forwards the file unchanged with the file-service fields it arrived with (see
    /// [`OutgoingFile::forwarded`]).
    pub fn forwarded(mut self, fields: FileServiceFields) -> Self {
        self.forwarded = Some(fields);
        self
    }
}

/// The file a queued row sends (see [`crate::outbound`]), under the identity of an
/// interrupted earlier attempt if the journal has one.
impl From<&crate::journal::QueuedSend> for OutgoingFile {
    fn from(s: &crate::journal::QueuedSend) -> Self {
        Self {
            destination: s.destination.clone(),
            originator: s.originator.clone(),
            format: s.format,
            max_record_len: s.max_record_len,
            user_data: s.user_data.clone(),
            description: s.description.clone(),
            ..Self::new(&s.source_path).virtual_name(s.virtual_file_name.clone())
        }
    }
}

fn default_virtual_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .map(|c| c.to_ascii_uppercase())
        .take(MAX_VIRTUAL_NAME)
        .collect()
}

/// A request to a session. The large requests are boxed: the request channel allocates its
/// first block of slots when the session starts, so the size of a `Request` is paid by every
/// connection, busy or not (about 7 KiB each unboxed, 7 MiB for 1,000 sessions).
#[derive(Debug)]
pub(crate) enum Request {
    SendFile(Box<OutgoingFile>),
    SendEndResponse(Box<EndResponse>),
    ChangeDirection,
    Logoff,
    Disconnect,
}

/// The session is over; the request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session {0} has ended")]
pub struct SessionClosed(pub ConnectionId);

/// Queues requests to one session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    id: ConnectionId,
    tx: mpsc::UnboundedSender<Request>,
    interrupted: Arc<AtomicBool>,
}

impl SessionHandle {
    pub(crate) fn new(id: ConnectionId) -> (Self, mpsc::UnboundedReceiver<Request>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                id,
                tx,
                interrupted: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    /// The connection this handle belongs to.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    fn send(&self, r: Request) -> Result<(), SessionClosed> {
        self.tx.send(r).map_err(|_| SessionClosed(self.id))
    }

    /// Sends a file at our next turn (seed `SendFile`).
    pub fn send_file(&self, file: OutgoingFile) -> Result<(), SessionClosed> {
        self.send(Request::SendFile(Box::new(file)))
    }

    /// Sends an EERP or NERP at our next turn (seed `SendEndResponse`), e.g. after an
    /// [`EndResponseTiming::Later`](crate::handler::EndResponseTiming::Later).
    pub fn send_end_response(&self, response: EndResponse) -> Result<(), SessionClosed> {
        self.send(Request::SendEndResponse(Box::new(response)))
    }

    /// Hands the speaker role to the peer once our queue is empty (seed `ChangeDirection`).
    pub fn change_direction(&self) -> Result<(), SessionClosed> {
        self.send(Request::ChangeDirection)
    }

    /// Ends the session normally (ESID 00) once our queue is empty and we hold the speaker role
    /// (seed `Logoff`).
    pub fn logoff(&self) -> Result<(), SessionClosed> {
        self.send(Request::Logoff)
    }

    /// Closes the connection at once, without ESID (seed `Disconnect`). A file in progress keeps
    /// its durable part for a restart.
    pub fn disconnect(&self) -> Result<(), SessionClosed> {
        self.send(Request::Disconnect)
    }

    /// Stops the file we are sending (seed `Interrupt`). OFTP has no command to abandon a file
    /// mid-stream, so the session ends with ESID 99 "interrupted"; the partner keeps the durable
    /// part and the next attempt restarts from there.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_interrupt(&self) -> bool {
        self.interrupted.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_small_so_an_idle_session_holds_little() {
        // The channel's first block holds 32 requests per session; see `Request`.
        assert!(
            std::mem::size_of::<Request>() <= 16,
            "Request is {} octets",
            std::mem::size_of::<Request>()
        );
    }

    #[test]
    fn default_virtual_names() {
        assert_eq!(
            OutgoingFile::new("/out/invoice.edi").virtual_file_name,
            "INVOICE.EDI"
        );
        let long = OutgoingFile::new("a-very-long-file-name-that-goes-on.txt");
        assert_eq!(long.virtual_file_name.len(), MAX_VIRTUAL_NAME);
        assert_eq!(
            OutgoingFile::new("sp ace.txt").virtual_file_name,
            "SPACE.TXT"
        );
    }

    #[tokio::test]
    async fn requests_queue_until_the_session_is_gone() {
        let (h, mut rx) = SessionHandle::new(7);
        h.change_direction().unwrap();
        h.send_file(OutgoingFile::new("x")).unwrap();
        assert!(matches!(rx.recv().await, Some(Request::ChangeDirection)));
        assert!(matches!(rx.recv().await, Some(Request::SendFile(_))));
        h.interrupt();
        assert!(h.take_interrupt());
        assert!(!h.take_interrupt());
        drop(rx);
        assert_eq!(h.logoff(), Err(SessionClosed(7)));
    }
}
