//! Certificate loading (PEM, DER, PKCS#1, PKCS#8, PKCS#12 modern and legacy) and validation
//! (chain, expiry, self-signed policy, CRL revocation) against files produced by rcgen and
//! the openssl command.

use oftp_test_pki as common;

use std::time::SystemTime;

use common::{Pki, openssl, p};
use oftp_security::{
    CertSelector, Certificate, Error, Identity, PrivateKey, Secret, TrustPolicy, ValidationError,
};

#[test]
fn pem_der_pkcs1_pkcs8_load_and_expose_fields() {
    let pki = Pki::new();
    let leaf = pki.leaf("ACME OFTP", 4242, false);
    // PEM cert + PKCS#8 PEM key.
    let id = Identity::from_files(&leaf.cert, &leaf.key).unwrap();
    let c = id.certificate();
    assert_eq!(c.serial_number(), "1092"); // 4242 = 0x1092
    assert!(c.subject().contains("CN=ACME OFTP"));
    assert!(c.issuer().contains("CN=Test OFTP CA"));
    assert_eq!(c.public_key_bits(), 2048);
    assert_eq!(c.public_key_algorithm(), "RSA");
    assert!(
        c.signature_algorithm().to_lowercase().contains("sha256"),
        "{}",
        c.signature_algorithm()
    );
    assert!(!c.is_self_issued());
    let nb = c
        .not_before()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(nb, 1_577_836_800); // 2020-01-01
    // The SHA-1 thumbprint equals what openssl prints.
    let fp = String::from_utf8(openssl(&[
        "x509",
        "-in",
        p(&leaf.cert),
        "-noout",
        "-fingerprint",
        "-sha1",
    ]))
    .unwrap();
    let fp_hex: String = fp
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(c.thumbprint_sha1_hex(), fp_hex);

    // DER certificate, PKCS#1 PEM and DER keys converted by openssl.
    let der = pki.path("leaf.der");
    openssl(&[
        "x509",
        "-in",
        p(&leaf.cert),
        "-outform",
        "DER",
        "-out",
        p(&der),
    ]);
    assert_eq!(&Certificate::load(&der).unwrap(), c);
    let pkcs1 = pki.path("pkcs1.pem");
    openssl(&[
        "rsa",
        "-in",
        p(&leaf.key),
        "-traditional",
        "-out",
        p(&pkcs1),
    ]);
    assert!(
        std::fs::read_to_string(&pkcs1)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    assert!(PrivateKey::load(&pkcs1).unwrap().matches_certificate(c));
    let pkcs1_der = pki.path("pkcs1.der");
    openssl(&[
        "rsa",
        "-in",
        p(&leaf.key),
        "-traditional",
        "-outform",
        "DER",
        "-out",
        p(&pkcs1_der),
    ]);
    assert!(PrivateKey::load(&pkcs1_der).unwrap().matches_certificate(c));
    let pkcs8_der = pki.path("pkcs8.der");
    openssl(&[
        "pkey",
        "-in",
        p(&leaf.key),
        "-outform",
        "DER",
        "-out",
        p(&pkcs8_der),
    ]);
    assert!(PrivateKey::load(&pkcs8_der).unwrap().matches_certificate(c));
    Identity::from_files(&der, &pkcs1_der).unwrap();

    // Encrypted PEM keys (PBES2/AES-256 and 3DES) need the password; errors say so.
    for cipher in ["-aes256", "-des3"] {
        let enc = pki.path("enc.pem");
        openssl(&[
            "pkey",
            "-in",
            p(&leaf.key),
            cipher,
            "-passout",
            "pass:k3y pw",
            "-out",
            p(&enc),
        ]);
        let e = PrivateKey::load(&enc).unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
        let k = PrivateKey::load_with_password(&enc, &Secret::new("k3y pw")).unwrap();
        assert!(k.matches_certificate(c));
        let e = PrivateKey::load_with_password(&enc, &Secret::new("nope")).unwrap_err();
        assert!(e.to_string().contains("wrong password"), "{e}");
        Identity::from_files_with_password(&leaf.cert, &enc, &Secret::new("k3y pw")).unwrap();
        // DER-encoded encrypted PKCS#8.
        let enc_der = pki.path("enc.der");
        openssl(&[
            "pkcs8",
            "-topk8",
            "-in",
            p(&leaf.key),
            "-outform",
            "DER",
            "-passout",
            "pass:k3y pw",
            "-out",
            p(&enc_der),
        ]);
        assert!(
            PrivateKey::load_with_password(&enc_der, &Secret::new("k3y pw"))
                .unwrap()
                .matches_certificate(c)
        );
    }
    // An unencrypted key loads with load_with_password too (password ignored).
    PrivateKey::load_with_password(&leaf.key, &Secret::new("unused")).unwrap();
}

#[test]
fn pkcs12_modern_and_legacy_with_selection() {
    let pki = Pki::new();
    let leaf = pki.leaf("Partner One", 7, false);
    let pw_file = common::write(pki.dir.path(), "pw.txt", "s3cret pass\n");
    let password = Secret::from_file(&pw_file).unwrap();
    let modern = pki.path("modern.p12");
    openssl(&[
        "pkcs12",
        "-export",
        "-in",
        p(&leaf.cert),
        "-inkey",
        p(&leaf.key),
        "-certfile",
        p(&pki.ca),
        "-passout",
        &format!("file:{}", p(&pw_file)),
        "-out",
        p(&modern),
    ]);
    // OpenSSL 3 writes PBES2/AES-256-CBC by default; check that this really is a modern file.
    let info = std::process::Command::new("openssl")
        .args(["pkcs12", "-in", p(&modern), "-info", "-noout", "-passin"])
        .arg(format!("file:{}", p(&pw_file)))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stderr).to_string();
    assert!(
        info.contains("PBES2") && info.contains("AES-256-CBC"),
        "{info}"
    );
    let legacy = pki.path("legacy.p12");
    openssl(&[
        "pkcs12",
        "-export",
        "-in",
        p(&leaf.cert),
        "-inkey",
        p(&leaf.key),
        "-certpbe",
        "PBE-SHA1-3DES",
        "-keypbe",
        "PBE-SHA1-3DES",
        "-macalg",
        "sha1",
        "-passout",
        &format!("file:{}", p(&pw_file)),
        "-out",
        p(&legacy),
    ]);
    // OpenSSL's -legacy: RC2-40 for the certificates, 3DES for the key, SHA-1 MAC.
    let rc2 = pki.path("rc2.p12");
    openssl(&[
        "pkcs12",
        "-export",
        "-legacy",
        "-in",
        p(&leaf.cert),
        "-inkey",
        p(&leaf.key),
        "-passout",
        &format!("file:{}", p(&pw_file)),
        "-out",
        p(&rc2),
    ]);
    for file in [&modern, &legacy, &rc2] {
        let id = Identity::load_pkcs12(file, &password, &CertSelector::Any).unwrap();
        assert!(id.certificate().subject().contains("Partner One"));
        let sel = CertSelector::parse("partner one");
        Identity::load_pkcs12(file, &password, &sel).unwrap();
        let sel = CertSelector::parse(&id.certificate().thumbprint_sha256_hex());
        Identity::load_pkcs12(file, &password, &sel).unwrap();
        let e = Identity::load_pkcs12(file, &password, &CertSelector::parse("nobody")).unwrap_err();
        assert!(matches!(e, Error::NoMatchingCertificate(_)), "{e}");
        let e = Identity::load_pkcs12(file, &Secret::new("wrong"), &CertSelector::Any).unwrap_err();
        assert!(e.to_string().contains("wrong password"), "{e}");
        // The password never appears in errors.
        assert!(!e.to_string().contains("s3cret"));
    }
    let id = Identity::load_pkcs12(&modern, &password, &CertSelector::Any).unwrap();
    assert_eq!(
        id.chain().len(),
        1,
        "CA certificate from -certfile is kept as chain"
    );

    // Passwords from the environment: PATH always exists; a missing variable is an error.
    assert_eq!(
        Secret::from_env("PATH").unwrap().expose(),
        std::env::var("PATH").unwrap()
    );
    assert!(Secret::from_env("OFTP_SECURITY_SURELY_UNSET_VARIABLE").is_err());
}

#[test]
fn validation_expiry_chain_self_signed_and_crl() {
    let pki = Pki::new();
    let good = pki.leaf("Good Partner", 10, false);
    let expired = pki.leaf("Expired Partner", 11, true);
    let revoked = pki.leaf("Revoked Partner", 12, false);
    let now = SystemTime::now();
    let policy = TrustPolicy::new().trust_file(&pki.ca).unwrap();
    let good_c = Certificate::load(&good.cert).unwrap();
    policy.validate(&good_c, &[], now).unwrap();

    let exp_c = Certificate::load(&expired.cert).unwrap();
    assert!(matches!(
        policy.validate(&exp_c, &[], now),
        Err(ValidationError::Expired { .. })
    ));

    let crl = pki.crl(&[12]);
    let with_crl = policy.clone().add_crl_file(&crl).unwrap();
    let rev_c = Certificate::load(&revoked.cert).unwrap();
    policy.validate(&rev_c, &[], now).unwrap();
    assert_eq!(
        with_crl.validate(&rev_c, &[], now),
        Err(ValidationError::Revoked(rev_c.subject().to_string()))
    );
    with_crl.validate(&good_c, &[], now).unwrap();
    // The same CRL converted to PEM by openssl is accepted too.
    let crl_pem = pki.path("crl.pem");
    openssl(&["crl", "-inform", "DER", "-in", p(&crl), "-out", p(&crl_pem)]);
    let pem_policy = policy.clone().add_crl_file(&crl_pem).unwrap();
    assert!(matches!(
        pem_policy.validate(&rev_c, &[], now),
        Err(ValidationError::Revoked(_))
    ));

    // A chain through an intermediate CA: complete with the intermediate, unknown without.
    let inter = pki.intermediate("Test OFTP Issuing CA");
    let via = Certificate::load(&inter.leaf("Chained Partner", 20, false).cert).unwrap();
    let inter_c = Certificate::load(&inter.ca).unwrap();
    policy
        .validate(&via, std::slice::from_ref(&inter_c), now)
        .unwrap();
    assert!(matches!(
        policy.validate(&via, &[], now),
        Err(ValidationError::UnknownIssuer(_))
    ));

    // Unknown issuer.
    let other = Pki::new();
    let stranger = Certificate::load(&other.leaf("Stranger", 1, false).cert).unwrap();
    let e = policy.validate(&stranger, &[], now).unwrap_err();
    assert!(
        matches!(
            e,
            ValidationError::UnknownIssuer(_) | ValidationError::BadSignature(_)
        ),
        "{e:?}"
    );

    // Self-signed: refused unless allowed or pinned.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let ss = rcgen::CertificateParams::new(vec!["self.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ss_c = Certificate::from_der(ss.der()).unwrap();
    assert!(matches!(
        policy.validate(&ss_c, &[], now),
        Err(ValidationError::SelfSignedNotAllowed(_))
    ));
    policy
        .clone()
        .allow_self_signed(true)
        .validate(&ss_c, &[], now)
        .unwrap();
    policy
        .clone()
        .trust([ss_c.clone()])
        .validate(&ss_c, &[], now)
        .unwrap();

    // check(): the seed's ValidateCert / FailOnUntrustedCert semantics.
    use oftp_security::TrustStatus;
    assert_eq!(
        TrustPolicy::new().check(&stranger, &[], now),
        Ok(TrustStatus::NotChecked)
    );
    assert!(matches!(
        TrustPolicy::new().check(&exp_c, &[], now),
        Err(ValidationError::Expired { .. })
    ));
    assert_eq!(policy.check(&good_c, &[], now), Ok(TrustStatus::Trusted));
    assert!(policy.check(&stranger, &[], now).is_err());
    assert!(matches!(
        policy
            .clone()
            .fail_on_untrusted(false)
            .check(&stranger, &[], now),
        Ok(TrustStatus::Untrusted(_))
    ));

    // Errors map to the signature reason codes when used for a received file.
    let e = Error::from(ValidationError::Revoked("x".into()));
    assert_eq!(e.efna_reason(), 21);
}
