//! `GET /login`, `POST /login`, `POST /logout` and `GET /api/v1/session`.
//!
//! The log-in form posts `token`, or `user` and `password` (no script needed). A success sets
//! the `oftp_session` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` when the
//! server runs TLS) and sends the browser to the console. A failure shows the form again with
//! one message for every wrong credential (a wrong password and an unknown user look the
//! same). The form itself is protected from cross-site posts: besides `SameSite=Strict`,
//! `POST /login` refuses a browser's request whose `Sec-Fetch-Site` or `Origin` says it
//! comes from another site.

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::{ConnectInfo, Form, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::auth::{ApiError, CSRF_HEADER, Principal, Role, SESSION_COOKIE, session_cookie};
use crate::state::AppState;

/// The fields of the log-in form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LoginForm {
    token: String,
    user: String,
    password: String,
}

/// `GET /login`.
pub(super) async fn login_page() -> Response {
    page(StatusCode::OK, None)
}

/// The log-in page with `message` (HTML-escaped) above the forms.
fn page(status: StatusCode, message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!("<p class=\"message\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let html = super::assets::page("login.html").replace("<!--message-->", &message);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Whether a browser says this request comes from another site. `Sec-Fetch-Site` decides
/// when it is there (browsers set it and pages cannot); else `Origin` must be this server
/// (`null`, sent for opaque origins, is another site). Neither header = not a browser's
/// cross-site request: scripts and curl may log in.
fn cross_site(headers: &HeaderMap, tls: bool) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match get("origin") {
        None => false,
        Some(origin) => {
            let scheme = if tls { "https" } else { "http" };
            let host = get("host").unwrap_or_default();
            origin != format!("{scheme}://{host}")
        }
    }
}

/// The client's address (one bucket for all when the server was not given addresses).
fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<crate::server::ClientAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0.ip())
}

/// `POST /login`.
pub(super) async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    let tls = state.settings().tls_certificate.is_some();
    if cross_site(&parts.headers, tls) {
        return page(
            StatusCode::FORBIDDEN,
            Some(
                "log-in refused: the form was sent from another site; open this console's own log-in page",
            ),
        );
    }
    let ip = client_ip(&parts);
    if let Err(wait) = state.sessions().login_allowed(ip) {
        let secs = wait.as_secs() + 1;
        let mut r = page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "too many failed log-ins from your address; wait {secs} seconds and try again"
            )),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let principal = if !form.token.is_empty() {
        state.tokens().verify(form.token.trim())
    } else if !form.user.is_empty() && !form.password.is_empty() {
        // Argon2 takes ~19 MiB and tens of milliseconds a check: at most two at once, so a
        // flood of log-ins from many addresses cannot take the daemon's memory or cores.
        static CHECKING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let _turn = CHECKING.acquire().await;
        let users = state.settings().users.clone();
        tokio::task::spawn_blocking(move || {
            super::users::verify(&users, &form.user, &form.password)
        })
        .await
        .ok()
        .flatten()
    } else {
        return page(
            StatusCode::BAD_REQUEST,
            Some("enter an API token, or a user name and its password"),
        );
    };
    let Some(principal) = principal else {
        state.sessions().login_failed(ip);
        tracing::warn!(%ip, "console log-in refused: wrong token, user name or password");
        return page(
            StatusCode::UNAUTHORIZED,
            Some("wrong token, or wrong user name or password"),
        );
    };
    tracing::info!(name = %principal.name, role = principal.role.as_str(), "console log-in");
    let new = state.sessions().start(principal);
    (
        [(header::SET_COOKIE, session_cookie_header(&new.id, tls))],
        Redirect::to("/"),
    )
        .into_response()
}

/// The `Set-Cookie` value of a new session `id`: out of scripts' reach, never sent along
/// with another site's request, and over HTTPS only when the server runs TLS.
fn session_cookie_header(id: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

/// `POST /logout`: ends the session (its CSRF token is needed, as for every action) and
/// clears the cookie.
pub(super) async fn logout(State(state): State<AppState>, parts: Parts) -> Response {
    if let Some(id) = session_cookie(&parts) {
        let csrf = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        // An ended session only needs its cookie cleared; a live one needs its CSRF token.
        if let Err(e) = state.sessions().authenticate(&id, csrf, true)
            && e.status != StatusCode::UNAUTHORIZED
        {
            return e.into_response();
        }
        state.sessions().end(&id);
    }
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
    )
        .into_response()
}

/// `GET /api/v1/session`'s answer.
#[derive(Debug, serde::Serialize)]
pub(super) struct SessionView {
    name: String,
    role: Role,
    /// The value for `X-CSRF-Token` (`None` for a bearer token, which needs none).
    csrf: Option<String>,
}

/// `GET /api/v1/session`: who is logged in, and the CSRF token the console sends back.
pub(super) async fn session(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<axum::Json<SessionView>, ApiError> {
    let (Principal { name, role }, csrf) = match session_cookie(&parts) {
        Some(id) if !parts.headers.contains_key(header::AUTHORIZATION) => state
            .sessions()
            .describe(&id)
            .map(|(p, csrf)| (p, Some(csrf)))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the console session ended; log in again",
                )
            })?,
        _ => (crate::auth::authenticate(&parts, &state)?, None),
    };
    Ok(axum::Json(SessionView { name, role, csrf }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_under_tls() {
        assert_eq!(
            session_cookie_header("abc", false),
            "oftp_session=abc; HttpOnly; SameSite=Strict; Path=/"
        );
        assert_eq!(
            session_cookie_header("abc", true),
            "oftp_session=abc; HttpOnly; SameSite=Strict; Path=/; Secure"
        );
    }

    #[test]
    fn a_log_in_post_is_cross_site_by_sec_fetch_site_else_by_origin() {
        let host = ("host", "127.0.0.1:8305");
        // Chromium under a no-referrer policy sends `Origin: null` on a same-origin form.
        let same = headers(&[host, ("sec-fetch-site", "same-origin"), ("origin", "null")]);
        assert!(!cross_site(&same, false));
        let other = headers(&[
            host,
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://127.0.0.1:8305"),
        ]);
        assert!(cross_site(&other, false));
        assert!(!cross_site(
            &headers(&[host, ("origin", "http://127.0.0.1:8305")]),
            false
        ));
        assert!(
            cross_site(&headers(&[host, ("origin", "http://127.0.0.1:8305")]), true),
            "TLS: https only"
        );
        assert!(cross_site(&headers(&[host, ("origin", "null")]), false));
        assert!(!cross_site(&headers(&[host]), false), "curl");
    }
}
