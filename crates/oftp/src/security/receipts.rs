//! The keys and checks the connection driver needs for secure authentication (the AUCH
//! challenge we send and the AURP answer to one we receive, RFC 5024 sections 4.2.3, 4.2.4,
//! 5.3.17, 5.3.18) and for signed end responses (signing our EERP/NERP, verifying the
//! partner's, and whether the partner's must be signed; EERPSIG/NERPSIG, RFC 5024 sections
//! 4.3.6, 4.3.7, 5.3.13, 5.3.14).
//!
//! Not here: when these happen in a session and what is sent (the connection driver), the
//! CMS and receipt encodings (`oftp_security::auth`, `oftp_security::receipt`).

use std::io::Write;

use oftp_security::{CertificateUse, CipherSuite};

use super::context::{PartnerCertUse, SecurityContext};
use super::error::SecurityError;

/// Secure authentication and signed receipts: the keys and checks the connection driver needs.
impl SecurityContext {
    /// Our challenge to the partner with SSID code `ssid` (RFC 5024 4.2.3): 20 random octets
    /// enveloped in CMS to the partner's authentication certificate with the partner's cipher
    /// suite. Returns the AUCHCHAL bytes and the octets the AURP must return.
    pub fn create_challenge(&self, ssid: &str) -> Result<(Vec<u8>, [u8; 20]), SecurityError> {
        let partner = self
            .partner_by_ssid(ssid)
            .ok_or_else(|| SecurityError::NoSettings(ssid.to_owned()))?;
        let cert = self.partner_cert(partner, PartnerCertUse::Authentication)?;
        let suite = CipherSuite::from_code(partner.config.send.cipher_suite)?;
        let mut expected = [0u8; 20];
        aws_lc_rs::rand::fill(&mut expected).map_err(|_| SecurityError::NoRandom)?;
        let mut w =
            oftp_security::cms::EnvelopedDataWriter::new(Vec::new(), &[&cert], suite.symmetric())?;
        w.write_all(&expected)?;
        let envelope = w.finish()?;
        if envelope.len() > usize::from(u16::MAX) {
            return Err(SecurityError::ChallengeTooLarge);
        }
        Ok((envelope, expected))
    }

    /// Our answer (AURP) to a challenge (AUCHCHAL) enveloped to our authentication key.
    pub fn answer_challenge(&self, challenge: &[u8]) -> Result<[u8; 20], SecurityError> {
        let id = self
            .identity(CertificateUse::SessionAuthentication)
            .ok_or(SecurityError::NoAuthenticationKey)?;
        let answer = oftp_security::auth::answer_challenge(challenge, id)
            .map_err(SecurityError::CannotOpenChallenge)?;
        Ok(*answer)
    }

    /// Signs an EERP/NERP (EERPSIG/NERPSIG) with our receipt-signing key and `suite`'s hash.
    pub fn sign_receipt(
        &self,
        fields: &oftp_security::receipt::ReceiptFields,
        suite: u8,
    ) -> Result<Vec<u8>, SecurityError> {
        let id = self
            .identity(CertificateUse::ReceiptSigning)
            .ok_or(SecurityError::NoReceiptKey)?;
        let suite = CipherSuite::from_code(suite)?;
        Ok(oftp_security::receipt::sign_receipt(fields, id, suite)?)
    }

    /// Verifies a received EERP/NERP signature of the final recipient `recipient_sfid`
    /// against the partner's receipt certificate (encapsulated or detached signatures).
    pub fn verify_receipt(
        &self,
        recipient_sfid: &str,
        signature: &[u8],
        fields: &oftp_security::receipt::ReceiptFields,
    ) -> Result<(), SecurityError> {
        let partner = self
            .partner_by_sfid(recipient_sfid)
            .ok_or_else(|| SecurityError::NoReceiptCertificate(recipient_sfid.to_owned()))?;
        let cert = self.partner_cert(partner, PartnerCertUse::Receipt)?;
        oftp_security::receipt::verify_receipt(signature, fields, &cert)
            .map(|_| ())
            .map_err(|error| SecurityError::InvalidReceipt {
                partner: partner.name.clone(),
                error,
            })
    }

    /// Whether end responses from `recipient_sfid` must carry a valid signature.
    pub fn requires_signed_receipts(&self, recipient_sfid: &str) -> bool {
        self.partner_by_sfid(recipient_sfid)
            .is_some_and(|p| p.config.require_signed_receipts)
    }
}
