//! The REST API under `/api/v1` (issue #12 §1). Every route but the health checks needs a
//! token or a console session ([`crate::auth`]).

use axum::Router;
use axum::routing::get;

use crate::auth::{ApiError, ReadAccess};
use crate::state::AppState;

/// The API's routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/status", get(status))
}

async fn status(
    ReadAccess(_): ReadAccess,
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<oftp_gateway::control::StatusView>, ApiError> {
    state.ctx().ops.status().await.map(axum::Json).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            e.code(),
            e.to_string(),
        )
    })
}
