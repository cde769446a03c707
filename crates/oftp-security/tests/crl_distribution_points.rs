//! Revocation through CRL distribution points: certificates from the test PKI name a URL on a
//! tiny HTTP server on 127.0.0.1 that serves CRLs (or fails in chosen ways); the trust policy
//! fetches, verifies and caches them.

use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use oftp_security::{Certificate, CrlFetchOptions, TrustPolicy, TrustStatus, ValidationError};
use oftp_test_pki::{HttpServer, Pki, Response, closed_port_url};

fn options() -> CrlFetchOptions {
    CrlFetchOptions::new()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
}

/// A policy trusting `pki`'s CA that fetches distribution points.
fn policy(pki: &Pki) -> TrustPolicy {
    TrustPolicy::new()
        .trust_file(&pki.ca)
        .unwrap()
        .fetch_crl_distribution_points(options())
}

fn leaf(pki: &Pki, cn: &str, serial: u64, dps: &[&str]) -> Certificate {
    Certificate::load(&pki.leaf_with_dp(cn, serial, false, dps).cert).unwrap()
}

#[test]
fn revoked_in_the_distribution_point_crl_is_rejected() {
    let pki = Pki::new();
    let server = HttpServer::start();
    server.set("/ca.crl", Response::ok(pki.crl_der(&[12])));
    let url = server.url("/ca.crl");
    let revoked = leaf(&pki, "Revoked Partner", 12, &[&url]);
    let good = leaf(&pki, "Good Partner", 10, &[&url]);
    assert_eq!(
        revoked.crl_distribution_points(),
        std::slice::from_ref(&url)
    );
    let now = SystemTime::now();
    let policy = policy(&pki);
    assert_eq!(
        policy.validate(&revoked, &[], now),
        Err(ValidationError::Revoked(revoked.subject().to_string()))
    );
    assert!(matches!(
        policy.check(&revoked, &[], now),
        Err(ValidationError::Revoked(_))
    ));
    assert_eq!(policy.check(&good, &[], now), Ok(TrustStatus::Trusted));
    // Without distribution point checking the same certificate passes and nothing is fetched.
    let requests = server.requests("/ca.crl");
    let files_only = TrustPolicy::new().trust_file(&pki.ca).unwrap();
    assert_eq!(
        files_only.check(&revoked, &[], now),
        Ok(TrustStatus::Trusted)
    );
    assert_eq!(server.requests("/ca.crl"), requests);
}

#[test]
fn a_pem_crl_and_a_redirect_work_and_a_crl_file_does_not_hide_the_dp_crl() {
    let pki = Pki::new();
    let server = HttpServer::start();
    let pem = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        base64_lines(&pki.crl_der(&[12]))
    );
    server.set("/ca.pem", Response::ok(pem.into_bytes()));
    server.set("/old", Response::redirect(&server.url("/ca.pem")));
    let revoked = leaf(&pki, "Revoked Partner", 12, &[&server.url("/old")]);
    // A CRL file of the same CA that does not list serial 12 is checked first; the
    // distribution point's CRL still counts.
    let with_file = policy(&pki).add_crl(&pki.crl_der(&[99])).unwrap();
    assert!(matches!(
        with_file.validate(&revoked, &[], SystemTime::now()),
        Err(ValidationError::Revoked(_))
    ));
}

#[test]
fn unreachable_distribution_point_is_unknown_status() {
    let pki = Pki::new();
    let url = closed_port_url("/ca.crl");
    let cert = leaf(&pki, "Partner", 10, &[&url]);
    let now = SystemTime::now();
    // Default: accepted, the status says why revocation is unknown.
    let lenient = policy(&pki);
    lenient.validate(&cert, &[], now).unwrap();
    match lenient.check(&cert, &[], now) {
        Ok(TrustStatus::RevocationUnknown(reason)) => {
            assert!(reason.contains(&url), "{reason}");
            assert!(reason.contains("cannot be reached"), "{reason}");
        }
        other => panic!("expected unknown revocation status, got {other:?}"),
    }
    // Strict: rejected with a message naming the distribution point.
    let strict = policy(&pki).require_revocation_check(true);
    let e = strict.validate(&cert, &[], now).unwrap_err();
    assert!(
        matches!(&e, ValidationError::RevocationUnknown { reason, .. } if reason.contains(&url)),
        "{e}"
    );
    assert!(e.to_string().contains("revocation status"), "{e}");
    assert!(strict.check(&cert, &[], now).is_err());
    // Strict but FailOnUntrustedCert=false: used, reported as untrusted.
    assert!(matches!(
        strict
            .clone()
            .fail_on_untrusted(false)
            .check(&cert, &[], now),
        Ok(TrustStatus::Untrusted(
            ValidationError::RevocationUnknown { .. }
        ))
    ));
}

#[test]
fn a_mirror_is_used_when_the_first_uri_fails_and_ldap_is_skipped() {
    let pki = Pki::new();
    let server = HttpServer::start();
    server.set("/ca.crl", Response::ok(pki.crl_der(&[12])));
    let dead = closed_port_url("/ca.crl");
    let revoked = leaf(
        &pki,
        "Revoked Partner",
        12,
        &[
            "ldap://ldap.example/cn=CA?certificateRevocationList",
            &dead,
            &server.url("/ca.crl"),
        ],
    );
    let now = SystemTime::now();
    let strict = policy(&pki).require_revocation_check(true);
    assert!(matches!(
        strict.validate(&revoked, &[], now),
        Err(ValidationError::Revoked(_))
    ));
    // Only an LDAP distribution point: nothing to fetch, nothing unknown (as without any).
    let ldap_only = leaf(&pki, "Ldap Partner", 13, &["ldap://ldap.example/cn=CA"]);
    assert_eq!(strict.check(&ldap_only, &[], now), Ok(TrustStatus::Trusted));
}

#[test]
fn a_crl_signed_by_another_ca_is_not_trusted() {
    let pki = Pki::new();
    // Same name, other key: the signature does not verify.
    let twin = Pki::new();
    // Another name altogether: not the certificate's issuer.
    let other = Pki::named("Other CA");
    let server = HttpServer::start();
    server.set("/twin.crl", Response::ok(twin.crl_der(&[12])));
    server.set("/other.crl", Response::ok(other.crl_der(&[12])));
    let now = SystemTime::now();
    for (path, why) in [
        ("/twin.crl", "not signed by the certificate's issuer"),
        ("/other.crl", "not issued by the certificate's issuer"),
    ] {
        let cert = leaf(&pki, "Partner", 12, &[&server.url(path)]);
        // The foreign CRL lists serial 12, yet it does not revoke the certificate...
        match policy(&pki).check(&cert, &[], now) {
            Ok(TrustStatus::RevocationUnknown(reason)) => {
                assert!(reason.contains(why), "{path}: {reason}")
            }
            other => panic!("{path}: expected unknown revocation status, got {other:?}"),
        }
        // ...and it is no revocation check either.
        assert!(matches!(
            policy(&pki)
                .require_revocation_check(true)
                .validate(&cert, &[], now),
            Err(ValidationError::RevocationUnknown { .. })
        ));
    }
}

#[test]
fn the_cache_fetches_once_even_for_concurrent_validations() {
    let pki = Pki::new();
    let server = HttpServer::start();
    server.set("/ca.crl", Response::ok(pki.crl_der(&[])));
    let url = server.url("/ca.crl");
    let certs: Vec<Certificate> = (0..4)
        .map(|i| leaf(&pki, &format!("Partner {i}"), 100 + i, &[&url]))
        .collect();
    let policy = Arc::new(policy(&pki));
    let barrier = Arc::new(Barrier::new(certs.len()));
    let threads: Vec<_> = certs
        .into_iter()
        .map(|cert| {
            let (policy, barrier) = (policy.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                policy.check(&cert, &[], SystemTime::now())
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), Ok(TrustStatus::Trusted));
    }
    // A clone shares the cache.
    let again = leaf(&pki, "Partner again", 200, &[&url]);
    let clone = (*policy).clone();
    assert_eq!(
        clone.check(&again, &[], SystemTime::now()),
        Ok(TrustStatus::Trusted)
    );
    assert_eq!(server.requests("/ca.crl"), 1);
}

#[test]
fn oversized_or_garbage_answers_give_clear_errors() {
    let pki = Pki::new();
    let server = HttpServer::start();
    server.set("/big.crl", Response::ok(vec![0x30; 64 * 1024]));
    server.set(
        "/junk.crl",
        Response::ok(b"<html>Service unavailable</html>".to_vec()),
    );
    server.set("/missing.crl", Response::status(404));
    let strict = TrustPolicy::new()
        .trust_file(&pki.ca)
        .unwrap()
        .fetch_crl_distribution_points(options().max_size(16 * 1024))
        .require_revocation_check(true);
    let now = SystemTime::now();
    for (path, message) in [
        ("/big.crl", "is larger than the limit of 16384 bytes"),
        ("/junk.crl", "is not a usable CRL"),
        ("/missing.crl", "answered HTTP status 404"),
    ] {
        let cert = leaf(&pki, "Partner", 10, &[&server.url(path)]);
        let e = strict.validate(&cert, &[], now).unwrap_err();
        assert!(e.to_string().contains(message), "{path}: {e}");
        assert!(e.to_string().contains(&server.url(path)), "{path}: {e}");
    }
}

#[test]
fn untrusted_certificates_cause_no_fetch() {
    let pki = Pki::new();
    let stranger_ca = Pki::new();
    let server = HttpServer::start();
    server.set("/ca.crl", Response::ok(stranger_ca.crl_der(&[])));
    let stranger = leaf(&stranger_ca, "Stranger", 5, &[&server.url("/ca.crl")]);
    assert!(matches!(
        policy(&pki).validate(&stranger, &[], SystemTime::now()),
        Err(ValidationError::UnknownIssuer(_) | ValidationError::BadSignature(_))
    ));
    assert_eq!(server.requests("/ca.crl"), 0);
}

#[test]
fn an_intermediate_revoked_by_the_root_distribution_point_is_rejected() {
    let root = Pki::new();
    let server = HttpServer::start();
    let root_url = server.url("/root.crl");
    let inter_url = server.url("/issuing.crl");
    let inter = root.intermediate_with_dp("Test OFTP Issuing CA", Some(77), &[&root_url]);
    let inter_c = Certificate::load(&inter.ca).unwrap();
    let cert = leaf(&inter, "Chained Partner", 20, &[&inter_url]);
    server.set("/issuing.crl", Response::ok(inter.crl_der(&[])));
    server.set("/root.crl", Response::ok(root.crl_der(&[])));
    let chain = std::slice::from_ref(&inter_c);
    let now = SystemTime::now();
    assert_eq!(
        policy(&root).check(&cert, chain, now),
        Ok(TrustStatus::Trusted)
    );
    assert_eq!(server.requests("/root.crl"), 1);
    assert_eq!(server.requests("/issuing.crl"), 1);
    // The root revokes the intermediate: the leaf below it is rejected.
    server.set("/root.crl", Response::ok(root.crl_der(&[77])));
    assert!(matches!(
        policy(&root).validate(&cert, chain, now),
        Err(ValidationError::Revoked(_))
    ));
    // The intermediate's distribution point unreachable: unknown, named in the reason.
    let dead = closed_port_url("/root.crl");
    let inter2 = root.intermediate_with_dp("Test OFTP Issuing CA 2", Some(78), &[&dead]);
    let inter2_c = Certificate::load(&inter2.ca).unwrap();
    let cert2 = leaf(&inter2, "Chained Partner 2", 21, &[]);
    match policy(&root).check(&cert2, std::slice::from_ref(&inter2_c), now) {
        Ok(TrustStatus::RevocationUnknown(reason)) => {
            assert!(
                reason.contains("Issuing CA 2") && reason.contains(&dead),
                "{reason}"
            )
        }
        other => panic!("expected unknown revocation status, got {other:?}"),
    }
}

/// Base64 in 64-character lines, for a PEM CRL.
fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    b64.as_bytes()
        .chunks(64)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}
