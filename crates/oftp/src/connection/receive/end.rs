//! The end of a reception: EFID checks (counts, record problems), the file services' verdict,
//! placing the file and the journal, then EFPA (or EFNA, or EFPA plus NERP for a relayed file
//! that cannot be opened) and the end response owed; and a reception cut by a break. Nothing
//! is confirmed before the file is durable and the journal says so.

use crate::connection::error::ConnectionError;
use crate::connection::receive::{FailedReception, Incoming, OpenerFailure};
use crate::connection::wire;
use crate::connection::{Connection, Work};
use crate::handler::{EndResponseTiming, Handler, LogLevel, TransferInfo, TransferResult};
use crate::journal::{Checkpoint, Direction as JournalDirection};
use crate::store::{PartialFile, StoreError, StorePolicy};
use crate::transport::{FileServices, Transport};

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    pub(in crate::connection) async fn on_file_ended(
        &mut self,
        record_count: u64,
        unit_count: u64,
        received_records: u64,
        received_units: u64,
        record_violation: Option<String>,
    ) {
        let Some(mut inc) = self.incoming.take() else {
            return;
        };
        if let Some(problem) = Self::settle(&mut inc).await {
            // The commit below fsyncs everything again; only the restart point is stale.
            self.fail(problem).await;
        }
        let info = self.info.clone();
        let total_units = inc.base.units + received_units;
        let total_records = inc.base.records + received_records;
        let problem = if let Some(v) = record_violation {
            Some(ConnectionError::RecordTooLong(v))
        } else if let Some(p) = inc.unstorable.take() {
            Some(p)
        } else if inc.format.is_record_oriented() && total_records != record_count {
            Some(ConnectionError::RecordCount {
                said: record_count,
                arrived: total_records,
            })
        } else if total_units != unit_count {
            Some(ConnectionError::ByteCount {
                said: unit_count,
                arrived: total_units,
            })
        } else {
            None
        };
        let transfer = inc.transfer.clone();
        if let Some(problem) = problem {
            self.refuse_incoming(inc, problem).await;
            return;
        }
        let Incoming {
            _active,
            sfid,
            writer,
            journal_id,
            key,
            overwrite,
            user_data,
            opener,
            ..
        } = inc;
        let partial_path = writer.partial_path().to_owned();
        let partial = match writer.finish().await {
            Ok(p) => p,
            Err(e) => {
                let problem = ConnectionError::CannotFinishWrite(e);
                self.refuse_parts(None, &partial_path, journal_id, &transfer, problem)
                    .await;
                return;
            }
        };
        let mut file_hash: Option<Vec<u8>> = None;
        let verdict = if let Some(opener) = opener {
            // The writer has stored everything, so the opener's stream has ended: its verdict
            // is at most the tail of the work away.
            let opened = opener.await.unwrap_or(Err(OpenerFailure::NoVerdict));
            Some(match opened {
                Ok(verdict) => verdict.map_err(ConnectionError::Services),
                Err(cause) => {
                    let failure = crate::security::unopened_file(&sfid);
                    self.error(format!(
                        "opening {} from {} failed: {cause}; answering EFNA {:02}",
                        transfer.virtual_file_name, sfid.originator, failure.reason.0
                    ))
                    .await;
                    Err(ConnectionError::Services(failure))
                }
            })
        } else if sfid.signed_eerp {
            // Only the hash of the transmitted file is wanted (for the signed EERP).
            let (services, sfid, path) =
                (self.services.clone(), sfid.clone(), partial_path.clone());
            Some(
                tokio::task::spawn_blocking(move || {
                    services.finish_incoming_with_hash(&sfid, &path)
                })
                .await
                .map_err(|e| ConnectionError::ServicesCrashed(e.to_string()))
                .and_then(|verdict| verdict.map_err(ConnectionError::Services)),
            )
        } else {
            None
        };
        match verdict {
            Some(Ok(hash)) => file_hash = hash,
            Some(Err(problem)) => {
                let failed = FailedReception {
                    partial,
                    partial_path,
                    journal_id,
                    transfer,
                    sfid,
                    key,
                    user_data,
                };
                self.services_failed(failed, problem).await;
                return;
            }
            None => {}
        }
        let store = StorePolicy {
            overwrite,
            ..self.shared.store.clone()
        };
        let placed = match partial.commit(&store).await {
            Ok(p) => p,
            Err(error) => {
                let text = error.to_string();
                let name = transfer.virtual_file_name.clone();
                let problem = ConnectionError::CannotPlace { name, error };
                self.error(problem.to_string()).await;
                let delete = self.shared.store.delete_on_error;
                self.discard_reception(None, &partial_path, journal_id, &transfer, delete)
                    .await;
                self.send_refusal(&problem);
                self.end_transfer_failed(&transfer, text).await;
                return;
            }
        };
        if let Some(hash) = &file_hash {
            // Kept for the signed EERP, which may go out in a later session.
            let (p, k, suite, h) = (
                self.partner_code(),
                key.clone(),
                sfid.cipher_suite.0,
                hash.clone(),
            );
            if let Err(e) = self
                .shared
                .journal
                .call(move |j| j.record_file_hash(JournalDirection::Received, &p, &k, suite, &h))
                .await
            {
                self.fail(e).await;
            }
        }
        let mut transfer = transfer;
        transfer.file_hash = file_hash.clone().unwrap_or_default();
        let p = placed.clone();
        if let Err(e) = self
            .shared
            .journal
            .call(move |j| j.complete_receive(journal_id, &p))
            .await
        {
            // The file is in place; without the journal entry a resend would not be seen as a
            // duplicate, but the data is safe, so confirm it and report the problem.
            self.fail(e).await;
        }
        if let Err(e) = self.session.confirm_file(false) {
            self.error(format!("cannot confirm file: {e}")).await;
        }
        self.log(
            LogLevel::Info,
            format!(
                "received {} ({} octets) into {}",
                transfer.virtual_file_name,
                total_units,
                placed.display()
            ),
        )
        .await;
        self.certificate_exchange(&sfid, &placed, info.as_ref())
            .await;
        self.received.push(placed);
        let result = TransferResult::Completed {
            records: total_records,
            units: total_units,
        };
        let timing = match &info {
            Some(info) => self.handler.end_transfer(info, &transfer, &result).await,
            None => EndResponseTiming::Now,
        };
        if timing == EndResponseTiming::Later {
            let (p, k) = (self.partner_code(), key.clone());
            if let Err(e) = self
                .shared
                .journal
                .call(move |j| j.defer_end_response(&p, &k))
                .await
            {
                self.fail(e).await;
            }
        } else if let Some(local_sfid) = self.local_sfid() {
            let response = wire::our_eerp(&key, local_sfid, user_data);
            self.queue.push_front(Work::EndResponse(response));
        }
    }

    async fn refuse_incoming(&mut self, mut inc: Incoming, problem: ConnectionError) {
        let _ = Self::settle(&mut inc).await;
        let path = inc.writer.partial_path().to_owned();
        let partial = inc.writer.finish().await.ok();
        self.refuse_parts(partial, &path, inc.journal_id, &inc.transfer, problem)
            .await;
    }

    /// EFNA for a received file: DeleteOnError, forget it in the journal, tell the handler.
    async fn refuse_parts(
        &mut self,
        partial: Option<PartialFile>,
        partial_path: &std::path::Path,
        jid: i64,
        transfer: &TransferInfo,
        problem: ConnectionError,
    ) {
        let transfer = transfer.clone();
        let delete = self.shared.store.delete_on_error;
        self.discard_reception(partial, partial_path, jid, &transfer, delete)
            .await;
        self.send_refusal(&problem);
        self.end_transfer_failed(&transfer, problem.to_string())
            .await;
    }

    /// Ends a reception that will not complete. With `delete` (DeleteOnError, or a break in a
    /// session without restart) its temporary file is removed and its journal row dropped. A
    /// file kept (DeleteOnError off) or one that cannot be removed keeps its row, with the
    /// restart point back at 0, so no partial file is ever left without its row: the next
    /// attempt at the same file replaces it, or the retention sweep ([`crate::partials`])
    /// removes it. Log lines name the file.
    async fn discard_reception(
        &self,
        partial: Option<PartialFile>,
        path: &std::path::Path,
        jid: i64,
        transfer: &TransferInfo,
        delete: bool,
    ) {
        let name = &transfer.virtual_file_name;
        let removed = if delete {
            let r = match partial {
                Some(p) => p.abandon(true).await,
                None => {
                    let p = path.to_owned();
                    tokio::task::spawn_blocking(move || crate::store::remove_partial(&p))
                        .await
                        .unwrap_or_else(|e| Err(StoreError::Task(e.to_string())))
                }
            };
            match r {
                Ok(()) => true,
                Err(e) => {
                    self.error(format!(
                        "cannot remove the partial file of {name}: {e}; it stays in the journal \
                         until the next attempt at the file or the partial-reception sweep"
                    ))
                    .await;
                    false
                }
            }
        } else {
            if let Some(p) = partial {
                let _ = p.abandon(false).await;
            }
            self.log(
                LogLevel::Info,
                format!(
                    "keeping the partial file {} of {name} (delete_on_error is off) until the \
                     next attempt at the file or the partial-reception sweep",
                    path.display()
                ),
            )
            .await;
            false
        };
        let journal = &self.shared.journal;
        let done = if removed {
            journal.call(move |j| j.drop_receive(jid)).await
        } else {
            journal
                .call(move |j| j.checkpoint_receive(jid, Checkpoint::default()))
                .await
        };
        if let Err(e) = done {
            self.fail(e).await;
        }
    }

    /// A received file the file services could not open. From its originator directly: EFNA
    /// (21 signature, 22 decryption, 23 decompression), so the sender knows at once. Relayed by
    /// an intermediary: the transmission itself succeeded, so EFPA to the intermediary, and a
    /// NERP (31, 33, 32) to the originator, the one who can do something about it (RFC 5024
    /// 4.3.7: the final node "unable to process the file" sends a NERP; an EFNA would only
    /// make the intermediary send the same file again).
    async fn services_failed(&mut self, failed: FailedReception, problem: ConnectionError) {
        let FailedReception {
            partial,
            partial_path,
            journal_id,
            transfer,
            sfid,
            key,
            user_data,
        } = failed;
        let nerp_reason = problem.nerp();
        // Relayed: SFIDORIG is not the partner that sent it (compared as identification codes,
        // RFC 5024 5.4).
        let local_sfid = self
            .params
            .as_ref()
            .filter(|p| p.partner_sfid != key.originator)
            .map(|p| p.local_sfid.clone());
        let (Some(nerp_reason), Some(local_sfid)) = (nerp_reason, local_sfid) else {
            self.refuse_parts(Some(partial), &partial_path, journal_id, &transfer, problem)
                .await;
            return;
        };
        let text = problem.to_string();
        if sfid.signed_eerp {
            // The NERP must be signed over the hash of what was transmitted.
            let (s, path) = (sfid.clone(), partial_path.clone());
            let hash =
                tokio::task::spawn_blocking(move || crate::transport::transmitted_hash(&s, &path))
                    .await;
            if let Ok(Ok(Some(h))) = hash {
                let (p, k, suite) = (self.partner_code(), key.clone(), sfid.cipher_suite.0);
                if let Err(e) = self
                    .shared
                    .journal
                    .call(move |j| {
                        j.record_file_hash(JournalDirection::Received, &p, &k, suite, &h)
                    })
                    .await
                {
                    self.fail(e).await;
                }
            }
        }
        let delete = self.shared.store.delete_on_error;
        self.discard_reception(Some(partial), &partial_path, journal_id, &transfer, delete)
            .await;
        if let Err(e) = self.session.confirm_file(false) {
            self.error(format!("cannot confirm file: {e}")).await;
        }
        self.log(
            LogLevel::Info,
            format!(
                "{} from {} (relayed by {}) cannot be opened: {text}; answering NERP {:02} to its originator",
                transfer.virtual_file_name,
                sfid.originator,
                self.partner_code(),
                nerp_reason.0
            ),
        )
        .await;
        self.end_transfer_failed(&transfer, text.clone()).await;
        let response = wire::our_nerp(&key, &local_sfid, user_data, nerp_reason, text);
        self.queue.push_front(Work::EndResponse(response));
    }

    async fn end_transfer_failed(&self, transfer: &TransferInfo, reason: String) {
        if let Some(info) = &self.info {
            self.handler
                .end_transfer(info, transfer, &TransferResult::Failed { reason })
                .await;
        }
    }

    /// The connection broke or the session ended during a reception: keep the durable part for
    /// a restart (checkpoint what arrived), never place it under the final name.
    pub(in crate::connection) async fn finish_incoming_on_break(&mut self) {
        if self.incoming.is_none() {
            return;
        }
        let restart = self.negotiated.as_ref().is_some_and(|n| n.restart);
        if restart {
            // What arrived before the break is valid up to the last complete record or block.
            self.checkpoint(true).await;
        }
        if let Some(inc) = self.incoming.take() {
            let transfer = inc.transfer.clone();
            let jid = inc.journal_id;
            let path = inc.writer.partial_path().to_owned();
            let partial = inc.writer.finish().await;
            if restart {
                // Its journal row holds the last durable restart point.
                if let Ok(p) = partial {
                    let _ = p.abandon(false).await;
                }
                self.log(
                    LogLevel::Info,
                    format!(
                        "keeping {} of {} for a restart",
                        path.display(),
                        transfer.virtual_file_name
                    ),
                )
                .await;
            } else {
                self.discard_reception(partial.ok(), &path, jid, &transfer, true)
                    .await;
            }
            self.end_transfer_failed(&transfer, "the session ended during the transfer".into())
                .await;
        }
    }
}
