//! The delivery queue: every alert in the journal goes to every channel at least once.
//!
//! A pass ([`Deliverer::deliver_due`]) asks the journal for the alerts due on each channel
//! (never tried, or a retry whose time has come), makes one attempt each (channels in
//! parallel, each channel's alerts in order), and records the
//! outcome before the next: delivered; failed, tried again after a back-off with jitter
//! ([`DeliverySchedule`]); or given up once the alert is older than `give_up_after_hours`
//! (logged as an error; the alert stays open in the journal for `oftp alerts`). Because the
//! schedule is in the journal, a receiver that is down is retried across daemon restarts; an
//! attempt interrupted by a crash before its outcome was recorded is made again (at least
//! once: receivers deduplicate on the alert id).
//!
//! [`run`] makes a pass at start, every `poll_interval_secs`, and when woken (the watchdogs
//! wake it after raising an alert). Journal calls run on the blocking pool; sends are async
//! with their own timeouts, so nothing blocks the runtime.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use oftp::journal::{DeliveryOutcome, DueDelivery, Journal, JournalError};
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::channel::Channel;
use super::config::DeliveryConfig;
use crate::retry::{RetryConfig, RetryConfigError, RetryPolicy};

/// Alerts asked of the journal per channel and pass.
const BATCH: u32 = 100;

/// When a failed delivery is tried again, and when it is given up.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySchedule {
    backoff: RetryPolicy,
    give_up_after: TimeDelta,
}

impl TryFrom<&DeliveryConfig> for DeliverySchedule {
    type Error = RetryConfigError;

    fn try_from(c: &DeliveryConfig) -> Result<Self, RetryConfigError> {
        // The back-off is the queue's own (capped doubling less a random part); its limits
        // are not used here: a delivery ends by age only.
        let backoff = RetryPolicy::try_from(&RetryConfig {
            first_delay_secs: c.first_delay_secs,
            max_delay_secs: c.max_delay_secs,
            jitter: c.jitter,
            max_attempts: 0,
            max_age_hours: c.give_up_after_hours,
        })?;
        let give_up_after = i64::try_from(c.give_up_after_hours)
            .ok()
            .and_then(TimeDelta::try_hours)
            .ok_or(RetryConfigError::TooLarge("give_up_after_hours"))?;
        Ok(DeliverySchedule {
            backoff,
            give_up_after,
        })
    }
}

impl DeliverySchedule {
    /// Whether an alert raised at `raised_at` is too old to deliver at `now`.
    pub fn too_old(&self, raised_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - raised_at >= self.give_up_after
    }

    /// The outcome to record after attempt number `attempt` (1 for the first) failed at `now`
    /// with `error`: retried after `first_delay * 2^(attempt-1)` (capped, less up to `jitter`
    /// of it), or given up if the alert is too old by then.
    pub fn after_failure<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        raised_at: DateTime<Utc>,
        now: DateTime<Utc>,
        error: String,
        rng: &mut R,
    ) -> DeliveryOutcome {
        if self.too_old(raised_at, now) {
            return DeliveryOutcome::GaveUp {
                error: format!(
                    "not delivered within {} hours; last error: {error}",
                    self.give_up_after.num_hours()
                ),
            };
        }
        let wait = TimeDelta::from_std(self.backoff.delay(attempt, rng)).unwrap_or(TimeDelta::MAX);
        DeliveryOutcome::RetryAt {
            next_attempt_at: now
                .checked_add_signed(wait)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            error,
        }
    }
}

/// Delivers the journal's alerts to the channels.
#[derive(Debug, Clone)]
pub struct Deliverer {
    journal: Arc<dyn Journal>,
    channels: Arc<[Channel]>,
    schedule: DeliverySchedule,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Deliveries that succeeded.
    pub delivered: usize,
    /// Attempts that failed and will be tried again.
    pub retrying: usize,
    /// Deliveries given up.
    pub given_up: usize,
}

impl Deliverer {
    /// A deliverer of `journal`'s alerts to `channels`.
    pub fn new(
        journal: Arc<dyn Journal>,
        channels: Vec<Channel>,
        schedule: DeliverySchedule,
    ) -> Self {
        Deliverer {
            journal,
            channels: channels.into(),
            schedule,
        }
    }

    /// One pass at `now`: every due delivery, one attempt each, each outcome recorded in the
    /// journal before the next attempt.
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> Result<PassReport, JournalError> {
        let mut report = PassReport::default();
        if self.channels.is_empty() {
            return Ok(report);
        }
        let names: Vec<String> = self.channels.iter().map(|c| c.name().to_owned()).collect();
        let due = self
            .journal
            .call(move |j| j.due_alert_deliveries(&names, now, BATCH))
            .await?;
        // Channels in parallel (a receiver that hangs until its timeout holds up only its
        // own deliveries), each channel's alerts in order.
        let passes = self.channels.iter().map(|channel| {
            let mine: Vec<DueDelivery> = due
                .iter()
                .filter(|d| d.channel == channel.name())
                .cloned()
                .collect();
            self.deliver_on(channel, mine, now)
        });
        for pass in futures_util::future::join_all(passes).await {
            let pass = pass?;
            report.delivered += pass.delivered;
            report.retrying += pass.retrying;
            report.given_up += pass.given_up;
        }
        Ok(report)
    }

    /// The due deliveries of one channel, one after the other, each outcome recorded before
    /// the next attempt.
    async fn deliver_on(
        &self,
        channel: &Channel,
        due: Vec<DueDelivery>,
        now: DateTime<Utc>,
    ) -> Result<PassReport, JournalError> {
        let mut report = PassReport::default();
        for d in due {
            let outcome = self.attempt(channel, &d, now).await;
            match &outcome {
                DeliveryOutcome::Delivered => report.delivered += 1,
                DeliveryOutcome::RetryAt { .. } => report.retrying += 1,
                DeliveryOutcome::GaveUp { .. } => report.given_up += 1,
            }
            let (id, name) = (d.alert.id, d.channel);
            self.journal
                .call(move |j| j.record_alert_delivery(id, &name, &outcome, now))
                .await?;
        }
        Ok(report)
    }

    /// One attempt to deliver `d` on `channel` (none if the alert is too old), logged.
    async fn attempt(
        &self,
        channel: &Channel,
        d: &DueDelivery,
        now: DateTime<Utc>,
    ) -> DeliveryOutcome {
        let (id, name) = (d.alert.id, channel.name());
        if self.schedule.too_old(d.alert.raised_at, now) {
            tracing::error!(
                alert = id,
                channel = name,
                attempts = d.attempts,
                "alert {id} ({}) given up on channel {name}: not delivered within the configured \
                 give_up_after_hours; it stays open (oftp alerts)",
                d.alert.alert.kind.as_str()
            );
            return DeliveryOutcome::GaveUp {
                error: "older than give_up_after_hours".to_owned(),
            };
        }
        match channel.send(&d.alert).await {
            Ok(()) => {
                tracing::info!(alert = id, channel = name, "alert delivered");
                DeliveryOutcome::Delivered
            }
            Err(e) => {
                let outcome = self.schedule.after_failure(
                    d.attempts + 1,
                    d.alert.raised_at,
                    now,
                    e.text.clone(),
                    &mut rand::rng(),
                );
                let next = match &outcome {
                    DeliveryOutcome::RetryAt {
                        next_attempt_at, ..
                    } => next_attempt_at.to_rfc3339(),
                    _ => "never".to_owned(),
                };
                if e.refused {
                    tracing::error!(alert = id, channel = name, %next, "alert refused by the channel (check its configuration): {e}");
                } else {
                    tracing::warn!(alert = id, channel = name, %next, "alert not delivered, will retry: {e}");
                }
                outcome
            }
        }
    }
}

/// Runs passes until `shutdown`: at start, every `poll`, and when `wake` is notified.
pub async fn run(
    deliverer: Deliverer,
    poll: Duration,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        match deliverer.deliver_due(Utc::now()).await {
            Ok(r) if r != PassReport::default() => tracing::debug!(?r, "alert delivery pass"),
            Ok(_) => {}
            Err(e) => tracing::error!("alert delivery: {e}; trying again in {poll:?}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
            _ = wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + s, 0).unwrap()
    }

    fn schedule(jitter: f64) -> DeliverySchedule {
        DeliverySchedule::try_from(&DeliveryConfig {
            first_delay_secs: 30,
            max_delay_secs: 300,
            jitter,
            give_up_after_hours: 2,
        })
        .unwrap()
    }

    fn wait(o: &DeliveryOutcome, now: DateTime<Utc>) -> i64 {
        match o {
            DeliveryOutcome::RetryAt {
                next_attempt_at, ..
            } => (*next_attempt_at - now).num_seconds(),
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn retries_double_from_the_first_delay_up_to_the_cap() {
        let s = schedule(0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let waits: Vec<i64> = (1..=6)
            .map(|n| {
                wait(
                    &s.after_failure(n, t(0), t(10), "down".into(), &mut rng),
                    t(10),
                )
            })
            .collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300]);
    }

    #[test]
    fn jitter_takes_up_to_its_fraction_off_and_varies() {
        let s = schedule(0.5);
        let mut rng = StdRng::seed_from_u64(7);
        let waits: Vec<i64> = (0..50)
            .map(|_| {
                wait(
                    &s.after_failure(3, t(0), t(0), "down".into(), &mut rng),
                    t(0),
                )
            })
            .collect();
        assert!(waits.iter().all(|w| (60..=120).contains(w)), "{waits:?}");
        assert!(
            waits.iter().any(|w| *w != waits[0]),
            "jitter spreads retries: {waits:?}"
        );
    }

    #[test]
    fn an_alert_older_than_the_give_up_age_is_given_up() {
        let s = schedule(0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let o = s.after_failure(4, t(0), t(2 * 3600 - 1), "HTTP 503".into(), &mut rng);
        assert_eq!(
            wait(&o, t(2 * 3600 - 1)),
            240,
            "just before the age: retried"
        );
        match s.after_failure(5, t(0), t(2 * 3600), "HTTP 503".into(), &mut rng) {
            DeliveryOutcome::GaveUp { error } => {
                assert!(
                    error.contains("within 2 hours") && error.contains("HTTP 503"),
                    "{error}"
                )
            }
            other => panic!("expected to give up, got {other:?}"),
        }
        assert!(!s.too_old(t(0), t(7199)) && s.too_old(t(0), t(7200)));
    }

    #[test]
    fn a_schedule_with_unusable_numbers_is_refused() {
        for bad in [
            DeliveryConfig {
                first_delay_secs: 0,
                ..DeliveryConfig::default()
            },
            DeliveryConfig {
                jitter: 1.5,
                ..DeliveryConfig::default()
            },
            DeliveryConfig {
                max_delay_secs: 1,
                ..DeliveryConfig::default()
            },
        ] {
            assert!(DeliverySchedule::try_from(&bad).is_err(), "{bad:?}");
        }
    }
}
