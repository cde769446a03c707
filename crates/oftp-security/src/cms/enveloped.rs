//! CMS EnvelopedData with RSA PKCS#1 v1.5 key transport and 3DES/AES-CBC, streaming.
//!
//! Encryption: a fresh content-encryption key and IV per file, the key encrypted to each
//! recipient certificate (`KeyTransRecipientInfo` with issuer and serial number). Decryption:
//! the recipient info addressed to our certificate (issuer/serial or subject key identifier)
//! is opened with aws-lc-rs; if the RSA decryption fails, decryption continues with a random
//! key so that a padding oracle cannot tell a bad key block from bad content (the error then
//! surfaces as a padding failure at the end, like OpenSSL does). AES-128 is accepted on
//! receive only.

use std::io::{Read, Write};

use aws_lc_rs::cipher::{
    DecryptionContext, EncryptionContext, StreamingDecryptingKey, StreamingEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{Pkcs1PublicEncryptingKey, PublicEncryptingKey};
use zeroize::Zeroizing;

use super::{SEGMENT, expect_eof, open_versioned};
use crate::asn1::{self, End, OctetStream, StreamReader, oid, tag};
use crate::cert::{Certificate, Identity};
use crate::error::{Error, Layer, Result};
use crate::suite::SymmetricAlgorithm;

const L: Layer = Layer::Enveloped;

fn random(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    SystemRandom::new()
        .fill(&mut v)
        .map_err(|_| Error::Crypto("random generator failed".into()))?;
    Ok(v)
}

fn iv_context(alg: SymmetricAlgorithm, iv: &[u8]) -> Option<EncryptionContext> {
    match alg {
        SymmetricAlgorithm::TripleDesCbc => {
            let iv: [u8; 8] = iv.try_into().ok()?;
            Some(EncryptionContext::Iv64(FixedLength::from(iv)))
        }
        _ => {
            let iv: [u8; 16] = iv.try_into().ok()?;
            Some(EncryptionContext::Iv128(FixedLength::from(iv)))
        }
    }
}

/// Encrypts a content-encryption key to one recipient.
fn key_trans_recipient(cert: &Certificate, cek: &[u8]) -> Result<Vec<u8>> {
    let spki = asn1::seq(&[
        &asn1::alg_id_null(oid::RSA_ENCRYPTION),
        &asn1::tlv(
            tag::BIT_STRING,
            &[&[0u8][..], cert.rsa_public_key()?].concat(),
        ),
    ]);
    let pk = PublicEncryptingKey::from_der(&spki)
        .map_err(|e| Error::UnusableCertificate(format!("{}: {e}", cert.subject())))?;
    let enc = Pkcs1PublicEncryptingKey::new(pk)
        .map_err(|_| Error::UnusableCertificate(cert.subject().to_string()))?;
    let mut out = vec![0u8; enc.ciphertext_size()];
    let n = enc
        .encrypt(cek, &mut out)
        .map_err(|_| Error::Crypto("RSA key transport encryption failed".into()))?
        .len();
    out.truncate(n);
    Ok(asn1::seq(&[
        &asn1::small_int(0),
        &cert.issuer_and_serial(),
        &asn1::alg_id_null(oid::RSA_ENCRYPTION),
        &asn1::tlv(tag::OCTET_STRING, &out),
    ]))
}

/// Streaming EnvelopedData encoder.
pub struct EnvelopedDataWriter<W: Write> {
    seg: Option<asn1::SegmentWriter<W>>,
    key: Option<StreamingEncryptingKey>,
    out: Box<[u8]>,
}

impl<W: Write> EnvelopedDataWriter<W> {
    /// Starts an EnvelopedData on `out` for the given recipients (at least one).
    pub fn new(mut out: W, recipients: &[&Certificate], alg: SymmetricAlgorithm) -> Result<Self> {
        if recipients.is_empty() {
            return Err(Error::InvalidArgument("no recipient certificate".into()));
        }
        let iv = random(alg.iv_len())?;
        // 3DES refuses degenerate keys (K1 == K2 ...); a fresh random key is drawn then.
        let mut attempt = 0;
        let (cek, key) = loop {
            attempt += 1;
            let cek = random(alg.key_len())?;
            let built = UnboundCipherKey::new(alg.aws(), &cek).and_then(|k| {
                let ctx = iv_context(alg, &iv).ok_or(aws_lc_rs::error::Unspecified)?;
                StreamingEncryptingKey::less_safe_cbc_pkcs7(k, ctx)
            });
            match built {
                Ok(k) => break (cek, k),
                Err(_) if attempt < 8 => continue,
                Err(_) => return Err(Error::Crypto(format!("cannot set up {alg} encryption"))),
            }
        };
        let ris = recipients
            .iter()
            .map(|c| key_trans_recipient(c, &cek))
            .collect::<Result<Vec<_>>>()?;
        let alg_id = asn1::seq(&[
            &asn1::oid_tlv(alg.oid()),
            &asn1::tlv(tag::OCTET_STRING, &iv),
        ]);
        let start = || -> std::io::Result<()> {
            super::write_content_info_start(&mut out, oid::ENVELOPED_DATA)?;
            out.write_all(&[tag::SEQUENCE, 0x80])?;
            out.write_all(&asn1::small_int(0))?;
            out.write_all(&asn1::set_of(ris))?;
            out.write_all(&[tag::SEQUENCE, 0x80])?;
            out.write_all(&asn1::oid_tlv(oid::DATA))?;
            out.write_all(&alg_id)?;
            // encryptedContent [0] IMPLICIT OCTET STRING, constructed
            out.write_all(&[tag::CTX0_C, 0x80])
        };
        start().map_err(Error::Io)?;
        Ok(EnvelopedDataWriter {
            seg: Some(asn1::SegmentWriter::new(out, SEGMENT)),
            key: Some(key),
            out: vec![0u8; SEGMENT + 16].into_boxed_slice(),
        })
    }

    /// Encrypts the last block (with PKCS#7 padding), closes the structure, returns the output.
    pub fn finish(mut self) -> Result<W> {
        let (Some(key), Some(mut seg)) = (self.key.take(), self.seg.take()) else {
            return Err(Error::Crypto(
                "enveloped data writer already finished".into(),
            ));
        };
        let (_, upd) = key
            .finish(&mut self.out)
            .map_err(|_| Error::Crypto("encryption failed".into()))?;
        seg.write_all(upd.written()).map_err(Error::Io)?;
        let mut out = seg.finish().map_err(Error::Io)?;
        // [0] encryptedContent, EncryptedContentInfo, EnvelopedData, [0], ContentInfo
        super::write_eocs(&mut out, 5).map_err(Error::Io)?;
        Ok(out)
    }
}

impl<W: Write> Write for EnvelopedDataWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (Some(key), Some(seg)) = (self.key.as_mut(), self.seg.as_mut()) else {
            return Err(std::io::Error::other("enveloped data writer finished"));
        };
        let n = buf.len().min(SEGMENT);
        let upd = key
            .update(&buf[..n], &mut self.out)
            .map_err(|_| std::io::Error::other("encryption failed"))?;
        seg.write_all(upd.written())?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.seg.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

/// Streaming EnvelopedData decoder yielding the plaintext.
pub struct EnvelopedDataReader<R: Read> {
    r: StreamReader<R>,
    ends: [End; 4], // eci, env, c0, ci
    stream: OctetStream,
    key: Option<StreamingDecryptingKey>,
    inbuf: Box<[u8]>,
    out: Box<[u8]>,
    out_start: usize,
    out_end: usize,
    finished: bool,
    algorithm: SymmetricAlgorithm,
}

impl<R: Read> EnvelopedDataReader<R> {
    /// Parses the header from `input` and opens the content key with `identity`.
    pub fn new(input: R, identity: &Identity) -> Result<Self> {
        let mut r = StreamReader::new(input, L);
        let [ci, c0, env] = open_versioned(&mut r, oid::ENVELOPED_DATA, "EnvelopedData", 4)?;
        if r.peek_byte()? == Some(tag::CTX0_C) {
            r.skip_element(0)?; // originatorInfo
        }
        let ris_raw = r.read_element("recipientInfos")?;
        let ris = asn1::parse_one(&ris_raw, L)?.expect(tag::SET, L, "recipientInfos")?;
        let eci = r.open(tag::SEQUENCE, "EncryptedContentInfo")?;
        let _content_type = r.read_oid("contentType")?;
        let alg_raw = r.read_element("contentEncryptionAlgorithm")?;
        let alg_t = asn1::parse_one(&alg_raw, L)?;
        let mut ac = alg_t.children(L);
        let alg_oid = ac.need("content encryption algorithm")?;
        let algorithm = SymmetricAlgorithm::from_oid(alg_oid.content).ok_or_else(|| {
            Error::Decryption(
                "unsupported content encryption algorithm (3DES-CBC, AES-128/256-CBC supported)"
                    .into(),
            )
        })?;
        let iv = ac
            .need("IV")?
            .expect(tag::OCTET_STRING, L, "IV")?
            .content
            .to_vec();
        let ctx = iv_context(algorithm, &iv)
            .ok_or_else(|| Error::malformed(L, "IV length does not match the cipher"))?;

        let cek = open_recipient_info(&ris, identity, algorithm)?;
        let key = UnboundCipherKey::new(algorithm.aws(), &cek)
            .and_then(|k| StreamingDecryptingKey::cbc_pkcs7(k, DecryptionContext::from(ctx)))
            .map_err(|_| Error::Decryption("content key unusable (wrong key?)".into()))?;

        let h = r.header()?;
        let stream = OctetStream::start(&mut r, h, tag::CTX0_P, tag::CTX0_C)?;
        Ok(EnvelopedDataReader {
            r,
            ends: [eci, env, c0, ci],
            stream,
            key: Some(key),
            inbuf: vec![0u8; SEGMENT].into_boxed_slice(),
            out: vec![0u8; SEGMENT + 16].into_boxed_slice(),
            out_start: 0,
            out_end: 0,
            finished: false,
            algorithm,
        })
    }

    /// The content-encryption algorithm of the file.
    pub fn algorithm(&self) -> SymmetricAlgorithm {
        self.algorithm
    }

    fn step(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            if self.out_start < self.out_end {
                let n = buf.len().min(self.out_end - self.out_start);
                buf[..n].copy_from_slice(&self.out[self.out_start..self.out_start + n]);
                self.out_start += n;
                return Ok(n);
            }
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            let n = self.stream.read(&mut self.r, &mut self.inbuf)?;
            self.out_start = 0;
            if n > 0 {
                let key = self
                    .key
                    .as_mut()
                    .ok_or_else(|| Error::Decryption("decryptor already finished".into()))?;
                let upd = key
                    .update(&self.inbuf[..n], &mut self.out)
                    .map_err(|_| Error::Decryption("cipher update failed".into()))?;
                self.out_end = upd.written().len();
            } else {
                let key = self
                    .key
                    .take()
                    .ok_or_else(|| Error::Decryption("decryptor already finished".into()))?;
                let upd = key.finish(&mut self.out).map_err(|_| {
                    Error::Decryption(
                        "bad padding: the file was not encrypted for our key, or it was altered"
                            .into(),
                    )
                })?;
                self.out_end = upd.written().len();
                self.finish_structure()?;
            }
        }
    }

    fn finish_structure(&mut self) -> Result<()> {
        self.r.close(self.ends[0], "EncryptedContentInfo")?;
        if self.r.peek_byte()? == Some(tag::CTX1_C) {
            self.r.skip_element(0)?; // unprotectedAttrs
        }
        self.r.close(self.ends[1], "EnvelopedData")?;
        self.r.close(self.ends[2], "ContentInfo content")?;
        self.r.close(self.ends[3], "ContentInfo")?;
        expect_eof(&mut self.r, "EnvelopedData")?;
        self.finished = true;
        Ok(())
    }
}

impl<R: Read> Read for EnvelopedDataReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step(buf).map_err(Error::into_io)
    }
}

/// Finds our KeyTransRecipientInfo and decrypts the content-encryption key.
fn open_recipient_info(
    ris: &asn1::Tlv<'_>,
    identity: &Identity,
    alg: SymmetricAlgorithm,
) -> Result<Zeroizing<Vec<u8>>> {
    let cert = identity.certificate();
    let mut seen = 0usize;
    for ri in ris.children(L) {
        let ri = ri?;
        if ri.tag != tag::SEQUENCE {
            continue; // kari [1], kekri [2], pwri [3], ori [4]: not for RSA key transport
        }
        seen += 1;
        let mut c = ri.children(L);
        let _v = c.need("recipient version")?;
        let rid = c.need("recipient identifier")?;
        if !cert.matches_identifier(&rid) {
            continue;
        }
        let kea = c.need("keyEncryptionAlgorithm")?;
        let kea_oid = kea.children(L).need("key encryption algorithm")?;
        if kea_oid.content != oid::RSA_ENCRYPTION {
            return Err(Error::Decryption(
                "unsupported key transport (only RSA PKCS#1 v1.5 is used by OFTP)".into(),
            ));
        }
        let ek = c.need("encryptedKey")?.octets(L)?;
        return Ok(match identity.key().decrypt_key(&ek) {
            Some(k) if k.len() == alg.key_len() => k,
            // Implicit rejection: continue with a random key; fails at the padding check.
            _ => random(alg.key_len())?,
        });
    }
    Err(Error::Decryption(format!(
        "the file is not encrypted for our certificate {} (serial {}); it has {seen} RSA \
         recipient(s)",
        cert.subject(),
        cert.serial_number()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::rcgen_identity;

    fn encrypt(data: &[u8], to: &Certificate, alg: SymmetricAlgorithm) -> Vec<u8> {
        let mut w = EnvelopedDataWriter::new(Vec::new(), &[to], alg).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn decrypt(cms: &[u8], id: &Identity) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        EnvelopedDataReader::new(cms, id)?
            .read_to_end(&mut out)
            .map_err(Error::from_io)?;
        Ok(out)
    }

    #[test]
    fn roundtrip_all_ciphers_and_sizes() {
        let (id, _, _) = rcgen_identity("Recipient");
        for alg in [
            SymmetricAlgorithm::TripleDesCbc,
            SymmetricAlgorithm::Aes128Cbc,
            SymmetricAlgorithm::Aes256Cbc,
        ] {
            for len in [0usize, 1, 15, 16, 17, SEGMENT, 2 * SEGMENT + 5] {
                let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let cms = encrypt(&data, id.certificate(), alg);
                assert_eq!(decrypt(&cms, &id).unwrap(), data, "{alg} {len}");
            }
        }
    }

    #[test]
    fn wrong_recipient_and_tampering() {
        let (id, _, _) = rcgen_identity("Recipient");
        let (other, _, _) = rcgen_identity("Other");
        let data = vec![9u8; 1000];
        let cms = encrypt(&data, id.certificate(), SymmetricAlgorithm::Aes256Cbc);
        let e = decrypt(&cms, &other).unwrap_err();
        assert_eq!(e.efna_reason(), 22, "{e}");
        assert!(
            e.to_string().contains("not encrypted for our certificate"),
            "{e}"
        );
        // Flip a bit in the last ciphertext block: padding check fails (or content differs).
        let mut bad = cms.clone();
        let i = bad.len() - 12;
        bad[i] ^= 0x80;
        match decrypt(&bad, &id) {
            Err(e) => assert_eq!(e.efna_reason(), 22, "{e}"),
            Ok(plain) => assert_ne!(plain, data),
        }
        for i in (0..cms.len()).step_by(5) {
            assert!(decrypt(&cms[..i], &id).is_err(), "truncated at {i}");
        }
    }
}
