//! The crate's error type and its mapping to OFTP reason codes.
//!
//! The protocol crate owns the wire types; here the mapping functions return plain `u8` codes
//! ([`Error::efna_reason`], [`Error::nerp_reason`]) checked against RFC 5024 sections 5.3.10
//! and 5.3.14.

use std::fmt;

use crate::validate::ValidationError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which CMS layer an error was found in; decides the reason code sent to the partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// SignedData (file signature).
    Signed,
    /// CompressedData (zlib).
    Compressed,
    /// EnvelopedData (encryption).
    Enveloped,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Signed => "signed data",
            Layer::Compressed => "compressed data",
            Layer::Enveloped => "enveloped (encrypted) data",
        })
    }
}

/// Errors of the security services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cipher suite code is not one of 01..06.
    #[error("cipher suite {0:02} is not supported (supported: 01-06)")]
    UnsupportedCipherSuite(u8),
    /// Reading or writing a file or stream failed.
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// A certificate, key or key store could not be loaded or parsed.
    #[error("cannot load {what}: {detail}")]
    Load {
        /// What was being loaded (file name or description).
        what: String,
        /// Why it failed.
        detail: String,
    },
    /// No certificate in a store matched the selector.
    #[error("no certificate matches {0:?}")]
    NoMatchingCertificate(String),
    /// A certificate is unusable for the requested operation (wrong key type, no key...).
    #[error("certificate unusable: {0}")]
    UnusableCertificate(String),
    /// A certificate did not pass validation.
    #[error("certificate not trusted: {0}")]
    Untrusted(#[from] ValidationError),
    /// A received signature does not verify (EFNA 21 / NERP 31).
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// A received file cannot be decrypted (EFNA 22 / NERP 33).
    #[error("decryption failed: {0}")]
    Decryption(String),
    /// A received file cannot be decompressed (EFNA 23 / NERP 32).
    #[error("decompression failed: {0}")]
    Decompression(String),
    /// A received CMS structure is malformed or uses an unsupported algorithm.
    #[error("malformed or unsupported {layer}: {detail}")]
    Malformed {
        /// The layer being parsed.
        layer: Layer,
        /// What is wrong.
        detail: String,
    },
    /// A local cryptographic operation failed (random generation, signing, encryption).
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
    /// A value passed by the caller is invalid (field too long, wrong length...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub(crate) fn malformed(layer: Layer, detail: impl Into<String>) -> Self {
        Error::Malformed {
            layer,
            detail: detail.into(),
        }
    }

    pub(crate) fn load(what: impl Into<String>, detail: impl fmt::Display) -> Self {
        Error::Load {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// Wraps this error for transport through `std::io::Read`/`Write`.
    pub(crate) fn into_io(self) -> std::io::Error {
        match self {
            Error::Io(e) => e,
            other => std::io::Error::other(other),
        }
    }

    /// Recovers an error that a reader or writer of this crate transported through
    /// `std::io::Error` (e.g. from `read_to_end` on a [`crate::cms::ReceivePipeline`]).
    pub fn from_io(e: std::io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            match e.into_inner().map(|b| b.downcast::<Error>()) {
                Some(Ok(inner)) => *inner,
                Some(Err(other)) => Error::Io(std::io::Error::other(other)),
                None => Error::Io(std::io::Error::other("unknown I/O error")),
            }
        } else {
            Error::Io(e)
        }
    }

    /// The EFNA reason code (RFC 5024 5.3.10) to send when receiving a file fails with this
    /// error: 21 invalid file signature, 22 file decryption failure, 23 file decompression
    /// failure, 12 access method failure for local I/O, 99 otherwise.
    pub fn efna_reason(&self) -> u8 {
        match self.kind() {
            Kind::Signature => 21,
            Kind::Decryption => 22,
            Kind::Decompression => 23,
            Kind::Io => 12,
            Kind::Other => 99,
        }
    }

    /// The NERP reason code (RFC 5024 5.3.14) for a file whose processing failed after it was
    /// accepted: 31 signature not valid, 32 decompression failed, 33 decryption failed,
    /// 34 file processing failed otherwise.
    pub fn nerp_reason(&self) -> u8 {
        match self.kind() {
            Kind::Signature => 31,
            Kind::Decompression => 32,
            Kind::Decryption => 33,
            Kind::Io | Kind::Other => 34,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Error::InvalidSignature(_)
            | Error::Malformed {
                layer: Layer::Signed,
                ..
            } => Kind::Signature,
            // An untrusted signer certificate makes the signature invalid for OFTP purposes.
            Error::Untrusted(_) => Kind::Signature,
            Error::Decryption(_)
            | Error::Malformed {
                layer: Layer::Enveloped,
                ..
            } => Kind::Decryption,
            Error::Decompression(_)
            | Error::Malformed {
                layer: Layer::Compressed,
                ..
            } => Kind::Decompression,
            Error::Io(_) => Kind::Io,
            _ => Kind::Other,
        }
    }
}

enum Kind {
    Signature,
    Decryption,
    Decompression,
    Io,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_follow_rfc_5024() {
        let sig = Error::InvalidSignature("x".into());
        assert_eq!((sig.efna_reason(), sig.nerp_reason()), (21, 31));
        let dec = Error::Decryption("x".into());
        assert_eq!((dec.efna_reason(), dec.nerp_reason()), (22, 33));
        let cmp = Error::Decompression("x".into());
        assert_eq!((cmp.efna_reason(), cmp.nerp_reason()), (23, 32));
        let m = Error::malformed(Layer::Enveloped, "bad");
        assert_eq!(m.efna_reason(), 22);
        let m = Error::malformed(Layer::Compressed, "bad");
        assert_eq!(m.nerp_reason(), 32);
        let io = Error::Io(std::io::Error::other("disk full"));
        assert_eq!((io.efna_reason(), io.nerp_reason()), (12, 34));
    }

    #[test]
    fn survives_io_transport() {
        let e = Error::Decryption("bad padding".into()).into_io();
        assert!(matches!(Error::from_io(e), Error::Decryption(_)));
        let plain = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        assert!(matches!(Error::from_io(plain), Error::Io(_)));
    }
}
