//! OAuth 2.0 for the Microsoft identity platform: get and keep Graph access tokens.
//!
//! Flows ([`Authenticator`]):
//! - authorization code with PKCE (S256 by default, plain available) through a loopback redirect
//!   listener on 127.0.0.1, opening the browser and handing the URL to an [`Interaction`]
//!   ([`Authenticator::authorize_interactive`]);
//! - the seed's web profile: build the authorization URL, accept the code later
//!   ([`Authenticator::web_authorization`], [`Authenticator::complete_web_authorization`]);
//! - client credentials with a client secret ([`Authenticator::client_credentials`]);
//! - resource owner password, ROPC ([`Authenticator::password`]);
//! - implicit, insecure, with a relay page for the URL fragment ([`Authenticator::authorize_implicit`]);
//! - device code ([`Authenticator::device_code`]);
//! - refresh ([`Authenticator::refresh`]).
//!
//! Keeping tokens: [`TokenProvider`] is what a Graph client uses; [`CachedTokenProvider`] renews
//! before expiry and after a 401 and rotates the refresh token in a [`TokenCache`] file (atomic
//! writes, mode 0600); [`StaticToken`] wraps a ready `Bearer` token.
//!
//! Secrets (client secret, passwords, tokens) are [`Secret`]s: redacted in `Debug`, never logged.
//!
//! Typical use by a CLI and a Graph client:
//!
//! ```no_run
//! use graph_auth::{
//!     AuthConfig, Authenticator, CachedTokenProvider, StderrInteraction, TokenCache, TokenProvider,
//! };
//!
//! # async fn demo() -> Result<(), graph_auth::AuthError> {
//! let auth = Authenticator::new(AuthConfig::new("00000000-0000-0000-0000-000000000000"))?;
//! let cache = TokenCache::new(".meta/token.json");
//!
//! // `login`: browser sign-in, tokens stored in the cache (0600, atomic).
//! let token = auth.authorize_interactive(&StderrInteraction).await?;
//! CachedTokenProvider::from_login(auth.clone(), Some(cache.clone()), token)?;
//!
//! // Later runs: renewed silently before expiry; after a 401, call `on_unauthorized` once.
//! let provider = CachedTokenProvider::open(auth, cache)?;
//! let bearer = provider.access_token().await?;
//! let retry_with = provider.on_unauthorized(&bearer).await?;
//! # let _ = retry_with;
//! # Ok(()) }
//! ```
//!
//! Choice: the endpoints are called with `reqwest` form posts rather than the `oauth2` crate; see
//! the [`flows`] module documentation for why.
//!
//! What this crate does not do: certificate client assertions, on-behalf-of, managed identities,
//! multi-account caches, or a TLS loopback listener.

#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod error;
pub mod flows;
pub mod interaction;
mod loopback;
pub mod pkce;
pub mod provider;
mod redirect;
pub mod secret;
pub mod token;

pub use cache::{CachedSignIn, TokenCache};
pub use config::AuthConfig;
pub use error::{AuthError, Grant, PlatformError};
pub use flows::{Authenticator, LoginMethod, WebAuthorization};
pub use interaction::{DeviceCodePrompt, Interaction, StderrInteraction};
pub use pkce::{PkceMethod, PkceVerifier};
pub use provider::{CachedTokenProvider, StaticToken, TokenFuture, TokenProvider};
pub use secret::Secret;
pub use token::{AccessToken, Token};
