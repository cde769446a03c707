//! End-to-end tests of every flow against `graph-emulator`'s identity endpoints, over real
//! sockets on 127.0.0.1. The "browser" is reqwest: it GETs the authorization URL without following
//! redirects, then GETs (or, for the implicit relay page, POSTs) the Location on our listener.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use graph_auth::{
    AccessToken, AuthConfig, AuthError, Authenticator, CachedTokenProvider, DeviceCodePrompt,
    Grant, Interaction, LoginMethod, PkceMethod, Secret, TokenCache, TokenProvider,
    WebAuthorization,
};
use graph_emulator::{
    AppRegistration, DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_PASSWORD,
    DEFAULT_PUBLIC_CLIENT_ID, DEFAULT_TENANT_DOMAIN, DEFAULT_USER, Emulator, EmulatorConfig,
    IdentityHandle,
};
use tokio::sync::mpsc;
use url::Url;

/// What the test user does with a device code.
#[derive(Clone)]
enum DeviceAction {
    /// Nothing: the emulator approves after its configured number of pending polls.
    Wait,
    /// Declines on the verification page.
    Decline(IdentityHandle),
    /// Lets the code expire.
    Expire(IdentityHandle),
}

/// An [`Interaction`] that hands URLs to the test and acts on device codes.
struct TestUser {
    urls: mpsc::UnboundedSender<Url>,
    prompts: Mutex<Vec<DeviceCodePrompt>>,
    device_action: DeviceAction,
}

impl TestUser {
    fn new(device_action: DeviceAction) -> (Self, mpsc::UnboundedReceiver<Url>) {
        let (urls, rx) = mpsc::unbounded_channel();
        let user = Self {
            urls,
            prompts: Mutex::new(Vec::new()),
            device_action,
        };
        (user, rx)
    }
}

impl Interaction for TestUser {
    fn authorization_url(&self, url: &Url, browser_opened: bool) {
        assert!(!browser_opened, "tests never open a real browser");
        self.urls.send(url.clone()).expect("test is listening");
    }

    fn device_code(&self, prompt: &DeviceCodePrompt) {
        match &self.device_action {
            DeviceAction::Wait => {}
            DeviceAction::Decline(identity) => identity
                .decline_device_code(&prompt.user_code)
                .expect("known user code"),
            DeviceAction::Expire(identity) => identity
                .expire_device_code(&prompt.user_code)
                .expect("known user code"),
        }
        self.prompts.lock().expect("lock").push(prompt.clone());
    }

    fn open_browser(&self, _url: &Url) -> bool {
        panic!("open_browser must not be called when open_browser is false");
    }
}

async fn emulator() -> Emulator {
    emulator_with(EmulatorConfig::default()).await
}

async fn emulator_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("emulator starts")
}

fn config(emu: &Emulator, client_id: &str, tenant: &str) -> AuthConfig {
    let mut config = AuthConfig::new(client_id)
        .with_authority(Url::parse(&emu.authority_url()).expect("authority URL"))
        .with_tenant(tenant)
        .with_open_browser(false)
        .with_browser_timeout(Duration::from_secs(20));
    config.redirect_host = "127.0.0.1".to_owned();
    config
}

fn public(emu: &Emulator) -> Authenticator {
    Authenticator::new(config(emu, DEFAULT_PUBLIC_CLIENT_ID, "common")).expect("config")
}

fn confidential(emu: &Emulator) -> Authenticator {
    let config = config(emu, DEFAULT_CONFIDENTIAL_CLIENT_ID, emu.tenant_id())
        .with_client_secret(Secret::new(DEFAULT_CLIENT_SECRET));
    Authenticator::new(config).expect("config")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Plays the browser at the authorize endpoint: returns the redirect Location.
async fn authorize_redirect(url: Url) -> Url {
    let answer = no_redirects().get(url).send().await.expect("authorize GET");
    assert_eq!(answer.status(), 302, "the emulator consents at once");
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .expect("Location")
        .to_str()
        .expect("ASCII Location");
    Url::parse(location).expect("Location is a URL")
}

/// Follows the redirect to our listener; returns status and page.
async fn visit(url: Url) -> (u16, String) {
    let page = no_redirects().get(url).send().await.expect("loopback GET");
    let status = page.status().as_u16();
    (status, page.text().await.expect("page"))
}

/// Full browser round trip for the code flow; returns the authorize URL and the loopback page.
async fn browser(mut urls: mpsc::UnboundedReceiver<Url>) -> (Url, u16, String) {
    let url = urls.recv().await.expect("authorization URL");
    let location = authorize_redirect(url.clone()).await;
    let (status, page) = visit(location).await;
    (url, status, page)
}

fn query(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn graph_me(emu: &Emulator, token: &AccessToken) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/me", emu.graph_url()))
        .bearer_auth(token.secret().expose())
        .send()
        .await
        .expect("Graph GET")
        .status()
        .as_u16()
}

async fn code_flow(method: PkceMethod) {
    let emu = emulator().await;
    let auth = Authenticator::new(
        config(&emu, DEFAULT_PUBLIC_CLIENT_ID, "common").with_pkce(Some(method)),
    )
    .expect("config");
    let (user, urls) = TestUser::new(DeviceAction::Wait);
    let (token, (url, status, page)) =
        tokio::join!(auth.authorize_interactive(&user), browser(urls));
    let token = token.expect("signed in");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Sign-in is complete"));
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some(method.as_str())
    );
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("https://graph.microsoft.com/Mail.Read offline_access")
    );
    assert_eq!(token.grant, Grant::AuthorizationCode);
    assert!(
        token.refresh_token.is_some(),
        "offline_access is requested by default"
    );
    assert!(token.expires_at.is_some());
    assert_eq!(graph_me(&emu, &token.bearer()).await, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn authorization_code_with_pkce_s256() {
    code_flow(PkceMethod::S256).await;
}

#[tokio::test]
async fn authorization_code_with_pkce_plain() {
    code_flow(PkceMethod::Plain).await;
}

#[tokio::test]
async fn authorization_code_via_localhost_redirect_host() {
    let emu = emulator().await;
    let mut config = config(&emu, DEFAULT_PUBLIC_CLIENT_ID, "common");
    config.redirect_host = "localhost".to_owned();
    let auth = Authenticator::new(config).expect("config");
    let (user, mut urls) = TestUser::new(DeviceAction::Wait);
    let drive = async {
        let url = urls.recv().await.expect("url");
        let redirect_uri = query(&url, "redirect_uri").expect("redirect_uri");
        assert!(
            redirect_uri.starts_with("http://localhost:"),
            "{redirect_uri}"
        );
        let mut location = authorize_redirect(url).await;
        // Reach the listener on its IPv4 address whatever "localhost" resolves to here.
        location.set_host(Some("127.0.0.1")).expect("host");
        visit(location).await
    };
    let (token, (status, _)) = tokio::join!(auth.authorize_interactive(&user), drive);
    assert_eq!(status, 200);
    token.expect("signed in with the seed's default redirect host");
    emu.shutdown().await;
}

#[tokio::test]
async fn state_mismatch_is_rejected() {
    let emu = emulator().await;
    let auth = public(&emu);
    let (user, mut urls) = TestUser::new(DeviceAction::Wait);
    let drive = async {
        let url = urls.recv().await.expect("url");
        let location = authorize_redirect(url).await;
        // A forged redirect: same code, another state.
        let mut forged = location.clone();
        let pairs: Vec<(String, String)> = location
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "state" { "forged".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        forged.query_pairs_mut().clear().extend_pairs(pairs);
        visit(forged).await
    };
    let (result, (status, page)) = tokio::join!(auth.authorize_interactive(&user), drive);
    assert!(
        matches!(result, Err(AuthError::StateMismatch)),
        "{result:?}"
    );
    assert_eq!(status, 400);
    assert!(page.contains("state mismatch"), "{page}");
    emu.shutdown().await;
}

#[tokio::test]
async fn consent_denied_is_reported() {
    let emu = emulator().await;
    emu.identity().set_decline_consent(true);
    let auth = public(&emu);
    let (user, urls) = TestUser::new(DeviceAction::Wait);
    let (result, (_, status, page)) =
        tokio::join!(auth.authorize_interactive(&user), browser(urls));
    let err = result.expect_err("declined");
    assert!(
        matches!(err, AuthError::AuthorizationDenied { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("access_denied") && text.contains("AADSTS65004"),
        "{text}"
    );
    assert_eq!(status, 400);
    assert!(page.contains("Sign-in failed"), "{page}");
    emu.shutdown().await;
}

#[tokio::test]
async fn browser_wait_is_bounded() {
    let emu = emulator().await;
    let config = config(&emu, DEFAULT_PUBLIC_CLIENT_ID, "common")
        .with_browser_timeout(Duration::from_millis(200));
    let auth = Authenticator::new(config).expect("config");
    let (user, _urls) = TestUser::new(DeviceAction::Wait);
    let err = auth
        .authorize_interactive(&user)
        .await
        .expect_err("nobody signs in");
    assert!(matches!(err, AuthError::BrowserTimeout { .. }), "{err:?}");
    emu.shutdown().await;
}

const WEB_CLIENT_ID: &str = "0d3a5c7e-web0-4f00-8000-00000000c0de";
const WEB_SECRET: &str = "web-app-secret";
const WEB_CALLBACK: &str = "https://app.example/auth/callback";

/// An emulator with a confidential web app whose redirect URI is its own server's callback.
async fn web_emulator() -> (Emulator, Authenticator) {
    let app = AppRegistration::confidential_client(WEB_CLIENT_ID, WEB_SECRET)
        .with_redirect_uri(WEB_CALLBACK);
    let emu = emulator_with(EmulatorConfig::default().with_app(app)).await;
    let auth = Authenticator::new(
        config(&emu, WEB_CLIENT_ID, "common").with_client_secret(Secret::new(WEB_SECRET)),
    )
    .expect("config");
    (emu, auth)
}

#[tokio::test]
async fn web_profile_url_now_code_later() {
    let (emu, auth) = web_emulator().await;
    let redirect = Url::parse(WEB_CALLBACK).expect("url");
    let request = auth.web_authorization(redirect.clone()).expect("request");
    assert_eq!(
        query(request.url(), "redirect_uri").as_deref(),
        Some(WEB_CALLBACK)
    );
    let location = authorize_redirect(request.url().clone()).await;
    assert_eq!(location.path(), "/auth/callback");
    let code = request
        .code_from_redirect(location.as_str())
        .expect("code with the right state");

    // Another instance completes it from the stored state and verifier.
    let verifier = request.verifier().cloned();
    let saved = WebAuthorization::resume(redirect, request.state().to_owned(), verifier);
    let token = auth
        .complete_web_authorization(&saved, &code)
        .await
        .expect("code exchanged");
    assert!(token.refresh_token.is_some());
    assert_eq!(graph_me(&emu, &token.bearer()).await, 200);

    // The code is single use.
    let err = auth
        .complete_web_authorization(&saved, &code)
        .await
        .expect_err("code reused");
    let text = err.to_string();
    assert!(
        text.contains("AADSTS54005") && text.contains("sign in again"),
        "{text}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn web_profile_wrong_verifier_or_state_is_refused() {
    let (emu, auth) = web_emulator().await;
    let redirect = Url::parse(WEB_CALLBACK).expect("url");
    let request = auth.web_authorization(redirect.clone()).expect("request");
    let location = authorize_redirect(request.url().clone()).await;

    // The redirect of another attempt (other state) is refused before any exchange.
    let other = auth.web_authorization(redirect.clone()).expect("request");
    assert!(matches!(
        other.code_from_redirect(location.as_str()),
        Err(AuthError::StateMismatch)
    ));

    let code = request.code_from_redirect(location.as_str()).expect("code");
    let wrong = graph_auth::PkceVerifier::generate();
    let err = auth
        .exchange_code(&code, &redirect, Some(&wrong))
        .await
        .expect_err("wrong verifier");
    assert!(err.to_string().contains("AADSTS501481"), "{err}");
    emu.shutdown().await;
}

#[tokio::test]
async fn client_credentials() {
    let emu = emulator().await;
    let token = confidential(&emu)
        .client_credentials()
        .await
        .expect("app token");
    assert_eq!(token.grant, Grant::ClientCredentials);
    assert!(token.refresh_token.is_none());
    let status = reqwest::Client::new()
        .get(format!("{}/users/{DEFAULT_USER}/messages", emu.graph_url()))
        .bearer_auth(token.access_token.expose())
        .send()
        .await
        .expect("Graph GET")
        .status();
    assert_eq!(status, 200);

    // Tenant-specific authority required: refused before any request.
    let common = config(&emu, DEFAULT_CONFIDENTIAL_CLIENT_ID, "common")
        .with_client_secret(Secret::new(DEFAULT_CLIENT_SECRET));
    let err = Authenticator::new(common)
        .expect("config")
        .client_credentials()
        .await
        .expect_err("common");
    assert!(matches!(err, AuthError::TenantRequired { .. }), "{err:?}");

    // A wrong secret gets advice about the secret.
    let wrong = config(&emu, DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_TENANT_DOMAIN)
        .with_client_secret(Secret::new("not-the-secret"));
    let err = Authenticator::new(wrong)
        .expect("config")
        .client_credentials()
        .await
        .expect_err("wrong secret");
    let text = err.to_string();
    assert!(text.contains("invalid_client"), "{text}");
    assert!(
        !text.contains("not-the-secret"),
        "the secret never appears: {text}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn password_grant_right_and_wrong() {
    let emu = emulator().await;
    let auth = Authenticator::new(config(&emu, DEFAULT_PUBLIC_CLIENT_ID, emu.tenant_id()))
        .expect("config");
    let token = auth
        .password(DEFAULT_USER, &Secret::new(DEFAULT_PASSWORD))
        .await
        .expect("right password");
    assert_eq!(token.grant, Grant::Password);
    assert!(token.refresh_token.is_some());
    assert_eq!(graph_me(&emu, &token.bearer()).await, 200);

    let err = auth
        .password(DEFAULT_USER, &Secret::new("wrong-password"))
        .await
        .expect_err("wrong password");
    let text = err.to_string();
    assert!(
        text.starts_with("the identity platform rejected the user name and password: AADSTS50126"),
        "{text}"
    );
    assert!(
        text.ends_with("(invalid_grant); check the user name and password"),
        "{text}"
    );
    assert!(!text.contains("wrong-password"));

    let common = public(&emu);
    let err = common
        .password(DEFAULT_USER, &Secret::new(DEFAULT_PASSWORD))
        .await
        .expect_err("common tenant");
    assert!(matches!(
        err,
        AuthError::TenantRequired {
            grant: Grant::Password,
            ..
        }
    ));
    emu.shutdown().await;
}

#[tokio::test]
async fn implicit_grant_relays_the_fragment() {
    let emu = emulator().await;
    let auth = public(&emu);
    let (user, mut urls) = TestUser::new(DeviceAction::Wait);
    let drive = async {
        let url = urls.recv().await.expect("url");
        assert_eq!(query(&url, "response_type").as_deref(), Some("token"));
        assert_eq!(query(&url, "response_mode").as_deref(), Some("fragment"));
        let location = authorize_redirect(url).await;
        let fragment = location
            .fragment()
            .expect("token in the fragment")
            .to_owned();
        assert!(fragment.contains("access_token="));
        // The browser never sends the fragment: it loads the page, whose script posts it.
        let mut page_url = location.clone();
        page_url.set_fragment(None);
        let (status, page) = visit(page_url.clone()).await;
        assert_eq!(status, 200);
        assert!(
            page.contains("location.hash") && page.contains("/fragment"),
            "{page}"
        );
        let posted = no_redirects()
            .post(page_url.join("/fragment").expect("url"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(fragment)
            .send()
            .await
            .expect("POST fragment");
        posted.status().as_u16()
    };
    let (token, status) = tokio::join!(auth.authorize_implicit(&user), drive);
    assert_eq!(status, 200);
    let token = token.expect("implicit token");
    assert_eq!(token.grant, Grant::Implicit);
    assert!(
        token.refresh_token.is_none(),
        "implicit never returns a refresh token"
    );
    assert!(token.expires_at.is_some());
    assert_eq!(graph_me(&emu, &token.bearer()).await, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn device_code_pending_then_success() {
    let emu = emulator().await;
    let auth = public(&emu);
    let (user, _urls) = TestUser::new(DeviceAction::Wait);
    let token = auth
        .device_code(&user)
        .await
        .expect("approved after a pending poll");
    assert_eq!(token.grant, Grant::DeviceCode);
    assert!(token.refresh_token.is_some());
    assert_eq!(graph_me(&emu, &token.bearer()).await, 200);
    let prompts = user.prompts.lock().expect("lock").clone();
    assert_eq!(prompts.len(), 1);
    assert!(prompts[0].message.contains(&prompts[0].user_code));
    assert!(!prompts[0].verification_uri.is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn device_code_declined() {
    let emu = emulator().await;
    let auth = public(&emu);
    let (user, _urls) = TestUser::new(DeviceAction::Decline(emu.identity()));
    let err = auth.device_code(&user).await.expect_err("declined");
    assert!(matches!(err, AuthError::DeviceCodeDeclined), "{err:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn device_code_expired() {
    let emu = emulator().await;
    let auth = public(&emu);
    let (user, _urls) = TestUser::new(DeviceAction::Expire(emu.identity()));
    let err = auth.device_code(&user).await.expect_err("expired");
    assert!(
        matches!(err, AuthError::DeviceCodeExpired { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("run the login again"));
    emu.shutdown().await;
}

/// Signs in with ROPC (no browser needed) and returns a provider over a cache in `dir`.
async fn signed_in(
    emu: &Emulator,
    dir: &std::path::Path,
) -> (Authenticator, CachedTokenProvider, TokenCache) {
    let auth =
        Authenticator::new(config(emu, DEFAULT_PUBLIC_CLIENT_ID, emu.tenant_id())).expect("config");
    let token = auth
        .password(DEFAULT_USER, &Secret::new(DEFAULT_PASSWORD))
        .await
        .expect("signed in");
    let cache = TokenCache::new(dir.join(".meta").join("token.json"));
    let provider =
        CachedTokenProvider::from_login(auth.clone(), Some(cache.clone()), token).expect("stored");
    (auth, provider, cache)
}

#[tokio::test]
async fn refresh_rotation_old_refresh_token_refused() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (auth, provider, cache) = signed_in(&emu, dir.path()).await;
    let first = cache.load(auth.config()).expect("load").expect("cached");
    let old_refresh = first.refresh_token.clone().expect("refresh token");

    let before = provider.access_token().await.expect("token");
    let after = provider.on_unauthorized(&before).await.expect("renewed");
    assert_ne!(before, after);

    let second = cache.load(auth.config()).expect("load").expect("cached");
    let new_refresh = second.refresh_token.clone().expect("refresh token");
    assert_ne!(
        old_refresh, new_refresh,
        "the cache holds the rotated refresh token"
    );
    assert_eq!(second.access_token, *after.secret());

    let err = auth
        .refresh(&old_refresh, Grant::Password)
        .await
        .expect_err("old refresh token is dead");
    assert!(matches!(err, AuthError::ReloginRequired { .. }), "{err:?}");
    assert!(
        err.to_string().ends_with("run `mailbackup login` again"),
        "{err}"
    );

    // A later run resumes from the cache with the newest refresh token.
    let reopened = CachedTokenProvider::open(auth.clone(), cache.clone()).expect("open");
    let token = reopened.access_token().await.expect("cached token");
    assert_eq!(token, after);
    let renewed = reopened
        .on_unauthorized(&token)
        .await
        .expect("refresh with rotated token");
    assert_eq!(graph_me(&emu, &renewed).await, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn refresh_before_expiry_with_skew() {
    let emu = emulator_with(
        EmulatorConfig::default().with_access_token_lifetime(Duration::from_secs(600)),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_auth, provider, cache) = signed_in(&emu, dir.path()).await;
    let identity = emu.identity();

    // 600 s left, 300 s skew: no renewal.
    let issued = identity.access_tokens_issued();
    let a = provider.access_token().await.expect("token");
    let b = provider.access_token().await.expect("token");
    assert_eq!(a, b);
    assert_eq!(identity.access_tokens_issued(), issued);

    // A skew larger than the lifetime: every call finds the token stale and refreshes.
    let mut config = config(&emu, DEFAULT_PUBLIC_CLIENT_ID, emu.tenant_id());
    config.refresh_skew = Duration::from_secs(900);
    let eager = CachedTokenProvider::open(Authenticator::new(config).expect("config"), cache)
        .expect("open");
    let c = eager.access_token().await.expect("renewed");
    assert_ne!(c, a);
    assert_eq!(identity.access_tokens_issued(), issued + 1);
    assert_eq!(graph_me(&emu, &c).await, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn refresh_after_401_once_for_concurrent_requests() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_auth, provider, _cache) = signed_in(&emu, dir.path()).await;
    let provider: Arc<dyn TokenProvider> = Arc::new(provider);
    let identity = emu.identity();

    let token = provider.access_token().await.expect("token");
    assert_eq!(graph_me(&emu, &token).await, 200);
    identity.expire_access_tokens();
    assert_eq!(graph_me(&emu, &token).await, 401);

    // Two requests got the 401 with the same token: one refresh serves both.
    let issued = identity.access_tokens_issued();
    let (x, y) = tokio::join!(
        provider.on_unauthorized(&token),
        provider.on_unauthorized(&token)
    );
    let (x, y) = (x.expect("renewed"), y.expect("renewed"));
    assert_eq!(x, y);
    assert_eq!(identity.access_tokens_issued(), issued + 1);
    assert_eq!(graph_me(&emu, &x).await, 200);
    assert_eq!(provider.access_token().await.expect("token"), x);
    emu.shutdown().await;
}

#[tokio::test]
async fn revoked_refresh_token_asks_for_login() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_auth, provider, _cache) = signed_in(&emu, dir.path()).await;
    let token = provider.access_token().await.expect("token");
    emu.identity().revoke_refresh_tokens();
    let err = provider.on_unauthorized(&token).await.expect_err("revoked");
    assert!(matches!(err, AuthError::ReloginRequired { .. }), "{err:?}");
    assert!(
        err.to_string().contains("run `mailbackup login` again"),
        "{err}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn client_credentials_provider_renews_silently() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = TokenCache::new(dir.path().join("app-token.json"));
    let provider = CachedTokenProvider::client_credentials(confidential(&emu), Some(cache.clone()))
        .expect("provider");
    let first = provider.access_token().await.expect("fetched on first use");
    emu.identity().expire_access_tokens();
    let second = provider
        .on_unauthorized(&first)
        .await
        .expect("fetched again");
    assert_ne!(first, second);
    let cached = cache
        .load(confidential(&emu).config())
        .expect("load")
        .expect("cached");
    assert_eq!(cached.access_token, *second.secret());
    emu.shutdown().await;
}

#[tokio::test]
async fn password_provider_falls_back_to_password_when_refresh_is_revoked() {
    let emu = emulator().await;
    let auth = Authenticator::new(config(&emu, DEFAULT_PUBLIC_CLIENT_ID, emu.tenant_id()))
        .expect("config");
    let provider =
        CachedTokenProvider::password(auth, None, DEFAULT_USER, Secret::new(DEFAULT_PASSWORD))
            .expect("provider");
    let first = provider.access_token().await.expect("password grant");
    emu.identity().revoke_refresh_tokens();
    let second = provider
        .on_unauthorized(&first)
        .await
        .expect("password again");
    assert_eq!(graph_me(&emu, &second).await, 200);
    assert!(!format!("{provider:?}").contains(DEFAULT_PASSWORD));
    emu.shutdown().await;
}

#[tokio::test]
async fn login_dispatches_by_method() {
    let emu = emulator().await;
    let (user, _urls) = TestUser::new(DeviceAction::Wait);
    let auth = Authenticator::new(config(&emu, DEFAULT_PUBLIC_CLIENT_ID, emu.tenant_id()))
        .expect("config");
    let method = LoginMethod::Password {
        username: DEFAULT_USER.to_owned(),
        password: Secret::new(DEFAULT_PASSWORD),
    };
    assert!(!format!("{method:?}").contains(DEFAULT_PASSWORD));
    let token = auth.login(&method, &user).await.expect("password");
    assert_eq!(token.grant, Grant::Password);
    let token = confidential(&emu)
        .login(&LoginMethod::ClientCredentials, &user)
        .await
        .expect("client credentials");
    assert_eq!(token.grant, Grant::ClientCredentials);
    emu.shutdown().await;
}

#[tokio::test]
async fn two_processes_sharing_a_cache_follow_each_others_rotation() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (auth, first, cache) = signed_in(&emu, dir.path()).await;
    // A second "process" resumes from the same cache file.
    let second = CachedTokenProvider::open(auth.clone(), cache.clone()).expect("open");
    let shared = second.access_token().await.expect("cached token");

    // The first one renews: the refresh token both started with is now spent.
    emu.identity().expire_access_tokens();
    let renewed = first.on_unauthorized(&shared).await.expect("renewed");
    assert_ne!(renewed, shared);

    // The second one gets a 401 too: it picks up the renewed token set from the cache
    // instead of redeeming the spent refresh token (which would force a new login).
    let issued = emu.identity().access_tokens_issued();
    let adopted = second.on_unauthorized(&shared).await.expect("adopted");
    assert_eq!(adopted, renewed);
    assert_eq!(
        emu.identity().access_tokens_issued(),
        issued,
        "no extra refresh"
    );

    // Both keep renewing with the newest refresh token.
    let again = second.on_unauthorized(&adopted).await.expect("refresh");
    assert_eq!(graph_me(&emu, &again).await, 200);
    let next = first
        .on_unauthorized(&renewed)
        .await
        .expect("first follows");
    assert_eq!(next, again, "the first adopts what the second stored");
    emu.shutdown().await;
}
