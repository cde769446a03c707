//! The loopback redirect listener of interactive logins (RFC 8252 section 7.3).
//!
//! An axum server on the loopback addresses (ephemeral or configured port) waits for the browser to come back
//! from the authorization endpoint. It checks `state`, shows a success or error page, and hands
//! the parameters to the waiting flow exactly once; the wait is bounded.
//!
//! For the implicit grant the token arrives in the URL fragment, which browsers never send to a
//! server: `GET /` then serves a small page whose script posts the fragment to `POST /fragment`
//! (and removes it from the address bar), where it is checked like a query redirect.
//!
//! It listens on 127.0.0.1 and on [::1] with the same port, because the redirect URI says
//! `localhost`, which a browser may resolve to either (on a host without IPv6 loopback, on
//! 127.0.0.1 only).
//!
//! What it does not do: TLS (the seed's `OAuthWebServerSSLEnabled`); loopback redirects over plain
//! HTTP are what the platform expects for native apps.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{oneshot, watch};
use url::Url;

use crate::error::AuthError;
use crate::redirect::{self, parse_params};

/// Where the grant's answer is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseMode {
    /// `?code=...&state=...` (authorization code).
    Query,
    /// `#access_token=...&state=...` (implicit), relayed by the page's script.
    Fragment,
}

/// Pages shown in the browser.
#[derive(Debug, Clone)]
pub(crate) struct Pages {
    pub(crate) success: Option<String>,
    pub(crate) failure: Option<String>,
}

type Outcome = Result<HashMap<String, String>, AuthError>;

struct Shared {
    expected_state: String,
    mode: ResponseMode,
    pages: Pages,
    sender: Mutex<Option<oneshot::Sender<Outcome>>>,
}

/// A running listener; dropping it stops the server.
pub(crate) struct Loopback {
    redirect_uri: String,
    receiver: oneshot::Receiver<Outcome>,
    shutdown: Option<watch::Sender<bool>>,
    server: tokio::task::JoinHandle<()>,
}

impl Loopback {
    /// Binds 127.0.0.1:`port` and [::1] on the same port, and starts serving. The redirect URI
    /// uses `host` (e.g. `localhost`, which a browser may resolve to either address).
    pub(crate) async fn start(
        host: &str,
        port: u16,
        expected_state: String,
        mode: ResponseMode,
        pages: Pages,
    ) -> Result<Self, AuthError> {
        let (v4, v6) = bind_both(port).await?;
        let local = v4.local_addr().map_err(|source| AuthError::Listener {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)).to_string(),
            source,
        })?;
        // No trailing slash, as MSAL sends it and as loopback URIs are usually registered
        // ("http://localhost"); the browser still requests "/".
        let redirect_uri = format!("http://{host}:{}", local.port());
        Url::parse(&redirect_uri).map_err(|e| {
            AuthError::Config(format!(
                "the redirect host \"{host}\" does not form a valid URL: {e}"
            ))
        })?;
        let (sender, receiver) = oneshot::channel();
        let shared = Arc::new(Shared {
            expected_state,
            mode,
            pages,
            sender: Mutex::new(Some(sender)),
        });
        let app = Router::new()
            .route("/", get(on_redirect))
            .route("/fragment", post(on_fragment))
            .with_state(shared);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let serve = |listener: tokio::net::TcpListener| {
            let mut stop = shutdown_rx.clone();
            let app = app.clone();
            async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                });
                if let Err(error) = serve.await {
                    tracing::warn!(%error, "sign-in redirect listener stopped with an error");
                }
            }
        };
        let serve_v4 = serve(v4);
        let serve_v6 = v6.map(serve);
        let server = tokio::spawn(async move {
            match serve_v6 {
                Some(serve_v6) => {
                    tokio::join!(serve_v4, serve_v6);
                }
                None => serve_v4.await,
            }
        });
        tracing::debug!(%redirect_uri, "sign-in redirect listener started");
        Ok(Self {
            redirect_uri,
            receiver,
            shutdown: Some(shutdown),
            server,
        })
    }

    /// The `redirect_uri` to send to the authorization endpoint.
    pub(crate) fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits up to `timeout` for the redirect; returns its checked parameters.
    pub(crate) async fn wait(mut self, timeout: Duration) -> Outcome {
        let outcome = match tokio::time::timeout(timeout, &mut self.receiver).await {
            Ok(Ok(outcome)) => outcome,
            // The sender lives in the server state, which is alive while we are.
            Ok(Err(_)) => Err(AuthError::BrowserTimeout { waited: timeout }),
            Err(_) => Err(AuthError::BrowserTimeout { waited: timeout }),
        };
        self.stop().await;
        outcome
    }

    /// Stops the server, letting the page of the answering request finish (bounded).
    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(true);
        }
        // A browser may keep an idle connection open; graceful shutdown closes idle ones, and
        // the bound keeps a stuck client from holding the login.
        if tokio::time::timeout(Duration::from_secs(2), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn on_redirect(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params = parse_params(query.as_deref().unwrap_or(""));
    let is_answer = ["code", "error", "state", "access_token"]
        .iter()
        .any(|k| params.contains_key(*k));
    if !is_answer {
        return match shared.mode {
            ResponseMode::Fragment => html(StatusCode::OK, FRAGMENT_RELAY_PAGE.to_owned()),
            ResponseMode::Query => html(
                StatusCode::NOT_FOUND,
                page(
                    "Not a sign-in answer",
                    "This address only receives sign-in redirects.",
                ),
            ),
        };
    }
    settle(&shared, params)
}

async fn on_fragment(State(shared): State<Arc<Shared>>, body: String) -> Response {
    if shared.mode != ResponseMode::Fragment {
        return html(
            StatusCode::NOT_FOUND,
            page("Not found", "Nothing to see here."),
        );
    }
    settle(&shared, parse_params(&body))
}

/// Checks an answer, reports it to the flow (first answer only) and picks the page.
fn settle(shared: &Shared, params: HashMap<String, String>) -> Response {
    let sender = match shared.sender.lock() {
        Ok(mut slot) => slot.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    let Some(sender) = sender else {
        return html(
            StatusCode::CONFLICT,
            page(
                "Sign-in already finished",
                "This sign-in attempt has already received an answer. You can close this window.",
            ),
        );
    };
    let outcome = check(shared, params);
    let response = match &outcome {
        Ok(_) => html(
            StatusCode::OK,
            shared.pages.success.clone().unwrap_or_else(|| {
                page(
                    "Signed in",
                    "Sign-in is complete. You can close this window and return to the application.",
                )
            }),
        ),
        Err(error) => html(
            StatusCode::BAD_REQUEST,
            shared
                .pages
                .failure
                .clone()
                .unwrap_or_else(|| page("Sign-in failed", &error.to_string())),
        ),
    };
    // The flow may have given up (timeout) and dropped the receiver; the page is still right.
    let _ = sender.send(outcome);
    response
}

/// Binds 127.0.0.1:`port` and, on the same port, [::1] (`None` when this host has no IPv6
/// loopback). With an ephemeral port a clash on ::1 picks another port (bounded).
async fn bind_both(
    port: u16,
) -> Result<(tokio::net::TcpListener, Option<tokio::net::TcpListener>), AuthError> {
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AuthError::Listener {
                addr: addr.to_string(),
                source,
            })
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let v4 = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        let chosen = v4.local_addr().map_err(|source| AuthError::Listener {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)).to_string(),
            source,
        })?;
        match bind(SocketAddr::from((Ipv6Addr::LOCALHOST, chosen.port()))).await {
            Ok(v6) => return Ok((v4, Some(v6))),
            Err(AuthError::Listener { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::Unsupported
                ) || source.raw_os_error() == Some(97) =>
            {
                // EAFNOSUPPORT / no ::1: IPv4 only, as the browser cannot use IPv6 here either.
                tracing::debug!(error = %source, "no IPv6 loopback; listening on 127.0.0.1 only");
                return Ok((v4, None));
            }
            Err(e) if port == 0 && attempts < 5 => {
                tracing::debug!(error = %e, "port taken on ::1; trying another");
            }
            Err(e) => return Err(e),
        }
    }
}

fn check(shared: &Shared, params: HashMap<String, String>) -> Outcome {
    let wanted = match shared.mode {
        ResponseMode::Query => "code",
        ResponseMode::Fragment => "access_token",
    };
    redirect::check(params, &shared.expected_state, wanted)
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

fn page(title: &str, message: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{t}</h1><p>{m}</p></body></html>",
        t = escape_html(title),
        m = escape_html(message)
    )
}

pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Served at `GET /` for the implicit grant: posts the fragment back, then shows the answer.
pub(crate) const FRAGMENT_RELAY_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Completing sign-in</title></head>
<body style="font-family:sans-serif;margin:3em">
<h1>Completing sign-in&hellip;</h1>
<noscript><p>JavaScript is needed to finish this sign-in method.</p></noscript>
<script>
(function () {
  var fragment = window.location.hash.substring(1);
  // Drop the token from the address bar and history before anything else.
  history.replaceState(null, "", window.location.pathname);
  fetch("/fragment", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: fragment
  }).then(function (r) { return r.text(); })
    .then(function (t) { document.open(); document.write(t); document.close(); })
    .catch(function (e) { document.body.textContent = "Could not complete sign-in: " + e; });
})();
</script>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    fn pages() -> Pages {
        Pages {
            success: None,
            failure: None,
        }
    }

    async fn start(mode: ResponseMode) -> Loopback {
        Loopback::start("127.0.0.1", 0, "expected-state".to_owned(), mode, pages())
            .await
            .expect("listener starts")
    }

    #[tokio::test]
    async fn code_redirect_is_accepted_once() {
        let loopback = start(ResponseMode::Query).await;
        let base = Url::parse(loopback.redirect_uri()).expect("url");
        assert_eq!(base.host_str(), Some("127.0.0.1"));
        let http = reqwest::Client::new();
        let browser = async {
            let stray = http
                .get(base.join("/").expect("url"))
                .send()
                .await
                .expect("get");
            assert_eq!(
                stray.status(),
                404,
                "a visit without an answer is not taken"
            );
            let first = http
                .get(format!("{base}?code=the-code&state=expected-state"))
                .send()
                .await
                .expect("get");
            assert_eq!(first.status(), 200);
            assert!(
                first
                    .text()
                    .await
                    .expect("body")
                    .contains("Sign-in is complete")
            );
        };
        let (outcome, ()) = tokio::join!(loopback.wait(Duration::from_secs(10)), browser);
        let params = outcome.expect("code accepted");
        assert_eq!(params.get("code").map(String::as_str), Some("the-code"));
    }

    #[tokio::test]
    async fn a_browser_that_resolves_localhost_to_ipv6_reaches_the_listener() {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 loopback on this host; nothing to check");
            return;
        }
        let loopback = Loopback::start(
            "localhost",
            0,
            "expected-state".to_owned(),
            ResponseMode::Query,
            pages(),
        )
        .await
        .expect("listener starts");
        let port = Url::parse(loopback.redirect_uri())
            .expect("url")
            .port()
            .expect("port");
        let url = format!("http://[::1]:{port}/?code=c6&state=expected-state");
        let browser = async {
            let page = reqwest::get(url).await.expect("the ::1 listener answers");
            assert_eq!(page.status(), 200);
        };
        let (outcome, ()) = tokio::join!(loopback.wait(Duration::from_secs(10)), browser);
        assert_eq!(
            outcome
                .expect("code accepted")
                .get("code")
                .map(String::as_str),
            Some("c6")
        );
    }

    #[tokio::test]
    async fn wrong_state_gets_an_error_page_and_error() {
        let loopback = start(ResponseMode::Query).await;
        let url = format!("{}/?code=c&state=forged", loopback.redirect_uri());
        let browser = async {
            let page = reqwest::get(url).await.expect("get");
            assert_eq!(page.status(), 400);
            let text = page.text().await.expect("body");
            assert!(text.contains("state mismatch"), "{text}");
        };
        let (outcome, ()) = tokio::join!(loopback.wait(Duration::from_secs(10)), browser);
        assert!(matches!(outcome, Err(AuthError::StateMismatch)));
    }

    #[tokio::test]
    async fn denial_is_reported_with_escaped_description() {
        let loopback = start(ResponseMode::Query).await;
        let url = format!(
            "{}/?error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E&state=expected-state",
            loopback.redirect_uri()
        );
        let browser = async {
            let text = reqwest::get(url)
                .await
                .expect("get")
                .text()
                .await
                .expect("body");
            assert!(text.contains("&lt;b&gt;no&lt;/b&gt;"), "{text}");
            assert!(!text.contains("<b>no</b>"));
        };
        let (outcome, ()) = tokio::join!(loopback.wait(Duration::from_secs(10)), browser);
        match outcome {
            Err(AuthError::AuthorizationDenied { error, description }) => {
                assert_eq!(error, "access_denied");
                assert_eq!(description, "<b>no</b>");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Paused time: the ten-minute wait ends at once, and exactly at its bound.
    #[tokio::test(start_paused = true)]
    async fn a_browser_that_never_comes_back_ends_the_wait_at_its_bound() {
        let loopback = start(ResponseMode::Query).await;
        let started = tokio::time::Instant::now();
        let outcome = loopback.wait(Duration::from_secs(600)).await;
        assert!(matches!(outcome, Err(AuthError::BrowserTimeout { .. })));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(600) && waited < Duration::from_secs(603),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn fragment_mode_serves_relay_page_and_takes_the_post() {
        let loopback = start(ResponseMode::Fragment).await;
        let base = Url::parse(loopback.redirect_uri()).expect("url");
        let http = reqwest::Client::new();
        let browser = async {
            let page = http.get(base.clone()).send().await.expect("get");
            assert_eq!(page.status(), 200);
            assert!(
                page.text()
                    .await
                    .expect("body")
                    .contains("fetch(\"/fragment\"")
            );
            let posted = http
                .post(base.join("/fragment").expect("url"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("access_token=tok&token_type=Bearer&expires_in=3600&state=expected-state")
                .send()
                .await
                .expect("post");
            assert_eq!(posted.status(), 200);
        };
        let (outcome, ()) = tokio::join!(loopback.wait(Duration::from_secs(10)), browser);
        let params = outcome.expect("token relayed");
        assert_eq!(params.get("access_token").map(String::as_str), Some("tok"));
    }

    #[tokio::test]
    async fn busy_port_is_a_clear_error() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let result = Loopback::start(
            "localhost",
            port,
            "s".to_owned(),
            ResponseMode::Query,
            pages(),
        )
        .await;
        let err = result.err().expect("port in use");
        assert!(
            err.to_string().contains("choose another redirect port"),
            "{err}"
        );
    }
}
