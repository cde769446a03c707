//! What the handler of every session reports to the gateway: each partner's sessions (ours
//! and its calls to us, for `max_sessions`), live events, and for our own calls the wire
//! identity and progress of each queued file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use oftp::handler::{Direction, Disconnected, SessionInfo, TransferInfo};
use oftp::journal::FileKey;
use oftp::{ConnectionId, ConnectionInfo, SessionHandle};
use tokio::sync::{Notify, broadcast};

use crate::ops::GatewayEvent;

/// What the handler of every session reaches: session counts and live events.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) events: broadcast::Sender<GatewayEvent>,
    pub(super) sessions: Mutex<Sessions>,
    pub(super) freed: Notify,
}

#[derive(Debug, Default)]
pub(super) struct Sessions {
    pub(super) by_partner: HashMap<String, u32>,
    /// Sessions partners opened with us, by connection.
    pub(super) incoming: HashMap<ConnectionId, String>,
}

impl Shared {
    pub(super) fn publish(&self, event: GatewayEvent) {
        // No subscriber is no error.
        let _ = self.events.send(event);
    }

    pub(super) fn count(&self, partner: &str) -> u32 {
        let s = self.sessions.lock().expect("sessions lock");
        s.by_partner.get(partner).copied().unwrap_or(0)
    }

    /// Takes a session slot of `partner` once fewer than `max` sessions run.
    pub(super) async fn acquire(&self, partner: &str, max: u32) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.sessions.lock().expect("sessions lock");
                let n = s.by_partner.entry(partner.to_owned()).or_default();
                if *n < max {
                    *n += 1;
                    return;
                }
            }
            freed.await;
        }
    }

    /// Gives back a slot [`acquire`](Self::acquire)d for one of our calls.
    pub(super) fn release(&self, partner: &str) {
        let mut s = self.sessions.lock().expect("sessions lock");
        if let Some(n) = s.by_partner.get_mut(partner) {
            *n = n.saturating_sub(1);
        }
        drop(s);
        self.freed.notify_waiters();
    }

    /// A partner called us: its session counts until [`incoming_ended`](Self::incoming_ended).
    /// It is never refused here (the server's limits decide), but our calls wait for it.
    fn incoming_started(&self, id: ConnectionId, partner: &str) {
        let mut s = self.sessions.lock().expect("sessions lock");
        *s.by_partner.entry(partner.to_owned()).or_default() += 1;
        s.incoming.insert(id, partner.to_owned());
    }

    /// The connection `id` closed: the partner of its session, if it had one.
    fn incoming_ended(&self, id: ConnectionId) -> Option<String> {
        let mut s = self.sessions.lock().expect("sessions lock");
        let partner = s.incoming.remove(&id);
        if let Some(n) = partner.as_ref().and_then(|p| s.by_partner.get_mut(p)) {
            *n = n.saturating_sub(1);
        }
        drop(s);
        self.freed.notify_waiters();
        partner
    }
}

/// The gateway's part of [`GatewayHandler`]: for the server's sessions it counts each
/// partner's sessions with us; for a call it also follows its files.
#[derive(Debug, Clone)]
pub struct Observer {
    pub(super) shared: Arc<Shared>,
    pub(super) call: Option<Arc<CallContext>>,
}

/// What a call's handler learns about the call.
#[derive(Debug)]
pub(super) struct CallContext {
    pub(super) partner: String,
    /// Queue row of each file of the call, by its local path.
    pub(super) rows: HashMap<PathBuf, i64>,
    /// The wire identity each file was offered under.
    pub(super) keys: Mutex<HashMap<PathBuf, FileKey>>,
    /// The session, once it started: to end it at shutdown.
    pub(super) handle: Mutex<Option<SessionHandle>>,
}

impl Observer {
    pub(crate) fn session_started(&self, session: &SessionInfo) {
        match &self.call {
            Some(call) => {
                *call.handle.lock().expect("call lock") = Some(session.handle.clone());
            }
            None => self
                .shared
                .incoming_started(session.id, &session.partner_name),
        }
        self.shared.publish(GatewayEvent::SessionStarted {
            partner: session.partner_name.clone(),
            outgoing_call: self.call.is_some(),
        });
    }

    pub(crate) fn start_transfer(&self, _session: &SessionInfo, transfer: &TransferInfo) {
        if let (Some(call), Direction::Outgoing) = (&self.call, &transfer.direction) {
            let key = FileKey::new(
                transfer.originator.clone(),
                &transfer.virtual_file_name,
                transfer.stamp,
            );
            call.keys
                .lock()
                .expect("call lock")
                .insert(transfer.local_file.clone(), key);
        }
    }

    pub(crate) fn progress(&self, session: &SessionInfo, transfer: &TransferInfo, bytes: u64) {
        let outgoing = matches!(transfer.direction, Direction::Outgoing);
        let transfer_id = self
            .call
            .as_ref()
            .filter(|_| outgoing)
            .and_then(|c| c.rows.get(&transfer.local_file).copied());
        self.shared.publish(GatewayEvent::Progress {
            partner: session.partner_name.clone(),
            outgoing,
            virtual_file_name: transfer.virtual_file_name.clone(),
            bytes,
            transfer_id,
        });
    }

    pub(crate) fn disconnected(&self, info: &ConnectionInfo, why: &Disconnected) {
        let partner = match &self.call {
            // Only a call that logged in had a session to end.
            Some(call) => call
                .handle
                .lock()
                .expect("call lock")
                .is_some()
                .then(|| call.partner.clone()),
            None => self.shared.incoming_ended(info.id),
        };
        if let Some(partner) = partner {
            self.shared.publish(GatewayEvent::SessionEnded {
                partner,
                text: why.description.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            events: broadcast::channel(8).0,
            sessions: Mutex::new(Sessions::default()),
            freed: Notify::new(),
        })
    }

    /// Whether `acquire` gets a slot within a moment.
    async fn gets_slot(s: &Shared, partner: &str, max: u32) -> bool {
        tokio::time::timeout(Duration::from_millis(100), s.acquire(partner, max))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_call_waits_while_the_partners_own_call_to_us_holds_its_only_slot() {
        let s = shared();
        s.incoming_started(7, "acme");
        assert_eq!(s.count("acme"), 1);
        assert!(!gets_slot(&s, "acme", 1).await, "max_sessions = 1 is taken");
        assert!(
            gets_slot(&s, "other", 1).await,
            "partners are counted apart"
        );
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire("acme", 1).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        assert_eq!(s.incoming_ended(7).as_deref(), Some("acme"));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the end of the partner's session frees the slot")
            .unwrap();
        assert_eq!(s.count("acme"), 1, "now held by our call");
        s.release("acme");
        assert_eq!(s.count("acme"), 0);
    }

    #[tokio::test]
    async fn our_calls_take_at_most_max_sessions_slots() {
        let s = shared();
        assert!(gets_slot(&s, "acme", 2).await);
        assert!(gets_slot(&s, "acme", 2).await);
        assert!(!gets_slot(&s, "acme", 2).await);
        s.release("acme");
        assert!(gets_slot(&s, "acme", 2).await);
        assert_eq!(
            s.incoming_ended(99),
            None,
            "a connection that never logged in frees nothing"
        );
        assert_eq!(s.count("acme"), 2);
    }
}
