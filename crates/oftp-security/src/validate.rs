//! Certificate validation: expiry, chain to trusted CAs, revocation from CRL files and from
//! the certificates' CRL distribution points.
//!
//! Implements the seed's `ValidateCert`/`ValidateRecipientCert`: the certificate must be within
//! its validity period, chain to one of the trusted certificates (a self-signed certificate is
//! accepted only when the policy allows it, or when it is itself listed as trusted, i.e.
//! pinned), and must not be listed in any configured CRL. Chain building and CRL checking use
//! `rustls-webpki`; the extended key usage is not restricted (OFTP certificates carry
//! different EKUs depending on the CA). Certificates signed with SHA-1 are not accepted by
//! `rustls-webpki` and fail with [`ValidationError::BadSignature`].
//!
//! With [`TrustPolicy::fetch_crl_distribution_points`], the end-entity certificate and the
//! intermediates of its chain are also checked against the CRL named by their
//! cRLDistributionPoints extension (`http://` URIs; fetched and cached by [`crate::crldp`]).
//! This happens only after the chain to a trusted CA is verified, so an untrusted certificate
//! never makes us fetch anything. A downloaded CRL counts only when it is issued and signed by
//! the certificate's issuer (webpki verifies it exactly as a CRL file, with the same expiry
//! policy); one that cannot be fetched, is not a CRL, is not signed by the issuer or does not
//! cover the certificate leaves the revocation status *unknown*: the certificate is accepted
//! with a warning ([`TrustStatus::RevocationUnknown`]) unless
//! [`TrustPolicy::require_revocation_check`] is set, which turns it into
//! [`ValidationError::RevocationUnknown`] (subject to `fail_on_untrusted` like every other
//! validation failure). Certificates without distribution points, pinned and self-signed
//! certificates are checked against CRL files only.
//!
//! Limit: the end entity is checked on its own, so a CRL whose issuing distribution point
//! excludes it is noticed (unknown); the intermediates' CRLs are checked together in one pass
//! in which webpki silently skips a CRL whose issuing distribution point excludes the CA
//! (their issuer names are compared beforehand, so a CRL of another CA is still noticed).
//!
//! Fetching blocks the calling thread (up to the fetch timeout): call [`TrustPolicy::check`]
//! and [`TrustPolicy::validate`] from blocking contexts (`spawn_blocking`), never on an async
//! worker thread, when distribution points are enabled.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use webpki::{CertRevocationList, OwnedCertRevocationList};

use crate::cert::{Certificate, unix};
use crate::crldp::{CrlFetchOptions, DpCache, FetchedCrl};
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
    /// Revocation status could not be determined (a CRL distribution point could not be
    /// reached or served no usable CRL) and the policy requires a revocation check.
    #[error("revocation status of certificate {subject:?} is unknown: {reason}")]
    RevocationUnknown {
        /// Subject.
        subject: String,
        /// Why, naming the distribution point.
        reason: String,
    },
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
    /// Expiry and chain passed and no CRL lists the certificate, but a CRL distribution
    /// point could not be used (the reason says which and why), so revocation is unknown;
    /// accepted because the policy does not require a revocation check.
    RevocationUnknown(String),
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
    /// CRLs from distribution points, shared by every clone; `None`: CRL files only.
    distribution_points: Option<Arc<DpCache>>,
    /// An unknown revocation status is a validation failure.
    require_revocation_check: bool,
}

/// Result of the checks before the policy decides what an unknown revocation status means.
enum Revocation {
    /// Every CRL that applies was consulted (or none applies).
    Known,
    /// A distribution point could not be used: why.
    Unknown(String),
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

    /// Also checks revocation against the CRLs named by the certificates' CRL distribution
    /// points (`http://` only), fetched with these limits and cached until their nextUpdate.
    /// The network is used from the calling thread: see the module documentation.
    pub fn fetch_crl_distribution_points(mut self, options: CrlFetchOptions) -> Self {
        self.distribution_points = Some(Arc::new(DpCache::new(options)));
        self
    }

    /// Refuse certificates whose revocation status is unknown because a CRL distribution point
    /// could not be used (default false: accept them with a warning, as the seed does for a
    /// distribution point that cannot be reached). Has an effect only with
    /// [`TrustPolicy::fetch_crl_distribution_points`].
    pub fn require_revocation_check(mut self, require: bool) -> Self {
        self.require_revocation_check = require;
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
        let outcome = self
            .evaluate(cert, intermediates, now)
            .and_then(|r| self.decide_unknown(cert, r));
        match outcome {
            Ok(Revocation::Known) => Ok(TrustStatus::Trusted),
            Ok(Revocation::Unknown(reason)) => Ok(TrustStatus::RevocationUnknown(reason)),
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

    /// Validates `cert` at `now`, using `intermediates` to build the chain. An unknown
    /// revocation status is an error only with [`TrustPolicy::require_revocation_check`]
    /// (otherwise logged as a warning).
    pub fn validate(
        &self,
        cert: &Certificate,
        intermediates: &[Certificate],
        now: SystemTime,
    ) -> Result<(), ValidationError> {
        self.evaluate(cert, intermediates, now)
            .and_then(|r| self.decide_unknown(cert, r))
            .map(|_| ())
    }

    /// Applies `require_revocation_check` to an unknown revocation status (and logs it when
    /// it is tolerated).
    fn decide_unknown(
        &self,
        cert: &Certificate,
        revocation: Revocation,
    ) -> Result<Revocation, ValidationError> {
        match revocation {
            Revocation::Unknown(reason) if self.require_revocation_check => {
                Err(ValidationError::RevocationUnknown {
                    subject: cert.subject().to_string(),
                    reason,
                })
            }
            Revocation::Unknown(reason) => {
                tracing::warn!(
                    subject = cert.subject(),
                    "revocation status unknown, certificate accepted: {reason}"
                );
                Ok(Revocation::Unknown(reason))
            }
            known => Ok(known),
        }
    }

    /// Expiry, chain and CRL checks; distribution point problems come back as
    /// [`Revocation::Unknown`] for the caller to judge.
    fn evaluate(
        &self,
        cert: &Certificate,
        intermediates: &[Certificate],
        now: SystemTime,
    ) -> Result<Revocation, ValidationError> {
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
            // Distribution points are not consulted: there is no trusted issuer to verify
            // their CRL with.
            return self
                .check_crls_by_serial(cert, &crls)
                .map(|()| Revocation::Known);
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
        let time = UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        // The chain check, with `crls` at `depth`; an unknown status passes or not by `status`.
        let verify = |crls: &[&CertRevocationList<'_>], depth, status| {
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &inter,
                time,
                AnyEku,
                self.revocation_options(crls, depth, status),
                None,
            )
        };
        let path = verify(
            &crl_refs,
            webpki::RevocationCheckDepth::Chain,
            webpki::UnknownStatusPolicy::Allow,
        )
        .map_err(|e| map_webpki(e, subject.clone()))?;
        let Some(cache) = &self.distribution_points else {
            return Ok(Revocation::Known);
        };
        // The intermediates webpki actually used, in chain order (issuer of the leaf first).
        let path_intermediates: Vec<&Certificate> = path
            .intermediate_certificates()
            .filter_map(|c| intermediates.iter().find(|i| i.der() == c.der().as_ref()))
            .collect();
        let mut unknown = Vec::new();
        // The end entity: its CRL must cover it (Deny), or its status is unknown.
        if let Some((crl, url)) = self.dp_crl(cache, cert, now, &mut unknown) {
            let list = parse_dp_crl(&crl.der, &subject)?;
            let result = verify(
                &[&list],
                webpki::RevocationCheckDepth::EndEntity,
                webpki::UnknownStatusPolicy::Deny,
            );
            dp_outcome(result, &url, &subject, &mut unknown)?;
        }
        // The intermediates: every CRL their distribution points gave, checked in one pass
        // over the chain (webpki picks each certificate's CRL by issuer name).
        let fetched: Vec<(Arc<FetchedCrl>, String)> = path_intermediates
            .iter()
            .filter_map(|ca| self.dp_crl(cache, ca, now, &mut unknown))
            .collect();
        if !fetched.is_empty() {
            let lists = fetched
                .iter()
                .map(|(crl, _)| parse_dp_crl(&crl.der, &subject))
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&CertRevocationList<'_>> = lists.iter().collect();
            let urls: Vec<&str> = fetched.iter().map(|(_, u)| u.as_str()).collect();
            let result = verify(
                &refs,
                webpki::RevocationCheckDepth::Chain,
                webpki::UnknownStatusPolicy::Allow,
            );
            dp_outcome(result, &urls.join(", "), &subject, &mut unknown)?;
        }
        if unknown.is_empty() {
            Ok(Revocation::Known)
        } else {
            Ok(Revocation::Unknown(unknown.join("; ")))
        }
    }

    /// webpki revocation options for `crls` (none when empty), with this policy's CRL expiry
    /// setting, so CRL files and downloaded CRLs are judged alike.
    fn revocation_options<'a>(
        &self,
        crls: &'a [&'a CertRevocationList<'a>],
        depth: webpki::RevocationCheckDepth,
        status: webpki::UnknownStatusPolicy,
    ) -> Option<webpki::RevocationOptions<'a>> {
        let builder = webpki::RevocationOptionsBuilder::new(crls).ok()?;
        Some(
            builder
                .with_depth(depth)
                .with_status_policy(status)
                .with_expiration_policy(if self.strict_crl_expiry {
                    webpki::ExpirationPolicy::Enforce
                } else {
                    webpki::ExpirationPolicy::Ignore
                })
                .build(),
        )
    }

    /// The CRL of `cert`'s first usable `http://` distribution point (with its URL), or `None`
    /// when it names none or none works; failures are added to `unknown`. Further URIs are
    /// tried only when one fails (CAs list mirrors of one CRL).
    fn dp_crl(
        &self,
        cache: &DpCache,
        cert: &Certificate,
        now: SystemTime,
        unknown: &mut Vec<String>,
    ) -> Option<(Arc<FetchedCrl>, String)> {
        let mut failures = Vec::new();
        for uri in cert.crl_distribution_points() {
            if !uri
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
            {
                tracing::debug!(
                    subject = cert.subject(),
                    uri,
                    "skipping CRL distribution point: only http:// is fetched"
                );
                continue;
            }
            match cache.get(uri, now) {
                Ok(crl) if issued_by_issuer_of(&crl, cert) => {
                    return Some((crl, uri.clone()));
                }
                Ok(_) => failures.push(format!(
                    "the CRL from {uri} was not issued by the certificate's issuer ({})",
                    cert.issuer()
                )),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if !failures.is_empty() {
            unknown.push(format!("{}: {}", cert.subject(), failures.join("; ")));
        }
        None
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

/// The borrowed (cheap) form of a downloaded CRL; every entry was parsed when it was fetched.
fn parse_dp_crl<'a>(
    der: &'a [u8],
    subject: &str,
) -> Result<CertRevocationList<'a>, ValidationError> {
    webpki::BorrowedCertRevocationList::from_der(der)
        .map(CertRevocationList::from)
        .map_err(|e| ValidationError::Other {
            subject: subject.to_string(),
            reason: format!("downloaded CRL unusable: {e:?}"),
        })
}

/// Whether the CRL's issuer name is the certificate's issuer name (webpki's raw issuer is the
/// Name's content; the certificate keeps the whole Name).
fn issued_by_issuer_of(crl: &FetchedCrl, cert: &Certificate) -> bool {
    let issuer = cert.issuer_raw();
    let content = crate::asn1::parse_one(issuer, crate::error::Layer::Signed)
        .map(|t| t.content)
        .unwrap_or(issuer);
    crl.issuer == issuer || crl.issuer == content
}

/// Interprets a verification with downloaded CRLs: revoked is final, a CRL that does not
/// verify or does not cover the certificate leaves the status unknown, anything else is
/// mapped like a CRL file's problem would be.
fn dp_outcome<T>(
    result: Result<T, webpki::Error>,
    urls: &str,
    subject: &str,
    unknown: &mut Vec<String>,
) -> Result<(), ValidationError> {
    use webpki::Error as W;
    match result {
        Ok(_) => Ok(()),
        Err(
            W::InvalidCrlSignatureForPublicKey
            | W::UnsupportedCrlSignatureAlgorithmContext(_)
            | W::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_)
            | W::IssuerNotCrlSigner,
        ) => {
            unknown.push(format!(
                "{subject}: the CRL from {urls} is not signed by the certificate's issuer"
            ));
            Ok(())
        }
        Err(W::UnknownRevocationStatus) => {
            unknown.push(format!(
                "{subject}: the CRL from {urls} does not cover this certificate \
                 (issuing distribution point scope)"
            ));
            Ok(())
        }
        Err(e) => Err(map_webpki(e, subject.to_string())),
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
