//! [`GatewayHandler`]: the [`oftp::Handler`] of `oftp serve` (the responder side) and of the
//! gateway's own calls (the initiator side). Each of its methods hands the event to the part of
//! the gateway it concerns in one call; the parts keep their state in their own modules.

use std::sync::Arc;

use oftp::handler::{
    Disconnected, EndResponseTiming, FileDecision, FileOffer, SessionInfo, TransferInfo,
    TransferResult,
};
use oftp::{ConnectionInfo, Handler};

use crate::postprocess::PostProcessor;

/// The runtime's events, passed to the gateway's parts.
#[derive(Debug, Clone, Default)]
pub struct GatewayHandler {
    /// Runs `on_receive` and holds EERPs ([`crate::postprocess`]); none = the runtime's way.
    pub post_processing: Option<Arc<PostProcessor>>,
}

impl GatewayHandler {
    /// A handler that does what the runtime does by default.
    pub fn new() -> Self {
        GatewayHandler::default()
    }
}

impl Handler for GatewayHandler {
    async fn session_started(&self, session: &SessionInfo) {
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

    async fn end_transfer(
        &self,
        session: &SessionInfo,
        transfer: &TransferInfo,
        result: &TransferResult,
    ) -> EndResponseTiming {
        match &self.post_processing {
            Some(p) => p.file_stored(session, transfer, result).await,
            None => EndResponseTiming::Now,
        }
    }

    async fn disconnected(&self, info: &ConnectionInfo, _why: &Disconnected) {
        if let Some(p) = &self.post_processing {
            p.session_ended(info.id);
        }
    }
}
