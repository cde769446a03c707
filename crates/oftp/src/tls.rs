//! TLS transport (RFC 5024 section 8: OFTP over TLS, port 6619): a [`TlsAcceptor`] for the
//! server and a [`TlsConnector`] for the client, plugged into the session driver through the
//! [`Acceptor`] / [`Connector`] seams.
//!
//! - rustls 0.23 with the aws-lc-rs provider, TLS 1.2 and 1.3 only (RFC 8996 retired 1.0/1.1;
//!   Odette OP09 asks for 1.2 with forward secrecy, which every rustls 1.2 suite has).
//! - Certificates and keys load through `oftp-security` ([`TlsIdentity::load`]): PEM or DER
//!   certificate and key files (PKCS#1, PKCS#8, encrypted PKCS#8) or PKCS#12, with the password
//!   from a file or the environment; so one key file can serve TLS and CMS.
//! - Server hooks, modelled on the seed: [`TlsAcceptor::on_connection_request`]
//!   (`SSLConnectionRequest`: see the client's hello, choose the certificate for this
//!   connection), [`TlsAcceptor::on_client_certificate`] (`SSLClientAuthentication`: see the
//!   client certificate and its validation status, accept or refuse) and
//!   [`TlsAcceptor::on_status`] (`SSLStatus`). They are plain closures because they need no
//!   I/O and run inside the handshake, before a session (and its [`Handler`](crate::Handler))
//!   exists.
//! - Client: the server is verified against trusted CA certificates (chain and host name) or
//!   against pinned certificates (SHA-256 thumbprints; name not checked), optionally with our
//!   client certificate.
//!
//! The responder sends SSRM only after the handshake (the session starts on the finished TLS
//! stream), and sessions over TLS accept OFTP 2.0 only ([`Acceptor::requires_v2`]).
//!
//! Not here: OFTP itself, secure authentication (SECD/AUCH/AURP, which runs inside the session
//! and is independent of TLS).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use oftp_security::{Certificate, Identity, TrustPolicy, TrustStatus};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, SignatureScheme};
use tokio::net::TcpStream;

use crate::security::{IdentityConfig, SecurityConfigError};
use crate::transport::{Acceptor, Connector};

/// Well-known OFTP port over TLS (RFC 5024 section 8, seed `LocalPort` with `UseSSL`).
pub const DEFAULT_TLS_PORT: u16 = 6619;

/// A TLS setup problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate or key could not be loaded.
    #[error(transparent)]
    Load(#[from] SecurityConfigError),
    /// A CA or pinned certificate file could not be read.
    #[error("{what}: {source}")]
    Certificate {
        /// Which file.
        what: String,
        /// The problem.
        #[source]
        source: oftp_security::Error,
    },
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client side has neither trusted CAs nor pinned certificates.
    #[error("TLS client needs trusted CA certificates or a pinned server certificate")]
    NoServerTrust,
}

/// A certificate chain and its private key for TLS.
#[derive(Clone)]
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivatePkcs8KeyDer<'static>>,
    subject: String,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("subject", &self.subject)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// From a loaded identity (certificate, key and the chain stored with it).
    pub fn from_identity(identity: &Identity) -> Self {
        let mut chain = vec![CertificateDer::from(identity.certificate().der().to_vec())];
        chain.extend(
            identity
                .chain()
                .iter()
                .filter(|c| !c.is_self_issued())
                .map(|c| CertificateDer::from(c.der().to_vec())),
        );
        Self {
            chain,
            key: Arc::new(PrivatePkcs8KeyDer::from(
                identity.private_key_pkcs8_der().to_vec(),
            )),
            subject: identity.certificate().subject().to_owned(),
        }
    }

    /// Loads it as configured (PKCS#12, or PEM/DER certificate and key files).
    pub fn load(config: &IdentityConfig) -> Result<Self, TlsError> {
        Ok(Self::from_identity(&config.load("TLS certificate")?))
    }

    /// The subject of the end-entity certificate.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.as_ref().clone_key())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// What the client's hello says (seed `SSLConnectionRequest` parameters).
#[derive(Debug, Clone)]
pub struct TlsHello {
    /// The client's address.
    pub peer: SocketAddr,
    /// SNI host name, if sent.
    pub server_name: Option<String>,
    /// Cipher suites the client offers (seed `SupportedCipherSuites`).
    pub cipher_suites: Vec<String>,
    /// Signature schemes the client accepts (seed `SupportedSignatureAlgs`).
    pub signature_schemes: Vec<String>,
}

/// A client certificate presented during the handshake (seed `SSLClientAuthentication`).
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// The client's address.
    pub peer: SocketAddr,
    /// The certificate (DER: seed `CertEncoded`).
    pub certificate: Certificate,
    /// Validation against the trusted CAs, expiry and CRLs (seed `Status`): `Ok` with the
    /// trust status, or the reason it failed.
    pub status: Result<TrustStatus, String>,
}

impl ClientCertificate {
    /// The default decision: accept exactly when validation passed.
    pub fn default_decision(&self) -> bool {
        self.status.is_ok()
    }
}

/// A step of a TLS handshake (seed `SSLStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsStatus {
    /// The peer's address.
    pub peer: SocketAddr,
    /// What happened, ready for a log.
    pub message: String,
}

/// Whether the server asks for client certificates (seed `SSLAuthenticateClients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Do not ask.
    #[default]
    Off,
    /// Ask; a client without one may continue.
    Optional,
    /// Ask; a client without one is refused.
    Required,
}

type HelloHook = Arc<dyn Fn(&TlsHello) -> Option<TlsIdentity> + Send + Sync>;
type ClientCertHook = Arc<dyn Fn(&ClientCertificate) -> bool + Send + Sync>;
type StatusHook = Arc<dyn Fn(&TlsStatus) + Send + Sync>;

/// Server side of TLS: performs the handshake on each accepted TCP connection.
#[derive(Clone)]
pub struct TlsAcceptor {
    identity: TlsIdentity,
    default_config: Arc<rustls::ServerConfig>,
    client_auth: ClientAuth,
    trust: Arc<TrustPolicy>,
    on_hello: Option<HelloHook>,
    on_client_cert: Option<ClientCertHook>,
    on_status: Option<StatusHook>,
    handshake_timeout: std::time::Duration,
    bind_client_certificates: bool,
}

/// How long a TLS handshake may take before the connection is dropped (a peer that connects
/// and says nothing must not hold a connection slot).
pub const DEFAULT_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("identity", &self.identity)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// A server with this certificate, no client authentication.
    pub fn new(identity: TlsIdentity) -> Result<Self, TlsError> {
        let trust = Arc::new(TrustPolicy::new());
        let default_config = server_config(&identity, ClientAuth::Off)?;
        Ok(Self {
            identity,
            default_config,
            client_auth: ClientAuth::Off,
            trust,
            on_hello: None,
            on_client_cert: None,
            on_status: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            bind_client_certificates: false,
        })
    }

    /// Changes the handshake timeout (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Asks clients for certificates; `trust` validates them (expiry, chain to its CAs,
    /// CRLs) for [`ClientCertificate::status`]. Without an
    /// [`on_client_certificate`](Self::on_client_certificate) hook, a certificate is accepted
    /// exactly when it validates.
    pub fn client_auth(mut self, mode: ClientAuth, trust: TrustPolicy) -> Result<Self, TlsError> {
        self.client_auth = mode;
        self.trust = Arc::new(trust);
        self.default_config = server_config(&self.identity, mode)?;
        Ok(self)
    }

    /// Seed `SSLConnectionRequest`: sees each client hello and may return another certificate
    /// for this connection (`None`: the default one).
    pub fn on_connection_request(
        mut self,
        hook: impl Fn(&TlsHello) -> Option<TlsIdentity> + Send + Sync + 'static,
    ) -> Self {
        self.on_hello = Some(Arc::new(hook));
        self
    }

    /// Seed `SSLClientAuthentication`: decides on a presented client certificate.
    pub fn on_client_certificate(
        mut self,
        hook: impl Fn(&ClientCertificate) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.on_client_cert = Some(Arc::new(hook));
        self
    }

    /// Binds client certificates to partners: a session on a connection whose client
    /// presented a certificate must log in (SSID) as the partner that owns it (the partner's
    /// `tls_client_cert`, else its authentication certificate, in the server's
    /// [`SecurityContext`](crate::security::SecurityContext)); another SSID, or a server without
    /// a security context, is refused with ESID 03. Connections without a client certificate
    /// (client authentication `Optional`) are not affected.
    pub fn bind_client_certificates(mut self, bind: bool) -> Self {
        self.bind_client_certificates = bind;
        self
    }

    /// Seed `SSLStatus`: handshake progress.
    pub fn on_status(mut self, hook: impl Fn(&TlsStatus) + Send + Sync + 'static) -> Self {
        self.on_status = Some(Arc::new(hook));
        self
    }

    fn status(&self, peer: SocketAddr, message: String) {
        tracing::debug!(%peer, "{message}");
        if let Some(h) = &self.on_status {
            h(&TlsStatus { peer, message });
        }
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        let _ = tcp.set_nodelay(true);
        self.status(peer, "TLS handshake started".into());
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let config = match &self.on_hello {
            None => self.default_config.clone(),
            Some(hook) => {
                let ch = start.client_hello();
                let hello = TlsHello {
                    peer,
                    server_name: ch.server_name().map(str::to_owned),
                    cipher_suites: ch
                        .cipher_suites()
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect(),
                    signature_schemes: ch
                        .signature_schemes()
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect(),
                };
                match hook(&hello) {
                    Some(id) => {
                        self.status(peer, format!("using certificate {}", id.subject()));
                        server_config(&id, self.client_auth).map_err(io::Error::other)?
                    }
                    None => self.default_config.clone(),
                }
            }
        };
        let stream = start.into_stream(config).await?;
        let (_, conn) = stream.get_ref();
        let version = conn
            .protocol_version()
            .map_or_else(|| "unknown".to_owned(), |v| format!("{v:?}"));
        let suite = conn
            .negotiated_cipher_suite()
            .map_or_else(|| "unknown".to_owned(), |s| format!("{:?}", s.suite()));
        let client_cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        let intermediates: Vec<Certificate> = conn
            .peer_certificates()
            .map(|c| {
                c.iter()
                    .skip(1)
                    .filter_map(|d| Certificate::from_der(d).ok())
                    .collect()
            })
            .unwrap_or_default();
        self.status(peer, format!("TLS established: {version}, {suite}"));
        if let Some(der) = client_cert {
            let certificate = Certificate::from_der(&der).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("client certificate: {e}"),
                )
            })?;
            // Validation may download CRLs from distribution points (blocking, bounded by the
            // fetch timeout and by the handshake timeout around us): keep it off the workers.
            let (trust, cert) = (Arc::clone(&self.trust), certificate.clone());
            let status = tokio::task::spawn_blocking(move || {
                trust
                    .check(&cert, &intermediates, SystemTime::now())
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("certificate validation did not finish: {e}")));
            let presented = ClientCertificate {
                peer,
                certificate,
                status,
            };
            let accept = match &self.on_client_cert {
                Some(hook) => hook(&presented),
                None => presented.default_decision(),
            };
            let subject = presented.certificate.subject().to_owned();
            if !accept {
                self.status(peer, format!("client certificate {subject} refused"));
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "client certificate {subject} refused: {}",
                        presented
                            .status
                            .err()
                            .unwrap_or_else(|| "by the application".into())
                    ),
                ));
            }
            self.status(peer, format!("client certificate {subject} accepted"));
        }
        Ok(stream)
    }
}

impl Acceptor for TlsAcceptor {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;

    async fn accept(&self, tcp: TcpStream) -> io::Result<Self::Stream> {
        let peer = tcp
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let result = tokio::time::timeout(self.handshake_timeout, self.handshake(tcp, peer))
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
            });
        match result {
            Ok(s) => Ok(s),
            Err(e) => {
                self.status(peer, format!("TLS handshake failed: {e}"));
                Err(e)
            }
        }
    }

    fn requires_v2(&self) -> bool {
        true
    }

    fn bound_peer_certificate(&self, stream: &Self::Stream) -> Option<Certificate> {
        if !self.bind_client_certificates {
            return None;
        }
        let (_, conn) = stream.get_ref();
        // The handshake has parsed and accepted this certificate already.
        conn.peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| Certificate::from_der(c).ok())
    }
}

fn server_config(
    identity: &TlsIdentity,
    auth: ClientAuth,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder =
        rustls::ServerConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS)?;
    let builder = match auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        mode => builder.with_client_cert_verifier(Arc::new(AnyClientCert {
            mandatory: mode == ClientAuth::Required,
            algorithms: provider().signature_verification_algorithms,
        })),
    };
    Ok(Arc::new(builder.with_single_cert(
        identity.chain.clone(),
        identity.key(),
    )?))
}

/// Proves the client holds the key of the certificate it presents; whether that certificate
/// is acceptable is decided after the handshake (trust policy and the application's hook), so
/// the application sees every certificate, as the seed's event does.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How the client checks the server.
#[derive(Debug, Clone, Default)]
pub struct ServerTrust {
    roots: Vec<CertificateDer<'static>>,
    pinned: Vec<Vec<u8>>,
}

impl ServerTrust {
    /// Nothing trusted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificates in a PEM bundle or DER file.
    pub fn trust_ca_file(mut self, path: &std::path::Path) -> Result<Self, TlsError> {
        let certs = Certificate::load_all(path).map_err(|source| TlsError::Certificate {
            what: format!("trusted CA file {}", path.display()),
            source,
        })?;
        self.roots
            .extend(certs.iter().map(|c| CertificateDer::from(c.der().to_vec())));
        Ok(self)
    }

    /// Trusts exactly the server certificate in this file (no chain or name check).
    pub fn pin_file(mut self, path: &std::path::Path) -> Result<Self, TlsError> {
        let cert = Certificate::load(path).map_err(|source| TlsError::Certificate {
            what: format!("pinned server certificate {}", path.display()),
            source,
        })?;
        self.pinned.push(cert.thumbprint_sha256());
        Ok(self)
    }

    /// Trusts exactly the server certificate with this SHA-256 thumbprint (hex, `:` allowed).
    pub fn pin_sha256(mut self, hex: &str) -> Result<Self, TlsError> {
        let clean: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        if clean.len() != 64 || clean.len() != hex.chars().filter(|c| *c != ':').count() {
            return Err(TlsError::Rustls(rustls::Error::General(format!(
                "pinned thumbprint {hex:?} is not 32 hex bytes"
            ))));
        }
        let bytes = (0..32)
            .map(|i| u8::from_str_radix(&clean[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        self.pinned.push(bytes);
        Ok(self)
    }
}

/// How we call a partner over TLS (the `tls` table of a partner in the `oftp` configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerTls {
    /// Call this partner over TLS.
    pub enabled: bool,
    /// Name to verify the server certificate against (default: the host of the address).
    pub server_name: Option<String>,
    /// Trust exactly this server certificate (no chain or name check).
    pub pinned_cert: Option<std::path::PathBuf>,
    /// CA files for the server certificate (default: our trusted CAs).
    pub trusted_cas: Vec<std::path::PathBuf>,
    /// Present our certificate (client authentication).
    pub client_certificate: bool,
}

/// Client side of TLS: connects and verifies the server.
#[derive(Clone)]
pub struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    server_name: Option<String>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A client verifying the server with `trust`, optionally presenting `identity`.
    pub fn new(trust: ServerTrust, identity: Option<&TlsIdentity>) -> Result<Self, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)?;
        let builder = if !trust.pinned.is_empty() {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedServer {
                    pinned: trust.pinned,
                    algorithms: provider().signature_verification_algorithms,
                }))
        } else if !trust.roots.is_empty() {
            let mut store = rustls::RootCertStore::empty();
            for r in trust.roots {
                store.add(r)?;
            }
            builder.with_root_certificates(store)
        } else {
            return Err(TlsError::NoServerTrust);
        };
        let config = match identity {
            Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key())?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: None,
        })
    }

    /// The name to verify the server certificate against (default: the host of the address).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }
}

impl Connector for TlsConnector {
    type Stream = tokio_rustls::client::TlsStream<TcpStream>;

    async fn connect(&self, addr: &str) -> io::Result<Self::Stream> {
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => host_of(addr).to_owned(),
        };
        let name = ServerName::try_from(host.clone()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a valid TLS server name"),
            )
        })?;
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        tokio::time::timeout(DEFAULT_HANDSHAKE_TIMEOUT, self.inner.connect(name, tcp))
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
            })
            .map_err(|e| {
                // Only `PinnedServer` gives this rustls error: say it in its terms.
                let unpinned = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| {
                        matches!(
                            r,
                            rustls::Error::InvalidCertificate(
                                rustls::CertificateError::ApplicationVerificationFailure
                            )
                        )
                    });
                if unpinned {
                    io::Error::new(
                        e.kind(),
                        "TLS handshake refused: the server's certificate is not the pinned one",
                    )
                } else if e.kind() == io::ErrorKind::TimedOut {
                    e
                } else {
                    io::Error::new(e.kind(), format!("TLS handshake failed: {e}"))
                }
            })
    }

    fn addresses(stream: &Self::Stream) -> Option<(SocketAddr, SocketAddr)> {
        crate::transport::tcp_addresses(stream.get_ref().0)
    }
}

/// `host` of `host:port`, `[v6]:port` or a bare host.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    }
}

#[derive(Debug)]
struct PinnedServer {
    pinned: Vec<Vec<u8>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = Certificate::from_der(end_entity)
            .map_err(|e| rustls::Error::General(format!("server certificate: {e}")))?;
        let print = cert.thumbprint_sha256();
        if !self.pinned.contains(&print) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        if !cert.is_time_valid(SystemTime::now()) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("example.com:6619"), "example.com");
        assert_eq!(host_of("127.0.0.1:6619"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6619"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
    }

    #[test]
    fn pins_must_be_sha256_hex() {
        assert!(ServerTrust::new().pin_sha256("ab").is_err());
        assert!(ServerTrust::new().pin_sha256(&"zz".repeat(32)).is_err());
        let ok = ServerTrust::new()
            .pin_sha256(&format!("{}CD", "AB:".repeat(31)))
            .unwrap();
        assert_eq!(ok.pinned[0][0], 0xab);
        assert_eq!(ok.pinned[0][31], 0xcd);
    }
}
