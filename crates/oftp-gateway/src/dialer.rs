//! [`Dialer`]: the seam between the call loops and the client that runs a session. `oftp
//! serve` implements it with the code of `oftp send` (the partner's TLS and security settings
//! from the configuration); tests implement it with a plain TCP client.

use std::future::Future;
use std::pin::Pin;

use oftp::{ClientError, ClientReport, OutgoingFile};

use crate::handler::GatewayHandler;

/// The session a [`Dialer`] runs, as a boxed future (the trait is used as `dyn Dialer`).
pub type Dialing<'a> = Pin<Box<dyn Future<Output = Result<ClientReport, ClientError>> + Send + 'a>>;

/// Runs one session with a configured partner.
pub trait Dialer: Send + Sync + 'static {
    /// Calls `partner` (its configured name), sends `files` in order, receives what it has
    /// for us, with `handler` as the session's handler (it reports the session's events to
    /// the gateway and lets it end the session at shutdown). `Err` when the session never got
    /// to the files, as [`oftp::Client::run`].
    fn dial<'a>(
        &'a self,
        partner: &'a str,
        files: Vec<OutgoingFile>,
        handler: GatewayHandler,
    ) -> Dialing<'a>;
}
