//! The loaded security settings shared by all connections: [`SecurityContext`] (our identities,
//! the trust policy, the partners' certificates and policies) and its builder, with the
//! look-ups the other parts use: a partner by SSID or SFID code, our identity for a purpose, a
//! partner certificate checked at the time of use, the secure-authentication decision
//! (ESID 12 texts), which certificate of ours a partner gets, which partner a TLS client
//! certificate belongs to.
//!
//! Not here: the configuration types (`config.rs`), what is done to files (`inbound.rs`,
//! `outbound.rs`), signed receipts and challenges (`receipts.rs`), certificate exchange and
//! the store of received certificates (`exchange.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::SystemTime;

use oftp_security::{
    Certificate, CertificateUse, CipherSuite, Identity, IdentitySet, TrustPolicy, TrustStatus,
};

use super::config::{
    LocalSecurityConfig, PartnerSecurityConfig, SecureAuthentication, SecurityConfigError,
};
use super::error::{SecureAuthRefusal, SecurityError};
use crate::config::RecordMapping;
use crate::identity::OdetteId;

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
    pub(super) fn name(self) -> &'static str {
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
    pub ssid: OdetteId,
    /// SFID code.
    pub sfid: OdetteId,
    /// The policy.
    pub config: PartnerSecurityConfig,
    /// Behind a lock because a certificate exchange may replace them while sessions run.
    certs: RwLock<HashMap<PartnerCertUse, Certificate>>,
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

    /// Puts `certificate` in place of the partner's certificates for every file and session
    /// purpose (a certificate exchange replaced them); a separate TLS client certificate
    /// stays.
    pub(super) fn replace_certificates(&self, certificate: &Certificate) {
        let mut certs = self.certs.write().unwrap_or_else(|e| e.into_inner());
        for usage in [
            PartnerCertUse::Encryption,
            PartnerCertUse::Signature,
            PartnerCertUse::Receipt,
            PartnerCertUse::Authentication,
        ] {
            certs.insert(usage, certificate.clone());
        }
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

/// The loaded security settings of a server or client, shared by its connections.
#[derive(Debug)]
pub struct SecurityContext {
    local_sfid: OdetteId,
    /// Shared with the threads that sign outgoing files.
    pub(super) identities: Arc<IdentitySet>,
    has_identity: HashMap<CertificateUse, bool>,
    pub(super) trust: TrustPolicy,
    pub(super) partners: Vec<PartnerSecurity>,
    pub(super) work_dir: PathBuf,
    /// How F/V records are laid out in local files, by partner SFID code (see
    /// [`use_record_mappings`](Self::use_record_mappings)); absent means raw.
    record_mappings: OnceLock<HashMap<OdetteId, RecordMapping>>,
}

/// Builds a [`SecurityContext`].
#[derive(Debug)]
pub struct SecurityContextBuilder {
    pub(super) ctx: SecurityContext,
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
        let local_sfid = OdetteId::new(local_sfid)
            .map_err(|e| SecurityConfigError::Invalid(format!("our SFID code: {e}")))?;
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
        type Add = fn(TrustPolicy, &Path) -> Result<TrustPolicy, oftp_security::Error>;
        let adders: [(&[PathBuf], &str, Add); 2] = [
            (&config.trusted_cas, "trusted CA file", |t, f| {
                t.trust_file(f)
            }),
            (&config.crls, "CRL file", |t, f| t.add_crl_file(f)),
        ];
        for (files, what, add) in adders {
            for file in files {
                trust = add(trust, file).map_err(|source| SecurityConfigError::Load {
                    what: format!("{what} {}", file.display()),
                    source,
                })?;
            }
        }
        Ok(SecurityContextBuilder {
            ctx: SecurityContext {
                local_sfid,
                identities: Arc::new(identities),
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
        let k = OdetteId::new(ssid).ok()?;
        self.partners.iter().find(|p| p.ssid == k)
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
                .filter_map(|p| Some((OdetteId::new(p.sfid()).ok()?, p.record_mapping)))
                .collect(),
        );
    }

    pub(super) fn record_mapping(&self, sfid: &str) -> RecordMapping {
        self.record_mappings
            .get()
            .zip(OdetteId::new(sfid).ok())
            .and_then(|(m, k)| m.get(&k).copied())
            .unwrap_or_default()
    }

    /// The partner with this SFID code.
    pub fn partner_by_sfid(&self, sfid: &str) -> Option<&PartnerSecurity> {
        let k = OdetteId::new(sfid).ok()?;
        self.partners.iter().find(|p| p.sfid == k)
    }

    /// Whether `code` is our SFID code.
    pub fn is_local(&self, code: &str) -> bool {
        OdetteId::new(code).is_ok_and(|c| c == self.local_sfid)
    }

    /// A partner certificate for `usage`, checked now (validity period; chain and CRL when
    /// trusted CAs are configured). The error text is ready for an operator.
    pub fn partner_cert(
        &self,
        partner: &PartnerSecurity,
        usage: PartnerCertUse,
    ) -> Result<Certificate, SecurityError> {
        let cert = partner
            .certificate(usage)
            .ok_or_else(|| SecurityError::NoCertificate {
                usage: usage.name(),
                partner: partner.name.clone(),
            })?;
        match self.trust.check(&cert, &[], SystemTime::now()) {
            Ok(TrustStatus::Untrusted(e)) => {
                tracing::warn!(partner = %partner.name, "using untrusted {} certificate: {e}", usage.name());
                Ok(cert)
            }
            Ok(_) => Ok(cert),
            Err(error) => Err(SecurityError::CertificateNotAcceptable {
                usage: usage.name(),
                partner: partner.name.clone(),
                error,
            }),
        }
    }

    /// Whether secure authentication is to be used with the partner with this SSID code, as
    /// initiator (`offered_by_peer` = None) or as responder (`Some(peer's SSIDAUTH)`).
    /// `Err` carries the ESID 12 text when the combination is not allowed.
    pub fn secure_auth_decision(
        &self,
        ssid: &str,
        offered_by_peer: Option<bool>,
    ) -> Result<bool, SecureAuthRefusal> {
        let partner = self.partner_by_ssid(ssid);
        let code = || ssid.to_owned();
        let setting = partner.map_or(SecureAuthentication::Automatic, |p| {
            p.config.secure_authentication
        });
        let capable = partner
            .is_some_and(|p| p.certificate(PartnerCertUse::Authentication).is_some())
            && self
                .identity(CertificateUse::SessionAuthentication)
                .is_some();
        match (setting, offered_by_peer) {
            (SecureAuthentication::Disallowed, Some(true)) => {
                Err(SecureAuthRefusal::NotAllowed(code()))
            }
            (SecureAuthentication::Disallowed, _) => Ok(false),
            (SecureAuthentication::Required, Some(false)) => {
                Err(SecureAuthRefusal::Required(code()))
            }
            (SecureAuthentication::Required, _) if !capable => {
                Err(SecureAuthRefusal::RequiredButIncapable(code()))
            }
            (SecureAuthentication::Required, _) => Ok(true),
            (SecureAuthentication::Automatic, Some(true)) if !capable => {
                Err(SecureAuthRefusal::AskedButIncapable(code()))
            }
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
    ) -> Result<Option<&Certificate>, SecurityError> {
        let partner = self
            .partner_by_sfid(originator)
            .ok_or_else(|| SecurityError::NotAPartner(originator.to_owned()))?;
        if !partner.config.answer_certificate_requests {
            return Ok(None);
        }
        self.own_certificate()
            .map(Some)
            .ok_or(SecurityError::NoLocalCertificate)
    }

    /// The partner whose TLS client certificate `presented` is (see
    /// [`PartnerSecurity::owns_tls_client_certificate`]).
    pub fn tls_client_partner(&self, presented: &Certificate) -> Option<&PartnerSecurity> {
        self.partners
            .iter()
            .find(|p| p.owns_tls_client_certificate(presented))
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
        // (also when a certificate exchange replaces that): see `PartnerSecurity::owns_tls_client_certificate`.
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
        let code = |field: &str, value: &str| {
            OdetteId::new(value)
                .map_err(|e| SecurityConfigError::Invalid(format!("partner {name}: {field}: {e}")))
        };
        let ssid = code("ssid", ssid)?;
        let sfid = if sfid.is_empty() {
            ssid.clone()
        } else {
            code("sfid", sfid)?
        };
        self.ctx.partners.push(PartnerSecurity {
            name: name.to_owned(),
            ssid,
            sfid,
            config: config.clone(),
            certs: RwLock::new(certs),
        });
        Ok(self)
    }

    /// The finished context.
    pub fn build(self) -> SecurityContext {
        self.ctx
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ME, PARTNER};
    use super::*;

    #[test]
    fn partners_and_our_code_are_found_whatever_the_padding_and_case() {
        let work = tempfile::tempdir().unwrap();
        let none = PartnerSecurityConfig::default();
        let ctx = SecurityContext::builder(
            "o0013me  ",
            &LocalSecurityConfig::default(),
            work.path().into(),
        )
        .unwrap()
        .partner("partner", "o0013partner ", "", &none)
        .unwrap()
        .build();
        let p = ctx.partner_by_ssid(PARTNER).unwrap();
        assert_eq!((p.ssid.as_str(), p.sfid.as_str()), (PARTNER, PARTNER));
        assert!(ctx.partner_by_sfid("O0013PARTNER   ").is_some());
        assert!(ctx.partner_by_ssid("O0013OTHER").is_none());
        assert!(ctx.is_local(ME) && ctx.is_local("o0013me ") && !ctx.is_local(PARTNER));
    }

    #[test]
    fn a_partner_code_no_partner_could_send_is_a_configuration_error() {
        let work = tempfile::tempdir().unwrap();
        let none = PartnerSecurityConfig::default();
        let builder = || {
            SecurityContext::builder(ME, &LocalSecurityConfig::default(), work.path().into())
                .unwrap()
        };
        let e = builder()
            .partner("tab", "ACME\tEDI", "", &none)
            .unwrap_err();
        assert!(e.to_string().contains("partner tab: ssid"), "{e}");
        let e = builder()
            .partner("long", PARTNER, "O0013000000ACME-EDI-PROD12", &none)
            .unwrap_err();
        assert!(e.to_string().contains("partner long: sfid"), "{e}");
        let e = SecurityContext::builder(" ", &LocalSecurityConfig::default(), work.path().into())
            .unwrap_err();
        assert!(e.to_string().contains("our SFID code"), "{e}");
    }
}
