//! Certificates, private keys and identities: loading and selection.
//!
//! Loads X.509 certificates from PEM or DER, RSA private keys from PEM/DER (PKCS#1 and
//! PKCS#8), and certificate + key pairs from PKCS#12 files (modern PBES2/AES files written by
//! OpenSSL 3 and legacy 3DES/RC2 ones, via `p12-keystore`; the older `p12` crate fails on
//! OpenSSL 3 files). Certificates are parsed once with `x509-parser` and expose the fields of
//! the seed's Certificate type (subject, issuer, serial, validity, key algorithm and length,
//! key usage, thumbprints). Only RSA keys are usable for OFTP file services (every cipher suite
//! is RSA); other key types load but are refused when used.
//!
//! Validation (expiry, chain, revocation) lives in [`crate::validate`].

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::{Pkcs1PrivateDecryptingKey, PrivateDecryptingKey, PublicEncryptingKey};
use aws_lc_rs::signature::RsaKeyPair;
use rustls_pki_types::pem::{PemObject, SectionKind};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::asn1::{self, oid, tag};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::suite::HashAlgorithm;

/// Key usage bits of a certificate (RFC 5280 4.2.1.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// digitalSignature
    pub digital_signature: bool,
    /// nonRepudiation (contentCommitment)
    pub non_repudiation: bool,
    /// keyEncipherment
    pub key_encipherment: bool,
    /// dataEncipherment
    pub data_encipherment: bool,
    /// keyAgreement
    pub key_agreement: bool,
    /// keyCertSign
    pub key_cert_sign: bool,
    /// cRLSign
    pub crl_sign: bool,
}

/// An X.509 certificate with its fields parsed.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    subject: String,
    issuer: String,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    serial: Vec<u8>,
    not_before: i64,
    not_after: i64,
    public_key_algorithm: String,
    public_key_bits: usize,
    rsa_public_key: Option<Vec<u8>>,
    spki: Vec<u8>,
    signature_algorithm: String,
    key_usage: Option<KeyUsage>,
    extended_key_usage: Vec<String>,
    subject_alt_names: Vec<String>,
    subject_key_id: Option<Vec<u8>>,
    crl_distribution_points: Vec<String>,
    is_ca: bool,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("serial", &self.serial_number())
            .field("sha1", &self.thumbprint_sha1_hex())
            .finish()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}
impl Eq for Certificate {}

fn name_of(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_string)
        .unwrap_or_else(|_| oid.to_id_string())
}

impl Certificate {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (rest, c) = X509Certificate::from_der(der).map_err(|e| {
            Error::load("certificate", format!("not a valid X.509 certificate: {e}"))
        })?;
        if !rest.is_empty() {
            return Err(Error::load(
                "certificate",
                "trailing bytes after certificate",
            ));
        }
        let der = der[..der.len() - rest.len()].to_vec();
        let spki = c.public_key();
        let is_rsa = spki.algorithm.algorithm.as_bytes() == oid::RSA_ENCRYPTION;
        let (rsa_public_key, public_key_bits, public_key_algorithm) = if is_rsa {
            let key = PublicEncryptingKey::from_der(spki.raw)
                .map_err(|e| Error::load("certificate", format!("bad RSA public key: {e}")))?;
            (
                Some(spki.subject_public_key.data.to_vec()),
                key.key_size_bits(),
                "RSA".to_string(),
            )
        } else {
            let bits = spki.parsed().map(|k| k.key_size()).unwrap_or(0);
            (None, bits, name_of(&spki.algorithm.algorithm))
        };
        let key_usage = match c.key_usage() {
            Ok(Some(ku)) => {
                let k = ku.value;
                Some(KeyUsage {
                    digital_signature: k.digital_signature(),
                    non_repudiation: k.non_repudiation(),
                    key_encipherment: k.key_encipherment(),
                    data_encipherment: k.data_encipherment(),
                    key_agreement: k.key_agreement(),
                    key_cert_sign: k.key_cert_sign(),
                    crl_sign: k.crl_sign(),
                })
            }
            _ => None,
        };
        let mut extended_key_usage = Vec::new();
        if let Ok(Some(eku)) = c.extended_key_usage() {
            let e = eku.value;
            for (set, id) in [
                (e.any, "2.5.29.37.0"),
                (e.server_auth, "1.3.6.1.5.5.7.3.1"),
                (e.client_auth, "1.3.6.1.5.5.7.3.2"),
                (e.code_signing, "1.3.6.1.5.5.7.3.3"),
                (e.email_protection, "1.3.6.1.5.5.7.3.4"),
                (e.time_stamping, "1.3.6.1.5.5.7.3.8"),
                (e.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
            ] {
                if set {
                    extended_key_usage.push(id.to_string());
                }
            }
            extended_key_usage.extend(e.other.iter().map(|o| o.to_id_string()));
        }
        let mut subject_alt_names = Vec::new();
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(s) => subject_alt_names.push(format!("DNS:{s}")),
                    GeneralName::RFC822Name(s) => subject_alt_names.push(format!("email:{s}")),
                    GeneralName::URI(s) => subject_alt_names.push(format!("URI:{s}")),
                    GeneralName::IPAddress(b) => {
                        subject_alt_names.push(format!("IP:{}", hex::encode(b)))
                    }
                    GeneralName::DirectoryName(d) => subject_alt_names.push(format!("DirName:{d}")),
                    _ => {}
                }
            }
        }
        let subject_key_id = c
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        let crl_distribution_points = crl_distribution_point_uris(&c);
        Ok(Certificate {
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            subject_raw: c.subject().as_raw().to_vec(),
            issuer_raw: c.issuer().as_raw().to_vec(),
            serial: c.raw_serial().to_vec(),
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            public_key_algorithm,
            public_key_bits,
            rsa_public_key,
            spki: spki.raw.to_vec(),
            signature_algorithm: name_of(&c.signature_algorithm.algorithm),
            key_usage,
            extended_key_usage,
            subject_alt_names,
            subject_key_id,
            crl_distribution_points,
            is_ca: c.is_ca(),
            der,
        })
    }

    /// Parses the first `CERTIFICATE` block of a PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let der = rustls_pki_types::CertificateDer::from_pem_slice(pem)
            .map_err(|e| Error::load("PEM certificate", e))?;
        Certificate::from_der(&der)
    }

    /// Parses PEM or DER, whichever the bytes are.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        if looks_like_pem(bytes) {
            Certificate::from_pem(bytes)
        } else {
            Certificate::from_der(bytes)
        }
    }

    /// Loads a certificate file (PEM or DER).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        Certificate::from_pem_or_der(&bytes).map_err(|e| relabel(e, path))
    }

    /// Loads every certificate of a file: all PEM `CERTIFICATE` blocks, or one DER certificate.
    pub fn load_all(path: impl AsRef<Path>) -> Result<Vec<Self>> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        Certificate::all_from_pem_or_der(&bytes).map_err(|e| relabel(e, path))
    }

    /// All certificates of a PEM bundle, or one DER certificate.
    pub fn all_from_pem_or_der(bytes: &[u8]) -> Result<Vec<Self>> {
        if !looks_like_pem(bytes) {
            return Ok(vec![Certificate::from_der(bytes)?]);
        }
        let mut out = Vec::new();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(bytes) {
            let c = c.map_err(|e| Error::load("PEM certificate bundle", e))?;
            out.push(Certificate::from_der(&c)?);
        }
        if out.is_empty() {
            return Err(Error::load(
                "PEM certificate bundle",
                "no CERTIFICATE block found",
            ));
        }
        Ok(out)
    }

    /// DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM encoding.
    pub fn to_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// Subject distinguished name, e.g. `CN=ACME OFTP, O=ACME, C=DE`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Issuer distinguished name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Serial number as hex digits, one pair per byte.
    pub fn serial_number(&self) -> String {
        hex::encode_upper(&self.serial)
    }

    /// Start of validity (the seed's EffectiveDate).
    pub fn not_before(&self) -> SystemTime {
        to_system_time(self.not_before)
    }

    /// End of validity (the seed's ExpirationDate).
    pub fn not_after(&self) -> SystemTime {
        to_system_time(self.not_after)
    }

    /// `"RSA"` or the name/OID of another public key algorithm.
    pub fn public_key_algorithm(&self) -> &str {
        &self.public_key_algorithm
    }

    /// The public key as DER `SubjectPublicKeyInfo`.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// The public key as PEM (`PUBLIC KEY`), the seed's PublicKey field.
    pub fn public_key_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki)
    }

    /// Public key length in bits (e.g. 2048).
    pub fn public_key_bits(&self) -> usize {
        self.public_key_bits
    }

    /// Signature algorithm of the certificate (e.g. `RSA-SHA256`).
    pub fn signature_algorithm(&self) -> &str {
        &self.signature_algorithm
    }

    /// Key usage extension, if present.
    pub fn key_usage(&self) -> Option<KeyUsage> {
        self.key_usage
    }

    /// Extended key usage OIDs in dotted form.
    pub fn extended_key_usage(&self) -> &[String] {
        &self.extended_key_usage
    }

    /// Subject alternative names (`DNS:...`, `email:...`, `URI:...`).
    pub fn subject_alt_names(&self) -> &[String] {
        &self.subject_alt_names
    }

    /// URIs of the cRLDistributionPoints extension (RFC 5280 4.2.1.13), in certificate order:
    /// `http://...`, `ldap://...` or whatever the CA wrote. Distribution points named relative
    /// to the CRL issuer carry no URI and are not listed.
    pub fn crl_distribution_points(&self) -> &[String] {
        &self.crl_distribution_points
    }

    /// Whether the basic constraints mark this certificate as a CA.
    pub fn is_ca(&self) -> bool {
        self.is_ca
    }

    /// Whether subject and issuer are the same name.
    pub fn is_self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// SHA-1 over the DER encoding (the seed's ThumbprintSHA1).
    pub fn thumbprint_sha1(&self) -> Vec<u8> {
        HashAlgorithm::Sha1.digest(&self.der)
    }

    /// SHA-256 over the DER encoding.
    pub fn thumbprint_sha256(&self) -> Vec<u8> {
        HashAlgorithm::Sha256.digest(&self.der)
    }

    /// Hex SHA-1 thumbprint (lower case, no separators).
    pub fn thumbprint_sha1_hex(&self) -> String {
        hex::encode(self.thumbprint_sha1())
    }

    /// Hex SHA-256 thumbprint.
    pub fn thumbprint_sha256_hex(&self) -> String {
        hex::encode(self.thumbprint_sha256())
    }

    /// Whether the certificate is valid at `now` (not before/not after only).
    pub fn is_time_valid(&self, now: SystemTime) -> bool {
        let t = unix(now);
        self.not_before <= t && t <= self.not_after
    }

    pub(crate) fn rsa_public_key(&self) -> Result<&[u8]> {
        self.rsa_public_key.as_deref().ok_or_else(|| {
            Error::UnusableCertificate(format!(
                "{}: key algorithm {} is not RSA (all OFTP cipher suites use RSA)",
                self.subject, self.public_key_algorithm
            ))
        })
    }

    pub(crate) fn issuer_raw(&self) -> &[u8] {
        &self.issuer_raw
    }

    pub(crate) fn serial_raw(&self) -> &[u8] {
        &self.serial
    }

    /// Subject key identifier extension value, if present.
    pub fn subject_key_id(&self) -> Option<&[u8]> {
        self.subject_key_id.as_deref()
    }

    /// CMS `IssuerAndSerialNumber` for this certificate (DER).
    pub(crate) fn issuer_and_serial(&self) -> Vec<u8> {
        asn1::seq(&[&self.issuer_raw, &asn1::tlv(tag::INTEGER, &self.serial)])
    }

    /// Whether a CMS signer/recipient identifier (`IssuerAndSerialNumber` or `[0]`
    /// subjectKeyIdentifier, as BER) designates this certificate.
    pub(crate) fn matches_identifier(&self, id: &asn1::Tlv<'_>) -> bool {
        let layer = crate::error::Layer::Signed;
        match id.tag {
            tag::SEQUENCE => {
                let mut c = id.children(layer);
                let (Ok(issuer), Ok(serial)) = (c.need("issuer"), c.need("serial")) else {
                    return false;
                };
                let issuer_der = asn1::to_definite(&issuer, layer).unwrap_or_default();
                issuer_der == self.issuer_raw && serial.content == self.serial.as_slice()
            }
            tag::CTX0_P | 0xA0 => match (id.octets(layer), &self.subject_key_id) {
                (Ok(k), Some(ski)) => &k == ski,
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether this certificate matches a selector.
    pub fn matches(&self, selector: &CertSelector) -> bool {
        match selector {
            CertSelector::Any => true,
            CertSelector::SubjectContains(s) => {
                self.subject.to_lowercase().contains(&s.to_lowercase())
            }
            CertSelector::Sha1(h) => self.thumbprint_sha1() == *h,
            CertSelector::Sha256(h) => self.thumbprint_sha256() == *h,
        }
    }
}

/// The full-name URIs of every distribution point of the certificate's cRLDistributionPoints
/// extension; an unparsable extension yields none (revocation checking then relies on CRL files).
fn crl_distribution_point_uris(c: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::DistributionPointName;
    let mut out = Vec::new();
    for ext in c.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(uri) = name {
                            out.push((*uri).to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// A certificate time (UNIX seconds) as `SystemTime`; one beyond what the platform's clock
/// can represent becomes the epoch, which makes the certificate look expired, never valid.
fn to_system_time(t: i64) -> SystemTime {
    let d = Duration::from_secs(t.unsigned_abs());
    if t >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    }
    .unwrap_or(UNIX_EPOCH)
}

pub(crate) fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::load(path.display().to_string(), e))
}

fn relabel(e: Error, path: &Path) -> Error {
    match e {
        Error::Load { detail, .. } => Error::Load {
            what: path.display().to_string(),
            detail,
        },
        other => other,
    }
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// How to pick a certificate from a store: the seed's `CertSubject` semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSelector {
    /// `*`: the first certificate (with a private key, for identities).
    Any,
    /// Case-insensitive substring of the subject DN.
    SubjectContains(String),
    /// SHA-1 thumbprint.
    Sha1(Vec<u8>),
    /// SHA-256 thumbprint.
    Sha256(Vec<u8>),
}

impl CertSelector {
    /// Parses `*`, a 40/64 hex-digit thumbprint (colons and spaces allowed), or a subject
    /// substring.
    pub fn parse(s: &str) -> Self {
        let t = s.trim();
        if t.is_empty() || t == "*" {
            return CertSelector::Any;
        }
        let compact: String = t.chars().filter(|c| *c != ':' && *c != ' ').collect();
        if compact.chars().all(|c| c.is_ascii_hexdigit())
            && let Ok(bytes) = hex::decode(&compact)
        {
            match bytes.len() {
                20 => return CertSelector::Sha1(bytes),
                32 => return CertSelector::Sha256(bytes),
                _ => {}
            }
        }
        CertSelector::SubjectContains(t.to_string())
    }
}

impl fmt::Display for CertSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertSelector::Any => f.write_str("*"),
            CertSelector::SubjectContains(s) => write!(f, "subject containing {s:?}"),
            CertSelector::Sha1(h) => write!(f, "SHA-1 thumbprint {}", hex::encode(h)),
            CertSelector::Sha256(h) => write!(f, "SHA-256 thumbprint {}", hex::encode(h)),
        }
    }
}

/// An RSA private key.
///
/// Decryption and SHA-2 signatures use aws-lc-rs (constant time). RSA-SHA1 signatures (suites
/// 01/02), which aws-lc-rs refuses to create, use the `rsa` crate; that crate is never used to
/// decrypt (RUSTSEC-2023-0071).
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    signer: RsaKeyPair,
    decrypter: Pkcs1PrivateDecryptingKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("bits", &(self.signer.public_modulus_len() * 8))
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Parses an unencrypted PKCS#8 `PrivateKeyInfo` (RSA).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let signer = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| Error::load("private key", format!("not an RSA PKCS#8 key: {e}")))?;
        let dk = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|e| Error::load("private key", format!("not an RSA PKCS#8 key: {e}")))?;
        let decrypter = Pkcs1PrivateDecryptingKey::new(dk)
            .map_err(|_| Error::load("private key", "RSA key unusable for decryption"))?;
        Ok(PrivateKey {
            pkcs8: Zeroizing::new(der.to_vec()),
            signer,
            decrypter,
        })
    }

    /// Parses a PKCS#1 `RSAPrivateKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self> {
        // Wrap in PKCS#8 so one code path serves both encodings.
        let alg = asn1::alg_id_null(oid::RSA_ENCRYPTION);
        let pkcs8 = Zeroizing::new(asn1::seq(&[
            &asn1::small_int(0),
            &alg,
            &asn1::tlv(tag::OCTET_STRING, der),
        ]));
        PrivateKey::from_pkcs8_der(&pkcs8)
    }

    /// Parses the first private key block of a PEM text (`PRIVATE KEY` or `RSA PRIVATE KEY`).
    /// For `ENCRYPTED PRIVATE KEY` use [`PrivateKey::from_pem_with_password`].
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = item.map_err(|e| Error::load("PEM private key", e))?;
            let der = Zeroizing::new(der);
            match kind {
                SectionKind::PrivateKey => return PrivateKey::from_pkcs8_der(&der),
                SectionKind::RsaPrivateKey => return PrivateKey::from_pkcs1_der(&der),
                SectionKind::EcPrivateKey => {
                    return Err(Error::load(
                        "PEM private key",
                        "EC keys cannot be used: OFTP cipher suites require RSA",
                    ));
                }
                _ => {}
            }
        }
        if pem.windows(21).any(|w| w == b"ENCRYPTED PRIVATE KEY") {
            return Err(Error::load(
                "PEM private key",
                "the key is encrypted; supply its password (key password file or environment \
                 variable)",
            ));
        }
        Err(Error::load("PEM private key", "no PRIVATE KEY block found"))
    }

    /// Parses a PEM key that may be encrypted (`ENCRYPTED PRIVATE KEY`, PKCS#8 with PBES2 as
    /// written by `openssl pkey -aes256`, or PBES1/3DES); unencrypted keys are accepted too
    /// and the password is then ignored.
    pub fn from_pem_with_password(pem: &[u8], password: &Secret) -> Result<Self> {
        const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
        const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
        let text = String::from_utf8_lossy(pem);
        let Some(start) = text.find(BEGIN) else {
            return PrivateKey::from_pem(pem);
        };
        let body = &text[start + BEGIN.len()..];
        let end = body.find(END).ok_or_else(|| {
            Error::load(
                "PEM private key",
                "unterminated ENCRYPTED PRIVATE KEY block",
            )
        })?;
        let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        use base64::Engine;
        let der = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| Error::load("PEM private key", format!("bad base64: {e}")))?,
        );
        PrivateKey::from_encrypted_pkcs8_der(&der, password)
    }

    /// Decrypts a DER `EncryptedPrivateKeyInfo` (PKCS#8) with the password.
    pub fn from_encrypted_pkcs8_der(der: &[u8], password: &Secret) -> Result<Self> {
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der)
            .map_err(|e| Error::load("encrypted private key", format!("not PKCS#8: {e}")))?;
        let doc = info.decrypt(password.expose().as_bytes()).map_err(|e| {
            Error::load(
                "encrypted private key",
                format!("cannot decrypt (wrong password or unsupported scheme): {e}"),
            )
        })?;
        PrivateKey::from_pkcs8_der(doc.as_bytes())
    }

    /// Loads a key file (PEM or DER, encrypted or not) with a password.
    pub fn load_with_password(path: impl AsRef<Path>, password: &Secret) -> Result<Self> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(read_file(path)?);
        if looks_like_pem(&bytes) {
            PrivateKey::from_pem_with_password(&bytes, password)
        } else {
            PrivateKey::from_encrypted_pkcs8_der(&bytes, password)
                .or_else(|_| PrivateKey::from_der(&bytes))
        }
        .map_err(|e| relabel(e, path))
    }

    /// Parses DER: PKCS#8 first, then PKCS#1.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        PrivateKey::from_pkcs8_der(der).or_else(|_| PrivateKey::from_pkcs1_der(der))
    }

    /// Loads a key file (PEM or DER).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(read_file(path)?);
        if looks_like_pem(&bytes) {
            PrivateKey::from_pem(&bytes)
        } else {
            PrivateKey::from_der(&bytes)
        }
        .map_err(|e| relabel(e, path))
    }

    /// Modulus length in bytes.
    pub(crate) fn modulus_len(&self) -> usize {
        self.signer.public_modulus_len()
    }

    /// RSA PKCS#1 v1.5 signature over `msg` hashed with `hash`.
    pub(crate) fn sign(&self, hash: HashAlgorithm, msg: &[u8]) -> Result<Vec<u8>> {
        use aws_lc_rs::signature as sig;
        let enc: &'static dyn sig::RsaEncoding = match hash {
            HashAlgorithm::Sha1 => return self.sign_sha1(msg),
            HashAlgorithm::Sha256 => &sig::RSA_PKCS1_SHA256,
            HashAlgorithm::Sha384 => &sig::RSA_PKCS1_SHA384,
            HashAlgorithm::Sha512 => &sig::RSA_PKCS1_SHA512,
        };
        let mut out = vec![0u8; self.modulus_len()];
        self.signer
            .sign(enc, &aws_lc_rs::rand::SystemRandom::new(), msg, &mut out)
            .map_err(|_| Error::Crypto("RSA signing failed".into()))?;
        Ok(out)
    }

    fn sign_sha1(&self, msg: &[u8]) -> Result<Vec<u8>> {
        use rsa::pkcs8::DecodePrivateKey;
        let key = rsa::RsaPrivateKey::from_pkcs8_der(&self.pkcs8)
            .map_err(|e| Error::Crypto(format!("cannot prepare RSA-SHA1 signer: {e}")))?;
        // DigestInfo { sha1, NULL } prefix (RFC 8017 9.2 note 1) followed by the digest.
        let mut digest_info = vec![
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ];
        digest_info.extend_from_slice(&HashAlgorithm::Sha1.digest(msg));
        key.sign(rsa::Pkcs1v15Sign::new_unprefixed(), &digest_info)
            .map_err(|e| Error::Crypto(format!("RSA-SHA1 signing failed: {e}")))
    }

    /// RSA PKCS#1 v1.5 decryption of a content-encryption key.
    pub(crate) fn decrypt_key(&self, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(vec![0u8; self.decrypter.min_output_size()]);
        let n = self.decrypter.decrypt(ciphertext, &mut out).ok()?.len();
        out.truncate(n);
        Some(out)
    }

    /// Whether this key belongs to `cert`.
    pub fn matches_certificate(&self, cert: &Certificate) -> bool {
        use aws_lc_rs::signature::KeyPair;
        cert.rsa_public_key()
            .is_ok_and(|pk| pk == self.signer.public_key().as_ref())
    }
}

/// A certificate with its private key (and the rest of its chain, if the store had it).
#[derive(Debug)]
pub struct Identity {
    certificate: Certificate,
    key: PrivateKey,
    chain: Vec<Certificate>,
}

impl Identity {
    /// Pairs a certificate with its key, checking that they belong together.
    pub fn new(certificate: Certificate, key: PrivateKey, chain: Vec<Certificate>) -> Result<Self> {
        certificate.rsa_public_key()?;
        if !key.matches_certificate(&certificate) {
            return Err(Error::UnusableCertificate(format!(
                "the private key does not belong to certificate {}",
                certificate.subject()
            )));
        }
        Ok(Identity {
            certificate,
            key,
            chain,
        })
    }

    /// Loads a PEM (or DER) certificate file and a separate key file.
    pub fn from_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let certs = Certificate::load_all(cert)?;
        Identity::of_key(certs, PrivateKey::load(key)?, "file")
    }

    /// Like [`Identity::from_files`] for a password-protected key file.
    pub fn from_files_with_password(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        password: &Secret,
    ) -> Result<Self> {
        let certs = Certificate::load_all(cert)?;
        Identity::of_key(
            certs,
            PrivateKey::load_with_password(key, password)?,
            "file",
        )
    }

    /// Parses a combined PEM text holding the certificate(s) and the key.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let certs = Certificate::all_from_pem_or_der(pem)?;
        Identity::of_key(certs, PrivateKey::from_pem(pem)?, "PEM")
    }

    /// The identity of `key`: the certificate among `certs` that matches it (`source` names
    /// where they came from in the error), the others as its chain.
    fn of_key(mut certs: Vec<Certificate>, key: PrivateKey, source: &str) -> Result<Self> {
        let pos = certs
            .iter()
            .position(|c| key.matches_certificate(c))
            .ok_or_else(|| {
                Error::UnusableCertificate(format!(
                    "no certificate in the {source} matches the key"
                ))
            })?;
        let leaf = certs.remove(pos);
        Identity::new(leaf, key, certs)
    }

    /// Selects an identity from a PKCS#12 blob.
    pub fn from_pkcs12(data: &[u8], password: &Secret, selector: &CertSelector) -> Result<Self> {
        let all = Identity::all_from_pkcs12(data, password)?;
        all.into_iter()
            .find(|i| i.certificate.matches(selector))
            .ok_or_else(|| Error::NoMatchingCertificate(selector.to_string()))
    }

    /// Loads a PKCS#12 file and selects an identity.
    pub fn load_pkcs12(
        path: impl AsRef<Path>,
        password: &Secret,
        selector: &CertSelector,
    ) -> Result<Self> {
        let path = path.as_ref();
        let data = Zeroizing::new(read_file(path)?);
        Identity::from_pkcs12(&data, password, selector).map_err(|e| relabel(e, path))
    }

    /// Every key + certificate pair of a PKCS#12 blob.
    pub fn all_from_pkcs12(data: &[u8], password: &Secret) -> Result<Vec<Self>> {
        let store = p12_keystore::KeyStore::from_pkcs12(
            data,
            password.expose(),
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|e| {
            Error::load(
                "PKCS#12",
                format!("cannot open (wrong password or unsupported format): {e}"),
            )
        })?;
        // Keys and certificates may be linked by localKeyId or not at all (Relaxed import
        // keeps unlinked ones as separate entries), so pair them by public key.
        let mut keys = Vec::new();
        let mut certs = Vec::new();
        for (_, entry) in store.entries() {
            match entry {
                p12_keystore::KeyStoreEntry::PrivateKeyChain(chain) => {
                    keys.push(Zeroizing::new(chain.key().as_der().to_vec()));
                    certs.extend(chain.certs().iter().map(|c| c.as_der().to_vec()));
                }
                p12_keystore::KeyStoreEntry::Certificate(c) => certs.push(c.as_der().to_vec()),
                _ => {}
            }
        }
        let mut parsed: Vec<Certificate> = Vec::new();
        for der in certs {
            let c = Certificate::from_der(&der)?;
            if !parsed.contains(&c) {
                parsed.push(c);
            }
        }
        let mut out = Vec::new();
        for key_der in keys {
            let key = match PrivateKey::from_pkcs8_der(&key_der) {
                Ok(k) => k,
                Err(e) => {
                    tracing::debug!("skipping unusable PKCS#12 key: {e}");
                    continue;
                }
            };
            let Some(leaf) = parsed.iter().find(|c| key.matches_certificate(c)).cloned() else {
                continue;
            };
            let chain = parsed.iter().filter(|c| **c != leaf).cloned().collect();
            out.push(Identity::new(leaf, key, chain)?);
        }
        if out.is_empty() {
            return Err(Error::load(
                "PKCS#12",
                "no private key with a matching certificate",
            ));
        }
        Ok(out)
    }

    /// The certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// Intermediate/root certificates stored with the identity.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    pub(crate) fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The private key as PKCS#8 DER, for TLS stacks that load keys themselves (rustls), so
    /// one key file (PEM, DER, encrypted or PKCS#12) serves CMS and TLS. It is a secret: never
    /// log, print or store it.
    pub fn private_key_pkcs8_der(&self) -> &[u8] {
        &self.key.pkcs8
    }
}

/// What a certificate is used for: the seed's `CertificateType` (0 all operations,
/// 1 session authentication, 2 decryption, 3 signing, 4 receipt signing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateUse {
    /// Secure authentication (answering AUCH challenges).
    SessionAuthentication,
    /// Decrypting received files.
    Decryption,
    /// Signing sent files.
    Signing,
    /// Signing EERP/NERP receipts.
    ReceiptSigning,
}

impl CertificateUse {
    /// Maps the seed's `CertificateType` code; `0` (all operations) is `None`.
    pub fn from_seed_code(code: u8) -> Result<Option<Self>> {
        match code {
            0 => Ok(None),
            1 => Ok(Some(CertificateUse::SessionAuthentication)),
            2 => Ok(Some(CertificateUse::Decryption)),
            3 => Ok(Some(CertificateUse::Signing)),
            4 => Ok(Some(CertificateUse::ReceiptSigning)),
            other => Err(Error::InvalidArgument(format!(
                "certificate type {other} is unknown (0 all, 1 session authentication, \
                 2 decryption, 3 signing, 4 receipt signing)"
            ))),
        }
    }
}

/// Our identities: one for all operations, optionally overridden per use (e.g. a separate
/// decryption key during a rollover).
#[derive(Debug, Default)]
pub struct IdentitySet {
    default: Option<Identity>,
    by_use: Vec<(CertificateUse, Identity)>,
}

impl IdentitySet {
    /// An empty set.
    pub fn new() -> Self {
        IdentitySet::default()
    }

    /// Sets the identity used for every operation without a specific one.
    pub fn with_default(mut self, identity: Identity) -> Self {
        self.default = Some(identity);
        self
    }

    /// Sets the identity for one use (replacing an earlier one for that use).
    pub fn with_use(mut self, usage: CertificateUse, identity: Identity) -> Self {
        self.by_use.retain(|(u, _)| *u != usage);
        self.by_use.push((usage, identity));
        self
    }

    /// The identity for a use, falling back to the default.
    pub fn for_use(&self, usage: CertificateUse) -> Result<&Identity> {
        self.by_use
            .iter()
            .find(|(u, _)| *u == usage)
            .map(|(_, i)| i)
            .or(self.default.as_ref())
            .ok_or_else(|| {
                Error::UnusableCertificate(format!(
                    "no certificate with private key configured for {usage:?}"
                ))
            })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rcgen_identity(cn: &str) -> (Identity, String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["oftp.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "ACME");
        let cert = params.self_signed(&key).unwrap();
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let id = Identity::from_pem(format!("{cert_pem}{key_pem}").as_bytes()).unwrap();
        (id, cert_pem, key_pem)
    }

    #[test]
    fn fields_and_selection() {
        let (id, cert_pem, _) = rcgen_identity("ACME OFTP");
        let c = id.certificate();
        assert!(c.subject().contains("CN=ACME OFTP"), "{}", c.subject());
        assert_eq!(c.public_key_algorithm(), "RSA");
        assert_eq!(c.public_key_bits(), 2048);
        assert!(c.is_self_issued());
        assert_eq!(c.subject_alt_names(), ["DNS:oftp.example"]);
        assert!(c.is_time_valid(SystemTime::now()));
        assert_eq!(c.thumbprint_sha1().len(), 20);
        assert!(
            c.public_key_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
        assert!(id.key().matches_certificate(c));
        // PEM roundtrip.
        assert_eq!(&Certificate::from_pem(c.to_pem().as_bytes()).unwrap(), c);
        assert_eq!(&Certificate::from_pem(cert_pem.as_bytes()).unwrap(), c);
        assert_eq!(&Certificate::from_der(c.der()).unwrap(), c);
        // Selection.
        assert!(c.matches(&CertSelector::parse("*")));
        assert!(c.matches(&CertSelector::parse("acme oftp")));
        assert!(!c.matches(&CertSelector::parse("other")));
        let sha1 = c.thumbprint_sha1_hex();
        assert_eq!(
            CertSelector::parse(&sha1),
            CertSelector::Sha1(c.thumbprint_sha1())
        );
        assert!(c.matches(&CertSelector::parse(&sha1.to_uppercase())));
        assert!(c.matches(&CertSelector::parse(&c.thumbprint_sha256_hex())));
    }

    #[test]
    fn private_key_der_is_the_identity_key() {
        let (id, _, _) = rcgen_identity("Der");
        let again = PrivateKey::from_pkcs8_der(id.private_key_pkcs8_der()).unwrap();
        assert!(again.matches_certificate(id.certificate()));
    }

    #[test]
    fn identity_set_falls_back_to_default() {
        let (a, _, _) = rcgen_identity("All");
        let (d, _, _) = rcgen_identity("Decrypt");
        let set = IdentitySet::new()
            .with_default(a)
            .with_use(CertificateUse::Decryption, d);
        let subject = |u| set.for_use(u).unwrap().certificate().subject().to_string();
        assert!(subject(CertificateUse::Decryption).contains("Decrypt"));
        assert!(subject(CertificateUse::Signing).contains("All"));
        assert!(IdentitySet::new().for_use(CertificateUse::Signing).is_err());
        assert_eq!(CertificateUse::from_seed_code(0).unwrap(), None);
        assert_eq!(
            CertificateUse::from_seed_code(4).unwrap(),
            Some(CertificateUse::ReceiptSigning)
        );
        assert!(CertificateUse::from_seed_code(5).is_err());
    }

    #[test]
    fn mismatched_key_is_refused() {
        let (_, cert_pem, _) = rcgen_identity("A");
        let (_, _, key_pem) = rcgen_identity("B");
        assert!(Identity::from_pem(format!("{cert_pem}{key_pem}").as_bytes()).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Certificate::from_der(b"\x30\x03abc").is_err());
        assert!(
            Certificate::from_pem(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(PrivateKey::from_der(b"nope").is_err());
    }

    #[test]
    fn signs_with_every_hash() {
        let (id, _, _) = rcgen_identity("S");
        for h in [
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha512,
        ] {
            let s = id.key().sign(h, b"msg").unwrap();
            assert_eq!(s.len(), 256);
        }
    }
}
