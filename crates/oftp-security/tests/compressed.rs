//! CompressedData: a fixed known-answer vector and structural checks of our output by openssl.
//!
//! The installed openssl lacks zlib, so `openssl cms -uncompress` cannot serve as a reference.
//! The vector below was produced independently of this crate with Python's standard library:
//! `zlib.compress(content, 9)` wrapped by a hand-written definite-length DER encoder into
//! `ContentInfo { id-smime-ct-compressedData, [0] CompressedData { 0, { zlib }, { id-data,
//! [0] OCTET STRING } } }`, and its structure was checked with `openssl asn1parse -inform DER`
//! (OIDs printed as id-smime-ct-compressedData, zlib compression, pkcs7-data).

use oftp_test_pki as common;

use std::io::{Read, Write};

use oftp_security::Error;
use oftp_security::cms::{CompressedDataReader, CompressedDataWriter};

const KAT_HEX: &str = "308185060b2a864886f70d0109100109a0763074020100300d060b2a864886f70d0109100308306006092a864886f70d010701a053045178daf377710d097155700b0950c8cecb2fcfd34dcc2b2e4f2d52284b4d2ec92fb25270cecf2d284a2d2e4e4d71492c4954d00872735630363237d15428cf2cc950a8cac94cd2e3f21f5e8600003b5f5a59";

fn kat_content() -> Vec<u8> {
    b"ODETTE FTP known-answer vector: CompressedData (RFC 3274) with zlib.\n".repeat(4)
}

fn decompress(cms: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    CompressedDataReader::new(cms)?
        .read_to_end(&mut out)
        .map_err(Error::from_io)?;
    Ok(out)
}

#[test]
fn known_answer_vector_decompresses() {
    let cms = hex::decode(KAT_HEX).unwrap();
    assert_eq!(decompress(&cms).unwrap(), kat_content());
    // Changing the adler32 trailer must fail with the decompression reason code.
    let mut bad = cms.clone();
    let n = bad.len();
    bad[n - 1] ^= 0xFF;
    assert_eq!(decompress(&bad).unwrap_err().efna_reason(), 23);
    // Trailing garbage after the structure is refused.
    let mut extra = cms.clone();
    extra.push(0);
    assert!(decompress(&extra).is_err());
}

#[test]
fn our_output_roundtrips_and_is_well_formed_for_openssl() {
    let content = kat_content();
    let mut w = CompressedDataWriter::with_level(Vec::new(), 9).unwrap();
    w.write_all(&content).unwrap();
    let ours = w.finish().unwrap();
    assert_eq!(decompress(&ours).unwrap(), content);
    // (The compressed bytes differ from the reference: flate2's backend is miniz_oxide, not
    // zlib, so only decompression is compared.)
    let dir = tempfile::tempdir().unwrap();
    let f = common::write(dir.path(), "ours.p7z", &ours);
    let parsed = String::from_utf8(common::openssl(&[
        "asn1parse",
        "-inform",
        "DER",
        "-in",
        common::p(&f),
    ]))
    .unwrap();
    assert!(parsed.contains("id-smime-ct-compressedData"), "{parsed}");
    assert!(parsed.contains("zlib compression"), "{parsed}");
    let printed = String::from_utf8(common::openssl(&[
        "cms",
        "-cmsout",
        "-print",
        "-inform",
        "DER",
        "-in",
        common::p(&f),
    ]))
    .unwrap();
    assert!(
        printed.contains("compressedData") || printed.contains("zlib"),
        "{printed}"
    );
}
