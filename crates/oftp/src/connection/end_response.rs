//! End responses (EERP/NERP): ours for received files (built, signed when asked, sent, recorded
//! once the partner's RTR arrives; deferred ones queued at the next session), and the partner's
//! for files we sent (signature checked, recorded before the RTR goes out, matched to files).

use oftp_proto::session::EndResponse as WireEndResponse;

use crate::connection::error::ConnectionError;
use crate::connection::report::{EarlierEndResponse, FileOutcome};
use crate::connection::wire;
use crate::connection::{Connection, Work};
use crate::handler::{EndResponse, Handler, LogLevel};
use crate::journal::{Direction as JournalDirection, FileKey};
use crate::stamp::FileStampExt;
use crate::transport::{FileServices, Transport};

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    /// End responses of earlier sessions that never went out (the connection broke first).
    pub(super) async fn queue_pending_end_responses(&mut self) {
        let Some(p) = &self.params else {
            return;
        };
        let local_sfid = p.local_sfid.clone();
        let partner = self.partner_code();
        let pending = self
            .shared
            .journal
            .call(move |j| j.pending_end_responses(&partner))
            .await;
        match pending {
            Ok(entries) => {
                for e in entries {
                    let eerp = wire::our_eerp(&e.key, &local_sfid, e.user_data);
                    self.queue.push_front(Work::EndResponse(eerp));
                }
            }
            Err(e) => self.fail(e).await,
        }
    }

    pub(super) async fn on_end_response(&mut self, r: WireEndResponse) {
        let (mut resp, date, time) = match wire::from_wire(r) {
            Ok(r) => r,
            Err(e) => {
                // It names no file anyone sent (a file's originator is never blank): nothing
                // to record or settle.
                self.error(format!(
                    "end response ignored: its destination or originator: {e}"
                ))
                .await;
                return;
            }
        };
        // The response names the file by its originator (us, the EERP's destination).
        let key = FileKey::new(
            resp.destination.clone(),
            &resp.virtual_file_name,
            resp.stamp,
        );
        match self.check_receipt(&key, &date, &time, &resp).await {
            Ok(verified) => resp.signature_verified = verified,
            Err(problem) => {
                let text = problem.to_string();
                // Not proof of delivery: keep the file awaiting a valid response.
                self.error(format!(
                    "end response for {} from {} not accepted: {text}",
                    resp.virtual_file_name, resp.originator
                ))
                .await;
                for (f, o) in &mut self.outcomes {
                    if *o == FileOutcome::AwaitingEndResponse
                        && f.virtual_file_name.trim_end() == key.dsn
                        && f.stamp == Some(key.stamp)
                    {
                        *o = FileOutcome::EndResponseRejected { text: text.clone() };
                        break;
                    }
                }
                return;
            }
        }
        let entry = wire::journal_entry(JournalDirection::Received, &resp, self.partner_code());
        if let Err(e) = self
            .shared
            .journal
            .call(move |j| j.record_end_response(&entry))
            .await
        {
            // The RTR queued with this response would tell the partner it may forget it.
            let description = format!(
                "cannot record the end response for {}: journal: {e}; hanging up without RTR so \
                 the partner sends it again",
                resp.virtual_file_name
            );
            self.error(description.clone()).await;
            self.hang_up(description);
            return;
        }
        let outcome = match &resp.negative {
            None => FileOutcome::Delivered,
            Some(n) => FileOutcome::NotDelivered {
                reason: n.reason,
                text: n.text.clone(),
            },
        };
        // Settle the matching file of this run, if any.
        let mut settled = false;
        for (f, o) in &mut self.outcomes {
            // A duplicate refusal followed by the EERP: the partner had the file all along.
            let open = *o == FileOutcome::AwaitingEndResponse
                || matches!(o, FileOutcome::Rejected { reason, .. }
                    if *reason == oftp_proto::codec::SfnaReason::DUPLICATE_FILE);
            if open && f.virtual_file_name.trim_end() == key.dsn && f.stamp == Some(key.stamp) {
                *o = outcome.clone();
                settled = true;
                break;
            }
        }
        if !settled && self.initiator.is_some() {
            // For a file of an earlier run: reported too, with the local file it confirms.
            let k = key.clone();
            let local_file = match self.shared.journal.call(move |j| j.sent_by_key(&k)).await {
                Ok(sent) => sent.map(|s| s.local.path),
                Err(e) => {
                    self.fail(e).await;
                    None
                }
            };
            self.earlier.push(EarlierEndResponse {
                local_file,
                response: resp.clone(),
            });
        }
        self.log(
            LogLevel::Info,
            match &resp.negative {
                None => format!(
                    "EERP for {} from {}",
                    resp.virtual_file_name, resp.originator
                ),
                Some(n) => format!(
                    "NERP for {} from {}: {} (NERP {:02}) {}",
                    resp.virtual_file_name,
                    resp.originator,
                    n.reason.description().unwrap_or("unknown reason"),
                    n.reason.0,
                    n.text
                ),
            },
        )
        .await;
        if let Some(info) = &self.info {
            self.handler.end_response(info, &resp).await;
        }
    }

    /// Checks a received EERP/NERP signature: against the partner's receipt certificate and
    /// the hash we recorded when sending the file. `Ok(true)`: signed and valid; `Ok(false)`:
    /// unsigned and nothing requires a signature; `Err`: not acceptable.
    async fn check_receipt(
        &self,
        key: &FileKey,
        date: &str,
        time: &str,
        resp: &EndResponse,
    ) -> Result<bool, ConnectionError> {
        let k = key.clone();
        let recorded = self
            .shared
            .journal
            .call(move |j| j.file_hash(JournalDirection::Sent, "", &k))
            .await?;
        let Some(sec) = self.shared.security.get() else {
            return match recorded {
                Some(_) => Err(ConnectionError::Receipt(
                    "a signed response was asked for but no security is configured".into(),
                )),
                None => Ok(false),
            };
        };
        let required = recorded.is_some() || sec.requires_signed_receipts(resp.originator.as_str());
        if resp.signature.is_empty() {
            return if required {
                Err(ConnectionError::Receipt(
                    "the response is not signed".into(),
                ))
            } else {
                Ok(false)
            };
        }
        let file_hash = match &recorded {
            Some((_, h)) => {
                if !resp.file_hash.is_empty() && resp.file_hash != *h {
                    return Err(ConnectionError::Receipt(
                        "the response's file hash is not the hash of the file we sent".into(),
                    ));
                }
                h.clone()
            }
            None => resp.file_hash.clone(),
        };
        let fields = oftp_security::receipt::ReceiptFields {
            dsn: resp.virtual_file_name.clone(),
            date: date.to_owned(),
            time: time.to_owned(),
            destination: resp.destination.to_string(),
            originator: resp.originator.to_string(),
            nerp_creator: resp.negative.as_ref().map(|n| n.creator.clone()),
            file_hash,
        };
        // May fetch a CRL from a distribution point: off the async threads.
        let (sec, originator, signature) =
            (sec.clone(), resp.originator.clone(), resp.signature.clone());
        tokio::task::spawn_blocking(move || {
            sec.verify_receipt(originator.as_str(), &signature, &fields)
        })
        .await
        .map_err(|e| ConnectionError::Receipt(format!("receipt check failed: {e}")))?
        .map_err(ConnectionError::ReceiptNotValid)
        .map(|()| true)
    }

    /// Fills EERPHSH/EERPSIG (or NERP's) when the file asked for a signed response: the hash
    /// recorded when it was received (unless the application gave one) and our signature
    /// (unless the application gave one, e.g. a routed response). A response we cannot sign
    /// (no receipt-signing key, or signing fails) goes out unsigned and without hash, with a
    /// warning (RFC 5024 3.3.5 note 3, 4.3.6; 5.3.13: an unsigned EERP carries no hash); only
    /// a journal failure keeps it pending.
    async fn sign_end_response(&self, r: &mut EndResponse) -> Result<(), ConnectionError> {
        if !r.signature.is_empty() {
            return Ok(());
        }
        let key = FileKey::new(r.destination.clone(), &r.virtual_file_name, r.stamp);
        let partner = self.partner_code();
        let recorded = self
            .shared
            .journal
            .call(move |j| j.file_hash(JournalDirection::Received, &partner, &key))
            .await?;
        let Some((suite, hash)) = recorded else {
            return Ok(());
        };
        let Some(sec) = self.shared.security.get() else {
            self.send_unsigned(
                r,
                "no security is configured, so there is no receipt-signing key",
            )
            .await;
            return Ok(());
        };
        if r.file_hash.is_empty() {
            r.file_hash = hash;
        }
        let time = r.stamp;
        let fields = oftp_security::receipt::ReceiptFields {
            dsn: r.virtual_file_name.clone(),
            date: time.date_string(),
            time: time.time_string(),
            destination: r.destination.to_string(),
            originator: r.originator.to_string(),
            nerp_creator: r.negative.as_ref().map(|n| n.creator.clone()),
            file_hash: r.file_hash.clone(),
        };
        let (sec, f) = (sec.clone(), fields);
        match tokio::task::spawn_blocking(move || sec.sign_receipt(&f, suite)).await {
            Ok(Ok(signature)) => r.signature = signature,
            Ok(Err(e)) => self.send_unsigned(r, &e.to_string()).await,
            Err(e) => {
                self.send_unsigned(r, &format!("signing task failed: {e}"))
                    .await
            }
        }
        Ok(())
    }

    /// Prepares `r` to go out unsigned although a signed response was asked for, and warns.
    async fn send_unsigned(&self, r: &mut EndResponse, why: &str) {
        self.error(format!(
            "{} asked for a signed end response for {}, but it cannot be signed: {why}; \
             sending it unsigned (RFC 5024 3.3.5)",
            r.originator, r.virtual_file_name
        ))
        .await;
        r.file_hash.clear();
        r.signature.clear();
    }

    /// The partner's RTR for our end response: recorded as sent, so it is not sent again.
    pub(super) async fn on_end_response_acknowledged(&mut self) {
        if let Some(r) = self.awaiting_rtr.take() {
            let entry = wire::journal_entry(JournalDirection::Sent, &r, self.partner_code());
            let res = self
                .shared
                .journal
                .call(move |j| j.record_end_response(&entry))
                .await;
            if let Err(e) = res {
                self.fail(e).await;
            }
        }
    }

    pub(super) async fn send_end_response(&mut self, mut r: EndResponse) {
        // NERP came with OFTP 1.4 (RFC 5024 1.2): a 1.2/1.3 partner cannot receive one, and an
        // EERP in its place would report a delivery that did not happen. Nothing is sent; the
        // operator hears it as an error with what to do.
        let level = self.session.level();
        if let Some(n) = r.negative.as_ref().filter(|_| !level.has_nerp()) {
            self.error(format!(
                "not sending NERP {:02} for {} ({}) to {}: this session runs at OFTP level {}, \
                 which has no negative end response (NERP exists from OFTP 1.4, level 4, on); \
                 nothing was sent in its place: tell the originator {} another way, or send the \
                 NERP in a session at level 4 or 5",
                n.reason.0,
                r.virtual_file_name,
                r.stamp.digits(),
                self.partner_code(),
                level.0,
                r.destination
            ))
            .await;
            return;
        }
        if let Err(e) = self.sign_end_response(&mut r).await {
            // The journal could not say whether (and over which hash) to sign: try later.
            self.error(format!(
                "cannot sign the end response for {}: {e}",
                r.virtual_file_name
            ))
            .await;
            return;
        }
        match self.session.send_end_response(wire::to_wire(&r)) {
            Ok(()) => self.awaiting_rtr = Some(r),
            Err(e) => {
                self.error(format!(
                    "cannot send end response for {}: {e}",
                    r.virtual_file_name
                ))
                .await
            }
        }
    }
}
