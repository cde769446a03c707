//! The session's trail in the journal (issue #12): every command the PI trail reports (both
//! roles: this is where the runtime produces `Handler::pi_trail`), which transfers the session
//! moved with the octets of file data each carried, and how the session ended
//! ([`Journal::record_session`](crate::journal::Journal::record_session)).
//!
//! Kept off the hot path: commands wait in memory and are written in one transaction at
//! login (so the partner's name is on record while its files arrive), whenever
//! [`SESSION_BATCH`] have gathered, and at the end. DATA buffers are never recorded one by
//! one: the octets each way are counted, and one `DATA` line sums them up before the file's
//! EFID (or at the end of a session cut in the middle of a file). A failed write is logged and
//! the session goes on: the trail is for people, never what a restart or an acknowledgement
//! relies on.

use chrono::Utc;

use crate::connection::Connection;
use crate::handler::{Disconnected, Handler, Origin};
use crate::journal::history::SESSION_BATCH;
use crate::journal::{
    Direction, SessionBatch, SessionCommand, SessionEnd, SessionRole, SessionStart, SessionTransfer,
};
use crate::transport::{FileServices, Transport};

/// A transfer the session is moving: its row, and octets carried so far.
#[derive(Debug, Clone, Copy)]
struct Moving {
    row: Option<i64>,
    octets: u64,
}

/// What the session has not written yet.
#[derive(Debug)]
pub(super) struct Recorder {
    session: Option<i64>,
    role: SessionRole,
    started_at: chrono::DateTime<Utc>,
    commands: Vec<SessionCommand>,
    transfers: Vec<SessionTransfer>,
    /// The file moving each way: `[received, sent]`.
    moving: [Option<Moving>; 2],
    /// Octets of DATA each way since the last summary line: `[received, sent]`.
    data: [u64; 2],
}

fn slot(d: Direction) -> usize {
    match d {
        Direction::Received => 0,
        Direction::Sent => 1,
    }
}

fn direction_of(origin: Origin) -> Direction {
    match origin {
        Origin::Peer => Direction::Received,
        Origin::Local => Direction::Sent,
    }
}

impl Recorder {
    pub(super) fn new(initiator: bool) -> Self {
        Self {
            session: None,
            role: if initiator {
                SessionRole::Initiator
            } else {
                SessionRole::Responder
            },
            started_at: Utc::now(),
            commands: Vec::new(),
            transfers: Vec::new(),
            moving: [None, None],
            data: [0, 0],
        }
    }

    /// A file starts moving `direction` (its queue row or received file, if it has one).
    pub(super) fn file_started(&mut self, direction: Direction, row: Option<i64>) {
        self.file_ended(direction, false);
        self.moving[slot(direction)] = Some(Moving { row, octets: 0 });
    }

    /// Octets of file data carried `direction` in one DATA buffer.
    pub(super) fn data(&mut self, direction: Direction, octets: usize) {
        let octets = octets as u64;
        self.data[slot(direction)] += octets;
        if let Some(m) = &mut self.moving[slot(direction)] {
            m.octets += octets;
        }
    }

    /// The file moving `direction` is done with in this session (`done`: its EFPA).
    fn file_ended(&mut self, direction: Direction, done: bool) {
        if let Some(m) = self.moving[slot(direction)].take() {
            self.transfers.push(SessionTransfer {
                direction,
                row: m.row,
                octets: m.octets,
                done,
            });
        }
    }

    /// The summary line of the DATA carried `direction` since the last one, if any was.
    fn summarise_data(&mut self, direction: Direction, cut: bool) {
        let octets = std::mem::take(&mut self.data[slot(direction)]);
        if octets > 0 {
            self.commands.push(SessionCommand {
                at: Utc::now(),
                direction,
                command: "DATA".into(),
                description: format!(
                    "DATA {octets} octets of file data{}",
                    if cut { " (cut off)" } else { "" }
                ),
            });
        }
    }

    /// A command the PI trail reported; what it means for the transfers moving.
    pub(super) fn command(&mut self, origin: Origin, name: &str, description: &str) {
        let direction = direction_of(origin);
        if name == "EFID" {
            self.summarise_data(direction, false);
        }
        self.commands.push(SessionCommand {
            at: Utc::now(),
            direction,
            command: name.to_owned(),
            description: description.to_owned(),
        });
        // An answer is about the file moving the other way: our EFPA confirms a received file.
        let answered = match direction {
            Direction::Sent => Direction::Received,
            Direction::Received => Direction::Sent,
        };
        match name {
            "EFPA" => self.file_ended(answered, true),
            "SFNA" | "EFNA" => self.file_ended(answered, false),
            _ => {}
        }
    }

    fn is_due(&self) -> bool {
        self.commands.len() >= SESSION_BATCH
    }

    /// The batch to write now (taking what was gathered), `None` if there is nothing: a
    /// connection that never exchanged a command leaves no session.
    fn batch(&mut self, start: SessionStart, end: Option<SessionEnd>) -> Option<SessionBatch> {
        if end.is_some() {
            for d in [Direction::Received, Direction::Sent] {
                self.summarise_data(d, true);
                self.file_ended(d, false);
            }
        }
        if self.session.is_none() && self.commands.is_empty() && self.transfers.is_empty() {
            return None;
        }
        Some(SessionBatch {
            session: self.session,
            start,
            commands: std::mem::take(&mut self.commands),
            transfers: std::mem::take(&mut self.transfers),
            end,
        })
    }
}

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    /// Who the session is with, as known now.
    fn session_start(&self) -> SessionStart {
        let partner = self
            .params
            .as_ref()
            .map(|p| p.partner_name.clone())
            .unwrap_or_default();
        let partner_code = self.peer_code().map(|(code, _)| code).unwrap_or_default();
        SessionStart {
            partner,
            partner_code,
            role: self.recorder.role,
            remote: self.conn.peer.to_string(),
            started_at: self.recorder.started_at,
        }
    }

    /// Records a command of the PI trail, writing the batch when it is full.
    pub(super) async fn record_command(&mut self, origin: Origin, name: &str, summary: &str) {
        self.recorder.command(origin, name, summary);
        if self.recorder.is_due() {
            self.write_trail(None).await;
        }
    }

    /// Writes what was gathered (at login, when a batch is full, and with `end` at the end).
    pub(super) async fn write_trail(&mut self, end: Option<&Disconnected>) {
        let end = end.map(|d| SessionEnd {
            at: Utc::now(),
            result: d.description.clone(),
        });
        let start = self.session_start();
        let Some(batch) = self.recorder.batch(start, end) else {
            return;
        };
        match self
            .shared
            .journal
            .call(move |j| j.record_session(&batch))
            .await
        {
            Ok(id) => self.recorder.session = Some(id),
            Err(e) => tracing::warn!(
                conn = self.conn.id,
                error = %e,
                "cannot record the session's trail in the journal; the session goes on"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> SessionStart {
        SessionStart {
            partner: "p".into(),
            partner_code: "P".into(),
            role: SessionRole::Responder,
            remote: "127.0.0.1:1".into(),
            started_at: Utc::now(),
        }
    }

    fn end() -> Option<SessionEnd> {
        Some(SessionEnd {
            at: Utc::now(),
            result: "OK".into(),
        })
    }

    #[test]
    fn data_buffers_become_one_summary_line_before_the_efid() {
        let mut r = Recorder::new(false);
        r.command(Origin::Peer, "SFID", "SFID X");
        r.command(Origin::Local, "SFPA", "SFPA answer count 0");
        r.file_started(Direction::Received, Some(7));
        for _ in 0..1000 {
            r.data(Direction::Received, 4096);
        }
        r.command(Origin::Peer, "EFID", "EFID records 0 units 4096000");
        r.command(Origin::Local, "EFPA", "EFPA change direction N");
        let b = r.batch(start(), end()).expect("a batch");
        let lines: Vec<_> = b.commands.iter().map(|c| c.description.as_str()).collect();
        assert_eq!(
            lines,
            [
                "SFID X",
                "SFPA answer count 0",
                "DATA 4096000 octets of file data",
                "EFID records 0 units 4096000",
                "EFPA change direction N"
            ],
            "1000 DATA buffers are one line"
        );
        assert_eq!(b.commands[2].direction, Direction::Received);
        assert_eq!(
            b.transfers,
            [SessionTransfer {
                direction: Direction::Received,
                row: Some(7),
                octets: 4_096_000,
                done: true
            }],
            "our EFPA confirms the received file"
        );
    }

    #[test]
    fn a_file_cut_off_counts_its_octets_but_not_as_a_file() {
        let mut r = Recorder::new(true);
        r.command(Origin::Local, "SFID", "SFID Y");
        r.file_started(Direction::Sent, Some(3));
        r.data(Direction::Sent, 100);
        let b = r.batch(start(), end()).expect("a batch");
        assert_eq!(
            b.commands.last().unwrap().description,
            "DATA 100 octets of file data (cut off)"
        );
        assert_eq!(
            b.transfers,
            [SessionTransfer {
                direction: Direction::Sent,
                row: Some(3),
                octets: 100,
                done: false
            }]
        );
    }

    #[test]
    fn a_refused_offer_ends_the_file_it_refuses_and_an_idle_connection_records_nothing() {
        let mut r = Recorder::new(true);
        r.file_started(Direction::Sent, None);
        r.command(Origin::Peer, "SFNA", "SFNA 13 retry N duplicate");
        assert_eq!(r.transfers.len(), 1);
        assert!(!r.transfers[0].done);
        assert!(Recorder::new(false).batch(start(), end()).is_none());
    }
}
