//! Who is asking, and may they.
//!
//! Two ways in, one [`Principal`]:
//! - an API token, `Authorization: Bearer <token>` ([`tokens`]: stored as SHA-256 hashes, a
//!   token is 256 random bits so a slow hash adds nothing);
//! - a console session, the `oftp_session` cookie ([`sessions`]), set at log-in with a token or
//!   a configured user's password; a request that changes something (any method but GET and
//!   HEAD) must also carry the session's CSRF token in `X-CSRF-Token`.
//!
//! Routes take [`ReadAccess`] or [`AdminAccess`] as an extractor; a missing or wrong
//! credential is `401`, a read-only one on an action `403`, both as a JSON [`ApiError`] body.
//! Secrets (tokens, passwords, cookies) are never logged or echoed.

pub mod sessions;
pub mod tokens;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::state::AppState;

/// The console session cookie's name.
pub const SESSION_COOKIE: &str = "oftp_session";
/// The header that carries a console session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Look only.
    Read,
    /// Look and act (call, retry, cancel, upload, acknowledge).
    Admin,
}

impl Role {
    /// The role's name in files and responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The token's or the user's name (for the log; never the secret).
    pub name: String,
    /// What they may do.
    pub role: Role,
}

/// A refused request, as the JSON body `{"error": code, "message": text}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable name (`unauthorized`, `forbidden`, `csrf`, `unknown_transfer`, ...).
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl ApiError {
    /// A refusal with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token (Authorization: Bearer ...) or console session is needed; \
             `oftp http token create` makes a token",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// The principal of a request, whatever its role.
#[derive(Debug, Clone)]
pub struct ReadAccess(pub Principal);

/// The principal of a request with the admin role.
#[derive(Debug, Clone)]
pub struct AdminAccess(pub Principal);

/// Finds who made the request: a bearer token first, else the session cookie (with its CSRF
/// token on a request that changes something).
pub fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        return state
            .tokens()
            .verify(token.trim())
            .ok_or_else(ApiError::unauthorized);
    }
    let cookie = session_cookie(parts).ok_or_else(ApiError::unauthorized)?;
    let changes = !matches!(parts.method, Method::GET | Method::HEAD);
    let csrf = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    state.sessions().authenticate(&cookie, csrf, changes)
}

/// Compares two secrets in time that does not depend on where they differ.
pub(crate) fn tokens_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of the `oftp_session` cookie, if the request has one.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

impl FromRequestParts<AppState> for ReadAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).map(ReadAccess)
    }
}

impl FromRequestParts<AppState> for AdminAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = authenticate(parts, state)?;
        if p.role != Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{:?} has the read role; this action needs an admin token or user",
                    p.name
                ),
            ));
        }
        Ok(AdminAccess(p))
    }
}
