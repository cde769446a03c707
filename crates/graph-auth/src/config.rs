//! [`AuthConfig`]: client registration, endpoints, scopes and login behaviour.
//!
//! Defaults follow the seed (Office365Backup `OAuth` settings) and the Microsoft identity platform:
//! authority `https://login.microsoftonline.com`, tenant `common`, endpoints
//! `{authority}/{tenant}/oauth2/v2.0/{authorize,token,devicecode}`, delegated scope `Mail.Read`
//! on Graph (the seed's `mail.read`, written fully qualified, which the platform treats the same),
//! `offline_access` added so a refresh token comes back (`OAuthRequestRefreshToken`, true), PKCE
//! with `S256` (`OAuthUsePKCE`, `OAuthPKCEChallengeEncoding`), redirect host `localhost` on an
//! ephemeral port (`OAuthWebServerHost`, `OAuthWebServerPort` = 0), browser opened automatically.
//!
//! One default differs on purpose: the seed's `OAuthBrowserResponseTimeout` is 0 (wait forever);
//! here the browser wait is bounded (5 minutes by default) so an abandoned login cannot hang a
//! backup job.

use std::time::Duration;

use url::Url;

use crate::error::{AuthError, Grant};
use crate::pkce::PkceMethod;
use crate::secret::Secret;

/// The public Microsoft identity platform authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The default tenant: any work, school or personal account.
pub const DEFAULT_TENANT: &str = "common";
/// The delegated scope requested by default (read mail, including MIME content).
pub const DEFAULT_DELEGATED_SCOPE: &str = "https://graph.microsoft.com/Mail.Read";
/// The scope for app-only (client credentials) tokens: the app's configured Graph permissions.
pub const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The scope that makes the platform return a refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Tenants that are not one directory: client credentials and ROPC cannot use them.
const MULTI_TENANT_NAMES: [&str; 3] = ["common", "organizations", "consumers"];

/// OAuth settings for the Microsoft identity platform.
///
/// Create with [`AuthConfig::new`] and adjust with the `with_*` methods or the public fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Application (client) id of the app registration.
    pub client_id: String,
    /// Client secret; required for client credentials, optional for confidential web apps.
    pub client_secret: Option<Secret>,
    /// Authority base URL, without the tenant (default [`DEFAULT_AUTHORITY`]).
    pub authority: Url,
    /// Tenant id, domain, or `common`/`organizations`/`consumers` (default `common`).
    pub tenant: String,
    /// Overrides the authorization endpoint (the seed's `ServerAuthURL`).
    pub authorization_url: Option<Url>,
    /// Overrides the token endpoint (the seed's `ServerTokenURL`).
    pub token_url: Option<Url>,
    /// Overrides the device code endpoint.
    pub device_code_url: Option<Url>,
    /// Scopes; `None` means the default of the grant (delegated `Mail.Read`, or `.default` for
    /// client credentials).
    pub scopes: Option<Vec<String>>,
    /// Adds `offline_access` to delegated scopes so a refresh token is returned (default true).
    pub request_refresh_token: bool,
    /// PKCE method for the authorization code grant; `None` disables PKCE (default `S256`).
    pub pkce: Option<PkceMethod>,
    /// Host name written in the loopback redirect URI (default `localhost`); the listener
    /// itself always binds 127.0.0.1.
    pub redirect_host: String,
    /// Loopback listener port; 0 picks a free port (default 0).
    pub redirect_port: u16,
    /// How long to wait for the browser to come back to the loopback listener (default 5 min).
    pub browser_timeout: Duration,
    /// Try to open the system browser for interactive logins (default true).
    pub open_browser: bool,
    /// Extra query parameters for the authorization URL, e.g. `login_hint`, `prompt`, `domain_hint`
    /// (the seed's `OAuthParamName`/`OAuthParamValue`).
    pub extra_authorization_params: Vec<(String, String)>,
    /// HTML shown in the browser after a successful login (the seed's `OAuthWebServerResponse`).
    pub success_page: Option<String>,
    /// HTML shown in the browser after a failed login (the seed's `OAuthWebServerFailedResponse`);
    /// the default page explains the error.
    pub failure_page: Option<String>,
    /// Renew access tokens this long before they expire (default 5 minutes).
    pub refresh_skew: Duration,
    /// Command named in "sign in again" messages (default `mailbackup login`).
    pub login_command: String,
    /// Timeout of each HTTP request to the identity platform (default 60 s).
    pub http_timeout: Duration,
}

impl AuthConfig {
    /// Default settings for the app registration `client_id`.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: None,
            authority: Url::parse(DEFAULT_AUTHORITY).expect("constant URL parses"),
            tenant: DEFAULT_TENANT.to_owned(),
            authorization_url: None,
            token_url: None,
            device_code_url: None,
            scopes: None,
            request_refresh_token: true,
            pkce: Some(PkceMethod::S256),
            redirect_host: "localhost".to_owned(),
            redirect_port: 0,
            browser_timeout: Duration::from_secs(300),
            open_browser: true,
            extra_authorization_params: Vec::new(),
            success_page: None,
            failure_page: None,
            refresh_skew: Duration::from_secs(300),
            login_command: "mailbackup login".to_owned(),
            http_timeout: Duration::from_secs(60),
        }
    }

    /// Sets the tenant (id, domain, `common`, `organizations` or `consumers`).
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Sets the authority base URL (e.g. an emulator's URL).
    pub fn with_authority(mut self, authority: Url) -> Self {
        self.authority = authority;
        self
    }

    /// Sets the client secret.
    pub fn with_client_secret(mut self, secret: Secret) -> Self {
        self.client_secret = Some(secret);
        self
    }

    /// Sets the scopes.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the PKCE method (`None` disables PKCE).
    pub fn with_pkce(mut self, pkce: Option<PkceMethod>) -> Self {
        self.pkce = pkce;
        self
    }

    /// Enables or disables opening the system browser.
    pub fn with_open_browser(mut self, open: bool) -> Self {
        self.open_browser = open;
        self
    }

    /// Sets the loopback redirect port (0 = any free port).
    pub fn with_redirect_port(mut self, port: u16) -> Self {
        self.redirect_port = port;
        self
    }

    /// Sets the bounded wait for the browser.
    pub fn with_browser_timeout(mut self, timeout: Duration) -> Self {
        self.browser_timeout = timeout;
        self
    }

    /// Sets the command named in "sign in again" messages.
    pub fn with_login_command(mut self, command: impl Into<String>) -> Self {
        self.login_command = command.into();
        self
    }

    /// Checks the settings every flow needs.
    pub fn validate(&self) -> Result<(), AuthError> {
        if self.client_id.trim().is_empty() {
            return Err(AuthError::Config(
                "the client id is empty; set it to the application (client) id of your app registration".to_owned(),
            ));
        }
        self.check_tenant()?;
        if let Some(scopes) = &self.scopes
            && scopes.iter().all(|s| s.trim().is_empty())
        {
            return Err(AuthError::Config(
                "the scope list is empty; leave it unset for the default or name at least one scope".to_owned(),
            ));
        }
        Ok(())
    }

    fn check_tenant(&self) -> Result<(), AuthError> {
        let tenant = self.tenant.trim();
        if tenant.is_empty() || tenant.contains(['/', '?', '#', ' ']) {
            return Err(AuthError::Config(format!(
                "the tenant \"{}\" is not a tenant id, domain, common, organizations or consumers",
                self.tenant
            )));
        }
        Ok(())
    }

    fn endpoint(&self, name: &str) -> Result<Url, AuthError> {
        self.check_tenant()?;
        let base = self.authority.as_str().trim_end_matches('/');
        let text = format!("{base}/{}/oauth2/v2.0/{name}", self.tenant.trim());
        Url::parse(&text)
            .map_err(|e| AuthError::Config(format!("cannot build the {name} URL \"{text}\": {e}")))
    }

    /// The authorization endpoint (override or `{authority}/{tenant}/oauth2/v2.0/authorize`).
    pub fn authorization_endpoint(&self) -> Result<Url, AuthError> {
        match &self.authorization_url {
            Some(url) => Ok(url.clone()),
            None => self.endpoint("authorize"),
        }
    }

    /// The token endpoint (override or `{authority}/{tenant}/oauth2/v2.0/token`).
    pub fn token_endpoint(&self) -> Result<Url, AuthError> {
        match &self.token_url {
            Some(url) => Ok(url.clone()),
            None => self.endpoint("token"),
        }
    }

    /// The device code endpoint (override or `{authority}/{tenant}/oauth2/v2.0/devicecode`).
    pub fn device_code_endpoint(&self) -> Result<Url, AuthError> {
        match &self.device_code_url {
            Some(url) => Ok(url.clone()),
            None => self.endpoint("devicecode"),
        }
    }

    /// The `scope` parameter for delegated grants: configured or default scopes, plus
    /// `offline_access` when a refresh token is wanted.
    pub fn delegated_scope(&self) -> String {
        let mut scopes: Vec<String> = match &self.scopes {
            Some(list) => list
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => vec![DEFAULT_DELEGATED_SCOPE.to_owned()],
        };
        if self.request_refresh_token
            && !scopes
                .iter()
                .any(|s| s.eq_ignore_ascii_case(OFFLINE_ACCESS))
        {
            scopes.push(OFFLINE_ACCESS.to_owned());
        }
        scopes.join(" ")
    }

    /// The `scope` parameter for client credentials: configured scopes (each must end in
    /// `/.default`, as the platform requires) or [`GRAPH_DEFAULT_SCOPE`].
    pub fn app_scope(&self) -> Result<String, AuthError> {
        match &self.scopes {
            None => Ok(GRAPH_DEFAULT_SCOPE.to_owned()),
            Some(list) => {
                let list: Vec<&str> = list
                    .iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect();
                if let Some(bad) = list.iter().find(|s| !s.ends_with("/.default")) {
                    return Err(AuthError::Config(format!(
                        "client credentials need a \".default\" scope such as {GRAPH_DEFAULT_SCOPE}, \
                         not \"{bad}\"; grant application permissions in the app registration instead"
                    )));
                }
                Ok(list.join(" "))
            }
        }
    }

    /// Fails with [`AuthError::TenantRequired`] when the token endpoint names a multi-tenant alias.
    pub(crate) fn require_specific_tenant(&self, grant: Grant) -> Result<(), AuthError> {
        let url = self.token_endpoint()?;
        let alias = url.path_segments().into_iter().flatten().find(|seg| {
            MULTI_TENANT_NAMES
                .iter()
                .any(|n| seg.eq_ignore_ascii_case(n))
        });
        match alias {
            Some(tenant) => Err(AuthError::TenantRequired {
                grant,
                tenant: tenant.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoints_match_the_seed() {
        let config = AuthConfig::new("client");
        assert_eq!(
            config.authorization_endpoint().expect("url").as_str(),
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
        );
        assert_eq!(
            config.token_endpoint().expect("url").as_str(),
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        );
        assert_eq!(
            config.device_code_endpoint().expect("url").as_str(),
            "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
        );
    }

    #[test]
    fn authority_with_path_and_tenant() {
        let authority = Url::parse("http://127.0.0.1:8080/login/").expect("url");
        let config = AuthConfig::new("c")
            .with_authority(authority)
            .with_tenant("contoso.example");
        assert_eq!(
            config.token_endpoint().expect("url").as_str(),
            "http://127.0.0.1:8080/login/contoso.example/oauth2/v2.0/token"
        );
        let bad = AuthConfig::new("c").with_tenant("a/b");
        assert!(matches!(bad.token_endpoint(), Err(AuthError::Config(_))));
    }

    #[test]
    fn delegated_scope_adds_offline_access_once() {
        let config = AuthConfig::new("c");
        assert_eq!(
            config.delegated_scope(),
            "https://graph.microsoft.com/Mail.Read offline_access"
        );
        let config = AuthConfig::new("c").with_scopes(["Mail.Read", "Offline_Access"]);
        assert_eq!(config.delegated_scope(), "Mail.Read Offline_Access");
        let mut config = AuthConfig::new("c").with_scopes(["Mail.Read"]);
        config.request_refresh_token = false;
        assert_eq!(config.delegated_scope(), "Mail.Read");
    }

    #[test]
    fn app_scope_requires_dot_default() {
        assert_eq!(
            AuthConfig::new("c").app_scope().expect("default"),
            "https://graph.microsoft.com/.default"
        );
        let err = AuthConfig::new("c")
            .with_scopes(["Mail.Read"])
            .app_scope()
            .expect_err("not .default");
        assert!(err.to_string().contains(".default"), "{err}");
    }

    #[test]
    fn specific_tenant_required_for_app_only_grants() {
        let err = AuthConfig::new("c")
            .require_specific_tenant(Grant::ClientCredentials)
            .expect_err("common");
        assert!(err.to_string().contains("\"common\""), "{err}");
        let mut config = AuthConfig::new("c");
        config.token_url =
            Some(Url::parse("https://x.example/organizations/oauth2/v2.0/token").expect("url"));
        assert!(config.require_specific_tenant(Grant::Password).is_err());
        let config = AuthConfig::new("c").with_tenant("11111111-2222-3333-4444-555555555555");
        config
            .require_specific_tenant(Grant::Password)
            .expect("tenant id is specific");
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let config = AuthConfig::new("c").with_client_secret(Secret::new("s3cr3t-value"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("client_id: \"c\""));
    }

    #[test]
    fn validation_messages() {
        assert!(AuthConfig::new(" ").validate().is_err());
        assert!(AuthConfig::new("c").with_scopes([" "]).validate().is_err());
        AuthConfig::new("c").validate().expect("defaults are valid");
    }
}
