//! [`Secret`]: a password or passphrase that never shows up in logs.
//!
//! The value is zeroized on drop; `Debug` and `Display` print `Secret(***)`. Loading from a
//! file trims one trailing newline (files written by `echo` end in one).

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A secret string (key or key-store password).
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// Reads the secret from a file (one trailing `\n` or `\r\n` is removed).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut s = std::fs::read_to_string(path)
            .map_err(|e| Error::load(format!("password file {}", path.display()), e))?;
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
        Ok(Secret::new(s))
    }

    /// Reads the secret from an environment variable.
    pub fn from_env(var: &str) -> Result<Self> {
        std::env::var(var)
            .map(Secret::new)
            .map_err(|e| Error::load(format!("password from environment variable {var}"), e))
    }

    /// The value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn from_file_trims_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "pa ss\r\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "pa ss");
        assert!(Secret::from_file(dir.path().join("missing")).is_err());
    }
}
