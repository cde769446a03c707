//! Interoperability with the `openssl cms` command (OpenSSL 3, built without zlib):
//! our SignedData/EnvelopedData processed by openssl, and openssl's (DER and BER `-stream`)
//! processed by us.

use oftp_test_pki as common;

use std::io::{Read, Write};

use common::{Leaf, Pki, openssl, openssl_ok, p};
use oftp_security::cms::{
    EnvelopedDataReader, EnvelopedDataWriter, ReceiveOptions, ReceivePipeline, SendOptions,
    SendPipeline, SignedDataWriter, verify_bytes,
};
use oftp_security::{CipherSuite, Error, HashAlgorithm, Identity, SymmetricAlgorithm};

fn sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 31 % 256) as u8 ^ (i / 4093) as u8)
        .collect()
}

fn identity(l: &Leaf) -> Identity {
    Identity::from_files(&l.cert, &l.key).unwrap()
}

#[test]
fn openssl_verifies_our_signed_data() {
    let pki = Pki::new();
    let leaf = pki.leaf("Signer", 2, false);
    let id = identity(&leaf);
    let data = sample(100_000);
    for (hash, include) in [
        (HashAlgorithm::Sha1, true),
        (HashAlgorithm::Sha256, false),
        (HashAlgorithm::Sha512, true),
    ] {
        let mut w = SignedDataWriter::new(Vec::new(), &id, hash, include).unwrap();
        w.write_all(&data).unwrap();
        let cms = w.finish().unwrap();
        let f = common::write(pki.dir.path(), "ours.p7m", &cms);
        let out = pki.path("verified.bin");
        let mut args = vec![
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            p(&f),
            "-CAfile",
            p(&pki.ca),
            "-purpose",
            "any",
            "-out",
            p(&out),
        ];
        if !include {
            args.extend(["-certfile", p(&leaf.cert)]);
        }
        openssl(&args);
        assert_eq!(std::fs::read(&out).unwrap(), data, "{hash}");
        // A flipped content byte is caught by openssl too (sanity check of the test).
        let mut bad = cms.clone();
        let i = bad.len() / 2;
        bad[i] ^= 1;
        let f = common::write(pki.dir.path(), "bad.p7m", &bad);
        let args = [
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            p(&f),
            "-CAfile",
            p(&pki.ca),
            "-purpose",
            "any",
            "-certfile",
            p(&leaf.cert),
            "-out",
            p(&out),
        ];
        assert!(!openssl_ok(&args));
    }
}

#[test]
fn openssl_verifies_our_double_signature() {
    // RFC 5024 6.2: a file may be signed twice during a certificate changeover.
    let pki = Pki::new();
    let old = pki.leaf("Signer Old", 30, false);
    let new = pki.leaf("Signer New", 31, false);
    let (old_id, new_id) = (identity(&old), identity(&new));
    let mut w = SignedDataWriter::with_signers(
        Vec::new(),
        &[&old_id, &new_id],
        HashAlgorithm::Sha256,
        true,
    )
    .unwrap();
    w.write_all(b"changeover").unwrap();
    let f = common::write(pki.dir.path(), "two.p7m", w.finish().unwrap());
    let out = pki.path("two.out");
    openssl(&[
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        p(&f),
        "-CAfile",
        p(&pki.ca),
        "-purpose",
        "any",
        "-out",
        p(&out),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), b"changeover");
    let printed = String::from_utf8(openssl(&[
        "cms",
        "-cmsout",
        "-print",
        "-inform",
        "DER",
        "-in",
        p(&f),
    ]))
    .unwrap();
    assert_eq!(
        printed.matches("signatureAlgorithm:").count(),
        2,
        "{printed}"
    );
}

#[test]
fn openssl_decrypts_our_enveloped_data() {
    let pki = Pki::new();
    let leaf = pki.leaf("Recipient", 3, false);
    let id = identity(&leaf);
    let data = sample(50_001);
    for alg in [
        SymmetricAlgorithm::TripleDesCbc,
        SymmetricAlgorithm::Aes256Cbc,
    ] {
        let mut w = EnvelopedDataWriter::new(Vec::new(), &[id.certificate()], alg).unwrap();
        w.write_all(&data).unwrap();
        let cms = w.finish().unwrap();
        let f = common::write(pki.dir.path(), "env.p7m", &cms);
        let out = pki.path("plain.bin");
        openssl(&[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            p(&f),
            "-recip",
            p(&leaf.cert),
            "-inkey",
            p(&leaf.key),
            "-out",
            p(&out),
        ]);
        assert_eq!(std::fs::read(&out).unwrap(), data, "{alg}");
        let printed = String::from_utf8(openssl(&[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            p(&f),
        ]))
        .unwrap();
        let expected = match alg {
            SymmetricAlgorithm::TripleDesCbc => "des-ede3-cbc",
            _ => "aes-256-cbc",
        };
        assert!(printed.contains(expected), "{printed}");
    }
}

#[test]
fn we_verify_openssl_signed_data_der_ber_detached_and_keyid() {
    let pki = Pki::new();
    let leaf = pki.leaf("Partner", 4, false);
    let partner = identity(&leaf);
    let other = identity(&pki.leaf("Someone Else", 5, false));
    let data = sample(200_000);
    let input = common::write(pki.dir.path(), "data.bin", &data);
    let cases: &[(&str, &[&str])] = &[
        ("der-sha256", &["-nodetach", "-md", "sha256"]),
        ("ber-stream-sha1", &["-nodetach", "-stream", "-md", "sha1"]),
        (
            "ber-indef-sha512-nocerts",
            &["-nodetach", "-indef", "-md", "sha512", "-nocerts"],
        ),
        ("keyid", &["-nodetach", "-keyid", "-md", "sha256"]),
        ("noattr", &["-nodetach", "-noattr", "-md", "sha256"]),
    ];
    for (name, extra) in cases {
        let out = pki.path(&format!("{name}.p7m"));
        let mut args = vec![
            "cms",
            "-sign",
            "-binary",
            "-in",
            p(&input),
            "-signer",
            p(&leaf.cert),
            "-inkey",
            p(&leaf.key),
            "-outform",
            "DER",
            "-out",
            p(&out),
        ];
        args.extend_from_slice(extra);
        openssl(&args);
        let cms = std::fs::read(&out).unwrap();
        if name.starts_with("ber") {
            assert_eq!(
                &cms[..2],
                &[0x30, 0x80],
                "{name}: openssl produced indefinite length"
            );
        }
        let (content, signer) = verify_bytes(&cms, None, Some(partner.certificate()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(content, data, "{name}");
        assert_eq!(signer.certificate, *partner.certificate());
        let e = verify_bytes(&cms, None, Some(other.certificate())).unwrap_err();
        assert_eq!(e.efna_reason(), 21, "{name}: {e}");
        // Forged: same structure, content altered.
        let mut bad = cms.clone();
        let pos = bad
            .windows(64)
            .position(|w| w == &data[1000..1064])
            .unwrap();
        bad[pos] ^= 0x20;
        let e = verify_bytes(&bad, None, Some(partner.certificate())).unwrap_err();
        assert!(matches!(e, Error::InvalidSignature(_)), "{name}: {e}");
    }
    // Detached (openssl's default without -nodetach), as some partners sign EERPs.
    let out = pki.path("detached.p7s");
    openssl(&[
        "cms",
        "-sign",
        "-binary",
        "-in",
        p(&input),
        "-signer",
        p(&leaf.cert),
        "-inkey",
        p(&leaf.key),
        "-outform",
        "DER",
        "-out",
        p(&out),
    ]);
    let cms = std::fs::read(&out).unwrap();
    verify_bytes(&cms, Some(&data), Some(partner.certificate())).unwrap();
    assert!(verify_bytes(&cms, Some(&data[1..]), Some(partner.certificate())).is_err());
}

#[test]
fn we_decrypt_openssl_enveloped_data() {
    let pki = Pki::new();
    let leaf = pki.leaf("Us", 6, false);
    let us = identity(&leaf);
    let wrong = identity(&pki.leaf("Not Us", 7, false));
    let data = sample(123_457);
    let input = common::write(pki.dir.path(), "data.bin", &data);
    let cases: &[(&str, &[&str])] = &[
        ("des3-der", &["-des3"]),
        ("aes256-der", &["-aes256"]),
        ("aes128-der", &["-aes128"]),
        ("aes256-stream", &["-aes256", "-stream"]),
        ("des3-indef-keyid", &["-des3", "-indef", "-keyid"]),
    ];
    for (name, extra) in cases {
        let out = pki.path(&format!("{name}.p7m"));
        let mut args = vec![
            "cms",
            "-encrypt",
            "-binary",
            "-in",
            p(&input),
            "-outform",
            "DER",
            "-out",
            p(&out),
        ];
        args.extend_from_slice(extra);
        args.push(p(&leaf.cert));
        openssl(&args);
        let cms = std::fs::read(&out).unwrap();
        let mut plain = Vec::new();
        EnvelopedDataReader::new(&cms[..], &us)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .read_to_end(&mut plain)
            .unwrap_or_else(|e| panic!("{name}: {}", Error::from_io(e)));
        assert_eq!(plain, data, "{name}");
        let e = EnvelopedDataReader::new(&cms[..], &wrong).err().unwrap();
        assert_eq!(e.efna_reason(), 22, "{name}: {e}");
        // Tampered ciphertext: the last block's padding breaks (or the output differs).
        let mut bad = cms.clone();
        let n = bad.len();
        let idx = if name.contains("stream") || name.contains("indef") {
            n - 12
        } else {
            n - 3
        };
        bad[idx] ^= 0x01;
        let mut out = Vec::new();
        let r = EnvelopedDataReader::new(&bad[..], &us)
            .and_then(|mut r| r.read_to_end(&mut out).map_err(Error::from_io));
        match r {
            Err(e) => assert_eq!(e.efna_reason(), 22, "{name}: {e}"),
            Ok(_) => assert_ne!(out, data, "{name}"),
        }
    }
}

#[test]
fn full_pipeline_interop_sign_then_encrypt() {
    let pki = Pki::new();
    let sender_leaf = pki.leaf("Sender", 8, false);
    let receiver_leaf = pki.leaf("Receiver", 9, false);
    let sender = identity(&sender_leaf);
    let receiver = identity(&receiver_leaf);
    let data = sample(300_000);

    // Ours -> openssl: sign + encrypt (no compression: openssl lacks zlib).
    let opts = SendOptions::new(CipherSuite::Aes256RsaSha256)
        .sign(&sender)
        .encrypt_for(receiver.certificate());
    let mut pl = SendPipeline::new(Vec::new(), &opts).unwrap();
    pl.write_all(&data).unwrap();
    let wire = pl.finish().unwrap();
    let f = common::write(pki.dir.path(), "wire.p7m", &wire);
    let inner = pki.path("inner.p7m");
    openssl(&[
        "cms",
        "-decrypt",
        "-binary",
        "-inform",
        "DER",
        "-in",
        p(&f),
        "-recip",
        p(&receiver_leaf.cert),
        "-inkey",
        p(&receiver_leaf.key),
        "-out",
        p(&inner),
    ]);
    let out = pki.path("out.bin");
    openssl(&[
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        p(&inner),
        "-CAfile",
        p(&pki.ca),
        "-purpose",
        "any",
        "-certfile",
        p(&sender_leaf.cert),
        "-out",
        p(&out),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // openssl -> ours: sign (BER stream, SHA-1 as suite 01) then encrypt (3DES, BER stream).
    let input = common::write(pki.dir.path(), "data.bin", &data);
    let signed = pki.path("signed.p7m");
    openssl(&[
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-stream",
        "-md",
        "sha1",
        "-nocerts",
        "-in",
        p(&input),
        "-signer",
        p(&sender_leaf.cert),
        "-inkey",
        p(&sender_leaf.key),
        "-outform",
        "DER",
        "-out",
        p(&signed),
    ]);
    let enveloped = pki.path("enveloped.p7m");
    openssl(&[
        "cms",
        "-encrypt",
        "-binary",
        "-des3",
        "-stream",
        "-in",
        p(&signed),
        "-outform",
        "DER",
        "-out",
        p(&enveloped),
        p(&receiver_leaf.cert),
    ]);
    let file = std::fs::File::open(&enveloped).unwrap();
    let ro = ReceiveOptions::new()
        .identity(&receiver)
        .partner(sender.certificate())
        .expect(true, false, true);
    let mut rp = ReceivePipeline::new(std::io::BufReader::new(file), &ro).unwrap();
    let mut got = Vec::new();
    rp.read_to_end(&mut got).unwrap();
    let report = rp.finish().unwrap();
    assert_eq!(got, data);
    assert_eq!(report.signer.unwrap().hash, HashAlgorithm::Sha1);
}
