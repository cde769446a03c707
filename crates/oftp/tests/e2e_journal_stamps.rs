//! End to end: a journal of an earlier version holding an impossible virtual file stamp no
//! longer troubles every session. Real server and client over 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use oftp::config::SessionLimits;
use oftp::handler::ErrorEvent;
use oftp::journal::SqliteJournal;
use oftp::{FileOutcome, Handler, OutgoingFile};

/// Keeps the errors the runtime reports to the application.
struct Errors(Arc<Mutex<Vec<String>>>);

impl Handler for Errors {
    async fn error(&self, error: &ErrorEvent) {
        self.0.lock().unwrap().push(error.description.clone());
    }
}

/// A received file with the stamp a partner once sent (`2006-06-43 51:86:72`) and its EERP still
/// pending, as earlier versions stored it: before, every later session with that partner
/// reported `journal: corrupt entry: invalid virtual file stamp ...` and sent none of its
/// pending EERPs. Now the row is set aside when the journal opens, and sessions run clean.
#[tokio::test]
async fn an_impossible_stamp_in_an_old_journal_does_not_trouble_every_session() {
    init_tracing();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let server = start_server_with(Errors(errors.clone()), |cfg| {
        drop(SqliteJournal::open_in_dir(&cfg.data_dir).unwrap());
        let db =
            rusqlite::Connection::open(cfg.data_dir.join(oftp::journal::JOURNAL_FILE)).unwrap();
        db.execute(
            "INSERT INTO received (partner, originator, dsn, stamp, state, partial_path,
                                   final_path, updated_at)
             VALUES (?1, ?1, 'GARBLED', '200606435186720000', 'complete', 'p', 'f', 'then')",
            [CLIENT_SSID],
        )
        .unwrap();
    })
    .await;
    for round in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(format!("next{round}.edi"));
        std::fs::write(&f, format!("UNA:+.? 'UNB+{round}'")).unwrap();
        let report = client(dir.path(), SessionLimits::default())
            .run(&server.addr(), vec![OutgoingFile::new(&f)])
            .await
            .unwrap();
        assert_eq!(report.files[0].1, FileOutcome::Delivered, "{report:?}");
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{errors:?}");
    let db =
        rusqlite::Connection::open(server.dir.path().join(oftp::journal::JOURNAL_FILE)).unwrap();
    let set_aside: String = db
        .query_row("SELECT row FROM set_aside", [], |r| r.get(0))
        .unwrap();
    assert!(set_aside.contains("GARBLED"), "{set_aside}");
    server.running.shutdown().await;
}
