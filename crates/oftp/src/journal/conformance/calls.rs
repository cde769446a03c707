//! The rules of the gateway's calls ([`Journal::record_call`], [`Journal::last_call`]) and of
//! a partner's earliest due file ([`Journal::next_due`]), run by [`journal`](super::journal)
//! and [`reopened`](super::reopened). Each case uses partners of its own.

use super::queue::{send, t};
use crate::journal::{CallRecord, Journal, QueueChange, QueueState};

fn call(partner: &str, start: i64, ok: bool, text: &str) -> CallRecord {
    CallRecord {
        partner: partner.into(),
        started_at: t(start),
        ended_at: t(start + 5),
        ok,
        text: text.into(),
    }
}

fn last(j: &dyn Journal, partner: &str) -> Option<CallRecord> {
    j.last_call(partner).expect("last_call")
}

/// Runs every rule of this module against `j`.
pub(super) fn rules(j: &dyn Journal) {
    the_last_call_is_the_one_that_started_last(j);
    calls_of_partners_are_kept_apart(j);
    next_due_is_the_earliest_queued_file(j);
}

fn the_last_call_is_the_one_that_started_last(j: &dyn Journal) {
    assert_eq!(
        last(j, "CL1"),
        None,
        "a partner never called has no last call"
    );
    j.record_call(&call("CL1", 10, false, "connection refused"))
        .expect("record_call");
    assert_eq!(
        last(j, "CL1"),
        Some(call("CL1", 10, false, "connection refused"))
    );
    j.record_call(&call("CL1", 60, true, "1 sent"))
        .expect("record_call");
    // Recorded after, but started before: not the last call.
    j.record_call(&call("CL1", 30, true, "late record"))
        .expect("record_call");
    assert_eq!(
        last(j, "CL1"),
        Some(call("CL1", 60, true, "1 sent")),
        "the last call is the one that started last, whatever the order of recording"
    );
    j.record_call(&call("CL1", 60, false, "same start"))
        .expect("record_call");
    assert_eq!(
        last(j, "CL1").map(|c| c.text),
        Some("same start".into()),
        "of equal start times, the one recorded last"
    );
}

fn calls_of_partners_are_kept_apart(j: &dyn Journal) {
    j.record_call(&call("CL2", 10, true, "a"))
        .expect("record_call");
    j.record_call(&call("CL3  ", 20, true, "b"))
        .expect("record_call");
    assert_eq!(last(j, "CL2").map(|c| c.text), Some("a".into()));
    assert_eq!(
        last(j, "CL3").map(|c| (c.partner, c.text)),
        Some(("CL3".into(), "b".into())),
        "partner names are stored without trailing blanks"
    );
    assert_eq!(last(j, "CL3 ").map(|c| c.text), Some("b".into()));
}

fn next_due_is_the_earliest_queued_file(j: &dyn Journal) {
    let due = |p: &str| j.next_due(p).expect("next_due");
    assert_eq!(due("ND1"), None, "no queued file, nothing due");
    let a = j.enqueue(&send("ND1", "a"), t(100)).expect("enqueue");
    let b = j.enqueue(&send("ND1", "b"), t(50)).expect("enqueue");
    j.enqueue(&send("ND2", "c"), t(10)).expect("enqueue");
    assert_eq!(
        due("ND1"),
        Some(t(50)),
        "the earliest of the partner's own rows"
    );
    j.claim_due("ND1", t(60), 1).expect("claim_due");
    assert_eq!(
        due("ND1"),
        Some(t(100)),
        "a row in transfer is not waiting for a call"
    );
    j.transition(
        b,
        &QueueChange::to(QueueState::Queued, t(61)).due_at(t(500)),
    )
    .expect("transition");
    j.transition(a, &QueueChange::to(QueueState::Cancelled, t(62)))
        .expect("transition");
    assert_eq!(
        due("ND1"),
        Some(t(500)),
        "a requeued row counts at its new due time; a cancelled one not at all"
    );
}

/// Records a call for [`check_reopened`].
pub(super) fn record(j: &dyn Journal) -> CallRecord {
    let c = call("CLRE", 42, true, "before reopening");
    j.record_call(&c).expect("record_call");
    c
}

/// What [`record`] recorded is there after reopening.
pub(super) fn check_reopened(j: &dyn Journal, recorded: &CallRecord) {
    assert_eq!(
        last(j, &recorded.partner).as_ref(),
        Some(recorded),
        "the last call survives reopening"
    );
}
