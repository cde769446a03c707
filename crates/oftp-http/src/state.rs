//! What the daemon hands to the HTTP face ([`HttpContext`]) and the state the routes share
//! ([`AppState`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use oftp::journal::Journal;
use oftp_gateway::GatewayRuntime;
use oftp_gateway::alerts::watchdog::CertificateSource;
use oftp_gateway::control::Operations;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::auth::sessions::Sessions;
use crate::auth::tokens::TokenStore;
use crate::config::HttpSettings;
use crate::metrics::Metrics;

/// One OFTP listener of the daemon, as `/readyz` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// Which one ("plain", "TLS").
    pub kind: &'static str,
    /// Where it listens now; `None` = not listening.
    pub addr: Option<SocketAddr>,
}

/// The daemon's OFTP listeners as they are now (asked at every `/readyz`).
pub type ListenerSource = Arc<dyn Fn() -> Vec<Listener> + Send + Sync>;

/// A partner as the HTTP face shows it: its configuration WITHOUT secrets (no password, no
/// key password), and where an upload for it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PartnerInfo {
    /// The configured name.
    pub name: String,
    /// Its SSID code.
    pub ssid: String,
    /// Where we call it; `None` = it calls us.
    pub address: Option<String>,
    /// Its outbox: an uploaded file is written here (as a temporary dot-name, then renamed),
    /// and the gateway takes it over like any other.
    #[schema(value_type = String)]
    pub outbox: PathBuf,
    /// The rest of its configuration for display, secrets removed by the daemon.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// What the daemon hands to the HTTP face.
#[derive(Clone)]
pub struct HttpContext {
    /// The operations (same as the control socket's).
    pub ops: Operations,
    /// The running gateway (live events, call state).
    pub runtime: Arc<dyn GatewayRuntime>,
    /// The journal (the same one the gateway and the server use).
    pub journal: Arc<dyn Journal>,
    /// The data directory (readiness: free space, journal writable).
    pub data_dir: PathBuf,
    /// The configured partners.
    pub partners: Vec<PartnerInfo>,
    /// Our certificates and the partners', for expiry display and metrics.
    pub certificates: CertificateSource,
    /// Free space below this many MiB makes `/readyz` fail (0 = not checked).
    pub disk_low_mib: u64,
    /// The OFTP listeners: `/readyz` fails while one does not listen.
    pub listeners: ListenerSource,
}

/// The state every route shares; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    ctx: HttpContext,
    settings: HttpSettings,
    partners: RwLock<Vec<PartnerInfo>>,
    tokens: TokenStore,
    sessions: Sessions,
    shutdown: CancellationToken,
    metrics: Metrics,
}

impl AppState {
    /// The shared state of a server with `settings` over `ctx`.
    pub fn new(ctx: HttpContext, settings: HttpSettings, tokens: TokenStore) -> Self {
        let partners = RwLock::new(ctx.partners.clone());
        let metrics = Metrics::new(ctx.partners.iter().map(|p| p.name.as_str()));
        let sessions = Sessions::new(std::time::Duration::from_secs(
            settings.session_minutes.saturating_mul(60),
        ));
        Self(Arc::new(Inner {
            ctx,
            settings,
            partners,
            tokens,
            sessions,
            shutdown: CancellationToken::new(),
            metrics,
        }))
    }

    /// What the daemon handed over.
    pub fn ctx(&self) -> &HttpContext {
        &self.0.ctx
    }

    /// `[http]`.
    pub fn settings(&self) -> &HttpSettings {
        &self.0.settings
    }

    /// The configured partners as they are now (SIGHUP replaces them).
    pub fn partners(&self) -> Vec<PartnerInfo> {
        self.0
            .partners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the partners (after a reload).
    pub fn set_partners(&self, partners: Vec<PartnerInfo>) {
        *self.0.partners.write().unwrap_or_else(|e| e.into_inner()) = partners;
    }

    /// The API tokens.
    pub fn tokens(&self) -> &TokenStore {
        &self.0.tokens
    }

    /// The console sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }

    /// Cancelled when the server shuts down: long-lived responses (live event streams) end
    /// on it, so a graceful shutdown never waits for a client that stays connected.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    /// The live counters of `/metrics` (fed by [`crate::metrics::feed`]).
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
}

/// `value` with every object key that names a secret removed, at any depth: keys containing
/// `password`, `secret`, `token` or `passphrase` (a partner's password, our password for it,
/// key passwords, webhook secrets). The daemon builds [`PartnerInfo::settings`] with it.
pub fn without_secrets(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    !["password", "secret", "token", "passphrase"]
                        .iter()
                        .any(|s| k.contains(s))
                })
                .map(|(k, v)| (k, without_secrets(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_secrets).collect()),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_removed_at_any_depth() {
        let v = serde_json::json!({
            "password": "p", "our_password": "q", "sfid": "O1",
            "security": {"key_password_file": "k", "cert": "c.pem"},
            "list": [{"webhook_secret": "s", "url": "u"}]
        });
        let text = without_secrets(v).to_string();
        for gone in ["\"p\"", "\"q\"", "\"k\"", "\"s\""] {
            assert!(!text.contains(gone), "{text}");
        }
        for kept in ["O1", "c.pem", "\"u\""] {
            assert!(text.contains(kept), "{text}");
        }
    }
}
