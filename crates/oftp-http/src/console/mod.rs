//! The web console (issue #12 §3): pages and assets embedded in the binary, log-in and
//! log-out; everything it shows and does goes through the API with the session cookie.
//!
//! - [`assets`]: the embedded files (`crates/oftp-http/assets/`: plain HTML, CSS and one
//!   JavaScript module per page; no build step, nothing fetched from elsewhere);
//! - [`login`]: `GET`/`POST /login`, `POST /logout`, `GET /api/v1/session`;
//! - [`users`]: `[[http.users]]` passwords (Argon2).
//!
//! Every console response carries a strict `Content-Security-Policy` (scripts, styles,
//! images and connections from this origin only; no inline script or style; no framing).

mod assets;
mod login;
pub mod users;

use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::auth::session_cookie;
use crate::state::AppState;

/// The console's `Content-Security-Policy`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/assets/{*path}", get(assets::asset))
        .layer(axum::middleware::map_response(security_headers))
        // The session API answers JSON like the rest of the API (no page headers).
        .route("/api/v1/session", get(login::session))
}

/// `GET /`: the console for a live session, else the log-in page.
async fn index(State(state): State<AppState>, parts: Parts) -> Response {
    let live = session_cookie(&parts).is_some_and(|id| state.sessions().csrf(&id).is_some());
    if !live {
        return Redirect::to("/login").into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        assets::page("index.html"),
    )
        .into_response()
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
