//! The `oftp` command with OFTP 2.0 security: `oftp cert` (thumbprints as OpenSSL computes
//! them, PKCS#12 with a password file) and a real `oftp serve` with only a TLS listener,
//! secure authentication and required file security, called by `oftp send` with a pinned
//! server certificate, a PKCS#12 identity, signing, compression, encryption and a signed
//! receipt. Certificates are made with `openssl` at test time (with rcgen for
//! `oftp cert --crl-dp`, whose CRLs a small HTTP server on 127.0.0.1 serves).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

mod common;
use common::{Server, free_port, oftp_serve, openssl, self_signed, spawn_listening};

#[test]
fn cert_prints_fields_and_openssl_thumbprints() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), "partner");
    let fp = openssl(
        dir.path(),
        &[
            "x509",
            "-in",
            "partner.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let expected = fp.trim().split('=').nth(1).unwrap().to_owned();
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
        .args(["cert", "partner.pem"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&expected), "{expected} not in {text}");
    assert!(text.contains("CN=partner"), "{text}");
    assert!(text.contains("RSA 2048 bits"), "{text}");

    // PKCS#12 with the password in a file; without it the error says how to give it.
    openssl(
        dir.path(),
        &[
            "pkcs12",
            "-export",
            "-in",
            "partner.pem",
            "-inkey",
            "partner.key",
            "-out",
            "partner.p12",
            "-passout",
            "pass:p12secret",
        ],
    );
    std::fs::write(dir.path().join("p12.pw"), "p12secret\n").unwrap();
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
        .args(["cert", "partner.p12", "--password-file", "p12.pw"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&expected) && text.contains("Private key:         present"));
    assert!(!text.contains("p12secret"));
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
        .args(["cert", "partner.p12"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-file"));
}

#[test]
fn cert_lists_key_usages_and_alt_names_only_when_the_certificate_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let cert = |name: &str, ext: &[&str]| {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let subject = format!("/CN={name}");
        let mut args = vec!["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"];
        args.extend([key.as_str(), "-out", pem.as_str(), "-days", "30", "-subj"]);
        args.push(&subject);
        for e in ext {
            args.extend(["-addext", e]);
        }
        openssl(dir.path(), &args);
        let out = Command::cargo_bin("oftp")
            .unwrap()
            .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
            .args(["cert", pem.as_str()])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}");
        text
    };
    let text = cert(
        "full",
        &[
            "subjectAltName=DNS:a.example,DNS:b.example",
            "extendedKeyUsage=serverAuth,clientAuth",
        ],
    );
    assert!(
        text.contains(
            "Signature algorithm: sha256WithRSAEncryption\n\
             Extended key usage:  1.3.6.1.5.5.7.3.1, 1.3.6.1.5.5.7.3.2\n\
             Subject alt names:   DNS:a.example, DNS:b.example\n\
             CA:                  true\n"
        ),
        "{text}"
    );
    let text = cert("bare", &[]);
    assert!(
        text.contains("Signature algorithm: sha256WithRSAEncryption\nCA:                  true\n"),
        "{text}"
    );
}

#[test]
fn send_over_tls_with_secure_authentication_and_file_security() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(d, "server");
    self_signed(d, "client");
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-in",
            "client.pem",
            "-inkey",
            "client.key",
            "-out",
            "client.p12",
            "-passout",
            "pass:clientpw",
        ],
    );
    std::fs::write(d.join("client.pw"), "clientpw\n").unwrap();
    let (plain_port, tls_port) = (free_port(), free_port());
    std::fs::write(
        d.join("server.toml"),
        format!(
            r#"
[local]
ssid = "O0013SERVER"
password = "SRVPW"

[server]
listen = "127.0.0.1:{plain_port}"
data_dir = "sdata"

[security.identity]
cert = "server.pem"
key = "server.key"

[tls]
enabled = true
plain = false
listen = "127.0.0.1:{tls_port}"

[[partners]]
name = "client"
ssid = "O0013CLIENT"
password = "CLIPW"

[partners.security]
certificate = "client.pem"
secure_authentication = "required"
required_security = "signed_encrypted"
"#
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("client.toml"),
        format!(
            r#"
[local]
ssid = "O0013CLIENT"
password = "CLIPW"

[server]
data_dir = "cdata"

[security.identity]
pkcs12 = "client.p12"
password_file = "client.pw"

[[partners]]
name = "server"
ssid = "O0013SERVER"
password = "SRVPW"
address = "127.0.0.1:{tls_port}"

[partners.tls]
enabled = true
pinned_cert = "server.pem"

[partners.security]
certificate = "server.pem"
secure_authentication = "required"
require_signed_receipts = true
"#
        ),
    )
    .unwrap();
    let (_server, lines) = spawn_listening(oftp_serve(d, &["--config", "server.toml"]));
    let first = &lines[0];
    assert!(
        first.contains(&format!("127.0.0.1:{tls_port} (TLS)")),
        "{first}"
    );
    // Only the TLS listener runs.
    assert!(std::net::TcpStream::connect(("127.0.0.1", plain_port)).is_err());

    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(d.join("order.edi"), &payload).unwrap();
    let send = |extra: &[&str]| {
        let mut args = vec!["send", "--config", "client.toml", "--partner", "server"];
        args.extend_from_slice(extra);
        Command::cargo_bin("oftp")
            .unwrap()
            .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
            .args(&args)
            .current_dir(d)
            .output()
            .unwrap()
    };
    let out = send(&[
        "--security",
        "signed-encrypted",
        "--cipher-suite",
        "4",
        "--compress-file",
        "--signed-receipt",
        "order.edi",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("delivered"), "{stdout}");
    assert_eq!(
        std::fs::read(d.join("sdata/inbox/client/ORDER.EDI")).unwrap(),
        payload
    );
    assert!(!stderr.contains("clientpw"));

    // A certificate exchange file is stored under the partner's certificates.
    self_signed(d, "client-next");
    let out = send(&[
        "--security",
        "signed-encrypted",
        "--signed-receipt",
        "--exchange-certificate",
        "deliver",
        "client-next.pem",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stored: Vec<_> = std::fs::read_dir(d.join("sdata/certificates/client"))
        .unwrap()
        .collect();
    assert_eq!(stored.len(), 1);

    // Unencrypted is refused by the server's policy (SFNA 17), exit code 3.
    std::fs::write(d.join("plain.edi"), b"plain").unwrap();
    let out = send(&["--security", "signed", "--signed-receipt", "plain.edi"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("SFNA 17"), "{stdout}");
}

/// Runs `openssl s_client` with `extra` against the TLS listener on `port` and reads until
/// the server's SSRM ("ODETTE FTP READY") or until the server closes the connection (bounded
/// by a timeout). Returns whether SSRM arrived, and what was read.
fn s_client_sees_ssrm(d: &Path, port: u16, extra: &[&str]) -> (bool, String) {
    use std::io::Read;
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr])
        .args(extra)
        .current_dir(d)
        // Kept open and silent, so s_client waits for the server rather than quitting.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // SSRM ends in CR, not a newline, so read raw bytes; ends at EOF (server closed).
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("ODETTE FTP READY") {
                break;
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    let out = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_else(|_| "(timed out)".into());
    let _ = child.kill();
    let _ = child.wait();
    (out.contains("ODETTE FTP READY"), out)
}

/// `[tls] client_certs = "partners"` with `client_auth = "required"`: only a configured
/// partner's certificate gets through the handshake (openssl s_client sees SSRM); a stranger's
/// certificate and no certificate are refused. The plain and TLS listeners run side by side.
#[test]
fn tls_client_certificates_must_be_partners_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in ["server", "client", "stranger"] {
        self_signed(d, name);
    }
    let (plain_port, tls_port) = (free_port(), free_port());
    std::fs::write(
        d.join("server.toml"),
        format!(
            r#"
[local]
ssid = "O0013SERVER"
password = "SRVPW"

[server]
listen = "127.0.0.1:{plain_port}"
data_dir = "sdata"

[security.identity]
cert = "server.pem"
key = "server.key"

[tls]
enabled = true
listen = "127.0.0.1:{tls_port}"
client_auth = "required"
client_certs = "partners"
# Both certificates validate, so only the partner check refuses the stranger.
client_cas = ["client.pem", "stranger.pem"]

[[partners]]
name = "client"
ssid = "O0013CLIENT"
password = "CLIPW"

[partners.security]
certificate = "client.pem"
"#
        ),
    )
    .unwrap();
    let mut child = oftp_serve(d, &["--config", "server.toml"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let listening: Vec<String> = (0..2).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(listening[1].contains("(TLS)"), "{listening:?}");

    let (ok, out) = s_client_sees_ssrm(d, tls_port, &["-cert", "client.pem", "-key", "client.key"]);
    assert!(ok, "the partner's certificate must be accepted: {out}");
    let (ok, out) = s_client_sees_ssrm(
        d,
        tls_port,
        &["-cert", "stranger.pem", "-key", "stranger.key"],
    );
    assert!(!ok, "a stranger's certificate must be refused: {out}");
    let (ok, out) = s_client_sees_ssrm(d, tls_port, &[]);
    assert!(!ok, "no certificate must be refused: {out}");
    // The plain listener is unaffected.
    assert!(std::net::TcpStream::connect(("127.0.0.1", plain_port)).is_ok());
}

#[test]
fn partners_client_certs_need_client_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(d, "server");
    std::fs::write(
        d.join("server.toml"),
        r#"
[local]
ssid = "O0013SERVER"
password = "SRVPW"

[server]
listen = "127.0.0.1:0"

[security.identity]
cert = "server.pem"
key = "server.key"

[tls]
enabled = true
listen = "127.0.0.1:0"
client_certs = "partners"
"#,
    )
    .unwrap();
    let out = Command::cargo_bin("oftp")
        .unwrap()
        .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
        .args(["serve", "--config", "server.toml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("client_auth"), "{err}");
}

#[test]
fn cert_with_crl_dp_checks_the_distribution_point() {
    let pki = oftp_test_pki::Pki::new();
    let crls = oftp_test_pki::HttpServer::start();
    crls.set("/ca.crl", oftp_test_pki::Response::ok(pki.crl_der(&[12])));
    let url = crls.url("/ca.crl");
    let dead = oftp_test_pki::closed_port_url("/ca.crl");
    let run = |leaf: &oftp_test_pki::Leaf| {
        let out = Command::cargo_bin("oftp")
            .unwrap()
            .env("OFTP_HTTP_LISTEN", "127.0.0.1:0")
            .arg("cert")
            .arg(&leaf.cert)
            .arg("--ca")
            .arg(&pki.ca)
            .arg("--crl-dp")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(&pki.leaf_with_dp("Good", 10, false, &[&url]));
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("CRL distribution:    {url}")),
        "{text}"
    );
    let (ok, text) = run(&pki.leaf_with_dp("Revoked", 12, false, &[&url]));
    assert!(!ok && text.contains("is revoked"), "{text}");
    let (ok, text) = run(&pki.leaf_with_dp("Unknown", 13, false, &[&dead]));
    assert!(!ok && text.contains("revocation status"), "{text}");
    assert_eq!(crls.requests("/ca.crl"), 2);
}
