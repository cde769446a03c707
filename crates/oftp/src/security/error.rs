//! Why a security step for a session failed: a partner certificate, secure authentication, a
//! signed receipt, a certificate exchange. The messages are for an operator; the connection
//! driver picks the reason code sent to the partner (see `connection::error`).

use std::path::PathBuf;

/// Why a security step failed (see the module doc).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// No security settings for the partner with this SSID code.
    #[error("no security settings for {0}")]
    NoSettings(String),
    /// The partner has no certificate for this use.
    #[error("no {usage} certificate configured for partner {partner}")]
    NoCertificate {
        /// What the certificate is for.
        usage: &'static str,
        /// The partner name.
        partner: String,
    },
    /// The partner's certificate for this use fails validation (period, chain, revocation).
    #[error("{usage} certificate of partner {partner} is not acceptable: {error}")]
    CertificateNotAcceptable {
        /// What the certificate is for.
        usage: &'static str,
        /// The partner name.
        partner: String,
        /// Why.
        #[source]
        error: oftp_security::ValidationError,
    },
    /// Secure authentication is not allowed or not possible with the partner (ESID 12).
    #[error(transparent)]
    SecureAuth(#[from] SecureAuthRefusal),
    /// The random number generator failed.
    #[error("the random number generator failed")]
    NoRandom,
    /// Our challenge envelope does not fit AUCHCHAL.
    #[error("the challenge envelope exceeds 65535 octets (key too large)")]
    ChallengeTooLarge,
    /// We have no key to open a partner's challenge with.
    #[error("no authentication key is configured")]
    NoAuthenticationKey,
    /// A partner's challenge could not be opened with our key.
    #[error("cannot open the challenge: {0}")]
    CannotOpenChallenge(#[source] oftp_security::Error),
    /// We have no key to sign end responses with.
    #[error(
        "no receipt-signing key is configured ([security.receipt_signing], or \
         [security.identity] for every purpose)"
    )]
    NoReceiptKey,
    /// No partner with this SFID code has a certificate to verify its receipts with.
    #[error("no certificate to verify receipts of {0}")]
    NoReceiptCertificate(String),
    /// A partner's receipt signature does not verify.
    #[error("receipt signature of {partner} is not valid: {error}")]
    InvalidReceipt {
        /// The partner name.
        partner: String,
        /// Why.
        #[source]
        error: oftp_security::Error,
    },
    /// A certificate request from an originator that is not a configured partner.
    #[error("{0} is not a configured partner; certificate requests are answered only for partners")]
    NotAPartner(String),
    /// We have no certificate to answer a certificate request with.
    #[error("no local certificate is configured ([security.identity] or [security.signing])")]
    NoLocalCertificate,
    /// A received certificate exchange file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    CannotReadExchange {
        /// The received file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// A received certificate exchange file carries no certificate.
    #[error("no certificate in the exchange file{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NoExchangeCertificate(Option<oftp_security::Error>),
    /// A received certificate could not be stored.
    #[error("cannot store {}: {error}", path.display())]
    CannotStoreCertificate {
        /// Where it was to go.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The cryptography failed (cipher suite, CMS, signing).
    #[error(transparent)]
    Crypto(#[from] oftp_security::Error),
    /// Writing the challenge into its envelope failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why secure authentication is refused with a partner (the ESID 12 text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecureAuthRefusal {
    /// The partner's policy forbids it and the peer asked for it.
    #[error("secure authentication is not allowed for {0}")]
    NotAllowed(String),
    /// The partner's policy requires it and the peer did not ask for it.
    #[error("secure authentication is required for {0}")]
    Required(String),
    /// Required, but a certificate or our key is missing.
    #[error(
        "secure authentication is required for {0} but its authentication certificate or our \
         authentication identity is missing"
    )]
    RequiredButIncapable(String),
    /// The peer asked for it, but a certificate or our key is missing.
    #[error(
        "{0} asks for secure authentication but its authentication certificate or our \
         authentication identity is missing"
    )]
    AskedButIncapable(String),
}
