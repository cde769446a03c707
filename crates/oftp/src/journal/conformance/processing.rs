//! The rules of post-processing, held end responses, the archive and history pruning (the
//! [`processing`](crate::journal::processing) operations of [`Journal`]), run by
//! [`journal`](super::journal). Each case uses partners of its own.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};

use super::{key, receive, received};
use crate::journal::{
    AlertKind, ArchiveKind, Direction, EndResponseEntry, Journal, NewAlert, ProcessingRun,
    ProcessingState, QueueChange, QueueState, QueuedSend, ReceivedFile,
};
use oftp_proto::codec::FileFormat;

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).expect("a valid time") + Duration::seconds(seconds)
}

fn file(partner: &str, dsn: &str) -> ReceivedFile {
    ReceivedFile {
        partner: partner.into(),
        partner_name: partner.to_lowercase(),
        key: key(dsn, 1),
        destination: "US".into(),
        path: PathBuf::from(format!("/in/{dsn}")),
        size: 42,
        format: "U".into(),
        security: "none".into(),
        user_data: "UD".into(),
    }
}

fn pending(j: &dyn Journal, partner: &str) -> Vec<String> {
    j.pending_end_responses(partner)
        .expect("pending_end_responses")
        .into_iter()
        .map(|e| e.key.dsn)
        .collect()
}

fn failed(text: &str) -> ProcessingRun {
    ProcessingRun {
        exit_code: Some(3),
        output: "out".into(),
        error: Some(text.into()),
    }
}

pub(super) fn rules(j: &dyn Journal) {
    lifecycle_and_held_end_response(j);
    unheld_rows_leave_the_end_response_alone(j);
    archive_candidates(j);
    pruning_keeps_what_is_still_needed(j);
}

fn lifecycle_and_held_end_response(j: &dyn Journal) {
    let f = file("GWR-P1", "HELD");
    receive(j, "GWR-P1", &f.key);
    let p = j.add_processing(&f, true, t(0)).expect("add_processing");
    assert_eq!(
        (p.state, p.attempts, p.hold_end_response),
        (ProcessingState::Pending, 0, true)
    );
    assert_eq!(p.file, f, "the file's metadata is kept as given");
    assert_eq!(p.last_run, None);
    assert!(
        pending(j, "GWR-P1").is_empty(),
        "a held end response is not pending"
    );
    assert_eq!(
        j.unfinished_processing()
            .expect("unfinished")
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        vec![p.id],
        "a pending row is unfinished"
    );
    let r = j.start_processing(p.id, t(1)).expect("start").expect("row");
    assert_eq!((r.state, r.attempts), (ProcessingState::Running, 1));
    assert_eq!(
        j.unfinished_processing().expect("unfinished").len(),
        1,
        "running is unfinished"
    );
    let r = j
        .finish_processing(p.id, &failed("exit 3"), t(2))
        .expect("finish")
        .expect("row");
    assert_eq!(r.state, ProcessingState::Failed);
    assert_eq!(
        r.last_run,
        Some(failed("exit 3")),
        "the run's status and output are kept"
    );
    assert!(
        pending(j, "GWR-P1").is_empty(),
        "a failed run keeps the end response held"
    );
    assert!(j.unfinished_processing().expect("unfinished").is_empty());
    let r = j.rerun_processing(p.id, t(3)).expect("rerun").expect("row");
    assert_eq!(
        (r.state, r.attempts),
        (ProcessingState::Pending, 1),
        "rerun keeps attempts"
    );
    j.start_processing(p.id, t(4)).expect("start");
    assert_eq!(
        j.rerun_processing(p.id, t(4))
            .expect("rerun")
            .expect("row")
            .state,
        ProcessingState::Running,
        "a running row is not rerun"
    );
    let ok = ProcessingRun {
        exit_code: Some(0),
        output: String::new(),
        error: None,
    };
    let r = j
        .finish_processing(p.id, &ok, t(5))
        .expect("finish")
        .expect("row");
    assert_eq!((r.state, r.attempts), (ProcessingState::Succeeded, 2));
    assert_eq!(
        pending(j, "GWR-P1"),
        vec!["HELD"],
        "success releases the held end response"
    );
    j.defer_end_response("GWR-P1", &f.key).expect("defer");
    assert_eq!(
        pending(j, "GWR-P1"),
        vec!["HELD"],
        "a deferral after the post-processing released it does not hold it again"
    );
    assert_eq!(
        j.processing_of("GWR-P1", &f.key)
            .expect("processing_of")
            .map(|p| p.id),
        Some(p.id)
    );
    assert_eq!(
        j.processing_of("OTHER", &f.key).expect("processing_of"),
        None
    );
    j.processing_moved(p.id, Path::new("/done/HELD"), t(6))
        .expect("moved");
    let r = j.processing(p.id).expect("processing").expect("row");
    assert!(r.moved);
    assert_eq!(r.file.path, PathBuf::from("/done/HELD"));
    // Received again: the row is reset and keeps its id.
    let again = j.add_processing(&f, true, t(7)).expect("add again");
    assert_eq!(
        (again.id, again.state, again.attempts, again.moved),
        (p.id, ProcessingState::Pending, 0, false)
    );
    assert!(pending(j, "GWR-P1").is_empty(), "held again");
    j.release_end_response("GWR-P1", &f.key).expect("release");
    assert_eq!(
        pending(j, "GWR-P1"),
        vec!["HELD"],
        "a release makes it pending"
    );
    assert_eq!(j.processing(i64::MAX).expect("processing"), None);
    assert_eq!(j.start_processing(i64::MAX, t(0)).expect("start"), None);
}

fn unheld_rows_leave_the_end_response_alone(j: &dyn Journal) {
    let f = file("GWR-P2", "FREE");
    receive(j, "GWR-P2", &f.key);
    let p = j.add_processing(&f, false, t(0)).expect("add_processing");
    assert_eq!(
        pending(j, "GWR-P2"),
        vec!["FREE"],
        "not held: pending as before"
    );
    j.mark_end_response_sent("GWR-P2", &f.key).expect("mark");
    j.finish_processing(p.id, &failed("x"), t(1))
        .expect("finish");
    assert!(pending(j, "GWR-P2").is_empty());
    assert!(
        received(j, "GWR-P2", &f.key)
            .expect("row")
            .end_response_sent
    );
}

fn queued(j: &dyn Journal, partner: &str, name: &str, to: &[QueueState]) -> i64 {
    let send = QueuedSend {
        partner: partner.into(),
        source_path: PathBuf::from(format!("/out/{partner}/.queue/1/{name}")),
        virtual_file_name: name.to_uppercase(),
        destination: None,
        originator: None,
        format: FileFormat::Unstructured,
        max_record_len: 0,
        user_data: String::new(),
        description: String::new(),
    };
    let id = j.enqueue(&send, t(0)).expect("enqueue");
    for s in to {
        j.transition(id, &QueueChange::to(*s, t(1)))
            .expect("transition");
    }
    id
}

fn archive_candidates(j: &dyn Journal) {
    use QueueState::*;
    // Received: EERP out and no post-processing / succeeded; not: held, failed, moved.
    let plain = file("GWR-A", "PLAIN");
    let plain_id = receive(j, "GWR-A", &plain.key);
    let unsent = file("GWR-A", "UNSENT");
    receive(j, "GWR-A", &unsent.key);
    let failing = file("GWR-A", "FAILING");
    receive(j, "GWR-A", &failing.key);
    let fp = j.add_processing(&failing, false, t(0)).expect("add");
    j.finish_processing(fp.id, &failed("x"), t(0))
        .expect("finish");
    let moved = file("GWR-A", "MOVED");
    receive(j, "GWR-A", &moved.key);
    let mp = j.add_processing(&moved, false, t(0)).expect("add");
    j.finish_processing(mp.id, &ProcessingRun::default(), t(0))
        .expect("finish");
    j.processing_moved(mp.id, Path::new("/done/MOVED"), t(0))
        .expect("moved");
    let done = file("GWR-A", "DONE");
    let done_id = receive(j, "GWR-A", &done.key);
    let dp = j.add_processing(&done, false, t(0)).expect("add");
    j.finish_processing(dp.id, &ProcessingRun::default(), t(0))
        .expect("finish");
    for k in [&plain.key, &failing.key, &moved.key, &done.key] {
        j.mark_end_response_sent("GWR-A", k).expect("mark");
    }
    let delivered = queued(j, "gwr-a", "d", &[InTransfer, Delivered]);
    let cancelled = queued(j, "gwr-a", "c", &[Cancelled]);
    queued(j, "gwr-a", "s", &[InTransfer, Sent]);
    queued(j, "gwr-a", "f", &[Failed]);
    let found = |j: &dyn Journal| -> Vec<(ArchiveKind, i64)> {
        j.archive_candidates(1000)
            .expect("archive_candidates")
            .into_iter()
            .filter(|c| c.partner.eq_ignore_ascii_case("gwr-a"))
            .map(|c| (c.kind, c.row_id))
            .collect()
    };
    assert_eq!(
        found(j),
        vec![
            (ArchiveKind::Received, plain_id),
            (ArchiveKind::Received, done_id),
            (ArchiveKind::Sent, delivered),
            (ArchiveKind::Sent, cancelled),
        ],
        "final files only: EERP out and processed (not moved), delivered or cancelled"
    );
    j.record_archived(
        ArchiveKind::Received,
        plain_id,
        Some(Path::new("/a/PLAIN")),
        t(10),
    )
    .expect("record");
    j.record_archived(ArchiveKind::Received, plain_id, None, t(99))
        .expect("again: nothing");
    j.record_archived(ArchiveKind::Sent, delivered, None, t(10))
        .expect("record gone");
    assert_eq!(
        found(j),
        vec![
            (ArchiveKind::Received, done_id),
            (ArchiveKind::Sent, cancelled)
        ],
        "archived files are no candidates"
    );
    let old = j.archived_before(t(11), 100).expect("archived_before");
    let ours: Vec<_> = old
        .iter()
        .filter(|a| a.row_id == plain_id && a.kind == ArchiveKind::Received)
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "an archived file before the cut-off is listed once"
    );
    assert_eq!(ours[0].path.as_deref(), Some(Path::new("/a/PLAIN")));
    assert_eq!(ours[0].archived_at, t(10), "the first record counts");
    assert!(
        j.archived_before(t(10), 100)
            .expect("archived_before")
            .iter()
            .all(|a| a.row_id != plain_id),
        "not before its time"
    );
    j.archived_deleted(ours[0].id, t(12)).expect("deleted");
    assert!(
        j.archived_before(t(100), 100)
            .expect("archived_before")
            .iter()
            .all(|a| a.id != ours[0].id),
        "a deleted file is no longer listed"
    );
}

fn pruning_keeps_what_is_still_needed(j: &dyn Journal) {
    use QueueState::*;
    let delivered = queued(j, "gwr-r", "d", &[InTransfer, Delivered]);
    let sent = queued(j, "gwr-r", "s", &[InTransfer, Sent]);
    let failed_row = queued(j, "gwr-r", "f", &[Failed]);
    let waiting = queued(j, "gwr-r", "q", &[]);
    let open = j
        .raise_alert(
            &NewAlert {
                kind: AlertKind::FileFailed,
                partner: None,
                file: None,
                text: "o".into(),
            },
            t(0),
        )
        .expect("raise");
    let acked = j
        .raise_alert(
            &NewAlert {
                kind: AlertKind::FileFailed,
                partner: None,
                file: None,
                text: "a".into(),
            },
            t(0),
        )
        .expect("raise");
    j.acknowledge_alert(acked, t(1)).expect("ack");
    let answered = file("GWR-R", "ANSWERED");
    receive(j, "GWR-R", &answered.key);
    j.mark_end_response_sent("GWR-R", &answered.key)
        .expect("mark");
    let owed = file("GWR-R", "OWED");
    receive(j, "GWR-R", &owed.key);
    let unprocessed = file("GWR-R", "UNPROCESSED");
    receive(j, "GWR-R", &unprocessed.key);
    j.mark_end_response_sent("GWR-R", &unprocessed.key)
        .expect("mark");
    let up = j.add_processing(&unprocessed, false, t(0)).expect("add");
    j.finish_processing(up.id, &failed("x"), t(0))
        .expect("finish");
    let partial = key("PARTIAL", 1);
    j.begin_receive(
        "GWR-R",
        &partial,
        Path::new("/in/.p"),
        Path::new("/in/P"),
        "",
    )
    .expect("begin");
    j.record_end_response(&EndResponseEntry {
        direction: Direction::Sent,
        key: answered.key.clone(),
        destination: "ORIG".into(),
        negative: None,
        partner: "GWR-R".into(),
        at: t(0),
    })
    .expect("record");

    // A cut-off before everything prunes nothing.
    let none = j.prune_history(t(-1_000_000_000)).expect("prune");
    assert_eq!(
        none,
        Default::default(),
        "nothing is older than a cut-off in the past"
    );
    // A cut-off after everything (the received rows use the wall clock).
    let later = Utc::now() + Duration::days(1);
    let later = later.max(t(10));
    let pruned = j.prune_history(later).expect("prune");
    assert!(
        pruned.transfers >= 1 && pruned.alerts >= 1 && pruned.received >= 1,
        "{pruned:?}"
    );
    assert!(
        j.transfer(delivered).expect("transfer").is_none(),
        "a delivered row is pruned"
    );
    for id in [sent, failed_row, waiting] {
        assert!(
            j.transfer(id).expect("transfer").is_some(),
            "row {id} awaits something: kept"
        );
    }
    let alerts: Vec<i64> = j
        .open_alerts()
        .expect("open")
        .iter()
        .map(|a| a.id)
        .collect();
    assert!(alerts.contains(&open), "an open alert is kept");
    assert!(
        received(j, "GWR-R", &answered.key).is_none(),
        "an answered reception is pruned"
    );
    assert!(
        received(j, "GWR-R", &owed.key).is_some(),
        "an owed end response is kept"
    );
    assert!(
        received(j, "GWR-R", &unprocessed.key).is_some(),
        "a failed post-processing is kept"
    );
    assert!(
        received(j, "GWR-R", &partial).is_some(),
        "a restart point is kept"
    );
    assert!(j.processing(up.id).expect("processing").is_some());
}
