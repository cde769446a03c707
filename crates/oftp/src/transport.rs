//! Seams for the transport under a session (plain TCP here, TLS on port 6619 in [`crate::tls`])
//! and the file services on top of it (OFTP 2.0 signing, compression, encryption: implemented
//! by [`crate::security::SecurityContext`]).
//!
//! A session runs over any [`Transport`] (`AsyncRead + AsyncWrite`); the server turns each
//! accepted TCP stream into one with an [`Acceptor`] and the client opens one with a
//! [`Connector`]. Today only [`PlainTcp`] exists; a TLS acceptor/connector plugs in without
//! touching the session driver.
//!
//! [`FileServices`] sees every SFID on the way in and out. [`NoFileServices`] sends files
//! without services and refuses incoming files that use them with the matching SFNA reason, so
//! nothing it cannot read is ever acknowledged; [`crate::security::SecurityContext`] applies
//! them, streaming: the processed form of a file is produced while it is sent, and a received
//! file is opened while it arrives.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use oftp_proto::codec::{FileCompression, SecurityLevel, Sfid, SfnaReason};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream a session can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Transport for T {}

/// Turns an accepted TCP connection into the session's transport (e.g. a TLS handshake).
pub trait Acceptor: Send + Sync + 'static {
    /// The resulting transport.
    type Stream: Transport;
    /// Performs the handshake, if any.
    fn accept(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Whether sessions over this transport must use OFTP 2.0 (TLS, RFC 5024 section 8); a
    /// 1.x SSID is then refused with ESID 10.
    fn requires_v2(&self) -> bool {
        false
    }

    /// The certificate the peer authenticated this transport with, when the session on it
    /// must log in as the partner that owns that certificate (a TLS client certificate bound
    /// to partners: [`TlsAcceptor::bind_client_certificates`](crate::tls::TlsAcceptor::bind_client_certificates));
    /// an SSID for another partner is then refused with ESID 03. `None` (the default): any
    /// partner may log in, by the password rules alone.
    fn bound_peer_certificate(&self, stream: &Self::Stream) -> Option<oftp_security::Certificate> {
        let _ = stream;
        None
    }
}

/// Opens the session's transport to a partner (e.g. TCP then TLS).
pub trait Connector: Send + Sync + 'static {
    /// The resulting transport.
    type Stream: Transport;
    /// Connects to `addr` (`host:port`).
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// The (local, partner's) socket addresses of a connection it made, for the session's
    /// records; `None` when the transport has none (a test's in-memory pipe).
    fn addresses(_stream: &Self::Stream) -> Option<(SocketAddr, SocketAddr)> {
        None
    }
}

/// The (local, peer) addresses of a TCP connection.
pub(crate) fn tcp_addresses(tcp: &TcpStream) -> Option<(SocketAddr, SocketAddr)> {
    Some((tcp.local_addr().ok()?, tcp.peer_addr().ok()?))
}

/// Plain TCP (port 3305).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainTcp;

impl Acceptor for PlainTcp {
    type Stream = TcpStream;
    async fn accept(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

impl Connector for PlainTcp {
    type Stream = TcpStream;
    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        let s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    fn addresses(stream: &TcpStream) -> Option<(SocketAddr, SocketAddr)> {
        tcp_addresses(stream)
    }
}

/// A refusal of an incoming file by the file-services stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRefusal {
    /// SFNA reason.
    pub reason: SfnaReason,
    /// SFNA text.
    pub text: String,
}

/// A refusal of a received file by the file-services stage (becomes EFNA, e.g. 21 invalid
/// signature, 22 decryption failure, 23 decompression failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFailure {
    /// EFNA reason.
    pub reason: oftp_proto::codec::EfnaReason,
    /// EFNA text.
    pub text: String,
}

/// The file-services stage (signing, compression, encryption of OFTP 2.0 files), on both
/// sides of a transfer.
///
/// Receive: [`check_incoming`](Self::check_incoming) at SFID; for a file that uses file
/// services, [`open_incoming`](Self::open_incoming) from the start of the transfer (it reads
/// the data as it arrives; the default waits for the end and calls
/// [`finish_incoming`](Self::finish_incoming), which may verify, decompress and decrypt the
/// complete temporary file in place). Send: [`stream_outgoing`](Self::stream_outgoing) fills
/// the SFID's service fields and may return a [`Seal`] that produces the processed form while
/// it is sent (the default builds on [`prepare_outgoing`](Self::prepare_outgoing), which names a
/// processed copy to transmit instead of the original).
pub trait FileServices: Send + Sync + 'static {
    /// Checks an offered file; a refusal becomes the default SFNA.
    fn check_incoming(&self, sfid: &Sfid) -> Result<(), ServiceRefusal>;

    /// Post-processes a received file that uses file services (runs on the blocking pool).
    /// The result must be left at `data` and be durable: rewrite it in place, or write a new
    /// file, fsync it and rename it over `data`. The runtime then renames `data` into place.
    fn finish_incoming(&self, sfid: &Sfid, data: &Path) -> Result<(), ServiceFailure> {
        let _ = (sfid, data);
        Ok(())
    }

    /// Fills the service fields of an outgoing SFID; `Ok(Some(path))` transmits that file
    /// (e.g. a signed and encrypted copy) instead of the original. The runtime owns the copy:
    /// it is sent as U from position 0 and deleted when the transfer ends.
    fn prepare_outgoing(&self, sfid: &mut Sfid, source: &Path) -> io::Result<Option<PathBuf>>;

    /// What the runtime calls for a received file with file services or a signed-EERP
    /// request: [`finish_incoming`](Self::finish_incoming), plus the hash of the transmitted
    /// file with SFIDCIPH's algorithm when SFIDSIGN asks for a signed EERP (`None` otherwise).
    /// The default hashes `data` first (one more read of the file); an implementation that
    /// reads the data anyway computes it on the way.
    fn finish_incoming_with_hash(
        &self,
        sfid: &Sfid,
        data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        let hash = transmitted_hash(sfid, data).map_err(|e| ServiceFailure {
            reason: oftp_proto::codec::EfnaReason::ACCESS_METHOD_FAILURE,
            text: format!("cannot read the received file: {e}"),
        })?;
        if sfid.has_file_services() {
            self.finish_incoming(sfid, data)?;
        }
        Ok(hash)
    }

    /// What the runtime calls to send a file: [`prepare_outgoing`](Self::prepare_outgoing),
    /// plus the hash of the transmitted file when the SFID asks for a signed EERP (to check
    /// the partner's signed response). The default hashes the transmitted file afterwards.
    fn prepare_outgoing_with_hash(
        &self,
        sfid: &mut Sfid,
        source: &Path,
    ) -> io::Result<(Option<PathBuf>, Option<Vec<u8>>)> {
        let copy = self.prepare_outgoing(sfid, source)?;
        let hash = transmitted_hash(sfid, copy.as_deref().unwrap_or(source))?;
        Ok((copy, hash))
    }

    /// What the runtime calls for a received file that uses file services, as soon as the
    /// file is accepted (on a thread of its own): `received` yields the transmitted bytes from
    /// the first octet while they arrive, and ends only when the complete file is stored (an
    /// error if the transfer breaks off). Opening the file while it arrives overlaps the work
    /// with the transfer. The opened file must be left at `data`, durable, once `received` has
    /// ended (as [`finish_incoming`](Self::finish_incoming) leaves it). Returns what
    /// [`finish_incoming_with_hash`](Self::finish_incoming_with_hash) returns.
    ///
    /// The default waits for the end of the stream, then calls
    /// [`finish_incoming_with_hash`](Self::finish_incoming_with_hash) on the stored file.
    fn open_incoming(
        &self,
        sfid: &Sfid,
        received: &mut (dyn io::Read + Send),
        data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        io::copy(received, &mut io::sink()).map_err(|e| ServiceFailure {
            reason: oftp_proto::codec::EfnaReason::ACCESS_METHOD_FAILURE,
            text: e.to_string(),
        })?;
        self.finish_incoming_with_hash(sfid, data)
    }

    /// What the runtime calls to send a file: fills the SFID's service fields (SFIDFSIZ may
    /// be an estimate, as RFC 5024 allows) and says how the file is transmitted: as it is, or
    /// processed by a [`Seal`] that the runtime runs on a thread of its own while the
    /// processed bytes are sent (always from position 0: a processed form differs at every
    /// attempt).
    ///
    /// The default calls [`prepare_outgoing_with_hash`](Self::prepare_outgoing_with_hash) and
    /// streams the processed copy from its file (deleting it afterwards).
    fn stream_outgoing(&self, sfid: &mut Sfid, source: &Path) -> io::Result<OutgoingPlan> {
        let (copy, file_hash) = self.prepare_outgoing_with_hash(sfid, source)?;
        Ok(match copy {
            None => OutgoingPlan::AsIs { file_hash },
            Some(copy) => {
                // The copy is the runtime's: removed once sent, or when the plan is dropped
                // unsent (the partner refused the file).
                let copy = RemoveOnDrop(copy);
                OutgoingPlan::Processed(Box::new(move |out: &mut (dyn io::Write + Send)| {
                    let mut f = std::fs::File::open(&copy.0)?;
                    io::copy(&mut f, out)?;
                    Ok(file_hash)
                }))
            }
        })
    }
}

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Produces the processed form of an outgoing file into the writer it is given and returns
/// the hash of the bytes written when the SFID asks for a signed EERP.
pub type Seal = Box<dyn FnOnce(&mut (dyn io::Write + Send)) -> io::Result<Option<Vec<u8>>> + Send>;

/// How an outgoing file is transmitted (see [`FileServices::stream_outgoing`]).
pub enum OutgoingPlan {
    /// The file itself; the hash of it when the SFID asks for a signed EERP.
    AsIs {
        /// Hash of the file with the suite's algorithm (for checking a signed EERP).
        file_hash: Option<Vec<u8>>,
    },
    /// Its processed form, produced while it is sent.
    Processed(Seal),
}

impl std::fmt::Debug for OutgoingPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AsIs { file_hash } => f
                .debug_struct("AsIs")
                .field("file_hash", file_hash)
                .finish(),
            Self::Processed(_) => f.write_str("Processed(..)"),
        }
    }
}

/// The hash of a transmitted file for a signed EERP (RFC 5024 5.3.13: the algorithm of the
/// SFID's cipher suite), or `None` when the SFID does not ask for a signed EERP.
pub(crate) fn transmitted_hash(sfid: &Sfid, path: &Path) -> io::Result<Option<Vec<u8>>> {
    // Without a usable suite there is no hash to sign (a security context refuses such an
    // offer with SFNA 15 before this point).
    let Some(suite) = sfid
        .signed_eerp
        .then(|| oftp_security::CipherSuite::from_code(sfid.cipher_suite.0).ok())
        .flatten()
    else {
        return Ok(None);
    };
    let file = std::fs::File::open(path)?;
    suite
        .hash()
        .digest_reader(io::BufReader::with_capacity(64 * 1024, file))
        .map(Some)
}

/// Shared file services (e.g. one [`SecurityContext`](crate::security::SecurityContext) for
/// a server and its partners' clients).
impl<T: FileServices> FileServices for std::sync::Arc<T> {
    fn check_incoming(&self, sfid: &Sfid) -> Result<(), ServiceRefusal> {
        (**self).check_incoming(sfid)
    }

    fn finish_incoming(&self, sfid: &Sfid, data: &Path) -> Result<(), ServiceFailure> {
        (**self).finish_incoming(sfid, data)
    }

    fn prepare_outgoing(&self, sfid: &mut Sfid, source: &Path) -> io::Result<Option<PathBuf>> {
        (**self).prepare_outgoing(sfid, source)
    }

    fn finish_incoming_with_hash(
        &self,
        sfid: &Sfid,
        data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        (**self).finish_incoming_with_hash(sfid, data)
    }

    fn prepare_outgoing_with_hash(
        &self,
        sfid: &mut Sfid,
        source: &Path,
    ) -> io::Result<(Option<PathBuf>, Option<Vec<u8>>)> {
        (**self).prepare_outgoing_with_hash(sfid, source)
    }

    fn open_incoming(
        &self,
        sfid: &Sfid,
        received: &mut (dyn io::Read + Send),
        data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        (**self).open_incoming(sfid, received, data)
    }

    fn stream_outgoing(&self, sfid: &mut Sfid, source: &Path) -> io::Result<OutgoingPlan> {
        (**self).stream_outgoing(sfid, source)
    }
}

/// No file services: plain files only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFileServices;

impl FileServices for NoFileServices {
    fn check_incoming(&self, sfid: &Sfid) -> Result<(), ServiceRefusal> {
        let refuse = |reason, what: &str| {
            Err(ServiceRefusal {
                reason,
                text: format!("{what} files are not supported yet"),
            })
        };
        match sfid.security {
            SecurityLevel::NONE => {}
            SecurityLevel::SIGNED => return refuse(SfnaReason::SIGNED_FILE_NOT_ALLOWED, "signed"),
            _ => return refuse(SfnaReason::ENCRYPTED_FILE_NOT_ALLOWED, "encrypted"),
        }
        if sfid.compression != FileCompression::NONE {
            return refuse(SfnaReason::COMPRESSION_NOT_ALLOWED, "compressed");
        }
        Ok(())
    }

    /// No security: no hash is recorded, so an SFIDSIGN request gets an unsigned EERP (the
    /// partner decides what that is worth) rather than none.
    fn finish_incoming_with_hash(
        &self,
        _sfid: &Sfid,
        _data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        Ok(None)
    }

    fn prepare_outgoing(&self, sfid: &mut Sfid, _source: &Path) -> io::Result<Option<PathBuf>> {
        sfid.security = SecurityLevel::NONE;
        sfid.compression = FileCompression::NONE;
        sfid.cipher_suite = oftp_proto::codec::CipherSuite::NONE;
        sfid.envelope = oftp_proto::codec::FileEnvelope::NONE;
        sfid.signed_eerp = false;
        Ok(None)
    }
}
