//! [`Authenticator`]: the OAuth grants of the Microsoft identity platform.
//!
//! Every grant is a form POST to the token endpoint (plus, for the interactive ones, a browser
//! round trip through the loopback listener), so this module talks to the endpoints with
//! `reqwest` directly instead of going through the `oauth2` crate: `oauth2` 5 would need an
//! adapter for reqwest 0.13, knows nothing of the platform's `error_codes`/`AADSTS` details we turn
//! into advice, and its typed-state builders add more code here than the few form posts they
//! replace. Parameters are exactly those of the platform's v2.0 endpoint documentation.
//!
//! What it does not do: certificate (JWT assertion) client authentication, on-behalf-of, the
//! hybrid `id_token` flows, or token caching; see [`crate::CachedTokenProvider`] for the cache.

use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use url::Url;

use crate::config::AuthConfig;
use crate::error::{AuthError, Grant, PlatformError, hint_for};
use crate::interaction::{DeviceCodePrompt, Interaction};
use crate::loopback::{Loopback, Pages, ResponseMode};
use crate::pkce::{PkceMethod, PkceVerifier, random_token};
use crate::redirect::{self, parse_params};
use crate::secret::Secret;
use crate::token::{Token, TokenFields, parse_platform_error, parse_token_response};

/// The device code grant type (RFC 8628).
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The poll interval when the platform gives none (RFC 8628 section 3.2).
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How much `slow_down` adds to the poll interval (RFC 8628 section 3.5).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Runs OAuth grants against the configured identity platform endpoints.
///
/// Cheap to clone (the HTTP client is shared).
#[derive(Debug, Clone)]
pub struct Authenticator {
    config: AuthConfig,
    http: reqwest::Client,
}

/// An authorization request of the web profile: send the user to [`url`](Self::url), receive the
/// code at the redirect URI, then call [`Authenticator::complete_web_authorization`].
///
/// `state` and the PKCE verifier may be stored (e.g. in a server-side session) and the request
/// completed by another process with [`WebAuthorization::resume`].
#[derive(Debug, Clone)]
pub struct WebAuthorization {
    url: Url,
    redirect_uri: Url,
    state: String,
    verifier: Option<PkceVerifier>,
}

impl WebAuthorization {
    /// The URL to send the user's browser to (the seed's `WebAuthURL`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The `redirect_uri` of the request (the seed's `ReturnURL`).
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// The `state` value the redirect must carry back.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The PKCE verifier (the seed's `OAuthPKCEVerifier`), if PKCE is used.
    pub fn verifier(&self) -> Option<&PkceVerifier> {
        self.verifier.as_ref()
    }

    /// Rebuilds a request saved as `redirect_uri`, `state` and verifier by another instance.
    /// The authorization URL is not needed to complete it and is left as the redirect URI.
    pub fn resume(redirect_uri: Url, state: String, verifier: Option<PkceVerifier>) -> Self {
        Self {
            url: redirect_uri.clone(),
            redirect_uri,
            state,
            verifier,
        }
    }

    /// Extracts the authorization code from the URL the browser was redirected to, checking
    /// `state` and reporting a denial.
    pub fn code_from_redirect(&self, redirect: &str) -> Result<Secret, AuthError> {
        let url = Url::parse(redirect).map_err(|e| AuthError::InvalidRedirect(e.to_string()))?;
        let params = redirect::check(parse_params(url.query().unwrap_or("")), &self.state, "code")?;
        Ok(Secret::new(params.get("code").cloned().unwrap_or_default()))
    }
}

/// A way to sign in, for callers that pick the method from configuration (the CLI).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LoginMethod {
    /// Authorization code with PKCE in the system browser ([`Authenticator::authorize_interactive`]).
    Browser,
    /// Device code, for machines without a browser ([`Authenticator::device_code`]).
    DeviceCode,
    /// Implicit grant; insecure ([`Authenticator::authorize_implicit`]).
    Implicit,
    /// Resource owner password; insecure ([`Authenticator::password`]).
    Password {
        /// The user principal name.
        username: String,
        /// The user's password.
        password: Secret,
    },
    /// App-only client credentials ([`Authenticator::client_credentials`]).
    ClientCredentials,
}

#[derive(Deserialize)]
struct DeviceCodeResponse {
    device_code: String,
    user_code: String,
    verification_uri: Option<String>,
    /// Older v1-style answers call it `verification_url`.
    verification_url: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
    #[serde(default)]
    message: String,
}

impl Authenticator {
    /// An authenticator with its own HTTP client (timeout from the config, no redirects:
    /// the token endpoint never redirects and a redirect would resend credentials).
    pub fn new(config: AuthConfig) -> Result<Self, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::Config(format!("cannot create the HTTP client: {e}")))?;
        Self::with_http_client(config, http)
    }

    /// An authenticator using the caller's HTTP client (proxy, TLS roots, user agent).
    pub fn with_http_client(config: AuthConfig, http: reqwest::Client) -> Result<Self, AuthError> {
        config.validate()?;
        Ok(Self { config, http })
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Signs in with `method`; interactive methods reach the user through `interaction`.
    pub async fn login(
        &self,
        method: &LoginMethod,
        interaction: &dyn Interaction,
    ) -> Result<Token, AuthError> {
        match method {
            LoginMethod::Browser => self.authorize_interactive(interaction).await,
            LoginMethod::DeviceCode => self.device_code(interaction).await,
            LoginMethod::Implicit => self.authorize_implicit(interaction).await,
            LoginMethod::Password { username, password } => self.password(username, password).await,
            LoginMethod::ClientCredentials => self.client_credentials().await,
        }
    }

    /// Builds an authorization URL for `response_type` with the given redirect and state.
    fn authorization_request(
        &self,
        response_type: &str,
        redirect_uri: &str,
        state: &str,
        pkce: Option<(&PkceVerifier, PkceMethod)>,
    ) -> Result<Url, AuthError> {
        let mut url = self.config.authorization_endpoint()?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &self.config.client_id)
                .append_pair("response_type", response_type)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair(
                    "response_mode",
                    if response_type == "token" {
                        "fragment"
                    } else {
                        "query"
                    },
                )
                .append_pair("scope", &self.config.delegated_scope())
                .append_pair("state", state);
            if let Some((verifier, method)) = pkce {
                query
                    .append_pair("code_challenge", &verifier.challenge(method))
                    .append_pair("code_challenge_method", method.as_str());
            }
            for (name, value) in &self.config.extra_authorization_params {
                query.append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// Starts a web profile authorization: returns the URL for the user and the values needed
    /// to complete it. `redirect_uri` is where your web server receives the code.
    pub fn web_authorization(&self, redirect_uri: Url) -> Result<WebAuthorization, AuthError> {
        let state = random_token();
        let verifier = self.config.pkce.map(|_| PkceVerifier::generate());
        let pkce = verifier.as_ref().zip(self.config.pkce);
        let url = self.authorization_request("code", redirect_uri.as_str(), &state, pkce)?;
        Ok(WebAuthorization {
            url,
            redirect_uri,
            state,
            verifier,
        })
    }

    /// Completes a web profile authorization with the code your redirect handler received.
    pub async fn complete_web_authorization(
        &self,
        request: &WebAuthorization,
        code: &Secret,
    ) -> Result<Token, AuthError> {
        self.exchange_code(code, &request.redirect_uri, request.verifier.as_ref())
            .await
    }

    /// Exchanges an authorization code for tokens. `redirect_uri` must be the one of the
    /// authorization request.
    pub async fn exchange_code(
        &self,
        code: &Secret,
        redirect_uri: &Url,
        verifier: Option<&PkceVerifier>,
    ) -> Result<Token, AuthError> {
        self.redeem_code(code, redirect_uri.as_str(), verifier)
            .await
    }

    async fn redeem_code(
        &self,
        code: &Secret,
        redirect_uri: &str,
        verifier: Option<&PkceVerifier>,
    ) -> Result<Token, AuthError> {
        let scope = self.config.delegated_scope();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("client_id", &self.config.client_id),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri),
            ("scope", &scope),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier.secret().expose()));
        }
        self.token_request(Grant::AuthorizationCode, form, true)
            .await
    }

    /// Interactive login with the authorization code grant and PKCE: starts the loopback
    /// listener, opens the browser (if configured), reports the URL through `interaction`,
    /// waits (bounded) for the redirect and exchanges the code.
    pub async fn authorize_interactive(
        &self,
        interaction: &dyn Interaction,
    ) -> Result<Token, AuthError> {
        let state = random_token();
        let loopback = self.start_loopback(&state, ResponseMode::Query).await?;
        let redirect_uri = loopback.redirect_uri().to_owned();
        let verifier = self.config.pkce.map(|_| PkceVerifier::generate());
        let pkce = verifier.as_ref().zip(self.config.pkce);
        let url = self.authorization_request("code", &redirect_uri, &state, pkce)?;
        self.present(interaction, &url);
        let params = loopback.wait(self.config.browser_timeout).await?;
        let code = params
            .get("code")
            .map(|c| Secret::new(c.clone()))
            .ok_or_else(|| AuthError::InvalidRedirect("it has no code parameter".to_owned()))?;
        self.redeem_code(&code, &redirect_uri, verifier.as_ref())
            .await
    }

    /// Interactive login with the implicit grant. **Insecure** (the token travels in the URL
    /// fragment and there is no refresh token); use only when the app registration allows
    /// nothing else. The loopback page relays the fragment to the listener.
    pub async fn authorize_implicit(
        &self,
        interaction: &dyn Interaction,
    ) -> Result<Token, AuthError> {
        let state = random_token();
        let loopback = self.start_loopback(&state, ResponseMode::Fragment).await?;
        let redirect_uri = loopback.redirect_uri().to_owned();
        let url = self.authorization_request("token", &redirect_uri, &state, None)?;
        let issued = Utc::now();
        self.present(interaction, &url);
        let mut params = loopback.wait(self.config.browser_timeout).await?;
        let mut fields = TokenFields::default();
        fields.access_token = params.remove("access_token");
        fields.token_type = params.remove("token_type");
        fields.scope = params.remove("scope");
        if let Some(expires_in) = params.get("expires_in") {
            fields.set_expires_in(expires_in);
        }
        fields.into_token(Grant::Implicit, issued, "the implicit sign-in redirect")
    }

    async fn start_loopback(&self, state: &str, mode: ResponseMode) -> Result<Loopback, AuthError> {
        Loopback::start(
            &self.config.redirect_host,
            self.config.redirect_port,
            state.to_owned(),
            mode,
            Pages {
                success: self.config.success_page.clone(),
                failure: self.config.failure_page.clone(),
            },
        )
        .await
    }

    fn present(&self, interaction: &dyn Interaction, url: &Url) {
        let opened = self.config.open_browser && interaction.open_browser(url);
        interaction.authorization_url(url, opened);
    }

    /// App-only token with the client credentials grant (client secret). Needs a tenant-specific
    /// authority and a `.default` scope (the default).
    pub async fn client_credentials(&self) -> Result<Token, AuthError> {
        self.config
            .require_specific_tenant(Grant::ClientCredentials)?;
        let scope = self.config.app_scope()?;
        let secret = self
            .config
            .client_secret
            .as_ref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                AuthError::Config(
                    "client credentials need a client secret; create one under 'Certificates & secrets' in the app registration".to_owned(),
                )
            })?;
        let form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", &scope),
        ];
        self.token_request(Grant::ClientCredentials, form, false)
            .await
    }

    /// Resource owner password credentials (ROPC). **Insecure** and limited by the platform:
    /// no personal accounts, no MFA, tenant-specific authority only.
    pub async fn password(&self, username: &str, password: &Secret) -> Result<Token, AuthError> {
        self.config.require_specific_tenant(Grant::Password)?;
        if username.trim().is_empty() {
            return Err(AuthError::Config(
                "the password grant needs a user name (user@domain)".to_owned(),
            ));
        }
        let scope = self.config.delegated_scope();
        let form = vec![
            ("grant_type", "password"),
            ("client_id", self.config.client_id.as_str()),
            ("username", username),
            ("password", password.expose()),
            ("scope", &scope),
        ];
        self.token_request(Grant::Password, form, true).await
    }

    /// Redeems a refresh token. The answer usually carries a new refresh token that replaces
    /// the old one; when it does not, the old one is kept in the returned token.
    ///
    /// An expired or revoked refresh token gives [`AuthError::ReloginRequired`].
    pub async fn refresh(&self, refresh_token: &Secret, grant: Grant) -> Result<Token, AuthError> {
        let scope = self.config.delegated_scope();
        let form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.config.client_id.as_str()),
            ("refresh_token", refresh_token.expose()),
            ("scope", &scope),
        ];
        let mut token = self.token_request(Grant::RefreshToken, form, true).await?;
        if token.refresh_token.is_none() {
            token.refresh_token = Some(refresh_token.clone());
        }
        token.grant = grant;
        Ok(token)
    }

    /// Device code login for machines without a browser: shows the code through `interaction`,
    /// then polls the token endpoint at the platform's interval until the user finishes,
    /// declines, or the code expires.
    pub async fn device_code(&self, interaction: &dyn Interaction) -> Result<Token, AuthError> {
        let url = self.config.device_code_endpoint()?;
        let scope = self.config.delegated_scope();
        let form = [
            ("client_id", self.config.client_id.as_str()),
            ("scope", &scope),
        ];
        let (status, body) = self.post(&url, &form).await?;
        if !status.is_success() {
            return Err(self.reject(Grant::DeviceCode, status, &body, url.as_str()));
        }
        let answer: DeviceCodeResponse =
            serde_json::from_slice(&body).map_err(|e| AuthError::InvalidResponse {
                url: url.to_string(),
                detail: format!("the device code answer is not usable: {e}"),
            })?;
        let valid_for = Duration::from_secs(answer.expires_in);
        let prompt = DeviceCodePrompt {
            user_code: answer.user_code,
            verification_uri: answer
                .verification_uri
                .or(answer.verification_url)
                .unwrap_or_default(),
            message: answer.message,
            expires_in: valid_for,
        };
        interaction.device_code(&prompt);
        let device_code = Secret::new(answer.device_code);
        let mut interval = answer
            .interval
            .map_or(DEFAULT_POLL_INTERVAL, Duration::from_secs);
        let deadline = tokio::time::Instant::now() + valid_for;
        // Bounded by the code's lifetime: each pass waits `interval` first (RFC 8628 3.4).
        loop {
            tokio::time::sleep(interval).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(AuthError::DeviceCodeExpired { valid_for });
            }
            let form = vec![
                ("grant_type", DEVICE_CODE_GRANT),
                ("client_id", self.config.client_id.as_str()),
                ("device_code", device_code.expose()),
            ];
            match self.token_attempt(Grant::DeviceCode, form, false).await? {
                Ok(token) => return Ok(token),
                Err(error) => match next_poll(error, interval, valid_for) {
                    Poll::Wait(next) => interval = next,
                    Poll::Fail(error) => return Err(error),
                },
            }
        }
    }

    /// Posts a token request and maps a refusal to an [`AuthError`].
    async fn token_request(
        &self,
        grant: Grant,
        form: Vec<(&str, &str)>,
        with_secret: bool,
    ) -> Result<Token, AuthError> {
        match self.token_attempt(grant, form, with_secret).await? {
            Ok(token) => Ok(token),
            Err(error) => Err(self.platform_error(grant, error)),
        }
    }

    /// Posts a token request; `Ok(Err(_))` is the platform's OAuth error answer.
    async fn token_attempt(
        &self,
        grant: Grant,
        mut form: Vec<(&str, &str)>,
        with_secret: bool,
    ) -> Result<Result<Token, PlatformError>, AuthError> {
        // Confidential clients authenticate every delegated request too.
        if with_secret && let Some(secret) = &self.config.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        let url = self.config.token_endpoint()?;
        let issued = Utc::now();
        let (status, body) = self.post(&url, &form).await?;
        if status.is_success() {
            return parse_token_response(&body, grant, issued, url.as_str()).map(Ok);
        }
        match parse_platform_error(&body) {
            Some(error) => {
                tracing::debug!(?grant, error = %error.error, codes = ?error.codes, "token request refused");
                Ok(Err(error))
            }
            None => Err(self.reject(grant, status, &body, url.as_str())),
        }
    }

    fn platform_error(&self, grant: Grant, error: PlatformError) -> AuthError {
        if grant == Grant::RefreshToken && error.error == "invalid_grant" {
            return AuthError::ReloginRequired {
                error,
                login_command: self.config.login_command.clone(),
            };
        }
        AuthError::Rejected {
            grant,
            hint: hint_for(grant, &error),
            error,
        }
    }

    /// Maps a non-2xx answer that may or may not be an OAuth error.
    fn reject(
        &self,
        grant: Grant,
        status: reqwest::StatusCode,
        body: &[u8],
        url: &str,
    ) -> AuthError {
        match parse_platform_error(body) {
            Some(error) => self.platform_error(grant, error),
            None if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                AuthError::Unavailable {
                    url: url.to_owned(),
                    status: status.as_u16(),
                }
            }
            None => AuthError::InvalidResponse {
                url: url.to_owned(),
                detail: format!("HTTP {status} without an OAuth error body"),
            },
        }
    }

    async fn post(
        &self,
        url: &Url,
        form: &[(&str, &str)],
    ) -> Result<(reqwest::StatusCode, Vec<u8>), AuthError> {
        let http_error = |source| AuthError::Http {
            url: url.to_string(),
            source,
        };
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(http_error)?;
        Ok((status, body.to_vec()))
    }
}

/// What to do after a device code poll was refused.
#[derive(Debug)]
enum Poll {
    /// Poll again after this interval.
    Wait(Duration),
    /// Stop with this error.
    Fail(AuthError),
}

/// Maps a refused device code poll (RFC 8628 section 3.5 plus the platform's
/// `authorization_declined`) to the next step.
fn next_poll(error: PlatformError, interval: Duration, valid_for: Duration) -> Poll {
    match error.error.as_str() {
        "authorization_pending" => Poll::Wait(interval),
        "slow_down" => Poll::Wait(interval + SLOW_DOWN_STEP),
        "authorization_declined" | "access_denied" => Poll::Fail(AuthError::DeviceCodeDeclined),
        "expired_token" => Poll::Fail(AuthError::DeviceCodeExpired { valid_for }),
        "bad_verification_code" => Poll::Fail(AuthError::BadVerificationCode),
        _ => Poll::Fail(AuthError::Rejected {
            grant: Grant::DeviceCode,
            hint: hint_for(Grant::DeviceCode, &error),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let config = AuthConfig::new("client-1")
            .with_authority(Url::parse("http://127.0.0.1:9/").expect("url"))
            .with_tenant("contoso");
        Authenticator::new(config).expect("valid config")
    }

    #[test]
    fn web_authorization_url_has_all_parameters() {
        let auth = auth();
        let redirect = Url::parse("https://app.example/callback").expect("url");
        let request = auth.web_authorization(redirect).expect("request");
        let url = request.url();
        assert_eq!(url.path(), "/contoso/oauth2/v2.0/authorize");
        let params = parse_params(url.query().expect("query"));
        let get = |k: &str| params.get(k).map(String::as_str);
        assert_eq!(get("client_id"), Some("client-1"));
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("response_mode"), Some("query"));
        assert_eq!(get("redirect_uri"), Some("https://app.example/callback"));
        assert_eq!(
            get("scope"),
            Some("https://graph.microsoft.com/Mail.Read offline_access")
        );
        assert_eq!(get("state"), Some(request.state()));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        let verifier = request.verifier().expect("pkce on by default");
        assert_eq!(
            get("code_challenge"),
            Some(verifier.challenge(PkceMethod::S256).as_str())
        );
    }

    #[test]
    fn extra_params_and_pkce_off() {
        let mut config = AuthConfig::new("c").with_pkce(None);
        config
            .extra_authorization_params
            .push(("login_hint".to_owned(), "a@b.example".to_owned()));
        let auth = Authenticator::new(config).expect("config");
        let request = auth
            .web_authorization(Url::parse("http://localhost/").expect("url"))
            .expect("request");
        let params = parse_params(request.url().query().expect("query"));
        assert!(!params.contains_key("code_challenge"));
        assert!(request.verifier().is_none());
        assert_eq!(
            params.get("login_hint").map(String::as_str),
            Some("a@b.example")
        );
    }

    #[test]
    fn code_from_redirect_checks_state_and_errors() {
        let auth = auth();
        let request = auth
            .web_authorization(Url::parse("https://app.example/cb").expect("url"))
            .expect("request");
        let good = format!("https://app.example/cb?code=abc&state={}", request.state());
        assert_eq!(
            request.code_from_redirect(&good).expect("code").expose(),
            "abc"
        );
        let forged = "https://app.example/cb?code=abc&state=other";
        assert!(matches!(
            request.code_from_redirect(forged),
            Err(AuthError::StateMismatch)
        ));
        let denied = format!(
            "https://app.example/cb?error=access_denied&error_description=user+said+no&state={}",
            request.state()
        );
        let err = request.code_from_redirect(&denied).expect_err("denied");
        assert!(err.to_string().contains("user said no"), "{err}");
        assert!(matches!(
            request.code_from_redirect("not a url"),
            Err(AuthError::InvalidRedirect(_))
        ));
    }

    #[test]
    fn device_poll_decisions() {
        let refused = |code: &str| PlatformError {
            error: code.to_owned(),
            description: format!("AADSTS70016: {code}"),
            codes: vec![70016],
        };
        let second = Duration::from_secs(1);
        let life = Duration::from_secs(900);
        assert!(
            matches!(next_poll(refused("authorization_pending"), second, life), Poll::Wait(d) if d == second)
        );
        assert!(
            matches!(next_poll(refused("slow_down"), second, life), Poll::Wait(d) if d == Duration::from_secs(6))
        );
        assert!(matches!(
            next_poll(refused("authorization_declined"), second, life),
            Poll::Fail(AuthError::DeviceCodeDeclined)
        ));
        assert!(
            matches!(next_poll(refused("expired_token"), second, life), Poll::Fail(AuthError::DeviceCodeExpired { valid_for }) if valid_for == life)
        );
        assert!(matches!(
            next_poll(refused("bad_verification_code"), second, life),
            Poll::Fail(AuthError::BadVerificationCode)
        ));
        match next_poll(refused("invalid_client"), second, life) {
            Poll::Fail(err @ AuthError::Rejected { .. }) => {
                assert!(err.to_string().contains("invalid_client"), "{err}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let expired = AuthError::DeviceCodeExpired { valid_for: life };
        assert!(
            expired.to_string().contains("within 15 minutes"),
            "{expired}"
        );
    }

    #[tokio::test]
    async fn app_only_grants_need_specific_tenant_before_any_request() {
        let auth = Authenticator::new(AuthConfig::new("c").with_client_secret(Secret::new("s")))
            .expect("config");
        let err = auth.client_credentials().await.expect_err("common tenant");
        assert!(matches!(
            err,
            AuthError::TenantRequired {
                grant: Grant::ClientCredentials,
                ..
            }
        ));
        let err = auth
            .password("u@example.com", &Secret::new("p"))
            .await
            .expect_err("common tenant");
        assert!(err.to_string().contains("tenant-specific"), "{err}");
    }

    /// A token endpoint that answers every request with `status` and `body`.
    async fn fake_token_endpoint(status: u16, body: &'static str) -> Authenticator {
        use axum::http::StatusCode;
        let status = StatusCode::from_u16(status).expect("status");
        let app = axum::Router::new().route(
            "/contoso/oauth2/v2.0/token",
            axum::routing::post(move || async move { (status, body) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let config = AuthConfig::new("c")
            .with_authority(Url::parse(&format!("http://{addr}")).expect("url"))
            .with_tenant("contoso");
        Authenticator::new(config).expect("config")
    }

    #[tokio::test]
    async fn outage_is_transient_and_garbage_is_not() {
        let auth = fake_token_endpoint(503, "<html>Service Unavailable</html>").await;
        let err = auth
            .password("u@contoso.example", &Secret::new("p"))
            .await
            .expect_err("503");
        assert!(
            matches!(err, AuthError::Unavailable { status: 503, .. }),
            "{err:?}"
        );
        assert!(err.is_transient());
        assert!(err.to_string().contains("try again"), "{err}");

        let auth = fake_token_endpoint(200, "<html>login portal</html>").await;
        let err = auth
            .password("u@contoso.example", &Secret::new("p"))
            .await
            .expect_err("html");
        assert!(matches!(err, AuthError::InvalidResponse { .. }), "{err:?}");
        assert!(!err.is_transient());

        let auth = fake_token_endpoint(
            400,
            r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.","error_codes":[700082]}"#,
        )
        .await;
        let err = auth
            .refresh(&Secret::new("old"), Grant::DeviceCode)
            .await
            .expect_err("expired");
        assert!(matches!(err, AuthError::ReloginRequired { .. }), "{err:?}");
        assert!(err.to_string().contains("AADSTS700082"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_transient() {
        // Bind then drop: nothing listens on the port any more.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let config = AuthConfig::new("c")
            .with_authority(Url::parse(&format!("http://127.0.0.1:{port}")).expect("url"))
            .with_tenant("contoso");
        let auth = Authenticator::new(config).expect("config");
        let err = auth
            .password("u@contoso.example", &Secret::new("p"))
            .await
            .expect_err("refused");
        assert!(matches!(err, AuthError::Http { .. }), "{err:?}");
        assert!(err.is_transient());
        assert!(
            err.to_string()
                .contains("cannot reach the identity platform"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn client_credentials_need_a_secret() {
        let err = auth().client_credentials().await.expect_err("no secret");
        assert!(err.to_string().contains("client secret"), "{err}");
    }
}
