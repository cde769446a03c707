//! The file services of `oftp::security` without a network: every cipher suite, V-format
//! records, the partner policy's SFNA codes, EFNA codes for tampered, misaddressed and forged
//! files, certificate validity (expired, revoked), the intermediary rule and the secure
//! authentication decision.

use oftp_test_pki as pki;

use std::path::{Path, PathBuf};

use oftp::security::{
    FileSecurity, IdentityConfig, LocalSecurityConfig, PartnerSecurityConfig, SecureAuthentication,
    SecurityContext, SendSecurity,
};
use oftp_proto::codec::{
    CipherSuite, FileCompression, FileEnvelope, FileFormat, SecurityLevel, Sfid, VirtualFileTime,
};
use pki::{Leaf, Pki};

const ME: &str = "O0013ME";
const PARTNER: &str = "O0013PARTNER";

fn identity(leaf: &Leaf) -> IdentityConfig {
    IdentityConfig {
        cert: Some(leaf.cert.clone()),
        key: Some(leaf.key.clone()),
        ..IdentityConfig::default()
    }
}

fn local(leaf: &Leaf, work: &Path) -> LocalSecurityConfig {
    LocalSecurityConfig {
        identity: Some(identity(leaf)),
        work_dir: Some(work.to_owned()),
        ..LocalSecurityConfig::default()
    }
}

fn partner_cfg(cert: &Path, send: SendSecurity) -> PartnerSecurityConfig {
    PartnerSecurityConfig {
        certificate: Some(cert.to_owned()),
        send,
        ..PartnerSecurityConfig::default()
    }
}

/// Two sides: `a` (code ME) sends to `b` (code PARTNER) and the other way round.
struct Sides {
    a: SecurityContext,
    b: SecurityContext,
}

fn sides(
    a_leaf: &Leaf,
    b_leaf: &Leaf,
    work: &Path,
    send: SendSecurity,
    b_policy: impl FnOnce(&mut PartnerSecurityConfig),
) -> Sides {
    let a = SecurityContext::builder(ME, &local(a_leaf, &work.join("a")), work.join("a"))
        .unwrap()
        .partner(
            "partner",
            PARTNER,
            PARTNER,
            &partner_cfg(&b_leaf.cert, send),
        )
        .unwrap()
        .build();
    let mut policy = partner_cfg(&a_leaf.cert, SendSecurity::default());
    b_policy(&mut policy);
    let b = SecurityContext::builder(PARTNER, &local(b_leaf, &work.join("b")), work.join("b"))
        .unwrap()
        .partner("me", ME, ME, &policy)
        .unwrap()
        .build();
    Sides { a, b }
}

fn sfid(format: FileFormat, from: &str, to: &str) -> Sfid {
    Sfid {
        dsn: "INVOICE".into(),
        date_time: VirtualFileTime {
            year: 2026,
            month: 11,
            day: 21,
            hour: 12,
            minute: 0,
            second: 0,
            counter: 1,
        },
        user_data: String::new(),
        destination: to.into(),
        originator: from.into(),
        format,
        max_record_len: 0,
        file_size: 1,
        original_file_size: 1,
        restart_position: 0,
        security: SecurityLevel::NONE,
        cipher_suite: CipherSuite::NONE,
        compression: FileCompression::NONE,
        envelope: FileEnvelope::NONE,
        signed_eerp: false,
        description: String::new(),
    }
}

fn all_services(suite: u8) -> SendSecurity {
    SendSecurity {
        security: FileSecurity::SignedEncrypted,
        cipher_suite: suite,
        compress: true,
        signed_receipt: true,
    }
}

/// Sends `content` from a to b: prepare, offer check, "transfer" (copy), open.
fn transfer(
    s: &Sides,
    dir: &Path,
    format: FileFormat,
    content: &[u8],
) -> (
    Sfid,
    PathBuf,
    Result<Vec<u8>, oftp::transport::ServiceFailure>,
) {
    let src = dir.join("source.txt");
    std::fs::write(&src, content).unwrap();
    let mut f = sfid(format, ME, PARTNER);
    let prepared = s.a.prepare(&mut f, &src).unwrap();
    let sent = prepared.transmit.clone().unwrap_or(src.clone());
    s.b.check_offer(&f).unwrap();
    let received = dir.join("received.dat");
    std::fs::copy(&sent, &received).unwrap();
    let opened = s.b.open_received(&f, &received);
    if let Ok(h) = &opened {
        // With a signed EERP asked for, both sides hash the same (transmitted) bytes.
        if f.signed_eerp {
            assert_eq!(Some(h), prepared.file_hash.as_ref());
            assert!(!h.is_empty());
        } else {
            assert!(prepared.file_hash.is_none());
        }
    }
    (f, received, opened)
}

#[test]
fn every_suite_signs_compresses_encrypts_and_opens() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("Alice", 2, false), pki.leaf("Bob", 3, false));
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    for suite in 1..=6u8 {
        let s = sides(&a, &b, dir.path(), all_services(suite), |_| {});
        let (f, received, opened) = transfer(&s, dir.path(), FileFormat::Unstructured, &content);
        opened.unwrap_or_else(|e| panic!("suite {suite}: {e:?}"));
        assert_eq!(f.security, SecurityLevel::ENCRYPTED_AND_SIGNED);
        assert_eq!(f.cipher_suite, CipherSuite(suite));
        assert_eq!(f.compression, FileCompression::ZLIB);
        assert_eq!(f.envelope, FileEnvelope::CMS);
        assert!(f.signed_eerp);
        assert_eq!(f.transmitted_format(), FileFormat::Unstructured);
        assert_eq!(std::fs::read(&received).unwrap(), content, "suite {suite}");
    }
}

#[test]
fn each_security_level_roundtrips_and_v_records_survive() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("Alice", 2, false), pki.leaf("Bob", 3, false));
    let dir = tempfile::tempdir().unwrap();
    let text = b"first record\r\nsecond, longer record\r\n\r\nlast\r\n";
    // V records in raw form: each after its 2-octet length (RFC 5024 6.5), as transmitted.
    let mut records = Vec::new();
    for r in [&b"first record"[..], b"line\nfeed\r", b"", b"\0\xFF"] {
        records.extend_from_slice(&(r.len() as u16).to_be_bytes());
        records.extend_from_slice(r);
    }
    for (level, wire) in [
        (FileSecurity::Signed, SecurityLevel::SIGNED),
        (FileSecurity::Encrypted, SecurityLevel::ENCRYPTED),
        (
            FileSecurity::SignedEncrypted,
            SecurityLevel::ENCRYPTED_AND_SIGNED,
        ),
    ] {
        let send = SendSecurity {
            security: level,
            cipher_suite: 2,
            compress: false,
            signed_receipt: false,
        };
        let s = sides(&a, &b, dir.path(), send, |_| {});
        let (f, received, opened) = transfer(&s, dir.path(), FileFormat::Variable, &records);
        opened.unwrap();
        assert_eq!(f.security, wire);
        assert_eq!(f.compression, FileCompression::NONE);
        assert_eq!(std::fs::read(&received).unwrap(), records, "{level:?}");
    }
    // Compression alone is a file service too.
    let send = SendSecurity {
        security: FileSecurity::None,
        cipher_suite: 4,
        compress: true,
        signed_receipt: false,
    };
    let s = sides(&a, &b, dir.path(), send, |_| {});
    let (f, received, opened) = transfer(&s, dir.path(), FileFormat::Text, text);
    opened.unwrap();
    assert_eq!(f.security, SecurityLevel::NONE);
    assert_eq!(f.compression, FileCompression::ZLIB);
    assert_eq!(std::fs::read(&received).unwrap(), text);
}

#[test]
fn partner_policy_refuses_offers_with_the_right_sfna() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("Alice", 2, false), pki.leaf("Bob", 3, false));
    let dir = tempfile::tempdir().unwrap();
    let s = sides(&a, &b, dir.path(), SendSecurity::default(), |p| {
        p.required_security = FileSecurity::SignedEncrypted;
        p.allowed_suites = vec![4, 6];
        p.allow_compression = false;
    });
    let mut f = sfid(FileFormat::Unstructured, ME, PARTNER);
    let code = |f: &Sfid| s.b.check_offer(f).unwrap_err().reason.0;
    assert_eq!(
        code(&f),
        17,
        "unencrypted file from a partner who must encrypt"
    );
    f.security = SecurityLevel::ENCRYPTED;
    f.envelope = FileEnvelope::CMS;
    f.cipher_suite = CipherSuite(4);
    assert_eq!(code(&f), 20, "unsigned file from a partner who must sign");
    f.security = SecurityLevel::ENCRYPTED_AND_SIGNED;
    f.cipher_suite = CipherSuite(2);
    assert_eq!(code(&f), 15, "suite outside the allowed list");
    f.cipher_suite = CipherSuite(9);
    assert_eq!(code(&f), 15, "unknown suite");
    f.cipher_suite = CipherSuite(6);
    f.compression = FileCompression::ZLIB;
    assert_eq!(code(&f), 18, "compression not allowed");
    f.compression = FileCompression::NONE;
    s.b.check_offer(&f).unwrap();

    // No decryption key: encrypted files are refused (16); no partner certificate: signed
    // files are refused (19).
    let bare =
        SecurityContext::builder(PARTNER, &LocalSecurityConfig::default(), dir.path().into())
            .unwrap()
            .build();
    let mut enc = sfid(FileFormat::Unstructured, ME, PARTNER);
    enc.security = SecurityLevel::ENCRYPTED;
    enc.envelope = FileEnvelope::CMS;
    enc.cipher_suite = CipherSuite(2);
    assert_eq!(bare.check_offer(&enc).unwrap_err().reason.0, 16);
    enc.security = SecurityLevel::SIGNED;
    assert_eq!(bare.check_offer(&enc).unwrap_err().reason.0, 19);
}

#[test]
fn tampered_misaddressed_and_forged_files_get_efna_codes() {
    let pki = Pki::new();
    let (a, b, eve) = (
        pki.leaf("Alice", 2, false),
        pki.leaf("Bob", 3, false),
        pki.leaf("Eve", 4, false),
    );
    let dir = tempfile::tempdir().unwrap();
    let content = vec![b'x'; 100_000];

    // Tampered ciphertext: one byte in the middle of the encrypted content.
    let s = sides(&a, &b, dir.path(), all_services(4), |_| {});
    let src = dir.path().join("plain");
    std::fs::write(&src, &content).unwrap();
    let mut f = sfid(FileFormat::Unstructured, ME, PARTNER);
    let sent = s.a.prepare(&mut f, &src).unwrap().transmit.unwrap();
    let mut bytes = std::fs::read(&sent).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let received = dir.path().join("tampered");
    std::fs::write(&received, &bytes).unwrap();
    let err = s.b.open_received(&f, &received).unwrap_err();
    assert!((21..=23).contains(&err.reason.0), "{err:?}");
    assert_eq!(
        std::fs::read(&received).unwrap(),
        bytes,
        "a refused file is left as received"
    );

    // Encrypted for someone else: b configured Eve's certificate for a.
    let wrong = sides(&a, &eve, dir.path(), all_services(2), |_| {});
    let mut f = sfid(FileFormat::Unstructured, ME, PARTNER);
    let sent = wrong.a.prepare(&mut f, &src).unwrap().transmit.unwrap();
    let received = dir.path().join("misaddressed");
    std::fs::copy(&sent, &received).unwrap();
    assert_eq!(s.b.open_received(&f, &received).unwrap_err().reason.0, 22);

    // Signed by Eve, claiming to be a (b verifies with a's certificate).
    let forged = sides(&eve, &b, dir.path(), all_services(4), |_| {});
    let mut f = sfid(FileFormat::Unstructured, ME, PARTNER);
    let sent = forged.a.prepare(&mut f, &src).unwrap().transmit.unwrap();
    let received = dir.path().join("forged");
    std::fs::copy(&sent, &received).unwrap();
    assert_eq!(s.b.open_received(&f, &received).unwrap_err().reason.0, 21);

    // Announced as encrypted but sent plain: the missing layer is a decryption failure.
    let received = dir.path().join("plain-but-announced");
    std::fs::write(&received, &content).unwrap();
    let mut f = sfid(FileFormat::Unstructured, ME, PARTNER);
    f.security = SecurityLevel::ENCRYPTED;
    f.envelope = FileEnvelope::CMS;
    f.cipher_suite = CipherSuite(2);
    assert_eq!(s.b.open_received(&f, &received).unwrap_err().reason.0, 22);
}

#[test]
fn expired_and_revoked_partner_certificates_are_refused_with_a_trusted_ca() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("Alice", 2, false), pki.leaf("Bob", 3, false));
    let expired = pki.leaf("Old", 5, true);
    let revoked = pki.leaf("Revoked", 6, false);
    let crl = pki.crl(&[6]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local(&a, dir.path());
    cfg.trusted_cas = vec![pki.ca.clone()];
    cfg.crls = vec![crl];
    cfg.allow_self_signed = false;
    let ctx = SecurityContext::builder(ME, &cfg, dir.path().into())
        .unwrap()
        .partner(
            "good",
            "GOOD",
            "GOOD",
            &partner_cfg(&b.cert, all_services(4)),
        )
        .unwrap()
        .partner(
            "old",
            "OLD",
            "OLD",
            &partner_cfg(&expired.cert, all_services(4)),
        )
        .unwrap()
        .partner(
            "rev",
            "REV",
            "REV",
            &partner_cfg(&revoked.cert, all_services(4)),
        )
        .unwrap()
        .build();
    let src = dir.path().join("plain");
    std::fs::write(&src, b"data").unwrap();
    let mut f = sfid(FileFormat::Unstructured, ME, "GOOD");
    ctx.prepare(&mut f, &src).unwrap();
    for (to, word) in [("OLD", "expired"), ("REV", "revoked")] {
        let mut f = sfid(FileFormat::Unstructured, ME, to);
        let e = ctx.prepare(&mut f, &src).unwrap_err().to_string();
        assert!(e.to_lowercase().contains(word), "{to}: {e}");
        // Their signed files are refused at SFID (19).
        let mut offer = sfid(FileFormat::Unstructured, to, ME);
        offer.security = SecurityLevel::SIGNED;
        offer.envelope = FileEnvelope::CMS;
        offer.cipher_suite = CipherSuite(4);
        let r = ctx.check_offer(&offer).unwrap_err();
        assert_eq!(r.reason.0, 19, "{to}: {r:?}");
    }
}

#[test]
fn files_neither_from_nor_for_us_pass_through() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("Alice", 2, false), pki.leaf("Bob", 3, false));
    let dir = tempfile::tempdir().unwrap();
    let s = sides(&a, &b, dir.path(), all_services(4), |p| {
        p.required_security = FileSecurity::SignedEncrypted;
    });
    // b routes a file from a third party to a fourth: nothing is checked or opened.
    let mut f = sfid(FileFormat::Unstructured, "O0013THIRD", "O0013FOURTH");
    f.security = SecurityLevel::ENCRYPTED_AND_SIGNED;
    f.envelope = FileEnvelope::CMS;
    f.cipher_suite = CipherSuite(6);
    s.b.check_offer(&f).unwrap();
    let data = dir.path().join("routed");
    std::fs::write(&data, b"opaque bytes").unwrap();
    s.b.open_received(&f, &data).unwrap();
    assert_eq!(std::fs::read(&data).unwrap(), b"opaque bytes");
    // And a sends a file it only forwards: no services applied.
    let mut out = sfid(FileFormat::Unstructured, "O0013THIRD", PARTNER);
    let p = s.a.prepare(&mut out, &data).unwrap();
    assert!(p.transmit.is_none());
    assert_eq!(out.security, SecurityLevel::NONE);
    assert_eq!(out.envelope, FileEnvelope::NONE);
}

#[test]
fn secure_authentication_decisions() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("Alice", 2, false), pki.leaf("Bob", 3, false));
    let dir = tempfile::tempdir().unwrap();
    let build = |setting: SecureAuthentication, with_cert: bool| {
        let mut p = PartnerSecurityConfig {
            secure_authentication: setting,
            ..PartnerSecurityConfig::default()
        };
        if with_cert {
            p.authentication_cert = Some(b.cert.clone());
        }
        SecurityContext::builder(ME, &local(&a, dir.path()), dir.path().into())
            .unwrap()
            .partner("p", PARTNER, PARTNER, &p)
            .unwrap()
            .build()
    };
    use SecureAuthentication::*;
    let req = build(Required, true);
    assert_eq!(req.secure_auth_decision(PARTNER, None), Ok(true));
    assert_eq!(req.secure_auth_decision(PARTNER, Some(true)), Ok(true));
    assert!(
        req.secure_auth_decision(PARTNER, Some(false)).is_err(),
        "never downgraded"
    );
    assert!(
        build(Required, false)
            .secure_auth_decision(PARTNER, None)
            .is_err()
    );
    let never = build(Disallowed, true);
    assert_eq!(never.secure_auth_decision(PARTNER, None), Ok(false));
    assert!(never.secure_auth_decision(PARTNER, Some(true)).is_err());
    let auto = build(Automatic, true);
    assert_eq!(auto.secure_auth_decision(PARTNER, None), Ok(true));
    assert_eq!(auto.secure_auth_decision(PARTNER, Some(false)), Ok(false));
    let auto_bare = build(Automatic, false);
    assert_eq!(auto_bare.secure_auth_decision(PARTNER, None), Ok(false));
    assert!(auto_bare.secure_auth_decision(PARTNER, Some(true)).is_err());
    // A certificate for all purposes: we answer a caller that asks, but do not ask ourselves.
    let catch_all = SecurityContext::builder(ME, &local(&a, dir.path()), dir.path().into())
        .unwrap()
        .partner(
            "p",
            PARTNER,
            PARTNER,
            &partner_cfg(&b.cert, SendSecurity::default()),
        )
        .unwrap()
        .build();
    assert_eq!(catch_all.secure_auth_decision(PARTNER, None), Ok(false));
    assert_eq!(
        catch_all.secure_auth_decision(PARTNER, Some(true)),
        Ok(true)
    );
}

#[test]
fn key_passwords_come_from_a_file_or_the_environment() {
    let pki = Pki::new();
    let a = pki.leaf("Alice", 2, false);
    let dir = tempfile::tempdir().unwrap();
    let p12 = dir.path().join("a.p12");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    pki::openssl(&[
        "pkcs12",
        "-export",
        "-in",
        pki::p(&a.cert),
        "-inkey",
        pki::p(&a.key),
        "-out",
        pki::p(&p12),
        "-passout",
        "pass:s3cret",
    ]);
    let from_file = IdentityConfig {
        pkcs12: Some(p12.clone()),
        password_file: Some(pw),
        ..IdentityConfig::default()
    };
    assert!(
        from_file
            .load("test")
            .unwrap()
            .certificate()
            .subject()
            .contains("Alice")
    );
    // The environment variable is not set: the error names it (and never a password).
    let from_env = IdentityConfig {
        pkcs12: Some(p12),
        password_env: Some("OFTP_TEST_NEVER_SET_P12_PASSWORD".into()),
        ..IdentityConfig::default()
    };
    let e = from_env.load("test identity").unwrap_err().to_string();
    assert!(
        e.contains("test identity") && e.contains("OFTP_TEST_NEVER_SET_P12_PASSWORD"),
        "{e}"
    );
}

#[test]
fn certificate_exchange_stores_and_replaces_only_when_allowed() {
    use oftp::security::{CertificateExchange, PartnerCertUse};
    let pki = Pki::new();
    let (a, b, b_new) = (
        pki.leaf("Alice", 2, false),
        pki.leaf("Bob", 3, false),
        pki.leaf("Bob Next", 9, false),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("certificates");
    assert_eq!(
        CertificateExchange::from_virtual_file_name("odette_certificate_replace  "),
        Some(CertificateExchange::Replace)
    );
    assert_eq!(CertificateExchange::Deliver.seed_code(), 2);
    let file = dir.path().join("exchange");
    std::fs::write(&file, &b_new.cert_pem).unwrap();
    for (allow, kind, signed, replaced) in [
        (false, CertificateExchange::Replace, true, false),
        (true, CertificateExchange::Replace, false, false),
        (true, CertificateExchange::Deliver, true, false),
        (true, CertificateExchange::Replace, true, true),
    ] {
        let mut policy = partner_cfg(&b.cert, SendSecurity::default());
        policy.accept_certificate_replace = allow;
        let ctx = SecurityContext::builder(ME, &local(&a, dir.path()), dir.path().into())
            .unwrap()
            .partner("bob", PARTNER, PARTNER, &policy)
            .unwrap()
            .build();
        let got = ctx
            .receive_certificate(PARTNER, kind, &file, &store, signed)
            .unwrap();
        assert_eq!(got.replaced, replaced, "{allow} {kind:?} {signed}");
        assert!(got.stored.starts_with(store.join("bob")));
        assert!(got.certificate.subject().contains("Bob Next"));
        let now = ctx
            .partner_by_sfid(PARTNER)
            .unwrap()
            .certificate(PartnerCertUse::Encryption)
            .unwrap();
        assert_eq!(now.subject().contains("Bob Next"), replaced);
        // A new context (a restart) keeps a replacement, and only where the policy allows it.
        let again = SecurityContext::builder(ME, &local(&a, dir.path()), dir.path().into())
            .unwrap()
            .partner("bob", PARTNER, PARTNER, &policy)
            .unwrap()
            .restore_replaced_certificates(&store)
            .unwrap()
            .build();
        let after = again
            .partner_by_sfid(PARTNER)
            .unwrap()
            .certificate(PartnerCertUse::Signature)
            .unwrap();
        assert_eq!(
            after.subject().contains("Bob Next"),
            allow && store.join("bob/current.pem").exists()
        );
    }
    assert!(store.join("bob/current.pem").exists());
    std::fs::write(&file, b"not a certificate").unwrap();
    let ctx = SecurityContext::builder(ME, &local(&a, dir.path()), dir.path().into())
        .unwrap()
        .build();
    assert!(
        ctx.receive_certificate(PARTNER, CertificateExchange::Deliver, &file, &store, false)
            .is_err()
    );
}

#[test]
fn challenges_and_receipts_between_two_contexts() {
    use oftp_security::receipt::ReceiptFields;
    let pki = Pki::new();
    let (a, b, eve) = (
        pki.leaf("Alice", 2, false),
        pki.leaf("Bob", 3, false),
        pki.leaf("Eve", 4, false),
    );
    let dir = tempfile::tempdir().unwrap();
    let s = sides(&a, &b, dir.path(), all_services(4), |p| {
        p.require_signed_receipts = true;
    });
    // a challenges b; b answers with its key.
    let (auch, expected) = s.a.create_challenge(PARTNER).unwrap();
    assert_eq!(s.b.answer_challenge(&auch).unwrap(), expected);
    // Eve cannot answer a challenge meant for b.
    let eve_ctx = SecurityContext::builder(PARTNER, &local(&eve, dir.path()), dir.path().into())
        .unwrap()
        .build();
    assert!(eve_ctx.answer_challenge(&auch).is_err());

    // b signs the EERP for a's file; a verifies it with b's certificate.
    let fields = ReceiptFields {
        dsn: "INVOICE".into(),
        date: "20261121".into(),
        time: "1200000001".into(),
        destination: ME.into(),
        originator: PARTNER.into(),
        nerp_creator: None,
        file_hash: vec![7u8; 32],
    };
    let sig = s.b.sign_receipt(&fields, 4).unwrap();
    s.a.verify_receipt(PARTNER, &sig, &fields).unwrap();
    // A different hash (not the file a sent) or a forged signer fails.
    let mut other = fields.clone();
    other.file_hash[0] ^= 1;
    assert!(s.a.verify_receipt(PARTNER, &sig, &other).is_err());
    let forged = eve_ctx.sign_receipt(&fields, 4).unwrap();
    assert!(s.a.verify_receipt(PARTNER, &forged, &fields).is_err());
    assert!(s.b.requires_signed_receipts(ME));
    assert!(!s.a.requires_signed_receipts(PARTNER));
}

#[test]
fn certificate_request_answers_and_tls_client_certificates() {
    use oftp_security::Certificate;
    let pki = Pki::new();
    let (a, b, b_tls, eve) = (
        pki.leaf("Alice", 2, false),
        pki.leaf("Bob", 3, false),
        pki.leaf("Bob TLS", 4, false),
        pki.leaf("Eve", 5, false),
    );
    let dir = tempfile::tempdir().unwrap();
    let build = |local: &LocalSecurityConfig, policy: &PartnerSecurityConfig| {
        SecurityContext::builder(ME, local, dir.path().into())
            .unwrap()
            .partner("bob", PARTNER, PARTNER, policy)
            .unwrap()
            .build()
    };
    let load = |leaf: &Leaf| Certificate::load(&leaf.cert).unwrap();
    let mut policy = partner_cfg(&b.cert, SendSecurity::default());
    let ctx = build(&local(&a, dir.path()), &policy);
    // Answered by default, with our certificate; never for an unknown originator.
    let answer = ctx.certificate_request_answer(PARTNER).unwrap().unwrap();
    assert_eq!(answer.thumbprint_sha256(), load(&a).thumbprint_sha256());
    let e = ctx
        .certificate_request_answer("O0013NOBODY")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("O0013NOBODY") && e.contains("not a configured partner"),
        "{e}"
    );
    // Without any local certificate there is nothing to answer with.
    let bare = build(&LocalSecurityConfig::default(), &policy);
    assert!(bare.own_certificate().is_none());
    let e = bare
        .certificate_request_answer(PARTNER)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no local certificate"), "{e}");
    // Off: the handler decides.
    policy.answer_certificate_requests = false;
    let off = build(&local(&a, dir.path()), &policy);
    assert!(off.certificate_request_answer(PARTNER).unwrap().is_none());

    // TLS client certificate: the authentication certificate by default ...
    assert_eq!(ctx.tls_client_partner(&load(&b)).unwrap().name, "bob");
    assert!(ctx.tls_client_partner(&load(&eve)).is_none());
    assert!(ctx.tls_client_partner(&load(&b_tls)).is_none());
    // ... or exactly the configured TLS client certificate.
    policy.tls_client_cert = Some(b_tls.cert.clone());
    let pinned = build(&local(&a, dir.path()), &policy);
    assert_eq!(
        pinned.tls_client_partner(&load(&b_tls)).unwrap().name,
        "bob"
    );
    assert!(pinned.tls_client_partner(&load(&b)).is_none());
}
