//! [`GatewayHandler`]: the [`oftp::Handler`] of `oftp serve` (the responder side) and of the
//! gateway's own calls (the initiator side). Each of its methods hands the event to the part of
//! the gateway it concerns in one call; the parts keep their state in their own modules.

use oftp::handler::{Disconnected, SessionInfo, TransferInfo};
use oftp::{ConnectionInfo, Handler};

use crate::runtime::Observer;

/// The runtime's events, passed to the gateway's parts.
#[derive(Debug, Clone, Default)]
pub struct GatewayHandler {
    /// The call loops: session counts per partner, live events, the state of our own calls.
    runtime: Option<Observer>,
}

impl GatewayHandler {
    /// A handler that does what the runtime does by default.
    pub fn new() -> Self {
        GatewayHandler::default()
    }

    /// Reports sessions and transfers to a running gateway ([`crate::runtime::Gateway::observer`]).
    pub fn with_runtime(mut self, observer: Observer) -> Self {
        self.runtime = Some(observer);
        self
    }
}

impl Handler for GatewayHandler {
    async fn session_started(&self, session: &SessionInfo) {
        if let Some(r) = &self.runtime {
            r.session_started(session);
        }
    }

    async fn start_transfer(&self, session: &SessionInfo, transfer: &TransferInfo) {
        if let Some(r) = &self.runtime {
            r.start_transfer(session, transfer);
        }
    }

    async fn transfer(&self, session: &SessionInfo, transfer: &TransferInfo, bytes: u64) {
        if let Some(r) = &self.runtime {
            r.progress(session, transfer, bytes);
        }
    }

    async fn disconnected(&self, info: &ConnectionInfo, why: &Disconnected) {
        if let Some(r) = &self.runtime {
            r.disconnected(info, why);
        }
    }
}
