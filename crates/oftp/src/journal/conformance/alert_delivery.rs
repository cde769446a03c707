//! The rules of alert delivery and of alerts raised once per condition (see
//! [`alert_delivery`](crate::journal::alert_delivery)), run by [`journal`](super::journal) and
//! [`reopened`](super::reopened). The cases use channel names and keys of their own; other
//! cases' alerts may be listed as due too, so each case looks only at its own alerts.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::journal::{AlertKind, DeliveryOutcome, Journal, NewAlert, RaiseAgain};

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0)
        .single()
        .expect("a valid time")
        + Duration::seconds(seconds)
}

fn alert(text: &str) -> NewAlert {
    NewAlert {
        kind: AlertKind::CertificateExpiring,
        partner: Some("AD".into()),
        file: None,
        text: text.into(),
    }
}

/// The due deliveries of `channel` at `now` among `ids`, as (alert id, attempts).
fn due(j: &dyn Journal, channel: &str, now: DateTime<Utc>, ids: &[i64]) -> Vec<(i64, u32)> {
    j.due_alert_deliveries(&[channel.to_owned()], now, 10_000)
        .expect("due_alert_deliveries")
        .into_iter()
        .inspect(|d| assert_eq!(d.channel, channel, "a due delivery names its channel"))
        .filter(|d| ids.contains(&d.alert.id))
        .map(|d| (d.alert.id, d.attempts))
        .collect()
}

/// Runs every rule against `j`.
pub(super) fn rules(j: &dyn Journal) {
    raised_once_per_key(j);
    raised_again_after_acknowledgement(j);
    deliveries_per_channel(j);
}

fn raised_once_per_key(j: &dyn Journal) {
    let first = j
        .raise_alert_once("ad:once", &alert("once"), t(0), RaiseAgain::Never)
        .expect("raise_alert_once")
        .expect("a new key raises an alert");
    let open = j.open_alerts().expect("open_alerts");
    let raised = open
        .iter()
        .find(|a| a.id == first)
        .expect("the alert raised for a key is an ordinary open alert");
    assert_eq!(
        (raised.alert.text.as_str(), raised.raised_at),
        ("once", t(0))
    );
    assert_eq!(
        j.raise_alert_once("ad:once", &alert("again"), t(60), RaiseAgain::Never)
            .expect("raise_alert_once"),
        None,
        "a key with an alert on record raises no second one"
    );
    j.acknowledge_alert(first, t(70)).expect("acknowledge");
    assert_eq!(
        j.raise_alert_once("ad:once", &alert("again"), t(10_000), RaiseAgain::Never)
            .expect("raise_alert_once"),
        None,
        "with RaiseAgain::Never, acknowledging does not allow a second alert"
    );
    assert!(j.clear_alert_key("ad:once").expect("clear_alert_key"));
    assert!(
        !j.clear_alert_key("ad:once").expect("clear_alert_key"),
        "a cleared key is no longer on record"
    );
    let second = j
        .raise_alert_once("ad:once", &alert("back"), t(20_000), RaiseAgain::Never)
        .expect("raise_alert_once")
        .expect("a cleared key raises a new alert");
    assert!(second > first);
    assert!(
        j.raise_alert_once("ad:other", &alert("other"), t(0), RaiseAgain::Never)
            .expect("raise_alert_once")
            .is_some(),
        "keys are independent"
    );
}

fn raised_again_after_acknowledgement(j: &dyn Journal) {
    let day = Duration::days(1);
    let again = RaiseAgain::AfterAcknowledged(day);
    let first = j
        .raise_alert_once("ad:ack", &alert("expiring"), t(0), again)
        .expect("raise_alert_once")
        .expect("raised");
    assert_eq!(
        j.raise_alert_once("ad:ack", &alert("expiring"), t(3 * 86_400), again)
            .expect("raise_alert_once"),
        None,
        "an open (unacknowledged) alert is not raised again, however old"
    );
    j.acknowledge_alert(first, t(100)).expect("acknowledge");
    assert_eq!(
        j.raise_alert_once("ad:ack", &alert("expiring"), t(100 + 86_399), again)
            .expect("raise_alert_once"),
        None,
        "not before the wait after the acknowledgement"
    );
    let second = j
        .raise_alert_once("ad:ack", &alert("expiring"), t(100 + 86_400), again)
        .expect("raise_alert_once")
        .expect("raised again once acknowledged for the wait");
    assert_eq!(
        j.raise_alert_once("ad:ack", &alert("expiring"), t(10 * 86_400), again)
            .expect("raise_alert_once"),
        None,
        "the new alert is the key's alert (open again)"
    );
    assert!(second > first);
}

fn deliveries_per_channel(j: &dyn Journal) {
    let a = j.raise_alert(&alert("deliver a"), t(0)).expect("raise");
    let b = j.raise_alert(&alert("deliver b"), t(1)).expect("raise");
    let ids = [a, b];
    assert_eq!(
        due(j, "ad-hook", t(2), &ids),
        [(a, 0), (b, 0)],
        "a new alert is due at once on every channel, oldest first"
    );
    assert_eq!(due(j, "ad-mail", t(2), &ids), [(a, 0), (b, 0)]);

    j.record_alert_delivery(a, "ad-hook", &DeliveryOutcome::Delivered, t(3))
        .expect("record");
    let retry = DeliveryOutcome::RetryAt {
        next_attempt_at: t(60),
        error: "connection refused".into(),
    };
    j.record_alert_delivery(b, "ad-hook", &retry, t(3))
        .expect("record");
    assert_eq!(
        due(j, "ad-hook", t(59), &ids),
        [],
        "delivered is done; a retry is not due before its time"
    );
    assert_eq!(
        due(j, "ad-hook", t(60), &ids),
        [(b, 1)],
        "a retry is due at its time, with its attempts"
    );
    assert_eq!(
        due(j, "ad-mail", t(60), &ids),
        [(a, 0), (b, 0)],
        "channels are independent"
    );
    j.record_alert_delivery(b, "ad-hook", &retry, t(60))
        .expect("record");
    j.record_alert_delivery(
        b,
        "ad-hook",
        &DeliveryOutcome::GaveUp {
            error: "too old".into(),
        },
        t(61),
    )
    .expect("record");
    assert_eq!(
        due(j, "ad-hook", t(100_000), &ids),
        [],
        "given up is never due again"
    );
    let both = j
        .due_alert_deliveries(&["ad-hook".to_owned(), "ad-mail".to_owned()], t(61), 10_000)
        .expect("due");
    assert_eq!(
        both.iter()
            .filter(|d| ids.contains(&d.alert.id))
            .map(|d| (d.alert.id, d.channel.as_str()))
            .collect::<Vec<_>>(),
        [(a, "ad-mail"), (b, "ad-mail")],
        "several channels at once"
    );
    j.record_alert_delivery(i64::MAX, "ad-hook", &DeliveryOutcome::Delivered, t(3))
        .expect("an unknown alert id is ignored");
    let limited = j
        .due_alert_deliveries(&["ad-limit".to_owned()], t(61), 1)
        .expect("due");
    assert_eq!(limited.len(), 1, "at most `limit` per channel");
}

/// Records a pending delivery for [`check_reopened`]; returns its alert id.
pub(super) fn record(j: &dyn Journal) -> i64 {
    let id = j.raise_alert(&alert("reopen"), t(0)).expect("raise");
    j.record_alert_delivery(
        id,
        "ad-reopen",
        &DeliveryOutcome::RetryAt {
            next_attempt_at: t(30),
            error: "down".into(),
        },
        t(1),
    )
    .expect("record");
    j.raise_alert_once("ad:reopen", &alert("key"), t(0), RaiseAgain::Never)
        .expect("raise_alert_once");
    id
}

/// What [`record`] recorded is there after reopening.
pub(super) fn check_reopened(j: &dyn Journal, id: i64) {
    assert_eq!(
        due(j, "ad-reopen", t(29), &[id]),
        [],
        "a pending retry survives reopening"
    );
    assert_eq!(due(j, "ad-reopen", t(30), &[id]), [(id, 1)]);
    assert_eq!(
        j.raise_alert_once("ad:reopen", &alert("key"), t(5), RaiseAgain::Never)
            .expect("raise_alert_once"),
        None,
        "a condition's alert survives reopening"
    );
}
