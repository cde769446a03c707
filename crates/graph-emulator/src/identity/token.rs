//! The token endpoint (every grant type) and the device authorization endpoint.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};

use super::{
    Answer, DeviceCode, DeviceState, IdentityState, OAuthError, Principal, has_scope, missing,
    oauth_err, pkce_ok, split_scopes, user_code,
};
use crate::config::AppRegistration;
use crate::util::{lock, random_token};

impl IdentityState {
    /// `POST {tenant}/oauth2/v2.0/token`.
    pub(crate) fn token(
        &self,
        tenant: &str,
        form: &HashMap<String, String>,
        basic: Option<(String, String)>,
        base_url: &str,
    ) -> Answer {
        json_or_error(self.token_inner(tenant, form, basic, base_url))
    }

    fn token_inner(
        &self,
        tenant: &str,
        form: &HashMap<String, String>,
        basic: Option<(String, String)>,
        base_url: &str,
    ) -> Result<Value, OAuthError> {
        let grant = form
            .get("grant_type")
            .ok_or_else(|| missing("grant_type"))?
            .as_str();
        let multi_ok = !matches!(grant, "client_credentials" | "password");
        self.tenant_ok(tenant, multi_ok)?;
        // Every grant authenticates the client first; the device flow is for public clients
        // and needs no secret.
        let (redeem, needs_secret): (Grant, bool) = match grant {
            "authorization_code" => (Self::grant_code, true),
            "refresh_token" => (Self::grant_refresh, true),
            "client_credentials" => (Self::grant_client_credentials, true),
            "password" => (Self::grant_password, true),
            "urn:ietf:params:oauth:grant-type:device_code" | "device_code" => {
                (Self::grant_device, false)
            }
            other => {
                return Err(oauth_err(
                    400,
                    "unsupported_grant_type",
                    70003,
                    format!("The app requested an unsupported grant type '{other}'."),
                ));
            }
        };
        let app = self.client_auth(form, basic, tenant, needs_secret)?;
        redeem(self, form, app, base_url)
    }

    fn grant_code(
        &self,
        form: &HashMap<String, String>,
        app: &AppRegistration,
        base_url: &str,
    ) -> Result<Value, OAuthError> {
        let code = form.get("code").ok_or_else(|| missing("code"))?;
        let mut data = lock(&self.data);
        let Some(c) = data.codes.get(code).cloned() else {
            return Err(oauth_err(
                400,
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid. The provided value for the 'code' parameter is not valid.",
            ));
        };
        if c.redeemed {
            return Err(oauth_err(
                400,
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            ));
        }
        if Instant::now() > c.expires {
            return Err(oauth_err(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            ));
        }
        if c.client_id != app.client_id {
            return Err(oauth_err(
                400,
                "invalid_grant",
                70000,
                "The provided value for the 'code' parameter is not valid: the code was issued to a different client.",
            ));
        }
        match form.get("redirect_uri") {
            Some(r) if *r == c.redirect_uri => {}
            Some(r) => {
                return Err(oauth_err(
                    400,
                    "invalid_grant",
                    50011,
                    format!(
                        "The redirect URI '{r}' specified in the request does not match the redirect URI '{}' used to obtain the authorization code.",
                        c.redirect_uri
                    ),
                ));
            }
            None => return Err(missing("redirect_uri")),
        }
        if let Some((challenge, method)) = &c.challenge {
            let Some(verifier) = form.get("code_verifier") else {
                return Err(oauth_err(
                    400,
                    "invalid_grant",
                    50148,
                    "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE: the request body must contain the 'code_verifier' parameter.",
                ));
            };
            if !pkce_ok(challenge, method, verifier) {
                // A failed PKCE check burns the code, as the code could be stolen.
                if let Some(cm) = data.codes.get_mut(code) {
                    cm.redeemed = true;
                }
                return Err(oauth_err(
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                ));
            }
        }
        if let Some(cm) = data.codes.get_mut(code) {
            cm.redeemed = true;
        }
        let scopes = c.scopes.clone();
        Ok(self.issue(&mut data, Principal::User(c.user), app, &scopes, base_url))
    }

    fn grant_refresh(
        &self,
        form: &HashMap<String, String>,
        app: &AppRegistration,
        base_url: &str,
    ) -> Result<Value, OAuthError> {
        let rt = form
            .get("refresh_token")
            .ok_or_else(|| missing("refresh_token"))?;
        let mut data = lock(&self.data);
        let Some(g) = data.refresh.get(rt).cloned() else {
            return Err(oauth_err(
                400,
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the refresh token is unknown or was already used (refresh tokens rotate; use the newest one).",
            ));
        };
        if g.client_id != app.client_id {
            return Err(oauth_err(
                400,
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the refresh token was issued to a different client.",
            ));
        }
        data.refresh.remove(rt);
        if Instant::now() > g.expires {
            return Err(oauth_err(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            ));
        }
        let scopes = match form.get("scope") {
            Some(s) if !s.trim().is_empty() => {
                let mut sc = split_scopes(s);
                if has_scope(&g.scopes, "offline_access") && !has_scope(&sc, "offline_access") {
                    // The refresh token keeps the offline grant even if the client does not
                    // repeat offline_access.
                    sc.push("offline_access".to_owned());
                }
                sc
            }
            _ => g.scopes.clone(),
        };
        Ok(self.issue(&mut data, Principal::User(g.user), app, &scopes, base_url))
    }

    fn grant_client_credentials(
        &self,
        form: &HashMap<String, String>,
        app: &AppRegistration,
        base_url: &str,
    ) -> Result<Value, OAuthError> {
        if app.client_secret.is_none() {
            return Err(oauth_err(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'. Public clients cannot use the client credentials grant.",
            ));
        }
        let scope = form.get("scope").ok_or_else(|| missing("scope"))?;
        let scopes = split_scopes(scope);
        if scopes.len() != 1 || !scopes[0].ends_with("/.default") {
            return Err(oauth_err(
                400,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            ));
        }
        let mut data = lock(&self.data);
        Ok(self.issue(&mut data, Principal::App, app, &scopes, base_url))
    }

    fn grant_password(
        &self,
        form: &HashMap<String, String>,
        app: &AppRegistration,
        base_url: &str,
    ) -> Result<Value, OAuthError> {
        let username = form.get("username").ok_or_else(|| missing("username"))?;
        let password = form.get("password").ok_or_else(|| missing("password"))?;
        let scope = form.get("scope").ok_or_else(|| missing("scope"))?;
        let Some(u) = self
            .users
            .iter()
            .position(|r| r.upn.eq_ignore_ascii_case(username))
        else {
            return Err(oauth_err(
                400,
                "invalid_grant",
                50034,
                format!(
                    "The user account {{EUII Hidden}} does not exist in the {} directory. To sign into this application, the account must be added to the directory.",
                    self.tenant_id
                ),
            ));
        };
        let ok = self.users[u]
            .password
            .as_deref()
            .is_some_and(|p| p.as_bytes() == password.as_bytes());
        if !ok {
            return Err(oauth_err(
                400,
                "invalid_grant",
                50126,
                "Error validating credentials due to invalid username or password.",
            ));
        }
        let scopes = split_scopes(scope);
        let mut data = lock(&self.data);
        Ok(self.issue(&mut data, Principal::User(u), app, &scopes, base_url))
    }

    fn grant_device(
        &self,
        form: &HashMap<String, String>,
        app: &AppRegistration,
        base_url: &str,
    ) -> Result<Value, OAuthError> {
        let dc = form
            .get("device_code")
            .ok_or_else(|| missing("device_code"))?;
        let mut data = lock(&self.data);
        let polls_needed = self.device_polls;
        let Some(d) = data.devices.get_mut(dc) else {
            return Err(oauth_err(
                400,
                "bad_verification_code",
                70000,
                "The provided value for the 'device_code' parameter is not valid.",
            ));
        };
        if d.client_id != app.client_id {
            return Err(oauth_err(
                400,
                "bad_verification_code",
                70000,
                "The provided value for the 'device_code' parameter is not valid: it was issued to a different client.",
            ));
        }
        if Instant::now() > d.expires && d.state != DeviceState::Redeemed {
            d.state = DeviceState::Expired;
        }
        d.polls += 1;
        if d.state == DeviceState::Pending && d.polls > polls_needed {
            d.state = DeviceState::Approved;
        }
        match d.state {
            DeviceState::Pending => Err(oauth_err(
                400,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            )),
            DeviceState::Declined => Err(oauth_err(
                400,
                "authorization_declined",
                70000,
                "The user declined the authorization request.",
            )),
            DeviceState::Expired => Err(oauth_err(
                400,
                "expired_token",
                70020,
                "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
            )),
            DeviceState::Redeemed => Err(oauth_err(
                400,
                "invalid_grant",
                54005,
                "The device code was already redeemed.",
            )),
            DeviceState::Approved => {
                d.state = DeviceState::Redeemed;
                let (user, scopes) = (d.user, d.scopes.clone());
                Ok(self.issue(&mut data, Principal::User(user), app, &scopes, base_url))
            }
        }
    }

    /// `POST {tenant}/oauth2/v2.0/devicecode`.
    pub(crate) fn devicecode(
        &self,
        tenant: &str,
        form: &HashMap<String, String>,
        base_url: &str,
    ) -> Answer {
        let r = (|| {
            self.tenant_ok(tenant, true)?;
            let client_id = form.get("client_id").ok_or_else(|| missing("client_id"))?;
            let app = self.app(client_id, tenant)?;
            let scope = form.get("scope").ok_or_else(|| missing("scope"))?;
            let device_code = random_token(48);
            let code = user_code();
            let uri = format!("{base_url}/devicelogin");
            lock(&self.data).devices.insert(
                device_code.clone(),
                DeviceCode {
                    user_code: code.clone(),
                    client_id: app.client_id.clone(),
                    user: self.default_user,
                    scopes: split_scopes(scope),
                    polls: 0,
                    state: DeviceState::Pending,
                    expires: Instant::now() + self.device_lifetime,
                },
            );
            Ok::<Value, OAuthError>(json!({
                "user_code": code,
                "device_code": device_code,
                "verification_uri": uri,
                "expires_in": self.device_lifetime.as_secs(),
                "interval": self.device_interval,
                "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {code} to authenticate."),
            }))
        })();
        json_or_error(r)
    }
}

/// One grant's redemption, after the client authenticated.
type Grant = fn(
    &IdentityState,
    &HashMap<String, String>,
    &AppRegistration,
    &str,
) -> Result<Value, OAuthError>;

/// `200` with the JSON body, or the OAuth error.
fn json_or_error(r: Result<Value, OAuthError>) -> Answer {
    match r {
        Ok(v) => Answer::json(200, &v),
        Err(e) => e.answer(),
    }
}
