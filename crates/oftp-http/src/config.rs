//! `[http]` of oftp.toml: where the API, metrics and console listen, and who may log in.
//!
//! ```toml
//! [http]
//! enabled = true                 # default: on, on loopback only
//! listen = "127.0.0.1:8305"
//! # tls_certificate = "http-cert.pem"   # both set = HTTPS (rustls); relative to the data dir
//! # tls_key = "http-key.pem"
//! # tokens_file = "http-tokens.json"    # the API tokens, hashed (default, in the data dir)
//! # session_minutes = 480               # console sessions end after this long idle
//! # max_upload_mib = 4096               # the largest file `POST .../files` accepts (413 above)
//!
//! # [[http.users]]                      # console log-in by user name and password
//! # name = "ops"
//! # password_hash = "$argon2id$v=19$..." # `oftp http hash-password`
//! # role = "admin"                      # or "read"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::auth::Role;

/// The default listen address: loopback only, so nothing is reachable from outside until an
/// operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8305";
/// The largest upload in MiB when `max_upload_mib` is not set.
pub const DEFAULT_MAX_UPLOAD_MIB: u64 = 4096;
/// The tokens file's name in the data directory when `tokens_file` is not set.
pub const DEFAULT_TOKENS_FILE: &str = "http-tokens.json";

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Whether `oftp serve` serves HTTP at all.
    pub enabled: bool,
    /// Where it listens.
    pub listen: SocketAddr,
    /// PEM certificate chain for HTTPS; with `tls_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for HTTPS; with `tls_certificate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The API tokens (hashed); relative to the data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// Minutes a console session lives without a request.
    pub session_minutes: u64,
    /// The largest upload (`POST /api/v1/partners/{name}/files`) in MiB; a larger body is
    /// refused with 413 and nothing is left in the outbox.
    pub max_upload_mib: u64,
    /// Console users (password log-in).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<ConsoleUser>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN.parse().expect("a valid default address"),
            tls_certificate: None,
            tls_key: None,
            tokens_file: None,
            session_minutes: 480,
            max_upload_mib: DEFAULT_MAX_UPLOAD_MIB,
            users: Vec::new(),
        }
    }
}

impl HttpSettings {
    /// Whether these are the defaults (the generated file leaves `[http]` out then).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The tokens file's path for the data directory `data_dir`.
    pub fn tokens_path(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(
            self.tokens_file
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_TOKENS_FILE)),
        )
    }
}

/// One `[[http.users]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    /// The log-in name.
    pub name: String,
    /// The password's Argon2 hash in the PHC string format (`$argon2id$...`), checked when
    /// the configuration is read.
    #[serde(deserialize_with = "argon2_phc")]
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
}

fn argon2_phc<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let hash = String::deserialize(d)?;
    crate::console::users::check_hash(&hash).map_err(|why| {
        serde::de::Error::custom(format!(
            "password_hash is not an Argon2 hash: {why}; make one with `oftp http hash-password`"
        ))
    })?;
    Ok(hash)
}
