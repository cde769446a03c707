//! API tokens: `<data_dir>/http-tokens.json` (mode 0600) holds each token's name, role and the
//! SHA-256 of its secret, never the secret itself. A secret is shown once, when it is made.
//!
//! The daemon reads the file at every look and parses it again when its content changed, so `oftp http token create` and
//! `revoke` take effect on the running daemon without a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Principal, Role};

/// The prefix of every token's secret, so a leaked one is recognisable in a scan.
pub const TOKEN_PREFIX: &str = "oftp_";

/// One stored token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// Its name (unique).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<StoredToken>,
}

/// Why the tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing it failed.
    #[error("tokens file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// It is not a tokens file.
    #[error(
        "tokens file {path} is damaged ({source}); move it away and run `oftp http token create`"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// A token of that name exists.
    #[error("a token named {0:?} exists; revoke it first or choose another name")]
    Exists(String),
    /// No token of that name.
    #[error("no token named {0:?}; `oftp http token list` lists them")]
    Unknown(String),
}

/// The tokens file, cached while it does not change on disk.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    /// The file's content when last parsed, and what it held.
    cache: Mutex<Option<Parsed>>,
}

/// The tokens file's content (`None` = no file) and the tokens in it.
type Parsed = (Option<Vec<u8>>, Vec<StoredToken>);

impl TokenStore {
    /// The store in `path` (a missing file = no tokens).
    pub fn open(path: &Path) -> Result<Self, TokenError> {
        let store = Self {
            path: path.to_path_buf(),
            cache: Mutex::new(None),
        };
        store.current()?;
        Ok(store)
    }

    /// The file's content (`None` when there is no file).
    fn bytes(&self) -> Result<Option<Vec<u8>>, TokenError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TokenError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn parse(&self, bytes: Option<&[u8]>) -> Result<Vec<StoredToken>, TokenError> {
        let Some(bytes) = bytes else {
            return Ok(Vec::new());
        };
        serde_json::from_slice::<TokenFile>(bytes)
            .map(|f| f.tokens)
            .map_err(|source| TokenError::Parse {
                path: self.path.clone(),
                source,
            })
    }

    fn read(&self) -> Result<Vec<StoredToken>, TokenError> {
        self.parse(self.bytes()?.as_deref())
    }

    /// The tokens as the file has them now. The file is small and read at every look: a
    /// change by another process is seen at once, however close in time to the last one (a
    /// modification time can be the same for two writes); it is parsed again only when its
    /// content changed.
    fn current(&self) -> Result<Vec<StoredToken>, TokenError> {
        let bytes = self.bytes()?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match &*cache {
            Some((seen, tokens)) if *seen == bytes => Ok(tokens.clone()),
            _ => {
                let tokens = self.parse(bytes.as_deref())?;
                *cache = Some((bytes, tokens.clone()));
                Ok(tokens)
            }
        }
    }

    fn write(&self, tokens: Vec<StoredToken>) -> Result<(), TokenError> {
        let bytes = serde_json::to_vec_pretty(&TokenFile { tokens }).expect("serialisable");
        durable_write::write_with(
            &self.path,
            &durable_write::Options::default().mode(0o600),
            |f| std::io::Write::write_all(f, &bytes),
        )
        .map_err(|e| TokenError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(())
    }

    /// The stored tokens (names, roles, hashes), oldest first.
    pub fn list(&self) -> Result<Vec<StoredToken>, TokenError> {
        self.current()
    }

    /// Makes a token `name` with `role`; returns its secret (shown once, stored hashed).
    pub fn create(&self, name: &str, role: Role, now: DateTime<Utc>) -> Result<String, TokenError> {
        let mut tokens = self.read()?;
        if tokens.iter().any(|t| t.name == name) {
            return Err(TokenError::Exists(name.to_owned()));
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
        tokens.push(StoredToken {
            name: name.to_owned(),
            role,
            sha256: digest(&secret),
            created_at: now,
        });
        self.write(tokens)?;
        Ok(secret)
    }

    /// Removes token `name`.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let mut tokens = self.read()?;
        let before = tokens.len();
        tokens.retain(|t| t.name != name);
        if tokens.len() == before {
            return Err(TokenError::Unknown(name.to_owned()));
        }
        self.write(tokens)
    }

    /// The first run: when no token exists, makes an admin token `admin` and returns its
    /// secret for the daemon to show once.
    pub fn ensure_admin(&self, now: DateTime<Utc>) -> Result<Option<String>, TokenError> {
        if !self.read()?.is_empty() {
            return Ok(None);
        }
        self.create("admin", Role::Admin, now).map(Some)
    }

    /// Who `secret` belongs to, if it is a current token. A file that cannot be read now
    /// refuses every token (and says so in the log) rather than keep revoked ones valid.
    pub fn verify(&self, secret: &str) -> Option<Principal> {
        let tokens = match self.current() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("{e}");
                return None;
            }
        };
        let hash = digest(secret);
        tokens
            .iter()
            .find(|t| super::tokens_eq(t.sha256.as_bytes(), hash.as_bytes()))
            .map(|t| Principal {
                name: t.name.clone(),
                role: t.role,
            })
    }
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_token_verifies_with_its_role_and_a_revoked_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(&dir.path().join("t.json")).unwrap();
        let now = Utc::now();
        let admin = store
            .ensure_admin(now)
            .unwrap()
            .expect("first run makes one");
        assert!(store.ensure_admin(now).unwrap().is_none());
        let read = store.create("grafana", Role::Read, now).unwrap();
        assert_eq!(store.verify(&admin).unwrap().role, Role::Admin);
        assert_eq!(store.verify(&read).unwrap().role, Role::Read);
        assert!(store.verify("oftp_wrong").is_none());
        let text = std::fs::read_to_string(dir.path().join("t.json")).unwrap();
        assert!(
            !text.contains(&admin) && !text.contains(&read),
            "secrets are not stored"
        );
        store.revoke("grafana").unwrap();
        assert!(store.verify(&read).is_none());
        assert!(matches!(
            store.revoke("grafana"),
            Err(TokenError::Unknown(_))
        ));
    }

    #[test]
    fn a_revoke_by_another_process_is_seen_even_within_the_same_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let daemon = TokenStore::open(&path).unwrap();
        let now = Utc::now();
        let admin = daemon.ensure_admin(now).unwrap().unwrap();
        assert!(daemon.verify(&admin).is_some(), "cached now");
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        // `oftp http token` (another store on the same file) revokes it and makes another of
        // the same length, within the same tick of the file system's clock.
        let cli = TokenStore::open(&path).unwrap();
        cli.revoke("admin").unwrap();
        cli.create("adm1n", Role::Admin, now).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(before)
            .unwrap();
        assert!(
            daemon.verify(&admin).is_none(),
            "a revoked token still works"
        );
    }
}
