//! What a partner gets at our first turn of a session in which we may send: the files of the
//! outbound queue due for it, when the server has one (claimed here, settled as their outcomes
//! come: see [`crate::outbound`]), else the files in its outbox. Names a program is still
//! writing are left alone: ending in `.tmp` (any case) or starting with a dot (see
//! [`is_ready_outbox_name`]: write, then rename). Moving a sent outbox file to `sent/` happens
//! when its EFPA arrives (see `send`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::client::FileOutcome;
use crate::config::is_ready_outbox_name;
use crate::connection::{Connection, Origin, Work};
use crate::handle::OutgoingFile;
use crate::handler::{Disconnected, Handler};
use crate::journal::{FileKey, JournalError, QueuedFile};
use crate::outbound::{OutboundQueue, QueueOutcome};
use crate::transport::{FileServices, Transport};

/// A row claimed from the outbound queue and not settled yet.
pub(super) struct Claimed {
    row: QueuedFile,
    /// The failure to settle it with at the end of the session, once known (with the
    /// identity it was offered under, if it got that far).
    failure: Option<(FileOutcome, Option<FileKey>)>,
}

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    pub(super) async fn scan_outbox(&mut self) {
        // A partner that only sends (or a session we may not send in) gets nothing offered.
        if !self.negotiated.as_ref().is_some_and(|n| n.can_send) {
            return;
        }
        if let Some(queue) = self.shared.outbound.get().cloned() {
            self.claim_queued(queue).await;
            return;
        }
        let Some(dir) = self.params.as_ref().and_then(|p| p.outbox.clone()) else {
            return;
        };
        // Listing a directory is a blocking call: on the blocking pool.
        let listed = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Vec::new();
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(is_ready_outbox_name))
                .collect();
            files.sort();
            files
        })
        .await
        .unwrap_or_default();
        for path in listed {
            self.queue.push_back(Work::File {
                file: OutgoingFile::new(path),
                origin: Origin::Outbox,
            });
        }
    }

    /// Claims the partner's due files from the outbound queue and queues them to send.
    async fn claim_queued(&mut self, queue: Arc<dyn OutboundQueue>) {
        let Some(partner) = self.params.as_ref().map(|p| p.partner_name.clone()) else {
            return;
        };
        let claimed = tokio::task::spawn_blocking(move || queue.claim(&partner))
            .await
            .map_err(|e| JournalError::Task(e.to_string()))
            .and_then(|r| r);
        match claimed {
            Ok(rows) => {
                for row in rows {
                    self.queue.push_back(Work::File {
                        file: OutgoingFile::from(&row.send),
                        origin: Origin::Queue(row.id),
                    });
                    self.claimed.push(Claimed { row, failure: None });
                }
            }
            // Nothing claimed, nothing lost: the files wait for the next session.
            Err(e) => {
                self.error(format!("cannot take the queued files to send: {e}"))
                    .await
            }
        }
    }

    /// The outcome of queued row `id`: a file the partner stored (or had already) is settled
    /// at once, so its end response finds the row sent; a failure waits for the end of the
    /// session, whose end the queue's retry policy needs.
    pub(super) async fn queued_outcome(
        &mut self,
        id: i64,
        outcome: FileOutcome,
        key: Option<FileKey>,
    ) {
        let Some(i) = self.claimed.iter().position(|c| c.row.id == id) else {
            return;
        };
        let settled = match (&outcome, key.clone()) {
            (FileOutcome::AwaitingEndResponse, Some(key)) => QueueOutcome::Sent(key),
            (FileOutcome::Delivered, Some(key)) => QueueOutcome::Delivered(key),
            _ => {
                self.claimed[i].failure = Some((outcome, key));
                return;
            }
        };
        let row = self.claimed.remove(i).row;
        if let Err(row) = self.settle_row(row, settled).await {
            // Not recorded: the row is given back at the end (and its next attempt finds
            // the journal's send record, so the file is not sent twice).
            self.claimed.push(Claimed { row, failure: None });
        }
    }

    /// Settles every row still claimed when the session ends: with its failure, or given back
    /// (never offered).
    pub(super) async fn settle_claimed(&mut self, ended: &Disconnected) {
        for Claimed { row, failure } in std::mem::take(&mut self.claimed) {
            let outcome = match failure {
                Some((outcome, key)) => QueueOutcome::Failed {
                    outcome,
                    ended: ended.clone(),
                    key,
                },
                None => QueueOutcome::NotOffered(ended.clone()),
            };
            let _ = self.settle_row(row, outcome).await;
        }
    }

    /// Reports `outcome` of `row` to the queue; gives the row back if that failed.
    async fn settle_row(&self, row: QueuedFile, outcome: QueueOutcome) -> Result<(), QueuedFile> {
        let Some(queue) = self.shared.outbound.get().cloned() else {
            return Ok(());
        };
        let settled = tokio::task::spawn_blocking(move || {
            let r = queue.settle(&row, &outcome);
            (row, r)
        })
        .await;
        match settled {
            Ok((_, Ok(()))) => Ok(()),
            Ok((row, Err(e))) => {
                self.error(format!(
                    "cannot record the outcome of queued file {} (transfer {}): {e}; the row \
                     stays in transfer until the end of the session or the next daemon start \
                     gives it back",
                    row.send.virtual_file_name, row.id
                ))
                .await;
                Err(row)
            }
            Err(e) => {
                self.error(format!("recording a queued file's outcome failed: {e}"))
                    .await;
                Ok(())
            }
        }
    }
}
