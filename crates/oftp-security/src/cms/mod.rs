//! Streaming CMS (RFC 5652, RFC 3274) for OFTP file services (RFC 5024 section 6).
//!
//! Sending: [`SignedDataWriter`], [`CompressedDataWriter`] and [`EnvelopedDataWriter`] are
//! `std::io::Write` adapters that emit BER with indefinite lengths (the form `openssl cms
//! -stream` and BouncyCastle's stream generators produce): each wraps the next, and the content
//! is cut into definite-length OCTET STRING segments of [`SEGMENT`] bytes. [`SendPipeline`]
//! composes them in the order RFC 5024 requires (sign -> compress -> encrypt).
//!
//! Receiving: [`SignedDataReader`], [`CompressedDataReader`] and [`EnvelopedDataReader`] are
//! `std::io::Read` adapters that parse BER or DER incrementally (headers one at a time, content
//! streamed) and yield the inner content; [`ReceivePipeline`] peels the layers the SFID
//! announced (or detects them) and verifies the signature at the end.
//!
//! Memory: every stage holds a fixed-size buffer (at most a segment, a cipher block and a
//! zlib window), never the file; only the small structures (certificates, signer and recipient
//! infos) are read into memory, bounded by 4 MiB each. No temporary files are written.
//!
//! Not supported: key agreement/KEK/password recipients, RSA-OAEP, RSA-PSS and EC
//! signatures, authenticated encryption, counter-signatures.

mod compressed;
mod enveloped;
mod pipeline;
mod signed;

use std::io::{Read, Write};

pub use compressed::{CompressedDataReader, CompressedDataWriter};
pub use enveloped::{EnvelopedDataReader, EnvelopedDataWriter};
pub use pipeline::{
    ContentKind, ReceiveOptions, ReceivePipeline, ReceiveReport, SendOptions, SendPipeline,
    detect_content_kind,
};
pub(crate) use signed::constant_time_eq;
pub use signed::{SignedDataReader, SignedDataWriter, VerifiedSigner, sign_bytes, verify_bytes};

use crate::asn1::{self, oid, tag};
use crate::error::{Error, Layer, Result};

/// Size of the OCTET STRING segments written (and of the internal read buffers).
pub const SEGMENT: usize = 16 * 1024;

/// Writes `ContentInfo { contentType, [0] EXPLICIT` with indefinite lengths.
fn write_content_info_start<W: Write>(w: &mut W, content_type: &[u8]) -> std::io::Result<()> {
    w.write_all(&[tag::SEQUENCE, 0x80])?;
    w.write_all(&asn1::oid_tlv(content_type))?;
    w.write_all(&[tag::CTX0_C, 0x80])
}

/// Writes `EncapsulatedContentInfo { id-data, [0] EXPLICIT OCTET STRING (constructed)` start.
fn write_econtent_start<W: Write>(w: &mut W) -> std::io::Result<()> {
    w.write_all(&[tag::SEQUENCE, 0x80])?;
    w.write_all(&asn1::oid_tlv(oid::DATA))?;
    w.write_all(&[tag::CTX0_C, 0x80, tag::OCTET_STRING_C, 0x80])
}

fn write_eocs<W: Write>(w: &mut W, n: usize) -> std::io::Result<()> {
    for _ in 0..n {
        w.write_all(&asn1::EOC)?;
    }
    Ok(())
}

/// Opens `ContentInfo` on a stream and checks its type; returns the ends of the
/// ContentInfo and of its `[0]`.
fn open_content_info<R: Read>(
    r: &mut asn1::StreamReader<R>,
    expected: &[u8],
    what: &str,
) -> Result<(asn1::End, asn1::End)> {
    let layer = r.layer();
    let ci = r
        .open(tag::SEQUENCE, "ContentInfo")
        .map_err(|e| not_a(layer, what, e))?;
    let ct = r
        .read_oid("contentType")
        .map_err(|e| not_a(layer, what, e))?;
    if ct != expected {
        return Err(Error::malformed(
            layer,
            format!("expected {what}, found content type {}", describe_oid(&ct)),
        ));
    }
    let c0 = r.open(tag::CTX0_C, "content")?;
    Ok((ci, c0))
}

/// Opens a ContentInfo of type `expected` and the SEQUENCE of its content, and reads that
/// content's version, refusing one above `max_version`. Returns where the three end.
fn open_versioned<R: Read>(
    r: &mut asn1::StreamReader<R>,
    expected: &[u8],
    what: &str,
    max_version: u64,
) -> Result<[asn1::End; 3]> {
    let (ci, c0) = open_content_info(r, expected, what)?;
    let content = r.open(tag::SEQUENCE, what)?;
    let version = read_version(r)?;
    if version > max_version {
        return Err(Error::malformed(
            r.layer(),
            format!("unknown {what} version {version}"),
        ));
    }
    Ok([ci, c0, content])
}

fn not_a(layer: Layer, what: &str, e: Error) -> Error {
    Error::malformed(layer, format!("not a CMS {what}: {e}"))
}

fn describe_oid(o: &[u8]) -> String {
    match o {
        oid::DATA => "id-data".into(),
        oid::SIGNED_DATA => "SignedData".into(),
        oid::ENVELOPED_DATA => "EnvelopedData".into(),
        oid::COMPRESSED_DATA => "CompressedData".into(),
        other => format!("OID {}", hex::encode(other)),
    }
}

/// The eContent `[0]` end and its octet stream.
type EContent = (asn1::End, asn1::OctetStream);

/// Opens `EncapsulatedContentInfo` and, if present, the eContent octet stream.
/// Returns (eci end, Some((eContent [0] end, stream))) or None when detached.
fn open_econtent<R: Read>(
    r: &mut asn1::StreamReader<R>,
) -> Result<(asn1::End, Vec<u8>, Option<EContent>)> {
    let eci = r.open(tag::SEQUENCE, "EncapsulatedContentInfo")?;
    let ect = r.read_oid("eContentType")?;
    if r.at_end(eci)? {
        // The end-of-contents was consumed by at_end; the caller must not close it again.
        return Ok((asn1::End::At(r.position()), ect, None));
    }
    let e0 = r.open(tag::CTX0_C, "eContent")?;
    let h = r.header()?;
    let s = asn1::OctetStream::start(r, h, tag::OCTET_STRING, tag::OCTET_STRING_C)?;
    Ok((eci, ect, Some((e0, s))))
}

/// Reads a small INTEGER element (a version number).
fn read_version<R: Read>(r: &mut asn1::StreamReader<R>) -> Result<u64> {
    let raw = r.read_element("version")?;
    let t = asn1::parse_one(&raw, r.layer())?;
    asn1::small_uint(&t, r.layer())
}

/// Requires the stream to end here (no trailing bytes after a structure).
fn expect_eof<R: Read>(r: &mut asn1::StreamReader<R>, what: &str) -> Result<()> {
    if r.at_eof()? {
        Ok(())
    } else {
        Err(Error::malformed(
            r.layer(),
            format!("unexpected data after the end of the {what}"),
        ))
    }
}

/// Formats a time as UTCTime (years 1950-2049) or GeneralizedTime, as RFC 5652 requires for
/// signingTime.
pub(crate) fn encode_time(t: std::time::SystemTime) -> Vec<u8> {
    let secs = crate::cert::unix(t);
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    if (1950..2050).contains(&y) {
        let s = format!("{:02}{m:02}{d:02}{hh:02}{mm:02}{ss:02}Z", y % 100);
        asn1::tlv(tag::UTC_TIME, s.as_bytes())
    } else {
        let s = format!("{y:04}{m:02}{d:02}{hh:02}{mm:02}{ss:02}Z");
        asn1::tlv(0x18, s.as_bytes())
    }
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_encode() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14 22:13:20
        assert_eq!(encode_time(t), asn1::tlv(tag::UTC_TIME, b"231114221320Z"));
        let t = UNIX_EPOCH + Duration::from_secs(2_556_057_600); // 2050-12-31 00:00:00
        assert_eq!(encode_time(t), asn1::tlv(0x18, b"20501231000000Z"));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11016), (2000, 2, 29));
    }
}
