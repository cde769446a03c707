//! Sign-in: builds graph-auth's configuration from the merged settings, runs the chosen login
//! flow, and adapts graph-auth's `TokenProvider` to the engine's `TokenSource`.
//!
//! Secrets come from environment variables or files, never from flags, and are never printed.

use crate::config::{AuthSettings, ENV_AUTHORIZATION, ENV_CLIENT_SECRET, ENV_PASSWORD, Flow};
use anyhow::{Context, Result, anyhow, bail};
use futures_util::future::BoxFuture;
use graph_auth::{
    AccessToken, AuthConfig, Authenticator, CachedTokenProvider, DeviceCodePrompt, Interaction,
    PkceMethod, Secret, StderrInteraction, TokenCache, TokenProvider,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Adapts a graph-auth provider to the engine's token trait.
struct ProviderTokens(Arc<dyn TokenProvider>);

impl mailbackup::TokenSource for ProviderTokens {
    fn access_token(&self) -> BoxFuture<'_, Result<String, mailbackup::TokenError>> {
        Box::pin(async move {
            let t = self.0.access_token().await?;
            Ok(t.secret().expose().to_string())
        })
    }

    fn on_unauthorized<'a>(
        &'a self,
        rejected: &'a str,
    ) -> BoxFuture<'a, Result<String, mailbackup::TokenError>> {
        Box::pin(async move {
            let rejected = AccessToken::new(Secret::new(rejected), None);
            let t = self.0.on_unauthorized(&rejected).await?;
            Ok(t.secret().expose().to_string())
        })
    }
}

/// Whether a graphical display is available (browser login possible).
pub(crate) fn has_display() -> bool {
    if cfg!(target_os = "linux") {
        ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    } else {
        true
    }
}

pub(crate) fn secret_from(env: &str, file: Option<&Path>) -> Result<Option<Secret>> {
    if let Some(f) = file {
        return Ok(Some(Secret::from_file(f)?));
    }
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
        _ => Ok(None),
    }
}

fn auth_config(s: &AuthSettings) -> Result<AuthConfig> {
    let Some(client_id) = &s.client_id else {
        bail!(
            "no client id: give --client-id or auth.client_id (the app registration's application id)"
        );
    };
    let mut c = AuthConfig::new(client_id.clone());
    if let Some(a) = &s.authority {
        c = c.with_authority(
            url::Url::parse(a).with_context(|| format!("authority {a:?} is not a URL"))?,
        );
    }
    if let Some(t) = &s.tenant {
        c = c.with_tenant(t.clone());
    }
    if let Some(sc) = &s.scopes {
        c = c.with_scopes(sc.clone());
    }
    if let Some(secret) = secret_from(ENV_CLIENT_SECRET, s.client_secret_file.as_deref())? {
        c = c.with_client_secret(secret);
    }
    if let Some(p) = s.redirect_port {
        c = c.with_redirect_port(p);
    }
    if let Some(t) = s.browser_timeout {
        c = c.with_browser_timeout(Duration::from_secs(t));
    }
    if s.no_browser {
        c = c.with_open_browser(false);
    }
    if let Some(p) = &s.pkce {
        c = c.with_pkce(match p.to_ascii_lowercase().as_str() {
            "s256" => Some(PkceMethod::S256),
            "plain" => Some(PkceMethod::Plain),
            "none" | "off" => None,
            other => bail!("pkce must be S256, plain or none, not {other:?}"),
        });
    }
    c.validate()?;
    Ok(c)
}

fn password(s: &AuthSettings) -> Result<(String, Secret)> {
    let user = s
        .username
        .clone()
        .ok_or_else(|| anyhow!("the password flow needs --username or auth.username"))?;
    let pw = secret_from(ENV_PASSWORD, s.password_file.as_deref())?.ok_or_else(|| {
        anyhow!("the password flow needs the password in {ENV_PASSWORD} or a file given by --password-file")
    })?;
    Ok((user, pw))
}

/// Prints login instructions to stderr (URLs and device codes are not secrets): the
/// authorization URL as graph-auth's [`StderrInteraction`] does, the device code with its
/// lifetime.
struct Prompt;

impl Interaction for Prompt {
    fn authorization_url(&self, url: &url::Url, browser_opened: bool) {
        StderrInteraction.authorization_url(url, browser_opened);
    }

    fn device_code(&self, prompt: &DeviceCodePrompt) {
        eprintln!("{}", prompt.message);
        eprintln!(
            "(code {} at {}, valid {} minutes)",
            prompt.user_code,
            prompt.verification_uri,
            prompt.expires_in.as_secs() / 60
        );
    }
}

/// `mailbackup login`: runs a flow and stores the tokens in the cache. Returns the flow used.
pub(crate) async fn login(s: &AuthSettings) -> Result<Flow> {
    let config = auth_config(s)?;
    let flow = match s.flow {
        Flow::Auto if has_display() => Flow::Browser,
        Flow::Auto => Flow::DeviceCode,
        f => f,
    };
    let auth = Authenticator::new(config)?;
    let token = match flow {
        Flow::Browser => auth.authorize_interactive(&Prompt).await?,
        Flow::DeviceCode => auth.device_code(&Prompt).await?,
        Flow::ClientCredentials => auth.client_credentials().await?,
        Flow::Password => {
            let (u, p) = password(s)?;
            auth.password(&u, &p).await?
        }
        Flow::Implicit => auth.authorize_implicit(&Prompt).await?,
        Flow::Web => {
            let redirect = s.redirect_uri.as_deref().ok_or_else(|| {
                anyhow!("the web flow needs --redirect-uri (registered with the app)")
            })?;
            let redirect = url::Url::parse(redirect).context("redirect URI")?;
            let web = auth.web_authorization(redirect)?;
            eprintln!(
                "Open this URL, sign in, then paste the URL you were redirected to:\n\n  {}\n",
                web.url()
            );
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the redirect URL")?;
            let code = web.code_from_redirect(line.trim())?;
            auth.complete_web_authorization(&web, &code).await?
        }
        Flow::Auto => bail!("no login flow chosen"),
    };
    let cache = TokenCache::new(&s.token_cache);
    CachedTokenProvider::from_login(auth, Some(cache), token)?;
    Ok(flow)
}

/// The token source of `run`: a ready authorization, or a cached/renewable provider.
/// Fills a missing client id, authority and tenant from what the token cache was written with
/// (`login` stored them), so `run` needs them only at login.
pub(crate) fn with_cached_sign_in(mut s: AuthSettings) -> Result<AuthSettings> {
    if s.client_id.is_some() && s.authority.is_some() && s.tenant.is_some() {
        return Ok(s);
    }
    let Some(cached) = TokenCache::new(&s.token_cache).sign_in()? else {
        return Ok(s);
    };
    // Only complete the settings of the same app: a different client id means another cache.
    if s.client_id.as_ref().is_some_and(|c| *c != cached.client_id) {
        return Ok(s);
    }
    s.client_id.get_or_insert(cached.client_id);
    s.authority
        .get_or_insert_with(|| cached.authority.as_str().to_string());
    s.tenant.get_or_insert(cached.tenant);
    Ok(s)
}

pub(crate) fn token_source(s: &AuthSettings) -> Result<Arc<dyn mailbackup::TokenSource>> {
    if let Some(a) = secret_from(ENV_AUTHORIZATION, s.authorization_file.as_deref())? {
        return Ok(Arc::new(mailbackup::StaticToken::new(a.expose())));
    }
    let config = auth_config(s)?;
    let auth = Authenticator::new(config)?;
    let cache = TokenCache::new(&s.token_cache);
    let provider: CachedTokenProvider = match s.flow {
        Flow::ClientCredentials => CachedTokenProvider::client_credentials(auth, Some(cache))?,
        Flow::Password => {
            let (u, p) = password(s)?;
            CachedTokenProvider::password(auth, Some(cache), u, p)?
        }
        _ => CachedTokenProvider::open(auth, cache)?,
    };
    Ok(Arc::new(ProviderTokens(Arc::new(provider))))
}
