//! OFTP 2.0 security for the runtime: which certificates are used for what, what each partner
//! must and may do, and the file services (RFC 5024 section 6) on both sides of a transfer.
//!
//! - Configuration (serde, read from TOML by the `oftp` command): [`LocalSecurityConfig`] holds
//!   our identities per purpose (the seed's `CertificateType`: session authentication,
//!   decryption, signing, receipt signing, with one default for all), the trusted CAs and CRLs
//!   (the seed's `ValidateCert` / `FailOnUntrustedCert`); [`PartnerSecurityConfig`] holds a
//!   partner's certificates per purpose (encryption, signature verification, receipt
//!   verification, authentication) and its policy (required security, allowed cipher suites,
//!   compression, signed receipts, secure authentication). Passwords for key files come from a
//!   file or an environment variable only ([`IdentityConfig`]); they are never logged.
//! - [`SecurityContext`] is the loaded form, shared by all connections. It implements
//!   [`FileServices`]: sending is sign -> compress -> encrypt while the file is sent
//!   ([`SecurityContext::plan`]; SFIDFSIZ an upper estimate), receiving is the reverse while
//!   the file arrives ([`SecurityContext::open_stream`]), with verification against the
//!   originator's certificate. Memory stays constant for any file size: everything is
//!   streamed through `oftp_security`'s pipelines, on threads the runtime starts for it.
//! - Files that are neither from nor for us (SFID origin and destination are not our codes)
//!   pass through unchanged: no security service is applied (the seed's intermediary rule).
//!
//! Not here: TLS ([`crate::tls`]), the SECD/AUCH/AURP exchange and EERP/NERP signatures (the
//! connection driver calls [`SecurityContext`] for keys and policy), CMS itself
//! (`oftp-security`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oftp_proto::codec::{
    CipherSuite as WireSuite, EfnaReason, FileCompression, FileEnvelope, FileFormat, SecurityLevel,
    Sfid, SfnaReason,
};
use oftp_security::cms::{ReceiveOptions, ReceivePipeline, SendOptions, SendPipeline};
use oftp_security::vformat::{RecordReader, RecordWriter};
use oftp_security::{
    CertSelector, Certificate, CertificateUse, CipherSuite, CrlFetchOptions, Identity, IdentitySet,
    Secret, TrustPolicy, TrustStatus,
};
use serde::{Deserialize, Serialize};

use crate::config::RecordMapping;
use crate::transport::{FileServices, OutgoingPlan, ServiceFailure, ServiceRefusal};

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
    fn signed(self) -> bool {
        matches!(self, FileSecurity::Signed | FileSecurity::SignedEncrypted)
    }
    fn encrypted(self) -> bool {
        matches!(
            self,
            FileSecurity::Encrypted | FileSecurity::SignedEncrypted
        )
    }
    fn wire(self) -> SecurityLevel {
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

/// What a partner certificate is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartnerCertUse {
    /// Encrypting files for the partner.
    Encryption,
    /// Verifying the partner's file signatures.
    Signature,
    /// Verifying the partner's receipt signatures.
    Receipt,
    /// Enveloping challenges to the partner.
    Authentication,
    /// The partner's TLS client certificate (its own, or else the authentication one).
    TlsClient,
}

impl PartnerCertUse {
    fn name(self) -> &'static str {
        match self {
            PartnerCertUse::Encryption => "encryption",
            PartnerCertUse::Signature => "signature",
            PartnerCertUse::Receipt => "receipt",
            PartnerCertUse::Authentication => "authentication",
            PartnerCertUse::TlsClient => "TLS client",
        }
    }
}

/// A partner as the security layer knows it.
#[derive(Debug)]
pub struct PartnerSecurity {
    /// Partner name (logs).
    pub name: String,
    /// SSID code.
    pub ssid: String,
    /// SFID code.
    pub sfid: String,
    /// The policy.
    pub config: PartnerSecurityConfig,
    /// Behind a lock because a certificate exchange may replace them while sessions run.
    certs: std::sync::RwLock<HashMap<PartnerCertUse, Certificate>>,
}

impl PartnerSecurity {
    /// The configured certificate for `usage`, if any (not yet validated).
    pub fn certificate(&self, usage: PartnerCertUse) -> Option<Certificate> {
        self.certs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&usage)
            .cloned()
    }

    /// Whether `presented` is this partner's TLS client certificate (its `tls_client_cert`,
    /// else its authentication certificate), compared by SHA-256 thumbprint.
    pub fn owns_tls_client_certificate(&self, presented: &Certificate) -> bool {
        let mine = self
            .certificate(PartnerCertUse::TlsClient)
            .or_else(|| self.certificate(PartnerCertUse::Authentication));
        mine.is_some_and(|c| c.thumbprint_sha256() == presented.thumbprint_sha256())
    }
}

fn norm(code: &str) -> String {
    code.trim_end().to_ascii_uppercase()
}

/// The loaded security settings of a server or client, shared by its connections.
#[derive(Debug)]
pub struct SecurityContext {
    local_sfid: String,
    /// Shared with the threads that sign outgoing files.
    identities: std::sync::Arc<IdentitySet>,
    has_identity: HashMap<CertificateUse, bool>,
    trust: TrustPolicy,
    partners: Vec<PartnerSecurity>,
    work_dir: PathBuf,
    /// How F/V records are laid out in local files, by partner SFID code (see
    /// [`use_record_mappings`](Self::use_record_mappings)); absent means raw.
    record_mappings: std::sync::OnceLock<HashMap<String, RecordMapping>>,
}

/// Builds a [`SecurityContext`].
#[derive(Debug)]
pub struct SecurityContextBuilder {
    ctx: SecurityContext,
}

impl SecurityContext {
    /// Loads our identities and trust settings. `local_sfid` is our SFID code (files for and
    /// from it get security services; others pass through); `default_work_dir` is used when the
    /// configuration names none.
    pub fn builder(
        local_sfid: &str,
        config: &LocalSecurityConfig,
        default_work_dir: PathBuf,
    ) -> Result<SecurityContextBuilder, SecurityConfigError> {
        let mut identities = IdentitySet::new();
        let mut has_identity = HashMap::new();
        let default = match &config.identity {
            Some(c) => Some(c.load("local identity")?),
            None => None,
        };
        let have_default = default.is_some();
        if let Some(d) = default {
            identities = identities.with_default(d);
        }
        for (usage, cfg, what) in [
            (
                CertificateUse::SessionAuthentication,
                &config.authentication,
                "authentication identity",
            ),
            (
                CertificateUse::Decryption,
                &config.decryption,
                "decryption identity",
            ),
            (CertificateUse::Signing, &config.signing, "signing identity"),
            (
                CertificateUse::ReceiptSigning,
                &config.receipt_signing,
                "receipt signing identity",
            ),
        ] {
            let own = cfg.is_some();
            if let Some(c) = cfg {
                identities = identities.with_use(usage, c.load(what)?);
            }
            has_identity.insert(usage, own || have_default);
        }
        let work_dir = config.work_dir.clone().unwrap_or(default_work_dir);
        let mut trust = config.revocation_settings(
            TrustPolicy::new()
                .fail_on_untrusted(config.fail_on_untrusted)
                .allow_self_signed(config.allow_self_signed),
            Some(&work_dir.join("crl-cache")),
        )?;
        for ca in &config.trusted_cas {
            trust = trust
                .trust_file(ca)
                .map_err(|source| SecurityConfigError::Load {
                    what: format!("trusted CA file {}", ca.display()),
                    source,
                })?;
        }
        for crl in &config.crls {
            trust = trust
                .add_crl_file(crl)
                .map_err(|source| SecurityConfigError::Load {
                    what: format!("CRL file {}", crl.display()),
                    source,
                })?;
        }
        Ok(SecurityContextBuilder {
            ctx: SecurityContext {
                local_sfid: norm(local_sfid),
                identities: std::sync::Arc::new(identities),
                has_identity,
                trust,
                partners: Vec::new(),
                work_dir,
                record_mappings: Default::default(),
            },
        })
    }

    /// Our identity for `usage`, if configured.
    pub fn identity(&self, usage: CertificateUse) -> Option<&Identity> {
        if !self.has_identity.get(&usage).copied().unwrap_or(false) {
            return None;
        }
        self.identities.for_use(usage).ok()
    }

    /// The trust policy (trusted CAs, CRLs).
    pub fn trust(&self) -> &TrustPolicy {
        &self.trust
    }

    /// The partner with this SSID code.
    pub fn partner_by_ssid(&self, ssid: &str) -> Option<&PartnerSecurity> {
        let k = norm(ssid);
        self.partners.iter().find(|p| norm(&p.ssid) == k)
    }

    /// Takes the partners' `record_mapping` (how F/V records are laid out in local files): the
    /// content of a signed, compressed or encrypted F/V file is the records (V with their
    /// 2-octet lengths, RFC 5024 6.5), read from and written to local files in the mapping of
    /// the partner that sends or receives it. `Server::security` and `Client::security` call
    /// this with their partner table; only the first call counts.
    pub(crate) fn use_record_mappings(&self, partners: &crate::config::PartnerTable) {
        let _ = self.record_mappings.set(
            partners
                .iter()
                .map(|p| (norm(p.sfid()), p.record_mapping))
                .collect(),
        );
    }

    fn record_mapping(&self, sfid: &str) -> RecordMapping {
        self.record_mappings
            .get()
            .and_then(|m| m.get(&norm(sfid)).copied())
            .unwrap_or_default()
    }

    /// The partner with this SFID code.
    pub fn partner_by_sfid(&self, sfid: &str) -> Option<&PartnerSecurity> {
        let k = norm(sfid);
        self.partners.iter().find(|p| norm(&p.sfid) == k)
    }

    /// Whether `code` is our SFID code.
    pub fn is_local(&self, code: &str) -> bool {
        norm(code) == self.local_sfid
    }

    /// A partner certificate for `usage`, checked now (validity period; chain and CRL when
    /// trusted CAs are configured). The error text is ready for an operator.
    pub fn partner_cert(
        &self,
        partner: &PartnerSecurity,
        usage: PartnerCertUse,
    ) -> Result<Certificate, String> {
        let cert = partner.certificate(usage).ok_or_else(|| {
            format!(
                "no {} certificate configured for partner {}",
                usage.name(),
                partner.name
            )
        })?;
        match self.trust.check(&cert, &[], SystemTime::now()) {
            Ok(TrustStatus::Untrusted(e)) => {
                tracing::warn!(partner = %partner.name, "using untrusted {} certificate: {e}", usage.name());
                Ok(cert)
            }
            Ok(_) => Ok(cert),
            Err(e) => Err(format!(
                "{} certificate of partner {} is not acceptable: {e}",
                usage.name(),
                partner.name
            )),
        }
    }

    /// Whether secure authentication is to be used with the partner with this SSID code, as
    /// initiator (`offered_by_peer` = None) or as responder (`Some(peer's SSIDAUTH)`).
    /// `Err` carries the ESID 12 text when the combination is not allowed.
    pub fn secure_auth_decision(
        &self,
        ssid: &str,
        offered_by_peer: Option<bool>,
    ) -> Result<bool, String> {
        let partner = self.partner_by_ssid(ssid);
        let setting = partner.map_or(SecureAuthentication::Automatic, |p| {
            p.config.secure_authentication
        });
        let capable = partner
            .is_some_and(|p| p.certificate(PartnerCertUse::Authentication).is_some())
            && self
                .identity(CertificateUse::SessionAuthentication)
                .is_some();
        match (setting, offered_by_peer) {
            (SecureAuthentication::Disallowed, Some(true)) => Err(format!(
                "secure authentication is not allowed for {}",
                ssid.trim_end()
            )),
            (SecureAuthentication::Disallowed, _) => Ok(false),
            (SecureAuthentication::Required, Some(false)) => Err(format!(
                "secure authentication is required for {}",
                ssid.trim_end()
            )),
            (SecureAuthentication::Required, _) if !capable => Err(format!(
                "secure authentication is required for {} but its authentication certificate or our authentication identity is missing",
                ssid.trim_end()
            )),
            (SecureAuthentication::Required, _) => Ok(true),
            (SecureAuthentication::Automatic, Some(true)) if !capable => Err(format!(
                "{} asks for secure authentication but its authentication certificate or our authentication identity is missing",
                ssid.trim_end()
            )),
            (SecureAuthentication::Automatic, Some(peer)) => Ok(peer),
            // As caller, ask only when an authentication certificate is configured for the
            // partner explicitly: a certificate given for all purposes (file security) is no
            // sign that the partner does secure authentication, and asking one that does not
            // ends the session (ESID 12).
            (SecureAuthentication::Automatic, None) => {
                Ok(capable && partner.is_some_and(|p| p.config.authentication_cert.is_some()))
            }
        }
    }

    /// Checks an offered file against the originator's policy.
    pub fn check_offer(&self, sfid: &Sfid) -> Result<(), ServiceRefusal> {
        let refuse = |reason: SfnaReason, text: String| Err(ServiceRefusal { reason, text });
        if !self.is_local(&sfid.destination) {
            // Intermediary: passed on unchanged, nothing to open.
            return Ok(());
        }
        let signed = matches!(
            sfid.security,
            SecurityLevel::SIGNED | SecurityLevel::ENCRYPTED_AND_SIGNED
        );
        let encrypted = matches!(
            sfid.security,
            SecurityLevel::ENCRYPTED | SecurityLevel::ENCRYPTED_AND_SIGNED
        );
        if !sfid.security.is_known() {
            return refuse(
                SfnaReason::UNSPECIFIED,
                format!("unknown security level {:02}", sfid.security.0),
            );
        }
        let compressed = sfid.compression != FileCompression::NONE;
        if compressed && sfid.compression != FileCompression::ZLIB {
            return refuse(
                SfnaReason::COMPRESSION_NOT_ALLOWED,
                format!("unknown compression {}", sfid.compression.0),
            );
        }
        if (signed || encrypted || compressed) && sfid.envelope != FileEnvelope::CMS {
            return refuse(
                SfnaReason::UNSPECIFIED,
                "file services need the CMS envelope (SFIDENV 1)".into(),
            );
        }
        let partner = self.partner_by_sfid(&sfid.originator);
        let policy = partner.map(|p| &p.config);
        if signed || encrypted || sfid.signed_eerp {
            let suite = sfid.cipher_suite.0;
            if CipherSuite::from_code(suite).is_err() {
                return refuse(
                    SfnaReason::CIPHER_SUITE_NOT_SUPPORTED,
                    format!("cipher suite {suite:02} is not supported"),
                );
            }
            if let Some(p) = policy
                && !p.allowed_suites.is_empty()
                && !p.allowed_suites.contains(&suite)
            {
                return refuse(
                    SfnaReason::CIPHER_SUITE_NOT_SUPPORTED,
                    format!("cipher suite {suite:02} is not allowed for this partner"),
                );
            }
        }
        let required = policy.map_or(FileSecurity::None, |p| p.required_security);
        if required.encrypted() && !encrypted {
            return refuse(
                SfnaReason::UNENCRYPTED_FILE_NOT_ALLOWED,
                "files from this partner must be encrypted".into(),
            );
        }
        if required.signed() && !signed {
            return refuse(
                SfnaReason::UNSIGNED_FILE_NOT_ALLOWED,
                "files from this partner must be signed".into(),
            );
        }
        if compressed && policy.is_some_and(|p| !p.allow_compression) {
            return refuse(
                SfnaReason::COMPRESSION_NOT_ALLOWED,
                "compressed files are not allowed from this partner".into(),
            );
        }
        if encrypted && self.identity(CertificateUse::Decryption).is_none() {
            return refuse(
                SfnaReason::ENCRYPTED_FILE_NOT_ALLOWED,
                "no decryption key is configured".into(),
            );
        }
        if signed {
            let Some(p) = partner else {
                return refuse(
                    SfnaReason::SIGNED_FILE_NOT_ALLOWED,
                    format!(
                        "no certificate to verify signatures of {}",
                        sfid.originator.trim_end()
                    ),
                );
            };
            if let Err(text) = self.partner_cert(p, PartnerCertUse::Signature) {
                return refuse(SfnaReason::SIGNED_FILE_NOT_ALLOWED, text);
            }
        }
        // A signed EERP asked for without a receipt-signing key of ours does not refuse the
        // file: the EERP goes out unsigned, with a warning (RFC 5024 3.3.5 note 3, 4.3.6).
        Ok(())
    }

    /// Opens a received file in place: verifies, decompresses and decrypts `data` (durable,
    /// complete) into a temporary file next to it, fsyncs it and renames it over `data`.
    /// Returns the hash of the transmitted file (for a signed EERP) computed on the way.
    pub fn open_received(&self, sfid: &Sfid, data: &Path) -> Result<Vec<u8>, ServiceFailure> {
        let mut input = File::open(data).map_err(|e| ServiceFailure {
            reason: EfnaReason::ACCESS_METHOD_FAILURE,
            text: e.to_string(),
        })?;
        self.open_stream(sfid, &mut input, data)
    }

    /// [`open_received`](Self::open_received) reading the transmitted bytes from `input` (the
    /// file as it arrives, see [`FileServices::open_incoming`]); the opened file replaces
    /// `data` once `input` has ended.
    pub fn open_stream(
        &self,
        sfid: &Sfid,
        input: &mut (dyn Read + Send),
        data: &Path,
    ) -> Result<Vec<u8>, ServiceFailure> {
        let fail = |reason: EfnaReason, text: String| ServiceFailure { reason, text };
        let suite = CipherSuite::from_code(sfid.cipher_suite.0).ok();
        if !self.is_local(&sfid.destination) || !sfid.has_file_services() {
            // Passed through unchanged; only the hash (for a signed EERP) is wanted.
            let mut tee = HashingReader {
                inner: input,
                hasher: suite.map(|s| s.hash().hasher()),
            };
            io::copy(&mut tee, &mut io::sink())
                .map_err(|e| fail(EfnaReason::ACCESS_METHOD_FAILURE, e.to_string()))?;
            return Ok(tee
                .hasher
                .map(oftp_security::Hasher::finish)
                .unwrap_or_default());
        }
        let signed = matches!(
            sfid.security,
            SecurityLevel::SIGNED | SecurityLevel::ENCRYPTED_AND_SIGNED
        );
        let encrypted = matches!(
            sfid.security,
            SecurityLevel::ENCRYPTED | SecurityLevel::ENCRYPTED_AND_SIGNED
        );
        let compressed = sfid.compression != FileCompression::NONE;
        let partner = self.partner_by_sfid(&sfid.originator);
        let sig_cert = match (signed, partner) {
            (false, _) => None,
            (true, None) => {
                return Err(fail(
                    EfnaReason::INVALID_SIGNATURE,
                    format!(
                        "no certificate to verify signatures of {}",
                        sfid.originator.trim_end()
                    ),
                ));
            }
            (true, Some(p)) => Some(
                self.partner_cert(p, PartnerCertUse::Signature)
                    .map_err(|t| fail(EfnaReason::INVALID_SIGNATURE, t))?,
            ),
        };
        let identity = if encrypted {
            Some(self.identity(CertificateUse::Decryption).ok_or_else(|| {
                fail(
                    EfnaReason::DECRYPTION_FAILURE,
                    "no decryption key is configured".into(),
                )
            })?)
        } else {
            None
        };
        let mut opts = ReceiveOptions::new().expect(encrypted, compressed, signed);
        if let Some(i) = identity {
            opts = opts.identity(i);
        }
        if let Some(c) = &sig_cert {
            opts = opts.partner(c);
        }
        let security_err =
            |e: oftp_security::Error| fail(EfnaReason(e.efna_reason()), format!("{e}"));
        let io_err = |e: io::Error| fail(EfnaReason::ACCESS_METHOD_FAILURE, e.to_string());
        let line_end = self.record_mapping(&sfid.originator).line_end();
        // Raw: V records after their 2-octet length (as transmitted), F records back to back;
        // lines: each record followed by the line end, which it must not contain.
        let mut records = 0u64;
        let mut store_record = |out: &mut BufWriter<File>, rec: &[u8], header: bool| {
            records += 1;
            match line_end {
                None if header => {
                    // Read after a 2-octet length, so it always fits one.
                    let len = u16::try_from(rec.len()).map_err(|_| {
                        fail(
                            EfnaReason::RECORD_LENGTH_NOT_SUPPORTED,
                            format!("record {records} is longer than 65535 octets"),
                        )
                    })?;
                    out.write_all(&len.to_be_bytes()).map_err(io_err)?;
                    out.write_all(rec).map_err(io_err)
                }
                None => out.write_all(rec).map_err(io_err),
                Some(_) if rec.contains(&b'\n') => Err(fail(
                    EfnaReason::RECORD_FORMAT_NOT_SUPPORTED,
                    format!(
                        "record {records} contains a line feed; the receiver stores records as \
                         lines"
                    ),
                )),
                Some(end) => out
                    .write_all(rec)
                    .and_then(|()| out.write_all(end))
                    .map_err(io_err),
            }
        };
        // The transmitted file's hash is only needed for a signed EERP.
        let hasher = suite
            .filter(|_| sfid.signed_eerp)
            .map(|s| s.hash().hasher());
        let tee = HashingReader {
            inner: BufReader::with_capacity(64 * 1024, input),
            hasher,
        };
        let (tmp, out) = temp_beside(data).map_err(io_err)?;
        let guard = RemoveOnDrop(Some(tmp.clone()));
        let mut out = BufWriter::with_capacity(64 * 1024, out);
        let mut hash = Vec::new();
        let result = (|| -> Result<(), ServiceFailure> {
            let mut tee = tee;
            let mut pipeline = ReceivePipeline::new(&mut tee, &opts).map_err(security_err)?;
            match sfid.format {
                FileFormat::Variable => {
                    let mut records = RecordReader::new(&mut pipeline);
                    let mut rec = Vec::new();
                    while records.next_record(&mut rec).map_err(security_err)? {
                        store_record(&mut out, &rec, true)?;
                    }
                }
                FileFormat::Fixed if sfid.max_record_len > 0 => {
                    let mut rec = vec![0u8; sfid.max_record_len as usize];
                    loop {
                        let n = read_full(&mut pipeline, &mut rec)
                            .map_err(|e| security_err(oftp_security::Error::from_io(e)))?;
                        if n == 0 {
                            break;
                        }
                        store_record(&mut out, &rec[..n], false)?;
                    }
                }
                _ => {
                    io::copy(&mut pipeline, &mut out)
                        .map_err(|e| security_err(oftp_security::Error::from_io(e)))?;
                }
            }
            pipeline.finish().map_err(security_err)?;
            // Whatever follows the CMS structure was read by `finish`; hash to the end anyway.
            io::copy(&mut tee, &mut io::sink()).map_err(io_err)?;
            if let Some(h) = tee.hasher.take() {
                hash = h.finish();
            }
            Ok(())
        })();
        result?;
        let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        drop(file);
        std::fs::rename(&tmp, data).map_err(io_err)?;
        std::mem::forget(guard);
        sync_dir(data).map_err(io_err)?;
        Ok(hash)
    }

    /// Prepares an outgoing file: fills the SFID's service fields from the destination
    /// partner's policy and writes the processed copy (sign -> compress -> encrypt) into the
    /// work directory, with the exact SFIDFSIZ. `None` transmits the source itself. The
    /// runtime does not use this (it streams, see [`plan`](Self::plan)); it is for tools that
    /// want the processed file.
    pub fn prepare(&self, sfid: &mut Sfid, source: &Path) -> io::Result<Prepared> {
        let seal = match self.plan(sfid, source)? {
            OutgoingPlan::AsIs { file_hash } => {
                return Ok(Prepared {
                    transmit: None,
                    file_hash,
                });
            }
            OutgoingPlan::Processed(seal) => seal,
        };
        std::fs::create_dir_all(&self.work_dir)?;
        let target = self.work_dir.join(copy_name(sfid, source));
        let (tmp, out) = temp_beside(&target)?;
        let guard = RemoveOnDrop(Some(tmp.clone()));
        let mut out = BufWriter::with_capacity(64 * 1024, out);
        let file_hash = seal(&mut out)?;
        // No fsync: the copy is transient (a new attempt makes a new one and sends it from
        // 0), so its durability protects nothing.
        drop(out.into_inner().map_err(|e| e.into_error())?);
        std::fs::rename(&tmp, &target)?;
        std::mem::forget(guard);
        sfid.file_size = oftp_proto::data::size_in_kib(std::fs::metadata(&target)?.len());
        Ok(Prepared {
            transmit: Some(target),
            file_hash,
        })
    }

    /// Decides how an outgoing file is transmitted: fills the SFID's service fields from the
    /// destination partner's policy and, when services apply, returns the [`Seal`] that
    /// produces the processed form (sign -> compress -> encrypt) while it is sent. SFIDFSIZ is
    /// then an upper estimate (RFC 5024 5.3.3: "a good estimate"), since the size of a
    /// compressed file is known only at its end. Certificates and keys are checked here, so a
    /// file that cannot be processed is never offered.
    ///
    /// [`Seal`]: crate::transport::Seal
    pub fn plan(&self, sfid: &mut Sfid, source: &Path) -> io::Result<OutgoingPlan> {
        let none = |sfid: &mut Sfid| {
            sfid.security = SecurityLevel::NONE;
            sfid.compression = FileCompression::NONE;
            sfid.envelope = FileEnvelope::NONE;
        };
        let partner = self.partner_by_sfid(&sfid.destination);
        let send = partner.map(|p| p.config.send.clone()).unwrap_or_default();
        if !self.is_local(&sfid.originator) {
            // Intermediary: not ours to sign or encrypt.
            none(sfid);
            sfid.cipher_suite = WireSuite::NONE;
            sfid.signed_eerp = false;
            return Ok(OutgoingPlan::AsIs { file_hash: None });
        }
        let invalid = |t: String| io::Error::new(io::ErrorKind::InvalidInput, t);
        let services = send.security != FileSecurity::None || send.compress;
        let suite = if services || send.signed_receipt {
            Some(CipherSuite::from_code(send.cipher_suite).map_err(|e| invalid(e.to_string()))?)
        } else {
            None
        };
        sfid.cipher_suite = WireSuite(suite.map_or(0, CipherSuite::code));
        sfid.signed_eerp = send.signed_receipt;
        if !services {
            none(sfid);
            let file_hash = match suite {
                Some(s) => Some(hash_file(Some(s), source)?),
                None => None,
            };
            return Ok(OutgoingPlan::AsIs { file_hash });
        }
        let suite = suite.ok_or_else(|| invalid("no cipher suite".into()))?;
        let partner = partner.ok_or_else(|| {
            invalid(format!(
                "no security settings for destination {}",
                sfid.destination.trim_end()
            ))
        })?;
        let sign = send.security.signed();
        if sign && self.identity(CertificateUse::Signing).is_none() {
            return Err(invalid(
                "files are to be signed but no signing key is configured".into(),
            ));
        }
        let recipient = if send.security.encrypted() {
            Some(
                self.partner_cert(partner, PartnerCertUse::Encryption)
                    .map_err(invalid)?,
            )
        } else {
            None
        };
        sfid.security = send.security.wire();
        sfid.compression = if send.compress {
            FileCompression::ZLIB
        } else {
            FileCompression::NONE
        };
        sfid.envelope = FileEnvelope::CMS;
        // A processed form differs at every attempt (fresh content-encryption key), so it is
        // sent from position 0.
        sfid.restart_position = 0;
        let original = std::fs::metadata(source)?.len();
        sfid.file_size = oftp_proto::data::size_in_kib(processed_size_estimate(original));
        let job = SealJob {
            identities: self.identities.clone(),
            sign,
            recipient,
            suite,
            compress: send.compress,
            format: sfid.format,
            mapping: self.record_mapping(&sfid.destination),
            source: source.to_owned(),
            hash: sfid.signed_eerp,
        };
        Ok(OutgoingPlan::Processed(Box::new(move |out| job.run(out))))
    }
}

/// An upper estimate of the processed size of a file of `original` octets, for SFIDFSIZ:
/// CMS framing, certificates, signature and padding add a few KiB; deflate adds at most about
/// 0.03 % to data it cannot compress (and mostly makes files much smaller).
fn processed_size_estimate(original: u64) -> u64 {
    original + original / 1024 + 64 * 1024
}

/// Everything the processing of one outgoing file needs, owned, for the thread that runs it.
struct SealJob {
    identities: std::sync::Arc<IdentitySet>,
    sign: bool,
    recipient: Option<Certificate>,
    suite: CipherSuite,
    compress: bool,
    format: FileFormat,
    /// How the source file's F/V records are laid out.
    mapping: RecordMapping,
    source: PathBuf,
    /// Whether the hash of the transmitted bytes is wanted (a signed EERP was asked for).
    hash: bool,
}

impl SealJob {
    /// Sign -> compress -> encrypt `source` into `out`; returns the hash of what was written
    /// when one is wanted.
    fn run(self, out: &mut (dyn Write + Send)) -> io::Result<Option<Vec<u8>>> {
        let to_io = |e: oftp_security::Error| io::Error::other(e.to_string());
        let signer = if self.sign {
            Some(
                self.identities
                    .for_use(CertificateUse::Signing)
                    .map_err(to_io)?,
            )
        } else {
            None
        };
        let mut inner_opts = SendOptions::new(self.suite);
        if let Some(s) = signer {
            inner_opts = inner_opts.sign(s);
        }
        if self.compress {
            inner_opts = inner_opts.compress();
        }
        let tee = HashingWriter {
            inner: out,
            hasher: self.hash.then(|| self.suite.hash().hasher()),
        };
        let input = BufReader::with_capacity(64 * 1024, File::open(&self.source)?);
        let (format, mapping) = (self.format, self.mapping);
        let suite = self.suite;
        // Signing (and compressing) and encrypting each take a core's worth of work: with both,
        // they run on two threads joined by a small bounded channel (constant memory).
        let tee = match &self.recipient {
            Some(r) if signer.is_some() || self.compress => {
                std::thread::scope(|scope| -> io::Result<_> {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
                    let producer = scope.spawn(move || -> io::Result<()> {
                        let sink = ChannelWriter {
                            tx,
                            buf: Vec::with_capacity(CHANNEL_CHUNK),
                        };
                        let mut stage = SendPipeline::new(sink, &inner_opts).map_err(to_io)?;
                        feed(format, mapping, input, &mut stage)?;
                        stage.finish().map_err(to_io)?.close()
                    });
                    let mut enc =
                        oftp_security::cms::EnvelopedDataWriter::new(tee, &[r], suite.symmetric())
                            .map_err(to_io)?;
                    let mut failed = None;
                    for chunk in rx {
                        if let Err(e) = enc.write_all(&chunk) {
                            // Dropping the receiver stops the producer.
                            failed = Some(e);
                            break;
                        }
                    }
                    let produced = producer
                        .join()
                        .map_err(|_| io::Error::other("the signing thread panicked"))?;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    // Finish the envelope only over complete content.
                    produced?;
                    enc.finish().map_err(to_io)
                })?
            }
            _ => {
                let mut opts = inner_opts;
                if let Some(r) = &self.recipient {
                    opts = opts.encrypt_for(r);
                }
                let mut pipeline = SendPipeline::new(tee, &opts).map_err(to_io)?;
                feed(format, mapping, input, &mut pipeline)?;
                pipeline.finish().map_err(to_io)?
            }
        };
        let HashingWriter { inner, hasher } = tee;
        inner.flush()?;
        Ok(hasher.map(oftp_security::Hasher::finish))
    }
}

impl SecurityContextBuilder {
    /// Adds a partner: loads its certificates (not yet validated: that happens at each use,
    /// so an expiry during a long run is noticed).
    pub fn partner(
        mut self,
        name: &str,
        ssid: &str,
        sfid: &str,
        config: &PartnerSecurityConfig,
    ) -> Result<Self, SecurityConfigError> {
        let mut certs = HashMap::new();
        let load = |path: &PathBuf, what: &str| {
            Certificate::load(path).map_err(|source| SecurityConfigError::Load {
                what: format!("partner {name}: {what} certificate {}", path.display()),
                source,
            })
        };
        for (usage, path) in [
            (PartnerCertUse::Encryption, &config.encryption_cert),
            (PartnerCertUse::Signature, &config.signature_cert),
            (PartnerCertUse::Receipt, &config.receipt_cert),
            (PartnerCertUse::Authentication, &config.authentication_cert),
        ] {
            if let Some(p) = path.as_ref().or(config.certificate.as_ref()) {
                certs.insert(usage, load(p, usage.name())?);
            }
        }
        // Without its own file the TLS client certificate follows the authentication one
        // (also when a certificate exchange replaces that): see `PartnerSecurity::tls_client`.
        if let Some(p) = &config.tls_client_cert {
            certs.insert(
                PartnerCertUse::TlsClient,
                load(p, PartnerCertUse::TlsClient.name())?,
            );
        }
        if CipherSuite::from_code(config.send.cipher_suite).is_err() {
            return Err(SecurityConfigError::Invalid(format!(
                "partner {name}: send.cipher_suite {} is not 1-6",
                config.send.cipher_suite
            )));
        }
        if let Some(bad) = config
            .allowed_suites
            .iter()
            .find(|s| CipherSuite::from_code(**s).is_err())
        {
            return Err(SecurityConfigError::Invalid(format!(
                "partner {name}: allowed_suites contains {bad}, not a suite 1-6"
            )));
        }
        self.ctx.partners.push(PartnerSecurity {
            name: name.to_owned(),
            ssid: ssid.to_owned(),
            sfid: if sfid.is_empty() { ssid } else { sfid }.to_owned(),
            config: config.clone(),
            certs: std::sync::RwLock::new(certs),
        });
        Ok(self)
    }

    /// Applies certificates that replaced a partner's configured one through an
    /// ODETTE_CERTIFICATE_REPLACE in an earlier run (`<store_dir>/<partner>/current.pem`, as
    /// [`SecurityContext::receive_certificate`] stores them), for partners whose policy
    /// allows replacement. Call after the partners are added.
    pub fn restore_replaced_certificates(
        self,
        store_dir: &Path,
    ) -> Result<Self, SecurityConfigError> {
        for p in &self.ctx.partners {
            if !p.config.accept_certificate_replace {
                continue;
            }
            let folder =
                crate::store::sanitize_file_name(&p.name).unwrap_or_else(|_| "partner".into());
            let current = store_dir.join(folder).join(CURRENT_CERTIFICATE);
            if !current.exists() {
                continue;
            }
            let cert = Certificate::load(&current).map_err(|source| SecurityConfigError::Load {
                what: format!(
                    "partner {}: replaced certificate {}",
                    p.name,
                    current.display()
                ),
                source,
            })?;
            let mut certs = p.certs.write().unwrap_or_else(|e| e.into_inner());
            for usage in [
                PartnerCertUse::Encryption,
                PartnerCertUse::Signature,
                PartnerCertUse::Receipt,
                PartnerCertUse::Authentication,
            ] {
                certs.insert(usage, cert.clone());
            }
        }
        Ok(self)
    }

    /// The finished context.
    pub fn build(self) -> SecurityContext {
        self.ctx
    }
}

/// An outgoing file after [`SecurityContext::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The processed copy to transmit instead of the source, if services apply.
    pub transmit: Option<PathBuf>,
    /// Hash of the transmitted bytes with the suite's algorithm (for a signed EERP), when a
    /// suite applies.
    pub file_hash: Option<Vec<u8>>,
}

/// The file services of a [`SecurityContext`] for the connection driver.
impl FileServices for SecurityContext {
    fn check_incoming(&self, sfid: &Sfid) -> Result<(), ServiceRefusal> {
        self.check_offer(sfid)
    }

    fn finish_incoming(&self, sfid: &Sfid, data: &Path) -> Result<(), ServiceFailure> {
        self.open_received(sfid, data).map(|_| ())
    }

    fn prepare_outgoing(&self, sfid: &mut Sfid, source: &Path) -> io::Result<Option<PathBuf>> {
        self.prepare(sfid, source).map(|p| p.transmit)
    }

    fn finish_incoming_with_hash(
        &self,
        sfid: &Sfid,
        data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        self.open_received(sfid, data)
            .map(|h| (sfid.signed_eerp && !h.is_empty()).then_some(h))
    }

    fn open_incoming(
        &self,
        sfid: &Sfid,
        received: &mut (dyn Read + Send),
        data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        self.open_stream(sfid, received, data)
            .map(|h| (sfid.signed_eerp && !h.is_empty()).then_some(h))
    }

    fn stream_outgoing(&self, sfid: &mut Sfid, source: &Path) -> io::Result<OutgoingPlan> {
        self.plan(sfid, source)
    }

    fn prepare_outgoing_with_hash(
        &self,
        sfid: &mut Sfid,
        source: &Path,
    ) -> io::Result<(Option<PathBuf>, Option<Vec<u8>>)> {
        self.prepare(sfid, source)
            .map(|p| (p.transmit, p.file_hash.filter(|_| sfid.signed_eerp)))
    }
}

/// Secure authentication and signed receipts: the keys and checks the connection driver needs.
impl SecurityContext {
    /// Our challenge to the partner with SSID code `ssid` (RFC 5024 4.2.3): 20 random octets
    /// enveloped in CMS to the partner's authentication certificate with the partner's cipher
    /// suite. Returns the AUCHCHAL bytes and the octets the AURP must return.
    pub fn create_challenge(&self, ssid: &str) -> Result<(Vec<u8>, [u8; 20]), String> {
        let partner = self
            .partner_by_ssid(ssid)
            .ok_or_else(|| format!("no security settings for {}", ssid.trim_end()))?;
        let cert = self.partner_cert(partner, PartnerCertUse::Authentication)?;
        let suite =
            CipherSuite::from_code(partner.config.send.cipher_suite).map_err(|e| e.to_string())?;
        let mut expected = [0u8; 20];
        aws_lc_rs::rand::fill(&mut expected)
            .map_err(|_| "the random number generator failed".to_owned())?;
        let mut w =
            oftp_security::cms::EnvelopedDataWriter::new(Vec::new(), &[&cert], suite.symmetric())
                .map_err(|e| e.to_string())?;
        w.write_all(&expected).map_err(|e| e.to_string())?;
        let envelope = w.finish().map_err(|e| e.to_string())?;
        if envelope.len() > usize::from(u16::MAX) {
            return Err("the challenge envelope exceeds 65535 octets (key too large)".into());
        }
        Ok((envelope, expected))
    }

    /// Our answer (AURP) to a challenge (AUCHCHAL) enveloped to our authentication key.
    pub fn answer_challenge(&self, challenge: &[u8]) -> Result<[u8; 20], String> {
        let id = self
            .identity(CertificateUse::SessionAuthentication)
            .ok_or_else(|| "no authentication key is configured".to_owned())?;
        let answer = oftp_security::auth::answer_challenge(challenge, id)
            .map_err(|e| format!("cannot open the challenge: {e}"))?;
        Ok(*answer)
    }

    /// Signs an EERP/NERP (EERPSIG/NERPSIG) with our receipt-signing key and `suite`'s hash.
    pub fn sign_receipt(
        &self,
        fields: &oftp_security::receipt::ReceiptFields,
        suite: u8,
    ) -> Result<Vec<u8>, String> {
        let id = self
            .identity(CertificateUse::ReceiptSigning)
            .ok_or_else(|| {
                "no receipt-signing key is configured ([security.receipt_signing], or \
                 [security.identity] for every purpose)"
                    .to_owned()
            })?;
        let suite = CipherSuite::from_code(suite).map_err(|e| e.to_string())?;
        oftp_security::receipt::sign_receipt(fields, id, suite).map_err(|e| e.to_string())
    }

    /// Verifies a received EERP/NERP signature of the final recipient `recipient_sfid`
    /// against the partner's receipt certificate (encapsulated or detached signatures).
    pub fn verify_receipt(
        &self,
        recipient_sfid: &str,
        signature: &[u8],
        fields: &oftp_security::receipt::ReceiptFields,
    ) -> Result<(), String> {
        let partner = self.partner_by_sfid(recipient_sfid).ok_or_else(|| {
            format!(
                "no certificate to verify receipts of {}",
                recipient_sfid.trim_end()
            )
        })?;
        let cert = self.partner_cert(partner, PartnerCertUse::Receipt)?;
        oftp_security::receipt::verify_receipt(signature, fields, &cert)
            .map(|_| ())
            .map_err(|e| format!("receipt signature of {} is not valid: {e}", partner.name))
    }

    /// Whether end responses from `recipient_sfid` must carry a valid signature.
    pub fn requires_signed_receipts(&self, recipient_sfid: &str) -> bool {
        self.partner_by_sfid(recipient_sfid)
            .is_some_and(|p| p.config.require_signed_receipts)
    }
}

/// Certificate exchange through reserved virtual file names (seed `ExchangeCertificate` and
/// `CertificateReceived`; RFC 5024 10.4 lets certificates travel as ordinary CMS files, the
/// names are the Odette convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateExchange {
    /// Here is my certificate; please send yours (seed type 0).
    Request,
    /// Here is my new certificate; it replaces the previous one (seed type 1).
    Replace,
    /// Here is my certificate (an answer to a request, or an additional one; seed type 2).
    Deliver,
}

impl CertificateExchange {
    /// The reserved virtual file name.
    pub fn virtual_file_name(self) -> &'static str {
        match self {
            CertificateExchange::Request => "ODETTE_CERTIFICATE_REQUEST",
            CertificateExchange::Replace => "ODETTE_CERTIFICATE_REPLACE",
            CertificateExchange::Deliver => "ODETTE_CERTIFICATE_DELIVER",
        }
    }

    /// Recognises a reserved virtual file name (trailing blanks and case ignored).
    pub fn from_virtual_file_name(name: &str) -> Option<Self> {
        match norm(name).as_str() {
            "ODETTE_CERTIFICATE_REQUEST" => Some(CertificateExchange::Request),
            "ODETTE_CERTIFICATE_REPLACE" => Some(CertificateExchange::Replace),
            "ODETTE_CERTIFICATE_DELIVER" => Some(CertificateExchange::Deliver),
            _ => None,
        }
    }

    /// The seed's `CertificateExchangeType` code (0 request, 1 replace, 2 deliver).
    pub fn seed_code(self) -> u8 {
        match self {
            CertificateExchange::Request => 0,
            CertificateExchange::Replace => 1,
            CertificateExchange::Deliver => 2,
        }
    }
}

/// A certificate that arrived in an exchange file.
#[derive(Debug, Clone)]
pub struct ReceivedCertificate {
    /// Request, replace or deliver.
    pub kind: CertificateExchange,
    /// The partner it came from (by SFID originator), if known.
    pub partner: Option<String>,
    /// The certificate.
    pub certificate: Certificate,
    /// Where it was stored (PEM).
    pub stored: PathBuf,
    /// Validation against our trust settings.
    pub status: Result<TrustStatus, String>,
    /// Whether it now replaces the partner's certificates (only for a replace, when the
    /// partner's `accept_certificate_replace` allows it, the file was signed by the partner and
    /// the certificate validates).
    pub replaced: bool,
    /// For a request: the runtime answered it with an ODETTE_CERTIFICATE_DELIVER carrying our
    /// certificate (the partner's `answer_certificate_requests`). `false`: not answered, the
    /// handler may answer with `OutgoingFile::certificate_exchange(Deliver, ...)`.
    pub answered: bool,
}

impl SecurityContext {
    /// Takes in a received certificate exchange file (its file services already removed):
    /// reads the certificate (PEM, DER or a CMS SignedData carrying certificates), validates
    /// it, stores it as `<store_dir>/<partner>/<sha256>.pem`, and applies the partner policy.
    /// A trusted certificate is never replaced silently.
    pub fn receive_certificate(
        &self,
        originator: &str,
        kind: CertificateExchange,
        file: &Path,
        store_dir: &Path,
        signed_by_partner: bool,
    ) -> Result<ReceivedCertificate, String> {
        let mut bytes = Vec::new();
        File::open(file)
            .and_then(|f| f.take(4 * 1024 * 1024).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let mut certs = Certificate::all_from_pem_or_der(&bytes).unwrap_or_default();
        if certs.is_empty() {
            let reader = oftp_security::cms::SignedDataReader::new(&bytes[..])
                .map_err(|e| format!("no certificate in the exchange file: {e}"))?;
            certs = reader.certificates().to_vec();
        }
        let certificate = certs
            .iter()
            .find(|c| !c.is_ca())
            .or(certs.first())
            .cloned()
            .ok_or_else(|| "no certificate in the exchange file".to_owned())?;
        let status = self
            .trust
            .check(&certificate, &certs, SystemTime::now())
            .map_err(|e| e.to_string());
        let partner = self.partner_by_sfid(originator);
        let folder = partner.map_or_else(
            || {
                crate::store::sanitize_file_name(originator.trim_end())
                    .unwrap_or_else(|_| "unknown".into())
            },
            |p| crate::store::sanitize_file_name(&p.name).unwrap_or_else(|_| "partner".into()),
        );
        let dir = store_dir.join(folder);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let stored = dir.join(format!("{}.pem", certificate.thumbprint_sha256_hex()));
        let write = || -> io::Result<()> {
            let (tmp, mut f) = temp_beside(&stored)?;
            let guard = RemoveOnDrop(Some(tmp.clone()));
            f.write_all(certificate.to_pem().as_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &stored)?;
            std::mem::forget(guard);
            sync_dir(&stored)
        };
        write().map_err(|e| format!("cannot store {}: {e}", stored.display()))?;
        let mut replaced = false;
        if let Some(p) = partner
            && kind == CertificateExchange::Replace
            && p.config.accept_certificate_replace
            && signed_by_partner
            && status.is_ok()
        {
            let mut certs = p.certs.write().unwrap_or_else(|e| e.into_inner());
            for usage in [
                PartnerCertUse::Encryption,
                PartnerCertUse::Signature,
                PartnerCertUse::Receipt,
                PartnerCertUse::Authentication,
            ] {
                certs.insert(usage, certificate.clone());
            }
            replaced = true;
            // Remembered across restarts (see `SecurityContextBuilder::restore_replaced_certificates`).
            let current = dir.join(CURRENT_CERTIFICATE);
            let write = || -> io::Result<()> {
                let (tmp, mut f) = temp_beside(&current)?;
                let guard = RemoveOnDrop(Some(tmp.clone()));
                f.write_all(certificate.to_pem().as_bytes())?;
                f.sync_all()?;
                drop(f);
                std::fs::rename(&tmp, &current)?;
                std::mem::forget(guard);
                sync_dir(&current)
            };
            if let Err(e) = write() {
                tracing::warn!(partner = %p.name, "cannot record the replaced certificate in {}: {e}", current.display());
            }
            tracing::info!(partner = %p.name, subject = certificate.subject(), "partner certificate replaced by a certificate exchange");
        }
        Ok(ReceivedCertificate {
            kind,
            partner: partner.map(|p| p.name.clone()),
            certificate,
            stored,
            status,
            replaced,
            answered: false,
        })
    }
}

impl SecurityContext {
    /// Our certificate as a partner needs it (seed: one `Certificate` for everything): the
    /// signing certificate, else the decryption, authentication or receipt-signing one,
    /// whichever is configured first.
    pub fn own_certificate(&self) -> Option<&Certificate> {
        [
            CertificateUse::Signing,
            CertificateUse::Decryption,
            CertificateUse::SessionAuthentication,
            CertificateUse::ReceiptSigning,
        ]
        .into_iter()
        .find_map(|u| self.identity(u))
        .map(Identity::certificate)
    }

    /// What to answer an ODETTE_CERTIFICATE_REQUEST from `originator` (its SFID code) with:
    /// `Ok(Some(cert))` our certificate, `Ok(None)` nothing because the partner's
    /// `answer_certificate_requests` is off, `Err` nothing because the originator is not a
    /// configured partner or we have no certificate (the text says which).
    pub fn certificate_request_answer(
        &self,
        originator: &str,
    ) -> Result<Option<&Certificate>, String> {
        let partner = self.partner_by_sfid(originator).ok_or_else(|| {
            format!(
                "{} is not a configured partner; certificate requests are answered only for partners",
                originator.trim_end()
            )
        })?;
        if !partner.config.answer_certificate_requests {
            return Ok(None);
        }
        self.own_certificate().map(Some).ok_or_else(|| {
            "no local certificate is configured ([security.identity] or [security.signing])"
                .to_owned()
        })
    }

    /// The partner whose TLS client certificate `presented` is (see
    /// [`PartnerSecurity::owns_tls_client_certificate`]).
    pub fn tls_client_partner(&self, presented: &Certificate) -> Option<&PartnerSecurity> {
        self.partners
            .iter()
            .find(|p| p.owns_tls_client_certificate(presented))
    }
}

/// A name for the processed copy that is the same for every attempt of one file.
fn copy_name(sfid: &Sfid, source: &Path) -> String {
    let mut h = oftp_security::HashAlgorithm::Sha256.hasher();
    for part in [
        sfid.originator.trim_end().as_bytes(),
        sfid.destination.trim_end().as_bytes(),
        sfid.dsn.trim_end().as_bytes(),
        sfid.date_time.date_string().as_bytes(),
        sfid.date_time.time_string().as_bytes(),
        source.as_os_str().as_encoded_bytes(),
    ] {
        h.update(part);
        h.update(&[0]);
    }
    let d = h.finish();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.cms")
}

/// File name of a partner's certificate that replaced the configured one.
const CURRENT_CERTIFICATE: &str = "current.pem";

/// Chunk size between the signing and the encrypting thread.
const CHANNEL_CHUNK: usize = 64 * 1024;

/// Writes a file's content into the first CMS stage: V records with their length prefixes
/// (RFC 5024 6.5), F records concatenated, U and T as they are. Raw F/V files hold exactly
/// that already; F/V files mapped to lines are converted line by line.
fn feed<W: Write>(
    format: FileFormat,
    mapping: RecordMapping,
    input: BufReader<File>,
    out: &mut W,
) -> io::Result<()> {
    let to_io = |e: oftp_security::Error| io::Error::other(e.to_string());
    let lf_only = mapping == RecordMapping::LinesLf;
    match format {
        FileFormat::Variable | FileFormat::Fixed if mapping == RecordMapping::Raw => {
            let mut input = input;
            io::copy(&mut input, out).map(|_| ())
        }
        FileFormat::Variable => {
            let mut records = RecordWriter::new(out);
            for_each_line(input, lf_only, |line| {
                records.write_record(line).map_err(to_io)
            })
        }
        FileFormat::Fixed => for_each_line(input, lf_only, |line| out.write_all(line)),
        _ => {
            let mut input = input;
            io::copy(&mut input, out).map(|_| ())
        }
    }
}

/// Hands written bytes to another thread in chunks; `close` sends the rest.
struct ChannelWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHANNEL_CHUNK));
        self.tx
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the encrypting thread stopped"))
    }

    fn close(mut self) -> io::Result<()> {
        self.send_buf()
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHANNEL_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHANNEL_CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // The content only needs to arrive by `close`; flushing partial chunks would only
        // make them smaller.
        Ok(())
    }
}

/// Calls `f` with each line of `input` without its line end (LF or CR LF; with `lf_only`, LF).
fn for_each_line<R: BufRead>(
    mut input: R,
    lf_only: bool,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut line = Vec::new();
    // Bounded by the file: each turn consumes at least one byte or ends.
    while crate::source::read_line(&mut input, lf_only, &mut line)? {
        f(&line)?;
    }
    Ok(())
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The answer for a received file whose opening ended without a verdict (the opening thread
/// panicked, or stopped): the EFNA reason of the outermost layer the SFID announced, the
/// envelope being opened (RFC 5024 6.1 nests encryption around compression around the
/// signature; 5.3.10: 22 file decryption failure, 23 file decompression failure, 21 invalid
/// file signature), 99 for a file without file services. The cause stays in the local log.
pub(crate) fn unopened_file(sfid: &Sfid) -> ServiceFailure {
    let (reason, layer) = match sfid.security {
        SecurityLevel::ENCRYPTED | SecurityLevel::ENCRYPTED_AND_SIGNED => {
            (EfnaReason::DECRYPTION_FAILURE, "encrypted data")
        }
        _ if sfid.compression != FileCompression::NONE => {
            (EfnaReason::DECOMPRESSION_FAILURE, "compressed data")
        }
        SecurityLevel::SIGNED => (EfnaReason::INVALID_SIGNATURE, "signed data"),
        _ => (EfnaReason::UNSPECIFIED, "file"),
    };
    ServiceFailure {
        reason,
        text: format!(
            "the receiver could not open the {layer}: its decoder failed on it (an internal \
             error, logged at the receiver)"
        ),
    }
}

fn hash_file(suite: Option<CipherSuite>, path: &Path) -> io::Result<Vec<u8>> {
    match suite {
        Some(s) => s
            .hash()
            .digest_reader(BufReader::with_capacity(64 * 1024, File::open(path)?)),
        None => Ok(Vec::new()),
    }
}

/// A hidden temporary file in the directory of `path`.
fn temp_beside(path: &Path) -> io::Result<(PathBuf, File)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    Ok((tmp, f))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Option<oftp_security::Hasher>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Option<oftp_security::Hasher>,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
