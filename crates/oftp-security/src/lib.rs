//! OFTP 2.0 security services (RFC 5024 sections 4.2.3, 5.3.13-5.3.14, 6 and 10).
//!
//! What this crate does:
//! - [`suite`]: the cipher suites 01-06 and hashing helpers.
//! - [`cert`]: certificates and RSA keys from PEM, DER and PKCS#12; selection by subject or
//!   thumbprint; the seed's certificate fields. [`validate`]: expiry, chain and CRL checks,
//!   with CRLs from files and, optionally, from the certificates' CRL distribution points
//!   ([`crldp`]: HTTP download with timeouts and size limit, cached until nextUpdate).
//! - [`cms`]: streaming CMS `SignedData`, `CompressedData` (zlib) and `EnvelopedData` (RSA
//!   PKCS#1 v1.5 key transport, 3DES/AES-CBC) in constant memory, and the OFTP send and
//!   receive pipelines (sign -> compress -> encrypt and back), accepting BER and DER.
//! - [`receipt`]: signed EERP/NERP receipts. [`auth`]: the secure authentication challenge.
//!
//! What it does not do: networking beyond CRL downloads (blocking, from the validating
//! thread), OFTP command encoding (the proto crate), LDAP CRL distribution points, OCSP, certificate exchange sessions, key generation for operators.
//!
//! Crate choices: aws-lc-rs for all cryptography that touches partner data (constant-time
//! RSA decryption, AES/3DES-CBC, SHA); the `rsa` crate only to *create* RSA-SHA1 signatures,
//! which aws-lc-rs refuses (it is never used to decrypt, see RUSTSEC-2023-0071);
//! `x509-parser` for certificate fields; `p12-keystore` for PKCS#12 (modern and legacy);
//! `rustls-webpki` for chains and CRLs; `ureq` (no TLS features) to download CRLs;
//! `flate2` for zlib. No Rust crate streams CMS, so the
//! few CMS structures are encoded and decoded by hand (module `asn1`, private).
//!
//! A complete round trip (the README shows file-based usage and the receipt and
//! authentication helpers):
//!
//! ```
//! use std::io::{Read, Write};
//! use oftp_security::cms::{ReceiveOptions, ReceivePipeline, SendOptions, SendPipeline};
//! use oftp_security::{CipherSuite, Identity};
//!
//! # fn identity(cn: &str) -> Identity {
//! #     let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
//! #     let mut p = rcgen::CertificateParams::new(vec!["x.example".into()]).unwrap();
//! #     p.distinguished_name.push(rcgen::DnType::CommonName, cn);
//! #     let cert = p.self_signed(&key).unwrap();
//! #     Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap()
//! # }
//! # fn main() -> Result<(), oftp_security::Error> {
//! let (sender, receiver) = (identity("Sender"), identity("Receiver"));
//! let suite = CipherSuite::from_code(4)?;
//!
//! let opts = SendOptions::new(suite)
//!     .sign(&sender)
//!     .compress()
//!     .encrypt_for(receiver.certificate());
//! let mut tx = SendPipeline::new(Vec::new(), &opts)?;
//! tx.write_all(b"ORDERS 4711").map_err(oftp_security::Error::Io)?;
//! let wire = tx.finish()?;
//!
//! let opts = ReceiveOptions::new()
//!     .identity(&receiver)
//!     .partner(sender.certificate())
//!     .expect(true, true, true);
//! let mut rx = ReceivePipeline::new(&wire[..], &opts)?;
//! let mut plain = Vec::new();
//! rx.read_to_end(&mut plain).map_err(oftp_security::Error::from_io)?;
//! let report = rx.finish()?;
//! assert_eq!(plain, b"ORDERS 4711");
//! assert!(report.signer.is_some());
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub(crate) mod asn1;
pub mod auth;
pub mod cert;
pub mod cms;
pub mod crldp;
pub mod error;
pub mod receipt;
pub mod secret;
pub mod suite;
pub mod validate;
pub mod vformat;

pub use cert::{
    CertSelector, Certificate, CertificateUse, Identity, IdentitySet, KeyUsage, PrivateKey,
};
pub use crldp::{CrlFetchOptions, FetchError};
pub use error::{Error, Layer, Result};
pub use secret::Secret;
pub use suite::{CipherSuite, HashAlgorithm, Hasher, SymmetricAlgorithm};
pub use validate::{TrustPolicy, TrustStatus, ValidationError};
