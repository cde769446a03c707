//! Received DATA into the temporary file (records in the partner's record mapping) and the
//! checkpoints that make it durable and record the restart point (fsync, then journal). Does
//! not answer the partner: the restart point is only used at the next SFPA.

use std::time::{Duration, Instant};

use oftp_proto::codec::FileFormat;

use crate::connection::Connection;
use crate::connection::error::ConnectionError;
use crate::connection::receive::Incoming;
use crate::connection::restart;
use crate::handler::Handler;
use crate::transport::{FileServices, Transport};

/// Default distance between receive checkpoints (fsync + journal). Each checkpoint costs an
/// fsync of everything written since the last one; a restart loses at most this much.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 64 * 1024 * 1024;

/// Checkpoints are also spaced in time: at least the time the checkpoint interval takes at
/// this rate (2 s for the default 64 MiB), so a fast line does not fsync many times a second
/// while a slow line still checkpoints every interval. Small configured intervals get
/// proportionally short spacing.
const CHECKPOINT_RATE: f64 = 32.0 * 1024.0 * 1024.0;

/// The least time between two checkpoints for `interval` bytes (see [`CHECKPOINT_RATE`]).
fn checkpoint_spacing(interval: u64) -> Duration {
    Duration::from_secs_f64(interval as f64 / CHECKPOINT_RATE)
}

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    pub(in crate::connection) async fn on_data(&mut self, bytes: Vec<u8>, end_of_record: bool) {
        let Some(inc) = &mut self.incoming else {
            return;
        };
        inc.units += bytes.len() as u64;
        let record_end = inc.format.is_record_oriented() && end_of_record;
        let result = if inc.format.is_record_oriented() {
            Self::store_record_piece(inc, bytes, end_of_record).await
        } else {
            inc.writer.write(bytes).await
        };
        if record_end {
            inc.records += 1;
            inc.record_end_offset = inc.writer.len();
            inc.record_end_units = inc.units;
        }
        if let Err(e) = result {
            let problem = ConnectionError::CannotStoreData(e);
            self.error(problem.to_string()).await;
            self.send_refusal(&problem);
            return;
        }
        let at_boundary = !inc.format.is_record_oriented() || end_of_record;
        let interval = self.shared.checkpoint_interval;
        if at_boundary
            && inc.units - inc.checkpointed_units >= interval
            && inc.checkpointed_at.elapsed() >= checkpoint_spacing(interval)
        {
            self.checkpoint(false).await;
        }
        if let (Some(inc), Some(info)) = (&mut self.incoming, &self.info)
            && inc.units - inc.reported_units >= 256 * 1024
        {
            inc.reported_units = inc.units;
            let total = inc.base.units + inc.units;
            self.handler.transfer(info, &inc.transfer, total).await;
        }
    }

    /// Stores a piece of an F/V record in the partner's [`RecordMapping`] (see
    /// `crate::source` for the reading side): raw F as it is, raw V after a 2-octet length,
    /// lines followed by the line end. The line end and the length are written on their own
    /// (gathered by the writer), not appended to the record, which could reallocate and copy
    /// it. A record the mapping cannot hold is noted for the end of the file.
    async fn store_record_piece(
        inc: &mut Incoming,
        bytes: Vec<u8>,
        end_of_record: bool,
    ) -> Result<(), crate::store::StoreError> {
        let record = inc.base.records + inc.records + 1;
        match (inc.mapping.line_end(), inc.format) {
            (None, FileFormat::Fixed) => inc.writer.write(bytes).await,
            (None, _) => {
                if !end_of_record {
                    inc.record.extend_from_slice(&bytes);
                    return Ok(());
                }
                let whole = inc.record.len() + bytes.len();
                let Ok(len) = u16::try_from(whole) else {
                    inc.record.clear();
                    inc.unstorable.get_or_insert_with(|| {
                        ConnectionError::RecordTooLong(format!(
                            "record {record} has {whole} octets; the receiver stores V \
                             records with a 2-octet length (at most 65535)"
                        ))
                    });
                    return Ok(());
                };
                inc.writer.write_slice(&len.to_be_bytes()).await?;
                if !inc.record.is_empty() {
                    inc.writer.write_slice(&inc.record).await?;
                    inc.record.clear();
                }
                inc.writer.write(bytes).await
            }
            (Some(line_end), _) => {
                if bytes.contains(&b'\n') {
                    inc.unstorable.get_or_insert_with(|| {
                        ConnectionError::RecordNotStorable(format!(
                            "record {record} contains a line feed; the receiver stores \
                             records as lines"
                        ))
                    });
                }
                inc.writer.write(bytes).await?;
                if end_of_record {
                    inc.writer.write_slice(line_end).await?;
                }
                Ok(())
            }
        }
    }

    /// Makes what was received durable and records the restart point. The fsync and the
    /// journal update run on the blocking pool while reception goes on (a slow disk must not
    /// stall the partner); with `wait`, this returns only when they are done. At most one runs
    /// at a time; a checkpoint due while one is running is skipped (the next one covers it).
    pub(super) async fn checkpoint(&mut self, wait: bool) {
        let Some(inc) = &mut self.incoming else {
            return;
        };
        if !wait && inc.inflight.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if inc.unstorable.is_some() {
            // Not past a record that cannot be stored: a restart must see it again.
            return;
        }
        if let Some(problem) = Self::settle(inc).await {
            self.fail(problem).await;
        }
        let Some(inc) = &mut self.incoming else {
            return;
        };
        let job = match inc.writer.sync_job().await {
            Ok(j) => j,
            Err(e) => {
                self.fail(ConnectionError::CannotSync(e)).await;
                return;
            }
        };
        inc.checkpointed_units = inc.units;
        inc.checkpointed_at = Instant::now();
        // Only complete records (F/V) or complete 1 KiB blocks (U/T) count: the rest is cut
        // off when the transfer restarts.
        let cp = restart::durable_point(
            inc.format,
            restart::Received {
                base: inc.base,
                records: inc.records,
                units: inc.units,
                record_end_offset: inc.record_end_offset,
                record_end_units: inc.record_end_units,
            },
        );
        let id = inc.journal_id;
        let journal = self.shared.journal.clone();
        // The journal is updated only after the fsync: it never claims more than is on disk.
        inc.inflight = Some(tokio::task::spawn_blocking(move || {
            job.run().map_err(ConnectionError::CannotSync)?;
            Ok(journal.checkpoint_receive(id, cp)?)
        }));
        if wait && let Some(problem) = Self::settle(inc).await {
            self.fail(problem).await;
        }
    }

    /// Waits for the running checkpoint, if any; returns its problem.
    pub(super) async fn settle(inc: &mut Incoming) -> Option<ConnectionError> {
        let h = inc.inflight.take()?;
        match h.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(ConnectionError::Task {
                task: "checkpoint",
                cause: e.to_string(),
            }),
        }
    }
}
