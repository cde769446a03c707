//! Identity endpoints: every grant type, PKCE, refresh rotation, device code, errors, expiry.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use graph_emulator::{
    DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_PUBLIC_CLIENT_ID,
    EmulatorConfig, MailboxSpec, UserSpec,
};
use serde_json::Value;
use sha2::Digest;

use crate::common::*;

const REDIRECT: &str = "http://localhost:53682";

async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = client().post(url).form(form).send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn assert_oauth_error(v: &Value, error: &str, code: u64) {
    assert_eq!(v["error"], error, "{v}");
    assert!(
        v["error_codes"]
            .as_array()
            .is_some_and(|c| c.contains(&Value::from(code))),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with(&format!("AADSTS{code}:"))),
        "{v}"
    );
}

/// Runs the authorize step; returns the redirect `Location` parsed into query or fragment pairs.
async fn authorize(
    emu: &graph_emulator::Emulator,
    extra: &[(&str, &str)],
) -> (String, HashMap<String, String>) {
    let mut params = vec![
        ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
        ("redirect_uri", REDIRECT),
        (
            "scope",
            "openid offline_access https://graph.microsoft.com/Mail.Read",
        ),
        ("state", "st-42"),
    ];
    params.extend_from_slice(extra);
    let resp = client()
        .get(emu.authorize_url())
        .query(&params)
        .send()
        .await
        .expect("authorize");
    assert_eq!(
        resp.status(),
        302,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let loc = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("Location")
        .to_owned();
    let url = url::Url::parse(&loc).expect("redirect URL");
    let pairs = match url.fragment() {
        Some(f) => url::form_urlencoded::parse(f.as_bytes())
            .into_owned()
            .collect(),
        None => url.query_pairs().into_owned().collect(),
    };
    (loc, pairs)
}

fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

#[tokio::test]
async fn authorization_code_with_pkce_and_refresh_rotation() {
    let emu = start(EmulatorConfig::default()).await;
    let verifier = "x".repeat(20) + &"Yz-._~0123456789".repeat(2);
    let challenge = s256(&verifier);
    let (loc, q) = authorize(
        &emu,
        &[
            ("response_type", "code"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert!(loc.starts_with(REDIRECT), "{loc}");
    assert_eq!(q.get("state").map(String::as_str), Some("st-42"));
    let code = q.get("code").expect("code").clone();

    let token_url = emu.token_url();
    let redeem = |verifier: String, code: String| {
        let token_url = token_url.clone();
        async move {
            post_form(
                &token_url,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                ],
            )
            .await
        }
    };
    let (status, v) = redeem(verifier.clone(), code.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_u64().is_some_and(|s| s > 0));
    let access = v["access_token"].as_str().expect("access").to_owned();
    let refresh = v["refresh_token"]
        .as_str()
        .expect("refresh (offline_access)")
        .to_owned();
    // id_token payload names the user.
    let id_token = v["id_token"].as_str().expect("id_token (openid)");
    let payload = id_token.split('.').nth(1).expect("payload");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64"),
    )
    .expect("claims");
    assert_eq!(claims["preferred_username"], USER);
    assert_eq!(claims["aud"], DEFAULT_PUBLIC_CLIENT_ID);
    // The token works on Graph for /me.
    let me = get_json(&access, &format!("{}/me", emu.graph_url())).await;
    assert_eq!(me["userPrincipalName"], USER);

    // A code is single-use.
    let (status, v) = redeem(verifier.clone(), code).await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_grant", 54005);

    // Refresh rotates: new refresh token; the old one is dead.
    let (status, v) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let refresh2 = v["refresh_token"].as_str().expect("new refresh").to_owned();
    assert_ne!(refresh2, refresh);
    let (status, v) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_grant", 70000);
    let (status, _) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("refresh_token", &refresh2),
        ],
    )
    .await;
    assert_eq!(status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn pkce_failures_and_redirect_checks() {
    let emu = start(EmulatorConfig::default()).await;
    let verifier = "v".repeat(50);
    let (_, q) = authorize(
        &emu,
        &[
            ("response_type", "code"),
            ("code_challenge", &s256(&verifier)),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let code = q.get("code").expect("code");
    let wrong = "w".repeat(50);
    let (status, v) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &wrong),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_grant", 501481);
    // The code is burned after a failed verification.
    let (status, _) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 400);

    // Missing verifier.
    let (_, q) = authorize(
        &emu,
        &[
            ("response_type", "code"),
            ("code_challenge", &verifier),
            ("code_challenge_method", "plain"),
        ],
    )
    .await;
    let (status, v) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_grant", 50148);
    // plain method works.
    let (_, q) = authorize(
        &emu,
        &[
            ("response_type", "code"),
            ("code_challenge", &verifier),
            ("code_challenge_method", "plain"),
        ],
    )
    .await;
    let (status, _) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // Redirect URI at the token endpoint must match the authorize request.
    let (_, q) = authorize(&emu, &[("response_type", "code")]).await;
    let (status, v) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("code", &q["code"]),
            ("redirect_uri", "http://localhost:1"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_grant", 50011);

    // Unregistered redirect URI: an error page, no redirect.
    let resp = client()
        .get(emu.authorize_url())
        .query(&[
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", "https://evil.example/cb"),
            ("scope", "Mail.Read"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap_or_default()
            .contains("AADSTS50011")
    );
    // Consent declined: redirect with error and state.
    emu.identity().set_decline_consent(true);
    let (_, q) = authorize(&emu, &[("response_type", "code")]).await;
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("state").map(String::as_str), Some("st-42"));
    emu.shutdown().await;
}

#[tokio::test]
async fn implicit_flow_returns_token_in_fragment() {
    let emu = start(EmulatorConfig::default()).await;
    let (loc, q) = authorize(&emu, &[("response_type", "token")]).await;
    assert!(loc.contains('#'), "{loc}");
    let token = q.get("access_token").expect("access_token");
    assert_eq!(q.get("token_type").map(String::as_str), Some("Bearer"));
    assert_eq!(q.get("state").map(String::as_str), Some("st-42"));
    let (all, _) = get_all(token, &format!("{}/me/messages", emu.graph_url()), None).await;
    assert_eq!(all.len(), 50);
    emu.shutdown().await;
}

#[tokio::test]
async fn client_credentials_rules() {
    let emu = start(EmulatorConfig::default()).await;
    let url = emu.token_url();
    // Secret in the body and in HTTP Basic both work; no refresh token.
    let (status, v) = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CONFIDENTIAL_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["refresh_token"].is_null());
    let resp = client()
        .post(&url)
        .basic_auth(DEFAULT_CONFIDENTIAL_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    // Scope without /.default.
    let (status, v) = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CONFIDENTIAL_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/Mail.Read"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_scope", 1002012);
    // Wrong secret, public client, unknown client, common tenant.
    let (status, v) = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CONFIDENTIAL_CLIENT_ID),
            ("client_secret", "nope"),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert_oauth_error(&v, "invalid_client", 7000215);
    let (status, v) = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert_oauth_error(&v, "invalid_client", 7000218);
    let (status, v) = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "00000000-0000-0000-0000-000000000000"),
            ("client_secret", "x"),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "unauthorized_client", 700016);
    let common = format!("{}/common/oauth2/v2.0/token", emu.authority_url());
    let (status, v) = post_form(
        &common,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CONFIDENTIAL_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_request", 50059);
    let (status, v) = post_form(&url, &[("grant_type", "magic")]).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"], "unsupported_grant_type");
    emu.shutdown().await;
}

#[tokio::test]
async fn password_grant_and_permissions() {
    let mut config = EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(USER).messages(4),
        MailboxSpec::new("megan.bowen@emulator.test")
            .messages(2)
            .seed(2),
    ]);
    config.users_without_mailbox.push(UserSpec {
        user_principal_name: "nomail@emulator.test".into(),
        display_name: "No Mail".into(),
        password: Some("pw".into()),
    });
    let emu = start(config).await;
    let url = emu.token_url();
    let (status, v) = post_form(
        &url,
        &[
            ("grant_type", "password"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("username", USER),
            ("password", "wrong"),
            ("scope", "Mail.Read"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_grant", 50126);
    let (status, v) = post_form(
        &url,
        &[
            ("grant_type", "password"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("username", "ghost@emulator.test"),
            ("password", "x"),
            ("scope", "Mail.Read"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_grant", 50034);
    let g = emu.graph_url();
    // Without a mail scope: 403 on mail, profile still readable.
    let v = ropc(&emu, USER, "User.Read").await;
    let t = v["access_token"].as_str().expect("token");
    let (status, _, body) = get(t, &format!("{g}/me/messages"), None).await;
    assert_eq!(status, 403);
    assert_graph_error(&body, "ErrorAccessDenied");
    assert_eq!(
        get_json(t, &format!("{g}/me")).await["userPrincipalName"],
        USER
    );
    // Another user's mailbox needs Mail.Read.Shared.
    let own = user_token(&emu, USER).await;
    let (status, _, _) = get(
        &own,
        &format!("{g}/users/megan.bowen@emulator.test/messages"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let shared = ropc(&emu, USER, "Mail.Read Mail.Read.Shared").await;
    let (all, _) = get_all(
        shared["access_token"].as_str().expect("t"),
        &format!("{g}/users/megan.bowen@emulator.test/messages"),
        None,
    )
    .await;
    assert_eq!(all.len(), 2);
    // A user without a mailbox.
    let resp = client()
        .post(&url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("username", "nomail@emulator.test"),
            ("password", "pw"),
            ("scope", "Mail.Read"),
        ])
        .send()
        .await
        .expect("send");
    let v: Value = resp.json().await.expect("json");
    let (status, _, body) = get(
        v["access_token"].as_str().expect("t"),
        &format!("{g}/me/mailFolders"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_graph_error(&body, "MailboxNotEnabledForRESTAPI");
    emu.shutdown().await;
}

#[tokio::test]
async fn device_code_flow_and_hooks() {
    let emu = start(EmulatorConfig::default()).await;
    let start_flow = || async {
        let (status, v) = post_form(
            &emu.devicecode_url(),
            &[
                ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
                ("scope", "Mail.Read offline_access"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{v}");
        for k in ["device_code", "user_code", "verification_uri", "message"] {
            assert!(v[k].is_string(), "{k} in {v}");
        }
        assert!(v["expires_in"].as_u64().is_some() && v["interval"].as_u64().is_some());
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains(v["user_code"].as_str().unwrap_or("?"))
        );
        v
    };
    let poll = |dc: String| {
        let url = emu.token_url();
        async move {
            post_form(
                &url,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
                    ("device_code", &dc),
                ],
            )
            .await
        }
    };
    // Default: first poll pending, second approved, third already redeemed.
    let v = start_flow().await;
    let dc = v["device_code"].as_str().expect("dc").to_owned();
    let (status, e) = poll(dc.clone()).await;
    assert_eq!(status, 400);
    assert_oauth_error(&e, "authorization_pending", 70016);
    let (status, t) = poll(dc.clone()).await;
    assert_eq!(status, 200, "{t}");
    assert!(t["refresh_token"].is_string());
    let (status, _) = poll(dc).await;
    assert_eq!(status, 400);
    // Declined and expired through the hooks.
    let v = start_flow().await;
    emu.identity()
        .decline_device_code(v["user_code"].as_str().expect("uc"))
        .expect("decline");
    let (_, e) = poll(v["device_code"].as_str().expect("dc").to_owned()).await;
    assert_eq!(e["error"], "authorization_declined");
    let v = start_flow().await;
    emu.identity()
        .expire_device_code(v["user_code"].as_str().expect("uc"))
        .expect("expire");
    let (_, e) = poll(v["device_code"].as_str().expect("dc").to_owned()).await;
    assert_eq!(e["error"], "expired_token");
    let (_, e) = poll("no-such-code".to_owned()).await;
    assert_eq!(e["error"], "bad_verification_code");
    assert!(emu.identity().decline_device_code("NOPE").is_err());
    emu.shutdown().await;
}

#[tokio::test]
async fn expired_access_tokens_get_401_and_refresh_recovers() {
    // Zero lifetime: every token is expired when used.
    let emu = start(EmulatorConfig::default().with_access_token_lifetime(Duration::ZERO)).await;
    let t = user_token(&emu, USER).await;
    let (status, headers, body) = get(&t, &format!("{}/me/messages", emu.graph_url()), None).await;
    assert_eq!(status, 401);
    assert!(headers.get("www-authenticate").is_some());
    let v = assert_graph_error(&body, "InvalidAuthenticationToken");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired")
    );
    emu.shutdown().await;

    // Expire-all hook: refresh then works.
    let emu = start(EmulatorConfig::default()).await;
    let v = ropc(&emu, USER, "Mail.Read offline_access").await;
    let t = v["access_token"].as_str().expect("t");
    let g = emu.graph_url();
    assert_eq!(get(t, &format!("{g}/me/mailFolders"), None).await.0, 200);
    emu.faults().expire_all_tokens();
    assert_eq!(get(t, &format!("{g}/me/mailFolders"), None).await.0, 401);
    let (status, r) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("refresh_token", v["refresh_token"].as_str().expect("rt")),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        get(
            r["access_token"].as_str().expect("t"),
            &format!("{g}/me/mailFolders"),
            None
        )
        .await
        .0,
        200
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn response_modes_login_hint_and_discovery() {
    let other = "megan.bowen@emulator.test";
    let emu = start(EmulatorConfig::default().with_mailboxes(vec![
        MailboxSpec::new(USER).messages(2),
        MailboxSpec::new(other).messages(3),
    ]))
    .await;
    // form_post: an auto-submitting HTML form instead of a redirect.
    let resp = client()
        .get(emu.authorize_url())
        .query(&[
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "Mail.Read"),
            ("state", "s1"),
            ("response_mode", "form_post"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("html");
    assert!(
        html.contains("name=\"code\"") && html.contains("value=\"s1\"") && html.contains(REDIRECT),
        "{html}"
    );
    // fragment mode for a code, and login_hint picks the user.
    let (loc, q) = authorize(
        &emu,
        &[
            ("response_type", "code"),
            ("response_mode", "fragment"),
            ("login_hint", other),
        ],
    )
    .await;
    assert!(loc.contains("#code="), "{loc}");
    let (status, v) = post_form(
        &emu.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let me = get_json(
        v["access_token"].as_str().expect("token"),
        &format!("{}/me", emu.graph_url()),
    )
    .await;
    assert_eq!(me["userPrincipalName"], other);
    // Discovery document points at the emulator.
    let d: Value = client()
        .get(format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            emu.authority_url(),
            emu.tenant_id()
        ))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(d["token_endpoint"], emu.token_url());
    assert_eq!(d["device_authorization_endpoint"], emu.devicecode_url());
    // Unknown tenant.
    let (status, v) = post_form(
        &format!("{}/contoso.example/oauth2/v2.0/token", emu.authority_url()),
        &[("grant_type", "password")],
    )
    .await;
    assert_eq!(status, 400);
    assert_oauth_error(&v, "invalid_request", 90002);
    emu.shutdown().await;
}
