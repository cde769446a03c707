//! Where access tokens come from.
//!
//! The engine only needs two things from an OAuth implementation: the current access token, and a
//! fresh one after Graph refused a token with 401. [`TokenSource`] is that contract; it is
//! object-safe so a run holds an `Arc<dyn TokenSource>`. The `graph-auth` crate's providers are
//! adapted to it by the CLI; [`StaticToken`] covers the seed's `Authorization` property (a ready
//! `Bearer ...` string obtained elsewhere). This module does no OAuth itself.

use futures_util::future::BoxFuture;
use std::fmt;

/// Error type returned by token sources (any error, its message is shown to the user).
pub type TokenError = Box<dyn std::error::Error + Send + Sync>;

/// Supplies bearer access tokens to the engine.
pub trait TokenSource: Send + Sync {
    /// The access token to send (without the `Bearer ` prefix). Called before requests; should be
    /// cheap when a valid token is cached.
    fn access_token(&self) -> BoxFuture<'_, Result<String, TokenError>>;

    /// Called when Graph answered 401 to a request made with `rejected`. Returns a fresh token,
    /// or an error when none can be obtained without the user. The engine calls it at most once
    /// per refused token and fails the mailbox if the fresh token is refused too.
    fn on_unauthorized<'a>(
        &'a self,
        rejected: &'a str,
    ) -> BoxFuture<'a, Result<String, TokenError>>;
}

/// A fixed token, e.g. the seed's `Authorization` property (`Bearer ACCESS_TOKEN`).
///
/// It cannot be refreshed: a 401 ends the run with a message asking for a fresh token.
#[derive(Clone)]
pub struct StaticToken {
    token: String,
}

impl StaticToken {
    /// Accepts either `Bearer <token>` (the seed's Authorization string) or the bare token.
    pub fn new(authorization: impl AsRef<str>) -> Self {
        let s = authorization.as_ref().trim();
        let token = match s.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => s,
        };
        StaticToken {
            token: token.to_string(),
        }
    }
}

impl fmt::Debug for StaticToken {
    // Never print the token itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken").finish_non_exhaustive()
    }
}

impl TokenSource for StaticToken {
    fn access_token(&self) -> BoxFuture<'_, Result<String, TokenError>> {
        let t = self.token.clone();
        Box::pin(async move { Ok(t) })
    }

    fn on_unauthorized<'a>(
        &'a self,
        _rejected: &'a str,
    ) -> BoxFuture<'a, Result<String, TokenError>> {
        Box::pin(async {
            Err("the fixed access token (Authorization) was refused and cannot be refreshed; obtain a new one"
                .into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_token_strips_bearer_prefix_and_hides_value() {
        let t = StaticToken::new("Bearer abc.def");
        assert_eq!(t.access_token().await.unwrap(), "abc.def");
        assert_eq!(
            StaticToken::new("  xyz ").access_token().await.unwrap(),
            "xyz"
        );
        assert!(!format!("{t:?}").contains("abc"));
        assert!(t.on_unauthorized("abc.def").await.is_err());
    }
}
