//! Binding, serving and stopping the HTTP face.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
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
}

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
        let first_admin_token = tokens.ensure_admin(chrono::Utc::now())?;
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
        // Subscribed before serving: no live event is missed by the metrics.
        let events = ctx.runtime.subscribe();
        let state = AppState::new(ctx, settings, tokens);
        let app = crate::router(state.clone());
        let stop = CancellationToken::new();
        tokio::spawn(crate::metrics::feed(
            state.metrics().clone(),
            events,
            stop.clone(),
        ));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!("HTTP server stopped: {e}");
            }
        });
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
