//! Sending files: the offer (SFID, with the identity of an earlier attempt so a resend
//! converges), the file services' processed form, the data while credit allows (DATA, then
//! EFID), and the partner's answers (SFPA/SFNA, EFPA/EFNA) recorded in the journal. End
//! responses for sent files are in `end_response`.

use oftp_proto::codec::{FileFormat, Sfid};
use oftp_proto::data::size_in_kib;

use crate::connection::error::ConnectionError;
use crate::connection::report::FileOutcome;
use crate::connection::restart;
use crate::connection::{Connection, FLUSH_AT, Origin, TransportGone};
use crate::handle::OutgoingFile;
use crate::handler::{Direction, ErrorEvent, Handler, LogLevel, TransferInfo, TransferResult};
use crate::journal::{Direction as JournalDirection, FileKey, LocalFileId, SendState};
use crate::source::{Chunk, FileSource, OutgoingSource, RecordFileError, check_records};
use crate::stamp::{FileStamp, FileStampExt};
use crate::stream::SealedSource;
use crate::transport::{FileServices, OutgoingPlan, Transport};

/// How the local file of an outgoing file is read: a file forwarded with file services is the
/// processed form, which travels as U whatever SFIDFMT says (RFC 5024 5.3.3); every other
/// file as its format says.
fn local_read_format(file: &OutgoingFile) -> FileFormat {
    match file.forwarded {
        Some(f) if f.has_file_services() => FileFormat::Unstructured,
        _ => file.format,
    }
}

/// A file being sent.
pub(super) struct Outgoing {
    pub(super) origin: Origin,
    /// Offered under the identity of an earlier attempt (see `start_sending`).
    pub(super) resumed: bool,
    pub(super) file: OutgoingFile,
    /// The processed form, being produced, until the partner accepts the file; `None` sends
    /// the file itself.
    sealed: Option<SealedSource>,
    /// SFIDCIPH as offered (the algorithm of the file hash).
    cipher_suite: u8,
    sent_id: i64,
    pub(super) transfer: TransferInfo,
    pub(super) source: Option<OutgoingSource>,
    pub(super) finished: bool,
    reported_units: u64,
}

impl Outgoing {
    /// The identity it is offered under.
    pub(super) fn key(&self) -> FileKey {
        let t = &self.transfer;
        FileKey::new(t.originator.clone(), &t.virtual_file_name, t.stamp)
    }
}

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    /// Feeds file data while credit allows; `Ok(true)` if something was written.
    pub(super) async fn feed_data(&mut self) -> Result<bool, TransportGone> {
        let Some(out) = &mut self.outgoing else {
            return Ok(false);
        };
        if out.finished || out.source.is_none() {
            return Ok(false);
        }
        if self.handle.take_interrupt() {
            self.send_refusal(&ConnectionError::Interrupted);
            return Ok(true);
        }
        if self.shutdown.forced.is_cancelled() {
            return Ok(false);
        }
        let mut wrote = false;
        // Chunks that fill one DATA buffer each (uncompressed), so every write_data call
        // completes a frame and nothing is carried over between calls.
        let chunk = self.negotiated.as_ref().map_or(4096, |n| {
            oftp_proto::data::uncompressed_capacity(n.buffer_size as usize)
        });
        // Octets queued since the last write, and fed in this turn of the loop.
        let (mut queued, mut turn) = (0usize, 0usize);
        // Some chunks per turn of the loop (at most 1 MiB), then look at the socket and
        // signals again.
        for _ in 0..64 {
            if !self.session.can_accept_data() {
                break;
            }
            let Some(out) = &mut self.outgoing else {
                break;
            };
            let Some(src) = out.source.as_mut() else {
                break;
            };
            match src.next_chunk(chunk) {
                Ok(Chunk::Data(bytes, eor)) => {
                    queued += bytes.len();
                    turn += bytes.len();
                    self.recorder.data(JournalDirection::Sent, bytes.len());
                    if let Err(error) = self.session.write_data(bytes, eor) {
                        let path = out.file.path.clone();
                        let problem = ConnectionError::CannotSend { path, error };
                        self.send_refusal(&problem);
                        self.fail(problem).await;
                        return Ok(true);
                    }
                }
                Ok(Chunk::Pending) => break,
                Ok(Chunk::End) => {
                    let (records, units) = (src.records(), src.units());
                    let sealed_hash = src.sealed_mut().and_then(SealedSource::take_hash);
                    out.finished = true;
                    out.source = None;
                    if let Some(hash) = sealed_hash {
                        // What the partner's signed EERP must contain; it may come in a later
                        // session. Recorded before EFID, so before any EERP can arrive.
                        out.transfer.file_hash = hash.clone();
                        let t = &out.transfer;
                        let k = FileKey::new(t.originator.clone(), &t.virtual_file_name, t.stamp);
                        let suite = out.cipher_suite;
                        if let Err(e) = self
                            .shared
                            .journal
                            .call(move |j| {
                                j.record_file_hash(JournalDirection::Sent, "", &k, suite, &hash)
                            })
                            .await
                        {
                            self.fail(e).await;
                        }
                    }
                    if let Err(e) = self.session.finish_file(records, units) {
                        self.error(format!("cannot end file: {e}")).await;
                    }
                    wrote = true;
                    break;
                }
                Err(error) => {
                    let path = out.file.path.clone();
                    let problem = ConnectionError::CannotRead { path, error };
                    self.send_refusal(&problem);
                    self.fail(problem).await;
                    return Ok(true);
                }
            }
            wrote = true;
            // Small buffers are gathered into writes of about 64 KiB (one system call for
            // many frames); a large buffer goes out alone, without a copy.
            if queued >= FLUSH_AT {
                self.flush().await?;
                queued = 0;
            }
            if turn >= 1024 * 1024 {
                break;
            }
        }
        self.flush().await?;
        if let (Some(out), Some(info)) = (&mut self.outgoing, &self.info)
            && let Some(src) = &out.source
            && src.units() - out.reported_units >= 256 * 1024
        {
            out.reported_units = src.units();
            self.handler
                .transfer(info, &out.transfer, src.units())
                .await;
        }
        Ok(wrote)
    }

    pub(super) async fn start_sending(&mut self, mut file: OutgoingFile, origin: Origin) {
        let fail = |reason: String| FileOutcome::NotSent { reason };
        let Some(params) = &self.params else {
            self.record_outcome(file, origin, fail("no session".into()), None)
                .await;
            return;
        };
        let meta = match std::fs::metadata(&file.path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                let r = format!("{} is not a regular file", file.path.display());
                self.not_sent(file, origin, r).await;
                return;
            }
            Err(e) => {
                let r = format!("cannot read {}: {e}", file.path.display());
                self.not_sent(file, origin, r).await;
                return;
            }
        };
        if file.virtual_file_name.trim().is_empty() {
            let r = format!("{} has no usable virtual file name", file.path.display());
            self.record_outcome(file, origin, fail(r), None).await;
            return;
        }
        let originator = file
            .originator
            .clone()
            .unwrap_or_else(|| params.local_sfid.clone());
        let destination = file
            .destination
            .clone()
            .unwrap_or_else(|| params.partner_sfid.clone());
        let canonical = std::fs::canonicalize(&file.path).unwrap_or_else(|_| file.path.clone());
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let local = LocalFileId {
            partner: params.partner_name.clone(),
            path: canonical,
            size: meta.len(),
            mtime_ns,
        };
        // F/V: the local file must hold whole records in the partner's mapping. Checked before
        // anything is offered or journalled: a bad file is refused here with the record and the
        // problem, and the session goes on with the next file.
        let read_as = local_read_format(&file);
        let records = if read_as.is_record_oriented() {
            let (path, lrecl, mapping) = (
                file.path.clone(),
                file.max_record_len,
                params.record_mapping,
            );
            let checked =
                tokio::task::spawn_blocking(move || check_records(&path, read_as, lrecl, mapping))
                    .await
                    .unwrap_or_else(|e| {
                        Err(RecordFileError::Io {
                            path: file.path.clone(),
                            error: std::io::Error::other(e.to_string()),
                        })
                    });
            match checked {
                Ok(n) => n,
                Err(e) => {
                    let r = format!("not offered: {e}");
                    self.not_sent(file, origin, r).await;
                    return;
                }
            }
        } else {
            0
        };
        // The newest earlier attempt to send this very file decides, so that sending it again
        // converges: one still sending is resumed under its identity (the partner restarts it
        // or, if it stored it already, answers SFNA 13); one the partner stored (EFPA) is not
        // sent again, its EERP may come in this or any later session (RFC 5024 section
        // 4.3.6); one delivered is reported as such. A refused or NERPed one is sent anew.
        // Not an OFTP 1.2/1.3 stamp (counter 0) once the level carries a counter: the partner
        // would refuse it.
        let extended = self
            .negotiated
            .as_ref()
            .is_some_and(|n| n.level.has_extended_stamp());
        let l2 = local.clone();
        let previous = match self.shared.journal.call(move |j| j.latest_send(&l2)).await {
            Ok(p) => p,
            Err(e) => {
                // Without it the file would go out under a new identity: a second copy.
                let r = ConnectionError::from(e).to_string();
                self.not_sent(file, origin, r).await;
                return;
            }
        };
        let previous = previous.filter(|p| {
            p.key.dsn == file.virtual_file_name.trim_end()
                && p.key.originator == originator
                && file.stamp.is_none_or(|s| s == p.key.stamp)
        });
        if let Some(p) = &previous
            && matches!(
                p.state,
                SendState::AwaitingEndResponse | SendState::Delivered
            )
        {
            file.stamp = Some(p.key.stamp);
            let (outcome, how) = if p.state == SendState::Delivered {
                (FileOutcome::Delivered, "its EERP arrived earlier")
            } else {
                (
                    FileOutcome::AwaitingEndResponse,
                    "waiting for its EERP, which may come in this or a later session",
                )
            };
            self.log(
                LogLevel::Info,
                format!(
                    "not sending {} again: the partner stored it as {} {}; {how}",
                    file.path.display(),
                    p.key.dsn,
                    p.key.stamp.digits()
                ),
            )
            .await;
            let key = Some(p.key.clone());
            self.record_outcome(file, origin, outcome, key).await;
            return;
        }
        let previous = previous
            .filter(|p| p.state == SendState::Sending && (p.key.stamp.counter != 0 || !extended));
        let resumed = previous.is_some();
        let (sent_id, stamp) = match previous {
            Some(p) => (p.id, p.key.stamp),
            None => {
                let mut stamp = file.stamp.unwrap_or_else(FileStamp::now);
                if !extended {
                    // OFTP 1.2/1.3 carry no counter: keep the identity what the partner will see.
                    stamp.counter = 0;
                }
                let key = FileKey::new(originator.clone(), &file.virtual_file_name, stamp);
                let dest = destination.to_string();
                match self
                    .shared
                    .journal
                    .call(move |j| j.begin_send(&local, &key, &dest))
                    .await
                {
                    Ok(id) => (id, stamp),
                    Err(e) => {
                        let r = ConnectionError::from(e).to_string();
                        self.not_sent(file, origin, r).await;
                        return;
                    }
                }
            }
        };
        file.stamp = Some(stamp);
        let restart_ok = self.negotiated.as_ref().is_some_and(|n| n.restart);
        let restart_position =
            restart::offered_position(resumed, restart_ok, read_as, meta.len(), records);
        let mut file_hash: Option<Vec<u8>> = None;
        let sfid = Sfid {
            dsn: file.virtual_file_name.clone(),
            date_time: stamp,
            user_data: file.user_data.clone(),
            destination: destination.to_string(),
            originator: originator.to_string(),
            format: file.format,
            max_record_len: file.max_record_len,
            file_size: size_in_kib(meta.len()),
            original_file_size: size_in_kib(meta.len()),
            restart_position,
            security: oftp_proto::codec::SecurityLevel::NONE,
            cipher_suite: oftp_proto::codec::CipherSuite::NONE,
            compression: oftp_proto::codec::FileCompression::NONE,
            envelope: oftp_proto::codec::FileEnvelope::NONE,
            signed_eerp: false,
            description: file.description.clone(),
        };
        // Deciding may hash the whole file (a signed EERP without other services): off the
        // async threads. Processing (sign, compress, encrypt) then runs while the file is sent.
        let (services, source) = (self.services.clone(), file.path.clone());
        let forwarded = file.forwarded;
        let planned = tokio::task::spawn_blocking(move || {
            let mut sfid = sfid;
            let r = match forwarded {
                // Neither from nor for us: passed on unchanged, with the fields it came with.
                Some(fields) => {
                    fields.apply(&mut sfid);
                    Ok(OutgoingPlan::AsIs { file_hash: None })
                }
                None => services.stream_outgoing(&mut sfid, &source),
            };
            (sfid, r)
        })
        .await;
        let (mut sfid, planned) = match planned {
            Ok(x) => x,
            Err(e) => {
                let r = format!("cannot prepare {}: {e}", file.path.display());
                self.not_sent(file, origin, r).await;
                return;
            }
        };
        let chunk = self.negotiated.as_ref().map_or(4096, |n| {
            oftp_proto::data::uncompressed_capacity(n.buffer_size as usize)
        });
        let sealed = match planned.and_then(|plan| match plan {
            OutgoingPlan::AsIs { file_hash: h } => {
                file_hash = h;
                Ok(None)
            }
            OutgoingPlan::Processed(seal) => SealedSource::spawn(seal, chunk).map(Some),
        }) {
            Ok(sealed) => sealed,
            Err(e) => {
                let r = format!("cannot prepare {}: {e}", file.path.display());
                self.not_sent(file, origin, r).await;
                return;
            }
        };
        if sealed.is_some() {
            // A processed form differs at every attempt (fresh keys): from position 0.
            sfid.restart_position = 0;
        }
        if let Some(hash) = &file_hash {
            // What the partner's signed EERP must contain; it may come in a later session.
            let k = FileKey::new(originator.clone(), &file.virtual_file_name, stamp);
            let (suite, h) = (sfid.cipher_suite.0, hash.clone());
            if let Err(e) = self
                .shared
                .journal
                .call(move |j| j.record_file_hash(JournalDirection::Sent, "", &k, suite, &h))
                .await
            {
                self.fail(e).await;
            }
        }
        let cipher_suite = sfid.cipher_suite.0;
        if let Err(e) = self.session.send_file(sfid) {
            let r = format!("cannot offer {}: {e}", file.virtual_file_name);
            self.not_sent(file, origin, r).await;
            return;
        }
        let transfer = TransferInfo {
            direction: Direction::Outgoing,
            local_file: file.path.clone(),
            virtual_file_name: file.virtual_file_name.clone(),
            stamp,
            originator,
            destination,
            restart_position: 0,
            file_hash: file_hash.unwrap_or_default(),
        };
        let row = match origin {
            Origin::Queue(id) => Some(id),
            _ => file.queue_row,
        };
        self.recorder.file_started(JournalDirection::Sent, row);
        self.outgoing = Some(Outgoing {
            origin,
            resumed,
            file,
            sealed,
            cipher_suite,
            sent_id,
            transfer,
            source: None,
            finished: false,
            reported_units: 0,
        });
    }

    /// Where the outcome of a file goes: the initiator's report, or the outbound queue (a
    /// file the partner stored at once, a failure at the end of the session); `key` is the
    /// identity it was offered under, if it got that far.
    /// `file` is not sent for `reason`: an error event, and the outcome recorded.
    async fn not_sent(&mut self, file: OutgoingFile, origin: Origin, reason: String) {
        self.error(reason.clone()).await;
        self.record_outcome(file, origin, FileOutcome::NotSent { reason }, None)
            .await;
    }

    pub(super) async fn record_outcome(
        &mut self,
        file: OutgoingFile,
        origin: Origin,
        outcome: FileOutcome,
        key: Option<FileKey>,
    ) {
        match origin {
            Origin::Job => self.outcomes.push((file, outcome)),
            Origin::Queue(id) => self.queued_outcome(id, outcome, key).await,
            Origin::Request | Origin::Outbox => {}
        }
    }

    pub(super) async fn on_file_accepted(&mut self, restart_position: u64) {
        let mapping = self.record_mapping();
        let Some(out) = &mut self.outgoing else {
            return;
        };
        out.transfer.restart_position = restart_position;
        let opened = if let Some(sealed) = out.sealed.take() {
            // Asked for from 0, so the answer is 0 too.
            Ok(OutgoingSource::Sealed(sealed))
        } else {
            // Opening may read up to the restart position (records): on the blocking pool.
            let (path, format, lrecl) = (
                out.file.path.clone(),
                local_read_format(&out.file),
                out.file.max_record_len,
            );
            tokio::task::spawn_blocking(move || {
                FileSource::open(&path, format, lrecl, mapping, restart_position)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            .map(OutgoingSource::File)
        };
        let shown = out.file.path.clone();
        let Some(out) = &mut self.outgoing else {
            return;
        };
        match opened {
            Ok(src) => out.source = Some(src),
            Err(error) => {
                let problem = ConnectionError::CannotRead { path: shown, error };
                self.send_refusal(&problem);
                self.fail(problem).await;
                return;
            }
        }
        let transfer = out.transfer.clone();
        self.log(
            LogLevel::Info,
            format!(
                "sending {} as {}{}",
                transfer.local_file.display(),
                transfer.virtual_file_name,
                if restart_position > 0 {
                    format!(" (restart at {restart_position})")
                } else {
                    String::new()
                }
            ),
        )
        .await;
        if let Some(info) = &self.info {
            self.handler.start_transfer(info, &transfer).await;
        }
    }

    pub(super) async fn outgoing_done(
        &mut self,
        outcome: FileOutcome,
        problem: Option<String>,
        settled: bool,
    ) {
        let Some(out) = self.outgoing.take() else {
            return;
        };
        let state = match (&outcome, settled) {
            (FileOutcome::AwaitingEndResponse, _) => Some(SendState::AwaitingEndResponse),
            (_, true) => Some(SendState::Failed),
            _ => None,
        };
        if let Some(state) = state {
            let id = out.sent_id;
            if let Err(e) = self
                .shared
                .journal
                .call(move |j| j.set_send_state(id, state))
                .await
            {
                self.fail(e).await;
            }
        }
        if let Some(p) = &problem {
            // The partner's decision, not a local fault: an Error event for the application,
            // an info line in the log.
            let description = format!("{}: {p}", out.transfer.virtual_file_name);
            tracing::info!(conn = self.conn.id, "{description}");
            self.handler
                .error(&ErrorEvent {
                    connection: self.conn.id,
                    description,
                })
                .await;
        }
        if out.origin == Origin::Outbox && outcome == FileOutcome::AwaitingEndResponse {
            // Sent: move it out of the outbox so the next session does not send it again.
            if let Some(dir) = out.file.path.parent() {
                let sent = dir.join("sent");
                let _ = std::fs::create_dir_all(&sent);
                if let Some(name) = out.file.path.file_name() {
                    let _ = std::fs::rename(&out.file.path, sent.join(name));
                }
            }
        }
        let result = match &outcome {
            FileOutcome::AwaitingEndResponse => TransferResult::Completed {
                records: out.source.as_ref().map_or(0, OutgoingSource::records),
                units: std::fs::metadata(&out.file.path)
                    .map(|m| m.len())
                    .unwrap_or(0),
            },
            _ => TransferResult::Failed {
                reason: problem.unwrap_or_default(),
            },
        };
        if let Some(info) = &self.info {
            self.handler
                .end_transfer(info, &out.transfer, &result)
                .await;
        }
        let key = Some(out.key());
        self.record_outcome(out.file, out.origin, outcome, key)
            .await;
    }
}

/// Waits until the processed form of the outgoing file has more to send (see
/// [`SealedSource::ready`]); never returns when there is none.
pub(super) async fn sealed_ready(outgoing: &mut Option<Outgoing>) {
    match outgoing
        .as_mut()
        .and_then(|o| o.source.as_mut())
        .and_then(OutgoingSource::sealed_mut)
    {
        Some(sealed) => sealed.ready().await,
        None => std::future::pending().await,
    }
}
