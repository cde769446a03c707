//! The [`Secret`] newtype: client secrets, passwords and tokens that must never reach a log.
//!
//! `Secret` has a redacted `Debug`, no `Display` and no `Serialize`, so a secret can only leave
//! it through an explicit [`Secret::expose`]. It also offers the loaders the CLI needs: from an
//! environment variable and from a file (with the trailing newline editors add removed).
//!
//! What it does not do: it does not wipe memory on drop (a `String` may already have been copied
//! by reallocation, so zeroing the final buffer would promise more than it gives).

use std::fmt;
use std::path::Path;

use crate::error::AuthError;

/// A secret string (client secret, password, access or refresh token) with a redacted `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret value. Call it only where the value is sent to the identity platform
    /// or to Graph, never to format a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads a secret from the environment variable `var`.
    ///
    /// Fails with [`AuthError::SecretEnv`] when the variable is unset, empty or not UTF-8.
    pub fn from_env(var: &str) -> Result<Self, AuthError> {
        match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Self(value)),
            Ok(_) => Err(AuthError::SecretEnv {
                var: var.to_owned(),
                reason: "it is empty",
            }),
            Err(std::env::VarError::NotPresent) => Err(AuthError::SecretEnv {
                var: var.to_owned(),
                reason: "it is not set",
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(AuthError::SecretEnv {
                var: var.to_owned(),
                reason: "it is not valid UTF-8",
            }),
        }
    }

    /// Reads a secret from a file, dropping one trailing `\n` or `\r\n` (as written by editors
    /// and `echo`). Other whitespace is kept: it may be part of a password.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::SecretFile {
            path: path.to_owned(),
            detail: source.to_string(),
        })?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        if value.is_empty() {
            return Err(AuthError::SecretFile {
                path: path.to_owned(),
                detail: "the file is empty".to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::new("hunter2");
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn file_loader_strips_one_newline_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, " pass word \r\n").expect("write");
        assert_eq!(
            Secret::from_file(&path).expect("load").expose(),
            " pass word "
        );
        std::fs::write(&path, "abc\n\n").expect("write");
        assert_eq!(Secret::from_file(&path).expect("load").expose(), "abc\n");
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            Secret::from_file(&path),
            Err(AuthError::SecretFile { .. })
        ));
        let missing = dir.path().join("missing");
        let err = Secret::from_file(&missing).expect_err("missing file");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn env_loader_reports_unset_variable() {
        // A name no environment sets; reading is enough (setting variables is unsafe in 2024).
        let err = Secret::from_env("GRAPH_AUTH_TEST_SURELY_UNSET_0x5f3759df").expect_err("unset");
        assert!(err.to_string().contains("not set"), "{err}");
        let path = std::env::var("PATH").expect("PATH is set in tests");
        assert_eq!(Secret::from_env("PATH").expect("PATH").expose(), path);
    }
}
