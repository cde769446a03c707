//! Binding, serving and stopping the HTTP face.
//!
//! With `[http] tls_certificate` and `tls_key` set (PEM, relative to the data directory) it
//! serves HTTPS: rustls with the aws-lc-rs provider (as the OFTP listener), TLS 1.2 and 1.3,
//! the certificate chain and key read with `rustls-pki-types`' `PemObject`. Each handshake runs
//! in a task of its own (bounded by [`HANDSHAKE_TIMEOUT`]), so a slow or silent client never
//! holds up the others; a failed handshake is logged at debug level and dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::auth::tokens::{TokenError, TokenStore};
use crate::config::HttpSettings;
use crate::state::{AppState, HttpContext, PartnerInfo};

/// Why the HTTP face cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address cannot be bound.
    #[error(
        "[http] listen = \"{addr}\": {source}; choose a free address or set [http] enabled = false"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The tokens file cannot be used.
    #[error(transparent)]
    Tokens(#[from] TokenError),
    /// The HTTPS certificate or key cannot be used.
    #[error("[http] {0}")]
    Tls(String),
}

/// How long a client has for its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running HTTP face.
pub struct HttpServer {
    addr: SocketAddr,
    state: AppState,
    stop: CancellationToken,
    task: JoinHandle<()>,
    first_admin_token: Option<String>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Binds `settings.listen` and serves every route over `ctx`. On the first run (no token
    /// yet) an admin token is made; [`first_admin_token`](Self::first_admin_token) has its
    /// secret for the daemon to show once.
    pub async fn start(settings: HttpSettings, ctx: HttpContext) -> Result<Self, HttpError> {
        let tokens = TokenStore::open(&settings.tokens_path(&ctx.data_dir))?;
        // Everything that can refuse the start comes before the first admin token is made: a
        // token made by a start that then fails would never be shown.
        let acceptor = tls_acceptor(&settings, &ctx.data_dir)?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| HttpError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| HttpError::Bind {
            addr: settings.listen,
            source,
        })?;
        let first_admin_token = tokens.ensure_admin(chrono::Utc::now())?;
        // Subscribed before serving: no live event is missed by the metrics.
        let events = ctx.runtime.subscribe();
        let state = AppState::new(ctx, settings, tokens);
        let app = crate::router(state.clone());
        // One token stops accepting, ends the live event streams and the metrics feed.
        let stop = state.shutdown_token().clone();
        tokio::spawn(crate::metrics::feed(
            state.metrics().clone(),
            events,
            stop.clone(),
        ));
        let task = match acceptor {
            None => tokio::spawn(serve(listener, app, stop.clone(), "HTTP")),
            Some(acceptor) => {
                let listener = TlsListener::start(listener, addr, acceptor, stop.clone());
                tokio::spawn(serve(listener, app, stop.clone(), "HTTPS"))
            }
        };
        Ok(Self {
            addr,
            state,
            stop,
            task,
            first_admin_token,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The secret of the admin token made at this start (first run only), to show once.
    pub fn first_admin_token(&self) -> Option<&str> {
        self.first_admin_token.as_deref()
    }

    /// Replaces the partners shown and uploaded to (after a reload).
    pub fn set_partners(&self, partners: Vec<PartnerInfo>) {
        self.state.set_partners(partners);
    }

    /// Stops accepting, lets requests in progress finish (live event streams end), and
    /// returns when the server stopped.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Serves `app` on `listener` (plain TCP or [`TlsListener`]) with each request's
/// [`ClientAddr`] until `stop`, then lets the requests in progress finish.
async fn serve<L>(listener: L, app: axum::Router, stop: CancellationToken, what: &'static str)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    ClientAddr: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let app = app.into_make_service_with_connect_info::<ClientAddr>();
    let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
    if let Err(e) = serve.await {
        tracing::error!("{what} server stopped: {e}");
    }
}

/// The TLS acceptor of `[http] tls_certificate` / `tls_key`, `None` when neither is set.
fn tls_acceptor(
    settings: &HttpSettings,
    data_dir: &Path,
) -> Result<Option<TlsAcceptor>, HttpError> {
    let (cert, key) = match (&settings.tls_certificate, &settings.tls_key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (data_dir.join(c), data_dir.join(k)),
        _ => {
            return Err(HttpError::Tls(
                "tls_certificate and tls_key go together: set both for HTTPS, or neither".into(),
            ));
        }
    };
    let bad = |path: &PathBuf, what: &str, e: &dyn std::fmt::Display| {
        HttpError::Tls(format!("{what} {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&cert, "tls_certificate", &e))?;
    if chain.is_empty() {
        return Err(bad(&cert, "tls_certificate", &"no PEM certificate in it"));
    }
    let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad(&key, "tls_key", &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            bad(
                &cert,
                "tls_certificate and tls_key do not make a usable pair:",
                &e,
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Accepted TCP connections after their TLS handshake, for `axum::serve`.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` until `stop`, each handshake in a task of its own.
    fn start(
        tcp: TcpListener,
        addr: SocketAddr,
        acceptor: TlsAcceptor,
        stop: CancellationToken,
    ) -> Self {
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    () = stop.cancelled() => return,
                    r = tcp.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, then go on.
                            tracing::warn!("HTTPS accept: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "HTTPS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                    }
                });
            }
        });
        Self { ready, addr }
    }
}

/// The client's address of a request (`ConnectInfo<ClientAddr>`), over plain TCP and TLS
/// alike: the console counts failed log-ins per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended: the server is stopping; graceful shutdown ends serving.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
