//! CMS SignedData: streaming signer and verifier.
//!
//! The signer writes one `SignerInfo` per signing identity (issuer and serial number
//! identifier; several during a certificate changeover, RFC 5024 6.2) with the signed
//! attributes contentType, signingTime and messageDigest, RSA PKCS#1 v1.5, and includes the
//! signer certificate only on request (RFC 5024 6.2 recommends leaving it out). The verifier
//! hashes the content while it is read, then checks every `SignerInfo` that designates the
//! partner certificate (a file may carry several signatures during a certificate rollover);
//! one valid signature suffices. Detached signatures (no eContent) are accepted when the
//! content is supplied separately, as some partners sign EERPs that way.

use std::io::{Read, Write};
use std::time::SystemTime;

use aws_lc_rs::digest::Digest;
use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};

use super::{expect_eof, open_econtent, open_versioned};
use crate::asn1::{self, End, OctetStream, StreamReader, oid, tag};
use crate::cert::{Certificate, Identity};
use crate::error::{Error, Layer, Result};
use crate::suite::{HashAlgorithm, Hasher};

const L: Layer = Layer::Signed;

/// Streaming SignedData encoder: write the content, then call [`SignedDataWriter::finish`].
pub struct SignedDataWriter<'a, W: Write> {
    seg: Option<asn1::SegmentWriter<W>>,
    hasher: Hasher,
    signers: Vec<&'a Identity>,
    include_cert: bool,
}

impl<'a, W: Write> SignedDataWriter<'a, W> {
    /// Starts a SignedData on `out`, signing with `signer` and hash `hash`.
    pub fn new(
        out: W,
        signer: &'a Identity,
        hash: HashAlgorithm,
        include_cert: bool,
    ) -> Result<Self> {
        SignedDataWriter::with_signers(out, &[signer], hash, include_cert)
    }

    /// Starts a SignedData signed by several identities (old and new certificate during a
    /// changeover); a receiver accepts the file if any one signature is by its partner.
    pub fn with_signers(
        mut out: W,
        signers: &[&'a Identity],
        hash: HashAlgorithm,
        include_cert: bool,
    ) -> Result<Self> {
        if signers.is_empty() {
            return Err(Error::InvalidArgument("no signing identity".into()));
        }
        for s in signers {
            s.certificate().rsa_public_key()?;
        }
        let mut start = || -> std::io::Result<()> {
            super::write_content_info_start(&mut out, oid::SIGNED_DATA)?;
            out.write_all(&[tag::SEQUENCE, 0x80])?;
            out.write_all(&asn1::small_int(1))?;
            out.write_all(&asn1::set_of(vec![asn1::alg_id_null(hash.oid())]))?;
            super::write_econtent_start(&mut out)
        };
        start().map_err(Error::Io)?;
        Ok(SignedDataWriter {
            seg: Some(asn1::SegmentWriter::new(out, super::SEGMENT)),
            hasher: hash.hasher(),
            signers: signers.to_vec(),
            include_cert,
        })
    }

    /// Writes the trailer (certificates, signer info, end-of-contents) and returns the output.
    pub fn finish(mut self) -> Result<W> {
        let seg = self
            .seg
            .take()
            .ok_or_else(|| Error::Crypto("signed data writer already finished".into()))?;
        let mut out = seg.finish().map_err(Error::Io)?;
        let hash = self.hasher.algorithm();
        let digest = self.hasher.clone().finish();
        let now = SystemTime::now();
        let signer_infos = self
            .signers
            .iter()
            .map(|s| build_signer_info(s, hash, &digest, now))
            .collect::<Result<Vec<_>>>()?;
        let mut tail = Vec::new();
        tail.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // OCTET STRING, [0], EncapsulatedContentInfo
        if self.include_cert {
            let mut certs: Vec<Vec<u8>> = Vec::new();
            for s in &self.signers {
                for c in std::iter::once(s.certificate()).chain(s.chain()) {
                    if !certs.iter().any(|d| d.as_slice() == c.der()) {
                        certs.push(c.der().to_vec());
                    }
                }
            }
            let parts: Vec<&[u8]> = certs.iter().map(|c| c.as_slice()).collect();
            tail.extend_from_slice(&asn1::cons(tag::CTX0_C, &parts));
        }
        tail.extend_from_slice(&asn1::set_of(signer_infos));
        tail.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // SignedData, [0], ContentInfo
        out.write_all(&tail).map_err(Error::Io)?;
        Ok(out)
    }
}

impl<W: Write> Write for SignedDataWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let seg = self
            .seg
            .as_mut()
            .ok_or_else(|| std::io::Error::other("signed data writer finished"))?;
        let n = seg.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.seg.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

fn attribute(o: &[u8], value: &[u8]) -> Vec<u8> {
    asn1::seq(&[&asn1::oid_tlv(o), &asn1::cons(tag::SET, &[value])])
}

fn build_signer_info(
    signer: &Identity,
    hash: HashAlgorithm,
    digest: &[u8],
    now: SystemTime,
) -> Result<Vec<u8>> {
    let attrs = asn1::set_of(vec![
        attribute(oid::ATTR_CONTENT_TYPE, &asn1::oid_tlv(oid::DATA)),
        attribute(oid::ATTR_SIGNING_TIME, &super::encode_time(now)),
        attribute(
            oid::ATTR_MESSAGE_DIGEST,
            &asn1::tlv(tag::OCTET_STRING, digest),
        ),
    ]);
    // The signature covers the DER SET OF; in SignerInfo it is tagged [0] IMPLICIT.
    let signature = signer.key().sign(hash, &attrs)?;
    let mut attrs_implicit = attrs.clone();
    attrs_implicit[0] = tag::CTX0_C;
    Ok(asn1::seq(&[
        &asn1::small_int(1),
        &signer.certificate().issuer_and_serial(),
        &asn1::alg_id_null(hash.oid()),
        &attrs_implicit,
        &asn1::alg_id_null(oid::RSA_ENCRYPTION),
        &asn1::tlv(tag::OCTET_STRING, &signature),
    ]))
}

/// Signs `content` in memory (small data such as receipts): encapsulated SignedData.
pub fn sign_bytes(
    content: &[u8],
    signer: &Identity,
    hash: HashAlgorithm,
    include_cert: bool,
) -> Result<Vec<u8>> {
    let mut w = SignedDataWriter::new(Vec::new(), signer, hash, include_cert)?;
    w.write_all(content).map_err(Error::Io)?;
    w.finish()
}

/// Verifies an in-memory SignedData. With `detached` the content is supplied separately (and
/// any encapsulated content must equal it). Returns the signed content and the signer.
pub fn verify_bytes(
    cms: &[u8],
    detached: Option<&[u8]>,
    partner: Option<&Certificate>,
) -> Result<(Vec<u8>, VerifiedSigner)> {
    let mut r = SignedDataReader::new(cms)?;
    let mut content = Vec::new();
    r.read_to_end(&mut content).map_err(Error::from_io)?;
    if let Some(d) = detached {
        if r.is_detached() {
            r.supply_detached_content(d)?;
            content = d.to_vec();
        } else if content != d {
            return Err(Error::InvalidSignature(
                "the signed content differs from the expected content".into(),
            ));
        }
    }
    let signer = r.verify(partner)?;
    Ok((content, signer))
}

/// The signer of a verified SignedData.
#[derive(Debug, Clone)]
pub struct VerifiedSigner {
    /// The certificate whose key made the valid signature.
    pub certificate: Certificate,
    /// Digest algorithm used.
    pub hash: HashAlgorithm,
    /// Whether the certificate came from the message itself (then check its trust!).
    pub certificate_from_message: bool,
}

enum State {
    Content {
        e0: End,
        eci: End,
        stream: OctetStream,
    },
    Detached,
    Trailer,
    Done,
}

/// Streaming SignedData decoder: read the content, then call [`SignedDataReader::verify`].
pub struct SignedDataReader<R: Read> {
    r: StreamReader<R>,
    sd: End,
    c0: End,
    ci: End,
    econtent_type: Vec<u8>,
    hashers: Vec<Hasher>,
    state: State,
    digests: Vec<(HashAlgorithm, Digest)>,
    certificates: Vec<Certificate>,
    signer_infos: Vec<u8>,
    detached: bool,
}

impl<R: Read> SignedDataReader<R> {
    /// Parses the SignedData header from `input`.
    pub fn new(input: R) -> Result<Self> {
        let mut r = StreamReader::new(input, L);
        let [ci, c0, sd] = open_versioned(&mut r, oid::SIGNED_DATA, "SignedData", 5)?;
        let algs_raw = r.read_element("digestAlgorithms")?;
        let algs = asn1::parse_one(&algs_raw, L)?;
        let mut hashers: Vec<Hasher> = Vec::new();
        for a in algs.children(L) {
            let a = a?;
            let o = a.children(L).need("digest algorithm")?;
            if let Some(h) = HashAlgorithm::from_oid(o.content)
                && !hashers.iter().any(|x| x.algorithm() == h)
            {
                hashers.push(h.hasher());
            }
        }
        if hashers.is_empty() {
            // Some producers leave digestAlgorithms empty; the signer infos come after the
            // content, so hash with every supported algorithm rather than buffer the content.
            tracing::debug!("SignedData announces no known digest algorithm; hashing with all");
            hashers = [
                HashAlgorithm::Sha1,
                HashAlgorithm::Sha256,
                HashAlgorithm::Sha384,
                HashAlgorithm::Sha512,
            ]
            .into_iter()
            .map(HashAlgorithm::hasher)
            .collect();
        }
        let (eci, econtent_type, content) = open_econtent(&mut r)?;
        let (state, detached) = match content {
            Some((e0, stream)) => (State::Content { e0, eci, stream }, false),
            None => (State::Detached, true),
        };
        Ok(SignedDataReader {
            r,
            sd,
            c0,
            ci,
            econtent_type,
            hashers,
            state,
            digests: Vec::new(),
            certificates: Vec::new(),
            signer_infos: Vec::new(),
            detached,
        })
    }

    /// True if the message carries no content (detached signature).
    pub fn is_detached(&self) -> bool {
        self.detached
    }

    /// Supplies the content of a detached signature (small data; hashed in one go).
    pub fn supply_detached_content(&mut self, content: &[u8]) -> Result<()> {
        if !self.detached {
            return Err(Error::InvalidArgument(
                "the signature is not detached; its content is encapsulated".into(),
            ));
        }
        for h in &mut self.hashers {
            h.update(content);
        }
        Ok(())
    }

    /// Certificates included in the message (after the content was read).
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    fn read_trailer(&mut self) -> Result<()> {
        // certificates [0] IMPLICIT, crls [1] IMPLICIT, signerInfos SET
        if self.r.peek_byte()? == Some(tag::CTX0_C) {
            let raw = self.r.read_element("certificates")?;
            let t = asn1::parse_one(&raw, L)?;
            for c in t.children(L) {
                let c = c?;
                if c.tag != tag::SEQUENCE {
                    continue; // attribute certificates and others are not used
                }
                let der = asn1::to_definite(&c, L)?;
                match Certificate::from_der(&der) {
                    Ok(cert) => self.certificates.push(cert),
                    Err(e) => tracing::debug!("ignoring unparsable certificate in SignedData: {e}"),
                }
            }
        }
        if self.r.peek_byte()? == Some(tag::CTX1_C) {
            self.r.skip_element(0)?;
        }
        self.signer_infos = self.r.read_element("signerInfos")?;
        self.r.close(self.sd, "SignedData")?;
        self.r.close(self.c0, "ContentInfo content")?;
        self.r.close(self.ci, "ContentInfo")?;
        expect_eof(&mut self.r, "SignedData")
    }

    fn step(&mut self, out: &mut [u8]) -> Result<usize> {
        loop {
            match &mut self.state {
                State::Content { stream, e0, eci } => {
                    let n = stream.read(&mut self.r, out)?;
                    if n > 0 {
                        for h in &mut self.hashers {
                            h.update(&out[..n]);
                        }
                        return Ok(n);
                    }
                    let (e0, eci) = (*e0, *eci);
                    self.r.close(e0, "eContent")?;
                    self.r.close(eci, "EncapsulatedContentInfo")?;
                    self.state = State::Trailer;
                }
                State::Detached => self.state = State::Trailer,
                State::Trailer => {
                    self.read_trailer()?;
                    self.state = State::Done;
                }
                State::Done => return Ok(0),
            }
        }
    }

    /// Verifies the signature after the content was read to the end (any unread content is
    /// read and discarded). With `partner`, only signatures by that certificate count;
    /// without it, the signer certificate must be included in the message and the caller
    /// must check its trust ([`VerifiedSigner::certificate_from_message`]).
    pub fn verify(self, partner: Option<&Certificate>) -> Result<VerifiedSigner> {
        self.verify_any(partner.as_slice())
    }

    /// Like [`SignedDataReader::verify`] with several acceptable partner certificates (the
    /// partner's old and new certificate during a rollover); an empty slice means none.
    pub fn verify_any(mut self, partners: &[&Certificate]) -> Result<VerifiedSigner> {
        let mut sink = vec![0u8; 8192];
        while self.step(&mut sink)? > 0 {}
        self.digests = std::mem::take(&mut self.hashers)
            .into_iter()
            .map(|h| (h.algorithm(), h.finish_digest()))
            .collect();
        let infos = asn1::parse_one(&self.signer_infos, L)?.expect(tag::SET, L, "signerInfos")?;
        let mut last_err = None;
        let mut any = false;
        for si in infos.children(L) {
            any = true;
            let si = si?;
            if partners.is_empty() {
                match self.verify_one(&si, None) {
                    Ok(v) => return Ok(v),
                    Err(e) => last_err = Some(e),
                }
            }
            for p in partners {
                match self.verify_one(&si, Some(p)) {
                    Ok(v) => return Ok(v),
                    Err(e) => last_err = Some(e),
                }
            }
        }
        if !any {
            return Err(Error::InvalidSignature(
                "the file carries no signature".into(),
            ));
        }
        Err(last_err.unwrap_or_else(|| Error::InvalidSignature("no valid signature".into())))
    }

    fn verify_one(
        &self,
        si: &asn1::Tlv<'_>,
        partner: Option<&Certificate>,
    ) -> Result<VerifiedSigner> {
        let mut c = si.children(L);
        let _version = c.need("SignerInfo version")?;
        let sid = c.need("signer identifier")?;
        let dalg = c.need("digestAlgorithm")?;
        let dalg_oid = dalg.children(L).need("digest algorithm")?;
        let hash = HashAlgorithm::from_oid(dalg_oid.content)
            .ok_or_else(|| Error::malformed(L, "unsupported digest algorithm in signature"))?;
        let signed_attrs = c.optional(tag::CTX0_C)?;
        let sig_alg = c.need("signatureAlgorithm")?;
        let sig_oid = sig_alg.children(L).need("signature algorithm")?;
        let signature = c.need("signature")?.octets(L)?;

        let (cert, from_message, sid_matches) = match partner {
            // The signer identifier is only a hint: a partner whose certificate was re-issued
            // with the same key, or who identifies by a key identifier our copy of the
            // certificate lacks, still produces a signature that verifies under the key.
            Some(p) => (p.clone(), false, p.matches_identifier(&sid)),
            None => {
                let cert = self
                    .certificates
                    .iter()
                    .find(|c| c.matches_identifier(&sid))
                    .ok_or_else(|| {
                        Error::InvalidSignature(
                            "no partner certificate configured and the signer certificate is not \
                             included in the file"
                                .into(),
                        )
                    })?;
                (cert.clone(), true, true)
            }
        };
        let sig_hash = match sig_oid.content {
            oid::RSA_ENCRYPTION => hash,
            oid::SHA1_WITH_RSA => HashAlgorithm::Sha1,
            oid::SHA256_WITH_RSA => HashAlgorithm::Sha256,
            oid::SHA384_WITH_RSA => HashAlgorithm::Sha384,
            oid::SHA512_WITH_RSA => HashAlgorithm::Sha512,
            _ => {
                return Err(Error::malformed(
                    L,
                    "unsupported signature algorithm (only RSA PKCS#1 v1.5 is supported)",
                ));
            }
        };
        if sig_hash != hash {
            return Err(Error::malformed(
                L,
                "signature and digest algorithms disagree",
            ));
        }
        let digest = self
            .digests
            .iter()
            .find(|(h, _)| *h == hash)
            .map(|(_, d)| d)
            .ok_or_else(|| {
                Error::malformed(
                    L,
                    "signer uses a digest algorithm not announced in the header",
                )
            })?;
        let params: &'static sig::RsaParameters = match hash {
            HashAlgorithm::Sha1 => &sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            HashAlgorithm::Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            HashAlgorithm::Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            HashAlgorithm::Sha512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        };
        let key = UnparsedPublicKey::new(params, cert.rsa_public_key()?);
        match signed_attrs {
            Some(attrs) => {
                self.check_attributes(&attrs, digest.as_ref())?;
                let mut der = asn1::to_definite(&attrs, L)?;
                der[0] = tag::SET;
                key.verify(&der, &signature)
            }
            None => key.verify_digest(digest, &signature),
        }
        .map_err(|_| {
            Error::InvalidSignature(if sid_matches {
                format!("signature by {} does not match the content", cert.subject())
            } else {
                format!(
                    "the file is not signed by the partner certificate {} (serial {})",
                    cert.subject(),
                    cert.serial_number()
                )
            })
        })?;
        if !sid_matches {
            tracing::debug!(
                partner = cert.subject(),
                "signature verified with the partner key although the signer identifier differs"
            );
        }
        Ok(VerifiedSigner {
            certificate: cert,
            hash,
            certificate_from_message: from_message,
        })
    }

    fn check_attributes(&self, attrs: &asn1::Tlv<'_>, digest: &[u8]) -> Result<()> {
        let mut md = None;
        let mut ct = None;
        for a in attrs.children(L) {
            let a = a?;
            let mut c = a.children(L);
            let t = c.need("attribute type")?;
            let vals = c.need("attribute values")?;
            let first = vals.children(L).need("attribute value")?;
            match t.content {
                oid::ATTR_MESSAGE_DIGEST => md = Some(first.octets(L)?),
                oid::ATTR_CONTENT_TYPE => ct = Some(first.content.to_vec()),
                _ => {}
            }
        }
        let md = md.ok_or_else(|| Error::malformed(L, "messageDigest attribute missing"))?;
        if !constant_time_eq(&md, digest) {
            return Err(Error::InvalidSignature(
                "the content does not match the signed digest (file altered)".into(),
            ));
        }
        if ct.is_some_and(|ct| ct != self.econtent_type) {
            return Err(Error::InvalidSignature(
                "contentType attribute does not match the content type".into(),
            ));
        }
        Ok(())
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

impl<R: Read> Read for SignedDataReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step(buf).map_err(Error::into_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::rcgen_identity;

    #[test]
    fn roundtrip_every_hash_with_and_without_cert() {
        let (id, _, _) = rcgen_identity("Signer");
        for hash in [
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha512,
        ] {
            for include in [false, true] {
                let cms = sign_bytes(b"hello oftp", &id, hash, include).unwrap();
                let (content, v) = verify_bytes(&cms, None, Some(id.certificate())).unwrap();
                assert_eq!(content, b"hello oftp");
                assert_eq!(v.hash, hash);
                let r = verify_bytes(&cms, None, None);
                assert_eq!(r.is_ok(), include, "{hash} include={include}");
            }
        }
    }

    #[test]
    fn several_signers_and_partners() {
        let (old, _, _) = rcgen_identity("Old");
        let (new, _, _) = rcgen_identity("New");
        let (other, _, _) = rcgen_identity("Other");
        let mut w =
            SignedDataWriter::with_signers(Vec::new(), &[&old, &new], HashAlgorithm::Sha256, false)
                .unwrap();
        w.write_all(b"rollover").unwrap();
        let cms = w.finish().unwrap();
        for p in [&old, &new] {
            let (_, v) = verify_bytes(&cms, None, Some(p.certificate())).unwrap();
            assert_eq!(&v.certificate, p.certificate());
        }
        assert!(verify_bytes(&cms, None, Some(other.certificate())).is_err());
        // One signer, two acceptable partner certificates.
        let cms = sign_bytes(b"x", &new, HashAlgorithm::Sha512, false).unwrap();
        let mut r = SignedDataReader::new(&cms[..]).unwrap();
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        let v = r
            .verify_any(&[other.certificate(), new.certificate()])
            .unwrap();
        assert_eq!(&v.certificate, new.certificate());
    }

    #[test]
    fn empty_digest_algorithms_are_tolerated() {
        let (id, _, _) = rcgen_identity("Signer");
        let cms = sign_bytes(b"abc", &id, HashAlgorithm::Sha256, false).unwrap();
        let set = asn1::set_of(vec![asn1::alg_id_null(HashAlgorithm::Sha256.oid())]);
        let pos = cms.windows(set.len()).position(|w| w == set).unwrap();
        // The containers around it use indefinite lengths, so no length needs fixing.
        let patched = [&cms[..pos], &[tag::SET, 0][..], &cms[pos + set.len()..]].concat();
        let (content, v) = verify_bytes(&patched, None, Some(id.certificate())).unwrap();
        assert_eq!(
            (content.as_slice(), v.hash),
            (&b"abc"[..], HashAlgorithm::Sha256)
        );
    }

    #[test]
    fn wrong_partner_and_tampering_fail() {
        let (id, _, _) = rcgen_identity("Signer");
        let (other, _, _) = rcgen_identity("Other");
        let cms = sign_bytes(b"hello oftp", &id, HashAlgorithm::Sha256, false).unwrap();
        let e = verify_bytes(&cms, None, Some(other.certificate())).unwrap_err();
        assert_eq!(e.efna_reason(), 21, "{e}");
        let mut bad = cms.clone();
        let pos = bad.windows(10).position(|w| w == b"hello oftp").unwrap();
        bad[pos] ^= 1;
        let e = verify_bytes(&bad, None, Some(id.certificate())).unwrap_err();
        assert!(matches!(e, Error::InvalidSignature(_)), "{e}");
        // Truncation at every position is an error, not a panic.
        for i in (0..cms.len()).step_by(7) {
            assert!(verify_bytes(&cms[..i], None, Some(id.certificate())).is_err());
        }
    }
}
