//! End to end: sending a file again converges on one delivery. A client killed after the
//! partner's EFPA but before its journal recorded it offers the file again under the same
//! identity; the partner's SFNA 13 (duplicate) then means "stored, EERP due", not a refusal,
//! and the EERP of a later session settles it. Real sockets on 127.0.0.1.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use oftp::config::SessionLimits;
use oftp::handler::{
    Direction, EndResponse, EndResponseTiming, FileDecision, FileOffer, SessionInfo, TransferInfo,
    TransferResult,
};
use oftp::journal::{FileKey, Journal, SendState, SqliteJournal};
use oftp::{FileOutcome, Handler, OutgoingFile};

/// Withholds every EERP; sends the withheld ones when a session starts after `release`.
#[derive(Default)]
struct Withholding {
    withheld: Mutex<Vec<TransferInfo>>,
    release: AtomicBool,
    offers: AtomicUsize,
}

impl Handler for &'static Withholding {
    async fn session_started(&self, s: &SessionInfo) {
        if !self.release.load(Ordering::SeqCst) {
            return;
        }
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
        self.offers.fetch_add(1, Ordering::SeqCst);
        offer.default_decision()
    }

    async fn end_transfer(
        &self,
        _s: &SessionInfo,
        t: &TransferInfo,
        r: &TransferResult,
    ) -> EndResponseTiming {
        if t.direction == Direction::Incoming && matches!(r, TransferResult::Completed { .. }) {
            self.withheld.lock().unwrap().push(t.clone());
            EndResponseTiming::Later
        } else {
            EndResponseTiming::Now
        }
    }
}

#[tokio::test]
async fn a_duplicate_answer_to_a_resumed_identity_awaits_the_eerp_instead_of_failing() {
    init_tracing();
    let handler: &'static Withholding = Box::leak(Box::default());
    let server = start_server_with(handler, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("order.edi");
    std::fs::write(&f, b"UNB+order").unwrap();
    let c = client(dir.path(), SessionLimits::default());

    // Stored by the partner, EERP withheld.
    let report = c
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::AwaitingEndResponse);
    let stamp = report.files[0].0.stamp.unwrap();
    let key = FileKey::new(CLIENT_SSID.parse().unwrap(), "ORDER.EDI", stamp);

    // What a client killed between the EFPA and its journal update leaves: still "sending".
    let journal = SqliteJournal::open_in_dir(dir.path()).unwrap();
    let sent = journal.sent_by_key(&key).unwrap().unwrap();
    journal.set_send_state(sent.id, SendState::Sending).unwrap();

    // Offered again under the same identity: SFNA 13, so the file awaits its EERP.
    let report = c
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert_eq!(
        report.files[0].1,
        FileOutcome::AwaitingEndResponse,
        "{report:?}"
    );
    assert_eq!(report.files[0].0.stamp, Some(stamp));
    assert_eq!(handler.offers.load(Ordering::SeqCst), 2);
    assert_eq!(
        journal.sent_by_key(&key).unwrap().unwrap().state,
        SendState::AwaitingEndResponse
    );

    // The EERP comes in a later session: delivered, without a third offer.
    handler.release.store(true, Ordering::SeqCst);
    let report = c
        .run(&server.addr(), vec![OutgoingFile::new(&f)])
        .await
        .unwrap();
    assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    assert_eq!(handler.offers.load(Ordering::SeqCst), 2);
    assert_eq!(
        journal.sent_by_key(&key).unwrap().unwrap().state,
        SendState::Delivered
    );
    assert_eq!(visible_files(&server.inbox()), ["ORDER.EDI"]);
    server.running.shutdown().await;
}
