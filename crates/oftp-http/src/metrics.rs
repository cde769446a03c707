//! `/metrics` in the Prometheus text format (issue #12 §2).

use axum::Router;

use crate::state::AppState;

/// The metrics route.
pub fn router() -> Router<AppState> {
    Router::new()
}
