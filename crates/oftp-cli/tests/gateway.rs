//! `oftp serve` as a gateway, end to end: two real daemons on 127.0.0.1, A and B, each the
//! other's partner. A file put into A's outbox for B is taken over, queued in A's journal,
//! sent by a call A makes on its own, and settled by what B answers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oftp::journal::{AlertKind, Journal, QueueState, QueuedFile, SqliteJournal, TransferFilter};

mod common;
use common::{Server, free_port, oftp_serve, spawn_listening};

/// Two daemons' configurations in one directory: A in `a/`, B in `b/`.
struct Pair {
    dir: tempfile::TempDir,
    port_a: u16,
    port_b: u16,
}

impl Pair {
    /// A calls B only once its entry gets an address ([`Pair::write_a`]); `b_tables` follow
    /// B's entry for A.
    fn new(b_tables: &str) -> Pair {
        let pair = Pair {
            dir: tempfile::tempdir().unwrap(),
            port_a: free_port(),
            port_b: free_port(),
        };
        pair.write_a("");
        let b = format!(
            "[local]\nssid = \"O0013BBB\"\npassword = \"BPW\"\n\n\
             [server]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"b\"\n\n\
             [[partners]]\nname = \"a\"\nssid = \"O0013AAA\"\npassword = \"APW\"\n{b_tables}",
            pair.port_b
        );
        std::fs::write(pair.path().join("b.toml"), b).unwrap();
        pair
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A's configuration: B at its port, retried after 1 to 2 seconds, then `keys`.
    fn write_a(&self, keys: &str) {
        let a = format!(
            "[local]\nssid = \"O0013AAA\"\npassword = \"APW\"\n\n\
             [server]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"a\"\n\n\
             [gateway.outbox]\ndebounce_ms = 50\npoll_interval_secs = 1\n\n\
             [[partners]]\nname = \"b\"\nssid = \"O0013BBB\"\npassword = \"BPW\"\n{keys}\n\
             [partners.retry]\nfirst_delay_secs = 1\nmax_delay_secs = 2\njitter = 0.0\n",
            self.port_a
        );
        std::fs::write(self.path().join("a.toml"), a).unwrap();
    }

    fn address_b(&self) -> String {
        format!("address = \"127.0.0.1:{}\"\n", self.port_b)
    }

    fn start(&self, which: &str) -> Server {
        let (server, lines) = spawn_listening(oftp_serve(
            self.path(),
            &["--config", &format!("{which}.toml")],
        ));
        assert_eq!(lines.len(), 1, "{which} did not start: {lines:?}");
        server
    }

    /// Puts a file into A's outbox for B as the convention says: written under a `.tmp`
    /// name, then renamed.
    fn drop_file(&self, name: &str, content: &[u8]) {
        let outbox = self.path().join("a/outbox/b");
        std::fs::create_dir_all(&outbox).unwrap();
        let tmp = outbox.join(format!("{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, outbox.join(name)).unwrap();
    }

    fn journal_a(&self) -> SqliteJournal {
        SqliteJournal::open_in_dir(&self.path().join("a")).unwrap()
    }

    /// A's queue rows for B, oldest first.
    fn rows(&self) -> Vec<QueuedFile> {
        let mut rows = self
            .journal_a()
            .transfers(&TransferFilter {
                partner: Some("b".into()),
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        rows.reverse();
        rows
    }

    fn inbox_b(&self) -> PathBuf {
        self.path().join("b/inbox/a")
    }

    /// The regular files in B's inbox for A, by name.
    fn received(&self) -> Vec<(String, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(self.inbox_b()) else {
            return Vec::new();
        };
        let mut files: Vec<(String, Vec<u8>)> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .filter(|(name, _)| !name.starts_with('.'))
            .collect();
        files.sort();
        files
    }
}

/// Waits up to `limit` for `done`, checking every 100 ms; panics with `what` otherwise.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn states(rows: &[QueuedFile]) -> Vec<QueueState> {
    rows.iter().map(|r| r.state).collect()
}

#[test]
fn a_file_dropped_into_the_outbox_is_delivered_with_no_command() {
    let pair = Pair::new("");
    pair.write_a(&pair.address_b());
    let _b = pair.start("b");
    let _a = pair.start("a");
    pair.drop_file("invoice.txt", b"UNB+UNOA:3");
    wait_for(Duration::from_secs(20), "the file delivered", || {
        states(&pair.rows()) == [QueueState::Delivered]
    });
    assert_eq!(
        pair.received(),
        [("INVOICE.TXT".to_owned(), b"UNB+UNOA:3".to_vec())]
    );
    let row = &pair.rows()[0];
    assert_eq!(row.attempts, 1);
    assert_eq!(row.send.virtual_file_name, "INVOICE.TXT");
    assert!(row.key.is_some(), "the wire identity is kept");
    let last = pair.journal_a().last_call("b").unwrap().unwrap();
    assert!(last.ok, "{last:?}");
    assert!(
        std::fs::read_dir(pair.path().join("a/outbox/b"))
            .unwrap()
            .all(|e| e.unwrap().file_name().to_string_lossy().starts_with('.')),
        "the file left the outbox"
    );
}

#[test]
fn a_partner_that_was_down_gets_the_file_when_it_is_back() {
    let pair = Pair::new("");
    pair.write_a(&format!(
        "{}alert_after_failed_calls = 2\n",
        pair.address_b()
    ));
    let _a = pair.start("a");
    pair.drop_file("late.txt", b"late");
    wait_for(Duration::from_secs(20), "three failed attempts", || {
        pair.rows().first().is_some_and(|r| r.attempts >= 3)
    });
    let row = &pair.rows()[0];
    assert!(
        matches!(row.state, QueueState::Queued | QueueState::InTransfer),
        "{row:?}"
    );
    assert!(
        row.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("connection refused")),
        "{row:?}"
    );
    let unreachable: Vec<_> = pair
        .journal_a()
        .open_alerts()
        .unwrap()
        .into_iter()
        .filter(|a| a.alert.kind == AlertKind::PartnerUnreachable)
        .collect();
    assert_eq!(
        unreachable.len(),
        1,
        "one alert after 2 failed calls, not one per call: {unreachable:?}"
    );
    let _b = pair.start("b");
    wait_for(Duration::from_secs(20), "the file delivered", || {
        states(&pair.rows()) == [QueueState::Delivered]
    });
    assert_eq!(pair.received(), [("LATE.TXT".to_owned(), b"late".to_vec())]);
}

#[test]
fn killing_the_sender_during_a_queue_loses_and_doubles_nothing() {
    let pair = Pair::new("");
    pair.write_a(&pair.address_b());
    let _b = pair.start("b");
    let mut a = pair.start("a");
    let content = |i: usize| vec![b'a' + (i % 26) as u8; 2_000_000 + i];
    for i in 0..20 {
        pair.drop_file(&format!("f{i:02}.dat"), &content(i));
    }
    wait_for(Duration::from_secs(20), "a few files at B", || {
        pair.received().len() >= 3
    });
    a.0.kill().unwrap(); // SIGKILL
    a.0.wait().unwrap();
    let at_kill = pair.rows();
    assert!(
        at_kill.iter().any(|r| r.state != QueueState::Delivered),
        "A was killed with files still to send"
    );
    eprintln!(
        "killed A with {} of 20 files delivered",
        at_kill
            .iter()
            .filter(|r| r.state == QueueState::Delivered)
            .count()
    );
    let _a = pair.start("a");
    wait_for(Duration::from_secs(25), "every file delivered", || {
        let rows = pair.rows();
        rows.len() == 20 && rows.iter().all(|r| r.state == QueueState::Delivered)
    });
    let received = pair.received();
    let expected: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("F{i:02}.DAT"), content(i)))
        .collect();
    assert_eq!(
        received.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        "each file once at B"
    );
    assert!(received == expected, "every file arrived whole");
}

#[test]
fn a_file_the_partner_refuses_for_good_is_rejected_with_an_alert() {
    // B takes only signed files from A: A's plain file gets SFNA 20 with retry N.
    let pair = Pair::new("[partners.security]\nrequired_security = \"signed\"\n");
    pair.write_a(&pair.address_b());
    let _b = pair.start("b");
    let _a = pair.start("a");
    pair.drop_file("plain.txt", b"plain");
    wait_for(Duration::from_secs(20), "the file settled", || {
        pair.rows()
            .first()
            .is_some_and(|r| r.state == QueueState::Rejected)
    });
    let row = &pair.rows()[0];
    assert_eq!(row.attempts, 1, "a refusal for good is not retried");
    let error = row.last_error.as_deref().unwrap();
    assert!(error.contains("SFNA 20, retry N"), "{error}");
    let alerts = pair.journal_a().open_alerts().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].alert.kind, AlertKind::FileFailed);
    assert_eq!(alerts[0].alert.partner.as_deref(), Some("b"));
    assert!(pair.received().is_empty());
}

#[cfg(unix)]
#[test]
fn sighup_reloads_the_partners_and_a_broken_file_keeps_the_old_ones() {
    let pair = Pair::new("");
    // B has no address yet: A does not call it.
    let _b = pair.start("b");
    let a = pair.start("a");
    let hup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &a.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    pair.drop_file("reload.txt", b"reload");
    let in_outbox = pair.path().join("a/outbox/b/reload.txt");
    // Taken over and queued at once; nobody calls B, so it waits for B to call us.
    wait_for(Duration::from_secs(10), "the file queued", || {
        states(&pair.rows()) == [QueueState::Queued]
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(!in_outbox.exists(), "taken over from the outbox");
    assert_eq!(
        states(&pair.rows()),
        [QueueState::Queued],
        "a partner without an address is not called"
    );
    std::fs::write(pair.path().join("a.toml"), "[local]\nssid = ").unwrap();
    hup();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        states(&pair.rows()),
        [QueueState::Queued],
        "a broken configuration changed nothing"
    );
    pair.write_a(&pair.address_b());
    hup();
    wait_for(Duration::from_secs(20), "the file delivered", || {
        states(&pair.rows()) == [QueueState::Delivered]
    });
    assert_eq!(
        pair.received(),
        [("RELOAD.TXT".to_owned(), b"reload".to_vec())]
    );
    drop(a);
}

#[cfg(unix)]
#[test]
fn sigterm_during_a_call_queues_its_file_again_and_the_next_start_delivers_it() {
    let pair = Pair::new("");
    pair.write_a(&pair.address_b());
    let _b = pair.start("b");
    let mut a = pair.start("a");
    let content: Vec<u8> = (0..60_000_000u32).map(|i| (i % 251) as u8).collect();
    pair.drop_file("big.dat", &content);
    let partial = || {
        std::fs::read_dir(pair.inbox_b()).is_ok_and(|mut d| {
            d.any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".part"))
        })
    };
    wait_for(Duration::from_secs(20), "the transfer under way", partial);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &a.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = a.0.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "A did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
    let rows = pair.rows();
    // Under load the last octets may already be on their way when the interrupt lands: then
    // the partner confirms the file and it is delivered. Either way it is never left in
    // transfer, and the next start delivers it exactly once.
    let after_stop = states(&rows);
    assert!(
        after_stop == [QueueState::Queued] || after_stop == [QueueState::Delivered],
        "the interrupted file is queued again, not left in transfer: {after_stop:?}"
    );
    if after_stop == [QueueState::Queued] {
        assert!(pair.received().is_empty(), "not delivered before the stop");
    }
    let _a = pair.start("a");
    wait_for(Duration::from_secs(25), "the file delivered", || {
        states(&pair.rows()) == [QueueState::Delivered]
    });
    let received = pair.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].1 == content, "the file arrived whole");
}
