//! Security configuration as read from TOML (serde): our identities per purpose and the trust
//! settings ([`LocalSecurityConfig`], [`IdentityConfig`]), a partner's certificates and policy
//! ([`PartnerSecurityConfig`], [`SendSecurity`], [`FileSecurity`], [`SecureAuthentication`]),
//! and the loading of one identity with its password from a file or an environment variable
//! (never from the configuration itself; never logged).
//!
//! Not here: the loaded, shared form ([`super::SecurityContext`], built in `context.rs`),
//! certificate validation (`oftp_security::TrustPolicy`).

use std::path::{Path, PathBuf};

use oftp_proto::codec::SecurityLevel;
use oftp_security::{CertSelector, CrlFetchOptions, Identity, Secret, TrustPolicy};
use serde::{Deserialize, Serialize};

/// Where a private key comes from: a PKCS#12 file, or PEM/DER certificate and key files.
///
/// The password (for the PKCS#12 file or an encrypted key) is read from `password_file` or the
/// environment variable `password_env`, never from the configuration itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// PKCS#12 (PFX) file.
    #[serde(default)]
    pub pkcs12: Option<PathBuf>,
    /// Certificate file (PEM or DER); with `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Private key file (PEM or DER, PKCS#1 or PKCS#8, optionally encrypted).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// File holding the password (one line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Which entry of a PKCS#12 file (seed `CertSubject`): `*` (default) for the first,
    /// a subject substring or a SHA-1/SHA-256 thumbprint.
    #[serde(default)]
    pub subject: Option<String>,
}

/// A configuration or key file problem, named so an operator can fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityConfigError {
    /// A certificate, key or password could not be loaded.
    #[error("{what}: {source}")]
    Load {
        /// What was being loaded (purpose and file).
        what: String,
        /// The underlying problem.
        #[source]
        source: oftp_security::Error,
    },
    /// The configuration is contradictory or incomplete.
    #[error("{0}")]
    Invalid(String),
}

impl IdentityConfig {
    fn password(&self, what: &str) -> Result<Option<Secret>, SecurityConfigError> {
        let load = |source| SecurityConfigError::Load {
            what: format!("{what}: password"),
            source,
        };
        match (&self.password_file, &self.password_env) {
            (Some(_), Some(_)) => Err(SecurityConfigError::Invalid(format!(
                "{what}: set password_file or password_env, not both"
            ))),
            (Some(f), None) => Secret::from_file(f).map(Some).map_err(load),
            (None, Some(v)) => Secret::from_env(v).map(Some).map_err(load),
            (None, None) => Ok(None),
        }
    }

    /// Loads the identity; `what` names its purpose in errors.
    pub fn load(&self, what: &str) -> Result<Identity, SecurityConfigError> {
        let password = self.password(what)?;
        let err = |file: &Path| {
            let what = format!("{what}: {}", file.display());
            move |source| SecurityConfigError::Load { what, source }
        };
        match (&self.pkcs12, &self.cert, &self.key) {
            (Some(p12), None, None) => {
                let selector = CertSelector::parse(self.subject.as_deref().unwrap_or("*"));
                let pw = password.unwrap_or_default();
                Identity::load_pkcs12(p12, &pw, &selector).map_err(err(p12))
            }
            (None, Some(cert), Some(key)) => match &password {
                Some(pw) => Identity::from_files_with_password(cert, key, pw).map_err(err(key)),
                None => Identity::from_files(cert, key).map_err(err(key)),
            },
            _ => Err(SecurityConfigError::Invalid(format!(
                "{what}: give either pkcs12 or both cert and key"
            ))),
        }
    }
}

/// Our certificates and trust settings (seed: `CertificateType`, `TrustedCerts`,
/// `FailOnUntrustedCert`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSecurityConfig {
    /// Identity for every purpose without its own (seed `CertificateType` 0).
    pub identity: Option<IdentityConfig>,
    /// Secure authentication: answering AUCH challenges (type 1).
    pub authentication: Option<IdentityConfig>,
    /// Decrypting received files (type 2).
    pub decryption: Option<IdentityConfig>,
    /// Signing sent files (type 3).
    pub signing: Option<IdentityConfig>,
    /// Signing EERP/NERP receipts (type 4).
    pub receipt_signing: Option<IdentityConfig>,
    /// Trusted CA certificate files (PEM bundles or DER). Empty: partner certificates are
    /// checked for their validity period only (the seed's default).
    pub trusted_cas: Vec<PathBuf>,
    /// CRL files (PEM or DER) checked during chain validation.
    pub crls: Vec<PathBuf>,
    /// Also check revocation against the CRL named by a certificate's CRL distribution point
    /// (`http://` URIs; 10 s timeout, 10 MiB limit, cached until nextUpdate in memory and in
    /// `<work_dir>/crl-cache`), as the seed's `ValidateCert` does (default true). Only with
    /// trusted CAs configured.
    pub crl_distribution_points: bool,
    /// Refuse a certificate whose distribution point CRL cannot be fetched or used (revocation
    /// status unknown; default false: accept it with a warning). Needs
    /// `crl_distribution_points`. Subject to `fail_on_untrusted` like other failures.
    pub require_revocation_check: bool,
    /// Refuse certificates that do not chain to a trusted CA (seed `FailOnUntrustedCert`,
    /// default true). With false, an untrusted certificate is used and a warning logged.
    pub fail_on_untrusted: bool,
    /// With trusted CAs configured, also accept self-signed partner certificates (default
    /// false). Without trusted CAs only the validity period is checked anyway.
    pub allow_self_signed: bool,
    /// Directory for signed/compressed/encrypted copies of outgoing files; defaults to
    /// `<data_dir>/security`.
    pub work_dir: Option<PathBuf>,
}

impl LocalSecurityConfig {
    /// Applies the revocation settings (`crl_distribution_points`, `require_revocation_check`)
    /// to a trust policy; CAs and CRL files are added by the caller. Downloaded CRLs are also
    /// kept in `crl_cache_dir` when given (the runtime uses `<work_dir>/crl-cache`).
    pub fn revocation_settings(
        &self,
        trust: TrustPolicy,
        crl_cache_dir: Option<&Path>,
    ) -> Result<TrustPolicy, SecurityConfigError> {
        if self.require_revocation_check && !self.crl_distribution_points {
            return Err(SecurityConfigError::Invalid(
                "require_revocation_check = true needs crl_distribution_points = true".into(),
            ));
        }
        let trust = trust.require_revocation_check(self.require_revocation_check);
        Ok(if self.crl_distribution_points {
            let mut options = CrlFetchOptions::default();
            if let Some(dir) = crl_cache_dir {
                options = options.cache_dir(dir);
            }
            trust.fetch_crl_distribution_points(options)
        } else {
            trust
        })
    }
}

impl Default for LocalSecurityConfig {
    fn default() -> Self {
        Self {
            identity: None,
            authentication: None,
            decryption: None,
            signing: None,
            receipt_signing: None,
            trusted_cas: Vec::new(),
            crls: Vec::new(),
            crl_distribution_points: true,
            require_revocation_check: false,
            fail_on_untrusted: true,
            allow_self_signed: false,
            work_dir: None,
        }
    }
}

/// The seed's `SecureAuthentication` setting for a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureAuthentication {
    /// Never: a peer that asks for it is refused with ESID 12.
    Disallowed,
    /// Always: a session without it is refused with ESID 12 (never downgraded).
    Required,
    /// When possible: as responder, follow the peer's SSIDAUTH; as initiator, ask for it
    /// when `authentication_cert` is configured for the partner and we have an
    /// authentication key.
    #[default]
    Automatic,
}

/// Which file services a file must carry (incoming) or gets (outgoing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSecurity {
    /// No signature, no encryption.
    #[default]
    None,
    /// Signed (SFIDSEC 02).
    Signed,
    /// Encrypted (SFIDSEC 01).
    Encrypted,
    /// Signed and encrypted (SFIDSEC 03).
    SignedEncrypted,
}

impl FileSecurity {
    /// The services a file's SFIDSEC announces; an unknown level announces none (the offer
    /// check refuses it).
    pub(super) fn announced(level: SecurityLevel) -> Self {
        match level {
            SecurityLevel::SIGNED => FileSecurity::Signed,
            SecurityLevel::ENCRYPTED => FileSecurity::Encrypted,
            SecurityLevel::ENCRYPTED_AND_SIGNED => FileSecurity::SignedEncrypted,
            _ => FileSecurity::None,
        }
    }
    pub(super) fn signed(self) -> bool {
        matches!(self, FileSecurity::Signed | FileSecurity::SignedEncrypted)
    }
    pub(super) fn encrypted(self) -> bool {
        matches!(
            self,
            FileSecurity::Encrypted | FileSecurity::SignedEncrypted
        )
    }
    pub(super) fn wire(self) -> SecurityLevel {
        match self {
            FileSecurity::None => SecurityLevel::NONE,
            FileSecurity::Signed => SecurityLevel::SIGNED,
            FileSecurity::Encrypted => SecurityLevel::ENCRYPTED,
            FileSecurity::SignedEncrypted => SecurityLevel::ENCRYPTED_AND_SIGNED,
        }
    }
}

/// What we apply to files we send to a partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendSecurity {
    /// Signature and encryption (default none).
    pub security: FileSecurity,
    /// Cipher suite 1-6 (default 4: AES-256-CBC, RSA, SHA-256).
    pub cipher_suite: u8,
    /// Compress (zlib CompressedData) before encrypting.
    pub compress: bool,
    /// Ask for a signed EERP/NERP (SFIDSIGN).
    pub signed_receipt: bool,
}

impl Default for SendSecurity {
    fn default() -> Self {
        Self {
            security: FileSecurity::None,
            cipher_suite: 4,
            compress: false,
            signed_receipt: false,
        }
    }
}

/// A partner's certificates and security policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerSecurityConfig {
    /// The partner's certificate for every purpose without its own.
    pub certificate: Option<PathBuf>,
    /// Encrypting files for the partner.
    pub encryption_cert: Option<PathBuf>,
    /// Verifying the partner's file signatures.
    pub signature_cert: Option<PathBuf>,
    /// Verifying the partner's EERP/NERP signatures.
    pub receipt_cert: Option<PathBuf>,
    /// Enveloping secure-authentication challenges to the partner.
    pub authentication_cert: Option<PathBuf>,
    /// Secure authentication (seed `SecureAuthentication`).
    pub secure_authentication: SecureAuthentication,
    /// The least a file from this partner must carry (SFNA 17 / 20 otherwise).
    pub required_security: FileSecurity,
    /// Cipher suites accepted from this partner (empty: 1-6). Others get SFNA 15.
    pub allowed_suites: Vec<u8>,
    /// Accept compressed files (SFNA 18 otherwise); default true.
    pub allow_compression: bool,
    /// EERP/NERP from this partner must be signed and valid.
    pub require_signed_receipts: bool,
    /// What files we send to this partner get.
    pub send: SendSecurity,
    /// A received ODETTE_CERTIFICATE_REPLACE may replace the partner's configured
    /// certificate (default false: it is stored for review only).
    pub accept_certificate_replace: bool,
    /// Answer an ODETTE_CERTIFICATE_REQUEST from this partner with an
    /// ODETTE_CERTIFICATE_DELIVER carrying our certificate (default true). Off: the request is
    /// only stored and reported to `Handler::certificate_received`, which may answer itself.
    pub answer_certificate_requests: bool,
    /// The certificate this partner presents as a TLS client (default: its authentication
    /// certificate). A TLS listener that binds client certificates to partners accepts
    /// exactly these.
    pub tls_client_cert: Option<PathBuf>,
}

impl Default for PartnerSecurityConfig {
    fn default() -> Self {
        Self {
            certificate: None,
            encryption_cert: None,
            signature_cert: None,
            receipt_cert: None,
            authentication_cert: None,
            secure_authentication: SecureAuthentication::Automatic,
            required_security: FileSecurity::None,
            allowed_suites: Vec::new(),
            allow_compression: true,
            require_signed_receipts: false,
            send: SendSecurity::default(),
            accept_certificate_replace: false,
            answer_certificate_requests: true,
            tls_client_cert: None,
        }
    }
}
