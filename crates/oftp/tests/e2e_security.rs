//! OFTP 2.0 security end to end: a real server and client on 127.0.0.1 with certificates
//! made at test time. Every cipher suite and security level, V records, signed receipts
//! (valid and forged), tampered ciphertext, the wrong recipient, an expired certificate,
//! partner policy (SFNA), revocation by CRL file and CRL distribution point, secure
//! authentication (success, wrong key, policy mismatch),
//! certificate exchange, and all of it over TLS with client certificates (also with
//! `openssl s_client` seeing SSRM only after the handshake).

mod common;
use oftp_test_pki as pki;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{CLIENT_SSID, SERVER_SSID, TestServer, client_config, content, server_config};
use oftp::config::SessionLimits;
use oftp::handler::{
    Direction, EndResponse, EndResponseTiming, Handler, NegativeResponse, SessionInfo,
    TransferInfo, TransferResult,
};
use oftp::journal::SqliteJournal;
use oftp::security::{
    CertificateExchange, FileSecurity, IdentityConfig, LocalSecurityConfig, PartnerSecurityConfig,
    ReceivedCertificate, SecureAuthentication, SecurityContext, SendSecurity,
};
use oftp::stamp::FileStampExt as _;
use oftp::tls::{ClientAuth, ServerTrust, TlsAcceptor, TlsConnector, TlsIdentity};
use oftp::transport::{Connector, FileServices, PlainTcp, ServiceFailure, ServiceRefusal};
use oftp::{Client, ClientError, FileOutcome, OutgoingFile, Server};
use oftp_proto::codec::Sfid;
use pki::{Leaf, Pki};

fn id(leaf: &Leaf) -> IdentityConfig {
    IdentityConfig {
        cert: Some(leaf.cert.clone()),
        key: Some(leaf.key.clone()),
        ..IdentityConfig::default()
    }
}

/// Keys of both sides and the CA.
struct Keys {
    pki: Pki,
    server: Leaf,
    client: Leaf,
}

fn keys() -> Keys {
    let pki = Pki::new();
    let server = pki.leaf("Server", 2, false);
    let client = pki.leaf("Client", 3, false);
    Keys {
        pki,
        server,
        client,
    }
}

fn local(me: &Leaf, work: &Path) -> LocalSecurityConfig {
    LocalSecurityConfig {
        identity: Some(id(me)),
        work_dir: Some(work.join("security")),
        ..LocalSecurityConfig::default()
    }
}

fn policy(cert: &Path, tweak: impl FnOnce(&mut PartnerSecurityConfig)) -> PartnerSecurityConfig {
    let mut p = PartnerSecurityConfig {
        certificate: Some(cert.to_owned()),
        ..PartnerSecurityConfig::default()
    };
    tweak(&mut p);
    p
}

fn context(
    my_code: &str,
    local: &LocalSecurityConfig,
    partner_code: &str,
    partner: &PartnerSecurityConfig,
    work: &Path,
) -> Arc<SecurityContext> {
    Arc::new(
        SecurityContext::builder(my_code, local, work.to_owned())
            .unwrap()
            .partner("partner", partner_code, partner_code, partner)
            .unwrap()
            .build(),
    )
}

#[derive(Default, Clone)]
struct Certs(Arc<Mutex<Vec<ReceivedCertificate>>>);

impl Handler for Certs {
    async fn certificate_received(&self, _s: &SessionInfo, c: &ReceivedCertificate) {
        self.0.lock().unwrap().push(c.clone());
    }
}

/// A secured server: `server_policy` is its view of the client.
async fn secure_server<H: Handler>(
    k: &Keys,
    server_policy: PartnerSecurityConfig,
    acceptor: Option<TlsAcceptor>,
    handler: H,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let cfg = server_config(dir.path());
    let sec = context(
        SERVER_SSID,
        &local(&k.server, dir.path()),
        CLIENT_SSID,
        &server_policy,
        dir.path(),
    );
    let server = Server::new(cfg).unwrap().handler(handler).security(sec);
    let running = match acceptor {
        Some(a) => server.acceptor(a).start().await.unwrap(),
        None => server.start().await.unwrap(),
    };
    TestServer { dir, running }
}

fn secure_client(
    k: &Keys,
    me: &Leaf,
    dir: &Path,
    client_policy: PartnerSecurityConfig,
) -> Client<(), PlainTcp, Arc<SecurityContext>> {
    let journal = SqliteJournal::open_in_dir(dir).unwrap();
    let _ = k;
    let sec = context(
        CLIENT_SSID,
        &local(me, dir),
        SERVER_SSID,
        &client_policy,
        dir,
    );
    Client::new(client_config(dir, SessionLimits::default()), journal)
        .unwrap()
        .security(sec)
}

fn send_all(suite: u8, security: FileSecurity, compress: bool) -> SendSecurity {
    SendSecurity {
        security,
        cipher_suite: suite,
        compress,
        signed_receipt: true,
    }
}

#[tokio::test]
async fn every_suite_and_level_delivers_with_signed_receipts() {
    let k = keys();
    let server = secure_server(
        &k,
        policy(&k.client.cert, |p| p.require_signed_receipts = true),
        None,
        Certs::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = content(150_000, 7);
    let cases = (1..=6u8)
        .map(|s| (s, FileSecurity::SignedEncrypted, true))
        .chain([
            (2, FileSecurity::Signed, false),
            (4, FileSecurity::Encrypted, false),
            (6, FileSecurity::None, true),
            (4, FileSecurity::None, false),
        ]);
    for (i, (suite, level, compress)) in cases.enumerate() {
        let src = dir.path().join(format!("F{i}"));
        std::fs::write(&src, &data).unwrap();
        let client_dir = dir.path().join(format!("c{i}"));
        std::fs::create_dir_all(&client_dir).unwrap();
        let client = secure_client(
            &k,
            &k.client,
            &client_dir,
            policy(&k.server.cert, |p| {
                p.send = send_all(suite, level, compress);
                p.require_signed_receipts = true;
            }),
        );
        let report = client
            .run(&server.addr(), vec![OutgoingFile::new(&src)])
            .await
            .unwrap();
        assert_eq!(
            report.files[0].1,
            FileOutcome::Delivered,
            "suite {suite} {level:?} compress {compress}"
        );
        let got = std::fs::read(server.inbox().join(format!("F{i}"))).unwrap();
        assert_eq!(got, data, "suite {suite} {level:?}");
        // The processed copy is gone once the transfer is settled.
        let leftovers = std::fs::read_dir(client_dir.join("security"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(leftovers, 0);
    }
}

#[tokio::test]
async fn v_records_survive_signing_and_encryption() {
    let k = keys();
    let server = secure_server(&k, policy(&k.client.cert, |_| {}), None, Certs::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // Raw V records: each after its 2-octet length (RFC 5024 6.5, the record headers a
    // signed or encrypted V file carries), with octets a line mapping would trip over.
    let mut records = Vec::new();
    for r in [&b"first record"[..], b"line\r\nfeed", b"", b"\0\xFF\n\r"] {
        records.extend_from_slice(&(r.len() as u16).to_be_bytes());
        records.extend_from_slice(r);
    }
    let src = dir.path().join("RECORDS");
    std::fs::write(&src, &records).unwrap();
    let client = secure_client(
        &k,
        &k.client,
        dir.path(),
        policy(&k.server.cert, |p| {
            p.send = send_all(4, FileSecurity::SignedEncrypted, true)
        }),
    );
    let report = client
        .run(
            &server.addr(),
            vec![OutgoingFile::new(&src).format(oftp_proto::codec::FileFormat::Variable, 100)],
        )
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered);
    assert_eq!(
        std::fs::read(server.inbox().join("RECORDS")).unwrap(),
        records
    );
}

#[tokio::test]
async fn records_mapped_to_lines_survive_signing_and_encryption() {
    use oftp::config::RecordMapping;
    let k = keys();
    // Both sides keep F/V records as lines; inside CMS they travel in the RFC 5024 6.5 form.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_config(dir.path());
    let mut p = common::partner("client", CLIENT_SSID, common::CLIENT_PW);
    p.record_mapping = RecordMapping::Lines;
    cfg.partners = oftp::config::PartnerTable::new([p]).unwrap();
    let sec = context(
        SERVER_SSID,
        &local(&k.server, dir.path()),
        CLIENT_SSID,
        &policy(&k.client.cert, |_| {}),
        dir.path(),
    );
    let running = Server::new(cfg)
        .unwrap()
        .security(sec)
        .start()
        .await
        .unwrap();
    let server = TestServer { dir, running };

    let cdir = tempfile::tempdir().unwrap();
    let mut ccfg = client_config(cdir.path(), SessionLimits::default());
    ccfg.partner.record_mapping = RecordMapping::Lines;
    let sec = context(
        CLIENT_SSID,
        &local(&k.client, cdir.path()),
        SERVER_SSID,
        &policy(&k.server.cert, |p| {
            p.send = send_all(4, FileSecurity::SignedEncrypted, true)
        }),
        cdir.path(),
    );
    let client = Client::new(ccfg, SqliteJournal::open_in_dir(cdir.path()).unwrap())
        .unwrap()
        .security(sec);
    let text = b"first record\r\nwith a CR\r inside\r\n\r\nlast\r\n";
    let src = cdir.path().join("LINES");
    std::fs::write(&src, text).unwrap();
    let report = client
        .run(
            &server.addr(),
            vec![OutgoingFile::new(&src).format(oftp_proto::codec::FileFormat::Variable, 100)],
        )
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(std::fs::read(server.inbox().join("LINES")).unwrap(), text);
}

#[tokio::test]
async fn forged_receipts_wrong_recipient_and_policy_refusals() {
    let k = keys();
    let eve = k.pki.leaf("Eve", 4, false);
    let old = k.pki.leaf("Old", 5, true);
    let server = secure_server(
        &k,
        policy(&k.client.cert, |p| {
            p.required_security = FileSecurity::Encrypted
        }),
        None,
        Certs::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run = |c: Client<(), PlainTcp, Arc<SecurityContext>>, name: &str| {
        let src = dir.path().join(name);
        std::fs::write(&src, content(20_000, 3)).unwrap();
        let addr = server.addr();
        async move {
            c.run(&addr, vec![OutgoingFile::new(&src)])
                .await
                .unwrap()
                .files
                .remove(0)
                .1
        }
    };
    // The server's EERP is signed with the server key; the client expects Eve's signature.
    let d1 = dir.path().join("forged");
    std::fs::create_dir_all(&d1).unwrap();
    let mut p1 = policy(&k.server.cert, |p| {
        p.send = send_all(4, FileSecurity::SignedEncrypted, false);
    });
    p1.receipt_cert = Some(eve.cert.clone());
    match run(secure_client(&k, &k.client, &d1, p1), "D1").await {
        FileOutcome::EndResponseRejected { text } => {
            assert!(text.contains("not valid"), "{text}")
        }
        other => panic!("forged receipt accepted: {other:?}"),
    }
    // Encrypted for Eve instead of the server: EFNA 22.
    let d2 = dir.path().join("wrong-recipient");
    std::fs::create_dir_all(&d2).unwrap();
    let p2 = PartnerSecurityConfig {
        certificate: Some(k.server.cert.clone()),
        encryption_cert: Some(eve.cert.clone()),
        send: send_all(2, FileSecurity::SignedEncrypted, false),
        ..PartnerSecurityConfig::default()
    };
    match run(secure_client(&k, &k.client, &d2, p2), "D2").await {
        FileOutcome::Refused { reason, .. } => assert_eq!(reason.0, 22),
        other => panic!("{other:?}"),
    }
    // Unencrypted from a partner who must encrypt: SFNA 17.
    let d3 = dir.path().join("plain");
    std::fs::create_dir_all(&d3).unwrap();
    let p3 = policy(&k.server.cert, |p| {
        p.send = send_all(4, FileSecurity::Signed, false)
    });
    match run(secure_client(&k, &k.client, &d3, p3), "D3").await {
        FileOutcome::Rejected { reason, .. } => assert_eq!(reason.0, 17),
        other => panic!("{other:?}"),
    }
    // Expired encryption certificate: not sent at all.
    let d4 = dir.path().join("expired");
    std::fs::create_dir_all(&d4).unwrap();
    let p4 = PartnerSecurityConfig {
        certificate: Some(old.cert.clone()),
        send: send_all(4, FileSecurity::Encrypted, false),
        ..PartnerSecurityConfig::default()
    };
    match run(secure_client(&k, &k.client, &d4, p4), "D4").await {
        FileOutcome::NotSent { reason } => {
            assert!(reason.to_lowercase().contains("expired"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// File services that flip one byte of the processed copy before it is sent.
struct Tamper(Arc<SecurityContext>);

impl FileServices for Tamper {
    fn check_incoming(&self, sfid: &Sfid) -> Result<(), ServiceRefusal> {
        self.0.check_incoming(sfid)
    }

    fn finish_incoming(&self, sfid: &Sfid, data: &Path) -> Result<(), ServiceFailure> {
        self.0.finish_incoming(sfid, data)
    }

    fn prepare_outgoing(
        &self,
        sfid: &mut Sfid,
        source: &Path,
    ) -> std::io::Result<Option<std::path::PathBuf>> {
        let copy = self.0.prepare_outgoing(sfid, source)?;
        if let Some(c) = &copy {
            let mut bytes = std::fs::read(c)?;
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
            std::fs::write(c, bytes)?;
        }
        Ok(copy)
    }
}

#[tokio::test]
async fn tampered_ciphertext_is_refused_after_transfer() {
    let k = keys();
    let server = secure_server(&k, policy(&k.client.cert, |_| {}), None, Certs::default()).await;
    tampered_file_gets_an_efna(&k, &server).await;
}

/// Identification codes are upper case on the wire (RFC 5024 5.3 String, 5.4), so a partner
/// configured in lower case is the same partner: a file it sends itself that cannot be opened
/// is refused with an EFNA, as from any direct sender, not taken for a relayed file (EFPA and a
/// NERP to an "originator" that is the partner itself).
#[tokio::test]
async fn a_file_from_a_partner_configured_in_lower_case_is_not_taken_for_a_relayed_one() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_config(dir.path());
    let mut client = common::partner("client", &CLIENT_SSID.to_lowercase(), common::CLIENT_PW);
    client.sfid = CLIENT_SSID.to_lowercase();
    cfg.partners = oftp::config::PartnerTable::new([client]).unwrap();
    let sec = context(
        SERVER_SSID,
        &local(&k.server, dir.path()),
        CLIENT_SSID,
        &policy(&k.client.cert, |_| {}),
        dir.path(),
    );
    let running = Server::new(cfg)
        .unwrap()
        .security(sec)
        .start()
        .await
        .unwrap();
    tampered_file_gets_an_efna(&k, &TestServer { dir, running }).await;
}

/// The client sends `server` a signed, compressed and encrypted file whose ciphertext is
/// tampered with on the way: the server cannot open it and, the client being the file's
/// originator, refuses it with an EFNA (21 to 23); nothing reaches the inbox.
async fn tampered_file_gets_an_efna(k: &Keys, server: &TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("DATA");
    std::fs::write(&src, content(50_000, 9)).unwrap();
    let sec = context(
        CLIENT_SSID,
        &local(&k.client, dir.path()),
        SERVER_SSID,
        &policy(&k.server.cert, |p| {
            p.send = send_all(4, FileSecurity::SignedEncrypted, true)
        }),
        dir.path(),
    );
    let client = Client::new(
        client_config(dir.path(), SessionLimits::default()),
        SqliteJournal::open_in_dir(dir.path()).unwrap(),
    )
    .unwrap()
    .file_services(Tamper(sec));
    let report = client
        .run(&server.addr(), vec![OutgoingFile::new(&src)])
        .await
        .unwrap();
    match &report.files[0].1 {
        FileOutcome::Refused { reason, .. } => assert!((21..=23).contains(&reason.0), "{reason:?}"),
        other => panic!("the originator's own file must get an EFNA, got {other:?}"),
    }
    assert!(!server.inbox().join("DATA").exists());
}

#[tokio::test]
async fn secure_authentication_success_wrong_key_and_policy_mismatch() {
    let k = keys();
    let required = |cert: &Path| {
        policy(cert, |p| {
            p.secure_authentication = SecureAuthentication::Required;
        })
    };
    let server = secure_server(&k, required(&k.client.cert), None, Certs::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("AUTH");
    std::fs::write(&src, b"authenticated").unwrap();

    let d1 = dir.path().join("ok");
    std::fs::create_dir_all(&d1).unwrap();
    let report = secure_client(&k, &k.client, &d1, required(&k.server.cert))
        .run(&server.addr(), vec![OutgoingFile::new(&src)])
        .await
        .unwrap();
    assert!(report.negotiated.secure_auth);
    assert_eq!(report.files[0].1, FileOutcome::Delivered);

    // The client answers with a key the server did not envelope the challenge to: ESID 11,
    // and the session counts as refused (no file was offered), not as one that ran.
    let mallory = k.pki.leaf("Mallory", 6, false);
    let d2 = dir.path().join("wrong-key");
    std::fs::create_dir_all(&d2).unwrap();
    let e = secure_client(&k, &mallory, &d2, required(&k.server.cert))
        .run(&server.addr(), vec![OutgoingFile::new(&src)])
        .await
        .unwrap_err();
    let reason = match &e {
        ClientError::Rejected { reason, .. } | ClientError::Refused { reason, .. } => *reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        reason,
        oftp_proto::codec::EsidReason::INVALID_CHALLENGE_RESPONSE,
        "{e}"
    );

    // The client does not do secure authentication; the server requires it: ESID 12.
    let d3 = dir.path().join("disallowed");
    std::fs::create_dir_all(&d3).unwrap();
    let e = secure_client(
        &k,
        &k.client,
        &d3,
        policy(&k.server.cert, |p| {
            p.secure_authentication = SecureAuthentication::Disallowed;
        }),
    )
    .run(&server.addr(), vec![])
    .await
    .unwrap_err();
    assert!(e.to_string().contains("ESID 12"), "{e}");
    assert!(matches!(e, ClientError::Rejected { .. }), "{e:?}");
}

#[tokio::test]
async fn certificate_exchange_replaces_only_by_policy() {
    let k = keys();
    let next = k.pki.leaf("Client Next", 8, false);
    let handler = Certs::default();
    let server = secure_server(
        &k,
        policy(&k.client.cert, |p| p.accept_certificate_replace = true),
        None,
        handler.clone(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = secure_client(
        &k,
        &k.client,
        dir.path(),
        policy(&k.server.cert, |p| {
            p.send = send_all(4, FileSecurity::Signed, false)
        }),
    );
    let report = client
        .run(
            &server.addr(),
            vec![OutgoingFile::certificate_exchange(
                CertificateExchange::Replace,
                &next.cert,
            )],
        )
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered);
    let got = handler.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].replaced);
    assert_eq!(got[0].kind, CertificateExchange::Replace);
    assert!(got[0].certificate.subject().contains("Client Next"));
    assert!(got[0].stored.exists());

    // From now on the server expects signatures by the new key: the old one is refused.
    let src = dir.path().join("AFTER");
    std::fs::write(&src, b"signed with the old key").unwrap();
    let d2 = dir.path().join("after");
    std::fs::create_dir_all(&d2).unwrap();
    // (No secure authentication this time: the server would now challenge the new key.)
    let report = secure_client(
        &k,
        &k.client,
        &d2,
        policy(&k.server.cert, |p| {
            p.send = send_all(4, FileSecurity::Signed, false);
            p.secure_authentication = SecureAuthentication::Disallowed;
        }),
    )
    .run(&server.addr(), vec![OutgoingFile::new(&src)])
    .await
    .unwrap();
    match &report.files[0].1 {
        FileOutcome::Refused { reason, .. } => assert_eq!(reason.0, 21),
        other => panic!("{other:?}"),
    }
}

/// A certificate request gets our certificate back: in the same session when the requester
/// can receive, through the partner's outbox for the next session when it cannot; never when
/// the partner's `answer_certificate_requests` is off.
#[tokio::test]
async fn certificate_request_is_answered_with_a_delivery_of_our_certificate() {
    let k = keys();
    let deliver = CertificateExchange::Deliver.virtual_file_name();
    for answer in [true, false] {
        let server_seen = Certs::default();
        let server = secure_server(
            &k,
            policy(&k.client.cert, |p| p.answer_certificate_requests = answer),
            None,
            server_seen.clone(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let client_seen = Certs::default();
        let report = secure_client(&k, &k.client, dir.path(), policy(&k.server.cert, |_| {}))
            .handler(client_seen.clone())
            .run(
                &server.addr(),
                vec![OutgoingFile::certificate_exchange(
                    CertificateExchange::Request,
                    &k.client.cert,
                )],
            )
            .await
            .unwrap();
        assert_eq!(report.files[0].1, FileOutcome::Delivered, "answer {answer}");
        let s = server_seen.0.lock().unwrap().clone();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, CertificateExchange::Request);
        assert!(s[0].certificate.subject().contains("Client"));
        assert_eq!(s[0].answered, answer);
        let c = client_seen.0.lock().unwrap().clone();
        // Nothing waits in the outbox either way: sent, or never written.
        assert!(!server.outbox().join(deliver).exists());
        if !answer {
            assert!(c.is_empty(), "{c:?}");
            assert_eq!(report.received.len(), 0);
            continue;
        }
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].kind, CertificateExchange::Deliver);
        let server_cert = oftp_security::Certificate::load(&k.server.cert).unwrap();
        assert_eq!(
            c[0].certificate.thumbprint_sha256(),
            server_cert.thumbprint_sha256()
        );
        let stored = oftp_security::Certificate::load(&c[0].stored).unwrap();
        assert_eq!(stored.thumbprint_sha256(), server_cert.thumbprint_sha256());
        // The client keeps exchanged certificates beside what it receives.
        assert!(
            c[0].stored
                .starts_with(dir.path().join("received").join("certificates"))
        );
        assert!(server.outbox().join("sent").join(deliver).exists());
    }

    // A requester that only sends: the answer waits in the outbox for its next session.
    let server_seen = Certs::default();
    let server = secure_server(
        &k,
        policy(&k.client.cert, |_| {}),
        None,
        server_seen.clone(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open_in_dir(dir.path()).unwrap();
    let sec = context(
        CLIENT_SSID,
        &local(&k.client, dir.path()),
        SERVER_SSID,
        &policy(&k.server.cert, |_| {}),
        dir.path(),
    );
    let send_only = SessionLimits {
        mode: oftp::config::Mode::Send,
        ..SessionLimits::default()
    };
    let report = Client::new(client_config(dir.path(), send_only), journal.clone())
        .unwrap()
        .security(sec)
        .run(
            &server.addr(),
            vec![OutgoingFile::certificate_exchange(
                CertificateExchange::Request,
                &k.client.cert,
            )],
        )
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered);
    assert!(server_seen.0.lock().unwrap()[0].answered);
    let waiting = server.outbox().join(deliver);
    let der = std::fs::read(&waiting).unwrap();
    let server_cert = oftp_security::Certificate::load(&k.server.cert).unwrap();
    assert_eq!(der, server_cert.der());
    // The next session that can receive gets it.
    let client_seen = Certs::default();
    let report = secure_client(&k, &k.client, dir.path(), policy(&k.server.cert, |_| {}))
        .handler(client_seen.clone())
        .run(&server.addr(), vec![])
        .await
        .unwrap();
    assert_eq!(report.received.len(), 1);
    let c = client_seen.0.lock().unwrap().clone();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kind, CertificateExchange::Deliver);
    assert!(!waiting.exists());

    // A request naming someone else as its originator (relayed, or forged) is stored and
    // reported, never answered: the answer would go to a partner that did not log in.
    // (The earlier request still waits in the inbox under the same name; take it out.)
    std::fs::remove_file(server.inbox().join("ODETTE_CERTIFICATE_REQUEST")).unwrap();
    let client_seen = Certs::default();
    let mut relayed =
        OutgoingFile::certificate_exchange(CertificateExchange::Request, &k.client.cert);
    relayed.originator = Some("O0013OTHER".parse().unwrap());
    let report = secure_client(&k, &k.client, dir.path(), policy(&k.server.cert, |_| {}))
        .handler(client_seen.clone())
        .run(&server.addr(), vec![relayed])
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered);
    let s = server_seen.0.lock().unwrap().clone();
    assert_eq!(s.len(), 2);
    assert!(!s[1].answered);
    assert!(client_seen.0.lock().unwrap().is_empty());
    assert_eq!(report.received.len(), 0);
    assert!(!waiting.exists());
}

fn tls_identity(leaf: &Leaf) -> TlsIdentity {
    TlsIdentity::load(&id(leaf)).unwrap()
}

#[tokio::test]
async fn over_tls_with_client_certificates_and_v2_only() {
    let k = keys();
    let trust = oftp_security::TrustPolicy::new()
        .trust([oftp_security::Certificate::load(&k.pki.ca).unwrap()]);
    let acceptor = TlsAcceptor::new(tls_identity(&k.server))
        .unwrap()
        .client_auth(ClientAuth::Required, trust)
        .unwrap();
    let server = secure_server(
        &k,
        policy(&k.client.cert, |p| {
            p.secure_authentication = SecureAuthentication::Required;
        }),
        Some(acceptor),
        Certs::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("TLSFILE");
    std::fs::write(&src, content(100_000, 5)).unwrap();
    let connector = TlsConnector::new(
        ServerTrust::new().trust_ca_file(&k.pki.ca).unwrap(),
        Some(&tls_identity(&k.client)),
    )
    .unwrap()
    .server_name("server.example");
    let client_policy = policy(&k.server.cert, |p| {
        p.secure_authentication = SecureAuthentication::Required;
        p.send = send_all(4, FileSecurity::SignedEncrypted, true);
    });
    let report = secure_client(&k, &k.client, dir.path(), client_policy.clone())
        .connector(connector.clone())
        .run(&server.addr(), vec![OutgoingFile::new(&src)])
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered);
    assert!(report.negotiated.secure_auth);
    assert_eq!(
        std::fs::read(server.inbox().join("TLSFILE")).unwrap(),
        std::fs::read(&src).unwrap()
    );

    // OFTP 1.4 over TLS is refused (ESID 10).
    let d2 = dir.path().join("v14");
    std::fs::create_dir_all(&d2).unwrap();
    let mut cfg = client_config(&d2, SessionLimits::default());
    cfg.limits.level = 4;
    let e = Client::new(cfg, SqliteJournal::open_in_dir(&d2).unwrap())
        .unwrap()
        .connector(connector.clone())
        .run(&server.addr(), vec![])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ESID 10"), "{e}");

    // Without a client certificate the handshake fails.
    let anonymous = TlsConnector::new(ServerTrust::new().trust_ca_file(&k.pki.ca).unwrap(), None)
        .unwrap()
        .server_name("server.example");
    assert!(
        secure_client(&k, &k.client, &d2, client_policy)
            .connector(anonymous)
            .run(&server.addr(), vec![])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn openssl_s_client_sees_ssrm_after_the_handshake() {
    let k = keys();
    let acceptor = TlsAcceptor::new(tls_identity(&k.server)).unwrap();
    let server = secure_server(
        &k,
        policy(&k.client.cert, |_| {}),
        Some(acceptor),
        Certs::default(),
    )
    .await;
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &server.addr(),
            "-CAfile",
            pki::p(&k.pki.ca),
            "-verify_return_error",
            "-servername",
            "server.example",
            "-quiet",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stdout = child.stdout.take().unwrap();
    let mut text = Vec::new();
    let mut buf = [0u8; 256];
    // STH (4 octets) + "IODETTE FTP READY " + CR: the SSRM, sent once TLS is up. Bounded by
    // the server's inactivity timeout, which closes the connection.
    while !String::from_utf8_lossy(&text).contains("ODETTE FTP READY") {
        let n = stdout.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let _ = child.kill().await;
    assert!(
        String::from_utf8_lossy(&text).contains("ODETTE FTP READY"),
        "{text:?}"
    );
    // Plain TCP to the TLS port gets no SSRM.
    let mut tcp = PlainTcp.connect(&server.addr()).await.unwrap();
    tcp.write_all(b"not a TLS hello\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("ODETTE"));
}

/// Answers every received file later, with a NERP sent through the session handle (seed
/// `SendEndResponse` after `EndTransfer` with `SendEndResponse = false`).
struct NerpLater;

impl Handler for NerpLater {
    async fn end_transfer(
        &self,
        s: &SessionInfo,
        t: &TransferInfo,
        r: &TransferResult,
    ) -> EndResponseTiming {
        if t.direction != Direction::Incoming || !matches!(r, TransferResult::Completed { .. }) {
            return EndResponseTiming::Now;
        }
        // The seed's FileHash of EndTransfer: the hash of the transmitted file.
        assert_eq!(t.file_hash.len(), 32, "SHA-256 for suite 04");
        let _ = s.handle.send_end_response(EndResponse {
            virtual_file_name: t.virtual_file_name.clone(),
            stamp: t.stamp,
            destination: t.originator.clone(),
            originator: t.destination.clone(),
            user_data: String::new(),
            negative: Some(NegativeResponse {
                reason: oftp_proto::codec::NerpReason::PROCESSING_FAILED,
                creator: t.destination.to_string(),
                text: "not for this application".into(),
            }),
            file_hash: Vec::new(),
            signature: Vec::new(),
            signature_verified: false,
        });
        EndResponseTiming::Later
    }
}

#[tokio::test]
async fn asynchronous_nerp_is_signed_and_verified() {
    let k = keys();
    let server = secure_server(&k, policy(&k.client.cert, |_| {}), None, NerpLater).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("LATER");
    std::fs::write(&src, content(10_000, 4)).unwrap();
    let report = secure_client(
        &k,
        &k.client,
        dir.path(),
        policy(&k.server.cert, |p| {
            p.send = send_all(4, FileSecurity::SignedEncrypted, false);
            p.require_signed_receipts = true;
        }),
    )
    .run(&server.addr(), vec![OutgoingFile::new(&src)])
    .await
    .unwrap();
    // A NERP whose signature (with NERPCREA) and file hash checked out.
    match &report.files[0].1 {
        FileOutcome::NotDelivered { reason, text } => {
            assert_eq!(reason.0, 34);
            assert_eq!(text, "not for this application");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn revoked_partner_certificate_is_refused_with_a_trusted_ca_and_crl() {
    let k = keys();
    let crl = k.pki.crl(&[3]); // the client's serial
    let dir = tempfile::tempdir().unwrap();
    let mut server_local = local(&k.server, dir.path());
    server_local.trusted_cas = vec![k.pki.ca.clone()];
    server_local.crls = vec![crl];
    let sec = context(
        SERVER_SSID,
        &server_local,
        CLIENT_SSID,
        &policy(&k.client.cert, |_| {}),
        dir.path(),
    );
    let running = Server::new(server_config(dir.path()))
        .unwrap()
        .security(sec)
        .start()
        .await
        .unwrap();
    let server = TestServer { dir, running };
    let cdir = tempfile::tempdir().unwrap();
    let src = cdir.path().join("SIGNED");
    std::fs::write(&src, b"signed by a revoked key").unwrap();
    let report = secure_client(
        &k,
        &k.client,
        cdir.path(),
        policy(&k.server.cert, |p| {
            p.send = send_all(4, FileSecurity::Signed, false)
        }),
    )
    .run(&server.addr(), vec![OutgoingFile::new(&src)])
    .await
    .unwrap();
    match &report.files[0].1 {
        FileOutcome::Rejected { reason, text, .. } => {
            assert_eq!(reason.0, 19);
            assert!(text.to_lowercase().contains("revoked"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

/// Sends one signed file from `client` to a server that trusts the CA and checks CRL
/// distribution points (strictly when `strict`); returns the server's refusal (reason, text)
/// and how many CRLs the server keeps in its disk cache.
async fn signed_file_refusal(k: &Keys, client: &Leaf, strict: bool) -> (u16, String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut server_local = local(&k.server, dir.path());
    server_local.trusted_cas = vec![k.pki.ca.clone()];
    server_local.require_revocation_check = strict;
    assert!(server_local.crl_distribution_points, "on by default");
    let sec = context(
        SERVER_SSID,
        &server_local,
        CLIENT_SSID,
        &policy(&client.cert, |_| {}),
        dir.path(),
    );
    let running = Server::new(server_config(dir.path()))
        .unwrap()
        .security(sec)
        .start()
        .await
        .unwrap();
    let server = TestServer { dir, running };
    let cdir = tempfile::tempdir().unwrap();
    let src = cdir.path().join("SIGNED");
    std::fs::write(&src, b"signed by a key of unclear standing").unwrap();
    let report = secure_client(
        k,
        client,
        cdir.path(),
        policy(&k.server.cert, |p| {
            p.send = send_all(4, FileSecurity::Signed, false)
        }),
    )
    .run(&server.addr(), vec![OutgoingFile::new(&src)])
    .await
    .unwrap();
    let cached = std::fs::read_dir(server.dir.path().join("security").join("crl-cache"))
        .map(|d| d.count())
        .unwrap_or(0);
    match &report.files[0].1 {
        FileOutcome::Rejected { reason, text, .. } => (u16::from(reason.0), text.clone(), cached),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn partner_certificate_revoked_through_its_crl_distribution_point_is_refused() {
    let k = keys();
    let crls = pki::HttpServer::start();
    crls.set("/ca.crl", pki::Response::ok(k.pki.crl_der(&[33])));
    let url = crls.url("/ca.crl");
    let revoked = k.pki.leaf_with_dp("Client DP", 33, false, &[&url]);
    let (reason, text, cached) = signed_file_refusal(&k, &revoked, false).await;
    assert_eq!(reason, 19);
    assert!(text.to_lowercase().contains("revoked"), "{text}");
    assert_eq!(cached, 1, "the CRL is kept in <work_dir>/crl-cache");
    assert!(crls.requests("/ca.crl") >= 1);
    // A distribution point that cannot be reached, with require_revocation_check.
    let dead = pki::closed_port_url("/ca.crl");
    let unknown = k.pki.leaf_with_dp("Client Unknown", 34, false, &[&dead]);
    let (reason, text, _) = signed_file_refusal(&k, &unknown, true).await;
    assert_eq!(reason, 19);
    assert!(
        text.contains("revocation status") && text.contains(&dead),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_without_security_answers_a_signed_receipt_request_unsigned() {
    let k = keys();
    let server = common::start_server().await;
    send_asking_for_a_signed_receipt(&k, &server, "ASKSIGNED").await;
}

/// Sends the plain file `name` asking for a signed EERP (SFIDSIGN) and checks that it was
/// stored and answered with an unsigned EERP, which the client takes as no proof of delivery.
async fn send_asking_for_a_signed_receipt(k: &Keys, server: &TestServer, name: &str) {
    let outcome = send_one(k, server, name, b"please sign the EERP", FileSecurity::None).await;
    assert_eq!(
        std::fs::read(server.inbox().join(name)).unwrap(),
        b"please sign the EERP"
    );
    match &outcome {
        FileOutcome::EndResponseRejected { text } => assert!(text.contains("not signed"), "{text}"),
        other => panic!("expected an unsigned EERP, got {other:?}"),
    }
}

/// Holds the first incoming transfer in `start_transfer` (after the server has claimed the
/// file) until released.
#[derive(Clone, Default)]
struct HoldFirst {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
    count: Arc<std::sync::atomic::AtomicUsize>,
}

impl Handler for HoldFirst {
    async fn start_transfer(&self, _s: &SessionInfo, t: &TransferInfo) {
        if t.direction == Direction::Incoming
            && self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
        {
            self.started.notify_one();
            self.release.notified().await;
        }
    }
}

/// The plain and the TLS listener of one server share the in-progress guard: the same file
/// offered over TLS while it is being received over plain TCP is refused with SFNA "retry
/// later", and the first transfer completes. They also share connection ids.
#[tokio::test]
async fn plain_and_tls_listeners_share_the_in_progress_guard() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let hold = HoldFirst::default();
    let plain = Server::new(server_config(dir.path()))
        .unwrap()
        .handler(hold.clone());
    let tls = plain.another_listener(
        "127.0.0.1:0".parse().unwrap(),
        TlsAcceptor::new(tls_identity(&k.server)).unwrap(),
    );
    let plain = plain.start().await.unwrap();
    let tls = tls.start().await.unwrap();
    let (plain_addr, tls_addr) = (
        plain.local_addr().unwrap().to_string(),
        tls.local_addr().unwrap().to_string(),
    );
    let data = content(200_000, 9);
    let stamp = oftp::stamp::FileStamp::now();
    let client = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let src = d.join("SAME");
        std::fs::write(&src, &data).unwrap();
        let journal = SqliteJournal::open_in_dir(&d).unwrap();
        let c = Client::new(client_config(&d, SessionLimits::default()), journal).unwrap();
        (c, OutgoingFile::new(src).stamp(stamp))
    };
    let (first, file) = client("first");
    let first = tokio::spawn(async move { first.run(&plain_addr, vec![file]).await });
    hold.started.notified().await;
    assert_eq!(plain.sessions().len(), 1);

    let (second, file) = client("second");
    let connector = TlsConnector::new(ServerTrust::new().trust_ca_file(&k.pki.ca).unwrap(), None)
        .unwrap()
        .server_name("server.example");
    // Both listeners see the live session, whichever accepted it.
    assert_eq!(tls.sessions().len(), 1);
    let report = second
        .connector(connector)
        .run(&tls_addr, vec![file])
        .await
        .unwrap();
    match &report.files[0].1 {
        FileOutcome::Rejected { retry, text, .. } => {
            assert!(*retry, "{text}");
            assert!(text.contains("another session"), "{text}");
        }
        other => panic!("the second offer must be refused: {other:?}"),
    }
    hold.release.notify_one();
    let report = first.await.unwrap().unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered);
    let got = std::fs::read(dir.path().join("inbox").join("client").join("SAME")).unwrap();
    assert_eq!(got, data);
    tls.shutdown().await;
    plain.shutdown().await;
}

/// With client certificates bound to partners, the SSID must be the partner whose
/// certificate the TLS client presented: the client's own certificate logs in, another valid
/// certificate from the same CA is refused with ESID 03.
#[tokio::test]
async fn tls_client_certificate_must_belong_to_the_partner_logging_in() {
    let k = keys();
    let eve = k.pki.leaf("Eve", 9, false);
    let trust = oftp_security::TrustPolicy::new()
        .trust([oftp_security::Certificate::load(&k.pki.ca).unwrap()]);
    let acceptor = TlsAcceptor::new(tls_identity(&k.server))
        .unwrap()
        .client_auth(ClientAuth::Required, trust)
        .unwrap()
        .bind_client_certificates(true);
    let server = secure_server(&k, policy(&k.client.cert, |_| {}), Some(acceptor), ()).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("BOUND");
    std::fs::write(&src, content(10_000, 3)).unwrap();
    for (who, leaf) in [("client", &k.client), ("eve", &eve)] {
        let d = dir.path().join(who);
        std::fs::create_dir_all(&d).unwrap();
        let connector = TlsConnector::new(
            ServerTrust::new().trust_ca_file(&k.pki.ca).unwrap(),
            Some(&tls_identity(leaf)),
        )
        .unwrap()
        .server_name("server.example");
        let result = secure_client(&k, &k.client, &d, policy(&k.server.cert, |_| {}))
            .connector(connector)
            .run(&server.addr(), vec![OutgoingFile::new(&src)])
            .await;
        if who == "client" {
            assert_eq!(result.unwrap().files[0].1, FileOutcome::Delivered);
        } else {
            let e = result.unwrap_err();
            assert!(matches!(e, ClientError::Rejected { .. }), "{e:?}");
            assert!(e.to_string().contains("ESID 03"), "{e}");
            assert!(e.to_string().contains("Eve"), "{e}");
        }
    }
}

/// A file relayed by an intermediary that the final destination cannot open: the transmission
/// is fine (EFPA to the intermediary), and the originator learns of the failure by a NERP 33
/// (RFC 5024 4.3.7) routed back through the intermediary. The intermediary forwards the
/// processed file unchanged, with the SFID service fields it came with.
#[tokio::test]
async fn relayed_file_that_cannot_be_opened_gets_efpa_and_a_nerp_to_its_originator() {
    const ORIGIN: &str = "O0013ORIGIN";
    let k = keys();
    let origin = k.pki.leaf("Origin", 40, false);
    let dir = tempfile::tempdir().unwrap();
    // The final destination knows the originator's certificate.
    let sec = Arc::new(
        SecurityContext::builder(
            SERVER_SSID,
            &local(&k.server, dir.path()),
            dir.path().into(),
        )
        .unwrap()
        .partner(
            "client",
            CLIENT_SSID,
            CLIENT_SSID,
            &policy(&k.client.cert, |_| {}),
        )
        .unwrap()
        .partner("origin", ORIGIN, ORIGIN, &policy(&origin.cert, |_| {}))
        .unwrap()
        .build(),
    );
    let running = Server::new(server_config(dir.path()))
        .unwrap()
        .security(sec)
        .start()
        .await
        .unwrap();
    let server = TestServer { dir, running };

    // The originator signs and encrypts, but for the wrong recipient (the client's key).
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("ORDERS");
    std::fs::write(&src, content(40_000, 5)).unwrap();
    let origin_ctx = context(
        ORIGIN,
        &local(&origin, work.path()),
        SERVER_SSID,
        &policy(&k.client.cert, |p| {
            p.send = SendSecurity {
                signed_receipt: false,
                ..send_all(4, FileSecurity::SignedEncrypted, false)
            }
        }),
        work.path(),
    );
    let mut sfid = Sfid::new(
        "ORDERS",
        oftp_proto::codec::VirtualFileTime {
            year: 2026,
            month: 11,
            day: 21,
            hour: 12,
            minute: 0,
            second: 0,
            counter: 1,
        },
        ORIGIN,
        SERVER_SSID,
        oftp_proto::codec::FileFormat::Unstructured,
        0,
    );
    let sealed = origin_ctx
        .prepare(&mut sfid, &src)
        .unwrap()
        .transmit
        .unwrap();
    let fields = oftp::handle::FileServiceFields::of(&sfid);
    assert_eq!(
        fields.security,
        oftp_proto::codec::SecurityLevel::ENCRYPTED_AND_SIGNED
    );

    // The intermediary (no security of its own) forwards it.
    let cdir = tempfile::tempdir().unwrap();
    let relay = common::client(cdir.path(), SessionLimits::default());
    let report = relay
        .run(
            &server.addr(),
            vec![
                OutgoingFile::new(&sealed)
                    .virtual_name("ORDERS")
                    .originator(ORIGIN.parse().unwrap())
                    .destination(SERVER_SSID.parse().unwrap())
                    .forwarded(fields),
            ],
        )
        .await
        .unwrap();
    match &report.files[0].1 {
        FileOutcome::NotDelivered { reason, text } => {
            assert_eq!(reason.0, 33, "{text}");
        }
        other => panic!("expected a NERP 33, got {other:?}"),
    }
    assert!(
        !server.inbox().join("ORDERS").exists(),
        "a file that cannot be opened is not delivered"
    );
}

/// A signed and encrypted transfer cut off in the middle: the receiver's opening (which runs
/// while the data arrives) ends with the transfer, nothing half-opened appears, and the next
/// attempt (from position 0: a new processed form) is delivered and verified.
#[tokio::test]
async fn a_secured_transfer_cut_off_midway_is_delivered_by_the_next_attempt() {
    /// Tells when the server saw a session end.
    struct Gone(tokio::sync::mpsc::UnboundedSender<()>);
    impl Handler for Gone {
        async fn disconnected(&self, _i: &oftp::ConnectionInfo, _d: &oftp::handler::Disconnected) {
            let _ = self.0.send(());
        }
    }
    let k = keys();
    let (gone, mut gone_rx) = tokio::sync::mpsc::unbounded_channel();
    let server = secure_server(&k, policy(&k.client.cert, |_| {}), None, Gone(gone)).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("BIG");
    let data = content(3_000_000, 11);
    std::fs::write(&src, &data).unwrap();
    let client = secure_client(
        &k,
        &k.client,
        dir.path(),
        policy(&k.server.cert, |p| {
            p.send = send_all(4, FileSecurity::SignedEncrypted, false)
        }),
    );
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let cut = common::Cut {
        inner: tcp,
        written: 0,
        limit: 1_000_000,
        stall: false,
    };
    let report = client
        .run_over(
            cut,
            "127.0.0.1:0".parse().unwrap(),
            vec![OutgoingFile::new(&src)],
        )
        .await
        .unwrap();
    assert!(!report.all_delivered(), "{report:?}");
    gone_rx.recv().await.expect("the server saw the break");
    assert!(!server.inbox().join("BIG").exists());

    let report = client
        .run(&server.addr(), vec![OutgoingFile::new(&src)])
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(std::fs::read(server.inbox().join("BIG")).unwrap(), data);
    // Only the delivered file is left in the inbox: no temporary or half-opened files.
    let names: Vec<_> = std::fs::read_dir(server.inbox())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["BIG"], "{names:?}");
}

/// Client file services that announce a signed file (SFIDSIGN, SFIDENV 1) and transmit
/// `bytes` as its CMS envelope: a partner's malformed (or hostile) SignedData.
struct CraftedSigned(&'static [u8]);

impl FileServices for CraftedSigned {
    fn check_incoming(&self, _sfid: &Sfid) -> Result<(), ServiceRefusal> {
        Ok(())
    }

    fn prepare_outgoing(
        &self,
        sfid: &mut Sfid,
        source: &Path,
    ) -> std::io::Result<Option<std::path::PathBuf>> {
        sfid.security = oftp_proto::codec::SecurityLevel::SIGNED;
        sfid.envelope = oftp_proto::codec::FileEnvelope::CMS;
        sfid.cipher_suite = oftp_proto::codec::CipherSuite(4);
        let copy = source.with_extension("crafted");
        std::fs::write(&copy, self.0)?;
        Ok(Some(copy))
    }
}

/// The server's error events (`Handler::error`).
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl Handler for Errors {
    async fn error(&self, e: &oftp::handler::ErrorEvent) {
        self.0.lock().unwrap().push(e.description.clone());
    }
}

/// Only the named files are in the server's inbox (no temporary or half-opened files).
fn inbox_names(server: &TestServer) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.inbox())
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Sends the file `name` holding `content` with the client's real security context, at
/// `security` and asking for a signed EERP.
async fn send_one(
    k: &Keys,
    server: &TestServer,
    name: &str,
    content: &[u8],
    security: FileSecurity,
) -> FileOutcome {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join(name);
    std::fs::write(&src, content).unwrap();
    let report = secure_client(
        k,
        &k.client,
        dir.path(),
        policy(&k.server.cert, |p| p.send = send_all(4, security, false)),
    )
    .run(&server.addr(), vec![OutgoingFile::new(&src)])
    .await
    .unwrap();
    report.files[0].1.clone()
}

/// Issue 9 section 3: a logged-in partner sends a 72-octet "signed file" whose
/// digestAlgorithms has the 8-octet length 0xFFFFFFFFFFFFFFFF. It used to make the opening
/// thread panic (EFNA 99 "file services stopped without a verdict"); now it is EFNA 21
/// (invalid file signature, RFC 5024 5.3.10) naming what is malformed, nothing is stored, and
/// the server goes on serving.
#[tokio::test]
async fn a_malformed_signed_file_gets_efna_21_naming_the_element_and_the_server_keeps_serving() {
    const HOSTILE: &[u8] = include_bytes!(
        "../../../fuzz/regressions/cms_receive/signed-digest-algorithms-length-2e64-1.ber"
    );
    let k = keys();
    let server = secure_server(&k, policy(&k.client.cert, |_| {}), None, Certs::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("MALFORMED");
    std::fs::write(&src, b"replaced by the crafted envelope").unwrap();
    let report = Client::new(
        client_config(dir.path(), SessionLimits::default()),
        SqliteJournal::open_in_dir(dir.path()).unwrap(),
    )
    .unwrap()
    .file_services(CraftedSigned(HOSTILE))
    .run(&server.addr(), vec![OutgoingFile::new(&src)])
    .await
    .unwrap();
    match &report.files[0].1 {
        FileOutcome::Refused { reason, text } => {
            assert_eq!(reason.0, 21, "{text}");
            assert!(
                text.contains("signed data")
                    && text.contains("digestAlgorithms")
                    && text.contains("18446744073709551615"),
                "{text}"
            );
        }
        other => panic!("expected EFNA 21, got {other:?}"),
    }
    assert_eq!(inbox_names(&server), Vec::<String>::new());
    assert_eq!(
        send_one(
            &k,
            &server,
            "GOOD",
            b"a well-formed signed file",
            FileSecurity::Signed
        )
        .await,
        FileOutcome::Delivered
    );
    assert_eq!(inbox_names(&server), ["GOOD"]);
}

/// File services whose opening panics (a decoder bug), delegating everything else.
struct PanicOpening(Arc<SecurityContext>);

impl FileServices for PanicOpening {
    fn check_incoming(&self, sfid: &Sfid) -> Result<(), ServiceRefusal> {
        self.0.check_incoming(sfid)
    }

    fn prepare_outgoing(
        &self,
        sfid: &mut Sfid,
        source: &Path,
    ) -> std::io::Result<Option<std::path::PathBuf>> {
        self.0.prepare_outgoing(sfid, source)
    }

    fn open_incoming(
        &self,
        _sfid: &Sfid,
        _received: &mut (dyn std::io::Read + Send),
        _data: &Path,
    ) -> Result<Option<Vec<u8>>, ServiceFailure> {
        panic!("decoder bug at offset 42");
    }
}

/// A panic in the opening thread is never again a silent EFNA 99: the partner gets the reason
/// of the layer being opened (here the signature, 21), the server's error log names the file
/// and the cause, and the server goes on serving.
#[tokio::test]
async fn a_panic_while_opening_a_file_is_logged_and_answered_with_the_layer_reason() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let sec = context(
        SERVER_SSID,
        &local(&k.server, dir.path()),
        CLIENT_SSID,
        &policy(&k.client.cert, |_| {}),
        dir.path(),
    );
    let errors = Errors::default();
    let running = Server::new(server_config(dir.path()))
        .unwrap()
        .handler(errors.clone())
        .security(sec.clone())
        .file_services(PanicOpening(sec))
        .start()
        .await
        .unwrap();
    let server = TestServer { dir, running };
    match send_one(&k, &server, "ORDERS", b"orders", FileSecurity::Signed).await {
        FileOutcome::Refused { reason, text } => {
            assert_eq!(reason.0, 21, "{text}");
            assert!(text.contains("could not open the signed data"), "{text}");
        }
        other => panic!("expected EFNA 21, got {other:?}"),
    }
    let logged = errors.0.lock().unwrap().clone();
    assert!(
        logged
            .iter()
            .any(|e| e.contains("ORDERS") && e.contains("panicked: decoder bug at offset 42")),
        "{logged:?}"
    );
    assert_eq!(inbox_names(&server), Vec::<String>::new());
    // The same server still takes files (an unsecured one does not open anything).
    let cdir = tempfile::tempdir().unwrap();
    let src = cdir.path().join("PLAIN");
    std::fs::write(&src, b"plain").unwrap();
    let report = secure_client(&k, &k.client, cdir.path(), policy(&k.server.cert, |_| {}))
        .run(&server.addr(), vec![OutgoingFile::new(&src)])
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
}

/// Everything one side's handler hears, in order: log lines, errors (`error: ...`), the
/// commands (`trail: ...`) and the start of the session (`session_started`).
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<String>>>);

impl Heard {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Handler for Heard {
    async fn log(&self, _id: oftp::ConnectionId, e: &oftp::handler::LogEvent) {
        self.0.lock().unwrap().push(e.message.clone());
    }
    async fn error(&self, e: &oftp::handler::ErrorEvent) {
        self.0
            .lock()
            .unwrap()
            .push(format!("error: {}", e.description));
    }
    async fn session_started(&self, _s: &SessionInfo) {
        self.0.lock().unwrap().push("session_started".into());
    }
    async fn pi_trail(&self, _id: oftp::ConnectionId, t: &oftp::handler::PiTrail) {
        self.0
            .lock()
            .unwrap()
            .push(format!("trail: {}", t.description));
    }
}

/// Issue 8 section 4: SFIDSIGN = Y to a server that has no receipt-signing key. RFC 5024
/// 3.3.5 note 3 and 4.3.6: the file is accepted and an unsigned EERP still sent; the server
/// warns, naming the key it lacks. (It used to refuse the file with SFNA 99.)
#[tokio::test]
async fn a_signed_receipt_request_without_a_receipt_key_is_accepted_and_answered_unsigned() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let no_keys = LocalSecurityConfig {
        work_dir: Some(dir.path().join("security")),
        ..LocalSecurityConfig::default()
    };
    let sec = context(
        SERVER_SSID,
        &no_keys,
        CLIENT_SSID,
        &policy(&k.client.cert, |_| {}),
        dir.path(),
    );
    let heard = Heard::default();
    let running = Server::new(server_config(dir.path()))
        .unwrap()
        .handler(heard.clone())
        .security(sec)
        .start()
        .await
        .unwrap();
    let server = TestServer { dir, running };
    send_asking_for_a_signed_receipt(&k, &server, "RECEIPT").await;
    let lines = heard.lines();
    assert!(
        lines.iter().any(|l| l.starts_with("error: ")
            && l.contains("RECEIPT")
            && l.contains("[security.receipt_signing]")
            && l.contains("unsigned")),
        "{lines:?}"
    );
}

/// A session without files between a server and a client that both require secure
/// authentication; the client answers challenges with `client_key`. Returns the client's
/// report and what the server's and the client's handler heard.
async fn required_auth_session(
    k: &Keys,
    client_key: &Leaf,
) -> (Result<oftp::ClientReport, ClientError>, Heard, Heard) {
    let required = |cert: &Path| {
        policy(cert, |p| {
            p.secure_authentication = SecureAuthentication::Required;
        })
    };
    let server_heard = Heard::default();
    let server = secure_server(k, required(&k.client.cert), None, server_heard.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let client_heard = Heard::default();
    let report = secure_client(k, client_key, dir.path(), required(&k.server.cert))
        .handler(client_heard.clone())
        .run(&server.addr(), vec![])
        .await;
    // The server's side of the session ends with the client's; let its handler calls finish
    // before the server is dropped.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    (report, server_heard, client_heard)
}

/// Issue 8 section 4: a challenge we cannot open (the server enveloped it to the client's
/// real certificate; this client holds another key). RFC 5024 9.8.2 row I: the receiver of an
/// AUCH answers with an AURP, nothing else; the challenger then ends the session with ESID 11
/// (row K). We used to end it ourselves with ESID 11. Neither side says the session was
/// established, and the handlers hear no `session_started`.
#[tokio::test]
async fn a_challenge_we_cannot_open_is_answered_and_the_challenger_ends_with_esid_11() {
    let k = keys();
    let mallory = k.pki.leaf("Mallory", 6, false);
    let (report, server_heard, client_heard) = required_auth_session(&k, &mallory).await;
    // `Rejected` is an ESID from the partner (the challenger); `Refused` would be ours.
    match report {
        Err(ClientError::Rejected { reason, .. }) => {
            assert_eq!(
                reason,
                oftp_proto::codec::EsidReason::INVALID_CHALLENGE_RESPONSE
            )
        }
        other => panic!("the challenger ends it with ESID 11: {other:?}"),
    }
    let client_lines = client_heard.lines();
    assert!(
        client_lines
            .iter()
            .any(|l| l.starts_with("error: ") && l.contains("cannot open the partner's challenge")),
        "{client_lines:?}"
    );
    for lines in [client_lines, server_heard.lines()] {
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("established") || l == "session_started"),
            "{lines:?}"
        );
    }
}

/// Issue 8 section 4: "session established" is logged (and `session_started` called) once
/// secure authentication has succeeded, on both sides.
#[tokio::test]
async fn session_established_is_logged_after_secure_authentication() {
    let k = keys();
    let (report, server_heard, client_heard) = required_auth_session(&k, &k.client).await;
    assert!(report.unwrap().negotiated.secure_auth);
    for lines in [client_heard.lines(), server_heard.lines()] {
        let established: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains("established"))
            .collect();
        assert_eq!(established.len(), 1, "{lines:?}");
        let at = established[0];
        let last_aurp = lines.iter().rposition(|l| l.starts_with("trail: AURP"));
        assert!(last_aurp.is_some_and(|aurp| aurp < at), "{lines:?}");
        assert!(
            lines[at].contains("secure authentication passed"),
            "{lines:?}"
        );
        assert_eq!(
            lines.get(at + 1).map(String::as_str),
            Some("session_started")
        );
    }
}
