//! Session events to the module that handles them, and the PI trail (every command sent and
//! received, told to the handler; each refusal we send is logged with partner, file and reason).
//! Does not decide anything itself: login, receive, send and end-response modules do.

use oftp_proto::codec::EsidReason;
use oftp_proto::session::Event;

use crate::connection::Connection;
use crate::connection::report::FileOutcome;
use crate::connection::turn::{Allowed, Turn};
use crate::handler::{Disconnected, Handler, LogLevel, Origin, PiTrail, ReadyAction};
use crate::transport::{FileServices, Transport};

fn command_id(name: &str) -> u8 {
    use oftp_proto::codec::code;
    match name {
        "SSRM" => code::SSRM,
        "SSID" => code::SSID,
        "SFID" => code::SFID,
        "SFPA" => code::SFPA,
        "SFNA" => code::SFNA,
        "DATA" => code::DATA,
        "CDT" => code::CDT,
        "EFID" => code::EFID,
        "EFPA" => code::EFPA,
        "EFNA" => code::EFNA,
        "ESID" => code::ESID,
        "CD" => code::CD,
        "RTR" => code::RTR,
        "EERP" => code::EERP,
        "NERP" => code::NERP,
        "SECD" => code::SECD,
        "AUCH" => code::AUCH,
        "AURP" => code::AURP,
        _ => 0,
    }
}

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    pub(super) async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::SsidReceived { peer } => self.on_ssid(peer).await,
            Event::SessionEstablished { negotiated } => self.on_established(negotiated).await,
            Event::CommandSent { name, summary } => self.trail(Origin::Local, name, summary).await,
            Event::CommandReceived { name, summary } => {
                self.trail(Origin::Peer, name, summary).await
            }
            Event::ReadyToSend {
                may_end_session,
                may_change_direction,
            } => {
                self.turn = Turn::Ours(Allowed::new(may_end_session, may_change_direction));
                let wait = match &self.info {
                    Some(info) => self.handler.ready_to_send(info).await == ReadyAction::Wait,
                    None => false,
                };
                self.idle = self.idle.ready(wait);
            }
            Event::FileOffered { sfid } => {
                self.offered = Some(format!(
                    "{} ({}) from {}",
                    sfid.dsn, sfid.date_time, sfid.originator
                ));
                self.on_file_offered(sfid).await
            }
            Event::DataReceived {
                bytes,
                end_of_record,
            } => {
                self.recorder
                    .data(crate::journal::Direction::Received, bytes.len());
                self.on_data(bytes, end_of_record).await
            }
            Event::FileEnded {
                record_count,
                unit_count,
                received_records,
                received_units,
                restart_position: _,
                record_length_violation,
            } => {
                self.on_file_ended(
                    record_count,
                    unit_count,
                    received_records,
                    received_units,
                    record_length_violation.map(|e| e.to_string()),
                )
                .await
            }
            Event::FileAccepted { restart_position } => {
                self.on_file_accepted(restart_position).await
            }
            Event::ReadyForData => {}
            Event::FileRejected { reason, text, .. }
                if reason == oftp_proto::codec::SfnaReason::DUPLICATE_FILE
                    && self.outgoing.as_ref().is_some_and(|o| o.resumed) =>
            {
                // The identity of an earlier attempt: the partner stored that attempt, whose
                // EFPA we did not record. Its EERP is due (RFC 5024 section 4.3.6).
                let name = self
                    .outgoing
                    .as_ref()
                    .map(|o| o.transfer.virtual_file_name.clone())
                    .unwrap_or_default();
                self.log(
                    LogLevel::Info,
                    format!(
                        "the partner already has {name} (SFNA 13: {text}); waiting for its EERP"
                    ),
                )
                .await;
                self.outgoing_done(FileOutcome::AwaitingEndResponse, None, false)
                    .await;
            }
            Event::FileRejected {
                reason,
                retry,
                text,
            } => {
                let outcome = FileOutcome::Rejected {
                    reason,
                    retry,
                    text: text.clone(),
                };
                let msg = format!(
                    "partner refused the file: {} (SFNA {:02}) {text}",
                    reason.description().unwrap_or("unknown reason"),
                    reason.0
                );
                self.outgoing_done(outcome, Some(msg), !retry).await;
            }
            Event::FileConfirmed { .. } => {
                self.outgoing_done(FileOutcome::AwaitingEndResponse, None, false)
                    .await
            }
            Event::FileRefused { reason, text } => {
                let msg = format!(
                    "partner refused the file after transfer: {} (EFNA {:02}) {text}",
                    reason.description().unwrap_or("unknown reason"),
                    reason.0
                );
                self.outgoing_done(
                    FileOutcome::Refused {
                        reason,
                        text: text.clone(),
                    },
                    Some(msg),
                    true,
                )
                .await;
            }
            Event::EndResponseReceived(r) => self.on_end_response(r).await,
            Event::EndResponseAcknowledged => self.on_end_response_acknowledged().await,
            Event::SessionEnded {
                reason,
                text,
                by_peer,
            } => {
                let description = if reason == EsidReason::NORMAL {
                    "OK".to_owned()
                } else if text.trim().is_empty() {
                    format!(
                        "{} (ESID {:02})",
                        reason.description().unwrap_or("unknown reason"),
                        reason.0
                    )
                } else {
                    format!("{} (ESID {:02})", text.trim(), reason.0)
                };
                self.log(
                    LogLevel::Info,
                    format!(
                        "session ended by {}: {description}",
                        if by_peer { "the partner" } else { "us" }
                    ),
                )
                .await;
                // A disconnect asked for by the application already said why.
                if self.ended.is_none() {
                    self.ended = Some(Disconnected {
                        reason: Some(reason),
                        by_peer,
                        description,
                    });
                }
            }
            Event::AuthChallengeReceived { challenge } => self.on_auth_challenge(challenge).await,
            Event::AuthChallengeRequested => self.on_auth_challenge_requested().await,
            Event::Authenticated => self.session_established().await,
            _ => {}
        }
    }

    async fn trail(&mut self, origin: Origin, name: &'static str, summary: String) {
        tracing::debug!(conn = self.conn.id, ?origin, "{summary}");
        self.record_command(origin, name, &summary).await;
        if origin == Origin::Local {
            self.log_refusal(name, &summary).await;
        }
        self.handler
            .pi_trail(
                self.conn.id,
                &PiTrail {
                    origin,
                    command_id: command_id(name),
                    description: summary,
                },
            )
            .await;
    }

    /// The partner's SSID code as known now, and whether it is certain (logged in, or the
    /// partner we call) rather than only claimed in an SSID we have not accepted.
    pub(super) fn peer_code(&self) -> Option<(String, bool)> {
        match (&self.info, &self.initiator, &self.claimed_ssid) {
            (Some(info), _, _) => Some((info.peer_ssid.to_string(), true)),
            (None, Some(setup), _) => Some((setup.partner.ssid.clone(), true)),
            (None, None, Some(code)) => Some((code.clone(), false)),
            (None, None, None) => None,
        }
    }

    /// Every refusal we send is logged here, where the session reports what it sent, with the
    /// partner, the file and the reason: ESID other than a normal end, SFNA, EFNA and NERP.
    async fn log_refusal(&self, name: &str, summary: &str) {
        let file = match name {
            "SFNA" | "EFNA" => self.offered.as_deref(),
            "NERP" => None, // the summary names the file
            "ESID" if !summary.starts_with(&format!("ESID {}", EsidReason::NORMAL)) => None,
            _ => return,
        };
        let partner = match self.peer_code() {
            Some((code, true)) => code,
            Some((code, false)) => format!("{code} (not logged in)"),
            None => "(no SSID yet)".to_owned(),
        };
        let file = file.map(|f| format!(", file {f}")).unwrap_or_default();
        self.log(
            LogLevel::Info,
            format!(
                "refused: partner {partner} at {}{file}: {}",
                self.conn.peer,
                summary.trim_end()
            ),
        )
        .await;
    }
}
