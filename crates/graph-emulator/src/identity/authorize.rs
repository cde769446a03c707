//! The authorization endpoint: code and implicit flows, auto-consent, redirect delivery
//! (query, fragment, form_post) and error pages.

use std::collections::HashMap;
use std::time::Instant;

use super::{
    Answer, AuthCode, IdentityState, OAuthError, Principal, missing, oauth_err, redirect_allowed,
    split_scopes,
};
use crate::util::{lock, query_encode, random_token};

impl IdentityState {
    /// `GET {tenant}/oauth2/v2.0/authorize`.
    pub(crate) fn authorize(
        &self,
        tenant: &str,
        q: &HashMap<String, String>,
        base_url: &str,
    ) -> Answer {
        if let Err(e) = self.tenant_ok(tenant, true) {
            return error_page(&e);
        }
        let Some(client_id) = q.get("client_id") else {
            return error_page(&missing("client_id"));
        };
        let app = match self.app(client_id, tenant) {
            Ok(a) => a,
            Err(e) => return error_page(&e),
        };
        let redirect_uri = match q.get("redirect_uri") {
            Some(r) => r.clone(),
            None => match app.redirect_uris.first() {
                Some(r) => r.clone(),
                None => return error_page(&missing("redirect_uri")),
            },
        };
        if !redirect_allowed(app, &redirect_uri) {
            return error_page(&oauth_err(
                400,
                "invalid_request",
                50011,
                format!(
                    "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application."
                ),
            ));
        }
        let response_type = q.get("response_type").map(String::as_str).unwrap_or("");
        let implicit = match response_type {
            "code" => false,
            "token" => true,
            other => {
                return redirect_error(
                    &redirect_uri,
                    q,
                    false,
                    "unsupported_response_type",
                    &format!(
                        "AADSTS700054: response_type '{other}' is not supported by the emulator (use 'code' or 'token')."
                    ),
                );
            }
        };
        let Some(scope) = q.get("scope").filter(|s| !s.trim().is_empty()) else {
            return redirect_error(
                &redirect_uri,
                q,
                implicit,
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'scope'.",
            );
        };
        let challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
            (None, _) => None,
            (Some(c), m) => {
                let method = m.cloned().unwrap_or_else(|| "plain".to_owned());
                if !method.eq_ignore_ascii_case("S256") && !method.eq_ignore_ascii_case("plain") {
                    return redirect_error(
                        &redirect_uri,
                        q,
                        implicit,
                        "invalid_request",
                        "AADSTS501491: Invalid code_challenge_method: use S256 or plain.",
                    );
                }
                Some((c.clone(), method))
            }
        };
        let mut data = lock(&self.data);
        if data.decline_consent {
            return redirect_error(
                &redirect_uri,
                q,
                implicit,
                "access_denied",
                "AADSTS65004: User declined to consent to access the app.",
            );
        }
        let user = q
            .get("login_hint")
            .and_then(|h| {
                self.users
                    .iter()
                    .position(|u| u.upn.eq_ignore_ascii_case(h))
            })
            .unwrap_or(self.default_user);
        let scopes = split_scopes(scope);
        let state = q.get("state");
        let mode = q.get("response_mode").map(String::as_str);
        let mut params: Vec<(String, String)> = Vec::new();
        if implicit {
            let v = self.issue(&mut data, Principal::User(user), app, &scopes, base_url);
            params.push((
                "access_token".into(),
                v["access_token"].as_str().unwrap_or_default().to_owned(),
            ));
            params.push(("token_type".into(), "Bearer".into()));
            params.push((
                "expires_in".into(),
                self.access_lifetime.as_secs().to_string(),
            ));
            params.push((
                "scope".into(),
                v["scope"].as_str().unwrap_or_default().to_owned(),
            ));
        } else {
            let code = random_token(64);
            data.codes.insert(
                code.clone(),
                AuthCode {
                    client_id: app.client_id.clone(),
                    redirect_uri: redirect_uri.clone(),
                    user,
                    scopes,
                    challenge,
                    expires: Instant::now() + self.code_lifetime,
                    redeemed: false,
                },
            );
            params.push(("code".into(), code));
        }
        if let Some(s) = state {
            params.push(("state".into(), s.clone()));
        }
        params.push(("session_state".into(), uuid::Uuid::new_v4().to_string()));
        deliver(&redirect_uri, &params, mode, implicit)
    }
}

fn error_page(e: &OAuthError) -> Answer {
    let msg = format!("AADSTS{}: {}", e.code, e.message);
    Answer::page(
        e.status,
        format!(
            "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body><h1>Sorry, but we're having trouble signing you in.</h1><p id=\"error\" data-error=\"{}\">{}</p></body></html>",
            e.error,
            html_escape(&msg)
        ),
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn redirect_error(
    redirect_uri: &str,
    q: &HashMap<String, String>,
    implicit: bool,
    error: &str,
    description: &str,
) -> Answer {
    let mut params = vec![
        ("error".to_owned(), error.to_owned()),
        ("error_description".to_owned(), description.to_owned()),
    ];
    if let Some(s) = q.get("state") {
        params.push(("state".to_owned(), s.clone()));
    }
    deliver(
        redirect_uri,
        &params,
        q.get("response_mode").map(String::as_str),
        implicit,
    )
}

/// Sends the authorization response in the requested mode (query, fragment or form_post).
fn deliver(
    redirect_uri: &str,
    params: &[(String, String)],
    mode: Option<&str>,
    implicit: bool,
) -> Answer {
    let encoded = params
        .iter()
        .map(|(k, v)| format!("{k}={}", query_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    match mode {
        Some("form_post") => {
            let inputs: String = params
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\"/>",
                        html_escape(k),
                        html_escape(v)
                    )
                })
                .collect();
            Answer::page(
                200,
                format!(
                    "<html><head><title>Working...</title></head><body><form method=\"POST\" name=\"hiddenform\" action=\"{}\">{inputs}<noscript><p>Script is disabled. Click Submit to continue.</p><input type=\"submit\" value=\"Submit\"/></noscript></form><script>document.forms[0].submit()</script></body></html>",
                    html_escape(redirect_uri)
                ),
            )
        }
        Some("fragment") => Answer::redirect(format!("{redirect_uri}#{encoded}")),
        _ if implicit => Answer::redirect(format!("{redirect_uri}#{encoded}")),
        _ => {
            let sep = if redirect_uri.contains('?') { '&' } else { '?' };
            Answer::redirect(format!("{redirect_uri}{sep}{encoded}"))
        }
    }
}
