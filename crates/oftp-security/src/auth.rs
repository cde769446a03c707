//! Secure authentication challenge (RFC 5024 4.2.3-4.2.4, 5.3.17 AUCH, 5.3.18 AURP).
//!
//! The challenger draws 20 random bytes, envelopes them (CMS EnvelopedData) to the
//! authentication certificate of the partner named in the SSID, sends the envelope in AUCH
//! and compares the AURP answer in constant time. The answering side opens the envelope
//! with its key and returns the 20 bytes. A wrong answer ends the session with ESID 11.

use std::io::{Read, Write};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::cert::{Certificate, Identity};
use crate::cms::{EnvelopedDataReader, EnvelopedDataWriter};
use crate::error::{Error, Result};
use crate::suite::CipherSuite;

/// Length of the challenge (AURPRSP is 20 bytes).
pub const CHALLENGE_LEN: usize = 20;

/// A challenge we sent and whose answer we await.
pub struct PendingChallenge {
    expected: Zeroizing<[u8; CHALLENGE_LEN]>,
}

impl std::fmt::Debug for PendingChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingChallenge(***)")
    }
}

/// Creates a challenge for the partner: returns what to remember and the AUCHCHAL bytes.
pub fn create_challenge(
    partner_auth_cert: &Certificate,
    suite: CipherSuite,
) -> Result<(PendingChallenge, Vec<u8>)> {
    let mut expected = Zeroizing::new([0u8; CHALLENGE_LEN]);
    SystemRandom::new()
        .fill(&mut expected[..])
        .map_err(|_| Error::Crypto("random generator failed".into()))?;
    let mut w = EnvelopedDataWriter::new(Vec::new(), &[partner_auth_cert], suite.symmetric())?;
    w.write_all(&expected[..]).map_err(Error::Io)?;
    let envelope = w.finish()?;
    if envelope.len() > u16::MAX as usize {
        return Err(Error::InvalidArgument(
            "challenge envelope exceeds the 65535-byte AUCH limit (key too large)".into(),
        ));
    }
    Ok((PendingChallenge { expected }, envelope))
}

impl PendingChallenge {
    /// Checks the AURP response in constant time.
    pub fn verify_response(&self, response: &[u8]) -> bool {
        crate::cms::constant_time_eq(&self.expected[..], response)
    }
}

/// Opens a received AUCHCHAL with our key and returns the AURP response bytes.
pub fn answer_challenge(
    challenge: &[u8],
    identity: &Identity,
) -> Result<Zeroizing<[u8; CHALLENGE_LEN]>> {
    let mut r = EnvelopedDataReader::new(challenge, identity)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(CHALLENGE_LEN + 16));
    (&mut r)
        .take(1024)
        .read_to_end(&mut buf)
        .map_err(Error::from_io)?;
    if buf.len() != CHALLENGE_LEN {
        return Err(Error::Decryption(format!(
            "challenge must hold {CHALLENGE_LEN} bytes, got {}",
            buf.len()
        )));
    }
    let mut out = Zeroizing::new([0u8; CHALLENGE_LEN]);
    out.copy_from_slice(&buf);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::rcgen_identity;

    #[test]
    fn challenge_roundtrip_and_wrong_key() {
        let (partner, _, _) = rcgen_identity("Partner");
        let (other, _, _) = rcgen_identity("Other");
        for suite in [CipherSuite::TripleDesRsaSha1, CipherSuite::Aes256RsaSha256] {
            let (pending, auch) = create_challenge(partner.certificate(), suite).unwrap();
            let answer = answer_challenge(&auch, &partner).unwrap();
            assert!(pending.verify_response(&answer[..]));
            let mut wrong = *answer;
            wrong[19] ^= 1;
            assert!(!pending.verify_response(&wrong));
            assert!(!pending.verify_response(&answer[..19]));
            assert!(answer_challenge(&auch, &other).is_err());
        }
        // Two challenges differ.
        let (a, _) = create_challenge(partner.certificate(), CipherSuite::Aes256RsaSha1).unwrap();
        let (b, _) = create_challenge(partner.certificate(), CipherSuite::Aes256RsaSha1).unwrap();
        assert_ne!(a.expected[..], b.expected[..]);
    }
}
