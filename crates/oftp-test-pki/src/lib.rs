//! Test support for the OFTP security tests (oftp-security, oftp): a CA and leaf certificates
//! made with rcgen in a tempdir, CRLs, and a runner for the `openssl` command used as an
//! independent implementation. Panics on failure, as test helpers do; never used by shipped code.
#![allow(missing_docs)]
// `Pki::new()` generates keys and a CA in a fresh temp dir; a `Default` would hide that cost.
#![allow(clippy::new_without_default)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber, date_time_ymd,
};

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: u64,
}

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub ca: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "Test OFTP CA");
        p.distinguished_name
            .push(DnType::OrganizationName, "Odette Test");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2045, 1, 1);
        let ca_cert = p.self_signed(&ca_key).unwrap();
        let ca_pem = ca_cert.pem();
        let ca = write(dir.path(), "ca.pem", &ca_pem);
        Pki {
            dir,
            ca_pem,
            ca,
            ca_params: p,
            ca_key,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An intermediate CA issued by this CA; its leaves chain through it.
    pub fn intermediate(&self, cn: &str) -> Pki {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2044, 1, 1);
        p.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = cert.pem();
        let ca = write(dir.path(), "intermediate.pem", &ca_pem);
        Pki {
            dir,
            ca_pem,
            ca,
            ca_params: p,
            ca_key: key,
        }
    }

    /// A leaf issued by the CA, valid 2020-2040 unless `expired`.
    pub fn leaf(&self, cn: &str, serial: u64, expired: bool) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut p = CertificateParams::new(vec![format!("{}.example", cn.to_lowercase())]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, "ACME");
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = if expired {
            date_time_ymd(2021, 1, 1)
        } else {
            date_time_ymd(2040, 1, 1)
        };
        p.use_authority_key_identifier_extension = true;
        // Writes basicConstraints CA:FALSE and a subjectKeyIdentifier (needed for `-keyid`).
        p.is_ca = IsCa::ExplicitNoCa;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let slug = cn.replace(' ', "_");
        Leaf {
            cert: write(self.dir.path(), &format!("{slug}.pem"), &cert_pem),
            key: write(self.dir.path(), &format!("{slug}.key"), &key_pem),
            cert_pem,
            key_pem,
            serial,
        }
    }

    /// A CRL from the CA revoking `serials` (DER), written to `crl.der`.
    pub fn crl(&self, serials: &[u64]) -> PathBuf {
        let params = rcgen::CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2044, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let crl = params.signed_by(&issuer).unwrap();
        let p = self.path("crl.der");
        std::fs::write(&p, crl.der()).unwrap();
        p
    }
}

pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// Runs `openssl` with the given arguments; panics with stderr on failure.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Like [`openssl`] but returns whether it succeeded.
pub fn openssl_ok(args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
