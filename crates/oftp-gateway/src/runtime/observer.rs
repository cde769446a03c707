//! What the handler of every session reports to the gateway: each partner's sessions (ours
//! and its calls to us, for `max_sessions`), live events, and for our own calls the wire
//! identity and progress of each queued file. For the EERP latency of [`GatewayEvent::
//! EndResponseReceived`] it remembers when each file we sent was confirmed (EFPA), until its
//! end response arrives.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use oftp::handler::{
    Direction, Disconnected, EndResponse, SessionInfo, TransferInfo, TransferResult,
};
use oftp::journal::FileKey;
use oftp::oftp_proto::codec::EsidReason;
use oftp::{ConnectionId, ConnectionInfo, SessionHandle};
use tokio::sync::{Notify, broadcast};

use crate::ops::GatewayEvent;

/// What the handler of every session reaches: session counts and live events.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) events: broadcast::Sender<GatewayEvent>,
    pub(super) sessions: Mutex<Sessions>,
    pub(super) freed: Notify,
    /// When each file we sent was confirmed (EFPA), by wire identity, until its end response.
    pub(super) confirmed: Mutex<HashMap<FileKey, Instant>>,
}

/// Confirmed files remembered at most for the EERP latency; past this the oldest is
/// forgotten (a partner that never answers must not grow the map without bound).
const CONFIRMED_LIMIT: usize = 10_000;

#[derive(Debug, Default)]
pub(super) struct Sessions {
    pub(super) by_partner: HashMap<String, u32>,
    /// Sessions partners opened with us, by connection.
    pub(super) incoming: HashMap<ConnectionId, String>,
}

impl Shared {
    /// No sessions yet; live events kept for `buffer` events behind.
    pub(super) fn new(buffer: usize) -> Self {
        Shared {
            events: broadcast::channel(buffer).0,
            sessions: Mutex::new(Sessions::default()),
            freed: Notify::new(),
            confirmed: Mutex::new(HashMap::new()),
        }
    }

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

    /// The file `key` we sent was confirmed (EFPA) now.
    fn confirmed(&self, key: FileKey) {
        let mut c = self.confirmed.lock().expect("confirmed lock");
        if c.len() >= CONFIRMED_LIMIT
            && let Some(oldest) = c.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
        {
            c.remove(&oldest);
        }
        c.insert(key, Instant::now());
    }

    /// Milliseconds since the file `key` was confirmed, if this process saw it; forgets it.
    fn answered(&self, key: &FileKey) -> Option<u64> {
        let at = self.confirmed.lock().expect("confirmed lock").remove(key)?;
        Some(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
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
        let transfer_id = self.row(transfer).filter(|_| outgoing);
        self.shared.publish(GatewayEvent::Progress {
            partner: session.partner_name.clone(),
            outgoing,
            virtual_file_name: transfer.virtual_file_name.clone(),
            bytes,
            transfer_id,
        });
    }

    /// A file went through (or failed): a completed one is a live event, and a file we sent
    /// is remembered for the latency of its end response.
    pub(crate) fn transfer_ended(
        &self,
        session: &SessionInfo,
        transfer: &TransferInfo,
        result: &TransferResult,
    ) {
        let TransferResult::Completed { units, .. } = result else {
            return;
        };
        let outgoing = matches!(transfer.direction, Direction::Outgoing);
        if outgoing {
            self.shared.confirmed(FileKey::new(
                transfer.originator.clone(),
                &transfer.virtual_file_name,
                transfer.stamp,
            ));
        }
        self.shared.publish(GatewayEvent::FileCompleted {
            partner: session.partner_name.clone(),
            outgoing,
            virtual_file_name: transfer.virtual_file_name.clone(),
            bytes: *units,
            transfer_id: self.row(transfer).filter(|_| outgoing),
        });
    }

    /// An EERP or NERP for a file we sent arrived (the runtime recorded it).
    pub(crate) fn end_response(&self, session: &SessionInfo, response: &EndResponse) {
        // EERPDEST is the file's originator: the identity the file was sent under.
        let key = FileKey::new(
            response.destination.clone(),
            &response.virtual_file_name,
            response.stamp,
        );
        self.shared.publish(GatewayEvent::EndResponseReceived {
            partner: session.partner_name.clone(),
            virtual_file_name: response.virtual_file_name.clone(),
            positive: response.negative.is_none(),
            latency_ms: self.shared.answered(&key),
        });
    }

    /// The queue row of a file of our call.
    fn row(&self, transfer: &TransferInfo) -> Option<i64> {
        self.call
            .as_ref()
            .and_then(|c| c.rows.get(&transfer.local_file).copied())
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
                outgoing_call: self.call.is_some(),
                ok: why.reason == Some(EsidReason::NORMAL),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(8))
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
