//! The behaviour every [`Journal`] must have, rule by rule as stated on the trait (the
//! outbound queue and alerts in `conformance/queue.rs`, alert delivery and alert conditions in
//! `conformance/alert_delivery.rs`). A backend's
//! tests call [`journal`] with an empty journal, and [`reopened`] with a function that opens the
//! same (initially empty) storage again; each panics with a message naming the broken rule
//! when the backend misbehaves.
//!
//! ```no_run
//! # fn demo(dir: &std::path::Path) {
//! use std::sync::Arc;
//! use oftp::journal::{Journal, SqliteJournal, conformance};
//!
//! conformance::journal(&SqliteJournal::in_memory().unwrap());
//! conformance::reopened(&|| -> Arc<dyn Journal> {
//!     Arc::new(SqliteJournal::open_in_dir(dir).unwrap())
//! });
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;

use super::{
    Checkpoint, Direction, EndResponseEntry, FileKey, Journal, JournalError, LocalFileId,
    PartialReception, ReceiveState, ReceivedEntry, SendState, SentEntry,
};
use crate::stamp::{FileStamp, FileStampExt};

mod alert_delivery;
mod calls;
mod history;
mod processing;
mod queue;
mod queue_effects;

/// A file identity with a valid stamp; `counter` tells files of the same name apart.
fn key(dsn: &str, counter: u16) -> FileKey {
    let at = NaiveDate::from_ymd_opt(2026, 5, 6)
        .and_then(|d| d.and_hms_opt(7, 8, 9))
        .expect("a valid date");
    FileKey::new(
        "ORIG".parse().unwrap(),
        dsn,
        FileStamp::from_datetime(at, counter),
    )
}

fn local(partner: &str, path: &str) -> LocalFileId {
    LocalFileId {
        partner: partner.into(),
        path: PathBuf::from(path),
        size: 10,
        mtime_ns: 123,
    }
}

fn checkpoint(position: u64) -> Checkpoint {
    Checkpoint {
        position,
        file_offset: position * 1024,
        records: position * 2,
        units: position * 1000,
    }
}

fn eerp(direction: Direction, key: &FileKey, partner: &str) -> EndResponseEntry {
    EndResponseEntry {
        direction,
        key: key.clone(),
        destination: "ORIG".into(),
        negative: None,
        partner: partner.into(),
        at: queue::t(0),
    }
}

fn received(j: &dyn Journal, partner: &str, key: &FileKey) -> Option<ReceivedEntry> {
    j.received(partner, key).expect("received")
}

/// Begins and completes the reception of `key` from `partner`; returns its id.
fn receive(j: &dyn Journal, partner: &str, key: &FileKey) -> i64 {
    let fin = PathBuf::from(format!("/in/{}", key.dsn));
    let id = j
        .begin_receive(partner, key, Path::new("/in/.part"), &fin, "")
        .expect("begin_receive");
    j.complete_receive(id, &fin).expect("complete_receive");
    id
}

/// The partial receptions of `partner`.
fn partials_of(j: &dyn Journal, partner: &str) -> Vec<PartialReception> {
    let mut all = j.partial_receptions().expect("partial_receptions");
    all.retain(|p| p.partner == partner);
    all
}

fn counts(j: &dyn Journal) -> (u64, u64) {
    let count = |d| j.end_response_count(d).expect("end_response_count");
    (count(Direction::Received), count(Direction::Sent))
}

/// Runs every rule against `j`, which must be empty.
pub fn journal(j: &dyn Journal) {
    assert_eq!(counts(j), (0, 0), "a new journal has no end responses");
    assert!(
        j.partial_receptions()
            .expect("partial_receptions")
            .is_empty(),
        "a new journal has no partial receptions"
    );
    reception_lifecycle(j);
    beginning_again_restarts_from_zero(j);
    partners_are_kept_apart(j);
    partial_receptions(j);
    pending_end_responses(j);
    sends(j);
    end_responses(j);
    file_hashes(j);
    invalid_stamps_are_never_written(j);
    rows_that_do_not_exist(j);
    queue::rules(j);
    calls::rules(j);
    processing::rules(j);
    alert_delivery::rules(j);
    history::rules(j);
}

fn reception_lifecycle(j: &dyn Journal) {
    let k = key("LIFE", 1);
    assert_eq!(received(j, "RP", &k), None, "an unknown file has no entry");
    let (part, fin) = (Path::new("/in/.life.part"), Path::new("/in/LIFE"));
    let id = j
        .begin_receive("RP  ", &k, part, fin, "U1   ")
        .expect("begin_receive");
    assert!(id > 0, "row ids are positive");
    let begun = ReceivedEntry {
        id,
        key: k.clone(),
        state: ReceiveState::Receiving,
        partial_path: part.to_owned(),
        final_path: fin.to_owned(),
        checkpoint: Checkpoint::default(),
        end_response_sent: false,
        user_data: "U1".into(),
    };
    assert_eq!(
        received(j, "RP", &k),
        Some(begun.clone()),
        "begin_receive records a reception in progress from zero (partner and user data \
         without trailing blanks)"
    );
    assert_eq!(
        received(j, "RP   ", &k),
        Some(begun),
        "trailing blanks of a partner code do not matter"
    );
    assert_eq!(
        received(j, "RP", &key("LIFE", 2)),
        None,
        "another counter is another file"
    );
    let other_orig = FileKey::new("OTHER".parse().unwrap(), &k.dsn, k.stamp);
    assert_eq!(
        received(j, "RP", &other_orig),
        None,
        "another originator is another file"
    );

    j.checkpoint_receive(id, checkpoint(3))
        .expect("checkpoint_receive");
    j.checkpoint_receive(id, checkpoint(5))
        .expect("checkpoint_receive");
    let e = received(j, "RP", &k).expect("entry");
    assert_eq!(
        e.checkpoint,
        checkpoint(5),
        "the last checkpoint is the restart point"
    );
    assert_eq!(e.state, ReceiveState::Receiving);
    assert!(
        j.pending_end_responses("RP").expect("pending").is_empty(),
        "a reception in progress has no end response pending"
    );

    j.complete_receive(id, Path::new("/in/LIFE.1"))
        .expect("complete_receive");
    let done = received(j, "RP", &k).expect("entry");
    assert_eq!(
        done.state,
        ReceiveState::Complete,
        "complete_receive completes"
    );
    assert_eq!(
        done.final_path,
        Path::new("/in/LIFE.1"),
        "under the final path given"
    );
    assert_eq!(
        done.checkpoint,
        checkpoint(5),
        "completing keeps the checkpoint"
    );
    j.checkpoint_receive(id, Checkpoint::default())
        .expect("checkpoint_receive");
    assert_eq!(
        received(j, "RP", &k),
        Some(done.clone()),
        "a checkpoint after completion changes nothing"
    );
    j.drop_receive(id).expect("drop_receive");
    assert_eq!(
        received(j, "RP", &k),
        Some(done),
        "drop_receive keeps a complete reception (it answers duplicates)"
    );
}

fn beginning_again_restarts_from_zero(j: &dyn Journal) {
    let k = key("AGAIN", 0);
    let id = j
        .begin_receive("AP", &k, Path::new("a"), Path::new("b"), "U1")
        .expect("begin_receive");
    j.checkpoint_receive(id, checkpoint(9))
        .expect("checkpoint_receive");
    let id2 = j
        .begin_receive("AP", &k, Path::new("c"), Path::new("d"), "U2")
        .expect("begin_receive");
    assert_eq!(id2, id, "beginning the same file again keeps its id");
    let e = received(j, "AP", &k).expect("entry");
    assert_eq!(
        (e.checkpoint, e.partial_path, e.final_path, e.user_data),
        (Checkpoint::default(), "c".into(), "d".into(), "U2".into()),
        "beginning again restarts from zero with the new paths and user data"
    );
    j.drop_receive(id).expect("drop_receive");
    assert_eq!(
        received(j, "AP", &k),
        None,
        "drop_receive forgets a reception in progress"
    );
    j.drop_receive(id)
        .expect("dropping a dropped reception is no error");

    // A complete one, with its end response sent or deferred, starts over too.
    for defer in [false, true] {
        let id = receive(j, "AP", &k);
        if defer {
            j.defer_end_response("AP", &k).expect("defer_end_response");
        } else {
            j.mark_end_response_sent("AP", &k)
                .expect("mark_end_response_sent");
        }
        let again = j
            .begin_receive("AP", &k, Path::new("e"), Path::new("f"), "")
            .expect("begin_receive");
        assert_eq!(again, id, "beginning a complete file again keeps its id");
        let e = received(j, "AP", &k).expect("entry");
        assert_eq!(
            (e.state, e.end_response_sent),
            (ReceiveState::Receiving, false),
            "beginning a complete file again makes it a reception in progress"
        );
        j.complete_receive(id, Path::new("f"))
            .expect("complete_receive");
        assert_eq!(
            j.pending_end_responses("AP").expect("pending"),
            vec![received(j, "AP", &k).expect("entry")],
            "beginning again clears an end response sent or deferred (deferred: {defer})"
        );
        j.mark_end_response_sent("AP", &k)
            .expect("mark_end_response_sent");
    }
}

fn partners_are_kept_apart(j: &dyn Journal) {
    let k = key("SHARED", 1);
    let a = j
        .begin_receive("PARTNERA", &k, Path::new("a.p"), Path::new("a/SHARED"), "")
        .expect("begin_receive");
    j.checkpoint_receive(a, checkpoint(2))
        .expect("checkpoint_receive");
    assert_eq!(
        received(j, "PARTNERB", &k),
        None,
        "one partner never sees another partner's reception of the same identity"
    );
    let b = j
        .begin_receive("PARTNERB", &k, Path::new("b.p"), Path::new("b/SHARED"), "")
        .expect("begin_receive");
    assert_ne!(a, b, "each partner's reception is an entry of its own");
    let ea = received(j, "PARTNERA", &k).expect("entry");
    assert_eq!(
        (ea.id, ea.checkpoint, ea.final_path),
        (a, checkpoint(2), "a/SHARED".into()),
        "beginning another partner's reception leaves this one alone"
    );
    j.complete_receive(b, Path::new("b/SHARED"))
        .expect("complete_receive");
    j.complete_receive(a, Path::new("a/SHARED"))
        .expect("complete_receive");
    j.record_end_response(&eerp(Direction::Sent, &k, "PARTNERB"))
        .expect("record_end_response");
    assert!(
        j.pending_end_responses("PARTNERB")
            .expect("pending")
            .is_empty(),
        "the end response sent to a partner settles its reception"
    );
    assert_eq!(
        j.pending_end_responses("PARTNERA").expect("pending").len(),
        1,
        "the end response sent to one partner settles no other partner's reception"
    );
    j.mark_end_response_sent("PARTNERB", &k)
        .expect("mark_end_response_sent");
    j.defer_end_response("PARTNERB", &k)
        .expect("defer_end_response");
    assert_eq!(
        j.pending_end_responses("PARTNERA").expect("pending").len(),
        1,
        "marking or deferring one partner's end response leaves other partners' alone"
    );
    j.mark_end_response_sent("PARTNERA", &k)
        .expect("mark_end_response_sent");
}

fn partial_receptions(j: &dyn Journal) {
    let before = chrono::Utc::now();
    let (a, b, c) = (key("PA", 1), key("PB", 2), key("PC", 3));
    let ia = j
        .begin_receive("PP1", &a, Path::new("/in/.a"), Path::new("/in/A"), "")
        .expect("begin_receive");
    let ib = j
        .begin_receive("PP2", &b, Path::new("/in/.b"), Path::new("/in/B"), "")
        .expect("begin_receive");
    let ic = j
        .begin_receive("PP1", &c, Path::new("/in/.c"), Path::new("/in/C"), "")
        .expect("begin_receive");
    let after = chrono::Utc::now();
    let p1 = partials_of(j, "PP1");
    assert_eq!(
        p1.iter()
            .map(|p| (p.id, &p.key, p.partial_path.as_path()))
            .collect::<Vec<_>>(),
        [(ia, &a, Path::new("/in/.a")), (ic, &c, Path::new("/in/.c"))],
        "partial_receptions lists every reception in progress, in the order begun"
    );
    assert_eq!(partials_of(j, "PP2").len(), 1, "of every partner");
    assert!(
        p1.iter()
            .all(|p| p.updated_at >= before && p.updated_at <= after),
        "updated_at is when the reception was begun: {p1:?} not within {before}..{after}"
    );
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mid = chrono::Utc::now();
    j.checkpoint_receive(ia, checkpoint(1))
        .expect("checkpoint_receive");
    assert!(
        partials_of(j, "PP1")[0].updated_at >= mid,
        "a checkpoint refreshes updated_at"
    );
    let paths = j.partial_paths().expect("partial_paths");
    for p in ["/in/.a", "/in/.b", "/in/.c"] {
        assert!(
            paths.contains(Path::new(p)),
            "partial_paths holds {p}: {paths:?}"
        );
    }

    j.complete_receive(ia, Path::new("/in/A"))
        .expect("complete_receive");
    j.drop_receive(ib).expect("drop_receive");
    assert_eq!(
        partials_of(j, "PP1")
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        [ic],
        "a completed reception is no partial reception"
    );
    assert!(
        partials_of(j, "PP2").is_empty(),
        "a dropped reception is no partial reception"
    );
    let paths = j.partial_paths().expect("partial_paths");
    assert!(
        paths.contains(Path::new("/in/.c"))
            && !paths.contains(Path::new("/in/.a"))
            && !paths.contains(Path::new("/in/.b")),
        "partial_paths holds the files of receptions in progress only: {paths:?}"
    );
    j.drop_receive(ic).expect("drop_receive");
}

fn pending_end_responses(j: &dyn Journal) {
    let (first, second) = (key("PEND", 1), key("PEND", 2));
    receive(j, "PE", &first);
    receive(j, "PE", &second);
    j.begin_receive("PE", &key("PEND", 3), Path::new("p"), Path::new("f"), "")
        .expect("begin_receive");
    let pending = j.pending_end_responses("PE  ").expect("pending");
    assert_eq!(
        pending,
        vec![
            received(j, "PE", &first).expect("entry"),
            received(j, "PE", &second).expect("entry")
        ],
        "completed receptions without an end response are pending, in the order begun, as \
         received() returns them"
    );
    assert!(
        j.pending_end_responses("PE-OTHER")
            .expect("pending")
            .is_empty(),
        "pending end responses are the partner's own"
    );
    j.defer_end_response("PE", &first)
        .expect("defer_end_response");
    assert_eq!(
        j.pending_end_responses("PE").expect("pending").len(),
        1,
        "a deferred end response is not pending"
    );
    assert!(
        !received(j, "PE", &first).expect("entry").end_response_sent,
        "deferring does not mark the end response sent"
    );
    j.mark_end_response_sent("PE", &second)
        .expect("mark_end_response_sent");
    assert!(
        j.pending_end_responses("PE").expect("pending").is_empty(),
        "an end response sent is not pending"
    );
    assert!(
        received(j, "PE", &second).expect("entry").end_response_sent,
        "mark_end_response_sent marks it sent"
    );
}

fn sends(j: &dyn Journal) {
    let file = local("acme", "/out/a.edi");
    assert_eq!(
        j.latest_send(&file).expect("latest_send"),
        None,
        "an unsent file has no send"
    );
    let k = key("A.EDI", 5);
    let id = j.begin_send(&file, &k, "DEST   ").expect("begin_send");
    assert!(id > 0, "row ids are positive");
    let begun = SentEntry {
        id,
        local: file.clone(),
        key: k.clone(),
        destination: "DEST".into(),
        state: SendState::Sending,
    };
    assert_eq!(
        j.latest_send(&file).expect("latest_send"),
        Some(begun.clone()),
        "begin_send records a send in state sending (destination without trailing blanks)"
    );
    assert_eq!(
        j.sent_by_key(&k).expect("sent_by_key"),
        Some(begun),
        "found by its key"
    );
    let changed = [
        LocalFileId {
            mtime_ns: 124,
            ..file.clone()
        },
        LocalFileId {
            size: 11,
            ..file.clone()
        },
        LocalFileId {
            path: "/out/b.edi".into(),
            ..file.clone()
        },
        LocalFileId {
            partner: "other".into(),
            ..file.clone()
        },
    ];
    for other in &changed {
        assert_eq!(
            j.latest_send(other).expect("latest_send"),
            None,
            "another partner, path, size or mtime is another local file: {other:?}"
        );
    }
    for state in SendState::ALL {
        j.set_send_state(id, state).expect("set_send_state");
        assert_eq!(
            j.latest_send(&file)
                .expect("latest_send")
                .map(|e| (e.id, e.state)),
            Some((id, state)),
            "set_send_state moves the send to {state:?}; it stays the latest send"
        );
    }
    let k2 = key("A.EDI", 6);
    let id2 = j.begin_send(&file, &k2, "DEST").expect("begin_send");
    assert_ne!(id2, id, "each attempt is a send of its own");
    assert_eq!(
        j.latest_send(&file)
            .expect("latest_send")
            .map(|e| (e.id, e.key)),
        Some((id2, k2)),
        "the newest attempt is the latest send"
    );
    assert_eq!(
        j.sent_by_key(&k)
            .expect("sent_by_key")
            .map(|e| (e.id, e.state)),
        Some((id, SendState::Failed)),
        "an earlier attempt keeps its state"
    );
    let id3 = j.begin_send(&changed[2], &k, "DEST").expect("begin_send");
    assert_eq!(
        j.sent_by_key(&k).expect("sent_by_key").map(|e| e.id),
        Some(id3),
        "sent_by_key finds the newest send with that identity"
    );
}

fn end_responses(j: &dyn Journal) {
    let (r0, s0) = counts(j);
    let (k, nk) = (key("ER.OK", 1), key("ER.NO", 1));
    let (one, two, three) = (
        local("er", "/out/1"),
        local("er", "/out/2"),
        local("er", "/out/3"),
    );
    for file in [&one, &two] {
        j.begin_send(file, &k, "D").expect("begin_send");
    }
    let nid = j.begin_send(&three, &nk, "D").expect("begin_send");
    j.set_send_state(nid, SendState::AwaitingEndResponse)
        .expect("set_send_state");
    let state = |file: &LocalFileId| j.latest_send(file).expect("latest_send").map(|e| e.state);
    j.record_end_response(&eerp(Direction::Received, &k, "D"))
        .expect("record_end_response");
    assert_eq!(
        (state(&one), state(&two)),
        (Some(SendState::Delivered), Some(SendState::Delivered)),
        "an EERP received delivers every send with that identity"
    );
    assert_eq!(
        state(&three),
        Some(SendState::AwaitingEndResponse),
        "an end response settles the sends of its own identity only"
    );
    let mut nerp = eerp(Direction::Received, &nk, "D");
    nerp.negative = Some((23, "duplicate".into()));
    j.record_end_response(&nerp).expect("record_end_response");
    assert_eq!(
        state(&three),
        Some(SendState::Failed),
        "a NERP received fails the send"
    );
    j.record_end_response(&eerp(Direction::Received, &key("ER.NONE", 1), "D"))
        .expect("an end response for a file never sent is recorded");
    assert_eq!(
        counts(j),
        (r0 + 3, s0),
        "end_response_count counts the end responses received"
    );

    let r = key("ER.IN", 1);
    receive(j, "ERP", &r);
    let mut sent = eerp(Direction::Sent, &r, "ERP  ");
    sent.negative = Some((4, "cannot store".into()));
    j.record_end_response(&sent).expect("record_end_response");
    assert!(
        received(j, "ERP", &r).expect("entry").end_response_sent,
        "an end response sent (NERP too) marks the reception's end response sent"
    );
    assert!(j.pending_end_responses("ERP").expect("pending").is_empty());
    assert_eq!(
        counts(j),
        (r0 + 3, s0 + 1),
        "end_response_count counts those sent apart"
    );
}

fn file_hashes(j: &dyn Journal) {
    let k = key("HASHED", 1);
    assert_eq!(
        j.file_hash(Direction::Sent, "P", &k).expect("file_hash"),
        None
    );
    j.record_file_hash(Direction::Sent, "P", &k, 4, &[1, 2, 3])
        .expect("record_file_hash");
    assert_eq!(
        j.file_hash(Direction::Sent, "P", &k).expect("file_hash"),
        Some((4, vec![1, 2, 3])),
        "record_file_hash records suite and hash"
    );
    j.record_file_hash(Direction::Sent, "Q", &k, 6, &[9])
        .expect("record_file_hash");
    assert_eq!(
        j.file_hash(Direction::Sent, "P", &k).expect("file_hash"),
        Some((6, vec![9])),
        "a sent file has one hash whatever partner is named; recording again replaces it"
    );
    assert_eq!(
        j.file_hash(Direction::Received, "P", &k)
            .expect("file_hash"),
        None,
        "hashes of sent and received files are apart"
    );
    j.record_file_hash(Direction::Received, "A", &k, 4, &[1])
        .expect("record_file_hash");
    j.record_file_hash(Direction::Received, "B  ", &k, 255, &[2; 64])
        .expect("record_file_hash");
    assert_eq!(
        (
            j.file_hash(Direction::Received, "A", &k)
                .expect("file_hash"),
            j.file_hash(Direction::Received, "B", &k)
                .expect("file_hash"),
            j.file_hash(Direction::Received, "C", &k)
                .expect("file_hash"),
        ),
        (Some((4, vec![1])), Some((255, vec![2; 64])), None),
        "a received file's hash belongs to the partner it came from"
    );
}

fn invalid_stamps_are_never_written(j: &dyn Journal) {
    let mut stamp = key("X", 0).stamp;
    (stamp.day, stamp.hour, stamp.minute, stamp.second) = (43, 51, 86, 72);
    let bad = FileKey::new("ORIG".parse().unwrap(), "BAD", stamp);
    let file = local("bad", "/out/bad");
    let before = counts(j);
    let refused = |what: &str, r: Result<(), JournalError>| {
        let Err(e) = r else {
            panic!("{what} recorded a file identity whose stamp is no valid date and time");
        };
        assert!(
            matches!(e, JournalError::InvalidStamp { .. })
                && e.to_string().contains("BAD from ORIG"),
            "{what} refuses an invalid stamp with InvalidStamp naming the file: {e}"
        );
    };
    refused(
        "begin_receive",
        j.begin_receive("BADP", &bad, Path::new("p"), Path::new("f"), "")
            .map(drop),
    );
    refused("begin_send", j.begin_send(&file, &bad, "D").map(drop));
    refused(
        "record_file_hash",
        j.record_file_hash(Direction::Received, "BADP", &bad, 4, &[1]),
    );
    refused(
        "record_end_response",
        j.record_end_response(&eerp(Direction::Sent, &bad, "BADP")),
    );
    assert_eq!(received(j, "BADP", &bad), None, "no reception was recorded");
    assert!(
        partials_of(j, "BADP").is_empty(),
        "no partial reception was recorded"
    );
    assert_eq!(
        j.latest_send(&file).expect("latest_send"),
        None,
        "no send was recorded"
    );
    assert_eq!(
        j.file_hash(Direction::Received, "BADP", &bad)
            .expect("file_hash"),
        None,
        "no hash was recorded"
    );
    assert_eq!(counts(j), before, "no end response was recorded");
}

fn rows_that_do_not_exist(j: &dyn Journal) {
    let partials = j.partial_receptions().expect("partial_receptions");
    let nobody = i64::MAX;
    j.checkpoint_receive(nobody, checkpoint(1))
        .expect("checkpoint_receive of no row");
    j.complete_receive(nobody, Path::new("f"))
        .expect("complete_receive of no row");
    j.drop_receive(nobody).expect("drop_receive of no row");
    j.set_send_state(nobody, SendState::Delivered)
        .expect("set_send_state of no row");
    let k = key("NOBODY", 1);
    j.mark_end_response_sent("NOBODY", &k)
        .expect("mark_end_response_sent of no row");
    j.defer_end_response("NOBODY", &k)
        .expect("defer_end_response of no row");
    assert_eq!(
        received(j, "NOBODY", &k),
        None,
        "naming no row creates none"
    );
    assert_eq!(
        j.partial_receptions().expect("partial_receptions"),
        partials,
        "naming no row changes no other"
    );
}

/// Checks that what was recorded is there after the journal is opened again: `open` opens
/// the same storage (empty the first time) and is called twice, the first journal dropped
/// before the second is opened.
pub fn reopened(open: &dyn Fn() -> Arc<dyn Journal>) {
    let j = open();
    let (progress, done, deferred, sent) = (
        key("RE.PROG", 1),
        key("RE.DONE", 1),
        key("RE.DEF", 1),
        key("RE.OUT", 1),
    );
    let pid = j
        .begin_receive(
            "RO",
            &progress,
            Path::new("/in/.prog"),
            Path::new("/in/PROG"),
            "U",
        )
        .expect("begin_receive");
    j.checkpoint_receive(pid, checkpoint(7))
        .expect("checkpoint_receive");
    receive(&*j, "RO", &done);
    receive(&*j, "RO", &deferred);
    j.defer_end_response("RO", &deferred)
        .expect("defer_end_response");
    let file = local("ro", "/out/re");
    let sid = j.begin_send(&file, &sent, "DEST").expect("begin_send");
    j.set_send_state(sid, SendState::AwaitingEndResponse)
        .expect("set_send_state");
    j.record_file_hash(Direction::Received, "RO", &done, 4, &[7])
        .expect("record_file_hash");
    j.record_end_response(&eerp(Direction::Received, &key("RE.OTHER", 1), "RO"))
        .expect("record_end_response");
    let before = (
        [&progress, &done, &deferred].map(|k| received(&*j, "RO", k)),
        j.pending_end_responses("RO").expect("pending"),
        j.partial_receptions().expect("partial_receptions"),
        j.latest_send(&file).expect("latest_send"),
        counts(&*j),
    );
    let delivering = alert_delivery::record(&*j);
    let queued = queue::record(&*j);
    let called = calls::record(&*j);
    let session = history::record(&*j);
    drop(j);

    let j = open();
    let after = (
        [&progress, &done, &deferred].map(|k| received(&*j, "RO", k)),
        j.pending_end_responses("RO").expect("pending"),
        j.partial_receptions().expect("partial_receptions"),
        j.latest_send(&file).expect("latest_send"),
        counts(&*j),
    );
    assert_eq!(after, before, "what was recorded is there after reopening");
    assert_eq!(
        after.0[0].as_ref().map(|e| e.checkpoint),
        Some(checkpoint(7)),
        "the restart point of a reception in progress survives reopening"
    );
    assert_eq!(
        after.1.len(),
        1,
        "after reopening, the pending end response is pending and the deferred one is not"
    );
    assert_eq!(
        j.file_hash(Direction::Received, "RO", &done)
            .expect("file_hash"),
        Some((4, vec![7])),
        "a recorded hash survives reopening"
    );
    queue::check_reopened(&*j, &queued);
    calls::check_reopened(&*j, &called);
    alert_delivery::check_reopened(&*j, delivering);
    history::check_reopened(&*j, session);
}
