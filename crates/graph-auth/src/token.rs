//! Tokens: what the token endpoint returns ([`Token`]) and what a Graph request needs
//! ([`AccessToken`]), plus parsing of the endpoint's JSON answers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::{AuthError, Grant, PlatformError};
use crate::secret::Secret;

/// A token set returned by the identity platform.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Token {
    /// The access token sent to Graph.
    pub access_token: Secret,
    /// When the access token expires (from `expires_in`), if the platform said.
    pub expires_at: Option<DateTime<Utc>>,
    /// The refresh token, if one was issued (delegated grants with `offline_access`).
    pub refresh_token: Option<Secret>,
    /// The scopes granted, as returned.
    pub scope: Option<String>,
    /// The grant that produced the token set (a refresh keeps the original grant).
    pub grant: Grant,
}

impl Token {
    /// A token set from its parts, e.g. one obtained by another process.
    pub fn new(
        access_token: Secret,
        expires_at: Option<DateTime<Utc>>,
        refresh_token: Option<Secret>,
        grant: Grant,
    ) -> Self {
        Self {
            access_token,
            expires_at,
            refresh_token,
            scope: None,
            grant,
        }
    }

    /// Whether the access token is expired or will expire within `skew` of `now`.
    ///
    /// A token without a known expiry is treated as valid: only a 401 can tell.
    pub fn needs_renewal(&self, now: DateTime<Utc>, skew: Duration) -> bool {
        match self.expires_at {
            None => false,
            Some(expires_at) => {
                let skew = chrono::Duration::from_std(skew).unwrap_or(chrono::Duration::MAX);
                expires_at.signed_duration_since(now) <= skew
            }
        }
    }

    /// The access token for requests.
    pub fn bearer(&self) -> AccessToken {
        AccessToken {
            token: self.access_token.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// A bearer access token for the `Authorization` header of Graph requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: Secret,
    expires_at: Option<DateTime<Utc>>,
}

impl AccessToken {
    /// A bearer token from its value.
    pub fn new(token: Secret, expires_at: Option<DateTime<Utc>>) -> Self {
        Self { token, expires_at }
    }

    /// The raw token (for `reqwest::RequestBuilder::bearer_auth`, which marks it sensitive).
    pub fn secret(&self) -> &Secret {
        &self.token
    }

    /// When the token expires, if known.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    /// The `Authorization` header value `Bearer <token>`, marked sensitive so HTTP logging
    /// and `Debug` of the request hide it.
    pub fn header_value(&self) -> Result<reqwest::header::HeaderValue, AuthError> {
        let mut value =
            reqwest::header::HeaderValue::try_from(format!("Bearer {}", self.token.expose()))
                .map_err(|_| {
                    AuthError::Config(
                        "the access token contains characters not allowed in an HTTP header"
                            .to_owned(),
                    )
                })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// `expires_in` is a number in v2.0 answers but a string in some v1-style answers: take both.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    fn get(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(t) => t.trim().parse().ok(),
        }
    }
}

/// The fields of a successful token answer (JSON body, or the implicit grant's fragment).
#[derive(Deserialize, Default)]
pub(crate) struct TokenFields {
    pub(crate) access_token: Option<String>,
    pub(crate) token_type: Option<String>,
    expires_in: Option<Seconds>,
    pub(crate) refresh_token: Option<String>,
    pub(crate) scope: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
}

impl TokenFields {
    /// Sets `expires_in` from its text form (as found in a URL fragment).
    pub(crate) fn set_expires_in(&mut self, text: &str) {
        self.expires_in = Some(Seconds::Text(text.to_owned()));
    }

    /// Turns the fields into a [`Token`]; `issued` is when the request was sent, so the
    /// expiry errs on the early side.
    pub(crate) fn into_token(
        self,
        grant: Grant,
        issued: DateTime<Utc>,
        url: &str,
    ) -> Result<Token, AuthError> {
        let access_token = self.access_token.filter(|t| !t.is_empty()).ok_or_else(|| {
            AuthError::InvalidResponse {
                url: url.to_owned(),
                detail: "the answer has no access_token".to_owned(),
            }
        })?;
        if let Some(kind) = &self.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(AuthError::InvalidResponse {
                url: url.to_owned(),
                detail: format!("token type \"{kind}\" is not supported (only Bearer)"),
            });
        }
        let expires_at = self.expires_in.as_ref().and_then(Seconds::get).map(|secs| {
            // Saturate absurd lifetimes instead of overflowing.
            let secs = i64::try_from(secs).unwrap_or(i64::MAX);
            chrono::Duration::try_seconds(secs)
                .and_then(|d| issued.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        });
        Ok(Token {
            access_token: Secret::new(access_token),
            expires_at,
            refresh_token: self
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            scope: self.scope,
            grant,
        })
    }
}

/// Parses the JSON body of a 2xx token endpoint answer.
pub(crate) fn parse_token_response(
    body: &[u8],
    grant: Grant,
    issued: DateTime<Utc>,
    url: &str,
) -> Result<Token, AuthError> {
    let parsed: TokenFields =
        serde_json::from_slice(body).map_err(|e| AuthError::InvalidResponse {
            url: url.to_owned(),
            detail: format!("the token answer is not valid JSON: {e}"),
        })?;
    parsed.into_token(grant, issued, url)
}

/// Parses an OAuth error body (`{"error": ..., "error_description": ..., "error_codes": [...]}`).
///
/// Returns `None` when the body is not an OAuth error (e.g. an HTML proxy page).
pub(crate) fn parse_platform_error(body: &[u8]) -> Option<PlatformError> {
    let parsed: ErrorResponse = serde_json::from_slice(body).ok()?;
    let full = parsed.error_description.unwrap_or_default();
    if full.contains("Trace ID") {
        tracing::debug!(description = %full, "identity platform error details");
    }
    // The platform appends "Trace ID: ... Correlation ID: ... Timestamp: ..." on new lines
    // (some proxies and emulators on the same line): keep only the message itself.
    let first_line = full.lines().next().unwrap_or("");
    let description = first_line
        .split_once(" Trace ID:")
        .map_or(first_line, |(message, _)| message)
        .trim()
        .to_owned();
    Some(PlatformError {
        error: parsed.error,
        description: if description.is_empty() {
            "no description given".to_owned()
        } else {
            description
        },
        codes: parsed.error_codes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid time")
    }

    #[test]
    fn expiry_skew() {
        let token = Token::new(Secret::new("a"), Some(at(3600)), None, Grant::DeviceCode);
        let skew = Duration::from_secs(300);
        assert!(!token.needs_renewal(at(0), skew));
        assert!(!token.needs_renewal(at(3299), skew));
        assert!(
            token.needs_renewal(at(3300), skew),
            "exactly at the margin renews"
        );
        assert!(token.needs_renewal(at(4000), skew), "expired renews");
        assert!(!token.needs_renewal(at(3599), Duration::ZERO));
        assert!(token.needs_renewal(at(3600), Duration::ZERO));
        let unknown = Token::new(Secret::new("a"), None, None, Grant::Implicit);
        assert!(!unknown.needs_renewal(at(1_000_000), skew));
        assert!(
            token.needs_renewal(at(0), Duration::MAX),
            "huge skew saturates"
        );
    }

    #[test]
    fn parses_v2_and_string_expiry() {
        let body = br#"{"token_type":"Bearer","scope":"Mail.Read","expires_in":3599,"ext_expires_in":3599,"access_token":"at","refresh_token":"rt"}"#;
        let token = parse_token_response(body, Grant::AuthorizationCode, at(0), "u").expect("ok");
        assert_eq!(token.access_token.expose(), "at");
        assert_eq!(token.refresh_token.as_ref().map(Secret::expose), Some("rt"));
        assert_eq!(token.expires_at, Some(at(3599)));
        let body = br#"{"token_type":"bearer","expires_in":"60","access_token":"at"}"#;
        let token = parse_token_response(body, Grant::ClientCredentials, at(0), "u").expect("ok");
        assert_eq!(token.expires_at, Some(at(60)));
        assert!(token.refresh_token.is_none());
    }

    #[test]
    fn refuses_unusable_answers() {
        let err =
            parse_token_response(b"{}", Grant::Password, at(0), "https://t").expect_err("no token");
        assert!(err.to_string().contains("no access_token"), "{err}");
        let err = parse_token_response(
            br#"{"access_token":"a","token_type":"pop"}"#,
            Grant::Password,
            at(0),
            "u",
        )
        .expect_err("pop");
        assert!(err.to_string().contains("pop"));
        assert!(parse_token_response(b"<html>", Grant::Password, at(0), "u").is_err());
    }

    #[test]
    fn platform_error_keeps_first_line() {
        let body = br#"{"error":"invalid_grant","error_description":"AADSTS50126: Error validating credentials due to invalid username or password.\r\nTrace ID: abc\r\nCorrelation ID: def","error_codes":[50126]}"#;
        let error = parse_platform_error(body).expect("error");
        assert_eq!(error.error, "invalid_grant");
        assert_eq!(
            error.description,
            "AADSTS50126: Error validating credentials due to invalid username or password."
        );
        assert_eq!(error.codes, vec![50126]);
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Trace ID: 1 Correlation ID: 2"}"#;
        let error = parse_platform_error(body).expect("error");
        assert_eq!(
            error.description,
            "AADSTS7000215: Invalid client secret provided."
        );
        assert!(error.has_code(7000215), "code found in the description");
        assert!(parse_platform_error(b"<html>bad gateway</html>").is_none());
    }

    #[test]
    fn header_value_is_sensitive_and_debug_redacted() {
        let token = AccessToken::new(Secret::new("eyJ0eXAi"), None);
        let value = token.header_value().expect("header");
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().expect("ascii"), "Bearer eyJ0eXAi");
        assert!(!format!("{token:?}").contains("eyJ0eXAi"));
        let bad = AccessToken::new(Secret::new("a\nb"), None);
        assert!(bad.header_value().is_err());
    }
}
