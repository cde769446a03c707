//! OFTP cipher suites (RFC 5024 section 10.2 and the Odette extension list) and hashing helpers.
//!
//! A [`CipherSuite`] fixes the symmetric cipher, the asymmetric scheme (always RSA PKCS#1 v1.5)
//! and the hash algorithm used for file signatures and receipt hashes. This module does not
//! perform any encryption itself; see [`crate::cms`].

use std::fmt;
use std::io::Read;

use aws_lc_rs::digest;

use crate::asn1::oid;
use crate::error::{Error, Result};

/// An OFTP 2 cipher suite as carried in `SFIDCIPH` (two decimal digits on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CipherSuite {
    /// `01`: 3DES-EDE-CBC (3 keys), RSA PKCS#1 v1.5, SHA-1 (mandatory in RFC 5024).
    TripleDesRsaSha1,
    /// `02`: AES-256-CBC, RSA PKCS#1 v1.5, SHA-1 (mandatory in RFC 5024).
    Aes256RsaSha1,
    /// `03`: 3DES-EDE-CBC, RSA PKCS#1 v1.5, SHA-256 (Odette extension).
    TripleDesRsaSha256,
    /// `04`: AES-256-CBC, RSA PKCS#1 v1.5, SHA-256 (Odette extension).
    Aes256RsaSha256,
    /// `05`: 3DES-EDE-CBC, RSA PKCS#1 v1.5, SHA-512 (Odette extension).
    TripleDesRsaSha512,
    /// `06`: AES-256-CBC, RSA PKCS#1 v1.5, SHA-512 (Odette extension).
    Aes256RsaSha512,
}

impl CipherSuite {
    /// All suites, in code order.
    pub const ALL: [CipherSuite; 6] = [
        CipherSuite::TripleDesRsaSha1,
        CipherSuite::Aes256RsaSha1,
        CipherSuite::TripleDesRsaSha256,
        CipherSuite::Aes256RsaSha256,
        CipherSuite::TripleDesRsaSha512,
        CipherSuite::Aes256RsaSha512,
    ];

    /// The numeric code sent in `SFIDCIPH` (1..=6).
    pub fn code(self) -> u8 {
        match self {
            CipherSuite::TripleDesRsaSha1 => 1,
            CipherSuite::Aes256RsaSha1 => 2,
            CipherSuite::TripleDesRsaSha256 => 3,
            CipherSuite::Aes256RsaSha256 => 4,
            CipherSuite::TripleDesRsaSha512 => 5,
            CipherSuite::Aes256RsaSha512 => 6,
        }
    }

    /// Maps an `SFIDCIPH` code to a suite. `0` (no security) and unknown codes are errors;
    /// the caller answers an unknown code with SFNA 15 (cipher suite not supported).
    pub fn from_code(code: u8) -> Result<Self> {
        CipherSuite::ALL
            .into_iter()
            .find(|s| s.code() == code)
            .ok_or(Error::UnsupportedCipherSuite(code))
    }

    /// The symmetric content-encryption algorithm of this suite.
    pub fn symmetric(self) -> SymmetricAlgorithm {
        match self {
            CipherSuite::TripleDesRsaSha1
            | CipherSuite::TripleDesRsaSha256
            | CipherSuite::TripleDesRsaSha512 => SymmetricAlgorithm::TripleDesCbc,
            _ => SymmetricAlgorithm::Aes256Cbc,
        }
    }

    /// The hash algorithm of this suite (signatures and EERP/NERP file hashes).
    pub fn hash(self) -> HashAlgorithm {
        match self {
            CipherSuite::TripleDesRsaSha1 | CipherSuite::Aes256RsaSha1 => HashAlgorithm::Sha1,
            CipherSuite::TripleDesRsaSha256 | CipherSuite::Aes256RsaSha256 => HashAlgorithm::Sha256,
            CipherSuite::TripleDesRsaSha512 | CipherSuite::Aes256RsaSha512 => HashAlgorithm::Sha512,
        }
    }
}

impl fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02} ({}/RSA/{})",
            self.code(),
            self.symmetric(),
            self.hash()
        )
    }
}

/// Hash algorithms used by the suites (SHA-384 is accepted on receive only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// SHA-1 (suites 01, 02; legacy).
    Sha1,
    /// SHA-256 (suites 03, 04).
    Sha256,
    /// SHA-384 (not in any suite; accepted in received signatures).
    Sha384,
    /// SHA-512 (suites 05, 06).
    Sha512,
}

impl HashAlgorithm {
    pub(crate) fn aws(self) -> &'static digest::Algorithm {
        match self {
            HashAlgorithm::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlgorithm::Sha256 => &digest::SHA256,
            HashAlgorithm::Sha384 => &digest::SHA384,
            HashAlgorithm::Sha512 => &digest::SHA512,
        }
    }

    /// Length of the digest in bytes.
    pub fn output_len(self) -> usize {
        self.aws().output_len()
    }

    /// DER content bytes of the algorithm's object identifier.
    pub(crate) fn oid(self) -> &'static [u8] {
        match self {
            HashAlgorithm::Sha1 => oid::SHA1,
            HashAlgorithm::Sha256 => oid::SHA256,
            HashAlgorithm::Sha384 => oid::SHA384,
            HashAlgorithm::Sha512 => oid::SHA512,
        }
    }

    pub(crate) fn from_oid(o: &[u8]) -> Option<Self> {
        [
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ]
        .into_iter()
        .find(|h| h.oid() == o)
    }

    /// Hashes a byte slice.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.aws(), data).as_ref().to_vec()
    }

    /// Starts an incremental hash.
    pub fn hasher(self) -> Hasher {
        Hasher {
            alg: self,
            ctx: digest::Context::new(self.aws()),
        }
    }

    /// Hashes everything a reader yields, in 64 KiB chunks (constant memory). Use it for the
    /// EERP/NERP hash of the transmitted file.
    pub fn digest_reader<R: Read>(self, mut reader: R) -> std::io::Result<Vec<u8>> {
        let mut h = self.hasher();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgorithm::Sha1 => "SHA-1",
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha384 => "SHA-384",
            HashAlgorithm::Sha512 => "SHA-512",
        })
    }
}

/// An incremental hash (see [`HashAlgorithm::hasher`]).
#[derive(Clone)]
pub struct Hasher {
    alg: HashAlgorithm,
    ctx: digest::Context,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").field("alg", &self.alg).finish()
    }
}

impl Hasher {
    /// Adds data.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    /// The algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.alg
    }

    /// Finishes and returns the digest bytes.
    pub fn finish(self) -> Vec<u8> {
        self.ctx.finish().as_ref().to_vec()
    }

    pub(crate) fn finish_digest(self) -> digest::Digest {
        self.ctx.finish()
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Content-encryption algorithms. AES-128-CBC is accepted on receive only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SymmetricAlgorithm {
    /// DES-EDE3-CBC with three independent keys (suites 01, 03, 05).
    TripleDesCbc,
    /// AES-128-CBC (receive only; some partners follow the seed's AES-128 default).
    Aes128Cbc,
    /// AES-256-CBC (suites 02, 04, 06).
    Aes256Cbc,
}

impl SymmetricAlgorithm {
    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            SymmetricAlgorithm::TripleDesCbc => 24,
            SymmetricAlgorithm::Aes128Cbc => 16,
            SymmetricAlgorithm::Aes256Cbc => 32,
        }
    }

    /// IV (and block) length in bytes.
    pub fn iv_len(self) -> usize {
        match self {
            SymmetricAlgorithm::TripleDesCbc => 8,
            _ => 16,
        }
    }

    pub(crate) fn oid(self) -> &'static [u8] {
        match self {
            SymmetricAlgorithm::TripleDesCbc => oid::DES_EDE3_CBC,
            SymmetricAlgorithm::Aes128Cbc => oid::AES128_CBC,
            SymmetricAlgorithm::Aes256Cbc => oid::AES256_CBC,
        }
    }

    pub(crate) fn from_oid(o: &[u8]) -> Option<Self> {
        [
            SymmetricAlgorithm::TripleDesCbc,
            SymmetricAlgorithm::Aes128Cbc,
            SymmetricAlgorithm::Aes256Cbc,
        ]
        .into_iter()
        .find(|a| a.oid() == o)
    }

    #[allow(deprecated)] // 3DES is deprecated in aws-lc-rs but mandatory in OFTP suite 01.
    pub(crate) fn aws(self) -> &'static aws_lc_rs::cipher::Algorithm {
        match self {
            SymmetricAlgorithm::TripleDesCbc => &aws_lc_rs::cipher::DES_EDE3_FOR_LEGACY_USE_ONLY,
            SymmetricAlgorithm::Aes128Cbc => &aws_lc_rs::cipher::AES_128,
            SymmetricAlgorithm::Aes256Cbc => &aws_lc_rs::cipher::AES_256,
        }
    }
}

impl fmt::Display for SymmetricAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SymmetricAlgorithm::TripleDesCbc => "3DES-EDE-CBC",
            SymmetricAlgorithm::Aes128Cbc => "AES-128-CBC",
            SymmetricAlgorithm::Aes256Cbc => "AES-256-CBC",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_map_to_algorithms() {
        for s in CipherSuite::ALL {
            assert_eq!(CipherSuite::from_code(s.code()).unwrap(), s);
        }
        assert!(matches!(
            CipherSuite::from_code(0),
            Err(Error::UnsupportedCipherSuite(0))
        ));
        assert!(CipherSuite::from_code(7).is_err());
        let s = CipherSuite::from_code(1).unwrap();
        assert_eq!(
            (s.symmetric(), s.hash()),
            (SymmetricAlgorithm::TripleDesCbc, HashAlgorithm::Sha1)
        );
        let s = CipherSuite::from_code(2).unwrap();
        assert_eq!(
            (s.symmetric(), s.hash()),
            (SymmetricAlgorithm::Aes256Cbc, HashAlgorithm::Sha1)
        );
        let s = CipherSuite::from_code(3).unwrap();
        assert_eq!(
            (s.symmetric(), s.hash()),
            (SymmetricAlgorithm::TripleDesCbc, HashAlgorithm::Sha256)
        );
        let s = CipherSuite::from_code(4).unwrap();
        assert_eq!(
            (s.symmetric(), s.hash()),
            (SymmetricAlgorithm::Aes256Cbc, HashAlgorithm::Sha256)
        );
        let s = CipherSuite::from_code(5).unwrap();
        assert_eq!(
            (s.symmetric(), s.hash()),
            (SymmetricAlgorithm::TripleDesCbc, HashAlgorithm::Sha512)
        );
        let s = CipherSuite::from_code(6).unwrap();
        assert_eq!(
            (s.symmetric(), s.hash()),
            (SymmetricAlgorithm::Aes256Cbc, HashAlgorithm::Sha512)
        );
        assert_eq!(s.to_string(), "06 (AES-256-CBC/RSA/SHA-512)");
    }

    #[test]
    fn known_answer_hashes() {
        // FIPS 180 "abc" vectors.
        assert_eq!(
            hex::encode(HashAlgorithm::Sha1.digest(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(HashAlgorithm::Sha256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            &hex::encode(HashAlgorithm::Sha512.digest(b"abc"))[..32],
            "ddaf35a193617abacc417349ae204131"
        );
        let mut h = HashAlgorithm::Sha256.hasher();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), HashAlgorithm::Sha256.digest(b"abc"));
        let r = HashAlgorithm::Sha1.digest_reader(&b"abc"[..]).unwrap();
        assert_eq!(r, HashAlgorithm::Sha1.digest(b"abc"));
    }

    #[test]
    fn oids_resolve() {
        for h in [
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ] {
            assert_eq!(HashAlgorithm::from_oid(h.oid()), Some(h));
        }
        for a in [
            SymmetricAlgorithm::TripleDesCbc,
            SymmetricAlgorithm::Aes128Cbc,
            SymmetricAlgorithm::Aes256Cbc,
        ] {
            assert_eq!(SymmetricAlgorithm::from_oid(a.oid()), Some(a));
        }
    }
}
