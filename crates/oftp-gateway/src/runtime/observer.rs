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

    pub(super) fn release(&self, partner: &str) {
        let mut s = self.sessions.lock().expect("sessions lock");
        if let Some(n) = s.by_partner.get_mut(partner) {
            *n = n.saturating_sub(1);
        }
        drop(s);
        self.freed.notify_waiters();
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
            None => {
                let mut s = self.shared.sessions.lock().expect("sessions lock");
                *s.by_partner
                    .entry(session.partner_name.clone())
                    .or_default() += 1;
                s.incoming.insert(session.id, session.partner_name.clone());
            }
        }
        self.shared.publish(GatewayEvent::SessionStarted {
            partner: session.partner_name.clone(),
            outgoing_call: self.call.is_some(),
        });
    }

    pub(crate) fn start_transfer(&self, _session: &SessionInfo, transfer: &TransferInfo) {
        if let (Some(call), Direction::Outgoing) = (&self.call, &transfer.direction) {
            let key = FileKey::new(
                &transfer.originator,
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
            None => {
                let mut s = self.shared.sessions.lock().expect("sessions lock");
                let p = s.incoming.remove(&info.id);
                if let Some(n) = p.as_ref().and_then(|p| s.by_partner.get_mut(p)) {
                    *n = n.saturating_sub(1);
                }
                drop(s);
                self.shared.freed.notify_waiters();
                p
            }
        };
        if let Some(partner) = partner {
            self.shared.publish(GatewayEvent::SessionEnded {
                partner,
                text: why.description.clone(),
            });
        }
    }
}
