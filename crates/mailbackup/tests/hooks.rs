//! The per-message decisions of the hooks: redirect, skip after fetch, give up after an error.
//! End to end against the Graph emulator (real sockets on 127.0.0.1).

mod common;

use common::*;
use graph_emulator::{EndpointKind, MailboxSpec, Trigger};
use mailbackup::{BeforeAction, Hooks, MessageInfo, ObjectKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Exercises the per-message decisions: redirect, drop after fetch, a message deleted between
/// listing and fetch, and giving up after an error.
struct Decider {
    emu_mailbox: graph_emulator::MailboxHandle,
    /// Where the first message is saved instead of its default key.
    redirect_to: ObjectKey,
    order: Mutex<Vec<String>>,
    errors: Mutex<Vec<(String, u32)>>,
    fetched: AtomicU64,
}

impl Hooks for Decider {
    fn before_message(&self, info: &MessageInfo, proposed: BeforeAction) -> BeforeAction {
        let n = {
            let mut o = self.order.lock().unwrap();
            o.push(info.id.clone());
            o.len()
        };
        match n {
            1 => BeforeAction::Save(self.redirect_to.clone()),
            2 => {
                // Deleted remotely after the listing: the fetch gets 404.
                self.emu_mailbox.delete_message(&info.id).unwrap();
                proposed
            }
            _ => proposed,
        }
    }
    fn message_fetched(&self, _info: &MessageInfo, mime: &[u8]) -> mailbackup::FetchedAction {
        assert!(!mime.is_empty());
        // The second fetched message is dropped.
        if self.fetched.fetch_add(1, Ordering::SeqCst) == 1 {
            mailbackup::FetchedAction::Skip
        } else {
            mailbackup::FetchedAction::Save
        }
    }
    fn message_error(
        &self,
        failure: &mailbackup::MessageFailure<'_>,
        proposed: mailbackup::ErrorAction,
    ) -> mailbackup::ErrorAction {
        assert_eq!(
            proposed,
            mailbackup::ErrorAction::Retry,
            "a transport error is retried by default"
        );
        self.errors
            .lock()
            .unwrap()
            .push((failure.code.clone(), failure.attempt));
        mailbackup::ErrorAction::Skip
    }
}

#[tokio::test]
async fn hooks_redirect_skip_and_give_up_and_deleted_in_flight_is_not_an_error() {
    let emu = emulator(vec![MailboxSpec::new(ALICE).messages(8).seed(6)]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = app_token(&emu).await;
    let decider = || {
        Arc::new(Decider {
            emu_mailbox: emu.mailbox(ALICE),
            redirect_to: ObjectKey::new("elsewhere/first.eml").unwrap(),
            order: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            fetched: AtomicU64::new(0),
        })
    };
    let hooks = decider();
    let report = builder(&emu, dir.path(), token.clone(), ALICE)
        .max_connections(1)
        .hooks(hooks.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert!(report.is_success(), "{report:?}");
    assert_eq!((r.gone_in_flight, r.skipped, r.saved), (1, 1, 6), "{r:?}");
    let first = dir.path().join("elsewhere/first.eml");
    let (h, _) = split_saved(&std::fs::read(&first).unwrap());
    assert_eq!(h.id, hooks.order.lock().unwrap()[0]);

    // One $value request fails at the transport level; the hook gives up on that message.
    emu.faults().set(graph_emulator::FaultConfig {
        drop_connection: Trigger::Next(1),
        only: Some(vec![EndpointKind::MessageValue]),
        ..Default::default()
    });
    let hooks = decider();
    let dir = tempfile::tempdir().unwrap();
    let report = builder(&emu, dir.path(), token, ALICE)
        .max_connections(1)
        .hooks(hooks.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let r = &report.mailboxes[0];
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert_eq!(r.failed[0].code, "TransportError");
    assert_eq!(
        *hooks.errors.lock().unwrap(),
        vec![("TransportError".to_string(), 1)]
    );
    assert!(
        !report.is_success(),
        "a failed message makes the run unsuccessful"
    );
}
