//! `oftp send` options as an operator uses them, against a real `oftp serve` (or, to see the
//! SFID fields exactly as they arrive, the scripted partner of `common::scripted`) on
//! 127.0.0.1:
//! - `--partner-cert` is the partner's certificate for file services and receipts only;
//!   secure authentication needs `--auth-cert` or `--secure-auth required`;
//! - `--dsn` names the virtual file (`NAME`, or `FILE=NAME` for several files), `--user-data`
//!   and `--description` fill SFIDUSER and SFIDDESC; all are checked against RFC 5024 5.3.3
//!   before the partner is called.

use std::path::Path;

mod common;
use common::scripted::{self, Answer, Scripted};
use common::{call_args, free_port, oftp, self_signed, serve_config, texts, write_server_config};

/// Writes `server.toml`: plain listener on `port`, our identity `server.pem`, and two partners
/// with the same certificate `client.pem`: `client`, which does file security but not secure
/// authentication, and `strict`, which must authenticate.
fn secure_server_config(d: &Path, port: u16) {
    write_server_config(
        d,
        port,
        r#"
[security.identity]
cert = "server.pem"
key = "server.key"

[[partners]]
name = "client"
ssid = "O0013CLIENT"
password = "CLIPW"

[partners.security]
certificate = "client.pem"
secure_authentication = "disallowed"

[[partners]]
name = "strict"
ssid = "O0013STRICT"
password = "STRICTPW"

[partners.security]
certificate = "client.pem"
secure_authentication = "required"
"#,
    );
}

#[test]
fn partner_cert_is_for_file_services_and_auth_cert_turns_secure_authentication_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(d, "server");
    self_signed(d, "client");
    let port = free_port();
    secure_server_config(d, port);
    let _server = serve_config(d, "server.toml");
    let port = port.to_string();
    let send = |ssid: &str, pw: &str, file: &str, extra: &[&str]| {
        std::fs::write(d.join(file), format!("content of {file}")).unwrap();
        let mut args = call_args(&port, (ssid, pw), ("O0013SERVER", "SRVPW"));
        args.extend_from_slice(&[
            "--cert",
            "client.pem",
            "--key",
            "client.key",
            "--security",
            "signed-encrypted",
            "--signed-receipt",
        ]);
        args.extend_from_slice(extra);
        args.push(file);
        oftp(d, &args)
    };

    // File security and a signed receipt with the partner's certificate, and no secure
    // authentication with a partner that does not do it.
    let out = send(
        "O0013CLIENT",
        "CLIPW",
        "f1.edi",
        &["--partner-cert", "server.pem"],
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("delivered      f1.edi"), "{stdout}");
    assert_eq!(
        std::fs::read(d.join("sdata/inbox/client/F1.EDI")).unwrap(),
        b"content of f1.edi"
    );

    // --auth-cert asks for secure authentication: this partner does not allow it.
    let out = send(
        "O0013CLIENT",
        "CLIPW",
        "f2.edi",
        &["--partner-cert", "server.pem", "--auth-cert", "server.pem"],
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("(ESID 12)"), "{stderr}");

    // A partner that requires it: with --secure-auth required the partner certificate
    // serves for it too; with --auth-cert it is asked for by default (automatic).
    for (file, extra) in [
        (
            "f3.edi",
            &["--partner-cert", "server.pem", "--secure-auth", "required"][..],
        ),
        (
            "f4.edi",
            &["--partner-cert", "server.pem", "--auth-cert", "server.pem"][..],
        ),
    ] {
        let out = send("O0013STRICT", "STRICTPW", file, extra);
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(0), "{extra:?}\n{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("delivered      {file}")),
            "{stdout}"
        );
    }
    // ... and the partner certificate alone does not ask for it.
    let out = send(
        "O0013STRICT",
        "STRICTPW",
        "f5.edi",
        &["--partner-cert", "server.pem"],
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("(ESID 12)"), "{stderr}");

    // The configuration file says the same: `certificate` without `authentication_cert`.
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
cert = "client.pem"
key = "client.key"

[[partners]]
name = "server"
ssid = "O0013SERVER"
password = "SRVPW"
address = "127.0.0.1:{port}"

[partners.security]
certificate = "server.pem"

[partners.security.send]
security = "signed_encrypted"
signed_receipt = true
"#
        ),
    )
    .unwrap();
    std::fs::write(d.join("f6.edi"), b"six").unwrap();
    let out = oftp(
        d,
        &[
            "send",
            "--config",
            "client.toml",
            "--partner",
            "server",
            "f6.edi",
        ],
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("delivered      f6.edi"), "{stdout}");
}

#[test]
fn dsn_names_the_virtual_file_of_one_file_or_of_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    write_server_config(
        d,
        port,
        "[[partners]]\nname = \"client\"\nssid = \"O0013CLIENT\"\npassword = \"CLIPW\"\n",
    );
    let _server = serve_config(d, "server.toml");
    for f in ["a.txt", "b.txt", "c.txt"] {
        std::fs::write(d.join(f), f).unwrap();
    }
    std::fs::create_dir(d.join("sub")).unwrap();
    let port = port.to_string();
    let base = call_args(&port, ("O0013CLIENT", "CLIPW"), ("O0013SERVER", "SRVPW"));
    let send = |extra: &[&str]| {
        let mut args = base.clone();
        args.extend_from_slice(extra);
        oftp(d, &args)
    };
    let inbox = d.join("sdata/inbox/client");

    let out = send(&["--dsn", "ORDERS.EDI", "a.txt"]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(std::fs::read(inbox.join("ORDERS.EDI")).unwrap(), b"a.txt");

    // Several files: FILE=NAME for each one named (the same file by another path counts);
    // the others keep their default name.
    let out = send(&[
        "--dsn",
        "a.txt=FIRST",
        "--dsn",
        "sub/../b.txt=SECOND(2)",
        "a.txt",
        "b.txt",
        "c.txt",
    ]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(std::fs::read(inbox.join("FIRST")).unwrap(), b"a.txt");
    assert_eq!(std::fs::read(inbox.join("SECOND(2)")).unwrap(), b"b.txt");
    assert_eq!(std::fs::read(inbox.join("C.TXT")).unwrap(), b"c.txt");
}

#[test]
fn names_and_user_data_outside_the_sfid_rules_are_refused_before_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["a.txt", "b.txt", "order;1.edi"] {
        std::fs::write(d.join(f), f).unwrap();
    }
    // Nothing listens there: each error must come before the call.
    let port = free_port().to_string();
    let base = call_args(&port, ("O0013CLIENT", "CLIPW"), ("O0013SERVER", "SRVPW"));
    for (extra, expected) in [
        (
            &["--dsn", "orders", "a.txt"][..],
            "upper case (RFC 5024 5.3): use \"ORDERS\"",
        ),
        (
            &["--dsn", "THIS-NAME-IS-FAR-TOO-LONG-1", "a.txt"][..],
            "27 characters",
        ),
        (&["--dsn", "MY FILE", "a.txt"][..], "space"),
        (&["--dsn", "ORDER;1", "a.txt"][..], "';'"),
        (
            &["--dsn", "ORDERS", "a.txt", "b.txt"][..],
            "name each one with --dsn FILE=NAME",
        ),
        (
            &["--dsn", "c.txt=ORDERS", "a.txt"][..],
            "c.txt is not one of the files to send",
        ),
        (&["order;1.edi"][..], "name it with --dsn order;1.edi=NAME"),
        (
            &["--user-data", "TOOLONGUD", "a.txt"][..],
            "--user-data: \"TOOLONGUD\" has 9 characters",
        ),
        (
            &["--user-data", "batch", "a.txt"][..],
            "--user-data: \"batch\"",
        ),
        (
            &["--level", "4", "--description", "Lieferung", "a.txt"][..],
            "--description needs OFTP 2.0 (level 5)",
        ),
    ] {
        let mut args = base.clone();
        args.extend_from_slice(extra);
        let out = oftp(d, &args);
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{extra:?}\n{stdout}\n{stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!stderr.contains("cannot connect"), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let description = "é".repeat(500);
    let mut args = base.clone();
    args.extend_from_slice(&["--description", &description, "a.txt"]);
    let (_, stderr) = texts(&oftp(d, &args));
    assert!(stderr.contains("1000 octets"), "{stderr}");
}

#[test]
fn user_data_and_description_reach_the_sfid_and_a_level_4_partner_gets_no_description() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.txt"), b"payload").unwrap();
    let description = "Bestellung für März = 3 Paletten";
    let send = |partner: &Scripted| {
        let port = partner.port.to_string();
        let mut args = call_args(
            &port,
            ("O0013CLIENT", "CLIPW"),
            (scripted::SSID, scripted::PASSWORD),
        );
        args.extend_from_slice(&[
            "--dsn",
            "ORDERS",
            "--user-data",
            "BATCH7",
            "--description",
            description,
            "a.txt",
        ]);
        oftp(d, &args)
    };

    let partner = Scripted::start(5, vec![Answer::Eerp]);
    let out = send(&partner);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let offered = partner.offered();
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].dsn, "ORDERS");
    assert_eq!(offered[0].user_data, "BATCH7");
    assert_eq!(offered[0].description, description);
    assert!(!stderr.contains("warning"), "{stderr}");

    // OFTP 1.4: the SFID has no description; the file goes without it, and we say so. (A new
    // content: the unchanged file was delivered already, and sending it again would only
    // report that.)
    std::fs::write(d.join("a.txt"), b"payload, second edition").unwrap();
    let partner = Scripted::start(4, vec![Answer::Eerp]);
    let out = send(&partner);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let offered = partner.offered();
    assert_eq!(offered[0].dsn, "ORDERS");
    assert_eq!(offered[0].user_data, "BATCH7");
    assert_eq!(offered[0].description, "");
    assert!(
        stderr.contains("OFTP level 4") && stderr.contains("without --description"),
        "{stderr}"
    );
}
