//! What a queued file becomes after an attempt: one pure function, [`settle`], of what
//! happened to it, its queue row, the partner's retry policy and the time. The call loops use
//! it for the files of their calls; the responder side (a partner that calls us and collects
//! its queued files) uses it for the same outcomes, so both sides settle a file alike.
//!
//! | What happened | New state | Alert |
//! |---|---|---|
//! | EERP (in the call, or later) | delivered | |
//! | EFPA, or SFNA 13 for a copy the partner has, or an end response not accepted | sent (awaits the EERP) | |
//! | NERP (in the call, or later) | not delivered | `not_delivered` |
//! | SFNA, EFNA, not sent, the call failed: retried by [`RetryPolicy::decide`] | queued, due at the back-off | |
//! | ... given up (final class, attempts or age) | rejected (SFNA retry N, EFNA), else failed | `file_failed` |
//!
//! The classes are those of [`crate::retry`] (RFC 5024 5.3.5 SFNA retry indicator, 5.3.10
//! EFNA, 5.3.11 ESID, 5.3.14 NERP).

use chrono::{DateTime, Utc};
use oftp::handler::{Disconnected, NegativeResponse};
use oftp::journal::{AlertKind, NewAlert, QueueChange, QueueState, QueuedFile};
use oftp::{ClientError, FileOutcome};
use rand::Rng;

use crate::retry::{
    FailureClass, FileVerdict, GiveUpReason, RetryDecision, RetryPolicy, classify_call,
    classify_file,
};

/// What happened to a queued file in an attempt.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// A session that got past login reported this outcome for the file; `ended` is how the
    /// session ended (the report's `ended`).
    File {
        /// The file's outcome.
        outcome: &'a FileOutcome,
        /// How the session ended.
        ended: &'a Disconnected,
    },
    /// The call never got to the files.
    CallFailed(&'a ClientError),
    /// An end response for the file arrived in a later session: `None` an EERP, else the NERP.
    EndResponse(Option<&'a NegativeResponse>),
}

/// The queue transition for an attempt, and the alert it raises, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// For [`Journal::transition`](oftp::journal::Journal::transition) of the row.
    pub change: QueueChange,
    /// To raise with [`Journal::raise_alert`](oftp::journal::Journal::raise_alert) once the
    /// transition is recorded.
    pub alert: Option<NewAlert>,
}

/// What `row` becomes after `attempt` at `now` under `policy` (jitter drawn from `rng`).
/// `row.attempts` counts this attempt (the claim counted it).
pub fn settle<R: Rng + ?Sized>(
    attempt: Attempt<'_>,
    row: &QueuedFile,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    rng: &mut R,
) -> Settlement {
    let (class, what) = match attempt {
        Attempt::EndResponse(None) => return settled(QueueChange::to(QueueState::Delivered, now)),
        Attempt::EndResponse(Some(n)) => {
            return not_delivered(row, now, n.reason.0, &n.text);
        }
        Attempt::File { outcome, ended } => match (classify_file(outcome, ended), outcome) {
            (FileVerdict::Delivered, _) => {
                return settled(QueueChange::to(QueueState::Delivered, now));
            }
            (FileVerdict::AwaitingEndResponse, o) => {
                let note = match o {
                    FileOutcome::EndResponseRejected { text } => {
                        format!("end response not accepted, a valid one is awaited: {text}")
                    }
                    _ => "the partner has the file; its EERP is awaited".to_owned(),
                };
                return settled(QueueChange::to(QueueState::Sent, now).note(note));
            }
            (_, FileOutcome::NotDelivered { reason, text }) => {
                return not_delivered(row, now, reason.0, text);
            }
            (FileVerdict::Failed(class), o) => (class, describe(o)),
        },
        Attempt::CallFailed(e) => (classify_call(e), e.to_string()),
    };
    let error = format!("{class}: {what}");
    match policy.decide(class, row.attempts, row.queued_at, now, rng) {
        RetryDecision::RetryAt(at) => settled(
            QueueChange::to(QueueState::Queued, now)
                .error(error)
                .due_at(at),
        ),
        RetryDecision::GiveUp(reason) => {
            let to = match reason {
                GiveUpReason::Final(
                    FailureClass::FileRejected { .. } | FailureClass::RefusedAfterTransfer(_),
                ) => QueueState::Rejected,
                _ => QueueState::Failed,
            };
            let text = format!(
                "{} to partner {:?} is {to}: {error} ({reason}); fix the cause, then retry it \
                 (oftp transfer retry {})",
                row.send.virtual_file_name, row.send.partner, row.id
            );
            Settlement {
                change: QueueChange::to(to, now).error(format!("{error} ({reason})")),
                alert: Some(alert(AlertKind::FileFailed, row, text)),
            }
        }
    }
}

fn settled(change: QueueChange) -> Settlement {
    Settlement {
        change,
        alert: None,
    }
}

fn not_delivered(row: &QueuedFile, now: DateTime<Utc>, reason: u8, text: &str) -> Settlement {
    let error = format!("not delivered (NERP {reason:02}): {text}");
    Settlement {
        change: QueueChange::to(QueueState::NotDelivered, now).error(error.clone()),
        alert: Some(alert(
            AlertKind::NotDelivered,
            row,
            format!(
                "{} to partner {:?}: {error}; the file is kept (oftp transfer retry {} sends it \
                 again)",
                row.send.virtual_file_name, row.send.partner, row.id
            ),
        )),
    }
}

fn alert(kind: AlertKind, row: &QueuedFile, text: String) -> NewAlert {
    NewAlert {
        kind,
        partner: Some(row.send.partner.clone()),
        file: Some(row.send.source_path.display().to_string()),
        text,
    }
}

/// The outcome's own words, after its class.
fn describe(outcome: &FileOutcome) -> String {
    let with = |what: &str, text: &str| {
        if text.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {text}")
        }
    };
    match outcome {
        FileOutcome::Rejected { reason, text, .. } => {
            with(reason.description().unwrap_or("refused at the offer"), text)
        }
        FileOutcome::Refused { reason, text } => with(
            reason.description().unwrap_or("refused after the transfer"),
            text,
        ),
        FileOutcome::NotSent { reason } => reason.clone(),
        FileOutcome::NotDelivered { text, .. } | FileOutcome::EndResponseRejected { text } => {
            text.clone()
        }
        FileOutcome::Delivered | FileOutcome::AwaitingEndResponse => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::TimeZone;
    use oftp::journal::QueuedSend;
    use oftp::oftp_proto::codec::{EfnaReason, EsidReason, FileFormat, NerpReason, SfnaReason};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::retry::RetryConfig;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap() + chrono::TimeDelta::seconds(s)
    }

    fn row(attempts: u32) -> QueuedFile {
        QueuedFile {
            id: 7,
            send: QueuedSend {
                partner: "acme".into(),
                source_path: PathBuf::from("/out/acme/.queue/1/inv.txt"),
                virtual_file_name: "INV.TXT".into(),
                destination: None,
                originator: None,
                format: FileFormat::Unstructured,
                max_record_len: 0,
                user_data: String::new(),
                description: String::new(),
            },
            state: QueueState::InTransfer,
            attempts,
            last_error: None,
            key: None,
            queued_at: t(0),
            next_attempt_at: t(0),
            updated_at: t(0),
        }
    }

    /// No jitter, 60 s first delay, at most 3 attempts.
    fn policy() -> RetryPolicy {
        RetryPolicy::try_from(&RetryConfig {
            first_delay_secs: 60,
            max_delay_secs: 3600,
            jitter: 0.0,
            max_attempts: 3,
            max_age_hours: 0,
        })
        .unwrap()
    }

    fn normal_end() -> Disconnected {
        Disconnected {
            reason: Some(EsidReason::NORMAL),
            by_peer: false,
            description: "OK".into(),
        }
    }

    fn of(outcome: &FileOutcome, attempts: u32) -> Settlement {
        let ended = normal_end();
        settle(
            Attempt::File {
                outcome,
                ended: &ended,
            },
            &row(attempts),
            &policy(),
            t(100),
            &mut StdRng::seed_from_u64(1),
        )
    }

    #[test]
    fn an_eerp_delivers_and_an_efpa_waits_for_it() {
        let s = of(&FileOutcome::Delivered, 1);
        assert_eq!(s.change.to, QueueState::Delivered);
        assert_eq!(s.change.at, t(100));
        assert_eq!(s.alert, None);
        let s = of(&FileOutcome::AwaitingEndResponse, 1);
        assert_eq!(s.change.to, QueueState::Sent);
        assert_eq!(s.alert, None);
        let s = of(
            &FileOutcome::EndResponseRejected {
                text: "bad signature".into(),
            },
            1,
        );
        assert_eq!(s.change.to, QueueState::Sent);
        assert!(s.change.note.unwrap().contains("bad signature"));
    }

    #[test]
    fn a_nerp_keeps_the_file_not_delivered_with_an_alert() {
        let s = of(
            &FileOutcome::NotDelivered {
                reason: NerpReason(3),
                text: "no such user".into(),
            },
            1,
        );
        assert_eq!(s.change.to, QueueState::NotDelivered);
        assert!(s.change.error.as_deref().unwrap().contains("NERP 03"));
        let a = s.alert.unwrap();
        assert_eq!(a.kind, AlertKind::NotDelivered);
        assert_eq!(a.partner.as_deref(), Some("acme"));
        assert!(a.text.contains("oftp transfer retry 7"), "{}", a.text);
    }

    #[test]
    fn a_later_end_response_settles_like_one_in_the_call() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        let eerp = settle(Attempt::EndResponse(None), &row(1), &p, t(5), &mut rng);
        assert_eq!(eerp.change, QueueChange::to(QueueState::Delivered, t(5)));
        let n = NegativeResponse {
            reason: NerpReason(3),
            creator: "X".into(),
            text: "gone".into(),
        };
        let nerp = settle(Attempt::EndResponse(Some(&n)), &row(1), &p, t(5), &mut rng);
        assert_eq!(nerp.change.to, QueueState::NotDelivered);
        assert_eq!(nerp.alert.unwrap().kind, AlertKind::NotDelivered);
    }

    #[test]
    fn an_sfna_with_retry_y_is_queued_again_after_the_back_off() {
        let outcome = FileOutcome::Rejected {
            reason: SfnaReason(3),
            retry: true,
            text: "busy".into(),
        };
        let s = of(&outcome, 1);
        assert_eq!(s.change.to, QueueState::Queued);
        assert_eq!(s.change.next_attempt_at, Some(t(160)), "60 s after now");
        assert!(s.change.error.unwrap().contains("retry Y"));
        assert_eq!(s.alert, None);
        let s = of(&outcome, 2);
        assert_eq!(s.change.next_attempt_at, Some(t(220)), "the wait doubles");
    }

    #[test]
    fn an_sfna_with_retry_n_or_an_efna_is_rejected_with_an_alert() {
        for outcome in [
            FileOutcome::Rejected {
                reason: SfnaReason(1),
                retry: false,
                text: String::new(),
            },
            FileOutcome::Refused {
                reason: EfnaReason(1),
                text: "bad".into(),
            },
        ] {
            let s = of(&outcome, 1);
            assert_eq!(s.change.to, QueueState::Rejected, "{outcome:?}");
            let a = s.alert.unwrap();
            assert_eq!(a.kind, AlertKind::FileFailed);
            assert_eq!(a.file.as_deref(), Some("/out/acme/.queue/1/inv.txt"));
        }
    }

    #[test]
    fn the_last_allowed_attempt_fails_for_good() {
        let outcome = FileOutcome::NotSent {
            reason: "transfer cut".into(),
        };
        assert_eq!(of(&outcome, 2).change.to, QueueState::Queued);
        let s = of(&outcome, 3);
        assert_eq!(s.change.to, QueueState::Failed);
        assert!(
            s.change.error.unwrap().contains("gave up after 3 attempts"),
            "the reason is kept"
        );
        assert_eq!(s.alert.unwrap().kind, AlertKind::FileFailed);
    }

    #[test]
    fn a_failed_call_requeues_with_back_off_or_fails_on_a_refused_login() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        let refused = ClientError::Connect {
            addr: "127.0.0.1:1".into(),
            error: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let s = settle(Attempt::CallFailed(&refused), &row(1), &p, t(100), &mut rng);
        assert_eq!(s.change.to, QueueState::Queued);
        assert_eq!(s.change.next_attempt_at, Some(t(160)));
        assert!(s.change.error.unwrap().starts_with("connection refused: "));
        let login = ClientError::Rejected {
            reason: EsidReason::INVALID_PASSWORD,
            text: "invalid password".into(),
        };
        let s = settle(Attempt::CallFailed(&login), &row(1), &p, t(100), &mut rng);
        assert_eq!(s.change.to, QueueState::Failed);
        assert_eq!(s.alert.unwrap().kind, AlertKind::FileFailed);
    }
}
