//! Property tests: hostile input never panics, any single-byte corruption of a signed and
//! encrypted file is either rejected or harmless (the output is still the original), and the
//! pipelines roundtrip whatever the write and read chunking.

use std::io::{Read, Write};
use std::sync::OnceLock;

use oftp_security::cms::{ReceiveOptions, ReceivePipeline, SendOptions, SendPipeline};
use oftp_security::{CipherSuite, Error, Identity};
use proptest::prelude::*;

fn identity(cn: &str) -> Identity {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["x.example".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap()
}

fn keys() -> &'static (Identity, Identity) {
    static K: OnceLock<(Identity, Identity)> = OnceLock::new();
    K.get_or_init(|| (identity("Sender"), identity("Receiver")))
}

fn send(data: &[u8], suite: CipherSuite, chunk: usize) -> Vec<u8> {
    let (s, r) = keys();
    let o = SendOptions::new(suite)
        .sign(s)
        .compress()
        .encrypt_for(r.certificate());
    let mut p = SendPipeline::new(Vec::new(), &o).unwrap();
    for c in data.chunks(chunk.max(1)) {
        p.write_all(c).unwrap();
    }
    p.finish().unwrap()
}

/// Receives with the layers announced by the SFID (`expect`) or, with `detect`, whatever
/// layers are found. Returns the output and whether a signature was verified.
fn receive_with(wire: &[u8], chunk: usize, detect: bool) -> Result<(Vec<u8>, bool), Error> {
    let (s, r) = keys();
    let mut o = ReceiveOptions::new().identity(r).partner(s.certificate());
    if !detect {
        o = o.expect(true, true, true);
    }
    let mut p = ReceivePipeline::new(wire, &o)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        let n = p.read(&mut buf).map_err(Error::from_io)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let report = p.finish()?;
    Ok((out, report.signer.is_some()))
}

fn receive(wire: &[u8], chunk: usize) -> Result<Vec<u8>, Error> {
    receive_with(wire, chunk, false).map(|(out, _)| out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = receive(&bytes, 7);
        let _ = receive_with(&bytes, 7, true);
    }

    #[test]
    fn cms_looking_garbage_never_panics(
        kind in 0usize..3,
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        // A valid ContentInfo prefix followed by garbage exercises the deeper parsers.
        let oids: [&[u8]; 3] = [
            &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02],
            &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03],
            &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x09],
        ];
        let mut b = vec![0x30, 0x80, 0x06, oids[kind].len() as u8];
        b.extend_from_slice(oids[kind]);
        b.extend_from_slice(&[0xA0, 0x80, 0x30, 0x80]);
        b.extend_from_slice(&tail);
        let _ = receive(&b, 13);
        let _ = receive_with(&b, 13, true);
    }

    #[test]
    fn single_byte_corruption_is_rejected_or_harmless(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let wire = send(&data, CipherSuite::Aes256RsaSha256, 1000);
        let mut bad = wire.clone();
        let i = pos.index(bad.len());
        bad[i] ^= xor;
        // With the layers announced by the SFID, corruption is an error or harmless.
        if let Ok(out) = receive(&bad, 4096) {
            prop_assert_eq!(&out, &data, "corruption at {} of {} went unnoticed", i, wire.len());
        }
        // Detection mode may deliver damaged data as "plain" (e.g. a corrupted IV hides the
        // inner layers), but it never claims a verified signature for it.
        if let Ok((out, signed)) = receive_with(&bad, 4096, true) {
            prop_assert!(!signed || out == data, "corruption at {} reported as signed", i);
        }
    }

    #[test]
    fn truncation_is_always_rejected(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        cut in any::<prop::sample::Index>(),
    ) {
        let wire = send(&data, CipherSuite::TripleDesRsaSha1, 333);
        let n = cut.index(wire.len());
        prop_assert!(receive(&wire[..n], 100).is_err());
    }

    #[test]
    fn any_chunking_roundtrips(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        wchunk in 1usize..5000,
        rchunk in 1usize..5000,
        suite in 1u8..=6,
    ) {
        let suite = CipherSuite::from_code(suite).unwrap();
        let wire = send(&data, suite, wchunk);
        prop_assert_eq!(receive(&wire, rchunk).unwrap(), data);
    }
}

/// Every input that once crashed a decoder, one file each in `fuzz/regressions/cms_receive/`
/// (also the seed corpus of the `cms_receive` fuzz target).
fn recorded_crash_inputs() -> Vec<(String, Vec<u8>)> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/cms_receive");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn eight_octet_length_of_all_ones_is_a_malformed_signature_not_a_panic() {
    // 72 octets: ContentInfo { SignedData { version 1, digestAlgorithms SET with the length
    // 0xFFFFFFFFFFFFFFFF } }, as a partner can send it as a signed file.
    let wire = recorded_crash_inputs()
        .into_iter()
        .find(|(name, _)| name == "signed-digest-algorithms-length-2e64-1.ber")
        .unwrap()
        .1;
    assert_eq!(wire.len(), 72);
    let announced = ReceiveOptions::new().expect(false, false, true);
    let e = ReceivePipeline::new(&wire[..], &announced).err().unwrap();
    assert_eq!(e.efna_reason(), 21, "{e}");
    assert_eq!(e.nerp_reason(), 31, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("signed data")
            && text.contains("digestAlgorithms")
            && text.contains("18446744073709551615"),
        "the message names the layer, the element and the length: {text}"
    );
}

#[test]
fn every_recorded_crash_input_fails_cleanly() {
    let (s, r) = keys();
    let inputs = recorded_crash_inputs();
    assert!(!inputs.is_empty());
    for (name, bytes) in inputs {
        let outcome = std::panic::catch_unwind(|| {
            let _ = oftp_security::Certificate::from_pem_or_der(&bytes);
            let _ = oftp_security::cms::verify_bytes(&bytes, None, Some(s.certificate()));
            let _ = oftp_security::cms::verify_bytes(&bytes, Some(b"x"), None);
            let _ = receive_with(&bytes, 7, true);
            for mask in 0..8u8 {
                let o = ReceiveOptions::new()
                    .identity(r)
                    .partner(s.certificate())
                    .expect(mask & 4 != 0, mask & 2 != 0, mask & 1 != 0);
                if let Ok(mut p) = ReceivePipeline::new(&bytes[..], &o) {
                    let _ = std::io::copy(&mut p, &mut std::io::sink());
                    let _ = p.finish();
                }
            }
        });
        assert!(outcome.is_ok(), "{name} makes a decoder panic");
    }
}
