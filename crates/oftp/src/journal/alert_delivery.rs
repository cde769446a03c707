//! Delivering alerts to people, and raising an alert once per condition (issue #11 §5): the
//! domain types of the [`Journal`](super::Journal) operations that the gateway's alert
//! channels and watchdogs use.
//!
//! **Delivery.** Every alert row is delivered to every configured channel (a webhook, a mail
//! recipient list), each channel named by the operator. The journal keeps, per alert and
//! channel, how many attempts were made, when the next one is due and how it ended, so a
//! receiver that is down is retried across daemon restarts and an alert is never lost
//! between being raised and being delivered. [`due_alert_deliveries`] lists what is due;
//! [`record_alert_delivery`] records an attempt. An alert that no channel row exists for yet
//! is due at once (a new alert, or a channel added to the configuration).
//!
//! **Raising once.** A watchdog looks at the same condition over and over (a file without
//! its EERP, a certificate near its end, a full disk); [`raise_alert_once`] raises an alert
//! for a condition's key only if none is on record for it, so one condition is one alert,
//! not one per sweep, also across restarts. [`clear_alert_key`] forgets a condition that is
//! over (the disk has room again), so its next occurrence is a new alert.
//!
//! [`due_alert_deliveries`]: super::Journal::due_alert_deliveries
//! [`record_alert_delivery`]: super::Journal::record_alert_delivery
//! [`raise_alert_once`]: super::Journal::raise_alert_once
//! [`clear_alert_key`]: super::Journal::clear_alert_key

use chrono::{DateTime, TimeDelta, Utc};

use super::Alert;

/// An alert due for delivery to one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// The alert.
    pub alert: Alert,
    /// The channel's configured name.
    pub channel: String,
    /// Attempts made so far to deliver it to this channel.
    pub attempts: u32,
}

/// How an attempt to deliver an alert to a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The channel took it (HTTP 2xx, the mail server accepted the message). Final.
    Delivered,
    /// It failed and is tried again at `next_attempt_at`.
    RetryAt {
        /// When it is next due.
        next_attempt_at: DateTime<Utc>,
        /// What went wrong (no secrets).
        error: String,
    },
    /// It failed for good (refused, or retried past the configured age). Final.
    GaveUp {
        /// Why.
        error: String,
    },
}

/// When [`raise_alert_once`](super::Journal::raise_alert_once) raises an alert for a key that
/// already has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaiseAgain {
    /// Never while the key is on record (until [`clear_alert_key`](super::Journal::clear_alert_key)).
    Never,
    /// When the key's alert was acknowledged at least this long ago: a condition a person
    /// acknowledged but that is still there comes back.
    AfterAcknowledged(TimeDelta),
}
