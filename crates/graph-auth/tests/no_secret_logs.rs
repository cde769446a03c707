//! Secrets never reach the logs: runs sign-ins, refreshes and failures against the emulator with
//! every `graph_auth` event enabled at TRACE level and searches the captured output for the
//! password, the client secret and every token that was issued.

use std::io::Write;
use std::sync::{Arc, Mutex};

use graph_auth::{
    AuthConfig, AuthError, Authenticator, CachedTokenProvider, Secret, TokenCache, TokenProvider,
};
use graph_emulator::{
    DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_PASSWORD,
    DEFAULT_PUBLIC_CLIENT_ID, DEFAULT_USER, Emulator, EmulatorConfig,
};
use url::Url;

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

#[tokio::test]
async fn no_secret_appears_in_trace_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("graph_auth=trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // tokio::test runs on one thread, so a thread-local default covers every task.
    let _guard = tracing::subscriber::set_default(subscriber);

    let emu = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let authority = Url::parse(&emu.authority_url()).expect("url");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut secrets: Vec<String> = vec![
        DEFAULT_PASSWORD.to_owned(),
        DEFAULT_CLIENT_SECRET.to_owned(),
    ];

    // Delegated: ROPC, rotation, 401 renewal, a wrong password.
    let auth = Authenticator::new(
        AuthConfig::new(DEFAULT_PUBLIC_CLIENT_ID)
            .with_authority(authority.clone())
            .with_tenant(emu.tenant_id()),
    )
    .expect("config");
    let token = auth
        .password(DEFAULT_USER, &Secret::new(DEFAULT_PASSWORD))
        .await
        .expect("sign-in");
    secrets.push(token.access_token.expose().to_owned());
    secrets.extend(token.refresh_token.iter().map(|r| r.expose().to_owned()));
    let cache = TokenCache::new(dir.path().join("token.json"));
    let provider =
        CachedTokenProvider::from_login(auth.clone(), Some(cache.clone()), token).expect("stored");
    let first = provider.access_token().await.expect("token");
    let second = provider.on_unauthorized(&first).await.expect("renewed");
    secrets.push(second.secret().expose().to_owned());
    let stored = cache.load(auth.config()).expect("load").expect("cached");
    secrets.extend(stored.refresh_token.iter().map(|r| r.expose().to_owned()));
    let err = auth
        .password(DEFAULT_USER, &Secret::new("a-wrong-password"))
        .await
        .expect_err("wrong password");
    assert!(matches!(err, AuthError::Rejected { .. }));
    secrets.push("a-wrong-password".to_owned());

    // App-only.
    let app = Authenticator::new(
        AuthConfig::new(DEFAULT_CONFIDENTIAL_CLIENT_ID)
            .with_authority(authority)
            .with_tenant(emu.tenant_id())
            .with_client_secret(Secret::new(DEFAULT_CLIENT_SECRET)),
    )
    .expect("config");
    let app_token = app.client_credentials().await.expect("app token");
    secrets.push(app_token.access_token.expose().to_owned());
    emu.shutdown().await;

    let logs = captured.text();
    assert!(
        logs.contains("access token renewed") && logs.contains("token request refused"),
        "the test must see real log lines, got:\n{logs}"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs:\n{logs}"
        );
    }
}
