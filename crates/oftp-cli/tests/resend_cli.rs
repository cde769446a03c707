//! `oftp send FILE` run again converges: a file the partner stored but did not confirm yet is
//! not sent a second time, its EERP is collected by the next run (`delivered`, exit 0), and an
//! EERP that arrives in a run that sends nothing is printed for the file of the earlier run.
//! The real `oftp` binary against a server (the library, in this process) that withholds each
//! file's EERP in the session that delivered it and sends it at the start of the next one.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use oftp::config::{LocalIdentity, Partner, PartnerTable, Password};
use oftp::handler::{
    Direction, EndResponse, EndResponseTiming, FileDecision, FileOffer, SessionInfo, TransferInfo,
    TransferResult,
};
use oftp::{Handler, Server, ServerConfig};

mod common;
use common::flag_send;

const SERVER: &str = "O0013SERVER";
const CLIENT: &str = "O0013CLIENT";

/// Withholds the EERP of every file in the session that delivered it; sends the withheld ones
/// when the next session starts. Counts the offers per virtual file name.
#[derive(Default)]
struct Withholding {
    withheld: Mutex<Vec<TransferInfo>>,
    seen: Mutex<HashSet<String>>,
    offers: Mutex<HashMap<String, usize>>,
    sessions: AtomicUsize,
}

impl Withholding {
    fn offers(&self, name: &str) -> usize {
        self.offers.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Handler for &'static Withholding {
    async fn session_started(&self, s: &SessionInfo) {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        for t in self.withheld.lock().unwrap().drain(..) {
            s.handle
                .send_end_response(EndResponse {
                    virtual_file_name: t.virtual_file_name.clone(),
                    stamp: t.stamp,
                    destination: t.originator.clone(),
                    originator: t.destination.clone(),
                    user_data: String::new(),
                    negative: None,
                    file_hash: Vec::new(),
                    signature: Vec::new(),
                    signature_verified: false,
                })
                .unwrap();
        }
    }

    async fn accept_file(&self, _s: &SessionInfo, offer: &FileOffer) -> FileDecision {
        *self
            .offers
            .lock()
            .unwrap()
            .entry(offer.virtual_file_name.clone())
            .or_default() += 1;
        offer.default_decision()
    }

    async fn end_transfer(
        &self,
        _s: &SessionInfo,
        t: &TransferInfo,
        r: &TransferResult,
    ) -> EndResponseTiming {
        let first = self
            .seen
            .lock()
            .unwrap()
            .insert(t.virtual_file_name.clone());
        if t.direction == Direction::Incoming
            && matches!(r, TransferResult::Completed { .. })
            && first
        {
            self.withheld.lock().unwrap().push(t.clone());
            EndResponseTiming::Later
        } else {
            EndResponseTiming::Now
        }
    }
}

fn partner(name: &str, ssid: &str, pw: &str) -> Partner {
    Partner::new(name, ssid, Password::new(pw))
}

/// Runs `oftp send` with flags in `dir` (journal in `dir/client-data`).
fn send(dir: &Path, port: u16, files: &[&str]) -> (Option<i32>, String) {
    let out = flag_send(dir, port, (CLIENT, "CLIPW"), (SERVER, "SRVPW"), "10", files);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code(),
        format!("{stdout}\n--- stderr:\n{stderr}"),
    )
}

fn inbox_files(inbox: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_again_collects_the_withheld_eerp_without_sending_the_file_twice() {
    let sdir = tempfile::tempdir().unwrap();
    let partners = PartnerTable::new([partner("client", CLIENT, "CLIPW")]).unwrap();
    let identity = LocalIdentity {
        ssid: SERVER.into(),
        sfid: SERVER.into(),
        password: Password::new("SRVPW"),
    };
    let mut cfg = ServerConfig::new(identity, partners, sdir.path().to_owned());
    cfg.settings.listen = "127.0.0.1:0".parse().unwrap();
    let handler: &'static Withholding = Box::leak(Box::default());
    let running = Server::new(cfg)
        .unwrap()
        .handler(handler)
        .start()
        .await
        .unwrap();
    let port = running.local_addr().unwrap().port();
    let inbox = sdir.path().join("inbox").join("client");

    let cdir = tempfile::tempdir().unwrap();
    let dir = cdir.path().to_owned();
    std::fs::write(dir.join("order.edi"), b"UNB+order").unwrap();
    std::fs::write(dir.join("invoice.edi"), b"UNB+invoice").unwrap();
    let run = move |files: &'static [&'static str]| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || send(&dir, port, files))
    };

    // First run: stored, but the EERP is withheld.
    let (code, out) = run(&["order.edi"]).await.unwrap();
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("not confirmed"), "{out}");
    assert_eq!(inbox_files(&inbox), ["ORDER.EDI"]);

    // Again: not offered a second time, the EERP is collected.
    let (code, out) = run(&["order.edi"]).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("delivered"), "{out}");
    assert_eq!(handler.offers("ORDER.EDI"), 1);
    assert_eq!(inbox_files(&inbox), ["ORDER.EDI"]);
    assert_eq!(
        std::fs::read(inbox.join("ORDER.EDI")).unwrap(),
        b"UNB+order"
    );

    // And again: delivered already, nothing sent.
    let (code, out) = run(&["order.edi"]).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("delivered"), "{out}");
    assert_eq!(handler.offers("ORDER.EDI"), 1);

    // An EERP collected by a run that sends nothing is printed for the earlier run's file...
    let (code, out) = run(&["invoice.edi"]).await.unwrap();
    assert_eq!(code, Some(3), "{out}");
    let (code, out) = run(&[]).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("invoice.edi"))
        .unwrap_or_else(|| panic!("no line for invoice.edi: {out}"));
    assert!(line.starts_with("delivered"), "{out}");
    assert!(line.contains("earlier run"), "{out}");
    // ... and the file counts as delivered from then on.
    let (code, out) = run(&["invoice.edi"]).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(handler.offers("INVOICE.EDI"), 1);
    assert_eq!(inbox_files(&inbox), ["INVOICE.EDI", "ORDER.EDI"]);
    assert_eq!(handler.sessions.load(Ordering::SeqCst), 6);
    running.shutdown().await;
}
