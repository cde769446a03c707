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

/// Secure authentication and signed receipts: the keys and checks the connection driver needs.
impl SecurityContext {
    /// Our challenge to the partner with SSID code `ssid` (RFC 5024 4.2.3): 20 random octets
    /// enveloped in CMS to the partner's authentication certificate with the partner's cipher
    /// suite. Returns the AUCHCHAL bytes and the octets the AURP must return.
    pub fn create_challenge(&self, ssid: &str) -> Result<(Vec<u8>, [u8; 20]), String> {
        let partner = self
            .partner_by_ssid(ssid)
            .ok_or_else(|| format!("no security settings for {}", ssid.trim_end()))?;
        let cert = self.partner_cert(partner, PartnerCertUse::Authentication)?;
        let suite =
            CipherSuite::from_code(partner.config.send.cipher_suite).map_err(|e| e.to_string())?;
        let mut expected = [0u8; 20];
        aws_lc_rs::rand::fill(&mut expected)
            .map_err(|_| "the random number generator failed".to_owned())?;
        let mut w =
            oftp_security::cms::EnvelopedDataWriter::new(Vec::new(), &[&cert], suite.symmetric())
                .map_err(|e| e.to_string())?;
        w.write_all(&expected).map_err(|e| e.to_string())?;
        let envelope = w.finish().map_err(|e| e.to_string())?;
        if envelope.len() > usize::from(u16::MAX) {
            return Err("the challenge envelope exceeds 65535 octets (key too large)".into());
        }
        Ok((envelope, expected))
    }

    /// Our answer (AURP) to a challenge (AUCHCHAL) enveloped to our authentication key.
    pub fn answer_challenge(&self, challenge: &[u8]) -> Result<[u8; 20], String> {
        let id = self
            .identity(CertificateUse::SessionAuthentication)
            .ok_or_else(|| "no authentication key is configured".to_owned())?;
        let answer = oftp_security::auth::answer_challenge(challenge, id)
            .map_err(|e| format!("cannot open the challenge: {e}"))?;
        Ok(*answer)
    }

    /// Signs an EERP/NERP (EERPSIG/NERPSIG) with our receipt-signing key and `suite`'s hash.
    pub fn sign_receipt(
        &self,
        fields: &oftp_security::receipt::ReceiptFields,
        suite: u8,
    ) -> Result<Vec<u8>, String> {
        let id = self
            .identity(CertificateUse::ReceiptSigning)
            .ok_or_else(|| {
                "no receipt-signing key is configured ([security.receipt_signing], or \
                 [security.identity] for every purpose)"
                    .to_owned()
            })?;
        let suite = CipherSuite::from_code(suite).map_err(|e| e.to_string())?;
        oftp_security::receipt::sign_receipt(fields, id, suite).map_err(|e| e.to_string())
    }

    /// Verifies a received EERP/NERP signature of the final recipient `recipient_sfid`
    /// against the partner's receipt certificate (encapsulated or detached signatures).
    pub fn verify_receipt(
        &self,
        recipient_sfid: &str,
        signature: &[u8],
        fields: &oftp_security::receipt::ReceiptFields,
    ) -> Result<(), String> {
        let partner = self.partner_by_sfid(recipient_sfid).ok_or_else(|| {
            format!(
                "no certificate to verify receipts of {}",
                recipient_sfid.trim_end()
            )
        })?;
        let cert = self.partner_cert(partner, PartnerCertUse::Receipt)?;
        oftp_security::receipt::verify_receipt(signature, fields, &cert)
            .map(|_| ())
            .map_err(|e| format!("receipt signature of {} is not valid: {e}", partner.name))
    }

    /// Whether end responses from `recipient_sfid` must carry a valid signature.
    pub fn requires_signed_receipts(&self, recipient_sfid: &str) -> bool {
        self.partner_by_sfid(recipient_sfid)
            .is_some_and(|p| p.config.require_signed_receipts)
    }
}
