//! [`GatewayHandler`]: the [`oftp::Handler`] of `oftp serve` (the responder side) and of the
//! gateway's own calls (the initiator side). Each of its methods hands the event to the part of
//! the gateway it concerns in one call; the parts keep their state in their own modules.

use std::sync::Arc;

use oftp::handler::{
    Disconnected, EndResponse, EndResponseTiming, FileDecision, FileOffer, SessionInfo,
    TransferInfo, TransferResult,
};
use oftp::{ConnectionInfo, Handler};

use crate::postprocess::PostProcessor;
use crate::runtime::Observer;

/// The runtime's events, passed to the gateway's parts.
#[derive(Debug, Clone, Default)]
pub struct GatewayHandler {
    /// The call loops: session counts per partner, live events, the state of our own calls.
    runtime: Option<Observer>,
    /// Runs `on_receive` and holds EERPs ([`crate::postprocess`]); none = the runtime's way.
    pub post_processing: Option<Arc<PostProcessor>>,
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
        if let Some(p) = &self.post_processing {
            p.session_started(session);
        }
    }

    async fn accept_file(&self, session: &SessionInfo, offer: &FileOffer) -> FileDecision {
        if let Some(p) = &self.post_processing {
            p.offered(session, offer);
        }
        offer.default_decision()
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

    async fn end_transfer(
        &self,
        session: &SessionInfo,
        transfer: &TransferInfo,
        result: &TransferResult,
    ) -> EndResponseTiming {
        if let Some(r) = &self.runtime {
            r.transfer_ended(session, transfer, result);
        }
        match &self.post_processing {
            Some(p) => p.file_stored(session, transfer, result).await,
            None => EndResponseTiming::Now,
        }
    }

    async fn end_response(&self, session: &SessionInfo, response: &EndResponse) {
        if let Some(r) = &self.runtime {
            r.end_response(session, response);
        }
    }

    async fn disconnected(&self, info: &ConnectionInfo, why: &Disconnected) {
        if let Some(r) = &self.runtime {
            r.disconnected(info, why);
        }
        if let Some(p) = &self.post_processing {
            p.session_ended(info.id);
        }
    }
}
