//! Abort, resume, the run lock and the abort grace period.
//! End to end against the Graph emulator (real sockets on 127.0.0.1).

mod common;

use common::*;
use graph_emulator::{EndpointKind, MailboxSpec};
use mailbackup::{Error, Hooks, MessageInfo, ObjectKey, RunStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct AbortAfter {
    n: u64,
    saved: AtomicU64,
    cancel: CancellationToken,
}

impl Hooks for AbortAfter {
    fn message_saved(&self, _info: &MessageInfo, _key: &ObjectKey) {
        if self.saved.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            self.cancel.cancel();
        }
    }
}

#[tokio::test]
async fn abort_leaves_a_consistent_state_and_resume_fetches_only_the_rest() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(50).seed(11)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let b = builder(&emu, dir.path(), token.clone(), ALICE);
    // The hook needs the backup's token: build, then wire the hook through a shared token.
    let cancel = CancellationToken::new();
    let hooks = Arc::new(AbortAfter {
        n: 12,
        saved: AtomicU64::new(0),
        cancel: cancel.clone(),
    });
    let backup = b.hooks(hooks.clone()).build().unwrap();
    let bc = backup.cancel_token();
    let watcher = tokio::spawn(async move {
        cancel.cancelled().await;
        bc.cancel();
    });
    let report = backup.run().await.unwrap();
    watcher.await.unwrap();
    assert_eq!(report.status, RunStatus::Aborted);
    let saved_first = hooks.saved.load(Ordering::SeqCst);
    assert!((12..50).contains(&saved_first), "{saved_first}");
    // The abort let the requests already sent finish before `run` returned: Graph has served
    // exactly the downloads the run received, and each of them was saved (none is still
    // travelling to be served later, which would blur the count below).
    assert_eq!(
        emu.stats().count(EndpointKind::MessageValue),
        saved_first,
        "every $value request sent before the abort was answered and saved"
    );
    let v = mailbackup::verify(dir.path()).unwrap();
    assert!(v.is_clean() && v.ok == saved_first, "{v:?}");
    assert_eq!(
        mailbackup::status(dir.path(), None).unwrap().lock,
        mailbackup::LockState::Free
    );

    emu.reset_stats();
    let report = builder(&emu, dir.path(), token, ALICE)
        .build()
        .unwrap()
        .resume()
        .await
        .unwrap();
    assert!(report.is_success());
    assert_eq!(
        emu.stats().count(EndpointKind::MessageValue),
        50 - saved_first,
        "nothing durable is fetched again"
    );
    assert_complete(dir.path(), &emu, ALICE);
}

#[tokio::test]
async fn a_second_run_on_the_same_folder_is_refused() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(5)]).await;
    let dir = tempfile::tempdir().unwrap();
    let _held = mailbackup::lock::RunLock::acquire(&dir.path().join(".meta")).unwrap();
    let e = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    assert!(e.to_string().contains("in use"));
}

#[tokio::test]
async fn an_abort_waits_for_slow_requests_only_up_to_its_grace_period() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(3).seed(12)]).await;
    // At 100 bytes/s each download takes many seconds: the abort must not wait for them.
    emu.faults().value_bandwidth(Some(100));
    let dir = tempfile::tempdir().unwrap();
    let backup = builder(&emu, dir.path(), app_token(&emu).await, ALICE)
        .abort_grace(Duration::from_millis(300))
        .build()
        .unwrap();
    let cancel = backup.cancel_token();
    let run = backup.run();
    tokio::pin!(run);
    // Abort once the downloads are under way (awaited, not polled).
    tokio::select! {
        r = &mut run => panic!("the run ended before the abort: {r:?}"),
        _ = emu.wait_for_requests(EndpointKind::MessageValue, 3) => {}
    }
    let aborted_at = std::time::Instant::now();
    cancel.cancel();
    let report = run.await.unwrap();
    assert!(aborted_at.elapsed() < Duration::from_secs(10));
    assert_eq!(report.status, RunStatus::Aborted);
    assert!(eml_files(dir.path()).is_empty());
    let v = mailbackup::verify(dir.path()).unwrap();
    assert!(v.is_clean(), "{v:?}");
}
