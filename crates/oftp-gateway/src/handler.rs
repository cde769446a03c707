//! [`GatewayHandler`]: the [`oftp::Handler`] of `oftp serve` (the responder side) and of the
//! gateway's own calls (the initiator side). Each of its methods hands the event to the part of
//! the gateway it concerns in one call; the parts keep their state in their own modules.

use oftp::Handler;

/// The runtime's events, passed to the gateway's parts.
#[derive(Debug, Clone, Default)]
pub struct GatewayHandler {}

impl GatewayHandler {
    /// A handler that does what the runtime does by default.
    pub fn new() -> Self {
        GatewayHandler {}
    }
}

impl Handler for GatewayHandler {}
