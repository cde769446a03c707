//! [`TokenProvider`]: what the Graph client asks for a bearer token, and its implementations.
//!
//! - [`StaticToken`]: a ready token obtained elsewhere (the seed's `Authorization` property,
//!   `"Bearer ACCESS_TOKEN_VALUE"`); it cannot be renewed.
//! - [`CachedTokenProvider`]: keeps the current token set in memory and in a [`TokenCache`] file,
//!   renews it before expiry (with the configured skew) and after a 401, by refresh token
//!   (rotating it: every refresh stores the new refresh token), by client credentials, or by
//!   the password grant.
//!
//! The trait returns boxed futures so it can be used as `Arc<dyn TokenProvider>` (async fns in
//! traits are not object safe). Renewal is serialised by a mutex: concurrent requests that find
//! the token stale wait for one refresh instead of each spending the refresh token.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;

use crate::cache::TokenCache;
use crate::error::{AuthError, Grant};
use crate::flows::Authenticator;
use crate::secret::Secret;
use crate::token::{AccessToken, Token};

/// The future returned by [`TokenProvider`] methods.
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AccessToken, AuthError>> + Send + 'a>>;

/// Supplies bearer tokens to a Graph client.
pub trait TokenProvider: Send + Sync + fmt::Debug {
    /// A token valid for at least the configured skew, renewed first if needed.
    fn access_token(&self) -> TokenFuture<'_>;

    /// Graph answered 401 to a request made with `rejected`: renew (unless another task already
    /// did since) and return the token to retry with. Call it once per failed request; a second
    /// 401 with the new token is a real authorization failure.
    fn on_unauthorized<'a>(&'a self, rejected: &'a AccessToken) -> TokenFuture<'a>;
}

impl<T: TokenProvider + ?Sized> TokenProvider for Arc<T> {
    fn access_token(&self) -> TokenFuture<'_> {
        (**self).access_token()
    }

    fn on_unauthorized<'a>(&'a self, rejected: &'a AccessToken) -> TokenFuture<'a> {
        (**self).on_unauthorized(rejected)
    }
}

/// A fixed token obtained outside this library.
#[derive(Debug, Clone)]
pub struct StaticToken {
    token: AccessToken,
}

impl StaticToken {
    /// Uses `token` as is.
    pub fn new(token: Secret) -> Self {
        Self {
            token: AccessToken::new(token, None),
        }
    }

    /// Parses an authorization string `Bearer <token>` (the seed's `Authorization` property);
    /// a bare token is accepted too.
    pub fn from_authorization(value: &Secret) -> Result<Self, AuthError> {
        let text = value.expose().trim();
        let token = match text.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            Some((scheme, _)) => {
                return Err(AuthError::Config(format!(
                    "the authorization string uses the \"{scheme}\" scheme; only \"Bearer <token>\" is supported"
                )));
            }
            None => text,
        };
        if token.is_empty()
            || token.contains(char::is_whitespace)
            || token.eq_ignore_ascii_case("bearer")
        {
            return Err(AuthError::Config(
                "the authorization string must look like \"Bearer <token>\"".to_owned(),
            ));
        }
        Ok(Self::new(Secret::new(token)))
    }
}

impl TokenProvider for StaticToken {
    fn access_token(&self) -> TokenFuture<'_> {
        Box::pin(async move { Ok(self.token.clone()) })
    }

    fn on_unauthorized<'a>(&'a self, _rejected: &'a AccessToken) -> TokenFuture<'a> {
        Box::pin(async { Err(AuthError::StaticTokenRejected) })
    }
}

/// How a [`CachedTokenProvider`] gets a new token without the user.
enum Renewal {
    /// Redeem the refresh token of the current token set (delegated logins).
    RefreshToken,
    /// Ask again with the client secret.
    ClientCredentials,
    /// Refresh token when there is one, else the password grant again.
    Password { username: String, password: Secret },
}

impl fmt::Debug for Renewal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RefreshToken => f.write_str("RefreshToken"),
            Self::ClientCredentials => f.write_str("ClientCredentials"),
            Self::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

/// Tokens kept in memory and in a cache file, renewed before expiry and after a 401.
#[derive(Debug)]
pub struct CachedTokenProvider {
    auth: Authenticator,
    cache: Option<TokenCache>,
    renewal: Renewal,
    current: tokio::sync::Mutex<Option<Token>>,
}

impl CachedTokenProvider {
    /// Resumes a previous sign-in from `cache` (e.g. `mailbackup login` ran earlier).
    ///
    /// Fails with [`AuthError::NotSignedIn`] when there is no cache file.
    pub fn open(auth: Authenticator, cache: TokenCache) -> Result<Self, AuthError> {
        let token = cache
            .load(auth.config())?
            .ok_or_else(|| AuthError::NotSignedIn {
                reason: format!("no token cache at {}", cache.path().display()),
                login_command: auth.config().login_command.clone(),
            })?;
        let renewal = match token.grant {
            Grant::ClientCredentials => Renewal::ClientCredentials,
            _ => Renewal::RefreshToken,
        };
        Ok(Self {
            auth,
            cache: Some(cache),
            renewal,
            current: tokio::sync::Mutex::new(Some(token)),
        })
    }

    /// Starts from a token set just obtained by a login flow, storing it in `cache` if given.
    pub fn from_login(
        auth: Authenticator,
        cache: Option<TokenCache>,
        token: Token,
    ) -> Result<Self, AuthError> {
        if let Some(cache) = &cache {
            cache.store(auth.config(), &token)?;
        }
        let renewal = match token.grant {
            Grant::ClientCredentials => Renewal::ClientCredentials,
            _ => Renewal::RefreshToken,
        };
        Ok(Self {
            auth,
            cache,
            renewal,
            current: tokio::sync::Mutex::new(Some(token)),
        })
    }

    /// App-only tokens by client credentials, fetched when first needed and again before expiry.
    /// A valid token in `cache` (if given) is reused.
    pub fn client_credentials(
        auth: Authenticator,
        cache: Option<TokenCache>,
    ) -> Result<Self, AuthError> {
        Self::silent(auth, cache, Renewal::ClientCredentials)
    }

    /// Tokens by the password grant (ROPC); renewed by refresh token, or by the password again
    /// when there is no usable refresh token.
    pub fn password(
        auth: Authenticator,
        cache: Option<TokenCache>,
        username: impl Into<String>,
        password: Secret,
    ) -> Result<Self, AuthError> {
        let renewal = Renewal::Password {
            username: username.into(),
            password,
        };
        Self::silent(auth, cache, renewal)
    }

    fn silent(
        auth: Authenticator,
        cache: Option<TokenCache>,
        renewal: Renewal,
    ) -> Result<Self, AuthError> {
        let token = match &cache {
            Some(cache) => cache.load(auth.config())?,
            None => None,
        };
        Ok(Self {
            auth,
            cache,
            renewal,
            current: tokio::sync::Mutex::new(token),
        })
    }

    /// The authenticator (for its configuration).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// A token set another process (or provider) wrote to the cache since we last looked, if
    /// any. Read errors only cost the optimisation, so they are logged, not returned.
    fn newer_in_cache(&self, current: Option<&Token>) -> Option<Token> {
        let cache = self.cache.as_ref()?;
        match cache.load(self.auth.config()) {
            Ok(Some(stored)) if Some(&stored) != current => Some(stored),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "cannot re-read the token cache before renewing");
                None
            }
        }
    }

    /// Gets a new token set. `rejected` is the access token Graph refused, if that is why.
    ///
    /// Refresh tokens rotate, so a second process sharing the cache may have spent ours: the
    /// cache is re-read first, and a newer token set found there is used as is when it is still
    /// fresh (and not the rejected one), or its newer refresh token is redeemed.
    async fn renew(
        &self,
        current: Option<&Token>,
        rejected: Option<&Secret>,
    ) -> Result<Token, AuthError> {
        let newer = self.newer_in_cache(current);
        if let Some(stored) = &newer
            && Some(&stored.access_token) != rejected
            && !stored.needs_renewal(Utc::now(), self.auth.config().refresh_skew)
        {
            tracing::debug!("using the token set another process stored in the cache");
            return Ok(stored.clone());
        }
        let current = newer.as_ref().or(current);
        self.redeem(current).await
    }

    async fn redeem(&self, current: Option<&Token>) -> Result<Token, AuthError> {
        let refresh_token =
            current.and_then(|t| t.refresh_token.as_ref().map(|r| (r.clone(), t.grant)));
        let token = match (&self.renewal, refresh_token) {
            (Renewal::ClientCredentials, _) => self.auth.client_credentials().await?,
            (Renewal::RefreshToken, Some((refresh, grant))) => {
                self.auth.refresh(&refresh, grant).await?
            }
            (Renewal::RefreshToken, None) => {
                let config = self.auth.config();
                return Err(match current {
                    Some(token) => AuthError::CannotRenew {
                        grant: token.grant,
                        login_command: config.login_command.clone(),
                    },
                    None => AuthError::NotSignedIn {
                        reason: "no token available".to_owned(),
                        login_command: config.login_command.clone(),
                    },
                });
            }
            (Renewal::Password { username, password }, Some((refresh, grant))) => {
                match self.auth.refresh(&refresh, grant).await {
                    Ok(token) => token,
                    Err(AuthError::ReloginRequired { .. }) => {
                        tracing::info!("refresh token refused; signing in again with the password");
                        self.auth.password(username, password).await?
                    }
                    Err(other) => return Err(other),
                }
            }
            (Renewal::Password { username, password }, None) => {
                self.auth.password(username, password).await?
            }
        };
        if let Some(cache) = &self.cache {
            // The refresh token may just have been rotated: persist before using the token.
            // If the write fails the run can still go on with the in-memory token; the next run
            // will ask for a new sign-in, so say so loudly.
            if let Err(error) = cache.store(self.auth.config(), &token) {
                tracing::error!(%error, "the renewed token could not be saved; the next run will need a new sign-in");
            }
        }
        tracing::debug!(grant = ?token.grant, expires_at = ?token.expires_at, "access token renewed");
        Ok(token)
    }
}

impl TokenProvider for CachedTokenProvider {
    fn access_token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            if let Some(token) = current.as_ref()
                && !token.needs_renewal(Utc::now(), self.auth.config().refresh_skew)
            {
                return Ok(token.bearer());
            }
            let token = self.renew(current.as_ref(), None).await?;
            let bearer = token.bearer();
            *current = Some(token);
            Ok(bearer)
        })
    }

    fn on_unauthorized<'a>(&'a self, rejected: &'a AccessToken) -> TokenFuture<'a> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            if let Some(token) = current.as_ref()
                && token.access_token != *rejected.secret()
            {
                // Another request already renewed after its own 401: use that token.
                return Ok(token.bearer());
            }
            tracing::debug!("access token rejected with 401; renewing");
            let token = self
                .renew(current.as_ref(), Some(rejected.secret()))
                .await?;
            let bearer = token.bearer();
            *current = Some(token);
            Ok(bearer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_token_from_authorization_string() {
        let provider =
            StaticToken::from_authorization(&Secret::new("Bearer abc.def")).expect("valid");
        let token = provider.access_token().await.expect("token");
        assert_eq!(token.secret().expose(), "abc.def");
        let err = provider
            .on_unauthorized(&token)
            .await
            .expect_err("cannot renew");
        assert!(matches!(err, AuthError::StaticTokenRejected));
        let bare = StaticToken::from_authorization(&Secret::new("xyz")).expect("bare token");
        assert_eq!(
            bare.access_token().await.expect("token").secret().expose(),
            "xyz"
        );
        assert!(StaticToken::from_authorization(&Secret::new("Basic dXNlcg==")).is_err());
        assert!(StaticToken::from_authorization(&Secret::new("Bearer ")).is_err());
        assert!(!format!("{provider:?}").contains("abc.def"));
    }

    #[tokio::test]
    async fn provider_is_object_safe_and_arc_works() {
        let provider: Arc<dyn TokenProvider> = Arc::new(StaticToken::new(Secret::new("t")));
        let wrapped = Arc::new(provider);
        assert_eq!(
            wrapped
                .access_token()
                .await
                .expect("token")
                .secret()
                .expose(),
            "t"
        );
    }

    #[test]
    fn open_without_cache_says_sign_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = Authenticator::new(crate::AuthConfig::new("c")).expect("config");
        let err = CachedTokenProvider::open(auth, TokenCache::new(dir.path().join("none.json")))
            .expect_err("no cache");
        assert!(
            err.to_string().contains("run `mailbackup login` first"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn valid_cached_token_is_used_without_network() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Port 9 (discard) is never an identity platform: any request would fail the test.
        let config = crate::AuthConfig::new("c")
            .with_authority(url::Url::parse("http://127.0.0.1:9").expect("url"));
        let auth = Authenticator::new(config).expect("config");
        let cache = TokenCache::new(dir.path().join("t.json"));
        let token = Token::new(
            Secret::new("fresh"),
            Some(Utc::now() + chrono::Duration::hours(1)),
            Some(Secret::new("r")),
            Grant::DeviceCode,
        );
        cache.store(auth.config(), &token).expect("store");
        let provider = CachedTokenProvider::open(auth, cache).expect("open");
        assert_eq!(
            provider
                .access_token()
                .await
                .expect("token")
                .secret()
                .expose(),
            "fresh"
        );
    }

    #[tokio::test]
    async fn implicit_token_cannot_renew() {
        let config = crate::AuthConfig::new("c")
            .with_authority(url::Url::parse("http://127.0.0.1:9").expect("url"));
        let auth = Authenticator::new(config).expect("config");
        let token = Token::new(
            Secret::new("old"),
            Some(Utc::now() - chrono::Duration::minutes(1)),
            None,
            Grant::Implicit,
        );
        let provider = CachedTokenProvider::from_login(auth, None, token).expect("provider");
        let err = provider.access_token().await.expect_err("expired implicit");
        assert!(
            matches!(
                err,
                AuthError::CannotRenew {
                    grant: Grant::Implicit,
                    ..
                }
            ),
            "{err}"
        );
    }
}
