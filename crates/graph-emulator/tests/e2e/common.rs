//! Helpers shared by the end-to-end tests.

use graph_emulator::{
    DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_PASSWORD,
    DEFAULT_PUBLIC_CLIENT_ID, Emulator, EmulatorConfig,
};
use serde_json::Value;

pub(crate) const USER: &str = graph_emulator::DEFAULT_USER;

/// An HTTP client that does not follow redirects (the authorize endpoint answers 302).
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

pub(crate) async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("emulator starts")
}

/// Token response of a ROPC request for `user`.
pub(crate) async fn ropc(emu: &Emulator, user: &str, scope: &str) -> Value {
    let resp = client()
        .post(emu.token_url())
        .form(&[
            ("grant_type", "password"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("username", user),
            ("password", DEFAULT_PASSWORD),
            ("scope", scope),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("token json")
}

/// A delegated access token for `user` with Mail.Read.
pub(crate) async fn user_token(emu: &Emulator, user: &str) -> String {
    ropc(
        emu,
        user,
        "https://graph.microsoft.com/Mail.Read offline_access",
    )
    .await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// An app-only token (client credentials).
pub(crate) async fn app_token(emu: &Emulator) -> String {
    let v: Value = client()
        .post(emu.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CONFIDENTIAL_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("json");
    v["access_token"].as_str().expect("access_token").to_owned()
}

/// GET with a bearer token; returns status, headers and body bytes.
pub(crate) async fn get(
    token: &str,
    url: &str,
    prefer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, bytes::Bytes) {
    let mut rb = client().get(url).bearer_auth(token);
    if let Some(p) = prefer {
        rb = rb.header("Prefer", p);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body");
    (status, headers, body)
}

/// GET expecting 200 JSON.
pub(crate) async fn get_json(token: &str, url: &str) -> Value {
    let (status, _, body) = get(token, url, None).await;
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json body")
}

/// Follows `@odata.nextLink` to the end; returns all values and the number of pages.
pub(crate) async fn get_all(token: &str, url: &str, prefer: Option<&str>) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut next = Some(url.to_owned());
    let mut pages = 0;
    while let Some(u) = next.take() {
        pages += 1;
        assert!(pages < 10_000, "paging does not end");
        let (status, _, body) = get(token, &u, prefer).await;
        assert_eq!(status, 200, "GET {u}: {}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).expect("json");
        out.extend(v["value"].as_array().cloned().unwrap_or_default());
        next = v["@odata.nextLink"].as_str().map(str::to_owned);
    }
    (out, pages)
}

/// Asserts a Graph error body with this code.
pub(crate) fn assert_graph_error(body: &[u8], code: &str) -> Value {
    let v: Value = serde_json::from_slice(body).expect("error json");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    let inner = &v["error"]["innerError"];
    assert!(
        inner["date"].is_string()
            && inner["request-id"].is_string()
            && inner["client-request-id"].is_string(),
        "{v}"
    );
    v
}
