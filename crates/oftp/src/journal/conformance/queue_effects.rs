//! Rules of the queue's effects beyond its own operations: end responses recorded by the
//! runtime settle the rows sent under their identity, and the operator's overview (depth by
//! state, recent alerts).

use super::key;
use super::queue::{change, enqueue, ids, ids_of, send, show, t};
use crate::journal::{
    AlertKind, Direction, EndResponseEntry, Journal, NewAlert, QueueChange, QueueState,
};

pub(super) fn rules(j: &dyn Journal) {
    end_responses_settle_sent_files(j);
    operator_overview(j);
}

/// A received EERP/NERP settles the queue row sent under its identity, in whatever session
/// it arrives (RFC 5024 4.3.6), in the same transaction that records it.
fn end_responses_settle_sent_files(j: &dyn Journal) {
    let response = |direction, key: &crate::journal::FileKey, negative, at| EndResponseEntry {
        direction,
        key: key.clone(),
        destination: "ORIG".into(),
        negative,
        partner: "QRP".into(),
        at,
    };
    // Sent under `key`, claimed at t(1), EFPA at t(2).
    let sent = |name: &str, key: &crate::journal::FileKey| {
        let id = enqueue(j, &send("QR", name), t(0));
        assert_eq!(ids(&j.claim_due("QR", t(1), 1).expect("claim_due")), [id]);
        change(
            j,
            id,
            QueueChange::to(QueueState::Sent, t(2)).key(key.clone()),
        );
        id
    };
    let alerts_before = j.open_alerts().expect("open_alerts");

    let (k_eerp, k_nerp) = (key("QR.EERP", 1), key("QR.NERP", 1));
    let delivered = sent("eerp.edi", &k_eerp);
    let refused = sent("nerp.edi", &k_nerp);
    j.record_end_response(&response(Direction::Received, &k_eerp, None, t(50)))
        .expect("record_end_response");
    let detail = show(j, delivered);
    assert_eq!(
        (detail.file.state, detail.file.updated_at),
        (QueueState::Delivered, t(50)),
        "an EERP received makes the sent row delivered at its time"
    );
    assert_eq!(
        detail.history.last().map(|h| (h.from, h.to, h.at)),
        Some((Some(QueueState::Sent), QueueState::Delivered, t(50))),
        "the delivery is in the history"
    );
    assert_eq!(
        j.open_alerts().expect("open_alerts"),
        alerts_before,
        "an EERP raises no alert"
    );

    let nerp = Some((22, "no such mailbox".to_owned()));
    j.record_end_response(&response(Direction::Received, &k_nerp, nerp, t(60)))
        .expect("record_end_response");
    let row = show(j, refused).file;
    assert_eq!(
        (row.state, row.updated_at),
        (QueueState::NotDelivered, t(60)),
        "a NERP received makes the sent row not delivered"
    );
    let error = row.last_error.expect("a NERP is the row's last error");
    assert!(
        error.contains("NERP 22") && error.contains("no such mailbox"),
        "the last error names the NERP: {error}"
    );
    let mut raised = j.open_alerts().expect("open_alerts");
    raised.retain(|a| !alerts_before.contains(a));
    assert_eq!(raised.len(), 1, "a NERP raises one alert: {raised:?}");
    let alert = &raised[0].alert;
    assert_eq!(
        (alert.kind, alert.partner.as_deref(), raised[0].raised_at),
        (AlertKind::NotDelivered, Some("QR"), t(60)),
        "the alert is a not-delivered one for the row's partner, at the NERP's time"
    );
    assert!(
        alert
            .text
            .contains(&format!("oftp transfer retry {refused}")),
        "the alert says what to do: {}",
        alert.text
    );

    // Our own EERP, a repeat, an identity no sent row has: no change, no error.
    let k_ours = key("QR.OURS", 1);
    let ours = sent("ours.edi", &k_ours);
    j.record_end_response(&response(Direction::Sent, &k_ours, None, t(70)))
        .expect("record_end_response");
    assert_eq!(
        show(j, ours).file.state,
        QueueState::Sent,
        "an end response we send settles no queue row"
    );
    j.record_end_response(&response(Direction::Received, &k_eerp, None, t(80)))
        .expect("a repeated EERP is recorded");
    assert_eq!(
        show(j, delivered).file.updated_at,
        t(50),
        "a repeat changes nothing"
    );
    j.record_end_response(&response(
        Direction::Received,
        &key("QR.NONE", 1),
        None,
        t(80),
    ))
    .expect("an EERP for no queued file is recorded");

    // A row back in the queue under the same identity (a restart kept it) is not settled by
    // it: only the file the partner stored (EFPA) is.
    let k_claimed = key("QR.CLAIMED", 1);
    let claimed = enqueue(j, &send("QR", "claimed.edi"), t(0));
    j.claim_due("QR", t(1), 1).expect("claim_due");
    change(
        j,
        claimed,
        QueueChange::to(QueueState::Queued, t(2)).key(k_claimed.clone()),
    );
    j.record_end_response(&response(Direction::Received, &k_claimed, None, t(90)))
        .expect("record_end_response");
    assert_eq!(
        show(j, claimed).file.state,
        QueueState::Queued,
        "a queued row is not settled by an end response"
    );
}

/// `queue_depth` counts every row by state; `recent_alerts` lists open and acknowledged
/// alerts, newest first.
fn operator_overview(j: &dyn Journal) {
    let depth = |j: &dyn Journal, state: QueueState| {
        j.queue_depth()
            .expect("queue_depth")
            .into_iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| n)
    };
    let before = (
        depth(j, QueueState::Queued),
        depth(j, QueueState::Cancelled),
    );
    let a = enqueue(j, &send("DEPTH", "A"), t(0));
    enqueue(j, &send("DEPTH", "B"), t(0));
    j.cancel_transfer(a, t(1))
        .expect("cancel")
        .expect("the row exists");
    assert_eq!(
        (
            depth(j, QueueState::Queued),
            depth(j, QueueState::Cancelled)
        ),
        (before.0 + 1, before.1 + 1),
        "the depth counts each row once, in its present state"
    );
    let shown = j.queue_depth().expect("queue_depth");
    j.check_writable()
        .expect("an open journal takes writes (check_writable)");
    assert_eq!(
        j.queue_depth().expect("queue_depth"),
        shown,
        "the write probe changes nothing the queue shows"
    );
    let order: Vec<QueueState> = j
        .queue_depth()
        .expect("queue_depth")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let mut sorted = order.clone();
    sorted.sort_by_key(|s| QueueState::ALL.iter().position(|x| x == s));
    assert_eq!(order, sorted, "states in the order of QueueState::ALL");
    assert!(
        j.queue_depth()
            .expect("queue_depth")
            .iter()
            .all(|(_, n)| *n > 0),
        "states without rows are left out"
    );

    let alert = |text: &str| NewAlert {
        kind: AlertKind::PartnerUnreachable,
        partner: Some("DEPTH".into()),
        file: None,
        text: text.into(),
    };
    let old = j.raise_alert(&alert("old"), t(0)).expect("raise_alert");
    let new = j.raise_alert(&alert("new"), t(1)).expect("raise_alert");
    j.acknowledge_alert(old, t(2))
        .expect("acknowledge")
        .expect("the alert exists");
    let recent = j.recent_alerts(2).expect("recent_alerts");
    assert_eq!(
        ids_of(&recent),
        [new, old],
        "newest first, acknowledged ones too"
    );
    assert_eq!(recent[1].acknowledged_at, Some(t(2)));
    assert_eq!(
        j.recent_alerts(1).expect("recent_alerts").len(),
        1,
        "at most limit"
    );
}
