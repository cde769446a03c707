//! The REST API under `/api/v1` (issue #12 §1). Every route needs a token or a console
//! session ([`crate::auth`]); actions need the admin role.
//!
//! Each handler is a thin layer over [`oftp_gateway::control::Operations`] (the same
//! operations as the control socket, so every front end shows the same fields) or the
//! [`oftp_gateway::GatewayRuntime`]; what it adds is HTTP: status codes, JSON errors, the
//! streamed upload ([`upload`]) and live events as Server-Sent Events ([`events`]).
//!
//! Errors are always the JSON body `{"error": code, "message": text}` ([`ApiError`]):
//! [`ops_error`] maps the operations' refusals to a status, and [`ApiQuery`] / [`ApiPath`]
//! turn axum's own rejections (a bad query string, a path id that is not a number) into the
//! same shape with 400 instead of axum's plain-text default.
//!
//! The OpenAPI document ([`openapi`], `GET /api/openapi.json`) is generated with `utoipa` from
//! the handlers' `#[utoipa::path]` attributes and the views' `ToSchema` derives; [`routes`]
//! is the one table the router is built from, so a test checks that every route is in it.

pub mod events;
pub mod openapi;
pub mod resources;
pub mod upload;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::routing::{MethodRouter, get, post};
use oftp_gateway::control::OpsError;
use serde::de::DeserializeOwned;

use crate::auth::ApiError;
use crate::state::{AppState, PartnerInfo};

/// Every API route: method, path (as in the OpenAPI document) and handler. The router is built
/// from this table and nothing else.
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    use resources::*;
    vec![
        (Method::GET, "/api/v1/status", get(status)),
        (Method::GET, "/api/v1/partners", get(partners)),
        (Method::GET, "/api/v1/partners/{name}", get(partner)),
        (Method::POST, "/api/v1/partners/{name}/call", post(call)),
        (
            Method::POST,
            "/api/v1/partners/{name}/files",
            post(upload::upload),
        ),
        (Method::GET, "/api/v1/transfers", get(transfers)),
        (Method::GET, "/api/v1/transfers/{id}", get(transfer)),
        (Method::POST, "/api/v1/transfers/{id}/retry", post(retry)),
        (Method::POST, "/api/v1/transfers/{id}/cancel", post(cancel)),
        (Method::GET, "/api/v1/alerts", get(alerts)),
        (
            Method::POST,
            "/api/v1/alerts/{id}/acknowledge",
            post(acknowledge),
        ),
        (Method::GET, "/api/v1/certificates", get(certificates)),
        (Method::GET, "/api/v1/events", get(events::events)),
        (Method::GET, openapi::PATH, get(openapi::document)),
    ]
}

/// The API's routes; a method a route does not have is answered with a JSON 405 too.
pub fn router() -> Router<AppState> {
    routes()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        })
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not a method of {}; the OpenAPI document ({}) lists each route's",
            uri.path(),
            openapi::PATH
        ),
    )
}

/// The HTTP status of an operation's refusal: unknown things 404, a refused state change or a
/// partner without address 409, a bad state name 400, a daemon not (or no longer) running 503,
/// a journal failure 500.
pub fn ops_error(e: OpsError) -> ApiError {
    let status = match e.code() {
        "unknown_transfer" | "unknown_alert" | "unknown_partner" => StatusCode::NOT_FOUND,
        "refused" | "no_address" => StatusCode::CONFLICT,
        "unknown_state" | "unknown_direction" | "bad_cursor" | "bad_transfer_id" => {
            StatusCode::BAD_REQUEST
        }
        "not_running" | "shutting_down" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!("API: {e}");
    }
    ApiError::new(status, e.code(), e.to_string())
}

/// The configured partner `name` (as the daemon's configuration has it now), or 404
/// `unknown_partner` saying where the names are.
pub(crate) fn configured_partner(state: &AppState, name: &str) -> Result<PartnerInfo, ApiError> {
    state
        .partners()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_partner",
                format!(
                    "no partner named {name:?} in the configuration; GET /api/v1/partners lists them"
                ),
            )
        })
}

/// A bad request (400, `bad_request`) saying what is wrong.
pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// `Query<T>` whose rejection is a JSON [`ApiError`] (400).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e: QueryRejection| bad_request(e.body_text()))
    }
}

/// `Path<T>` whose rejection is a JSON [`ApiError`] (400).
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e: PathRejection| bad_request(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oftp_gateway::CallNowError;

    #[test]
    fn operation_refusals_map_to_their_http_status() {
        let cases = [
            (OpsError::UnknownTransfer(1), StatusCode::NOT_FOUND),
            (OpsError::UnknownAlert(1), StatusCode::NOT_FOUND),
            (
                OpsError::Call(CallNowError::UnknownPartner("x".into())),
                StatusCode::NOT_FOUND,
            ),
            (
                OpsError::Refused {
                    id: 1,
                    text: "no".into(),
                },
                StatusCode::CONFLICT,
            ),
            (
                OpsError::Call(CallNowError::NoAddress("x".into())),
                StatusCode::CONFLICT,
            ),
            (OpsError::UnknownState("x".into()), StatusCode::BAD_REQUEST),
            (OpsError::NotRunning, StatusCode::SERVICE_UNAVAILABLE),
            (
                OpsError::Call(CallNowError::ShuttingDown),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                OpsError::Journal("disk".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in cases {
            let code = e.code();
            let api = ops_error(e);
            assert_eq!((api.status, api.code), (status, code));
        }
    }
}
