//! Signed end-to-end receipts: EERP and NERP signatures (RFC 5024 5.3.13, 5.3.14).
//!
//! The signed content is the concatenation of the fixed-width fields, each "taken in its
//! entirety, including any padding": `EERPDSN(26) EERPDATE(8) EERPTIME(10) EERPDEST(25)
//! EERPORIG(25) EERPHSH` and for NERP `... NERPORIG(25) NERPCREA(25) NERPHSH`. The signature
//! is a CMS SignedData with the content encapsulated (id-data). On receive, detached
//! signatures are accepted too, and for NERP also the content without NERPCREA (some
//! partners reuse their EERP routine for NERP; see the protocol notes). The EERP hash is the
//! hash of the transmitted (enveloped) file with the suite's algorithm: [`file_hash`].
//!
//! This module does not encode the EERP/NERP commands themselves (the proto crate does).

use std::io::Read;

use crate::cert::{Certificate, Identity};
use crate::cms::{self, VerifiedSigner};
use crate::error::{Error, Result};
use crate::suite::CipherSuite;

/// The fields of an EERP or NERP that the signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFields {
    /// Virtual file dataset name (up to 26 characters).
    pub dsn: String,
    /// Virtual file date, `CCYYMMDD`.
    pub date: String,
    /// Virtual file time, `HHMMSScccc`.
    pub time: String,
    /// EERPDEST/NERPDEST: the originator of the file (up to 25 characters).
    pub destination: String,
    /// EERPORIG/NERPORIG: the final recipient of the file (up to 25 characters).
    pub originator: String,
    /// NERPCREA: creator of the NERP; `None` for an EERP.
    pub nerp_creator: Option<String>,
    /// Hash of the transmitted file (EERPHSH/NERPHSH).
    pub file_hash: Vec<u8>,
}

fn field(out: &mut Vec<u8>, name: &str, value: &str, width: usize) -> Result<()> {
    if !value.is_ascii() || value.len() > width {
        return Err(Error::InvalidArgument(format!(
            "{name} must be at most {width} ASCII characters, got {value:?}"
        )));
    }
    out.extend_from_slice(value.as_bytes());
    out.resize(out.len() + width - value.len(), b' ');
    Ok(())
}

impl ReceiptFields {
    /// The byte string that is signed.
    pub fn signed_content(&self) -> Result<Vec<u8>> {
        self.content(true)
    }

    fn content(&self, with_creator: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(120 + self.file_hash.len());
        field(&mut out, "DSN", &self.dsn, 26)?;
        if self.date.len() != 8 || !self.date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidArgument(format!(
                "date must be CCYYMMDD, got {:?}",
                self.date
            )));
        }
        if self.time.len() != 10 || !self.time.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidArgument(format!(
                "time must be HHMMSScccc, got {:?}",
                self.time
            )));
        }
        out.extend_from_slice(self.date.as_bytes());
        out.extend_from_slice(self.time.as_bytes());
        field(&mut out, "destination", &self.destination, 25)?;
        field(&mut out, "originator", &self.originator, 25)?;
        if let (Some(c), true) = (&self.nerp_creator, with_creator) {
            field(&mut out, "NERP creator", c, 25)?;
        }
        out.extend_from_slice(&self.file_hash);
        Ok(out)
    }
}

/// Hash of the transmitted file for EERPHSH/NERPHSH, streamed.
pub fn file_hash<R: Read>(suite: CipherSuite, file: R) -> Result<Vec<u8>> {
    suite.hash().digest_reader(file).map_err(Error::Io)
}

/// Builds the EERPSIG/NERPSIG value (encapsulated SignedData, signer certificate omitted).
pub fn sign_receipt(
    fields: &ReceiptFields,
    identity: &Identity,
    suite: CipherSuite,
) -> Result<Vec<u8>> {
    cms::sign_bytes(&fields.signed_content()?, identity, suite.hash(), false)
}

/// Verifies a received EERPSIG/NERPSIG against the fields the caller expects (build them from
/// the receipt and put the hash *you* computed when sending into `file_hash`, so the check
/// also proves the partner acknowledges the exact file sent).
pub fn verify_receipt(
    signature: &[u8],
    fields: &ReceiptFields,
    partner: &Certificate,
) -> Result<VerifiedSigner> {
    let full = fields.signed_content()?;
    let mut candidates = vec![full];
    if fields.nerp_creator.is_some() {
        candidates.push(fields.content(false)?);
    }
    let mut last = None;
    for expected in &candidates {
        match cms::verify_bytes(signature, Some(expected), Some(partner)) {
            Ok((_, signer)) => return Ok(signer),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::InvalidSignature("receipt signature invalid".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::rcgen_identity;
    use crate::suite::HashAlgorithm;

    fn eerp() -> ReceiptFields {
        ReceiptFields {
            dsn: "ORDERS.0001".into(),
            date: "20261121".into(),
            time: "1200000001".into(),
            destination: "O0013000000ACME".into(),
            originator: "O0013000000PARTNER".into(),
            nerp_creator: None,
            file_hash: HashAlgorithm::Sha256.digest(b"the file"),
        }
    }

    #[test]
    fn content_layout_matches_rfc() {
        let c = eerp().signed_content().unwrap();
        assert_eq!(c.len(), 26 + 8 + 10 + 25 + 25 + 32);
        assert_eq!(&c[..26], b"ORDERS.0001               ");
        assert_eq!(&c[26..34], b"20261121");
        let mut n = eerp();
        n.nerp_creator = Some("O0013000000PARTNER".into());
        assert_eq!(n.signed_content().unwrap().len(), c.len() + 25);
        n.dsn = "X".repeat(27);
        assert!(n.signed_content().is_err());
    }

    #[test]
    fn sign_and_verify_eerp_and_nerp() {
        let (id, _, _) = rcgen_identity("Recipient");
        let (other, _, _) = rcgen_identity("Other");
        let f = eerp();
        let sig = sign_receipt(&f, &id, CipherSuite::Aes256RsaSha256).unwrap();
        verify_receipt(&sig, &f, id.certificate()).unwrap();
        assert!(verify_receipt(&sig, &f, other.certificate()).is_err());
        let mut changed = f.clone();
        changed.file_hash[0] ^= 1;
        let e = verify_receipt(&sig, &changed, id.certificate()).unwrap_err();
        assert_eq!(e.nerp_reason(), 31);

        let mut n = f.clone();
        n.nerp_creator = Some("O0013000000PARTNER".into());
        let sig = sign_receipt(&n, &id, CipherSuite::TripleDesRsaSha1).unwrap();
        verify_receipt(&sig, &n, id.certificate()).unwrap();
        // A NERP signed without the creator field (partner quirk) is accepted.
        let quirk = cms::sign_bytes(
            &f.signed_content().unwrap(),
            &id,
            HashAlgorithm::Sha1,
            false,
        )
        .unwrap();
        verify_receipt(&quirk, &n, id.certificate()).unwrap();
    }
}
