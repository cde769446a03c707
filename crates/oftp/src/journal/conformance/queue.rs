//! The rules of the outbound queue and of alerts (the queue and alert operations of
//! [`Journal`]), run by [`journal`](super::journal) and [`reopened`](super::reopened). Each
//! case uses partners of its own, so cases do not see each other's rows.

use std::collections::HashSet;

use crate::identity::OdetteId;
use std::path::PathBuf;

use chrono::{DateTime, Duration, TimeZone, Utc};
use oftp_proto::codec::FileFormat;

use super::key;
use crate::journal::{
    Alert, AlertKind, Journal, JournalError, NewAlert, QueueChange, QueueState, QueuedFile,
    QueuedSend, TransferDetail, TransferFilter, Transition, TransitionRefused,
};

/// The clock of the cases: `t(0)` and seconds after it.
pub(super) fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 6, 7, 0, 0)
        .single()
        .expect("a valid time")
        + Duration::seconds(seconds)
}

pub(super) fn send(partner: &str, name: &str) -> QueuedSend {
    QueuedSend {
        partner: partner.into(),
        source_path: PathBuf::from(format!("/out/{partner}/.queue/1/{name}")),
        virtual_file_name: name.to_uppercase(),
        destination: Some(OdetteId::new("DEST").expect("a valid code")),
        originator: None,
        format: FileFormat::Variable,
        max_record_len: 512,
        user_data: "U".into(),
        description: "invoice".into(),
    }
}

pub(super) fn enqueue(j: &dyn Journal, send: &QueuedSend, at: DateTime<Utc>) -> i64 {
    j.enqueue(send, at).expect("enqueue")
}

pub(super) fn show(j: &dyn Journal, id: i64) -> TransferDetail {
    j.transfer(id).expect("transfer").expect("the row exists")
}

pub(super) fn change(j: &dyn Journal, id: i64, c: QueueChange) -> QueuedFile {
    j.transition(id, &c)
        .expect("transition")
        .expect("the row exists")
}

pub(super) fn ids(rows: &[QueuedFile]) -> Vec<i64> {
    rows.iter().map(|r| r.id).collect()
}

fn states(history: &[Transition]) -> Vec<(Option<QueueState>, QueueState)> {
    history.iter().map(|h| (h.from, h.to)).collect()
}

fn refused(result: Result<Option<QueuedFile>, JournalError>, from: QueueState, to: QueueState) {
    match result {
        Err(JournalError::TransitionRefused { refused, .. }) => {
            assert_eq!(
                refused,
                TransitionRefused { from, to },
                "the refusal names both states"
            )
        }
        other => panic!("{from} -> {to} must be refused, got {other:?}"),
    }
}

/// Runs every queue and alert rule against `j`.
pub(super) fn rules(j: &dyn Journal) {
    enqueueing(j);
    claiming(j);
    claims_never_overlap(j);
    transitions(j);
    operator_retry_and_cancel(j);
    requeue_after_a_restart(j);
    listing(j);
    alerts(j);
    super::queue_effects::rules(j);
    rows_that_do_not_exist(j);
}

fn enqueueing(j: &dyn Journal) {
    let s = send("QE", "a.edi");
    let id = enqueue(j, &s, t(0));
    assert!(id > 0, "queue ids are positive");
    let expected = QueuedFile {
        id,
        send: s.clone(),
        state: QueueState::Queued,
        attempts: 0,
        last_error: None,
        key: None,
        queued_at: t(0),
        next_attempt_at: t(0),
        updated_at: t(0),
    };
    let first = show(j, id);
    assert_eq!(
        first.file, expected,
        "enqueue records the send, queued and due at once"
    );
    assert_eq!(
        first.history,
        [Transition {
            at: t(0),
            from: None,
            to: QueueState::Queued,
            note: None
        }],
        "the history starts with the enqueueing"
    );
    let mut padded = s.clone();
    padded.partner = "QE   ".into();
    assert_eq!(
        j.enqueue(&padded, t(60)).expect("enqueue again"),
        id,
        "enqueueing the same taken-over file again gives the same row"
    );
    assert_eq!(show(j, id), first, "enqueueing again changes nothing");
    let other = enqueue(j, &send("QE", "b.edi"), t(0));
    assert_ne!(other, id, "another file is another row");
    let mut elsewhere = s;
    elsewhere.partner = "QE2".into();
    assert_ne!(
        enqueue(j, &elsewhere, t(0)),
        id,
        "the same path for another partner is another row"
    );
}

fn claiming(j: &dyn Journal) {
    let early = enqueue(j, &send("QC", "early"), t(0));
    let late = enqueue(j, &send("QC", "late"), t(5));
    let later = enqueue(j, &send("QC", "later"), t(0));
    change(
        j,
        later,
        QueueChange::to(QueueState::Queued, t(1)).due_at(t(3600)),
    );
    let gone = enqueue(j, &send("QC", "gone"), t(0));
    j.cancel_transfer(gone, t(2)).expect("cancel");
    let foreign = enqueue(j, &send("QC-OTHER", "x"), t(0));

    assert!(
        j.claim_due("QC", t(-1), 10).expect("claim").is_empty(),
        "nothing is due before its time"
    );
    let claimed = j.claim_due("QC  ", t(10), 1).expect("claim");
    assert_eq!(
        ids(&claimed),
        [early],
        "a claim takes at most `limit` rows, the earliest due first"
    );
    let c = &claimed[0];
    assert_eq!(
        (c.state, c.attempts, c.updated_at),
        (QueueState::InTransfer, 1, t(10)),
        "a claimed row is in transfer with one more attempt"
    );
    assert_eq!(
        ids(&j.claim_due("QC", t(10), 10).expect("claim")),
        [late],
        "the next claim takes the next due row"
    );
    assert!(
        j.claim_due("QC", t(10), 10).expect("claim").is_empty(),
        "a row in transfer, one not yet due, a cancelled one are never claimed"
    );
    assert_eq!(
        ids(&j.claim_due("QC", t(3600), 10).expect("claim")),
        [later],
        "a row is claimed once due"
    );
    assert_eq!(
        show(j, gone).file.state,
        QueueState::Cancelled,
        "a cancelled row cannot be claimed"
    );
    assert_eq!(
        show(j, foreign).file.state,
        QueueState::Queued,
        "other partners' rows are not claimed"
    );
    assert_eq!(
        states(&show(j, early).history),
        [
            (None, QueueState::Queued),
            (Some(QueueState::Queued), QueueState::InTransfer)
        ],
        "a claim is a transition in the history"
    );
}

fn claims_never_overlap(j: &dyn Journal) {
    let all: HashSet<i64> = (0..24)
        .map(|i| enqueue(j, &send("QX", &format!("f{i}")), t(0)))
        .collect();
    // Claims until nothing is left; bounded, so a backend that hands out rows again fails
    // here instead of looping for ever.
    let claim_all = || {
        let mut mine = Vec::new();
        for _ in 0..=all.len() {
            let got = j.claim_due("QX", t(1), 2).expect("claim");
            if got.is_empty() {
                return mine;
            }
            mine.extend(ids(&got));
        }
        panic!("claims still return rows after every row was claimed");
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(claim_all);
        let b = s.spawn(claim_all);
        (a.join().expect("claimer"), b.join().expect("claimer"))
    });
    let union: HashSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(
        a.len() + b.len(),
        union.len(),
        "two concurrent claims never take the same row"
    );
    assert_eq!(union, all, "concurrent claims together take every due row");
}

fn transitions(j: &dyn Journal) {
    let id = enqueue(j, &send("QT", "t"), t(0));
    j.claim_due("QT", t(1), 1).expect("claim");
    let back = change(
        j,
        id,
        QueueChange::to(QueueState::Queued, t(2))
            .error("connection refused")
            .due_at(t(60)),
    );
    assert_eq!(
        (
            back.state,
            back.last_error.as_deref(),
            back.next_attempt_at,
            back.updated_at
        ),
        (QueueState::Queued, Some("connection refused"), t(60), t(2)),
        "a failed attempt keeps its error and the time of the next one"
    );
    j.claim_due("QT", t(60), 1).expect("claim");
    let k = key("QT.WIRE", 1);
    let sent = change(
        j,
        id,
        QueueChange::to(QueueState::Sent, t(61)).key(k.clone()),
    );
    assert_eq!(
        (
            sent.state,
            sent.attempts,
            sent.key.as_ref(),
            sent.last_error.as_deref()
        ),
        (QueueState::Sent, 2, Some(&k), Some("connection refused")),
        "EFPA: sent under its wire identity; attempts and the last error are kept"
    );
    assert_eq!(
        j.transfer_by_key(&k)
            .expect("transfer_by_key")
            .map(|r| r.id),
        Some(id),
        "the row is found by the identity it was offered under"
    );
    assert_eq!(
        j.transfer_by_key(&key("QT.NONE", 1))
            .expect("transfer_by_key"),
        None
    );
    let before = show(j, id);
    refused(
        j.transition(id, &QueueChange::to(QueueState::Queued, t(62))),
        QueueState::Sent,
        QueueState::Queued,
    );
    assert_eq!(
        show(j, id),
        before,
        "a refused transition changes nothing, history included"
    );
    let done = change(j, id, QueueChange::to(QueueState::Delivered, t(63)));
    assert_eq!(
        done.key,
        Some(k),
        "a transition without an identity keeps the row's"
    );
    for to in QueueState::ALL {
        refused(
            j.transition(id, &QueueChange::to(to, t(64))),
            QueueState::Delivered,
            to,
        );
    }
    refused(
        j.retry_transfer(id, t(64)),
        QueueState::Delivered,
        QueueState::Queued,
    );
    let history = show(j, id).history;
    assert_eq!(
        states(&history),
        [
            (None, QueueState::Queued),
            (Some(QueueState::Queued), QueueState::InTransfer),
            (Some(QueueState::InTransfer), QueueState::Queued),
            (Some(QueueState::Queued), QueueState::InTransfer),
            (Some(QueueState::InTransfer), QueueState::Sent),
            (Some(QueueState::Sent), QueueState::Delivered),
        ],
        "every transition is in the history, oldest first"
    );
    assert_eq!(
        (history[2].at, history[2].note.as_deref()),
        (t(2), Some("connection refused")),
        "a transition keeps its time and its error"
    );
    let mut bad = key("QT.BAD", 1);
    bad.stamp.month = 13;
    let other = enqueue(j, &send("QT", "bad"), t(0));
    j.claim_due("QT", t(1), 1).expect("claim");
    let before = show(j, other);
    let e = j
        .transition(other, &QueueChange::to(QueueState::Sent, t(2)).key(bad))
        .unwrap_err();
    assert!(
        matches!(e, JournalError::InvalidStamp { .. }),
        "an invalid identity is refused: {e}"
    );
    assert_eq!(show(j, other), before, "and nothing is written");
}

fn operator_retry_and_cancel(j: &dyn Journal) {
    let id = enqueue(j, &send("QR", "r"), t(0));
    j.claim_due("QR", t(0), 1).expect("claim");
    refused(
        j.cancel_transfer(id, t(1)),
        QueueState::InTransfer,
        QueueState::Cancelled,
    );
    change(
        j,
        id,
        QueueChange::to(QueueState::Rejected, t(2)).error("SFNA 03, retry N"),
    );
    let retried = j
        .retry_transfer(id, t(3))
        .expect("retry")
        .expect("the row exists");
    assert_eq!(
        (
            retried.state,
            retried.next_attempt_at,
            retried.last_error.as_deref()
        ),
        (QueueState::Queued, t(3), Some("SFNA 03, retry N")),
        "a retried file is queued and due at once; its last error stays"
    );
    let cancelled = j
        .cancel_transfer(id, t(4))
        .expect("cancel")
        .expect("the row exists");
    assert_eq!(cancelled.state, QueueState::Cancelled);
    let notes: Vec<_> = show(j, id).history.into_iter().map(|h| h.note).collect();
    assert_eq!(
        notes[notes.len() - 2..],
        [
            Some("retried by the operator".into()),
            Some("cancelled by the operator".into())
        ],
        "the operator's actions are noted in the history"
    );
    refused(
        j.retry_transfer(id, t(5)),
        QueueState::Cancelled,
        QueueState::Queued,
    );
}

fn requeue_after_a_restart(j: &dyn Journal) {
    let a = enqueue(j, &send("QS", "a"), t(0));
    let b = enqueue(j, &send("QS", "b"), t(0));
    let waiting = enqueue(j, &send("QS", "c"), t(0));
    j.claim_due("QS", t(0), 2).expect("claim");
    change(
        j,
        b,
        QueueChange::to(QueueState::Sent, t(1)).key(key("QS.B", 1)),
    );
    j.claim_due("QS", t(1), 1).expect("claim");
    let mut requeued = j
        .requeue_in_transfer(t(9), "daemon restarted")
        .expect("requeue");
    requeued.retain(|id| [a, b, waiting].contains(id));
    assert_eq!(
        requeued,
        [a, waiting],
        "rows in transfer are queued again, lowest id first; a sent one is not"
    );
    let row = show(j, a);
    assert_eq!(
        (row.file.state, row.file.attempts, row.file.next_attempt_at),
        (QueueState::Queued, 1, t(9)),
        "a requeued row is due at once and keeps its attempts"
    );
    assert_eq!(
        row.history.last().and_then(|h| h.note.as_deref()),
        Some("daemon restarted")
    );
    assert_eq!(show(j, b).file.state, QueueState::Sent);
}

fn listing(j: &dyn Journal) {
    let rows: Vec<i64> = (0..5)
        .map(|i| enqueue(j, &send("QL", &format!("l{i}")), t(i)))
        .collect();
    enqueue(j, &send("QL-OTHER", "l"), t(0));
    change(
        j,
        rows[1],
        QueueChange::to(QueueState::Failed, t(100)).error("too old"),
    );
    let list = |f: TransferFilter| ids(&j.transfers(&f).expect("transfers"));
    let of = |partner: &str| TransferFilter {
        partner: Some(partner.into()),
        ..TransferFilter::default()
    };
    assert_eq!(
        list(of("QL ")),
        [rows[4], rows[3], rows[2], rows[1], rows[0]],
        "a partner's rows, newest first"
    );
    assert_eq!(
        list(TransferFilter {
            state: Some(QueueState::Failed),
            ..of("QL")
        }),
        [rows[1]],
        "filtered by state"
    );
    assert_eq!(
        list(TransferFilter {
            since: Some(t(3)),
            ..of("QL")
        }),
        [rows[4], rows[3], rows[1]],
        "filtered by the time of their last change"
    );
    let page1 = list(TransferFilter {
        limit: 2,
        ..of("QL")
    });
    let page2 = list(TransferFilter {
        limit: 2,
        before_id: page1.last().copied(),
        ..of("QL")
    });
    assert_eq!(
        (page1, page2),
        (vec![rows[4], rows[3]], vec![rows[2], rows[1]]),
        "paged by id"
    );
    let every = list(TransferFilter {
        limit: u32::MAX,
        ..TransferFilter::default()
    });
    assert!(
        every.contains(&rows[0]) && every.windows(2).all(|w| w[0] > w[1]),
        "no filter: all rows, newest first"
    );
}

fn alerts(j: &dyn Journal) {
    let open_before = j.open_alerts().expect("open_alerts");
    let raised = NewAlert {
        kind: AlertKind::FileFailed,
        partner: Some("QA  ".into()),
        file: Some("INVOICE".into()),
        text:
            "acme refused INVOICE (SFNA 03, retry N): check the file and run oftp transfer retry 7"
                .into(),
    };
    let first = j.raise_alert(&raised, t(0)).expect("raise_alert");
    let disk = NewAlert {
        kind: AlertKind::DiskSpaceLow,
        partner: None,
        file: None,
        text: "1% free".into(),
    };
    let second = j.raise_alert(&disk, t(1)).expect("raise_alert");
    assert!(
        first > 0 && second > first,
        "alert ids are positive and grow"
    );
    let stored = Alert {
        id: first,
        alert: NewAlert {
            partner: Some("QA".into()),
            ..raised
        },
        raised_at: t(0),
        acknowledged_at: None,
    };
    let mut open = j.open_alerts().expect("open_alerts");
    open.retain(|a| !open_before.contains(a));
    assert_eq!(
        open.first(),
        Some(&stored),
        "an alert is open as raised (partner without trailing blanks)"
    );
    assert_eq!(ids_of(&open), [first, second], "open alerts, oldest first");
    let acked = j
        .acknowledge_alert(first, t(5))
        .expect("acknowledge")
        .expect("the alert exists");
    assert_eq!(
        acked,
        Alert {
            acknowledged_at: Some(t(5)),
            ..stored
        },
        "acknowledging keeps its time"
    );
    let again = j
        .acknowledge_alert(first, t(9))
        .expect("acknowledge")
        .expect("the alert exists");
    assert_eq!(
        again.acknowledged_at,
        Some(t(5)),
        "acknowledging again keeps the first time"
    );
    assert!(
        !ids_of(&j.open_alerts().expect("open_alerts")).contains(&first),
        "an acknowledged alert is not open"
    );
    assert!(ids_of(&j.open_alerts().expect("open_alerts")).contains(&second));
}

pub(super) fn ids_of(alerts: &[Alert]) -> Vec<i64> {
    alerts.iter().map(|a| a.id).collect()
}

fn rows_that_do_not_exist(j: &dyn Journal) {
    let nobody = i64::MAX;
    let listed = j.transfers(&TransferFilter {
        limit: u32::MAX,
        ..TransferFilter::default()
    });
    assert_eq!(j.transfer(nobody).expect("transfer"), None);
    assert_eq!(
        j.transition(nobody, &QueueChange::to(QueueState::Queued, t(0)))
            .expect("transition"),
        None
    );
    assert_eq!(j.retry_transfer(nobody, t(0)).expect("retry"), None);
    assert_eq!(j.cancel_transfer(nobody, t(0)).expect("cancel"), None);
    assert_eq!(
        j.acknowledge_alert(nobody, t(0)).expect("acknowledge"),
        None
    );
    assert_eq!(
        j.transfers(&TransferFilter {
            limit: u32::MAX,
            ..TransferFilter::default()
        })
        .ok(),
        listed.ok(),
        "naming no row changes none"
    );
}

/// What [`record`] left, as read back.
pub(super) type Recorded = (TransferDetail, TransferDetail, Vec<Alert>);

/// Records queue rows (one queued again after a failure, one sent) and an alert, for
/// [`reopened`](super::reopened); returns them as read back.
pub(super) fn record(j: &dyn Journal) -> Recorded {
    let a = enqueue(j, &send("QO", "a"), t(0));
    let b = enqueue(j, &send("QO", "b"), t(0));
    j.claim_due("QO", t(1), 2).expect("claim");
    change(
        j,
        a,
        QueueChange::to(QueueState::Queued, t(2))
            .error("timeout")
            .due_at(t(70)),
    );
    change(
        j,
        b,
        QueueChange::to(QueueState::Sent, t(2)).key(key("QO.B", 1)),
    );
    let alert = NewAlert {
        kind: AlertKind::EerpOverdue,
        partner: Some("QO".into()),
        file: None,
        text: "late".into(),
    };
    j.raise_alert(&alert, t(3)).expect("raise_alert");
    read_back(j, a, b)
}

/// The rows [`record`] made, read again (`ids` from its result).
pub(super) fn read_back(j: &dyn Journal, a: i64, b: i64) -> Recorded {
    (
        show(j, a),
        show(j, b),
        j.open_alerts().expect("open_alerts"),
    )
}

/// Checks what [`record`] left is there in a reopened journal, the key of the sent row too.
pub(super) fn check_reopened(j: &dyn Journal, before: &Recorded) {
    let after = read_back(j, before.0.file.id, before.1.file.id);
    assert_eq!(
        &after, before,
        "queue rows, their history and alerts survive reopening"
    );
    assert_eq!(
        j.claim_due("QO", t(70), 10)
            .expect("claim")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [before.0.file.id],
        "after reopening, a queued row is claimed when due"
    );
    assert_eq!(
        after.1.file.key,
        Some(key("QO.B", 1)),
        "the wire identity survives reopening"
    );
}
