//! Tests of the PostgreSQL index against throw-away clusters (plain and TLS).

use super::*;

fn fresh() -> PostgresIndex {
    PostgresIndex::open(&pg_test_cluster::cluster().new_database()).expect("open")
}

#[test]
fn postgres_index_passes_the_conformance_suite() {
    crate::index::conformance::index(&fresh());
}

#[test]
fn workers_on_separate_connections_racing_for_leases_get_each_mailbox_once() {
    let url = pg_test_cluster::cluster().new_database();
    let mailboxes: Vec<String> = (0..40).map(|i| format!("user{i:02}@x.test")).collect();
    let ttl = std::time::Duration::from_secs(600);
    let taken: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let (url, mailboxes) = (&url, &mailboxes);
                s.spawn(move || {
                    let ix = PostgresIndex::open(url).expect("open");
                    let me = format!("racer-{w}");
                    ix.register_worker(&me, ttl).unwrap();
                    let mut mine = Vec::new();
                    // Bounded: a backend handing a mailbox out twice fails, not hangs.
                    for _ in 0..100 {
                        match ix.acquire_lease(&me, mailboxes, ttl).unwrap() {
                            Acquired::Lease { mailbox, .. } => {
                                ix.release_lease(&me, &mailbox, true).unwrap();
                                mine.push(mailbox);
                            }
                            Acquired::Wait => std::thread::yield_now(),
                            Acquired::Done => break,
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<String> = taken.concat();
    all.sort();
    assert_eq!(all, mailboxes, "every mailbox once, by one worker");
}

#[test]
fn migrations_are_applied_once_and_recorded() {
    let url = pg_test_cluster::cluster().new_database();
    let ix = PostgresIndex::open(&url).expect("open");
    ix.set_flag("kept").unwrap();
    drop(ix);
    // Opened again (another worker, a later run): nothing is applied twice, data stays.
    let ix = PostgresIndex::open(&url).expect("open again");
    assert!(ix.flag("kept").unwrap());
    let versions: Vec<i32> = ix
        .rows("SELECT version FROM schema_version ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<i32> = (1..=schema::MIGRATIONS.len() as i32).collect();
    assert_eq!(versions, want);
}

#[test]
fn migration_3_takes_creation_times_from_the_remote_mirror() {
    let url = pg_test_cluster::cluster().new_database();
    let ix = PostgresIndex::open(&url).expect("open");
    // A database at version 2 with header rows: one listed with a creation time, one
    // listed with a malformed one, one no longer listed.
    for sql in [
        "DROP INDEX headers_by_created",
        "DROP INDEX headers_by_id",
        "ALTER TABLE headers DROP COLUMN created",
        "DELETE FROM schema_version WHERE version >= 3",
    ] {
        ix.exec(sql, &[]).unwrap();
    }
    for (id, created) in [("listed", "2024-03-05T23:30:00.5Z"), ("odd", "yesterday")] {
        let info = serde_json::to_string(&MessageInfo {
            mailbox: "me".into(),
            id: id.into(),
            created: Some(created.into()),
            ..Default::default()
        })
        .unwrap();
        ix.exec(
            "INSERT INTO remote(mailbox, id, folder_id, info) VALUES('me', $1, 'f', $2)",
            &[&id, &info],
        )
        .unwrap();
    }
    for id in ["listed", "odd", "gone"] {
        ix.exec(
            "INSERT INTO headers(mailbox, id, path, from_addr, to_addr, cc_addr, subject,
               folder_id, size, has_attachment, subject_words, from_words, to_words,
               cc_words)
             VALUES('me', $1, 'k/' || $1 || '.eml', '', '', '', '', 'f', 1, false, '', '',
               '', '')",
            &[&id],
        )
        .unwrap();
    }
    drop(ix);
    let ix = PostgresIndex::open(&url).expect("migrated");
    let sel = Selection {
        created_from: chrono::NaiveDate::from_ymd_opt(2024, 3, 5),
        created_to: chrono::NaiveDate::from_ymd_opt(2024, 3, 5),
        ..Default::default()
    };
    let hits = ix.select(&sel, Order::Newest, None, 10).unwrap();
    let got: Vec<(String, Option<String>)> = hits
        .into_iter()
        .map(|h| (h.headers.id, h.headers.created))
        .collect();
    assert_eq!(
        got,
        [(
            "listed".to_string(),
            Some("2024-03-05T23:30:00Z".to_string())
        )]
    );
    assert_eq!(ix.count(&Selection::default(), u64::MAX).unwrap(), 3);
}

#[test]
fn a_database_of_a_newer_version_is_refused_untouched() {
    let url = pg_test_cluster::cluster().new_database();
    let ix = PostgresIndex::open(&url).expect("open");
    let newer = schema::MIGRATIONS.len() as i32 + 1;
    ix.exec("INSERT INTO schema_version(version) VALUES($1)", &[&newer])
        .unwrap();
    drop(ix);
    let e = PostgresIndex::open(&url).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "version {newer}, newer than this mailbackup knows"
        )) && e.contains("upgrade mailbackup"),
        "{e}"
    );
    assert!(!e.contains(pg_test_cluster::cluster().password()), "{e}");
}

#[test]
fn connection_problems_say_what_to_do_without_the_password() {
    let cluster = pg_test_cluster::cluster();
    let url = cluster.new_database();
    let wrong = url.replace(cluster.password(), "not-the-password");
    let e = PostgresIndex::open(&wrong).unwrap_err().to_string();
    assert!(e.contains("refused the password of user mailbackup"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");

    let missing = format!(
        "postgres://mailbackup:{}@127.0.0.1:{}/no_such_db",
        cluster.password(),
        cluster.port()
    );
    let e = PostgresIndex::open(&missing).unwrap_err().to_string();
    assert!(e.contains("database no_such_db does not exist"), "{e}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("postgres://mailbackup:secret@127.0.0.1:{port}/x");
    let e = PostgresIndex::open(&down).unwrap_err().to_string();
    assert!(
        e.contains("cannot reach PostgreSQL") && e.contains("start the server"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");

    let e = PostgresIndex::open("postgres://a@b:notaport/x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a PostgreSQL URL"), "{e}");
    // This cluster has no TLS.
    let tls = url.replace("sslmode=disable", "sslmode=require");
    let e = PostgresIndex::open(&tls).unwrap_err().to_string();
    assert!(
        e.contains("server does not offer TLS") && e.contains("use sslmode=disable"),
        "{e}"
    );
    assert!(!e.contains(cluster.password()), "{e}");

    let e = PostgresIndex::open("sqlite:///tmp/x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("postgres://USER@HOST:PORT/DATABASE"), "{e}");
}

/// A file holding `pem`, for `sslrootcert=`.
fn pem_file(dir: &tempfile::TempDir, name: &str, pem: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    url::form_urlencoded::byte_serialize(path.to_str().unwrap().as_bytes()).collect()
}

/// The database `url` of the TLS cluster with `options` in place of `sslmode=disable`.
fn tls_url(url: &str, options: &str) -> String {
    url.replace("sslmode=disable", options)
}

fn connection_is_encrypted(ix: &PostgresIndex) -> bool {
    ix.with(|c| {
        Ok(c.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )?
        .get::<_, bool>(0))
    })
    .unwrap()
}

#[test]
fn sslmode_require_connects_encrypted_without_checking_the_certificate() {
    let cluster = pg_test_cluster::tls_cluster();
    let url = cluster.new_database();
    let ix = PostgresIndex::open(&tls_url(&url, "sslmode=require")).expect("require");
    assert!(connection_is_encrypted(&ix));
    // prefer (the default) takes TLS when the server offers it.
    let ix = PostgresIndex::open(&tls_url(&url, "sslmode=prefer")).expect("prefer");
    assert!(connection_is_encrypted(&ix));
    // and plain TCP when it does not.
    let plain = pg_test_cluster::cluster().new_database();
    let ix = PostgresIndex::open(&tls_url(&plain, "sslmode=prefer")).expect("prefer");
    assert!(!connection_is_encrypted(&ix));
}

#[test]
fn postgres_index_passes_the_conformance_suite_over_verified_tls() {
    let cluster = pg_test_cluster::tls_cluster();
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(&dir, "ca.pem", cluster.ca_pem().expect("a TLS cluster"));
    let url = tls_url(
        &cluster.new_database(),
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let ix = PostgresIndex::open(&url).expect("verify-full");
    assert!(connection_is_encrypted(&ix));
    crate::index::conformance::index(&ix);
}

/// A loopback server in front of the plain test cluster whose first connection accepts
/// the TLS request and then sends bytes that are no TLS; later connections are passed
/// through to the cluster. Returns its port.
fn botched_tls_in_front_of_the_plain_cluster() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = pg_test_cluster::cluster().port();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut client) = conn else { return };
            if n == 0 {
                let mut ssl_request = [0u8; 8];
                let _ = client.read_exact(&mut ssl_request);
                let _ = client.write_all(b"S");
                let _ = client.write_all(b"this is not a TLS record\r\n");
                continue;
            }
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut from_client, &mut to_server));
            let (mut from_server, mut to_client) = (server, client);
            std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
        }
    });
    port
}

#[test]
fn sslmode_prefer_connects_in_plain_after_a_failed_tls_handshake_and_require_does_not() {
    let cluster = pg_test_cluster::cluster();
    let url = cluster.new_database();
    let port = botched_tls_in_front_of_the_plain_cluster();
    let via = url.replace(&format!(":{}/", cluster.port()), &format!(":{port}/"));
    let ix = PostgresIndex::open(&tls_url(&via, "sslmode=prefer")).expect("prefer");
    assert!(!connection_is_encrypted(&ix));

    let port = botched_tls_in_front_of_the_plain_cluster();
    let via = url.replace(&format!(":{}/", cluster.port()), &format!(":{port}/"));
    let e = PostgresIndex::open(&tls_url(&via, "sslmode=require"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("TLS handshake with PostgreSQL failed"), "{e}");
}

#[test]
fn sslmode_disable_against_a_server_that_requires_tls_says_to_ask_for_it() {
    let cluster = pg_test_cluster::tls_cluster();
    let url = cluster.new_database();
    let e = PostgresIndex::open(&url).unwrap_err().to_string();
    assert!(
        e.contains("admits no connection without TLS for user mailbackup")
            && e.contains("use sslmode=verify-full"),
        "{e}"
    );
    assert!(!e.contains(cluster.password()), "{e}");
}

#[test]
fn sslmode_verify_full_connects_with_the_servers_ca_and_refuses_another() {
    let cluster = pg_test_cluster::tls_cluster();
    let url = cluster.new_database();
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(&dir, "ca.pem", cluster.ca_pem().expect("a TLS cluster"));
    let ix = PostgresIndex::open(&tls_url(
        &url,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .expect("verify-full with the server's CA");
    assert!(connection_is_encrypted(&ix));
    // By name too: the certificate holds localhost.
    let by_name = tls_url(&url, &format!("sslmode=verify-full&sslrootcert={ca}"))
        .replace("@127.0.0.1:", "@localhost:");
    let ix = PostgresIndex::open(&by_name).expect("verify-full to localhost");
    assert!(connection_is_encrypted(&ix));

    let other = pem_file(&dir, "other.pem", &pg_test_cluster::unrelated_ca_pem());
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = PostgresIndex::open(&tls_url(
            &url,
            &format!("sslmode={mode}&sslrootcert={other}"),
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("certificate is not trusted")
                && e.contains("other.pem")
                && e.contains("give the CA that signed it with sslrootcert=FILE"),
            "{mode}: {e}"
        );
        assert!(!e.contains(cluster.password()), "{e}");
    }
}

#[test]
fn sslmode_verify_full_refuses_a_host_name_the_certificate_lacks_and_verify_ca_does_not() {
    let cluster = pg_test_cluster::tls_cluster();
    let url = cluster.new_database();
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(&dir, "ca.pem", cluster.ca_pem().expect("a TLS cluster"));
    // The name is checked against the certificate, the address is the server's.
    let wrong_name = |mode: &str| {
        tls_url(
            &url,
            &format!("sslmode={mode}&sslrootcert={ca}&hostaddr=127.0.0.1"),
        )
        .replace("@127.0.0.1:", "@db.example.net:")
    };
    let e = PostgresIndex::open(&wrong_name("verify-full"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("certificate is not valid for the host name") && e.contains("sslmode=verify-ca"),
        "{e}"
    );
    let ix = PostgresIndex::open(&wrong_name("verify-ca")).expect("verify-ca");
    assert!(connection_is_encrypted(&ix));
}

#[test]
fn a_client_certificate_from_sslcert_and_sslkey_lets_the_user_in_where_the_server_asks_for_one() {
    let cluster = pg_test_cluster::tls_cluster();
    let url = cluster.client_cert_database().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(&dir, "ca.pem", cluster.ca_pem().expect("a TLS cluster"));
    let verified = tls_url(&url, &format!("sslmode=verify-full&sslrootcert={ca}"));
    // Without a certificate the server says no, and the error says what to give.
    let e = PostgresIndex::open(&verified).unwrap_err().to_string();
    assert!(
        e.contains("admits user mailbackup only with a client certificate")
            && e.contains("give sslcert=FILE and sslkey=FILE"),
        "{e}"
    );
    assert!(!e.contains(cluster.password()), "{e}");

    let cert = pem_file(&dir, "client.pem", cluster.client_cert_pem().unwrap());
    let key = pem_file(&dir, "client.key", cluster.client_key_pem().unwrap());
    // No password: the certificate is the authentication (pg_hba.conf "cert").
    let with_cert = format!("{verified}&sslcert={cert}&sslkey={key}")
        .replace(&format!(":{}@", cluster.password()), "@");
    let ix = PostgresIndex::open(&with_cert).expect("client certificate");
    assert!(connection_is_encrypted(&ix));
    let client_dn: String = ix
        .with(|c| {
            Ok(c.query_one(
                "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )?
            .get(0))
        })
        .unwrap();
    assert_eq!(client_dn, "/CN=mailbackup");

    // A key that is not the certificate's is refused before connecting.
    let other_key = pem_file(&dir, "other.key", cluster.client_key_pem().unwrap());
    let ca_as_cert = format!("{verified}&sslcert={ca}&sslkey={other_key}");
    let e = PostgresIndex::open(&ca_as_cert).unwrap_err().to_string();
    assert!(e.contains("do not go together"), "{e}");
}

#[test]
fn tls_options_this_build_lacks_are_refused_before_connecting() {
    let cluster = pg_test_cluster::cluster();
    let url = cluster.new_database();
    for (with, says) in [
        (format!("{url}&sslcert=client.pem"), "give both, or neither"),
        (format!("{url}&sslcrl=crl.pem"), "leave sslcrl out"),
        (
            format!("{url}&sslmode=verify-full&sslrootcert=%2Fno%2Fsuch%2Fca.pem"),
            "cannot read the sslrootcert file /no/such/ca.pem",
        ),
    ] {
        let e = PostgresIndex::open(&with).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidOption {
                    option: "index",
                    ..
                }
            ),
            "{with}: {e:?}"
        );
        let e = e.to_string();
        assert!(e.contains(says), "{with}: {e}");
        assert!(!e.contains(cluster.password()), "{e}");
    }
}
