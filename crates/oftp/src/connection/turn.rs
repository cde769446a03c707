//! Our turn: what to do when we hold the turn and are idle (shutdown, the next queued file or
//! end response, change direction, end the session), and the requests of the
//! [`SessionHandle`](crate::handle::SessionHandle) that feed the queue. The state it decides
//! from is three enums: [`Turn`] (whether we hold the turn, and what the session allows with
//! it), [`Idle`] (what the application wants when there is nothing to send) and [`Shutdown`]
//! (how far a server shutdown has come). Sending and receiving themselves are elsewhere.

use oftp_proto::codec::EsidReason;

use crate::connection::error::ConnectionError;
use crate::connection::{Connection, Origin, Work};
use crate::handle::Request;
use crate::handler::{Disconnected, Handler};
use crate::transport::{FileServices, Transport};

/// Whose turn it is, as far as [`Connection::act`] is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// The partner speaks, or what we started with the turn has not finished yet.
    Theirs,
    /// We hold the turn and are idle; the session announced what we may do with it
    /// (`Event::ReadyToSend`).
    Ours(Allowed),
}

/// What the session lets us do with a turn when we have nothing to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allowed {
    /// End the session normally (ESID 00; right after the partner's CD).
    EndSession,
    /// Give the turn to the partner (CD).
    ChangeDirection,
    /// Neither.
    Nothing,
}

impl Allowed {
    /// From `Event::ReadyToSend`: ending the session wins over changing direction.
    pub(super) fn new(may_end_session: bool, may_change_direction: bool) -> Self {
        if may_end_session {
            Allowed::EndSession
        } else if may_change_direction {
            Allowed::ChangeDirection
        } else {
            Allowed::Nothing
        }
    }
}

/// What the application wants when we hold the turn with nothing to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Idle {
    /// End the session or change direction, whichever the session allows.
    Proceed,
    /// Keep the turn (the handler's `ReadyAction::Wait`) until a request arrives.
    Wait,
    /// Change direction when allowed ([`Request::ChangeDirection`]).
    ChangeDirection,
    /// Log off ([`Request::Logoff`]): end the session when allowed; stays for the session.
    Logoff,
}

impl Idle {
    /// The handler's answer to `ReadyToSend`: wait or not, unless the application asked for
    /// a change of direction or a logoff, which stand.
    pub(super) fn ready(self, wait: bool) -> Self {
        match self {
            Idle::ChangeDirection | Idle::Logoff => self,
            Idle::Proceed | Idle::Wait if wait => Idle::Wait,
            Idle::Proceed | Idle::Wait => Idle::Proceed,
        }
    }

    /// A request arrived: any request ends a handler's wait (it asked for something).
    fn request(self, r: &Request) -> Self {
        match (self, r) {
            (Idle::Logoff, _) | (_, Request::Logoff) => Idle::Logoff,
            (_, Request::ChangeDirection) | (Idle::ChangeDirection, _) => Idle::ChangeDirection,
            _ => Idle::Proceed,
        }
    }
}

/// How far a shutdown of the server has come, as this connection saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Shutdown {
    /// No shutdown.
    Running,
    /// Graceful: the file in progress finishes, then the session ends.
    Graceful,
    /// Forced: the session ends now.
    Forced,
}

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    /// We hold the turn and are idle: do the next thing. `true` if something was done.
    pub(super) async fn act(&mut self) -> bool {
        let Turn::Ours(allowed) = self.turn else {
            return false;
        };
        if !self.session.is_speaker() || self.outgoing.is_some() || self.awaiting_rtr.is_some() {
            return false;
        }
        self.drain_requests();
        let ending = match self.shutdown_seen {
            Shutdown::Running => false,
            Shutdown::Graceful => self.incoming.is_none(),
            Shutdown::Forced => true,
        };
        if ending {
            self.turn = Turn::Theirs;
            if allowed == Allowed::EndSession {
                let _ = self.session.end_session(EsidReason::NORMAL, "");
            } else {
                self.send_refusal(&ConnectionError::ShuttingDown);
            }
            return true;
        }
        if !self.outbox_scanned {
            self.outbox_scanned = true;
            self.scan_outbox().await;
        }
        if let Some(work) = self.queue.pop_front() {
            self.turn = Turn::Theirs;
            match work {
                Work::EndResponse(r) => self.send_end_response(r).await,
                Work::File { file, origin } => self.start_sending(file, origin).await,
            }
            // Nothing went out (the file could not be read, ...): the turn is still ours and
            // the session will not announce it again.
            if self.outgoing.is_none() && self.awaiting_rtr.is_none() && !self.session.is_closed() {
                self.turn = Turn::Ours(allowed);
            }
            return true;
        }
        if self.idle == Idle::Wait {
            return false;
        }
        self.turn = Turn::Theirs;
        match allowed {
            Allowed::EndSession => {
                let _ = self.session.end_session(EsidReason::NORMAL, "");
            }
            Allowed::ChangeDirection => {
                if self.idle == Idle::ChangeDirection {
                    self.idle = Idle::Proceed;
                }
                let _ = self.session.change_direction();
            }
            Allowed::Nothing => {}
        }
        true
    }

    fn drain_requests(&mut self) {
        while let Ok(r) = self.requests.try_recv() {
            self.take_request(r);
        }
    }

    pub(super) fn take_request(&mut self, r: Request) {
        self.idle = self.idle.request(&r);
        match r {
            Request::SendFile(file) => self.queue.push_back(Work::File {
                file: *file,
                origin: Origin::Request,
            }),
            Request::SendEndResponse(resp) => self.queue.push_back(Work::EndResponse(*resp)),
            Request::ChangeDirection | Request::Logoff => {}
            Request::Disconnect => {
                // Abrupt by definition: drop the transport; the peer sees the connection close.
                self.session.handle_transport_closed(super::now());
                self.ended = Some(Disconnected {
                    reason: None,
                    by_peer: false,
                    description: "disconnected by the application".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_the_session_wins_over_changing_direction() {
        assert_eq!(Allowed::new(true, true), Allowed::EndSession);
        assert_eq!(Allowed::new(true, false), Allowed::EndSession);
        assert_eq!(Allowed::new(false, true), Allowed::ChangeDirection);
        assert_eq!(Allowed::new(false, false), Allowed::Nothing);
    }

    #[test]
    fn the_handlers_wait_is_ended_by_any_request() {
        let waiting = Idle::Proceed.ready(true);
        assert_eq!(waiting, Idle::Wait);
        assert_eq!(waiting.request(&Request::Disconnect), Idle::Proceed);
        assert_eq!(
            waiting.request(&Request::ChangeDirection),
            Idle::ChangeDirection
        );
        assert_eq!(waiting.request(&Request::Logoff), Idle::Logoff);
        assert_eq!(Idle::Wait.ready(false), Idle::Proceed);
    }

    #[test]
    fn a_requested_change_of_direction_or_logoff_outlasts_the_handlers_wait() {
        assert_eq!(Idle::ChangeDirection.ready(true), Idle::ChangeDirection);
        assert_eq!(Idle::Logoff.ready(true), Idle::Logoff);
        // A logoff stands for the rest of the session, whatever else is asked.
        assert_eq!(
            Idle::Logoff.request(&Request::ChangeDirection),
            Idle::Logoff
        );
        assert_eq!(Idle::Logoff.request(&Request::Disconnect), Idle::Logoff);
        assert_eq!(
            Idle::ChangeDirection.request(&Request::Disconnect),
            Idle::ChangeDirection
        );
        assert_eq!(
            Idle::ChangeDirection.request(&Request::Logoff),
            Idle::Logoff
        );
    }

    #[test]
    fn a_forced_shutdown_is_further_than_a_graceful_one() {
        assert!(Shutdown::Running < Shutdown::Graceful);
        assert!(Shutdown::Graceful < Shutdown::Forced);
    }
}
