//! [`TokenCache`]: the token set of one sign-in in a JSON file the caller names.
//!
//! The file holds the access token, its expiry and the refresh token, plus the client id and
//! token endpoint it belongs to, so a cache written for another app registration or tenant is
//! refused instead of sent to the wrong endpoint. Writes are atomic and durable: a temporary file
//! created with mode 0600 in the same directory, written, fsynced, renamed over the cache, and
//! the directory fsynced. A reader therefore sees the old or the new token set, never a mix.
//!
//! What it does not do: encrypt the file (it relies on the 0600 permissions, like the Azure CLI
//! and `gh` on Linux), or lock it. [`crate::CachedTokenProvider`] re-reads the file before each
//! renewal, so processes sharing it follow each other's refresh token rotation; only two
//! refreshes at the same instant still race (the loser is asked to sign in again).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::AuthConfig;
use crate::error::{AuthError, Grant};
use crate::secret::Secret;
use crate::token::Token;

/// Version of the file format; bump on incompatible changes.
const FORMAT_VERSION: u32 = 1;

/// A token cache file.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
}

/// The file content. Tokens are plain strings here only; they live in [`Secret`]s elsewhere.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    client_id: String,
    token_endpoint: String,
    grant: String,
    saved_at: DateTime<Utc>,
    access_token: String,
    expires_at: Option<DateTime<Utc>>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

fn grant_name(grant: Grant) -> &'static str {
    match grant {
        Grant::AuthorizationCode => "authorization_code",
        Grant::Implicit => "implicit",
        Grant::Password => "password",
        Grant::ClientCredentials => "client_credentials",
        Grant::DeviceCode => "device_code",
        Grant::RefreshToken => "refresh_token",
    }
}

fn grant_from_name(name: &str) -> Option<Grant> {
    Some(match name {
        "authorization_code" => Grant::AuthorizationCode,
        "implicit" => Grant::Implicit,
        "password" => Grant::Password,
        "client_credentials" => Grant::ClientCredentials,
        "device_code" => Grant::DeviceCode,
        "refresh_token" => Grant::RefreshToken,
        _ => return None,
    })
}

/// The sign-in settings a cache was written with, so a later run needs no flags for them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachedSignIn {
    /// The application (client) id.
    pub client_id: String,
    /// The authority, e.g. `https://login.microsoftonline.com`.
    pub authority: Url,
    /// The tenant (id, domain, `organizations`, `common`).
    pub tenant: String,
}

impl TokenCache {
    /// A cache at `path` (the file need not exist yet; its directory is created on first write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the token set, or `None` when there is no cache file.
    ///
    /// Fails with [`AuthError::CacheUnusable`] when the file is corrupt or belongs to another
    /// client id or token endpoint than `config`'s.
    pub fn load(&self, config: &AuthConfig) -> Result<Option<Token>, AuthError> {
        let Some(bytes) = self.read()? else {
            return Ok(None);
        };
        self.warn_if_readable_by_others();
        let unusable = |detail: String| AuthError::CacheUnusable {
            path: self.path.clone(),
            detail,
            login_command: config.login_command.clone(),
        };
        let file: CacheFile = serde_json::from_slice(&bytes)
            .map_err(|e| unusable(format!("it is not a valid token cache ({e})")))?;
        if file.version != FORMAT_VERSION {
            return Err(unusable(format!(
                "it has format version {}, this program reads version {FORMAT_VERSION}",
                file.version
            )));
        }
        if file.client_id != config.client_id {
            return Err(unusable(format!(
                "it was written for client id {}, but the configured client id is {}",
                file.client_id, config.client_id
            )));
        }
        let endpoint = config.token_endpoint()?;
        if file.token_endpoint != endpoint.as_str() {
            return Err(unusable(format!(
                "it was written for token endpoint {}, but the configured one is {endpoint}",
                file.token_endpoint
            )));
        }
        let grant = grant_from_name(&file.grant)
            .ok_or_else(|| unusable(format!("unknown grant \"{}\"", file.grant)))?;
        let mut token = Token::new(
            Secret::new(file.access_token),
            file.expires_at,
            file.refresh_token.map(Secret::new),
            grant,
        );
        token.scope = file.scope;
        Ok(Some(token))
    }

    /// The client id, authority and tenant the cache was written for; `None` when there is no
    /// cache file or its token endpoint is not `{authority}/{tenant}/oauth2/v2.0/token` (a
    /// configured endpoint override).
    pub fn sign_in(&self) -> Result<Option<CachedSignIn>, AuthError> {
        let Some(bytes) = self.read()? else {
            return Ok(None);
        };
        let Ok(file) = serde_json::from_slice::<CacheFile>(&bytes) else {
            // `load` reports an unusable cache with the full explanation.
            return Ok(None);
        };
        let Some(base) = file.token_endpoint.strip_suffix("/oauth2/v2.0/token") else {
            return Ok(None);
        };
        let Some((authority, tenant)) = base.rsplit_once('/') else {
            return Ok(None);
        };
        let Ok(authority) = Url::parse(authority) else {
            return Ok(None);
        };
        Ok(Some(CachedSignIn {
            client_id: file.client_id,
            authority,
            tenant: tenant.to_string(),
        }))
    }

    /// The file's bytes; `None` when there is no file.
    fn read(&self) -> Result<Option<Vec<u8>>, AuthError> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AuthError::Cache {
                action: "read",
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Stores `token` atomically and durably with mode 0600.
    pub fn store(&self, config: &AuthConfig, token: &Token) -> Result<(), AuthError> {
        let file = CacheFile {
            version: FORMAT_VERSION,
            client_id: config.client_id.clone(),
            token_endpoint: config.token_endpoint()?.to_string(),
            grant: grant_name(token.grant).to_owned(),
            saved_at: Utc::now(),
            access_token: token.access_token.expose().to_owned(),
            expires_at: token.expires_at,
            refresh_token: token.refresh_token.as_ref().map(|s| s.expose().to_owned()),
            scope: token.scope.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| AuthError::Cache {
            action: "encode",
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.path, &bytes).map_err(|source| AuthError::Cache {
            action: "write",
            path: self.path.clone(),
            source,
        })?;
        tracing::debug!(path = %self.path.display(), "token cache written");
        Ok(())
    }

    /// Deletes the cache file (sign-out). A missing file is not an error.
    pub fn remove(&self) -> Result<(), AuthError> {
        durable_write::remove(&self.path).map_err(|e| AuthError::Cache {
            action: "remove",
            path: self.path.clone(),
            source: e.source,
        })
    }

    #[cfg(unix)]
    fn warn_if_readable_by_others(&self) {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = fs::metadata(&self.path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %self.path.display(),
                "token cache is readable by other users; it will be rewritten with mode 0600 at the next refresh"
            );
        }
    }

    #[cfg(not(unix))]
    fn warn_if_readable_by_others(&self) {}
}

/// Writes `bytes` to `path` through a 0600 temporary file in the same directory, fsync, rename
/// and directory fsync (`durable-write`); a failed write leaves no temporary file behind.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    durable_write::write_with(path, &durable_write::Options::default().mode(0o600), |f| {
        f.write_all(bytes)
    })
    .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        let mut token = Token::new(
            Secret::new("access-1"),
            DateTime::from_timestamp(1_900_000_000, 0),
            Some(Secret::new("refresh-1")),
            Grant::AuthorizationCode,
        );
        token.scope = Some("Mail.Read offline_access".to_owned());
        token
    }

    #[test]
    fn roundtrip_and_private_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = TokenCache::new(dir.path().join(".meta").join("token.json"));
        let config = AuthConfig::new("client");
        assert!(cache.load(&config).expect("no file yet").is_none());
        cache.store(&config, &token()).expect("store");
        assert_eq!(cache.load(&config).expect("load"), Some(token()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(cache.path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Only the cache file is left: the temporary file was renamed.
        let names: Vec<_> = fs::read_dir(dir.path().join(".meta"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("token.json")]);
        cache.remove().expect("remove");
        cache.remove().expect("second remove is fine");
        assert!(cache.load(&config).expect("gone").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn rewrite_replaces_a_world_readable_file_with_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token.json");
        fs::write(&path, b"old").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let cache = TokenCache::new(&path);
        cache.store(&AuthConfig::new("c"), &token()).expect("store");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_sign_in_settings_are_read_back_from_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = TokenCache::new(dir.path().join("token.json"));
        assert_eq!(cache.sign_in().expect("no file"), None);
        let config = AuthConfig::new("client-9")
            .with_authority(Url::parse("http://127.0.0.1:9/").expect("url"))
            .with_tenant("contoso.example");
        cache.store(&config, &token()).expect("store");
        let s = cache.sign_in().expect("read").expect("settings");
        assert_eq!(s.client_id, "client-9");
        assert_eq!(s.tenant, "contoso.example");
        assert_eq!(s.authority.as_str(), "http://127.0.0.1:9/");
    }

    #[test]
    fn atomic_write_keeps_old_content_when_it_cannot_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token.json");
        fs::write(&path, b"old").expect("write");
        // Renaming onto a non-empty directory fails after the temporary file was written.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).expect("mkdir");
        fs::write(blocked.join("x"), b"x").expect("write");
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).expect("read"), b"old");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != "token.json" && n != "blocked")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        write_atomic(&path, b"new").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"new");
    }

    #[test]
    fn refuses_foreign_or_corrupt_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = TokenCache::new(dir.path().join("t.json"));
        cache
            .store(&AuthConfig::new("client-a"), &token())
            .expect("store");
        let err = cache
            .load(&AuthConfig::new("client-b"))
            .expect_err("other client");
        let text = err.to_string();
        assert!(
            text.contains("client-a") && text.contains("mailbackup login"),
            "{text}"
        );
        let err = cache
            .load(&AuthConfig::new("client-a").with_tenant("contoso"))
            .expect_err("other endpoint");
        assert!(err.to_string().contains("token endpoint"), "{err}");
        fs::write(cache.path(), b"{not json").expect("write");
        assert!(matches!(
            cache.load(&AuthConfig::new("client-a")),
            Err(AuthError::CacheUnusable { .. })
        ));
    }

    #[test]
    fn file_does_not_leak_through_debug() {
        let cache = TokenCache::new("/x/token.json");
        assert!(!format!("{cache:?} {:?}", token()).contains("refresh-1"));
    }
}
