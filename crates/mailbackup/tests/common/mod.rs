//! Helpers shared by the end-to-end tests: emulator start, tokens, file checks.
#![allow(dead_code, unreachable_pub)]

use futures_util::future::BoxFuture;
use graph_emulator::{
    DEFAULT_CLIENT_SECRET, DEFAULT_CONFIDENTIAL_CLIENT_ID, DEFAULT_PASSWORD,
    DEFAULT_PUBLIC_CLIENT_ID, Emulator, EmulatorConfig, MailboxSpec,
};
use mailbackup::{BackupHeader, TokenError, TokenSource};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

pub const ALICE: &str = "alice@emulator.test";
pub const BOB: &str = "bob@emulator.test";

pub async fn emulator(mailboxes: Vec<MailboxSpec>) -> Emulator {
    Emulator::start(EmulatorConfig::default().with_mailboxes(mailboxes))
        .await
        .expect("emulator starts")
}

pub async fn emulator_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("emulator starts")
}

async fn token_request(emu: &Emulator, form: &[(&str, &str)]) -> Result<String, TokenError> {
    let resp = reqwest::Client::new()
        .post(emu.token_url())
        .form(form)
        .send()
        .await?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    match v.get("access_token").and_then(|t| t.as_str()) {
        Some(t) => Ok(t.to_string()),
        None => Err(format!("token endpoint answered {status}: {v}").into()),
    }
}

/// An app-only token (client credentials).
pub async fn app_token(emu: &Emulator) -> String {
    app_token_of(emu, DEFAULT_CONFIDENTIAL_CLIENT_ID).await
}

/// An app-only token of another app registration (secret `DEFAULT_CLIENT_SECRET`).
pub async fn app_token_of(emu: &Emulator, client_id: &str) -> String {
    token_request(
        emu,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await
    .expect("client credentials token")
}

/// A delegated token for `user` (ROPC).
pub async fn user_token(emu: &Emulator, user: &str) -> String {
    user_token_with_scope(emu, user, "Mail.Read offline_access").await
}

/// A delegated token for `user` (ROPC) with the given scopes.
pub async fn user_token_with_scope(emu: &Emulator, user: &str, scope: &str) -> String {
    token_request(
        emu,
        &[
            ("grant_type", "password"),
            ("client_id", DEFAULT_PUBLIC_CLIENT_ID),
            ("username", user),
            ("password", DEFAULT_PASSWORD),
            ("scope", scope),
        ],
    )
    .await
    .expect("password token")
}

/// A token source that gets client-credentials tokens from the emulator and counts refreshes.
pub struct EmuTokens {
    token_url: String,
    current: std::sync::Mutex<String>,
    pub refreshes: AtomicU32,
}

impl EmuTokens {
    pub async fn new(emu: &Emulator) -> Arc<EmuTokens> {
        Arc::new(EmuTokens {
            token_url: emu.token_url(),
            current: std::sync::Mutex::new(app_token(emu).await),
            refreshes: AtomicU32::new(0),
        })
    }
}

impl TokenSource for EmuTokens {
    fn access_token(&self) -> BoxFuture<'_, Result<String, TokenError>> {
        let t = self.current.lock().unwrap().clone();
        Box::pin(async move { Ok(t) })
    }

    fn on_unauthorized<'a>(
        &'a self,
        _rejected: &'a str,
    ) -> BoxFuture<'a, Result<String, TokenError>> {
        Box::pin(async move {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            let resp = reqwest::Client::new()
                .post(&self.token_url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", DEFAULT_CONFIDENTIAL_CLIENT_ID),
                    ("client_secret", DEFAULT_CLIENT_SECRET),
                    ("scope", "https://graph.microsoft.com/.default"),
                ])
                .send()
                .await?;
            let v: serde_json::Value = resp.json().await?;
            let t = v["access_token"]
                .as_str()
                .ok_or("no access_token")?
                .to_string();
            *self.current.lock().unwrap() = t.clone();
            Ok(t)
        })
    }
}

/// Splits a saved file into its backup header and the MIME content after it.
pub fn split_saved(bytes: &[u8]) -> (BackupHeader, Vec<u8>) {
    let cut = bytes.iter().position(|b| *b == b'\n').expect("header line") + 1;
    let header = BackupHeader::parse(std::str::from_utf8(&bytes[..cut]).unwrap())
        .expect("X-NS-Backup header");
    (header, bytes[cut..].to_vec())
}

/// Where a message must be saved under `root`.
pub fn expected_path(root: &Path, id: &str, created: chrono::DateTime<chrono::Utc>) -> PathBuf {
    mailbackup::store::default_path(root, id, Some(&created.to_rfc3339()))
}

/// Every `.eml` file under `root`, skipping `.meta`.
pub fn eml_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                    stack.push(p);
                }
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Asserts that `root` holds exactly the mailbox's messages, byte-exact after the header.
pub fn assert_complete(root: &Path, emu: &Emulator, user: &str) {
    let expected = emu.mailbox(user).expected_messages();
    let files = eml_files(root);
    assert_eq!(
        files.len(),
        expected.len(),
        "one file per message in {}",
        root.display()
    );
    for m in &expected {
        let p = expected_path(root, &m.info.immutable_id, m.info.created);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let (h, mime) = split_saved(&bytes);
        assert_eq!(h.id, m.info.immutable_id);
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(&h.last_modified).unwrap(),
            m.info.last_modified
        );
        assert!(
            mime == m.mime,
            "content of {} differs from Graph's MIME",
            p.display()
        );
    }
}

/// A backup of `user` into `dir` against the emulator, with a short retry interval.
pub fn builder(
    emu: &graph_emulator::Emulator,
    dir: &Path,
    token: String,
    user: &str,
) -> mailbackup::BackupBuilder {
    mailbackup::Backup::builder(
        dir,
        std::sync::Arc::new(mailbackup::StaticToken::new(format!("Bearer {token}"))),
    )
    .graph_url(emu.graph_url())
    .mailboxes(mailbackup::Mailboxes::User(user.to_string()))
    .retry_interval(std::time::Duration::from_millis(50))
}
