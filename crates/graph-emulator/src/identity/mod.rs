//! Microsoft identity platform (OAuth 2.0 / OpenID Connect v2.0) endpoints:
//! `{tenant}/oauth2/v2.0/authorize`, `/token`, `/devicecode`, plus the discovery document.
//!
//! Supported: authorization code with PKCE (`S256` and `plain`, verified at the token
//! endpoint), implicit (`response_type=token`), refresh tokens (rotated: each use returns a new
//! refresh token and invalidates the old one), client credentials (scope must end in
//! `/.default`, app-only token), ROPC (`password`), and the device code grant (approved
//! automatically after a configurable number of polls, or declined/expired through
//! [`IdentityHandle`]). Client secrets are accepted in the form body (`client_secret_post`) and
//! in HTTP Basic auth (`client_secret_basic`). The authorize endpoint consents automatically for
//! the configured default user (or the `login_hint` user) and redirects at once; there is no
//! login page. Errors use Entra ID's body shape with `AADSTS` codes. Access tokens are opaque
//! random strings (not JWTs); `id_token`s are unsigned JWTs (`alg: none`), for display only.
//! Secrets and tokens are never logged.

mod authorize;
mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{AppRegistration, EmulatorConfig};
use crate::error::EmulatorError;
use crate::util::{lock, random_token};

/// A user known to the directory.
#[derive(Debug, Clone)]
pub(crate) struct UserRecord {
    pub(crate) upn: String,
    pub(crate) display_name: String,
    pub(crate) object_id: String,
    pub(crate) password: Option<String>,
    /// Index into the mailbox list.
    pub(crate) mailbox: Option<usize>,
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// Delegated token of a user (index into the user list).
    User(usize),
    /// App-only token.
    App,
}

/// What an access token grants.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) principal: Principal,
    /// Lower-case permission names (`mail.read`), delegated scopes or app roles.
    pub(crate) permissions: Vec<String>,
    expires: Instant,
    issued: Instant,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRejection {
    Missing,
    Unknown,
    Expired,
}

#[derive(Debug, Clone)]
struct RefreshGrant {
    user: usize,
    client_id: String,
    scopes: Vec<String>,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct AuthCode {
    client_id: String,
    redirect_uri: String,
    user: usize,
    scopes: Vec<String>,
    challenge: Option<(String, String)>,
    expires: Instant,
    redeemed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceState {
    Pending,
    Approved,
    Declined,
    Expired,
    Redeemed,
}

#[derive(Debug, Clone)]
struct DeviceCode {
    user_code: String,
    client_id: String,
    user: usize,
    scopes: Vec<String>,
    polls: u32,
    state: DeviceState,
    expires: Instant,
}

#[derive(Debug, Default)]
struct IdentityData {
    access: HashMap<String, Grant>,
    refresh: HashMap<String, RefreshGrant>,
    codes: HashMap<String, AuthCode>,
    devices: HashMap<String, DeviceCode>,
    access_invalid_until: Option<Instant>,
    decline_consent: bool,
}

/// Identity provider state.
#[derive(Debug)]
pub(crate) struct IdentityState {
    pub(crate) tenant_id: String,
    tenant_domain: String,
    apps: Vec<AppRegistration>,
    pub(crate) users: Vec<UserRecord>,
    default_user: usize,
    access_lifetime: Duration,
    refresh_lifetime: Duration,
    code_lifetime: Duration,
    device_lifetime: Duration,
    device_interval: u64,
    device_polls: u32,
    data: Mutex<IdentityData>,
}

/// An HTTP answer built by this module (status, headers, body).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Answer {
    fn json(status: u16, v: &Value) -> Self {
        Self {
            status,
            headers: vec![
                ("Cache-Control", "no-store, no-cache".to_owned()),
                ("Pragma", "no-cache".to_owned()),
            ],
            content_type: "application/json; charset=utf-8",
            body: v.to_string(),
        }
    }

    fn redirect(location: String) -> Self {
        Self {
            status: 302,
            headers: vec![("Location", location)],
            content_type: "text/html; charset=utf-8",
            body: String::new(),
        }
    }

    fn page(status: u16, html: String) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type: "text/html; charset=utf-8",
            body: html,
        }
    }
}

/// An OAuth error: HTTP status, `error`, AADSTS code and message.
#[derive(Debug)]
struct OAuthError {
    status: u16,
    error: &'static str,
    code: u32,
    message: String,
}

fn oauth_err(
    status: u16,
    error: &'static str,
    code: u32,
    message: impl Into<String>,
) -> OAuthError {
    OAuthError {
        status,
        error,
        code,
        message: message.into(),
    }
}

impl OAuthError {
    fn answer(&self) -> Answer {
        let trace = uuid::Uuid::new_v4().to_string();
        let corr = uuid::Uuid::new_v4().to_string();
        let ts = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
        Answer::json(
            self.status,
            &json!({
                "error": self.error,
                "error_description": format!(
                    "AADSTS{}: {} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}",
                    self.code, self.message
                ),
                "error_codes": [self.code],
                "timestamp": ts,
                "trace_id": trace,
                "correlation_id": corr,
                "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
            }),
        )
    }
}

fn missing(param: &str) -> OAuthError {
    oauth_err(
        400,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{param}'."),
    )
}

/// Normalizes a scope for permission checks: `https://graph.microsoft.com/Mail.Read` ->
/// `mail.read`.
fn normalize_scope(s: &str) -> String {
    let s = s
        .strip_prefix("https://graph.microsoft.com/")
        .or_else(|| s.strip_prefix("https://graph.microsoft.com//"))
        .unwrap_or(s);
    s.to_ascii_lowercase()
}

fn split_scopes(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in s.split_whitespace() {
        if !out.iter().any(|o| o == p) {
            out.push(p.to_owned());
        }
    }
    out
}

fn has_scope(scopes: &[String], name: &str) -> bool {
    scopes.iter().any(|s| normalize_scope(s) == name)
}

/// Matches a redirect URI against registrations; loopback registrations match any port.
fn redirect_allowed(app: &AppRegistration, uri: &str) -> bool {
    let Ok(req) = url::Url::parse(uri) else {
        return false;
    };
    app.redirect_uris.iter().any(|reg| {
        if reg == uri {
            return true;
        }
        let Ok(r) = url::Url::parse(reg) else {
            return false;
        };
        let loopback = matches!(r.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        loopback
            && r.scheme() == req.scheme()
            && r.host_str() == req.host_str()
            && r.path().trim_end_matches('/') == req.path().trim_end_matches('/')
    })
}

/// PKCE check (RFC 7636 section 4.6).
fn pkce_ok(challenge: &str, method: &str, verifier: &str) -> bool {
    let len_ok = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !len_ok {
        return false;
    }
    if method.eq_ignore_ascii_case("S256") {
        let d = Sha256::digest(verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d) == challenge
    } else {
        verifier == challenge
    }
}

fn user_code() -> String {
    // Entra ID user codes: 9 characters, letters and digits without look-alikes.
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let raw = random_token(12);
    raw.bytes()
        .take(9)
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

impl IdentityState {
    pub(crate) fn new(cfg: &EmulatorConfig, users: Vec<UserRecord>) -> Result<Self, EmulatorError> {
        let default_user = match &cfg.default_user {
            Some(u) => users
                .iter()
                .position(|r| r.upn.eq_ignore_ascii_case(u))
                .ok_or_else(|| {
                    EmulatorError::InvalidConfig(format!(
                        "default_user '{u}' is neither a mailbox owner nor in users_without_mailbox"
                    ))
                })?,
            None => 0,
        };
        Ok(Self {
            tenant_id: cfg.tenant_id.clone(),
            tenant_domain: cfg.tenant_domain.clone(),
            apps: cfg.apps.clone(),
            users,
            default_user,
            access_lifetime: cfg.access_token_lifetime,
            refresh_lifetime: cfg.refresh_token_lifetime,
            code_lifetime: cfg.authorization_code_lifetime,
            device_lifetime: cfg.device_code_lifetime,
            device_interval: cfg.device_code_interval_secs,
            device_polls: cfg.device_code_polls_before_approval,
            data: Mutex::new(IdentityData::default()),
        })
    }

    /// Whether `tenant` names this tenant (`common` and `organizations` included when
    /// `allow_multi`).
    fn tenant_ok(&self, tenant: &str, allow_multi: bool) -> Result<(), OAuthError> {
        let t = tenant.to_ascii_lowercase();
        if t == self.tenant_id.to_ascii_lowercase() || t == self.tenant_domain.to_ascii_lowercase()
        {
            return Ok(());
        }
        if t == "common" || t == "organizations" {
            if allow_multi {
                return Ok(());
            }
            return Err(oauth_err(
                400,
                "invalid_request",
                50059,
                format!(
                    "No tenant-identifying information found in either the request or implied by any provided credentials. This grant needs a tenant-specific endpoint: use '{}' instead of '{tenant}'.",
                    self.tenant_id
                ),
            ));
        }
        Err(oauth_err(
            400,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. This emulator serves tenant '{}' ({}).",
                self.tenant_id, self.tenant_domain
            ),
        ))
    }

    fn app(&self, client_id: &str, tenant: &str) -> Result<&AppRegistration, OAuthError> {
        self.apps
            .iter()
            .find(|a| a.client_id == client_id)
            .ok_or_else(|| {
                oauth_err(
                    400,
                    "unauthorized_client",
                    700016,
                    format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."),
                )
            })
    }

    /// Authenticates the client. `needs_secret`: whether a confidential client must present
    /// its secret for this grant.
    fn client_auth<'a>(
        &'a self,
        form: &HashMap<String, String>,
        basic: Option<(String, String)>,
        tenant: &str,
        needs_secret: bool,
    ) -> Result<&'a AppRegistration, OAuthError> {
        let (client_id, secret) = match (&basic, form.get("client_id")) {
            (Some((id, s)), _) => (id.clone(), Some(s.clone())),
            (None, Some(id)) => (id.clone(), form.get("client_secret").cloned()),
            (None, None) => return Err(missing("client_id")),
        };
        let app = self.app(&client_id, tenant)?;
        match (&app.client_secret, secret) {
            (None, Some(_)) => Err(oauth_err(
                400,
                "invalid_client",
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
            )),
            (Some(_), None) if needs_secret => Err(oauth_err(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )),
            (Some(expected), Some(given)) if expected.as_bytes() != given.as_bytes() => {
                Err(oauth_err(
                    401,
                    "invalid_client",
                    7000215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                ))
            }
            _ => Ok(app),
        }
    }

    fn issue(
        &self,
        data: &mut IdentityData,
        principal: Principal,
        app: &AppRegistration,
        scopes: &[String],
        base_url: &str,
    ) -> Value {
        let now = Instant::now();
        let token = random_token(48);
        let permissions: Vec<String> = match principal {
            Principal::App => app
                .application_permissions
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
            Principal::User(_) => {
                let mut p: Vec<String> = scopes.iter().map(|s| normalize_scope(s)).collect();
                if p.iter().any(|s| s.ends_with(".default")) {
                    p.extend(
                        app.delegated_permissions
                            .iter()
                            .map(|s| s.to_ascii_lowercase()),
                    );
                }
                p
            }
        };
        data.access.insert(
            token.clone(),
            Grant {
                principal: principal.clone(),
                permissions,
                expires: now + self.access_lifetime,
                issued: now,
            },
        );
        let secs = self.access_lifetime.as_secs();
        let shown: Vec<&str> = scopes
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "offline_access")
            .collect();
        let mut body = json!({
            "token_type": "Bearer",
            "scope": shown.join(" "),
            "expires_in": secs,
            "ext_expires_in": secs,
            "access_token": token,
        });
        if let Principal::User(u) = principal {
            if has_scope(scopes, "offline_access") {
                let rt = random_token(64);
                data.refresh.insert(
                    rt.clone(),
                    RefreshGrant {
                        user: u,
                        client_id: app.client_id.clone(),
                        scopes: scopes.to_vec(),
                        expires: now + self.refresh_lifetime,
                    },
                );
                body["refresh_token"] = Value::String(rt);
            }
            if has_scope(scopes, "openid") {
                body["id_token"] = Value::String(self.id_token(u, &app.client_id, base_url));
            }
        }
        body
    }

    fn id_token(&self, user: usize, client_id: &str, base_url: &str) -> String {
        let u = &self.users[user];
        let now = Utc::now().timestamp();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"typ":"JWT","alg":"none"}"#);
        let payload = json!({
            "aud": client_id,
            "iss": format!("{base_url}/{}/v2.0", self.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + self.access_lifetime.as_secs() as i64,
            "name": u.display_name,
            "oid": u.object_id,
            "preferred_username": u.upn,
            "sub": u.object_id,
            "tid": self.tenant_id,
            "ver": "2.0",
        });
        format!("{header}.{}.", b64.encode(payload.to_string().as_bytes()))
    }

    /// Validates a bearer token for Graph.
    pub(crate) fn validate(&self, token: Option<&str>) -> Result<Grant, TokenRejection> {
        let token = token.ok_or(TokenRejection::Missing)?;
        let data = lock(&self.data);
        let g = data.access.get(token).ok_or(TokenRejection::Unknown)?;
        let now = Instant::now();
        if now > g.expires || data.access_invalid_until.is_some_and(|t| g.issued <= t) {
            return Err(TokenRejection::Expired);
        }
        Ok(g.clone())
    }

    /// Invalidates all access tokens issued so far.
    pub(crate) fn expire_access_tokens(&self) {
        lock(&self.data).access_invalid_until = Some(Instant::now());
    }

    /// Discovery document.
    pub(crate) fn openid_configuration(&self, tenant: &str, base_url: &str) -> Answer {
        let t = if tenant.is_empty() { "common" } else { tenant };
        Answer::json(
            200,
            &json!({
                "issuer": format!("{base_url}/{}/v2.0", self.tenant_id),
                "authorization_endpoint": format!("{base_url}/{t}/oauth2/v2.0/authorize"),
                "token_endpoint": format!("{base_url}/{t}/oauth2/v2.0/token"),
                "device_authorization_endpoint": format!("{base_url}/{t}/oauth2/v2.0/devicecode"),
                "response_types_supported": ["code", "token"],
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "password", "urn:ietf:params:oauth:grant-type:device_code", "implicit"],
                "code_challenge_methods_supported": ["S256", "plain"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "tenant_region_scope": "EU",
            }),
        )
    }

    fn device_by_user_code<R>(
        &self,
        user_code: &str,
        f: impl FnOnce(&mut DeviceCode) -> R,
    ) -> Result<R, EmulatorError> {
        let mut data = lock(&self.data);
        data.devices
            .values_mut()
            .find(|d| d.user_code.eq_ignore_ascii_case(user_code))
            .map(f)
            .ok_or_else(|| EmulatorError::UnknownDeviceCode(user_code.to_owned()))
    }
}

/// Test hooks for the identity endpoints. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IdentityHandle {
    pub(crate) state: Arc<crate::server::Shared>,
}

impl IdentityHandle {
    /// Makes the user decline the device code with this user code: the next poll answers
    /// `authorization_declined`.
    pub fn decline_device_code(&self, user_code: &str) -> Result<(), EmulatorError> {
        self.state
            .identity
            .device_by_user_code(user_code, |d| d.state = DeviceState::Declined)
    }

    /// Expires the device code: the next poll answers `expired_token`.
    pub fn expire_device_code(&self, user_code: &str) -> Result<(), EmulatorError> {
        self.state
            .identity
            .device_by_user_code(user_code, |d| d.state = DeviceState::Expired)
    }

    /// Approves the device code now: the next poll returns tokens.
    pub fn approve_device_code(&self, user_code: &str) -> Result<(), EmulatorError> {
        self.state.identity.device_by_user_code(user_code, |d| {
            if d.state == DeviceState::Pending {
                d.state = DeviceState::Approved;
            }
        })
    }

    /// Makes the user decline consent at the authorize endpoint (redirect with
    /// `error=access_denied`) until switched back.
    pub fn set_decline_consent(&self, decline: bool) {
        lock(&self.state.identity.data).decline_consent = decline;
    }

    /// Revokes every refresh token (the next refresh answers `invalid_grant`).
    pub fn revoke_refresh_tokens(&self) {
        lock(&self.state.identity.data).refresh.clear();
    }

    /// Invalidates all access tokens issued so far (same as
    /// [`crate::FaultsHandle::expire_all_tokens`]).
    pub fn expire_access_tokens(&self) {
        self.state.identity.expire_access_tokens();
    }

    /// Number of access tokens issued so far.
    pub fn access_tokens_issued(&self) -> usize {
        lock(&self.state.identity.data).access.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        // RFC 7636 Appendix B example.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_ok(challenge, "S256", verifier));
        assert!(!pkce_ok(challenge, "S256", &verifier.replace('d', "e")));
        assert!(pkce_ok(verifier, "plain", verifier));
        assert!(!pkce_ok("short", "plain", "short"));
    }

    #[test]
    fn loopback_redirects_match_any_port() {
        let app = AppRegistration::public_client("x").with_redirect_uri("https://app.example/cb");
        assert!(redirect_allowed(&app, "http://localhost:53121"));
        assert!(redirect_allowed(&app, "http://localhost:53121/"));
        assert!(redirect_allowed(&app, "http://127.0.0.1:8400"));
        assert!(!redirect_allowed(&app, "http://localhost:53121/other"));
        assert!(redirect_allowed(&app, "https://app.example/cb"));
        assert!(!redirect_allowed(&app, "https://evil.example/cb"));
        assert!(!redirect_allowed(&app, "not a url"));
    }

    #[test]
    fn scope_normalization() {
        assert_eq!(
            normalize_scope("https://graph.microsoft.com/Mail.Read"),
            "mail.read"
        );
        assert!(has_scope(
            &split_scopes("openid https://graph.microsoft.com/Mail.Read offline_access"),
            "offline_access"
        ));
    }

    #[test]
    fn user_codes_look_right() {
        let c = user_code();
        assert_eq!(c.len(), 9);
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
    }
}
