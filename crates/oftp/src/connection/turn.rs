//! Our turn: what to do when we hold the turn and are idle (shutdown, the next queued file or
//! end response, change direction, end the session), and the requests of the
//! [`SessionHandle`](crate::handle::SessionHandle) that feed the queue.

use std::time::Instant;

use oftp_proto::codec::EsidReason;

use crate::connection::error::ConnectionError;
use crate::connection::{Connection, Work};
use crate::handle::Request;
use crate::handler::{Disconnected, Handler};
use crate::transport::{FileServices, Transport};

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    /// We hold the turn and are idle: do the next thing. `true` if something was done.
    pub(super) async fn act(&mut self) -> bool {
        let Some((may_end, may_cd)) = self.ready else {
            return false;
        };
        if !self.session.is_speaker() || self.outgoing.is_some() || self.awaiting_rtr.is_some() {
            return false;
        }
        self.drain_requests();
        if self.forced_seen || (self.graceful_seen && self.incoming.is_none()) {
            self.ready = None;
            if may_end {
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
            self.ready = None;
            match work {
                Work::EndResponse(r) => self.send_end_response(r).await,
                Work::File {
                    file,
                    job,
                    from_outbox,
                } => self.start_sending(file, job, from_outbox).await,
            }
            // Nothing went out (the file could not be read, ...): the turn is still ours and
            // the session will not announce it again.
            if self.outgoing.is_none() && self.awaiting_rtr.is_none() && !self.session.is_closed() {
                self.ready = Some((may_end, may_cd));
            }
            return true;
        }
        if self.waiting && !self.logoff && !self.want_cd {
            return false;
        }
        self.ready = None;
        if may_end {
            let _ = self.session.end_session(EsidReason::NORMAL, "");
        } else if may_cd {
            self.want_cd = false;
            let _ = self.session.change_direction();
        }
        true
    }

    fn drain_requests(&mut self) {
        while let Ok(r) = self.requests.try_recv() {
            self.take_request(r);
        }
    }

    pub(super) fn take_request(&mut self, r: Request) {
        match r {
            Request::SendFile(file) => self.queue.push_back(Work::File {
                file,
                job: None,
                from_outbox: false,
            }),
            Request::SendEndResponse(resp) => self.queue.push_back(Work::EndResponse(resp)),
            Request::ChangeDirection => self.want_cd = true,
            Request::Logoff => self.logoff = true,
            Request::Disconnect => {
                // Abrupt by definition: drop the transport; the peer sees the connection close.
                self.session.handle_transport_closed(Instant::now());
                self.ended = Some(Disconnected {
                    reason: None,
                    by_peer: false,
                    description: "disconnected by the application".into(),
                });
            }
        }
        // Any request ends a handler's Wait: it asked for something.
        self.waiting = false;
    }
}
