//! TLS transport against OpenSSL: our acceptor with `openssl s_client` (TLS 1.2 and 1.3, old
//! versions refused, client certificates required/refused/expired, per-connection certificate
//! choice by SNI, status events) and our connector with `openssl s_server` (CA verification,
//! client certificate) and against our own acceptor (pinning, wrong CA).

use oftp_test_pki as pki;

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use oftp::security::IdentityConfig;
use oftp::tls::{ClientAuth, ServerTrust, TlsAcceptor, TlsConnector, TlsIdentity};
use oftp::transport::{Acceptor, Connector};
use oftp_security::TrustPolicy;
use pki::{Leaf, Pki, p};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

fn tls_identity(leaf: &Leaf) -> TlsIdentity {
    TlsIdentity::load(&IdentityConfig {
        cert: Some(leaf.cert.clone()),
        key: Some(leaf.key.clone()),
        ..IdentityConfig::default()
    })
    .unwrap()
}

/// Accepts one connection with `acceptor`; on success writes `hello from oftp\n` and closes.
/// Returns the address and a task that yields the handshake error, if any.
async fn serve_once(
    acceptor: TlsAcceptor,
) -> (String, tokio::task::JoinHandle<Result<(), String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(b"hello from oftp\n")
            .await
            .map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(())
    });
    (addr, task)
}

/// Runs `openssl s_client` against `addr` with extra arguments; returns (success, output).
async fn s_client(addr: &str, ca: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "s_client",
        "-connect",
        addr,
        "-CAfile",
        p(ca),
        "-verify_return_error",
        "-ign_eof",
        "-servername",
        "bob.example",
    ];
    args.extend_from_slice(extra);
    let out = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.contains("hello from oftp"),
        text,
    )
}

#[tokio::test]
async fn server_speaks_tls12_and_tls13_and_refuses_older_versions() {
    let pki = Pki::new();
    let bob = pki.leaf("Bob", 3, false);
    let statuses = Arc::new(Mutex::new(Vec::new()));
    for (flag, expect) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let seen = statuses.clone();
        let acceptor = TlsAcceptor::new(tls_identity(&bob))
            .unwrap()
            .on_status(move |s| seen.lock().unwrap().push(s.message.clone()));
        let (addr, task) = serve_once(acceptor).await;
        let (ok, out) = s_client(&addr, &pki.ca, &[flag]).await;
        assert!(ok, "{flag}: {out}");
        assert!(out.contains(expect), "{flag}: {out}");
        task.await.unwrap().unwrap();
    }
    let log = statuses.lock().unwrap().join("\n");
    assert!(log.contains("TLS established: TLSv1_2"), "{log}");
    assert!(log.contains("TLS established: TLSv1_3"), "{log}");

    let acceptor = TlsAcceptor::new(tls_identity(&bob)).unwrap();
    let (addr, task) = serve_once(acceptor).await;
    let (ok, out) = s_client(&addr, &pki.ca, &["-tls1_1"]).await;
    assert!(!ok, "TLS 1.1 must be refused: {out}");
    assert!(task.await.unwrap().is_err());
}

#[tokio::test]
async fn client_certificates_required_validated_and_decided_by_the_hook() {
    let pki = Pki::new();
    let bob = pki.leaf("Bob", 3, false);
    let alice = pki.leaf("Alice", 2, false);
    let old = pki.leaf("Old", 5, true);
    let mallory = pki.leaf("Mallory", 7, false);
    let trust = || TrustPolicy::new().trust([oftp_security::Certificate::load(&pki.ca).unwrap()]);
    let acceptor = || {
        TlsAcceptor::new(tls_identity(&bob))
            .unwrap()
            .client_auth(ClientAuth::Required, trust())
            .unwrap()
            .on_client_certificate(|c| {
                c.default_decision() && !c.certificate.subject().contains("Mallory")
            })
    };
    // A valid certificate: accepted.
    let (addr, task) = serve_once(acceptor()).await;
    let (ok, out) = s_client(
        &addr,
        &pki.ca,
        &["-cert", p(&alice.cert), "-key", p(&alice.key)],
    )
    .await;
    assert!(ok, "{out}");
    task.await.unwrap().unwrap();
    // No certificate: the handshake fails.
    let (addr, task) = serve_once(acceptor()).await;
    let (ok, _) = s_client(&addr, &pki.ca, &[]).await;
    assert!(!ok);
    assert!(task.await.unwrap().is_err());
    // Expired: validation fails, refused by the default decision.
    let (addr, task) = serve_once(acceptor()).await;
    let (ok, _) = s_client(
        &addr,
        &pki.ca,
        &["-cert", p(&old.cert), "-key", p(&old.key)],
    )
    .await;
    assert!(!ok);
    let e = task.await.unwrap().unwrap_err();
    assert!(
        e.contains("Old") && e.to_lowercase().contains("expired"),
        "{e}"
    );
    // Valid but refused by the application.
    let (addr, task) = serve_once(acceptor()).await;
    let (ok, _) = s_client(
        &addr,
        &pki.ca,
        &["-cert", p(&mallory.cert), "-key", p(&mallory.key)],
    )
    .await;
    assert!(!ok);
    let e = task.await.unwrap().unwrap_err();
    assert!(e.contains("by the application"), "{e}");
}

#[tokio::test]
async fn connection_request_hook_chooses_the_certificate() {
    let pki = Pki::new();
    let bob = pki.leaf("Bob", 3, false);
    let other = tls_identity(&pki.leaf("Carol", 8, false));
    let acceptor = TlsAcceptor::new(tls_identity(&bob))
        .unwrap()
        .on_connection_request(move |hello| {
            assert!(!hello.cipher_suites.is_empty());
            (hello.server_name.as_deref() == Some("carol.example")).then(|| other.clone())
        });
    let (addr, task) = serve_once(acceptor).await;
    let (ok, out) = s_client(&addr, &pki.ca, &["-servername", "carol.example"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("CN=Carol") || out.contains("CN = Carol"),
        "{out}"
    );
    task.await.unwrap().unwrap();
}

/// Starts `openssl s_server` (one connection, reverses lines) and waits until it listens.
async fn s_server(
    pki: &Pki,
    leaf: &Leaf,
    require_client_cert: bool,
) -> (String, tokio::process::Child) {
    // The free port is found by binding and releasing it, so another test can take it before
    // s_server binds; s_server then exits without ACCEPT, and another port is tried.
    for _ in 0..5 {
        if let Some(started) = try_s_server(pki, leaf, require_client_cert).await {
            return started;
        }
    }
    panic!("openssl s_server did not start on any of 5 ports");
}

/// One attempt of [`s_server`]: `None` if s_server ended before it listened.
async fn try_s_server(
    pki: &Pki,
    leaf: &Leaf,
    require_client_cert: bool,
) -> Option<(String, tokio::process::Child)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut args = vec![
        "s_server",
        "-accept",
        &port,
        "-cert",
        p(&leaf.cert),
        "-key",
        p(&leaf.key),
        "-naccept",
        "1",
        "-rev",
    ];
    if require_client_cert {
        args.extend_from_slice(&[
            "-Verify",
            "1",
            "-CAfile",
            p(&pki.ca),
            "-verify_return_error",
        ]);
    }
    let mut child = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // s_server prints ACCEPT once it listens; bounded by its output.
    loop {
        match lines.next_line().await.unwrap() {
            Some(line) if line.starts_with("ACCEPT") => break,
            Some(_) => {}
            None => return None,
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some((format!("127.0.0.1:{port}"), child))
}

async fn reverse_roundtrip(connector: &TlsConnector, addr: &str) -> std::io::Result<String> {
    let mut tls = connector.connect(addr).await?;
    tls.write_all(b"oftp\n").await?;
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test]
async fn client_verifies_openssl_server_and_presents_its_certificate() {
    let pki = Pki::new();
    let bob = pki.leaf("Bob", 3, false);
    let alice = pki.leaf("Alice", 2, false);
    let trust = ServerTrust::new().trust_ca_file(&pki.ca).unwrap();
    let connector = TlsConnector::new(trust.clone(), Some(&tls_identity(&alice)))
        .unwrap()
        .server_name("bob.example");
    let (addr, mut child) = s_server(&pki, &bob, true).await;
    assert_eq!(
        reverse_roundtrip(&connector, &addr).await.unwrap(),
        "ptfo\n"
    );
    let _ = child.wait().await;

    // The wrong name is refused.
    let wrong_name = TlsConnector::new(trust, None)
        .unwrap()
        .server_name("mallory.example");
    let (addr, _child) = s_server(&pki, &bob, false).await;
    let e = reverse_roundtrip(&wrong_name, &addr).await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("name"), "{e}");
}

#[tokio::test]
async fn client_pins_the_server_certificate_and_rejects_unknown_ones() {
    let pki = Pki::new();
    let bob = pki.leaf("Bob", 3, false);
    let other_pki = Pki::new();
    let pinned = TlsConnector::new(ServerTrust::new().pin_file(&bob.cert).unwrap(), None).unwrap();
    let (addr, task) = serve_once(TlsAcceptor::new(tls_identity(&bob)).unwrap()).await;
    let mut tls = pinned.connect(&addr).await.unwrap();
    let mut got = String::new();
    tls.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hello from oftp\n");
    task.await.unwrap().unwrap();

    let wrong_ca = TlsConnector::new(
        ServerTrust::new().trust_ca_file(&other_pki.ca).unwrap(),
        None,
    )
    .unwrap()
    .server_name("bob.example");
    let (addr, task) = serve_once(TlsAcceptor::new(tls_identity(&bob)).unwrap()).await;
    assert!(wrong_ca.connect(&addr).await.is_err());
    assert!(task.await.unwrap().is_err());

    let other_pin = TlsConnector::new(
        ServerTrust::new()
            .pin_file(&pki.leaf("Carol", 8, false).cert)
            .unwrap(),
        None,
    )
    .unwrap();
    let (addr, task) = serve_once(TlsAcceptor::new(tls_identity(&bob)).unwrap()).await;
    assert!(other_pin.connect(&addr).await.is_err());
    assert!(task.await.unwrap().is_err());
    assert!(TlsConnector::new(ServerTrust::new(), None).is_err());
}

/// Paused time: the handshake timeout is a tokio timer, so the test takes no real time; the
/// 10 s limit around it fires (in paused time) if the acceptor never gives up.
#[tokio::test(start_paused = true)]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let pki = Pki::new();
    let bob = pki.leaf("Bob", 3, false);
    let acceptor = TlsAcceptor::new(tls_identity(&bob))
        .unwrap()
        .handshake_timeout(std::time::Duration::from_millis(200));
    let (addr, task) = serve_once(acceptor).await;
    let _silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("the acceptor still waits for the silent client's handshake")
        .unwrap()
        .unwrap_err();
    assert!(e.contains("timed out"), "{e}");
}
