//! Fills a journal's outbound queue for `scripts/bench-control.sh`, through the journal API:
//! `ROWS` rows over partners `p0000`..`p<PARTNERS-1>`, each with a history: most delivered
//! (queued -> in transfer -> sent -> delivered), some failed, some still queued, plus an
//! alert for every 1,000th row.
//!
//! ```text
//! cargo run -p oftp-gateway --example fill_queue -- DATA_DIR PARTNERS ROWS
//! ```

use std::path::PathBuf;

use chrono::{Duration, Utc};
use oftp::journal::{
    AlertKind, Journal, NewAlert, QueueChange, QueueState, QueuedSend, SqliteJournal,
};
use oftp::oftp_proto::codec::FileFormat;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, partners, rows] = args.as_slice() else {
        return Err("usage: fill_queue DATA_DIR PARTNERS ROWS".into());
    };
    let partners: usize = partners.parse()?;
    let rows: usize = rows.parse()?;
    std::fs::create_dir_all(dir)?;
    let journal = SqliteJournal::open_in_dir(&PathBuf::from(dir))?;
    let start = Utc::now() - Duration::days(30);
    for i in 0..rows {
        let partner = format!("p{:04}", i % partners);
        let at = start + Duration::seconds(i as i64 * 20);
        let send = QueuedSend {
            partner: partner.clone(),
            source_path: PathBuf::from(format!("{dir}/outbox/{partner}/.queue/{i}/FILE{i}")),
            virtual_file_name: format!("FILE{i}"),
            destination: None,
            originator: None,
            format: FileFormat::Unstructured,
            max_record_len: 0,
            user_data: String::new(),
            description: String::new(),
        };
        let id = journal.enqueue(&send, at)?;
        let step = |to, s| QueueChange::to(to, at + Duration::seconds(s));
        match i % 10 {
            0 => {} // still queued
            1 => {
                journal.transition(id, &step(QueueState::InTransfer, 1))?;
                journal.transition(
                    id,
                    &step(QueueState::Failed, 2).error("connection refused (os error 111)"),
                )?;
            }
            _ => {
                journal.transition(id, &step(QueueState::InTransfer, 1))?;
                journal.transition(id, &step(QueueState::Sent, 2))?;
                journal.transition(id, &step(QueueState::Delivered, 3))?;
            }
        }
        if i % 1000 == 999 {
            journal.raise_alert(
                &NewAlert {
                    kind: AlertKind::FileFailed,
                    partner: Some(partner),
                    file: Some(send.virtual_file_name),
                    text: "benchmark alert".into(),
                },
                at,
            )?;
        }
    }
    Ok(())
}
