//! The rules of workers and mailbox leases ([`crate::index::lease`]).

use crate::error::Error;
use crate::index::Index;
use crate::index::lease::{Acquired, WorkerState};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(600);
/// Short enough to wait out, long enough for a loaded machine to make the calls in between.
const SHORT: Duration = Duration::from_millis(700);

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn take(ix: &dyn Index, worker: &str, mailboxes: &[String], ttl: Duration) -> Acquired {
    ix.acquire_lease(worker, mailboxes, ttl)
        .unwrap_or_else(|e| panic!("acquire_lease for {worker}: {e}"))
}

fn mailbox_of(a: Acquired) -> String {
    match a {
        Acquired::Lease { mailbox, .. } => mailbox,
        other => panic!("expected a lease, got {other:?}"),
    }
}

fn worker<'a>(rows: &'a [crate::index::WorkerRow], id: &str) -> &'a crate::index::WorkerRow {
    rows.iter()
        .find(|w| w.worker == id)
        .unwrap_or_else(|| panic!("worker {id} is listed"))
}

/// Runs every lease rule against `ix` (no worker or lease recorded yet).
pub(super) fn leases(ix: &dyn Index) {
    one_worker_per_mailbox(ix);
    expired_leases_are_taken_over(ix);
    released_and_finished(ix);
}

fn one_worker_per_mailbox(ix: &dyn Index) {
    let all = names(&["lease-a", "lease-b"]);
    ix.register_worker("w1", LONG).unwrap();
    ix.register_worker("w2", LONG).unwrap();
    match ix.register_worker("w1", LONG) {
        Err(Error::WorkerIdInUse { worker, .. }) => assert_eq!(worker, "w1"),
        other => panic!("a live worker's id is refused to another, got {other:?}"),
    }
    let a = mailbox_of(take(ix, "w1", &all, LONG));
    let b = mailbox_of(take(ix, "w2", &all, LONG));
    assert_ne!(a, b, "two workers never hold the same mailbox");
    assert_eq!(
        take(ix, "w1", &all, LONG),
        Acquired::Wait,
        "every mailbox not done is held by a live worker: wait"
    );
    assert_eq!(
        take(ix, "w1", &names(&["lease-none"]), LONG),
        Acquired::Lease {
            mailbox: "lease-none".into(),
            taken_over_from: None
        },
        "a mailbox seen for the first time is free"
    );
    ix.release_lease("w1", "lease-none", true).unwrap();

    let lost = ix
        .heartbeat("w1", &[(a.clone(), 7), (b.clone(), 1)], LONG)
        .unwrap();
    assert_eq!(lost, vec![b.clone()], "a heartbeat names what is not held");
    let rows = ix.workers().unwrap();
    let w1 = worker(&rows, "w1");
    assert_eq!(w1.state, WorkerState::Working);
    assert_eq!(w1.leases.len(), 1, "{w1:?}");
    assert_eq!(w1.leases[0].mailbox, a);
    assert_eq!(w1.leases[0].messages, 7, "the heartbeat records progress");
    assert!(!w1.leases[0].expired);
    assert_eq!(worker(&rows, "w2").leases[0].mailbox, b);

    ix.release_lease("w1", &a, true).unwrap();
    ix.release_lease("w1", &b, true).unwrap(); // not w1's: changes nothing
    assert_eq!(
        take(ix, "w1", &all, LONG),
        Acquired::Wait,
        "a mailbox released by another worker's id stays held"
    );
    ix.release_lease("w2", &b, true).unwrap();
    assert_eq!(
        take(ix, "w2", &all, LONG),
        Acquired::Done,
        "a mailbox finished since the worker registered is not taken again"
    );
    ix.finish_worker("w1").unwrap();
    ix.finish_worker("w2").unwrap();
}

fn expired_leases_are_taken_over(ix: &dyn Index) {
    let one = names(&["lease-x"]);
    ix.register_worker("dying", SHORT).unwrap();
    ix.register_worker("ghost", SHORT).unwrap();
    ix.register_worker("alive", LONG).unwrap();
    assert_eq!(
        mailbox_of(take(ix, "dying", &one, SHORT)),
        "lease-x".to_string()
    );
    assert_eq!(take(ix, "alive", &one, LONG), Acquired::Wait);
    std::thread::sleep(SHORT + Duration::from_millis(300));
    let rows = ix.workers().unwrap();
    let dying = worker(&rows, "dying");
    assert_eq!(dying.state, WorkerState::Dead, "{dying:?}");
    assert!(dying.leases[0].expired, "{dying:?}");
    assert_eq!(
        take(ix, "alive", &one, LONG),
        Acquired::Lease {
            mailbox: "lease-x".into(),
            taken_over_from: Some("dying".into())
        },
        "an expired lease is taken over"
    );
    assert_eq!(
        ix.heartbeat("dying", &[("lease-x".into(), 3)], SHORT)
            .unwrap(),
        names(&["lease-x"]),
        "the worker whose lease was taken over learns it at its next heartbeat"
    );
    // A dead worker's id may be used again (its process is gone).
    assert_eq!(worker(&rows, "ghost").state, WorkerState::Dead);
    ix.register_worker("ghost", LONG).unwrap();
    ix.finish_worker("ghost").unwrap();
    ix.finish_worker("dying").unwrap();
    ix.finish_worker("alive").unwrap();
}

fn released_and_finished(ix: &dyn Index) {
    let all = names(&["lease-p", "lease-q"]);
    ix.register_worker("r1", LONG).unwrap();
    ix.register_worker("r2", LONG).unwrap();
    let p = mailbox_of(take(ix, "r1", &all, LONG));
    ix.release_lease("r1", &p, false).unwrap();
    assert_eq!(
        take(ix, "r2", &all, LONG),
        Acquired::Lease {
            mailbox: p.clone(),
            taken_over_from: None
        },
        "a mailbox given up unfinished is free at once"
    );
    let q = mailbox_of(take(ix, "r1", &all, LONG));
    assert_ne!(p, q);
    ix.finish_worker("r1").unwrap();
    let rows = ix.workers().unwrap();
    let r1 = worker(&rows, "r1");
    assert_eq!(r1.state, WorkerState::Finished);
    assert!(r1.finished.is_some());
    assert!(r1.leases.is_empty(), "a finished worker holds nothing");
    assert_eq!(
        take(ix, "r2", &all, LONG),
        Acquired::Lease {
            mailbox: q.clone(),
            taken_over_from: None
        },
        "what a finishing worker released unfinished is free"
    );
    ix.release_lease("r2", &p, true).unwrap();
    ix.release_lease("r2", &q, true).unwrap();
    assert_eq!(take(ix, "r2", &all, LONG), Acquired::Done);
    // A worker joining while r2 works is in r2's round: what r2's round finished is done.
    std::thread::sleep(Duration::from_millis(20));
    ix.register_worker("late", LONG).unwrap();
    assert_eq!(take(ix, "late", &all, LONG), Acquired::Done);
    ix.finish_worker("late").unwrap();
    ix.finish_worker("r2").unwrap();
    // A later run (no worker at work) starts a new round: the mailboxes are backed up again.
    std::thread::sleep(Duration::from_millis(20));
    ix.register_worker("r1", LONG).unwrap();
    assert!(matches!(take(ix, "r1", &all, LONG), Acquired::Lease { .. }));
    ix.finish_worker("r1").unwrap();
    assert!(
        ix.workers()
            .unwrap()
            .iter()
            .all(|w| w.state == WorkerState::Finished && w.leases.is_empty())
    );
}
