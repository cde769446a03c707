//! Tests of the journal's own types and of `call`.

use super::*;
use std::time::Duration;

#[test]
fn stored_names_of_states_and_directions_round_trip() {
    for state in SendState::ALL {
        assert_eq!(SendState::parse(state.as_str()), Some(state));
    }
    assert_eq!(SendState::parse("shipped"), None);
    assert_eq!(Direction::Received.as_str(), "received");
    assert_eq!(Direction::Sent.as_str(), "sent");
}

/// `call` must not run the operation on the async worker: on a runtime with one worker
/// thread, an operation that waits for another task of that runtime only finishes if it
/// runs elsewhere (on the blocking pool).
#[tokio::test(flavor = "current_thread")]
async fn call_runs_on_the_blocking_pool() {
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::in_memory().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let signal = tokio::spawn(async move { tx.send(()).unwrap() });
    let key = FileKey::new("ORIG".parse().unwrap(), "Z", FileStamp::now());
    let k = key.clone();
    let id = journal
        .call(move |j| {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("the operation ran on the async worker and blocked it");
            j.begin_receive("ORIG", &k, Path::new("p"), Path::new("f"), "")
        })
        .await
        .unwrap();
    signal.await.unwrap();
    assert_eq!(journal.received("ORIG", &key).unwrap().unwrap().id, id);
}

#[tokio::test]
async fn call_passes_the_operations_error_on() {
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::in_memory().unwrap());
    let mut bad = FileStamp::now();
    bad.month = 13;
    let key = FileKey::new("ORIG".parse().unwrap(), "BAD", bad);
    let e = journal
        .call(move |j| j.begin_receive("ORIG", &key, Path::new("p"), Path::new("f"), ""))
        .await
        .unwrap_err();
    assert!(matches!(e, JournalError::InvalidStamp { .. }), "{e}");
}
