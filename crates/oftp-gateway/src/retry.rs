//! Retry policy: which failures of a call are tried again, and when.
//!
//! [`classify_call`] and [`classify_file`] turn what the runtime reports for a call
//! ([`oftp::ClientError`] when the session never got to the files, else each file's
//! [`oftp::FileOutcome`] and how the session ended) into a [`FailureClass`], which says whether
//! the file is tried again ([`Disposition::Retry`]) or is final ([`Disposition::Final`]: the
//! queue marks it failed, rejected or not delivered and raises an alert).
//! [`RetryPolicy::decide`] then gives the time of the next attempt: exponential back-off from
//! `first_delay` doubling up to `max_delay`, less a random part of up to `jitter` of it (the
//! random numbers come from the caller's RNG, so tests are deterministic), until the partner's
//! `max_attempts` or `max_age` is reached.
//!
//! The classes, against RFC 5024:
//! - retried: connection refused, reset or closed, network unreachable, a connect or TLS
//!   handshake that failed or timed out, ESID 09 (time out) from either side, ESID 08
//!   ("resources not available ... should be retried later", section 5.3.11), ESID 05
//!   (emergency close down), the protocol errors ESID 01/02/06/07 and 99 (a broken connection
//!   shows up as ESID 99 too), SFNA with retry `Y` (section 5.3.5: "the transmission may be
//!   retried later"), and a file not sent because the session ended first;
//! - final: ESID 03/04 (user code, password), 10 (mode or capabilities), 11/12 (secure
//!   authentication) from either side, SFNA with retry `N`, EFNA (it has no retry indicator,
//!   section 5.3.10, and section 5.3.14 reads "SFNA(RETRY=N)" as "EFNA or SFNA(RETRY=N)"),
//!   NERP, and a configuration the runtime refuses.
//!
//! Per-partner settings, `[partners.retry]` in the oftp configuration:
//!
//! ```toml
//! [partners.retry]
//! first_delay_secs = 60      # wait after the first failed attempt
//! max_delay_secs = 3600      # the back-off doubles up to this
//! jitter = 0.25              # up to this fraction of each wait is taken off at random (0..=1)
//! max_attempts = 10          # a file fails for good after this many attempts; 0 = no limit
//! max_age_hours = 72         # ... or once it has been queued this long; 0 = no limit
//! ```

use std::fmt;
use std::io::ErrorKind;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use oftp::handler::Disconnected;
use oftp::oftp_proto::codec::{EfnaReason, EsidReason, NerpReason, SfnaReason};
use oftp::{ClientError, FileOutcome};
use rand::Rng;
use serde::Deserialize;

/// Whether a failed file is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A temporary condition: try again after the back-off.
    Retry,
    /// Trying again would fail the same way: the file's state is final and a person is told.
    Final,
}

/// What went wrong with a call or a file, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureClass {
    /// The partner's address refused the TCP connection (nothing listens there now).
    ConnectionRefused,
    /// The connection broke or was closed without a proper end (reset, end of stream, ESID 99
    /// after a transport error), including a TLS handshake the partner broke off.
    ConnectionLost,
    /// The address could not be reached or resolved, or the connect failed otherwise
    /// (including a TLS handshake that failed on the certificate).
    Unreachable,
    /// No answer in time: connect or TLS handshake timeout, or ESID 09 from either side.
    Timeout,
    /// The partner's server is full: ESID 08.
    PartnerBusy,
    /// The session ended with an ESID that a later session may not meet: 01, 02, 05, 06, 07, 99.
    SessionAborted(EsidReason),
    /// Login or secure authentication was refused by either side: ESID 03, 04, 10, 11, 12.
    LoginRefused(EsidReason),
    /// The partner refused the file at its offer (SFNA).
    FileRejected {
        /// SFNA reason.
        reason: SfnaReason,
        /// The retry indicator: `true` for `Y`.
        retry: bool,
    },
    /// The partner refused the file after the transfer (EFNA).
    RefusedAfterTransfer(EfnaReason),
    /// The partner reported the file not delivered (NERP).
    NotDelivered(NerpReason),
    /// The file was not sent in a session that got past login (the session ended before it,
    /// or the runtime could not offer it).
    NotSent,
    /// The runtime refused the call's configuration.
    Configuration,
}

impl FailureClass {
    /// Whether the file is tried again.
    pub fn disposition(self) -> Disposition {
        match self {
            FailureClass::ConnectionRefused
            | FailureClass::ConnectionLost
            | FailureClass::Unreachable
            | FailureClass::Timeout
            | FailureClass::PartnerBusy
            | FailureClass::SessionAborted(_)
            | FailureClass::NotSent
            | FailureClass::FileRejected { retry: true, .. } => Disposition::Retry,
            FailureClass::LoginRefused(_)
            | FailureClass::FileRejected { retry: false, .. }
            | FailureClass::RefusedAfterTransfer(_)
            | FailureClass::NotDelivered(_)
            | FailureClass::Configuration => Disposition::Final,
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureClass::ConnectionRefused => f.write_str("connection refused"),
            FailureClass::ConnectionLost => f.write_str("connection lost"),
            FailureClass::Unreachable => f.write_str("partner unreachable"),
            FailureClass::Timeout => f.write_str("timed out"),
            FailureClass::PartnerBusy => f.write_str("partner busy (ESID 08)"),
            FailureClass::SessionAborted(r) => write!(f, "session aborted (ESID {:02})", r.0),
            FailureClass::LoginRefused(r) => write!(f, "login refused (ESID {:02})", r.0),
            FailureClass::FileRejected { reason, retry } => write!(
                f,
                "file rejected (SFNA {:02}, retry {})",
                reason.0,
                if *retry { 'Y' } else { 'N' }
            ),
            FailureClass::RefusedAfterTransfer(r) => write!(f, "file refused (EFNA {:02})", r.0),
            FailureClass::NotDelivered(r) => write!(f, "not delivered (NERP {:02})", r.0),
            FailureClass::NotSent => f.write_str("not sent"),
            FailureClass::Configuration => f.write_str("configuration refused"),
        }
    }
}

/// The class of an ESID that ended a session before its files, whichever side sent it.
fn esid_class(reason: EsidReason) -> FailureClass {
    match reason {
        EsidReason::RESOURCES_NOT_AVAILABLE => FailureClass::PartnerBusy,
        EsidReason::TIME_OUT => FailureClass::Timeout,
        EsidReason::USER_CODE_NOT_KNOWN
        | EsidReason::INVALID_PASSWORD
        | EsidReason::MODE_INCOMPATIBLE
        | EsidReason::INVALID_CHALLENGE_RESPONSE
        | EsidReason::SECURE_AUTH_INCOMPATIBLE => FailureClass::LoginRefused(reason),
        other => FailureClass::SessionAborted(other),
    }
}

/// The class of a failed call: a session that never got to the files.
pub fn classify_call(error: &ClientError) -> FailureClass {
    match error {
        ClientError::Connect { error, .. } => match error.kind() {
            ErrorKind::ConnectionRefused => FailureClass::ConnectionRefused,
            ErrorKind::TimedOut => FailureClass::Timeout,
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => FailureClass::ConnectionLost,
            // A TLS server name or address that cannot be one: the configuration's.
            ErrorKind::InvalidInput => FailureClass::Configuration,
            _ => FailureClass::Unreachable,
        },
        ClientError::PartnerFull { .. } => FailureClass::PartnerBusy,
        ClientError::Rejected { reason, .. } | ClientError::Refused { reason, .. } => {
            esid_class(*reason)
        }
        // The connection ended without an ESID the runtime keeps: end of stream, reset,
        // TLS alert or ESID 99 (the runtime only keeps the text).
        ClientError::NotStarted(_) => FailureClass::ConnectionLost,
        ClientError::Config(_) => FailureClass::Configuration,
        // `ClientError` is non-exhaustive: a new kind is retried (bounded by the partner's
        // limits) rather than failing files for good on a guess.
        _ => FailureClass::SessionAborted(EsidReason::UNSPECIFIED),
    }
}

/// What a call did for one of its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileVerdict {
    /// EERP received: delivered, final.
    Delivered,
    /// The partner has the file (EFPA, or SFNA 13 for a copy it had already) and the EERP is
    /// still to come, in this or a later session; or an end response came that was not
    /// accepted (bad signature) and a valid one is still awaited. Not sent again.
    AwaitingEndResponse,
    /// It failed.
    Failed(FailureClass),
}

/// The verdict on one file of a call that got past login, from its outcome and how the
/// session ended (`report.ended`).
pub fn classify_file(outcome: &FileOutcome, ended: &Disconnected) -> FileVerdict {
    match outcome {
        FileOutcome::Delivered => FileVerdict::Delivered,
        FileOutcome::AwaitingEndResponse | FileOutcome::EndResponseRejected { .. } => {
            FileVerdict::AwaitingEndResponse
        }
        FileOutcome::Rejected { reason, retry, .. } => {
            FileVerdict::Failed(FailureClass::FileRejected {
                reason: *reason,
                retry: *retry,
            })
        }
        FileOutcome::Refused { reason, .. } => {
            FileVerdict::Failed(FailureClass::RefusedAfterTransfer(*reason))
        }
        FileOutcome::NotDelivered { reason, .. } => {
            FileVerdict::Failed(FailureClass::NotDelivered(*reason))
        }
        FileOutcome::NotSent { .. } => FileVerdict::Failed(not_sent_class(ended)),
    }
}

/// Why a file was not sent in a session past login: how the session ended.
fn not_sent_class(ended: &Disconnected) -> FailureClass {
    match (ended.reason, ended.by_peer) {
        // Ended properly, or we hung up without an ESID (a write that could not be made
        // durable, the application): the runtime did not offer the file, or not to the end.
        // Whether because of the file itself (unreadable, bad records) or because the session
        // ended first, only the outcome's text says.
        (Some(EsidReason::NORMAL), _) | (None, false) => FailureClass::NotSent,
        // Closed under us without an ESID.
        (None, true) => FailureClass::ConnectionLost,
        // The runtime reports a broken connection (reset, TLS alert) as ESID 99 by the peer.
        (Some(EsidReason::UNSPECIFIED), true) => FailureClass::ConnectionLost,
        (Some(reason), _) => esid_class(reason),
    }
}

/// A partner's `[partners.retry]` table as the operator writes it (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Seconds to wait after the first failed attempt.
    pub first_delay_secs: u64,
    /// Longest wait in seconds: the back-off doubles up to it.
    pub max_delay_secs: u64,
    /// Fraction (0..=1) of each wait that may be taken off at random.
    pub jitter: f64,
    /// Attempts after which a file fails for good; 0 = no limit.
    pub max_attempts: u32,
    /// Hours after queueing after which a file fails for good; 0 = no limit.
    pub max_age_hours: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            first_delay_secs: 60,
            max_delay_secs: 3600,
            jitter: 0.25,
            max_attempts: 10,
            max_age_hours: 72,
        }
    }
}

/// Why a retry configuration cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryConfigError {
    /// `first_delay_secs = 0`.
    #[error("first_delay_secs must be at least 1: retrying at once hammers a partner that is down")]
    ZeroDelay,
    /// `max_delay_secs` below `first_delay_secs`.
    #[error("max_delay_secs ({max}) must not be below first_delay_secs ({first})")]
    MaxBelowFirst {
        /// `first_delay_secs`.
        first: u64,
        /// `max_delay_secs`.
        max: u64,
    },
    /// A delay or age too large to add to a date.
    #[error("{0} is too large; keep delays and ages under 100 years")]
    TooLarge(&'static str),
    /// `jitter` outside 0..=1.
    #[error("jitter must be between 0 and 1 (a fraction of each wait), not {0}")]
    BadJitter(f64),
}

/// A validated retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    first_delay: Duration,
    max_delay: Duration,
    jitter: f64,
    max_attempts: Option<u32>,
    max_age: Option<TimeDelta>,
}

/// Longest delay or age accepted: far beyond any use, and safe to add to a date.
const HUNDRED_YEARS_SECS: u64 = 100 * 365 * 24 * 3600;

impl TryFrom<&RetryConfig> for RetryPolicy {
    type Error = RetryConfigError;

    fn try_from(c: &RetryConfig) -> Result<Self, RetryConfigError> {
        if c.first_delay_secs == 0 {
            return Err(RetryConfigError::ZeroDelay);
        }
        if c.max_delay_secs < c.first_delay_secs {
            return Err(RetryConfigError::MaxBelowFirst {
                first: c.first_delay_secs,
                max: c.max_delay_secs,
            });
        }
        if c.max_delay_secs > HUNDRED_YEARS_SECS {
            return Err(RetryConfigError::TooLarge("max_delay_secs"));
        }
        if !(0.0..=1.0).contains(&c.jitter) {
            return Err(RetryConfigError::BadJitter(c.jitter));
        }
        let max_age = match c.max_age_hours {
            0 => None,
            h if h > HUNDRED_YEARS_SECS / 3600 => {
                return Err(RetryConfigError::TooLarge("max_age_hours"));
            }
            // In range by the check above.
            h => TimeDelta::try_hours(h as i64),
        };
        Ok(RetryPolicy {
            first_delay: Duration::from_secs(c.first_delay_secs),
            max_delay: Duration::from_secs(c.max_delay_secs),
            jitter: c.jitter,
            max_attempts: (c.max_attempts > 0).then_some(c.max_attempts),
            max_age,
        })
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::try_from(&RetryConfig::default()).expect("the defaults are valid")
    }
}

/// What the queue does with a file after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at this instant.
    RetryAt(DateTime<Utc>),
    /// Stop: the file's state is final and an alert is raised.
    GiveUp(GiveUpReason),
}

/// Why a file is not tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The failure is final ([`Disposition::Final`]).
    Final(FailureClass),
    /// The partner's `max_attempts` were made.
    AttemptsExhausted {
        /// Attempts made.
        attempts: u32,
    },
    /// The file has been queued longer than the partner's `max_age_hours`.
    TooOld {
        /// How long it has been queued.
        age: TimeDelta,
    },
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUpReason::Final(class) => write!(f, "{class}: not retried"),
            GiveUpReason::AttemptsExhausted { attempts } => {
                write!(f, "gave up after {attempts} attempts")
            }
            GiveUpReason::TooOld { age } => {
                write!(f, "gave up after {} hours in the queue", age.num_hours())
            }
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed + 1`, after `failed` (at least 1) failed attempts:
    /// `first_delay * 2^(failed-1)`, capped at `max_delay`, less a random part of up to
    /// `jitter` of it drawn from `rng`. Always within `[cap * (1 - jitter), cap]`.
    pub fn delay<R: Rng + ?Sized>(&self, failed: u32, rng: &mut R) -> Duration {
        // 2^(failed-1), saturating: the cap is reached long before.
        let factor = 1u32
            .checked_shl(failed.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let capped = self
            .first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        if self.jitter == 0.0 {
            return capped;
        }
        let cut = capped.mul_f64(self.jitter * rng.random::<f64>());
        capped.saturating_sub(cut)
    }

    /// What to do after a failed attempt: `attempts` is the number of attempts made (this one
    /// included), `queued_at` when the file entered the queue.
    pub fn decide<R: Rng + ?Sized>(
        &self,
        class: FailureClass,
        attempts: u32,
        queued_at: DateTime<Utc>,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> RetryDecision {
        if class.disposition() == Disposition::Final {
            return RetryDecision::GiveUp(GiveUpReason::Final(class));
        }
        if self.max_attempts.is_some_and(|max| attempts >= max) {
            return RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted { attempts });
        }
        let age = now - queued_at;
        if self.max_age.is_some_and(|max| age >= max) {
            return RetryDecision::GiveUp(GiveUpReason::TooOld { age });
        }
        let wait = TimeDelta::from_std(self.delay(attempts, rng)).unwrap_or(TimeDelta::MAX);
        RetryDecision::RetryAt(
            now.checked_add_signed(wait)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::io;

    fn connect(kind: ErrorKind) -> ClientError {
        ClientError::Connect {
            addr: "partner.example:3305".into(),
            error: io::Error::new(kind, "test"),
        }
    }

    fn ended(reason: Option<u8>, by_peer: bool) -> Disconnected {
        Disconnected {
            reason: reason.map(EsidReason),
            by_peer,
            description: "test".into(),
        }
    }

    fn not_sent() -> FileOutcome {
        FileOutcome::NotSent {
            reason: "transfer cut".into(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn connection_failures_are_retried() {
        let cases = [
            (
                ErrorKind::ConnectionRefused,
                FailureClass::ConnectionRefused,
            ),
            (ErrorKind::ConnectionReset, FailureClass::ConnectionLost),
            (ErrorKind::ConnectionAborted, FailureClass::ConnectionLost),
            (ErrorKind::UnexpectedEof, FailureClass::ConnectionLost),
            (ErrorKind::TimedOut, FailureClass::Timeout),
            (ErrorKind::HostUnreachable, FailureClass::Unreachable),
            (ErrorKind::NetworkUnreachable, FailureClass::Unreachable),
            // DNS failures and TLS handshakes refused on the certificate.
            (ErrorKind::Other, FailureClass::Unreachable),
            (ErrorKind::InvalidData, FailureClass::Unreachable),
        ];
        for (kind, class) in cases {
            assert_eq!(classify_call(&connect(kind)), class, "{kind:?}");
            assert_eq!(class.disposition(), Disposition::Retry, "{kind:?}");
        }
    }

    #[test]
    fn bad_address_or_server_name_is_final() {
        let class = classify_call(&connect(ErrorKind::InvalidInput));
        assert_eq!(class, FailureClass::Configuration);
        assert_eq!(class.disposition(), Disposition::Final);
        let class = classify_call(&ClientError::Config("bad".into()));
        assert_eq!(class.disposition(), Disposition::Final);
    }

    #[test]
    fn esid_08_is_retried() {
        let class = classify_call(&ClientError::PartnerFull {
            text: "full".into(),
        });
        assert_eq!(class, FailureClass::PartnerBusy);
        assert_eq!(class.disposition(), Disposition::Retry);
    }

    #[test]
    fn login_refusals_are_final_from_either_side() {
        for code in [3, 4, 10, 11, 12] {
            let reason = EsidReason(code);
            let by_partner = classify_call(&ClientError::Rejected {
                reason,
                text: String::new(),
            });
            let by_us = classify_call(&ClientError::Refused {
                reason,
                text: String::new(),
            });
            for class in [by_partner, by_us] {
                assert_eq!(class, FailureClass::LoginRefused(reason), "ESID {code}");
                assert_eq!(class.disposition(), Disposition::Final, "ESID {code}");
            }
        }
    }

    #[test]
    fn other_session_ends_are_retried() {
        for code in [1, 2, 5, 6, 7, 99] {
            let class = classify_call(&ClientError::Rejected {
                reason: EsidReason(code),
                text: String::new(),
            });
            assert_eq!(class, FailureClass::SessionAborted(EsidReason(code)));
            assert_eq!(class.disposition(), Disposition::Retry, "ESID {code}");
        }
        // ESID 09 from us (our inactivity timer) or the partner is a timeout.
        let class = classify_call(&ClientError::Refused {
            reason: EsidReason::TIME_OUT,
            text: String::new(),
        });
        assert_eq!(class, FailureClass::Timeout);
        let class = classify_call(&ClientError::NotStarted("connection closed".into()));
        assert_eq!(class, FailureClass::ConnectionLost);
        assert_eq!(class.disposition(), Disposition::Retry);
    }

    #[test]
    fn sfna_follows_its_retry_indicator() {
        let normal = ended(Some(0), false);
        for (retry, disposition) in [(true, Disposition::Retry), (false, Disposition::Final)] {
            let outcome = FileOutcome::Rejected {
                reason: SfnaReason::FILE_TOO_BIG,
                retry,
                text: String::new(),
            };
            let FileVerdict::Failed(class) = classify_file(&outcome, &normal) else {
                panic!("an SFNA is a failure");
            };
            assert_eq!(
                class,
                FailureClass::FileRejected {
                    reason: SfnaReason::FILE_TOO_BIG,
                    retry
                }
            );
            assert_eq!(class.disposition(), disposition, "retry {retry}");
        }
    }

    #[test]
    fn efna_and_nerp_are_final() {
        let normal = ended(Some(0), true);
        let efna = FileOutcome::Refused {
            reason: EfnaReason::INVALID_BYTE_COUNT,
            text: String::new(),
        };
        let nerp = FileOutcome::NotDelivered {
            reason: NerpReason(34),
            text: String::new(),
        };
        for outcome in [efna, nerp] {
            let FileVerdict::Failed(class) = classify_file(&outcome, &normal) else {
                panic!("{outcome:?} is a failure");
            };
            assert_eq!(class.disposition(), Disposition::Final, "{outcome:?}");
        }
    }

    #[test]
    fn delivered_and_awaiting_are_not_failures() {
        let normal = ended(Some(0), false);
        assert_eq!(
            classify_file(&FileOutcome::Delivered, &normal),
            FileVerdict::Delivered
        );
        assert_eq!(
            classify_file(&FileOutcome::AwaitingEndResponse, &normal),
            FileVerdict::AwaitingEndResponse
        );
        let rejected_eerp = FileOutcome::EndResponseRejected {
            text: "bad signature".into(),
        };
        assert_eq!(
            classify_file(&rejected_eerp, &normal),
            FileVerdict::AwaitingEndResponse
        );
    }

    #[test]
    fn file_not_sent_is_classed_by_how_the_session_ended() {
        let cases = [
            (ended(None, true), FailureClass::ConnectionLost),
            (ended(Some(99), true), FailureClass::ConnectionLost),
            (ended(Some(9), false), FailureClass::Timeout),
            (ended(Some(8), true), FailureClass::PartnerBusy),
            (
                ended(Some(5), true),
                FailureClass::SessionAborted(EsidReason(5)),
            ),
            (ended(Some(0), false), FailureClass::NotSent),
            (ended(None, false), FailureClass::NotSent),
        ];
        for (end, class) in cases {
            assert_eq!(
                classify_file(&not_sent(), &end),
                FileVerdict::Failed(class),
                "{end:?}"
            );
            assert_eq!(class.disposition(), Disposition::Retry, "{end:?}");
        }
    }

    fn policy(toml_text: &str) -> RetryPolicy {
        let c: RetryConfig = toml::from_str(toml_text).unwrap();
        RetryPolicy::try_from(&c).unwrap()
    }

    #[test]
    fn back_off_doubles_up_to_the_cap_without_jitter() {
        let p = policy("first_delay_secs = 10\nmax_delay_secs = 100\njitter = 0.0");
        let mut rng = StdRng::seed_from_u64(1);
        let secs: Vec<u64> = (1..=7).map(|n| p.delay(n, &mut rng).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 100, 100, 100]);
        // No overflow for absurd attempt counts.
        assert_eq!(p.delay(u32::MAX, &mut rng), Duration::from_secs(100));
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_spreads() {
        let p = policy("first_delay_secs = 60\nmax_delay_secs = 3600\njitter = 0.25");
        let mut rng = StdRng::seed_from_u64(7);
        for failed in 1..=12u32 {
            let cap = Duration::from_secs((60u64 << (failed - 1)).min(3600));
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = p.delay(failed, &mut rng);
                assert!(d <= cap, "attempt {failed}: {d:?} > {cap:?}");
                assert!(
                    d >= cap.mul_f64(0.75),
                    "attempt {failed}: {d:?} < 3/4 of {cap:?}"
                );
                seen.insert(d);
            }
            assert!(seen.len() > 100, "attempt {failed}: jitter did not spread");
        }
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let p = RetryPolicy::default();
        let a: Vec<Duration> = {
            let mut rng = StdRng::seed_from_u64(42);
            (1..10).map(|n| p.delay(n, &mut rng)).collect()
        };
        let b: Vec<Duration> = {
            let mut rng = StdRng::seed_from_u64(42);
            (1..10).map(|n| p.delay(n, &mut rng)).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn decide_retries_until_attempts_are_used_up() {
        let p = policy("first_delay_secs = 60\nmax_attempts = 3\njitter = 0.0\nmax_age_hours = 0");
        let mut rng = StdRng::seed_from_u64(1);
        let queued = utc("2026-06-01T10:00:00Z");
        let now = utc("2026-06-01T10:05:00Z");
        let class = FailureClass::ConnectionRefused;
        assert_eq!(
            p.decide(class, 1, queued, now, &mut rng),
            RetryDecision::RetryAt(utc("2026-06-01T10:06:00Z"))
        );
        assert_eq!(
            p.decide(class, 2, queued, now, &mut rng),
            RetryDecision::RetryAt(utc("2026-06-01T10:07:00Z"))
        );
        assert_eq!(
            p.decide(class, 3, queued, now, &mut rng),
            RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted { attempts: 3 })
        );
    }

    #[test]
    fn decide_gives_up_on_old_files() {
        let p = policy("max_attempts = 0\nmax_age_hours = 24");
        let mut rng = StdRng::seed_from_u64(1);
        let queued = utc("2026-06-01T10:00:00Z");
        assert!(matches!(
            p.decide(
                FailureClass::Timeout,
                50,
                queued,
                utc("2026-06-02T09:59:00Z"),
                &mut rng
            ),
            RetryDecision::RetryAt(_)
        ));
        assert_eq!(
            p.decide(
                FailureClass::Timeout,
                51,
                queued,
                utc("2026-06-02T10:00:00Z"),
                &mut rng
            ),
            RetryDecision::GiveUp(GiveUpReason::TooOld {
                age: TimeDelta::hours(24)
            })
        );
    }

    #[test]
    fn decide_never_retries_a_final_failure() {
        let p = policy("max_attempts = 0\nmax_age_hours = 0");
        let mut rng = StdRng::seed_from_u64(1);
        let t = utc("2026-06-01T10:00:00Z");
        let class = FailureClass::LoginRefused(EsidReason::INVALID_PASSWORD);
        let d = p.decide(class, 1, t, t, &mut rng);
        assert_eq!(d, RetryDecision::GiveUp(GiveUpReason::Final(class)));
        let RetryDecision::GiveUp(why) = d else {
            unreachable!()
        };
        assert_eq!(why.to_string(), "login refused (ESID 04): not retried");
        // With no limits, a retried class goes on for ever.
        assert!(matches!(
            p.decide(
                FailureClass::PartnerBusy,
                10_000,
                t,
                t + TimeDelta::days(365),
                &mut rng
            ),
            RetryDecision::RetryAt(_)
        ));
    }

    #[test]
    fn bad_retry_settings_are_refused() {
        let bad = |t: &str| {
            let c: RetryConfig = toml::from_str(t).unwrap();
            RetryPolicy::try_from(&c).unwrap_err()
        };
        assert_eq!(bad("first_delay_secs = 0"), RetryConfigError::ZeroDelay);
        assert_eq!(
            bad("first_delay_secs = 600\nmax_delay_secs = 60"),
            RetryConfigError::MaxBelowFirst {
                first: 600,
                max: 60
            }
        );
        assert_eq!(bad("jitter = 1.5"), RetryConfigError::BadJitter(1.5));
        assert_eq!(
            bad("max_age_hours = 100000000"),
            RetryConfigError::TooLarge("max_age_hours")
        );
        let e = toml::from_str::<RetryConfig>("max_attempt = 3").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn defaults_are_documented_values() {
        assert_eq!(
            RetryConfig::default(),
            toml::from_str::<RetryConfig>(
                "first_delay_secs = 60\nmax_delay_secs = 3600\njitter = 0.25\n\
                 max_attempts = 10\nmax_age_hours = 72"
            )
            .unwrap()
        );
    }
}
