//! PKCE (RFC 7636): code verifiers, challenges and the `state` value.
//!
//! A verifier is 32 random bytes in unpadded base64url (43 characters, the RFC's minimum length
//! and its recommended construction, section 4.1). The challenge is `BASE64URL(SHA256(verifier))`
//! for `S256` (the default, as in the seed's `OAuthPKCEChallengeEncoding`) or the verifier itself
//! for `plain`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use crate::error::AuthError;
use crate::secret::Secret;

/// The PKCE code challenge method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PkceMethod {
    /// `plain`: the challenge is the verifier. Only for servers that cannot do S256.
    Plain,
    /// `S256`: the challenge is the SHA-256 of the verifier (default).
    #[default]
    S256,
}

impl PkceMethod {
    /// The `code_challenge_method` parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::S256 => "S256",
        }
    }
}

/// A PKCE code verifier. It is a secret until the token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkceVerifier(Secret);

impl PkceVerifier {
    /// Generates a fresh verifier from 32 random bytes.
    pub fn generate() -> Self {
        Self(Secret::new(random_token()))
    }

    /// Uses an existing verifier, e.g. one created by another process for the web profile.
    ///
    /// Fails unless it is 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 section 4.1).
    pub fn from_string(value: impl Into<String>) -> Result<Self, AuthError> {
        let value = value.into();
        let valid_chars = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !(43..=128).contains(&value.len()) || !valid_chars {
            return Err(AuthError::Config(
                "a PKCE verifier must be 43 to 128 characters of letters, digits and -._~"
                    .to_owned(),
            ));
        }
        Ok(Self(Secret::new(value)))
    }

    /// The verifier sent as `code_verifier` in the token request.
    pub fn secret(&self) -> &Secret {
        &self.0
    }

    /// The `code_challenge` for `method`.
    pub fn challenge(&self, method: PkceMethod) -> String {
        match method {
            PkceMethod::Plain => self.0.expose().to_owned(),
            PkceMethod::S256 => URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.expose().as_bytes())),
        }
    }
}

/// 32 random bytes as unpadded base64url: used for verifiers and `state`.
pub(crate) fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_known_answer() {
        // RFC 7636 Appendix B: the verifier from the example octets and its S256 challenge.
        let verifier = PkceVerifier::from_string("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
            .expect("valid");
        assert_eq!(
            verifier.challenge(PkceMethod::S256),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(
            verifier.challenge(PkceMethod::Plain),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }

    #[test]
    fn rfc7636_appendix_b_octets_encode_to_the_verifier() {
        let octets: [u8; 32] = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        assert_eq!(
            URL_SAFE_NO_PAD.encode(octets),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }

    #[test]
    fn generated_verifiers_are_valid_and_distinct() {
        let a = PkceVerifier::generate();
        let b = PkceVerifier::generate();
        assert_ne!(a, b);
        assert_eq!(a.secret().expose().len(), 43);
        PkceVerifier::from_string(a.secret().expose()).expect("generated verifier is valid");
    }

    #[test]
    fn invalid_verifiers_are_refused() {
        assert!(PkceVerifier::from_string("short").is_err());
        assert!(PkceVerifier::from_string("a".repeat(129)).is_err());
        assert!(PkceVerifier::from_string(format!("{}+", "a".repeat(43))).is_err());
        assert!(PkceVerifier::from_string("a".repeat(128)).is_ok());
    }

    #[test]
    fn method_names() {
        assert_eq!(PkceMethod::default(), PkceMethod::S256);
        assert_eq!(PkceMethod::S256.as_str(), "S256");
        assert_eq!(PkceMethod::Plain.as_str(), "plain");
    }
}
