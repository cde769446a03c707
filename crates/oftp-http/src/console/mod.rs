//! The web console (issue #12 §3): pages and assets embedded in the binary, log-in and
//! log-out; everything it shows and does goes through the API with the session cookie.

use axum::Router;

use crate::state::AppState;

/// The console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
}
