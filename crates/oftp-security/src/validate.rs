//! Certificate validation: expiry, chain to trusted CAs, revocation from CRL files.
//!
//! Implements the seed's `ValidateCert`/`ValidateRecipientCert`: the certificate must be within
//! its validity period, chain to one of the trusted certificates (a self-signed certificate is
//! accepted only when the policy allows it, or when it is itself listed as trusted, i.e.
//! pinned), and must not be listed in any configured CRL. Chain building and CRL checking use
//! `rustls-webpki`; the extended key usage is not restricted (OFTP certificates carry
//! different EKUs depending on the CA). Certificates signed with SHA-1 are not accepted by
//! `rustls-webpki` and fail with [`ValidationError::BadSignature`].
//!
//! This module does not fetch CRLs from distribution points (no networking); the operator
//! supplies CRL files.

use std::path::Path;
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use webpki::{CertRevocationList, OwnedCertRevocationList};

use crate::cert::{Certificate, unix};
use crate::error::{Error, Result};

/// Why a certificate is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The certificate expired.
    #[error("certificate {subject:?} expired (not after {not_after} UNIX time)")]
    Expired {
        /// Subject of the expired certificate.
        subject: String,
        /// End of validity, UNIX seconds.
        not_after: i64,
    },
    /// The certificate is not valid yet.
    #[error("certificate {subject:?} is not valid before {not_before} (UNIX time)")]
    NotYetValid {
        /// Subject.
        subject: String,
        /// Start of validity, UNIX seconds.
        not_before: i64,
    },
    /// Self-signed, not pinned, and the policy does not allow self-signed certificates.
    #[error("certificate {0:?} is self-signed and self-signed certificates are not allowed")]
    SelfSignedNotAllowed(String),
    /// No chain to a trusted certificate.
    #[error("certificate {0:?} was not issued by a trusted CA")]
    UnknownIssuer(String),
    /// Listed as revoked in a CRL.
    #[error("certificate {0:?} is revoked")]
    Revoked(String),
    /// A signature in the chain (or on a CRL) is invalid or uses an unsupported algorithm.
    #[error("bad or unsupported signature in the chain of {0:?}")]
    BadSignature(String),
    /// Any other reason reported by the path validator.
    #[error("certificate {subject:?} rejected: {reason}")]
    Other {
        /// Subject.
        subject: String,
        /// Reason from the validator.
        reason: String,
    },
}

/// Outcome of [`TrustPolicy::check`], the seed's `ValidateCert` with `FailOnUntrustedCert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustStatus {
    /// All checks passed.
    Trusted,
    /// No trusted certificates are configured, so nothing was checked (the seed's default:
    /// "if trusted CA certificates are not imported no validation will occur"); expiry is
    /// still reported as an error.
    NotChecked,
    /// Validation failed but the policy does not fail on untrusted certificates.
    Untrusted(ValidationError),
}

/// What to check and against what.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    trusted: Vec<Certificate>,
    crls: Vec<Vec<u8>>,
    allow_self_signed: bool,
    /// Treat an expired CRL as an error instead of using it anyway.
    strict_crl_expiry: bool,
    /// `FailOnUntrustedCert = false`.
    tolerate_untrusted: bool,
}

impl TrustPolicy {
    /// An empty policy: nothing is trusted, self-signed certificates refused.
    pub fn new() -> Self {
        TrustPolicy::default()
    }

    /// Adds trusted CA (or pinned partner) certificates.
    pub fn trust(mut self, certs: impl IntoIterator<Item = Certificate>) -> Self {
        self.trusted.extend(certs);
        self
    }

    /// Loads trusted certificates from a PEM bundle or DER file.
    pub fn trust_file(self, path: impl AsRef<Path>) -> Result<Self> {
        Ok(self.trust(Certificate::load_all(path)?))
    }

    /// Adds a CRL (DER or PEM). It is checked for syntax now.
    pub fn add_crl(mut self, crl: &[u8]) -> Result<Self> {
        let der = if crl.windows(10).any(|w| w == b"-----BEGIN") {
            CertificateRevocationListDer::from_pem_slice(crl)
                .map_err(|e| Error::load("CRL", e))?
                .to_vec()
        } else {
            crl.to_vec()
        };
        OwnedCertRevocationList::from_der(&der)
            .map_err(|e| Error::load("CRL", format!("{e:?}")))?;
        self.crls.push(der);
        Ok(self)
    }

    /// Loads a CRL file (DER or PEM).
    pub fn add_crl_file(self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::load(path.display().to_string(), e))?;
        self.add_crl(&bytes)
    }

    /// Accept self-signed certificates without a trusted issuer (the seed's default behaviour:
    /// "if the certificate is self-signed this step is skipped").
    pub fn allow_self_signed(mut self, allow: bool) -> Self {
        self.allow_self_signed = allow;
        self
    }

    /// Whether [`TrustPolicy::check`] fails on an untrusted certificate (default) or reports
    /// [`TrustStatus::Untrusted`] (the seed's `FailOnUntrustedCert=false`).
    pub fn fail_on_untrusted(mut self, fail: bool) -> Self {
        self.tolerate_untrusted = !fail;
        self
    }

    /// Checks a certificate as the seed's `ValidateCert` does: always the validity period;
    /// chain and revocation only when trusted certificates are configured.
    pub fn check(
        &self,
        cert: &Certificate,
        intermediates: &[Certificate],
        now: SystemTime,
    ) -> Result<TrustStatus, ValidationError> {
        if self.trusted.is_empty() && !self.allow_self_signed {
            let t = unix(now);
            if t > unix(cert.not_after()) {
                return Err(ValidationError::Expired {
                    subject: cert.subject().to_string(),
                    not_after: unix(cert.not_after()),
                });
            }
            if t < unix(cert.not_before()) {
                return Err(ValidationError::NotYetValid {
                    subject: cert.subject().to_string(),
                    not_before: unix(cert.not_before()),
                });
            }
            return Ok(TrustStatus::NotChecked);
        }
        match self.validate(cert, intermediates, now) {
            Ok(()) => Ok(TrustStatus::Trusted),
            Err(e) if self.tolerate_untrusted => {
                tracing::warn!(
                    subject = cert.subject(),
                    "untrusted certificate accepted by policy: {e}"
                );
                Ok(TrustStatus::Untrusted(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Reject certificates when a CRL's nextUpdate has passed (default: use the stale CRL).
    pub fn strict_crl_expiry(mut self, strict: bool) -> Self {
        self.strict_crl_expiry = strict;
        self
    }

    /// Validates `cert` at `now`, using `intermediates` to build the chain.
    pub fn validate(
        &self,
        cert: &Certificate,
        intermediates: &[Certificate],
        now: SystemTime,
    ) -> Result<(), ValidationError> {
        let subject = cert.subject().to_string();
        let t = unix(now);
        if t > unix(cert.not_after()) {
            return Err(ValidationError::Expired {
                subject,
                not_after: unix(cert.not_after()),
            });
        }
        if t < unix(cert.not_before()) {
            return Err(ValidationError::NotYetValid {
                subject,
                not_before: unix(cert.not_before()),
            });
        }
        let crls = self
            .crls
            .iter()
            .map(|d| OwnedCertRevocationList::from_der(d).map(CertRevocationList::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ValidationError::Other {
                subject: subject.clone(),
                reason: format!("CRL unusable: {e:?}"),
            })?;
        let pinned = self.trusted.iter().any(|c| c == cert);
        if pinned || (cert.is_self_issued() && !cert.is_ca()) {
            if !pinned && !self.allow_self_signed {
                return Err(ValidationError::SelfSignedNotAllowed(subject));
            }
            // A pinned or accepted self-signed certificate has no issuer to check; a CRL from
            // its own key could still list it, which webpki cannot express, so check serials.
            return self.check_crls_by_serial(cert, &crls);
        }
        let ee_der = CertificateDer::from(cert.der());
        let ee = webpki::EndEntityCert::try_from(&ee_der).map_err(|e| ValidationError::Other {
            subject: subject.clone(),
            reason: format!("{e:?}"),
        })?;
        let anchor_ders: Vec<CertificateDer<'_>> = self
            .trusted
            .iter()
            .map(|c| CertificateDer::from(c.der()))
            .collect();
        let anchors = anchor_ders
            .iter()
            .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
            .collect::<Vec<_>>();
        let inter: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.der()))
            .collect();
        let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = if crl_refs.is_empty() {
            None
        } else {
            let b = webpki::RevocationOptionsBuilder::new(&crl_refs)
                .map_err(|_| ValidationError::Other {
                    subject: subject.clone(),
                    reason: "no CRL".into(),
                })?
                .with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .with_expiration_policy(if self.strict_crl_expiry {
                    webpki::ExpirationPolicy::Enforce
                } else {
                    webpki::ExpirationPolicy::Ignore
                });
            Some(b.build())
        };
        let time = UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &inter,
            time,
            AnyEku,
            revocation,
            None,
        )
        .map(|_| ())
        .map_err(|e| map_webpki(e, subject))
    }

    fn check_crls_by_serial(
        &self,
        cert: &Certificate,
        crls: &[CertRevocationList<'_>],
    ) -> Result<(), ValidationError> {
        for crl in crls {
            if let Ok(Some(_)) = crl.find_serial(cert.serial_raw()) {
                let issuer = cert.issuer_raw();
                let content = crate::asn1::parse_one(issuer, crate::error::Layer::Signed)
                    .map(|t| t.content)
                    .unwrap_or(issuer);
                if crl.issuer() == issuer || crl.issuer() == content {
                    return Err(ValidationError::Revoked(cert.subject().to_string()));
                }
            }
        }
        Ok(())
    }
}

/// OFTP places no requirement on the extended key usage.
struct AnyEku;

impl webpki::ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, _iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

fn map_webpki(e: webpki::Error, subject: String) -> ValidationError {
    use webpki::Error as W;
    match e {
        W::CertRevoked => ValidationError::Revoked(subject),
        W::UnknownIssuer => ValidationError::UnknownIssuer(subject),
        W::CertExpired { not_after, .. } => ValidationError::Expired {
            subject,
            not_after: not_after.as_secs() as i64,
        },
        W::CertNotValidYet { not_before, .. } => ValidationError::NotYetValid {
            subject,
            not_before: not_before.as_secs() as i64,
        },
        W::InvalidSignatureForPublicKey
        | W::InvalidCrlSignatureForPublicKey
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | W::UnsupportedCrlSignatureAlgorithmContext(_)
        | W::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => {
            ValidationError::BadSignature(subject)
        }
        other => ValidationError::Other {
            subject,
            reason: format!("{other:?}"),
        },
    }
}
