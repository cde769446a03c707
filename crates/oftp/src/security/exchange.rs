//! Certificate exchange through the reserved virtual file names ODETTE_CERTIFICATE_REQUEST,
//! _REPLACE and _DELIVER ([`CertificateExchange`]), and the store of certificates received
//! that way: each kept as `<store_dir>/<partner>/<sha256>.pem`, a replacement the partner's
//! policy accepts also as `<store_dir>/<partner>/current.pem`, which the next start applies
//! again ([`SecurityContextBuilder::restore_replaced_certificates`]). Files are written
//! through `durable-write`: a failed write leaves no temporary file and no partial
//! certificate. A trusted certificate is never replaced silently.
//!
//! Not here: sending the exchange files and answering a request (the connection driver and
//! `OutgoingFile::certificate_exchange`), opening the file's services (`inbound.rs`).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oftp_security::{Certificate, TrustStatus};

use super::config::SecurityConfigError;
use super::context::{SecurityContext, SecurityContextBuilder};
use super::error::SecurityError;

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
        match name.trim_end().to_ascii_uppercase().as_str() {
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
    ) -> Result<ReceivedCertificate, SecurityError> {
        let mut bytes = Vec::new();
        File::open(file)
            .and_then(|f| f.take(4 * 1024 * 1024).read_to_end(&mut bytes))
            .map_err(|error| SecurityError::CannotReadExchange {
                path: file.to_owned(),
                error,
            })?;
        let mut certs = Certificate::all_from_pem_or_der(&bytes).unwrap_or_default();
        if certs.is_empty() {
            let reader = oftp_security::cms::SignedDataReader::new(&bytes[..])
                .map_err(|e| SecurityError::NoExchangeCertificate(Some(e)))?;
            certs = reader.certificates().to_vec();
        }
        let certificate = certs
            .iter()
            .find(|c| !c.is_ca())
            .or(certs.first())
            .cloned()
            .ok_or(SecurityError::NoExchangeCertificate(None))?;
        let status = self
            .trust
            .check(&certificate, &certs, SystemTime::now())
            .map_err(|e| e.to_string());
        let partner = self.partner_by_sfid(originator);
        let dir = store_dir.join(partner.map_or_else(
            || crate::store::sanitize_file_name(originator).unwrap_or_else(|_| "unknown".into()),
            |p| partner_folder(&p.name),
        ));
        let stored = dir.join(format!("{}.pem", certificate.thumbprint_sha256_hex()));
        let pem = certificate.to_pem();
        durable_write::write(&stored, pem.as_bytes()).map_err(|e| {
            SecurityError::CannotStoreCertificate {
                path: stored.clone(),
                error: e.source,
            }
        })?;
        let mut replaced = false;
        if let Some(p) = partner
            && kind == CertificateExchange::Replace
            && p.config.accept_certificate_replace
            && signed_by_partner
            && status.is_ok()
        {
            p.replace_certificates(&certificate);
            replaced = true;
            // Remembered across restarts (see `SecurityContextBuilder::restore_replaced_certificates`).
            let current = dir.join(CURRENT_CERTIFICATE);
            if let Err(e) = durable_write::write(&current, pem.as_bytes()) {
                tracing::warn!(partner = %p.name, "cannot record the replaced certificate in {}: {}", current.display(), e.source);
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

/// File name of a partner's certificate that replaced the configured one.
const CURRENT_CERTIFICATE: &str = "current.pem";

/// The folder of a configured partner's certificates in the store.
fn partner_folder(name: &str) -> String {
    crate::store::sanitize_file_name(name).unwrap_or_else(|_| "partner".into())
}

impl SecurityContextBuilder {
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
            let current = store_dir
                .join(partner_folder(&p.name))
                .join(CURRENT_CERTIFICATE);
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
            p.replace_certificates(&cert);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{PARTNER, context, entries};
    use super::*;
    use crate::security::PartnerSecurityConfig;

    /// A partner that may replace its certificate, a certificate file from it, the store.
    fn setup(dir: &Path) -> (SecurityContext, PathBuf, Certificate, PathBuf) {
        let pki = oftp_test_pki::Pki::new();
        let leaf = pki.leaf("Partner Next", 9, false);
        let file = dir.join("exchange");
        std::fs::write(&file, &leaf.cert_pem).unwrap();
        let policy = PartnerSecurityConfig {
            accept_certificate_replace: true,
            ..PartnerSecurityConfig::default()
        };
        let certificate = Certificate::load(&leaf.cert).unwrap();
        (
            context(dir, &policy),
            file,
            certificate,
            dir.join("certificates"),
        )
    }

    #[test]
    fn a_certificate_that_cannot_be_stored_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, file, certificate, store) = setup(dir.path());
        let name = format!("{}.pem", certificate.thumbprint_sha256_hex());
        // Its name is taken by a folder that is not empty: the rename fails.
        std::fs::create_dir_all(store.join("partner").join(&name).join("inside")).unwrap();
        let e = ctx
            .receive_certificate(PARTNER, CertificateExchange::Deliver, &file, &store, false)
            .unwrap_err();
        assert!(e.to_string().starts_with("cannot store "), "{e}");
        assert_eq!(entries(&store.join("partner")), [name]);
    }

    #[test]
    fn a_replacement_that_cannot_be_recorded_is_used_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, file, certificate, store) = setup(dir.path());
        let folder = store.join("partner");
        std::fs::create_dir_all(folder.join(CURRENT_CERTIFICATE).join("inside")).unwrap();
        let got = ctx
            .receive_certificate(PARTNER, CertificateExchange::Replace, &file, &store, true)
            .unwrap();
        assert!(got.replaced);
        let mut expected = [
            CURRENT_CERTIFICATE.to_owned(),
            format!("{}.pem", certificate.thumbprint_sha256_hex()),
        ];
        expected.sort();
        assert_eq!(entries(&folder), expected);
        assert_eq!(
            std::fs::read_to_string(&got.stored).unwrap(),
            certificate.to_pem()
        );
    }
}
