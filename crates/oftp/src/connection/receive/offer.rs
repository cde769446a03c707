//! A file offered to us (SFID): the journal's knowledge of it, the default and the handler's
//! decision, free space, resuming a durable part or creating the temporary file, the writer
//! thread and the opener of a file with file services; answered with SFPA or SFNA. Does not
//! write data (see `data`) nor end the file (see `end`).

use std::time::Instant;

use oftp_proto::codec::Sfid;

use crate::connection::error::{ConnectionError, CreateError};
use crate::connection::receive::{ActiveGuard, Incoming, OpenerResult, panic_message};
use crate::connection::restart;
use crate::connection::wire;
use crate::connection::{Connection, Work};
use crate::handler::{Direction, FileDecision, FileOffer, Handler, LogLevel, TransferInfo};
use crate::identity::OdetteId;
use crate::journal::{Checkpoint, FileKey, ReceiveState};
use crate::policy::{self, FileRequest};
use crate::store::{BackgroundWriter, PartialFile};
use crate::transport::{FileServices, Transport};

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    pub(in crate::connection) async fn on_file_offered(&mut self, sfid: Sfid) {
        let (Some(params), Some(info)) = (&self.params, self.info.clone()) else {
            self.send_refusal(&ConnectionError::NoSession);
            return;
        };
        // SFIDORIG and SFIDDEST become identification codes here, once (RFC 5024 5.3.3, 5.4):
        // a blank one is refused (SFNA 03, 02).
        let codes = OdetteId::new(&sfid.originator)
            .map_err(|error| ConnectionError::InvalidOrigin {
                code: sfid.originator.clone(),
                error,
            })
            .and_then(|originator| {
                OdetteId::new(&sfid.destination)
                    .map(|destination| (originator, destination))
                    .map_err(|error| ConnectionError::InvalidDestination {
                        code: sfid.destination.clone(),
                        error,
                    })
            });
        let (originator, destination) = match codes {
            Ok(codes) => codes,
            Err(refused) => {
                self.send_refusal(&refused);
                return;
            }
        };
        let stamp = sfid.date_time;
        let key = FileKey::new(originator.clone(), &sfid.dsn, stamp);
        // The journal entry is the one of this partner: another partner's interrupted or
        // completed file with the same identity is neither resumed nor a duplicate here.
        let partner = info.peer_ssid.to_string();
        let (p, k) = (partner.clone(), key.clone());
        let entry = match self.shared.journal.call(move |j| j.received(&p, &k)).await {
            Ok(e) => e,
            Err(e) => {
                self.refuse_offer_for_now(e.into()).await;
                return;
            }
        };
        // A crash between placing the file and the journal update leaves an entry still
        // "receiving" whose final file exists and whose temporary name is either gone or a
        // second name of that same file (crash between hard link and unlink): the file is
        // complete, so record it and let the sender hear "duplicate" plus the EERP.
        let placed = match &entry {
            Some(e) if e.state == ReceiveState::Receiving => {
                let (pp, fp) = (e.partial_path.clone(), e.final_path.clone());
                tokio::task::spawn_blocking(move || crashed_after_placing(&pp, &fp))
                    .await
                    .unwrap_or(false)
            }
            _ => false,
        };
        let entry = match entry {
            Some(mut e) if placed => {
                let (id, fp) = (e.id, e.final_path.clone());
                if let Err(err) = self
                    .shared
                    .journal
                    .call(move |j| j.complete_receive(id, &fp))
                    .await
                {
                    self.fail(err).await;
                }
                e.state = ReceiveState::Complete;
                let eerp = wire::our_eerp(&e.key, &params.local_sfid, e.user_data.clone());
                self.queue.push_back(Work::EndResponse(eerp));
                Some(e)
            }
            other => other,
        };
        let Some(params) = &self.params else {
            return;
        };
        // The default decision looks at the inbox (does the name exist?) and at the free space
        // there: blocking pool.
        let (local_sfid, inbox, name_format, store, known, offered, orig, dest) = (
            params.local_sfid.clone(),
            params.inbox.clone(),
            self.shared.name_format.clone(),
            self.shared.store.clone(),
            entry.clone(),
            sfid.clone(),
            originator.clone(),
            destination.clone(),
        );
        let (probe, reserve, conn) = (
            self.shared.free_space.clone(),
            self.shared.free_space_reserve,
            self.conn.id,
        );
        // What an interrupted reception of this file already holds on disk.
        let stored = entry
            .as_ref()
            .filter(|e| e.state == ReceiveState::Receiving)
            .map_or(0, |e| e.checkpoint.file_offset);
        let needed = crate::space::still_needed(sfid.file_size, stored);
        let decided = tokio::task::spawn_blocking(move || {
            let req = FileRequest {
                dsn: &offered.dsn,
                stamp,
                originator: &orig,
                destination: &dest,
                user_data: &offered.user_data,
            };
            let decision = policy::file_decision(
                &local_sfid,
                &inbox,
                &name_format,
                &store,
                known.as_ref(),
                &req,
            );
            // A file that cannot fit is refused now, not after its whole transfer: SFNA 12 with
            // retry, the "lack of storage space" of RFC 5024 5.3.5 (SFNARRTR).
            if let FileDecision::Accept { target, .. } = &decision
                && let Err(no_room) = crate::space::check(&*probe, target, needed, reserve)
            {
                tracing::info!(conn, target = %target.display(), "{no_room}");
                let kib = needed.div_ceil(1024);
                return ConnectionError::NoRoom { kib }.decision();
            }
            decision
        })
        .await;
        let mut default = decided.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "file decision task failed");
            ConnectionError::DecisionFailed(e.to_string()).decision()
        });
        // Checking certificates may fetch a CRL from a distribution point: off the async
        // threads.
        let (services, offered) = (self.services.clone(), sfid.clone());
        let checked = tokio::task::spawn_blocking(move || services.check_incoming(&offered))
            .await
            .map_err(|e| ConnectionError::ServicesTask(e.to_string()))
            .and_then(|checked| checked.map_err(ConnectionError::from));
        if let Err(refused) = checked {
            default = refused.decision();
        }
        let duplicate = matches!(&entry, Some(e) if e.state == ReceiveState::Complete);
        let offer = FileOffer::new(
            sfid.dsn.clone(),
            stamp,
            originator,
            destination,
            sfid.user_data.clone(),
            sfid.format,
            sfid.max_record_len,
            sfid.file_size,
            sfid.restart_position,
            sfid.description.clone(),
            crate::handle::FileServiceFields::of(&sfid),
            duplicate,
            default,
        );
        let decision = self.handler.accept_file(&info, &offer).await;
        let (target, overwrite) = match decision {
            FileDecision::Reject {
                reason,
                retry,
                text,
            } => {
                let _ = self.session.reject_file(reason, retry, &text);
                return;
            }
            FileDecision::Accept { target, overwrite } => (target, overwrite),
        };
        let Some(active) = ActiveGuard::claim(&self.shared.active, &(partner.clone(), key.clone()))
        else {
            self.send_refusal(&ConnectionError::BeingReceived);
            return;
        };
        let format = sfid.transmitted_format();
        let restart_ok = self.negotiated.as_ref().is_some_and(|n| n.restart);
        let asked = restart::requested(restart_ok, sfid.restart_position);

        // An earlier reception of this file: its partial file is taken over or removed below,
        // never left without its journal row.
        let old_partial = entry
            .as_ref()
            .filter(|e| e.state == ReceiveState::Receiving)
            .map(|e| e.partial_path.clone());
        // Resume a durable part when the journal has one for this very file and target.
        let resumable =
            entry.filter(|e| e.state == ReceiveState::Receiving && e.final_path == target);
        let resume_from = resumable
            .as_ref()
            .and_then(|e| restart::resume_point(e.checkpoint, asked, format).map(|b| (e.id, b)));
        // Opening, truncating, removing and creating files touches the disk (maybe a network
        // file system): on the blocking pool, not on the workers that serve other sessions.
        let tgt = target.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let mut resume_error = None;
            if let (Some(pp), Some((id, base))) = (&old_partial, resume_from)
                && pp.exists()
            {
                match PartialFile::resume(pp, &tgt, base.file_offset) {
                    Ok(p) => return (Ok(Opened::Resumed(p, id, base)), None),
                    Err(e) => resume_error = Some(e),
                }
            }
            if let Some(pp) = &old_partial
                && let Err(e) = crate::store::remove_partial(pp)
            {
                // Its row stays (the journal still owns it): try again later.
                return (Err(CreateError::EarlierStays(e)), resume_error);
            }
            let created = PartialFile::create(&tgt).map_err(CreateError::Store);
            (created.map(Opened::Fresh), resume_error)
        })
        .await;
        let (opened, resume_error) = opened.unwrap_or_else(|e| (Err(CreateError::Task(e)), None));
        if let Some(err) = resume_error {
            self.error(format!("cannot resume: {err}")).await;
        }
        let (partial, journal_id, base) = match opened {
            Ok(Opened::Resumed(p, id, base)) => (p, id, base),
            Err(e) => {
                self.refuse_offer_for_now(ConnectionError::CannotCreate {
                    name: offer.virtual_file_name.clone(),
                    cause: e,
                })
                .await;
                return;
            }
            Ok(Opened::Fresh(partial)) => {
                let (p, k, pp, fp, ud) = (
                    partner.clone(),
                    key.clone(),
                    partial.partial_path().to_owned(),
                    target.clone(),
                    offer.user_data.clone(),
                );
                match self
                    .shared
                    .journal
                    .call(move |j| j.begin_receive(&p, &k, &pp, &fp, &ud))
                    .await
                {
                    Ok(id) => (partial, id, Checkpoint::default()),
                    Err(e) => {
                        if let Err(r) = partial.abandon(true).await {
                            self.error(format!("cannot remove partial file: {r}")).await;
                        }
                        self.refuse_offer_for_now(e.into()).await;
                        return;
                    }
                }
            }
        };
        // A file with file services is opened while it arrives: by the services on a thread
        // of their own, fed by the writer pool (see `crate::stream`).
        let (tap, opener) = if sfid.has_file_services() {
            match self.start_opener(&sfid, &partial, base.file_offset) {
                Ok((tap, opener)) => (Some(tap), Some(opener)),
                Err(error) => {
                    let name = offer.virtual_file_name.clone();
                    self.refuse_offer_for_now(ConnectionError::CannotOpen { name, error })
                        .await;
                    return;
                }
            }
        } else {
            (None, None)
        };
        let writer = match BackgroundWriter::spawn_tapped(partial, tap) {
            Ok(w) => w,
            Err(error) => {
                // The file is still there (empty or with its durable part): a retry resumes.
                let name = offer.virtual_file_name.clone();
                self.refuse_offer_for_now(ConnectionError::CannotStartWriter { name, error })
                    .await;
                return;
            }
        };
        if let Err(e) = self.session.accept_file(base.position) {
            // Dropping the writer gives the file up; it keeps what it had.
            self.error(format!("cannot accept file: {e}")).await;
            drop(writer);
            return;
        }
        let transfer = TransferInfo {
            direction: Direction::Incoming,
            local_file: target,
            virtual_file_name: offer.virtual_file_name.clone(),
            stamp,
            originator: offer.originator.clone(),
            destination: offer.destination.clone(),
            restart_position: base.position,
            file_hash: Vec::new(),
        };
        self.log(
            LogLevel::Info,
            format!(
                "receiving {} from {} into {}{}",
                transfer.virtual_file_name,
                transfer.originator,
                transfer.local_file.display(),
                if base.position > 0 {
                    format!(" (restart at {})", base.position)
                } else {
                    String::new()
                }
            ),
        )
        .await;
        self.handler.start_transfer(&info, &transfer).await;
        self.recorder
            .file_started(crate::journal::Direction::Received, Some(journal_id));
        self.incoming = Some(Incoming {
            _active: active,
            sfid: sfid.clone(),
            writer,
            journal_id,
            key,
            transfer,
            format,
            overwrite,
            base,
            records: 0,
            units: 0,
            checkpointed_units: 0,
            checkpointed_at: Instant::now(),
            reported_units: 0,
            record_end_offset: base.file_offset,
            record_end_units: 0,
            mapping: self.record_mapping(),
            record: Vec::new(),
            unstorable: None,
            inflight: None,
            user_data: offer.user_data,
            opener,
        });
    }

    /// Starts the file services' opening of a file that is about to arrive; the returned tap
    /// feeds it. `stored` octets of the temporary file are an earlier session's durable part
    /// (a restarted transfer): the opener reads them first.
    fn start_opener(
        &self,
        sfid: &Sfid,
        partial: &PartialFile,
        stored: u64,
    ) -> std::io::Result<(crate::stream::Tap, OpenerResult)> {
        use std::io::Read as _;
        let path = partial.partial_path().to_owned();
        let prefix = if stored > 0 {
            Some(std::fs::File::open(&path)?.take(stored))
        } else {
            None
        };
        let (tap, mut stream) = crate::stream::received_stream(prefix);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (services, sfid) = (self.services.clone(), sfid.clone());
        // A thread of its own, like the writer's: a reception holds it for the whole transfer.
        std::thread::Builder::new()
            .name("oftp-open".into())
            .spawn(move || {
                // A panic (a decoder bug on hostile input) must become a verdict like any
                // other failure, not a silent end of the thread.
                let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    services.open_incoming(&sfid, &mut stream, &path)
                }))
                .map_err(|panic| panic_message(panic.as_ref()));
                let _ = tx.send(opened);
            })?;
        Ok((tap, rx))
    }

    /// Refuses an offered file for a local problem, logged as an error (SFNA 12 with retry, see
    /// [`ConnectionError::answer`]).
    async fn refuse_offer_for_now(&mut self, problem: ConnectionError) {
        self.error(problem.to_string()).await;
        self.send_refusal(&problem);
    }
}

/// The temporary file of a reception, as opened at SFID time.
enum Opened {
    /// A durable part resumed: its journal id and restart point.
    Resumed(PartialFile, i64, Checkpoint),
    /// A new, empty file (its journal entry is made next).
    Fresh(PartialFile),
}

/// Whether a reception the journal still calls "receiving" was in fact placed before a crash:
/// the final file exists and the temporary name is gone or is the same file (then it is
/// removed; a failure to remove it is logged, the file is complete either way). Blocking.
fn crashed_after_placing(partial: &std::path::Path, final_path: &std::path::Path) -> bool {
    if !final_path.exists() {
        return false;
    }
    if !partial.exists() {
        return true;
    }
    if !crate::store::same_file(partial, final_path) {
        return false;
    }
    if let Err(e) = std::fs::remove_file(partial) {
        tracing::warn!(
            path = %partial.display(),
            error = %e,
            "received file is complete, but its temporary name could not be removed"
        );
    }
    true
}
