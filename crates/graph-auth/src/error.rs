//! [`AuthError`]: every way getting a token can fail, each with a message that says what to do.
//!
//! Errors returned by the identity platform keep its `error` code, the `AADSTS` codes and the first
//! line of `error_description` (the trace and correlation ids that follow it are logged at debug
//! level instead, so messages stay short). A hint chosen from the grant and the code tells the user
//! what to check.

use std::path::PathBuf;
use std::time::Duration;

/// The OAuth grant that was being performed when the identity platform answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Grant {
    /// Authorization code (interactive browser login or web profile).
    AuthorizationCode,
    /// Implicit grant (token in the redirect fragment).
    Implicit,
    /// Resource owner password credentials (ROPC).
    Password,
    /// Client credentials (app-only).
    ClientCredentials,
    /// Device authorization grant.
    DeviceCode,
    /// Refresh token grant.
    RefreshToken,
}

impl Grant {
    /// Short human name used in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization code",
            Self::Implicit => "implicit sign-in",
            Self::Password => "user name and password",
            Self::ClientCredentials => "client credentials",
            Self::DeviceCode => "device code",
            Self::RefreshToken => "saved refresh token",
        }
    }
}

/// An error from the identity platform's token or device code endpoint, as parsed from its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformError {
    /// The OAuth `error` code, e.g. `invalid_grant`.
    pub error: String,
    /// The first line of `error_description`, e.g. `AADSTS50126: Error validating credentials...`.
    pub description: String,
    /// The numeric `error_codes` (the `AADSTS` numbers), if given.
    pub codes: Vec<u64>,
}

impl PlatformError {
    /// Whether the error carries the `AADSTS` number `code`.
    pub fn has_code(&self, code: u64) -> bool {
        self.codes.contains(&code) || self.description.contains(&format!("AADSTS{code}:"))
    }
}

/// Errors of `graph-auth`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The configuration cannot work; the message names the setting.
    #[error("invalid OAuth configuration: {0}")]
    Config(String),

    /// Client credentials and ROPC need a tenant id or domain, not `common`/`organizations`/`consumers`.
    #[error(
        "the {grant} grant needs a tenant-specific authority, but the tenant is \"{tenant}\"; \
         set the tenant to your directory (tenant) id or domain, e.g. contoso.onmicrosoft.com",
        grant = .grant.describe()
    )]
    TenantRequired {
        /// The grant that was attempted.
        grant: Grant,
        /// The tenant that was configured.
        tenant: String,
    },

    /// The identity platform refused the request.
    #[error(
        "the identity platform rejected the {what}: {description} ({code}); {hint}",
        what = .grant.describe(), description = .error.description, code = .error.error
    )]
    Rejected {
        /// The grant that was attempted.
        grant: Grant,
        /// What the platform said.
        error: PlatformError,
        /// What the user should check.
        hint: String,
    },

    /// The saved refresh token expired or was revoked: an interactive login is needed.
    #[error(
        "the saved sign-in is no longer valid: {description} ({code}); run `{login_command}` again",
        description = .error.description, code = .error.error
    )]
    ReloginRequired {
        /// What the platform said.
        error: PlatformError,
        /// The command that signs in again.
        login_command: String,
    },

    /// There is no usable token in the cache and the provider cannot get one without the user.
    #[error("not signed in ({reason}); run `{login_command}` first")]
    NotSignedIn {
        /// Why no token is available.
        reason: String,
        /// The command that signs in.
        login_command: String,
    },

    /// The user denied consent or the authorization server reported an error on the redirect.
    #[error(
        "sign-in was denied or failed in the browser: {description} ({error}); start the login again and accept the requested permissions"
    )]
    AuthorizationDenied {
        /// The OAuth `error` code from the redirect, e.g. `access_denied`.
        error: String,
        /// The `error_description` from the redirect.
        description: String,
    },

    /// The redirect carried a `state` different from the one sent: possibly a forged request.
    #[error(
        "the browser returned a response for a different sign-in attempt (state mismatch); close old sign-in tabs and start the login again"
    )]
    StateMismatch,

    /// No redirect reached the loopback listener in time.
    #[error("no answer from the browser within {} s; start the login again (or raise the browser timeout)", .waited.as_secs())]
    BrowserTimeout {
        /// How long we waited.
        waited: Duration,
    },

    /// The user declined the device code request.
    #[error(
        "the sign-in request was declined on the device code page (authorization_declined); run the login again and approve it"
    )]
    DeviceCodeDeclined,

    /// The device code expired before the user completed sign-in.
    #[error("the device code expired before sign-in was completed (expired_token); run the login again and enter the code within {} minutes", .valid_for.as_secs().div_ceil(60))]
    DeviceCodeExpired {
        /// How long the code was valid.
        valid_for: Duration,
    },

    /// The identity platform did not recognise the device code.
    #[error(
        "the identity platform did not recognise the device code (bad_verification_code); run the login again"
    )]
    BadVerificationCode,

    /// The loopback listener for the redirect could not be started.
    #[error(
        "cannot listen on {addr} for the sign-in redirect: {source}; choose another redirect port or free this one"
    )]
    Listener {
        /// The address we tried.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },

    /// The identity platform could not be reached.
    #[error(
        "cannot reach the identity platform at {url}: {source}; check the network, proxy and authority URL"
    )]
    Http {
        /// The endpoint.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },

    /// The identity platform answered 429 or a 5xx without an OAuth error: try again later.
    #[error(
        "the identity platform at {url} is unavailable (HTTP {status}); try again in a few minutes"
    )]
    Unavailable {
        /// The endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
    },

    /// The identity platform answered something we cannot use.
    #[error(
        "unexpected answer from the identity platform at {url}: {detail}; check the authority URL"
    )]
    InvalidResponse {
        /// The endpoint.
        url: String,
        /// What was wrong.
        detail: String,
    },

    /// A redirect URL given to the web profile could not be used.
    #[error(
        "cannot use the redirect URL: {0}; pass the full URL the browser was sent to, or just the code"
    )]
    InvalidRedirect(String),

    /// Reading or writing the token cache failed.
    #[error("cannot {action} the token cache {}: {source}; check the directory's permissions and free space", .path.display())]
    Cache {
        /// What we were doing (`read`, `write`, ...).
        action: &'static str,
        /// The cache file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The token cache exists but cannot be used.
    #[error("the token cache {} cannot be used: {detail}; run `{login_command}` again", .path.display())]
    CacheUnusable {
        /// The cache file.
        path: PathBuf,
        /// Why (corrupt, other client id, other token endpoint).
        detail: String,
        /// The command that signs in again.
        login_command: String,
    },

    /// A fixed `Authorization` token was rejected by the service and cannot be renewed.
    #[error(
        "the configured access token was rejected (401 Unauthorized) and cannot be renewed; obtain a new token or configure an OAuth sign-in instead"
    )]
    StaticTokenRejected,

    /// A token from a grant without refresh (implicit) expired or was rejected.
    #[error("the {} token expired and this grant cannot renew it silently; run `{login_command}` again", .grant.describe())]
    CannotRenew {
        /// The grant that produced the token.
        grant: Grant,
        /// The command that signs in again.
        login_command: String,
    },

    /// A secret could not be read from the environment.
    #[error("cannot read the secret from environment variable {var}: {reason}")]
    SecretEnv {
        /// The variable name.
        var: String,
        /// Why.
        reason: &'static str,
    },

    /// A secret could not be read from a file.
    #[error("cannot read the secret from {}: {detail}", .path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

impl AuthError {
    /// Whether trying the same request again later may succeed (network failure, timeout,
    /// 429 or 5xx from the identity platform, or its `temporarily_unavailable` error). Callers
    /// that retry (e.g. a Graph client's backoff) use this; every other error needs a change of
    /// configuration or a new sign-in.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http { source, .. } => {
                source.is_timeout() || source.is_connect() || source.is_request()
            }
            Self::Unavailable { .. } => true,
            Self::Rejected { error, .. } => {
                error.error == "temporarily_unavailable" || error.error == "server_error"
            }
            _ => false,
        }
    }
}

/// Picks the advice for an error returned by the token endpoint.
pub(crate) fn hint_for(grant: Grant, error: &PlatformError) -> String {
    let hint = match (grant, error.error.as_str()) {
        _ if error.has_code(50076) || error.has_code(50079) => {
            "the account requires multi-factor authentication, which this grant cannot perform; use the browser or device code login"
        }
        _ if error.has_code(7000215) || error.has_code(7000222) => {
            "the client secret is wrong or expired; create a new secret in the app registration"
        }
        _ if error.has_code(700016) => {
            "the client id is not registered in this tenant; check the client id and tenant"
        }
        _ if error.has_code(90002) || error.has_code(900023) => {
            "the tenant was not found; check the tenant id or domain"
        }
        (_, "invalid_scope") => "check the configured scopes",
        (_, "unauthorized_client") => {
            "the app registration does not allow this grant; enable it (e.g. 'Allow public client flows') or use another login method"
        }
        (_, "invalid_client") => "check the client id and client secret",
        (_, "consent_required" | "interaction_required") => {
            "an administrator must grant consent to the app, or sign in interactively"
        }
        (Grant::Password, "invalid_grant") => "check the user name and password",
        (Grant::AuthorizationCode, "invalid_grant") => {
            "the authorization code expired, was already used or does not match the PKCE verifier or redirect URI; sign in again"
        }
        (Grant::ClientCredentials, _) => {
            "check the client id, client secret, tenant and that the app has application permissions with admin consent"
        }
        _ => "check the app registration and the OAuth configuration",
    };
    hint.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(error: &str, description: &str, codes: &[u64]) -> PlatformError {
        PlatformError {
            error: error.to_owned(),
            description: description.to_owned(),
            codes: codes.to_vec(),
        }
    }

    #[test]
    fn ropc_wrong_password_message_is_actionable() {
        let error = platform(
            "invalid_grant",
            "AADSTS50126: Error validating credentials due to invalid username or password.",
            &[50126],
        );
        let err = AuthError::Rejected {
            grant: Grant::Password,
            hint: hint_for(Grant::Password, &error),
            error,
        };
        assert_eq!(
            err.to_string(),
            "the identity platform rejected the user name and password: AADSTS50126: Error validating \
             credentials due to invalid username or password. (invalid_grant); check the user name and password"
        );
    }

    #[test]
    fn codes_found_in_description_when_list_missing() {
        let error = platform(
            "invalid_grant",
            "AADSTS50076: Due to a configuration change",
            &[],
        );
        assert!(error.has_code(50076));
        assert!(hint_for(Grant::Password, &error).contains("multi-factor"));
        let error = platform(
            "invalid_client",
            "AADSTS7000215: Invalid client secret",
            &[7000215],
        );
        assert!(hint_for(Grant::ClientCredentials, &error).contains("client secret"));
    }

    #[test]
    fn transient_errors() {
        let unavailable = AuthError::Unavailable {
            url: "u".to_owned(),
            status: 503,
        };
        assert!(unavailable.is_transient());
        let busy = AuthError::Rejected {
            grant: Grant::RefreshToken,
            error: platform("temporarily_unavailable", "AADSTS50196: busy", &[50196]),
            hint: String::new(),
        };
        assert!(busy.is_transient());
        assert!(!AuthError::StateMismatch.is_transient());
        let wrong = AuthError::Rejected {
            grant: Grant::Password,
            error: platform("invalid_grant", "AADSTS50126: wrong", &[50126]),
            hint: String::new(),
        };
        assert!(!wrong.is_transient());
    }

    #[test]
    fn relogin_names_the_command() {
        let err = AuthError::ReloginRequired {
            error: platform(
                "invalid_grant",
                "AADSTS700082: The refresh token has expired",
                &[700082],
            ),
            login_command: "mailbackup login".to_owned(),
        };
        let text = err.to_string();
        assert!(text.ends_with("run `mailbackup login` again"), "{text}");
        assert!(text.contains("AADSTS700082"));
    }
}
