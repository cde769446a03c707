//! The HTTP face of `oftp serve` (issue #12): what operators watch and drive the gateway with.
//!
//! - [`api`]: the REST API under `/api/v1` (status, partners, transfers, alerts, actions,
//!   upload, live events) and its OpenAPI document;
//! - [`auth`]: who is asking: API tokens (`Authorization: Bearer`), console sessions (cookie
//!   + CSRF token), roles;
//! - [`console`]: the web console (`/`, assets embedded in the binary);
//! - [`metrics`]: `/metrics` in the Prometheus text format;
//! - [`health`]: `/healthz` and `/readyz` (no token needed);
//! - [`server`]: binding (plain or rustls), serving, shutting down.
//!
//! This crate does not read the journal or drive the gateway by itself: every operation goes
//! through [`oftp_gateway::control::Operations`] (the same operations as the control socket)
//! and live state through [`oftp_gateway::GatewayRuntime`]; [`HttpContext`] is what the daemon
//! hands over.

pub mod api;
pub mod auth;
pub mod config;
pub mod console;
pub mod health;
pub mod metrics;
pub mod server;
pub mod state;

pub use config::HttpSettings;
pub use server::{HttpError, HttpServer};
pub use state::{AppState, HttpContext, Listener, ListenerSource, PartnerInfo, without_secrets};

use axum::Router;

/// Every route of the HTTP face, with the state they share.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::router())
        .merge(metrics::router())
        .merge(health::router())
        .merge(console::router())
        .with_state(state)
}
