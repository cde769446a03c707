//! ODETTE-FTP session state machine for initiator and responder (sans-IO).
//!
//! One [`Session`] per connection, driven like quinn-proto: feed transport
//! bytes with [`Session::handle_input`], tell it about the clock with
//! [`Session::handle_timeout`], and take [`Session::poll_transmit`] bytes (STH
//! framed, ready to write), [`Session::poll_event`] events and
//! [`Session::poll_timeout`] deadlines. Decisions (accept a caller, a file,
//! confirm a file after it is durable) are made by the application through
//! methods named in the events; until then the session waits.
//!
//! The state machine follows RFC 5024 section 9 (and RFC 2204 section 8 for
//! the 1.x levels):
//! * start: SSRM, SSID both ways, negotiation (lower level and buffer size,
//!   responder credit at most the initiator's else ESID 10, compression and
//!   restart only if both, S/S or R/R -> ESID 10, auth mismatch -> ESID 12);
//!   an optional secure-authentication phase (SECD/AUCH/AURP) follows as its
//!   own states, with the CMS work left to the application;
//! * turns: the initiator speaks first; only the speaker sends SFID, EERP,
//!   NERP, CD and a normal ESID; EFPA with CD=Y makes the speaker send CD at
//!   once; a normal ESID (00) is only allowed right after an unsolicited CD,
//!   and the speaker may not hand the turn straight back then (3.3.4.2, 3.4.1);
//! * credit: SFPA grants a full window, each DATA costs one, CDT only at zero
//!   and restores the window; DATA beyond credit or CDT with credit left ->
//!   ESID 02; the listener restores its window when its CDT leaves through
//!   [`Session::poll_transmit`], so DATA that was already in flight before the
//!   CDT was sent is recognised as a violation; EFID only with credit left
//!   (9.11 note 1);
//! * after EERP/NERP the speaker waits for RTR; received EERP/NERP are answered
//!   with RTR automatically;
//! * every malformed, oversized or out-of-turn buffer ends the session with the
//!   matching ESID reason, then [`Event::SessionEnded`].
//!
//! It does not do I/O, read clocks, store files, check passwords or
//! certificates, or perform CMS operations: those belong to the runtime and to
//! the security crate.

mod config;

pub use config::{
    Capabilities, DEFAULT_INACTIVITY_TIMEOUT, EndResponse, Event, InitiatorConfig, Negotiated,
    OutgoingFile, ResponderConfig, ResponderParams, UsageError,
};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::codec::{
    Auch, Aurp, Cd, Cdt, Command, Efid, Efna, EfnaReason, Efpa, Esid, EsidReason, FileFormat,
    ProtocolLevel, Rtr, Secd, SessionMode, Sfid, Sfna, SfnaReason, Sfpa, Ssid, Ssrm,
};
use crate::data::{RecordReader, RecordWriter};
use crate::sth;

/// First size of the buffer behind [`Session::read_buffer`]: the least
/// read ([`MIN_READ`]) behind a cut frame of the RFC's default buffer size
/// (4096 octets), so that such frames never make it grow. Kept small
/// because a server holds one per connection (1,000 sessions x 64 KiB was
/// 62 MiB of resident memory, x 24 KiB kept them over 64 MiB in all);
/// larger frames grow it.
const READ_INITIAL: usize = 16 * 1024;
/// Room kept for a read behind a frame when the read buffer grows.
const READ_SLACK: usize = 64 * 1024;
/// Least room offered to a read: two frames of the default buffer size.
const MIN_READ: usize = 8 * 1024;
/// A cut frame this short is moved to the front at once (cheaper than
/// letting reads shrink towards the end of the buffer).
const SMALL_MOVE: usize = 4 * 1024;

/// Which end of the connection this session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We opened the connection and speak first.
    Initiator,
    /// We accepted the connection and send SSRM first.
    Responder,
}

/// A file being sent (Speaker, OPO/OPOWFC).
#[derive(Debug)]
struct Outgoing {
    writer: RecordWriter,
    credit: u16,
    /// EFID waiting for the last buffers and for credit.
    finishing: Option<Efid>,
}

/// A file being received (Listener, OPI).
#[derive(Debug)]
struct Incoming {
    reader: RecordReader,
    credit: u16,
    restart_position: u64,
}

/// Steps of the secure authentication phase (RFC 5024 4.2.3, 9.8).
#[derive(Debug)]
enum AuthStep {
    /// We sent SECD and wait for the peer's AUCH.
    AwaitAuch,
    /// The application decrypts the peer's challenge.
    Answering,
    /// We answered and wait for the peer's SECD.
    AwaitSecd,
    /// The application builds our challenge.
    Challenging,
    /// We sent AUCH and wait for AURP matching `expected`.
    AwaitAurp { expected: [u8; 20] },
}

#[derive(Debug)]
enum State {
    /// Initiator waits for SSRM (I_WF_RM).
    AwaitSsrm,
    /// Initiator sent SSID (I_WF_SSID).
    AwaitSsid,
    /// Responder sent SSRM (A_NC_ONLY).
    AwaitPeerSsid,
    /// Responder waits for the application (A_WF_CONRS).
    AwaitAcceptDecision { peer: Box<Ssid> },
    /// Secure authentication phase.
    Auth(AuthStep),
    /// IDLESP / IDLESPCD.
    SpeakerIdle { after_unsolicited_cd: bool },
    /// OPOP.
    AwaitSfpa { sfid: Box<Sfid> },
    /// OPO / OPOWFC.
    Sending(Box<Outgoing>),
    /// CLOP.
    AwaitEfpa,
    /// WF_RTR.
    AwaitRtr,
    /// IDLELI / IDLELICD.
    ListenerIdle { sent_cd: bool },
    /// OPIP.
    FileOffered { sfid: Box<Sfid> },
    /// OPI.
    Receiving(Box<Incoming>),
    /// CLIP.
    AwaitConfirmDecision,
    /// WF_CD.
    AwaitCd,
    /// ESID sent or received, or transport gone.
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AwaitSsrm => "waiting for SSRM",
            State::AwaitSsid => "waiting for the responder's SSID",
            State::AwaitPeerSsid => "waiting for the initiator's SSID",
            State::AwaitAcceptDecision { .. } => "waiting for accept_session/reject_session",
            State::Auth(AuthStep::AwaitAuch) => "authenticating: waiting for AUCH",
            State::Auth(AuthStep::Answering) => "authenticating: waiting for answer_challenge",
            State::Auth(AuthStep::AwaitSecd) => "authenticating: waiting for SECD",
            State::Auth(AuthStep::Challenging) => "authenticating: waiting for send_challenge",
            State::Auth(AuthStep::AwaitAurp { .. }) => "authenticating: waiting for AURP",
            State::SpeakerIdle {
                after_unsolicited_cd: false,
            } => "speaker, idle",
            State::SpeakerIdle {
                after_unsolicited_cd: true,
            } => "speaker, idle after the peer's CD",
            State::AwaitSfpa { .. } => "waiting for SFPA/SFNA",
            State::Sending(o) if o.credit == 0 => "sending a file, waiting for credit",
            State::Sending(_) => "sending a file",
            State::AwaitEfpa => "waiting for EFPA/EFNA",
            State::AwaitRtr => "waiting for RTR",
            State::ListenerIdle { sent_cd: false } => "listener, idle",
            State::ListenerIdle { sent_cd: true } => "listener, idle after our CD",
            State::FileOffered { .. } => "waiting for accept_file/reject_file",
            State::Receiving(_) => "receiving a file",
            State::AwaitConfirmDecision => "waiting for confirm_file/refuse_file",
            State::AwaitCd => "waiting for CD",
            State::Closed => "closed",
        }
    }

    /// Whether the peer must act next (the inactivity timer runs), as opposed
    /// to the local application.
    fn waits_for_peer(&self) -> bool {
        match self {
            State::AwaitSsrm
            | State::AwaitSsid
            | State::AwaitPeerSsid
            | State::AwaitSfpa { .. }
            | State::AwaitEfpa
            | State::AwaitRtr
            | State::ListenerIdle { .. }
            | State::Receiving(_)
            | State::AwaitCd => true,
            State::Auth(step) => matches!(
                step,
                AuthStep::AwaitAuch | AuthStep::AwaitSecd | AuthStep::AwaitAurp { .. }
            ),
            State::Sending(o) => o.credit == 0,
            State::AwaitAcceptDecision { .. }
            | State::SpeakerIdle { .. }
            | State::FileOffered { .. }
            | State::AwaitConfirmDecision
            | State::Closed => false,
        }
    }
}

/// One ODETTE-FTP session (one connection), initiator or responder.
#[derive(Debug)]
pub struct Session {
    role: Role,
    state: State,
    /// Level used to encode and decode (negotiated once SSIDs are exchanged).
    level: ProtocolLevel,
    initiator: Option<InitiatorConfig>,
    negotiated: Option<Negotiated>,
    inactivity_timeout: Duration,
    now: Instant,
    deadline: Option<Instant>,
    /// The start of a frame that has not fully arrived (at most one frame:
    /// complete frames are handled straight from the caller's bytes).
    input: Vec<u8>,
    /// Buffer for [`read_buffer`](Self::read_buffer): the transport reads
    /// into `read[read_end..]`, frames are handled in place from
    /// `read[read_start..read_end]`. Allocated on first use.
    read: Vec<u8>,
    read_start: usize,
    read_end: usize,
    /// Frames to write, one STH frame each, oldest first. DATA frames are
    /// built in place (header room kept in front) and handed out as they are.
    transmit: VecDeque<Vec<u8>>,
    /// The queued transmit bytes contain a CDT: restore the listener's window
    /// when they are handed out.
    transmit_grants_credit: bool,
    events: VecDeque<Event>,
    /// ESID sent or received (the state may be `Closed` only transiently
    /// while a transition is computed, so this is the authority).
    ended: bool,
}

impl Session {
    /// A session that called the peer. It waits for the peer's SSRM.
    pub fn initiator(config: InitiatorConfig, now: Instant) -> Result<Session, UsageError> {
        config.capabilities.validate()?;
        // Refuse an SSID we could not encode now rather than after connecting.
        Command::Ssid(initiator_ssid(&config)).to_bytes(config.capabilities.max_level)?;
        let mut s = Session::new(Role::Initiator, config.inactivity_timeout, now);
        s.level = config.capabilities.max_level;
        s.initiator = Some(config);
        s.state = State::AwaitSsrm;
        s.arm_timer();
        Ok(s)
    }

    /// A session for an accepted connection. It queues SSRM and waits for the
    /// caller's SSID.
    pub fn responder(config: ResponderConfig, now: Instant) -> Session {
        let mut s = Session::new(Role::Responder, config.inactivity_timeout, now);
        s.state = State::AwaitPeerSsid;
        s.send(Command::Ssrm(Ssrm));
        s.arm_timer();
        s
    }

    fn new(role: Role, inactivity_timeout: Duration, now: Instant) -> Session {
        Session {
            role,
            state: State::Closed,
            level: ProtocolLevel::V2_0,
            initiator: None,
            negotiated: None,
            inactivity_timeout,
            now,
            deadline: None,
            input: Vec::new(),
            read: Vec::new(),
            read_start: 0,
            read_end: 0,
            transmit: VecDeque::new(),
            transmit_grants_credit: false,
            events: VecDeque::new(),
            ended: false,
        }
    }

    // ----- output -----

    /// Bytes to write to the transport (whole STH frames), if any: everything
    /// queued, in one `Vec`. A single queued frame (the usual DATA case) is
    /// handed out without a copy.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let mut out = self.transmit.pop_front()?;
        let rest: usize = self.transmit.iter().map(Vec::len).sum();
        out.reserve_exact(rest);
        for frame in self.transmit.drain(..) {
            out.extend_from_slice(&frame);
        }
        self.transmit_drained();
        Some(out)
    }

    /// Appends everything queued for the transport to `out` and returns the
    /// number of octets added (0: nothing to send). When `out` is empty the
    /// first queued frame replaces it without a copy; a runtime can keep one
    /// `Vec` for its writes.
    pub fn poll_transmit_into(&mut self, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        let Some(first) = self.transmit.pop_front() else {
            return 0;
        };
        if out.is_empty() {
            *out = first;
        } else {
            out.extend_from_slice(&first);
        }
        let rest: usize = self.transmit.iter().map(Vec::len).sum();
        out.reserve(rest);
        for frame in self.transmit.drain(..) {
            out.extend_from_slice(&frame);
        }
        self.transmit_drained();
        out.len() - before
    }

    /// The oldest queued frame alone (one whole STH frame), never copied: for
    /// a runtime that gathers frames into vectored writes. Call until `None`.
    pub fn poll_transmit_frame(&mut self) -> Option<Vec<u8>> {
        let frame = self.transmit.pop_front()?;
        if self.transmit.is_empty() {
            self.transmit_drained();
        }
        Some(frame)
    }

    /// Whether frames are waiting for [`poll_transmit`](Self::poll_transmit).
    pub fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    /// Everything queued has been handed to the transport.
    fn transmit_drained(&mut self) {
        if std::mem::take(&mut self.transmit_grants_credit) {
            // The CDT (the last frame queued while receiving) leaves now:
            // from here on the speaker may send a new window.
            if let (State::Receiving(inc), Some(n)) = (&mut self.state, &self.negotiated) {
                inc.credit = n.credit;
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the session is over (input is ignored). Drain
    /// [`poll_transmit`](Self::poll_transmit) before closing the transport.
    pub fn is_closed(&self) -> bool {
        self.ended
    }

    /// Which end this session is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The agreed parameters, once the SSIDs are exchanged.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The protocol level used for encoding and decoding.
    pub fn level(&self) -> ProtocolLevel {
        self.level
    }

    /// A short description of the current state (for logs and errors).
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// Whether we hold the speaker role (initiator after the SSID exchange,
    /// and whoever received the last CD).
    pub fn is_speaker(&self) -> bool {
        matches!(
            self.state,
            State::SpeakerIdle { .. }
                | State::AwaitSfpa { .. }
                | State::Sending(_)
                | State::AwaitEfpa
                | State::AwaitRtr
        )
    }

    /// Whether [`write_data`](Self::write_data) should be called now: a file
    /// is open for sending, it is not finished, credit is left and no built
    /// buffer waits for credit. Keeps memory to about one buffer.
    pub fn can_accept_data(&self) -> bool {
        match &self.state {
            State::Sending(o) => {
                o.finishing.is_none() && o.credit > 0 && o.writer.ready_buffers() == 0
            }
            _ => false,
        }
    }

    // ----- input -----

    /// Feeds bytes read from the transport. Partial frames are kept until the
    /// rest arrives.
    ///
    /// Complete frames are handled straight from `bytes`; only the start of a
    /// frame cut by the end of `bytes` is copied, and only once.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.now = self.now.max(now);
        if self.is_closed() {
            return;
        }
        // Taken out so that frames inside it can be handled with `&mut self`.
        let mut pending = std::mem::take(&mut self.input);
        if self.read_start < self.read_end {
            // Bytes left by commit_read go first (the two calls were mixed).
            pending.extend_from_slice(&self.read[self.read_start..self.read_end]);
            self.read_start = 0;
            self.read_end = 0;
        }
        let mut bytes = bytes;
        if !pending.is_empty() {
            bytes = self.complete_pending(&mut pending, bytes);
        }
        if pending.is_empty() {
            let mut consumed = 0;
            while !self.is_closed() {
                match sth::decode_frame(&bytes[consumed..]) {
                    Ok(None) => {
                        pending.extend_from_slice(&bytes[consumed..]);
                        break;
                    }
                    Ok(Some((range, used))) => {
                        let start = consumed + range.start;
                        let end = consumed + range.end;
                        consumed += used;
                        self.handle_buffer(&bytes[start..end]);
                    }
                    Err(e) => {
                        self.abort(e.esid_reason(), &e.to_string());
                        break;
                    }
                }
            }
        }
        if !self.is_closed() {
            self.input = pending;
        }
    }

    /// Adds to the partial frame in `pending` what it lacks from `bytes`,
    /// handles it once complete (leaving `pending` empty), and returns the
    /// bytes not used.
    fn complete_pending<'a>(&mut self, pending: &mut Vec<u8>, bytes: &'a [u8]) -> &'a [u8] {
        let mut bytes = bytes;
        if pending.len() < sth::HEADER_LEN {
            let take = (sth::HEADER_LEN - pending.len()).min(bytes.len());
            pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        let length = match sth::frame_length(pending) {
            Ok(Some(length)) => length,
            Ok(None) => return bytes,
            Err(e) => {
                self.abort(e.esid_reason(), &e.to_string());
                return &[];
            }
        };
        let take = length.saturating_sub(pending.len()).min(bytes.len());
        pending.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        if pending.len() == length {
            self.handle_buffer(&pending[sth::HEADER_LEN..]);
            pending.clear();
        }
        bytes
    }

    /// Space for the transport to read into, for [`commit_read`](Self::commit_read):
    /// the zero-copy alternative to [`handle_input`](Self::handle_input).
    /// Frames are then handled where they were read, never copied into a
    /// second buffer. Never empty (at least 8 KiB). The buffer starts at
    /// 16 KiB (enough for frames of up to about 8 KiB) and grows once to
    /// about one frame more when larger frames arrive (about 164 KiB for
    /// 99999-octet buffers).
    ///
    /// ```text
    /// let n = socket.read(session.read_buffer()).await?;
    /// if n == 0 { session.handle_transport_closed(now) } else { session.commit_read(n, now) }
    /// ```
    pub fn read_buffer(&mut self) -> &mut [u8] {
        if !self.input.is_empty() {
            // Bytes left by handle_input go first (the two calls were mixed).
            let pending = std::mem::take(&mut self.input);
            self.make_room(pending.len());
            self.read[self.read_end..self.read_end + pending.len()].copy_from_slice(&pending);
            self.read_end += pending.len();
        }
        self.make_room(MIN_READ);
        &mut self.read[self.read_end..]
    }

    /// Makes room for a read of at least `extra` octets, and for the rest of
    /// the frame cut at the end of what was read, so that it will lie whole
    /// in the buffer. Moves the cut frame to the front when it does not fit
    /// behind it, or when it is short (a cheap move that leaves the most
    /// room); grows the buffer when a frame is larger than it.
    fn make_room(&mut self, extra: usize) {
        let held = self.read_end - self.read_start;
        let rest_of_frame = match sth::frame_length(&self.read[self.read_start..self.read_end]) {
            Ok(Some(length)) => length.saturating_sub(held),
            // No header yet (few octets), or a bad one that commit_read
            // reports.
            Ok(None) | Err(_) => 0,
        };
        let want = if rest_of_frame > 0 {
            rest_of_frame.max(extra)
        } else {
            extra.max(MIN_READ)
        };
        let space = self.read.len() - self.read_end;
        let short = self.read_start > 0 && held <= SMALL_MOVE;
        if space >= want && !short {
            return;
        }
        if self.read_start > 0 {
            self.read.copy_within(self.read_start..self.read_end, 0);
            self.read_start = 0;
            self.read_end = held;
        }
        if self.read.len() - self.read_end < want {
            if self.read.is_empty() {
                // Zeroed by the allocator, which skips the fill for memory
                // fresh from the OS (those pages stay out of the RSS until
                // a read reaches them).
                self.read = vec![0; READ_INITIAL.max(want)];
            } else {
                // Room for a read after the largest frame seen, so that
                // frames cut by reads are not moved every time.
                let len = self.read_end + want + READ_SLACK;
                self.read.resize(len, 0);
            }
        }
    }

    /// Handles `n` octets the transport wrote at the start of
    /// [`read_buffer`](Self::read_buffer) (more than its length is taken as
    /// its length).
    pub fn commit_read(&mut self, n: usize, now: Instant) {
        self.now = self.now.max(now);
        if self.is_closed() {
            return;
        }
        self.read_end = (self.read_end + n).min(self.read.len());
        // Taken out so that frames inside it can be handled with `&mut self`.
        let read = std::mem::take(&mut self.read);
        while !self.is_closed() {
            match sth::decode_frame(&read[self.read_start..self.read_end]) {
                Ok(None) => break,
                Ok(Some((range, used))) => {
                    let start = self.read_start + range.start;
                    let end = self.read_start + range.end;
                    self.read_start += used;
                    self.handle_buffer(&read[start..end]);
                }
                Err(e) => {
                    self.abort(e.esid_reason(), &e.to_string());
                    break;
                }
            }
        }
        if self.read_start == self.read_end || self.is_closed() {
            self.read_start = 0;
            self.read_end = 0;
        }
        if !self.is_closed() {
            self.read = read;
        }
    }

    /// Tells the session the time; ends it with ESID 09 if the peer has been
    /// silent past the inactivity timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if let Some(d) = self.deadline
            && now >= d
            && !self.is_closed()
        {
            let secs = self.inactivity_timeout.as_secs();
            self.abort(
                EsidReason::TIME_OUT,
                &format!("no answer from the partner within {secs} s"),
            );
        }
    }

    /// The transport closed. Reports [`Event::SessionEnded`] unless the
    /// session had already ended.
    pub fn handle_transport_closed(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.is_closed() {
            return;
        }
        tracing::warn!(
            state = self.state.name(),
            "transport closed without End Session"
        );
        self.close(
            EsidReason::UNSPECIFIED,
            "connection closed by the partner without End Session",
            true,
        );
    }

    fn handle_buffer(&mut self, buf: &[u8]) {
        if buf.first() == Some(&b'D') && matches!(self.state, State::Receiving(_)) {
            // The hot path: parse the subrecords where they lie instead of
            // copying the payload into a `Command::Data` first.
            self.arm_timer();
            if let State::Receiving(inc) = std::mem::replace(&mut self.state, State::Closed) {
                self.state = self.on_data(inc, &buf[1..]);
            }
            self.arm_timer();
            return;
        }
        let cmd = match Command::decode(buf, self.level) {
            Ok(cmd) => cmd,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable exchange buffer");
                self.abort(e.esid_reason(), &e.to_string());
                return;
            }
        };
        if !matches!(cmd, Command::Data(_)) {
            tracing::debug!(command = cmd.name(), "received");
            self.events.push_back(Event::CommandReceived {
                name: cmd.name(),
                summary: cmd.summary(),
            });
        }
        if let Command::Esid(esid) = cmd {
            // Either side may end the session at any time (RFC 5024 3.4.2).
            self.close(esid.reason, &esid.text, true);
            return;
        }
        self.arm_timer();
        let state = std::mem::replace(&mut self.state, State::Closed);
        self.state = self.on_command(state, cmd);
        self.arm_timer();
    }

    /// The transition function for peer commands. Returns the next state; on
    /// a violation it aborts (queues ESID) and returns `Closed`.
    fn on_command(&mut self, state: State, cmd: Command) -> State {
        match (state, cmd) {
            (State::AwaitSsrm, Command::Ssrm(_)) => {
                let Some(cfg) = self.initiator.as_ref() else {
                    return self.violation("SSRM", "initiator configuration missing");
                };
                let ssid = initiator_ssid(cfg);
                self.send(Command::Ssid(ssid));
                State::AwaitSsid
            }
            (State::AwaitSsid, Command::Ssid(peer)) => self.on_responder_ssid(peer),
            (State::AwaitPeerSsid, Command::Ssid(peer)) => {
                self.level = ProtocolLevel(peer.level.0.min(ProtocolLevel::V2_0.0));
                self.events
                    .push_back(Event::SsidReceived { peer: peer.clone() });
                State::AwaitAcceptDecision {
                    peer: Box::new(peer),
                }
            }

            // --- secure authentication ---
            (State::Auth(AuthStep::AwaitAuch), Command::Auch(a)) => {
                self.events.push_back(Event::AuthChallengeReceived {
                    challenge: a.challenge,
                });
                State::Auth(AuthStep::Answering)
            }
            (State::Auth(AuthStep::AwaitSecd), Command::Secd(_)) => {
                self.events.push_back(Event::AuthChallengeRequested);
                State::Auth(AuthStep::Challenging)
            }
            (State::Auth(AuthStep::AwaitAurp { expected }), Command::Aurp(a)) => {
                if !constant_time_eq(&a.response, &expected) {
                    self.abort(
                        EsidReason::INVALID_CHALLENGE_RESPONSE,
                        "authentication response does not match the challenge",
                    );
                    return State::Closed;
                }
                match self.role {
                    // Both directions done: the initiator speaks first.
                    Role::Initiator => self.authenticated(),
                    // Our check of the initiator passed: now prove ourselves.
                    Role::Responder => {
                        self.send(Command::Secd(Secd));
                        State::Auth(AuthStep::AwaitAuch)
                    }
                }
            }

            // --- speaker ---
            (State::AwaitSfpa { sfid }, Command::Sfpa(Sfpa { answer_count })) => {
                if answer_count > sfid.restart_position {
                    return self.violation(
                        "SFPA",
                        &format!(
                            "answer count {answer_count} is above the restart position {} asked for",
                            sfid.restart_position
                        ),
                    );
                }
                let Some(n) = self.negotiated.as_ref() else {
                    return self.violation("SFPA", "no negotiated session");
                };
                let writer = match RecordWriter::framed(
                    sfid.transmitted_format(),
                    sfid.max_record_len,
                    n.buffer_size as usize,
                    n.compression,
                ) {
                    Ok(w) => w,
                    Err(e) => return self.violation("SFPA", &e.to_string()),
                };
                let credit = n.credit;
                self.events.push_back(Event::FileAccepted {
                    restart_position: answer_count,
                });
                State::Sending(Box::new(Outgoing {
                    writer,
                    credit,
                    finishing: None,
                }))
            }
            (
                State::AwaitSfpa { .. },
                Command::Sfna(Sfna {
                    reason,
                    retry,
                    text,
                }),
            ) => {
                self.events.push_back(Event::FileRejected {
                    reason,
                    retry,
                    text,
                });
                self.speaker_idle(false)
            }
            (State::Sending(mut out), Command::Cdt(_)) => {
                if out.credit > 0 {
                    return self.violation(
                        "CDT",
                        &format!(
                            "credit received while {} buffers of credit remain",
                            out.credit
                        ),
                    );
                }
                out.credit = self.window();
                let next = self.pump(out);
                if let State::Sending(o) = &next
                    && o.finishing.is_none()
                    && o.credit > 0
                    && o.writer.ready_buffers() == 0
                {
                    self.events.push_back(Event::ReadyForData);
                }
                next
            }
            (State::AwaitEfpa, Command::Efpa(Efpa { change_direction })) => {
                self.events
                    .push_back(Event::FileConfirmed { change_direction });
                if change_direction {
                    // EFPA(CD=Y): the speaker answers with CD at once (9.11 C).
                    self.send(Command::Cd(Cd));
                    State::ListenerIdle { sent_cd: false }
                } else {
                    self.speaker_idle(false)
                }
            }
            (State::AwaitEfpa, Command::Efna(Efna { reason, text })) => {
                self.events.push_back(Event::FileRefused { reason, text });
                self.speaker_idle(false)
            }
            (State::AwaitRtr, Command::Rtr(_)) => {
                self.events.push_back(Event::EndResponseAcknowledged);
                self.speaker_idle(false)
            }

            // --- listener ---
            (State::ListenerIdle { .. }, Command::Sfid(sfid)) => {
                let Some(n) = self.negotiated.as_ref() else {
                    return self.violation("SFID", "no negotiated session");
                };
                if !n.can_receive {
                    return self.violation("SFID", "this location does not receive files");
                }
                if sfid.restart_position > 0 && !n.restart {
                    return self.violation("SFID", "restart requested but restart was not agreed");
                }
                self.events
                    .push_back(Event::FileOffered { sfid: sfid.clone() });
                State::FileOffered {
                    sfid: Box::new(sfid),
                }
            }
            (State::ListenerIdle { sent_cd: false }, Command::Cd(_)) => {
                // Unsolicited CD: the peer has nothing more to send.
                self.speaker_idle(true)
            }
            (State::ListenerIdle { .. }, Command::Eerp(e)) => {
                self.events
                    .push_back(Event::EndResponseReceived(EndResponse::Positive(e)));
                self.send(Command::Rtr(Rtr));
                State::ListenerIdle { sent_cd: false }
            }
            (State::ListenerIdle { .. }, Command::Nerp(n)) => {
                self.events
                    .push_back(Event::EndResponseReceived(EndResponse::Negative(n)));
                self.send(Command::Rtr(Rtr));
                State::ListenerIdle { sent_cd: false }
            }
            (State::Receiving(inc), Command::Data(d)) => self.on_data(inc, &d.payload),
            (
                State::Receiving(inc),
                Command::Efid(Efid {
                    record_count,
                    unit_count,
                }),
            ) => {
                self.events.push_back(Event::FileEnded {
                    record_count,
                    unit_count,
                    received_records: inc.reader.records(),
                    received_units: inc.reader.units(),
                    restart_position: inc.restart_position,
                    record_length_violation: inc.reader.record_length_violation().cloned(),
                });
                State::AwaitConfirmDecision
            }
            (State::AwaitCd, Command::Cd(_)) => self.speaker_idle(false),

            (state, cmd) => {
                let what = format!("{} is not expected while {}", cmd.name(), state.name());
                self.violation(cmd.name(), &what)
            }
        }
    }

    fn on_responder_ssid(&mut self, peer: Ssid) -> State {
        let Some(cfg) = self.initiator.as_ref() else {
            return self.violation("SSID", "initiator configuration missing");
        };
        let ours = cfg.capabilities.clone();
        // From here on, an ESID (refusal or negotiation failure) must use the
        // layout of the level both sides share: a 1.x responder expects
        // 'F' + reason + CR (RFC 2204 5.3.11), not the 2.0 layout.
        self.level = ProtocolLevel(ours.max_level.0.min(peer.level.0));
        if let Some(code) = &cfg.expected_peer_code
            && !code.eq_ignore_ascii_case(&peer.code)
        {
            let text = format!(
                "responder identification code {} is not {}",
                peer.code, code
            );
            self.abort(EsidReason::USER_CODE_NOT_KNOWN, &text);
            return State::Closed;
        }
        if let Some(pw) = &cfg.expected_peer_password
            && !pw.matches(&peer.password)
        {
            self.abort(
                EsidReason::INVALID_PASSWORD,
                "responder password is invalid",
            );
            return State::Closed;
        }
        if peer.credit > ours.credit {
            // The window is part of the SSID negotiation; a failed
            // negotiation ends with ESID 10 (RFC 5024 9.8.2 D with 9.8.3 P2,
            // RFC 2204 8.8.2 D), not with a protocol violation.
            self.abort(
                EsidReason::MODE_INCOMPATIBLE,
                &format!(
                    "responder credit {} exceeds the initiator's {}",
                    peer.credit, ours.credit
                ),
            );
            return State::Closed;
        }
        if !ours.mode.compatible_with(peer.mode) {
            self.abort(
                EsidReason::MODE_INCOMPATIBLE,
                &format!(
                    "send/receive modes incompatible: ours {:?}, partner's {:?}",
                    ours.mode, peer.mode
                ),
            );
            return State::Closed;
        }
        if ours.secure_auth != peer.secure_auth {
            self.abort(
                EsidReason::SECURE_AUTH_INCOMPATIBLE,
                "secure authentication requirements differ",
            );
            return State::Closed;
        }
        let negotiated = negotiate(&ours, &peer);
        self.level = negotiated.level;
        self.established(negotiated);
        if ours.secure_auth {
            self.send(Command::Secd(Secd));
            State::Auth(AuthStep::AwaitAuch)
        } else {
            self.speaker_idle(false)
        }
    }

    fn established(&mut self, negotiated: Negotiated) {
        tracing::info!(
            level = negotiated.level.0,
            buffer = negotiated.buffer_size,
            credit = negotiated.credit,
            compression = negotiated.compression,
            restart = negotiated.restart,
            "session established"
        );
        self.negotiated = Some(negotiated.clone());
        self.events
            .push_back(Event::SessionEstablished { negotiated });
    }

    fn authenticated(&mut self) -> State {
        self.events.push_back(Event::Authenticated);
        match self.role {
            Role::Initiator => self.speaker_idle(false),
            Role::Responder => State::ListenerIdle { sent_cd: false },
        }
    }

    fn on_data(&mut self, mut inc: Box<Incoming>, payload: &[u8]) -> State {
        let size = payload.len() + 1;
        let max = self
            .negotiated
            .as_ref()
            .map_or(0, |n| n.buffer_size as usize);
        if size > max {
            self.abort(
                EsidReason::BUFFER_SIZE_ERROR,
                &format!("DATA buffer of {size} octets exceeds the negotiated {max}"),
            );
            return State::Closed;
        }
        if inc.credit == 0 {
            return self.violation("DATA", "DATA sent beyond the available credit");
        }
        inc.credit -= 1;
        match inc.reader.read(payload) {
            Ok(pieces) => {
                for p in pieces {
                    if p.bytes.is_empty() && !p.end_of_record {
                        continue;
                    }
                    self.events.push_back(Event::DataReceived {
                        bytes: p.bytes,
                        end_of_record: p.end_of_record,
                    });
                }
            }
            Err(e) => {
                self.abort(EsidReason::INVALID_DATA, &e.to_string());
                return State::Closed;
            }
        }
        if inc.credit == 0 {
            // The window is restored when this CDT is handed to the transport.
            self.send(Command::Cdt(Cdt));
            self.transmit_grants_credit = true;
        }
        State::Receiving(inc)
    }

    // ----- application decisions -----

    fn wrong_state(&self, method: &'static str) -> UsageError {
        UsageError::WrongState {
            method,
            state: self.state.name(),
        }
    }

    /// Responder: answers the caller's SSID with ours. Negotiation failures
    /// (incompatible modes -> ESID 10, authentication requirement differs ->
    /// ESID 12) end the session and are reported by events, not as errors.
    pub fn accept_session(&mut self, params: ResponderParams) -> Result<(), UsageError> {
        let State::AwaitAcceptDecision { peer } = &self.state else {
            return Err(self.wrong_state("accept_session"));
        };
        params.capabilities.validate()?;
        let peer = (**peer).clone();
        let ours = &params.capabilities;
        let mut negotiated = negotiate(ours, &peer);
        // The responder answers with the selected values (5.3.2).
        let answer = Ssid {
            level: negotiated.level,
            code: params.ssid_code.clone(),
            password: params.password.clone(),
            buffer_size: negotiated.buffer_size,
            mode: answer_mode(ours.mode, peer.mode),
            compression: negotiated.compression,
            restart: negotiated.restart,
            special_logic: false,
            credit: negotiated.credit,
            secure_auth: ours.secure_auth,
            user_data: params.user_data.clone(),
        };
        // Negotiation failures first: they end the session with an ESID
        // (RFC 5024 9.8.2 G), whereas our SSID may not even be encodable then
        // (SSIDAUTH=Y cannot be sent at a 1.x level).
        if !ours.mode.compatible_with(peer.mode) {
            self.abort(
                EsidReason::MODE_INCOMPATIBLE,
                &format!(
                    "send/receive modes incompatible: ours {:?}, partner's {:?}",
                    ours.mode, peer.mode
                ),
            );
            return Ok(());
        }
        if ours.secure_auth != peer.secure_auth {
            self.abort(
                EsidReason::SECURE_AUTH_INCOMPATIBLE,
                "secure authentication requirements differ",
            );
            return Ok(());
        }
        let bytes = Command::Ssid(answer.clone()).to_bytes(negotiated.level)?;
        negotiated.peer = peer;
        self.level = negotiated.level;
        self.queue(&Command::Ssid(answer), bytes);
        self.established(negotiated);
        self.state = if ours.secure_auth {
            State::Auth(AuthStep::AwaitSecd)
        } else {
            State::ListenerIdle { sent_cd: false }
        };
        self.arm_timer();
        Ok(())
    }

    /// Responder: refuses the caller (e.g. ESID 03 unknown user, 04 invalid
    /// password, 08 resources not available) and ends the session.
    pub fn reject_session(&mut self, reason: EsidReason, text: &str) -> Result<(), UsageError> {
        if !matches!(self.state, State::AwaitAcceptDecision { .. }) {
            return Err(self.wrong_state("reject_session"));
        }
        self.abort(reason, text);
        Ok(())
    }

    /// Secure authentication: sends the decrypted 20 octets of the peer's
    /// challenge (AURP).
    pub fn answer_challenge(&mut self, response: [u8; 20]) -> Result<(), UsageError> {
        if !matches!(self.state, State::Auth(AuthStep::Answering)) {
            return Err(self.wrong_state("answer_challenge"));
        }
        self.send(Command::Aurp(Aurp { response }));
        self.state = match self.role {
            Role::Initiator => State::Auth(AuthStep::AwaitSecd),
            Role::Responder => self.authenticated(),
        };
        self.arm_timer();
        Ok(())
    }

    /// Secure authentication: sends our challenge (`enveloped`: CMS
    /// EnvelopedData of `expected`, 20 random octets, to the peer's
    /// certificate). The peer's AURP must return `expected`, else ESID 11.
    pub fn send_challenge(
        &mut self,
        enveloped: Vec<u8>,
        expected: [u8; 20],
    ) -> Result<(), UsageError> {
        if !matches!(self.state, State::Auth(AuthStep::Challenging)) {
            return Err(self.wrong_state("send_challenge"));
        }
        let cmd = Command::Auch(Auch {
            challenge: enveloped,
        });
        self.send_checked(cmd)?;
        self.state = State::Auth(AuthStep::AwaitAurp { expected });
        self.arm_timer();
        Ok(())
    }

    /// Speaker: offers a file (SFID). Answered by [`Event::FileAccepted`] or
    /// [`Event::FileRejected`].
    pub fn send_file(&mut self, file: OutgoingFile) -> Result<(), UsageError> {
        if !matches!(self.state, State::SpeakerIdle { .. }) {
            return Err(self.wrong_state("send_file"));
        }
        let Some(n) = self.negotiated.as_ref() else {
            return Err(self.wrong_state("send_file"));
        };
        if !n.can_send {
            return Err(UsageError::NotAllowed(
                "the negotiated modes do not allow this location to send files".into(),
            ));
        }
        if file.restart_position > 0 && !n.restart {
            return Err(UsageError::NotAllowed(
                "restart was not agreed for this session; send from position 0".into(),
            ));
        }
        // RFC 5024 5.3.3 SFIDLRECL: 0 for U and T; F and V need a length.
        let lrecl_ok = match file.format {
            FileFormat::Unstructured | FileFormat::Text => file.max_record_len == 0,
            FileFormat::Fixed | FileFormat::Variable => file.max_record_len > 0,
        };
        if !lrecl_ok {
            return Err(UsageError::NotAllowed(format!(
                "maximum record length {} does not suit format {:?} (U/T need 0, F/V more than 0)",
                file.max_record_len, file.format
            )));
        }
        let cmd = Command::Sfid(file.clone());
        self.send_checked(cmd)?;
        self.state = State::AwaitSfpa {
            sfid: Box::new(file),
        };
        self.arm_timer();
        Ok(())
    }

    /// Sender: adds file content after [`Event::FileAccepted`]. For F/V files
    /// `end_of_record` ends a record (F records may also be written as a
    /// stream); for U/T files it is ignored. Buffers are sent as credit
    /// allows; check [`can_accept_data`](Self::can_accept_data) to keep memory
    /// bounded.
    pub fn write_data(&mut self, data: &[u8], end_of_record: bool) -> Result<(), UsageError> {
        self.open_file_mut("write_data")?
            .writer
            .write(data, end_of_record)?;
        // DATA went out: if the credit is now used up the speaker waits for
        // the listener's CDT, which the inactivity timer guards (RFC 5024
        // 4.7.2, 9.10.2 M action 2).
        self.pump_now();
        Ok(())
    }

    /// Sender: ends the file with EFID (totals for the whole file, also after
    /// a restart: records for F/V and 0 for U/T, and octets). The EFID waits
    /// until the last buffers are sent and credit is available.
    pub fn finish_file(&mut self, record_count: u64, unit_count: u64) -> Result<(), UsageError> {
        let level = self.level;
        let out = self.open_file_mut("finish_file")?;
        // Check the counts fit before anything is committed.
        Command::Efid(Efid {
            record_count,
            unit_count,
        })
        .to_bytes(level)?;
        out.writer.finish()?;
        out.finishing = Some(Efid {
            record_count,
            unit_count,
        });
        self.pump_now();
        Ok(())
    }

    /// The file being sent, while more data may still be written to it
    /// (sending, and `finish_file` not yet called); `call` names the caller
    /// in the error otherwise.
    fn open_file_mut(&mut self, call: &'static str) -> Result<&mut Outgoing, UsageError> {
        let state = self.state.name();
        match &mut self.state {
            State::Sending(out) if out.finishing.is_none() => Ok(out),
            _ => Err(UsageError::WrongState {
                method: call,
                state,
            }),
        }
    }

    /// After a local call changed the file being sent: sends what credit
    /// allows now and rearms the inactivity timer if the turn changed.
    fn pump_now(&mut self) {
        let before = self.timer_view();
        let state = std::mem::replace(&mut self.state, State::Closed);
        if let State::Sending(out) = state {
            self.state = self.pump(out);
        }
        self.rearm_after_local_call(before);
    }

    /// Sends built DATA buffers while credit lasts; sends EFID once finished
    /// and drained with credit left (no EFID in OPOWFC, 9.11 note 1).
    fn pump(&mut self, mut out: Box<Outgoing>) -> State {
        while out.credit > 0 {
            if out.writer.ready_buffers() == 0 {
                break;
            }
            let Some(frame) = out.writer.pop_frame() else {
                // The builder never exceeds the negotiated size, so this is a bug.
                tracing::error!("DATA buffer could not be framed");
                self.abort(EsidReason::UNSPECIFIED, "internal error framing DATA");
                return State::Closed;
            };
            out.credit -= 1;
            self.transmit.push_back(frame);
        }
        if out.credit > 0
            && out.writer.is_drained()
            && let Some(efid) = out.finishing.clone()
        {
            self.send(Command::Efid(efid));
            return State::AwaitEfpa;
        }
        State::Sending(out)
    }

    /// Speaker: sends an EERP or NERP and waits for RTR.
    ///
    /// A NERP exists from level 4 (revision 1.4, RFC 5024 1.2) on; below,
    /// [`UsageError::NotAllowed`] says so and nothing is sent: a 1.2/1.3
    /// partner has no way to receive a negative end response. At level 4 its
    /// reason text is not sent and it cannot be signed (see [`crate::codec`]).
    pub fn send_end_response(&mut self, response: EndResponse) -> Result<(), UsageError> {
        if !matches!(self.state, State::SpeakerIdle { .. }) {
            return Err(self.wrong_state("send_end_response"));
        }
        if let EndResponse::Negative(n) = &response
            && !self.level.has_nerp()
        {
            return Err(UsageError::NotAllowed(format!(
                "no NERP for {}: the session runs at protocol level {}, and NERP exists from \
                 ODETTE-FTP 1.4 (level 4) on",
                n.dsn, self.level.0
            )));
        }
        let cmd = match response {
            EndResponse::Positive(e) => Command::Eerp(e),
            EndResponse::Negative(n) => Command::Nerp(n),
        };
        self.send_checked(cmd)?;
        self.state = State::AwaitRtr;
        self.arm_timer();
        Ok(())
    }

    /// Speaker: hands the turn to the peer (CD). Not allowed right after the
    /// peer's unsolicited CD (end the session or send something instead).
    pub fn change_direction(&mut self) -> Result<(), UsageError> {
        if !matches!(
            self.state,
            State::SpeakerIdle {
                after_unsolicited_cd: false
            }
        ) {
            return Err(self.wrong_state("change_direction"));
        }
        self.send(Command::Cd(Cd));
        self.state = State::ListenerIdle { sent_cd: true };
        self.arm_timer();
        Ok(())
    }

    /// Ends the session with ESID. Reason 00 (normal) is only allowed to the
    /// speaker right after the peer's unsolicited CD; any other reason aborts
    /// at any time.
    pub fn end_session(&mut self, reason: EsidReason, text: &str) -> Result<(), UsageError> {
        if self.is_closed() {
            return Err(self.wrong_state("end_session"));
        }
        if reason == EsidReason::NORMAL
            && !matches!(
                self.state,
                State::SpeakerIdle {
                    after_unsolicited_cd: true
                }
            )
        {
            return Err(UsageError::NotAllowed(format!(
                "a normal end (ESID 00) is only allowed right after the partner's change direction; the session is {}",
                self.state.name()
            )));
        }
        self.abort(reason, text);
        Ok(())
    }

    /// Listener: accepts the offered file (SFPA), resuming at
    /// `restart_position` (0, or at most the position the peer asked for).
    pub fn accept_file(&mut self, restart_position: u64) -> Result<(), UsageError> {
        let State::FileOffered { sfid } = &self.state else {
            return Err(self.wrong_state("accept_file"));
        };
        if restart_position > sfid.restart_position {
            return Err(UsageError::NotAllowed(format!(
                "restart position {restart_position} is above the {} the partner asked for",
                sfid.restart_position
            )));
        }
        let Some(n) = self.negotiated.as_ref() else {
            return Err(self.wrong_state("accept_file"));
        };
        let reader = RecordReader::new(sfid.transmitted_format(), sfid.max_record_len);
        let credit = n.credit;
        let cmd = Command::Sfpa(Sfpa {
            answer_count: restart_position,
        });
        self.send_checked(cmd)?;
        self.state = State::Receiving(Box::new(Incoming {
            reader,
            credit,
            restart_position,
        }));
        self.arm_timer();
        Ok(())
    }

    /// Listener: refuses the offered file (SFNA).
    pub fn reject_file(
        &mut self,
        reason: SfnaReason,
        retry: bool,
        text: &str,
    ) -> Result<(), UsageError> {
        if !matches!(self.state, State::FileOffered { .. }) {
            return Err(self.wrong_state("reject_file"));
        }
        let cmd = Command::Sfna(Sfna {
            reason,
            retry,
            text: text.to_owned(),
        });
        self.send_checked(cmd)?;
        self.state = State::ListenerIdle { sent_cd: false };
        self.arm_timer();
        Ok(())
    }

    /// Listener: confirms the received file (EFPA) once it is durable,
    /// optionally asking for the turn (the peer then sends CD at once).
    pub fn confirm_file(&mut self, change_direction: bool) -> Result<(), UsageError> {
        if !matches!(self.state, State::AwaitConfirmDecision) {
            return Err(self.wrong_state("confirm_file"));
        }
        self.send(Command::Efpa(Efpa { change_direction }));
        self.state = if change_direction {
            State::AwaitCd
        } else {
            State::ListenerIdle { sent_cd: false }
        };
        self.arm_timer();
        Ok(())
    }

    /// Listener: refuses the received file (EFNA).
    pub fn refuse_file(&mut self, reason: EfnaReason, text: &str) -> Result<(), UsageError> {
        if !matches!(self.state, State::AwaitConfirmDecision) {
            return Err(self.wrong_state("refuse_file"));
        }
        let cmd = Command::Efna(Efna {
            reason,
            text: text.to_owned(),
        });
        self.send_checked(cmd)?;
        self.state = State::ListenerIdle { sent_cd: false };
        self.arm_timer();
        Ok(())
    }

    // ----- helpers -----

    fn window(&self) -> u16 {
        self.negotiated.as_ref().map_or(1, |n| n.credit)
    }

    fn speaker_idle(&mut self, after_unsolicited_cd: bool) -> State {
        self.events.push_back(Event::ReadyToSend {
            may_end_session: after_unsolicited_cd,
            may_change_direction: !after_unsolicited_cd,
        });
        State::SpeakerIdle {
            after_unsolicited_cd,
        }
    }

    /// Encodes and queues a command built by the session itself (fixed-size
    /// commands whose encoding cannot fail).
    fn send(&mut self, cmd: Command) {
        match cmd.to_bytes(self.level) {
            Ok(bytes) => self.queue(&cmd, bytes),
            Err(e) => {
                tracing::error!(error = %e, command = cmd.name(), "cannot encode");
                if !matches!(cmd, Command::Esid(_)) {
                    self.abort(EsidReason::UNSPECIFIED, "internal encoding error");
                }
            }
        }
    }

    /// Sends a command built from the caller's input: a value that cannot
    /// be encoded is the caller's error, and nothing is queued.
    fn send_checked(&mut self, cmd: Command) -> Result<(), UsageError> {
        let bytes = cmd.to_bytes(self.level)?;
        self.queue(&cmd, bytes);
        Ok(())
    }

    fn queue(&mut self, cmd: &Command, bytes: Vec<u8>) {
        let mut frame = Vec::with_capacity(bytes.len() + sth::HEADER_LEN);
        if let Err(e) = sth::encode_frame(&bytes, &mut frame) {
            tracing::error!(error = %e, command = cmd.name(), "cannot frame");
            return;
        }
        self.transmit.push_back(frame);
        tracing::debug!(command = cmd.name(), "sent");
        self.events.push_back(Event::CommandSent {
            name: cmd.name(),
            summary: cmd.summary(),
        });
    }

    fn violation(&mut self, command: &'static str, what: &str) -> State {
        tracing::warn!(command, what, "protocol violation");
        self.abort(EsidReason::PROTOCOL_VIOLATION, what);
        State::Closed
    }

    /// Sends ESID with `reason` and closes.
    fn abort(&mut self, reason: EsidReason, text: &str) {
        if self.ended {
            return;
        }
        // Reason texts are informational: keep them within the field.
        let mut text = text.to_owned();
        truncate_utf8(&mut text, 999);
        self.send(Command::Esid(Esid {
            reason,
            text: text.clone(),
        }));
        self.close(reason, &text, false);
    }

    fn close(&mut self, reason: EsidReason, text: &str, by_peer: bool) {
        if by_peer {
            tracing::info!(reason = reason.0, text, "partner ended the session");
        } else {
            tracing::info!(reason = reason.0, text, "ending the session");
        }
        self.ended = true;
        self.state = State::Closed;
        self.deadline = None;
        self.transmit_grants_credit = false;
        self.events.push_back(Event::SessionEnded {
            reason,
            text: text.to_owned(),
            by_peer,
        });
    }

    /// What the inactivity timer depends on: the kind of state and whether
    /// it waits for the peer.
    fn timer_view(&self) -> (std::mem::Discriminant<State>, bool) {
        (
            std::mem::discriminant(&self.state),
            self.state.waits_for_peer(),
        )
    }

    /// After an application call that may or may not change the state:
    /// restart the timer for a new wait, but keep the deadline of a wait
    /// that goes on (the application's calls are not the peer's activity).
    fn rearm_after_local_call(&mut self, before: (std::mem::Discriminant<State>, bool)) {
        if self.timer_view() != before || !before.1 {
            self.arm_timer();
        }
    }

    fn arm_timer(&mut self) {
        // A timeout beyond what `Instant` can represent means no deadline.
        self.deadline = if self.state.waits_for_peer() {
            self.now.checked_add(self.inactivity_timeout)
        } else {
            None
        };
    }
}

fn initiator_ssid(cfg: &InitiatorConfig) -> Ssid {
    let c = &cfg.capabilities;
    Ssid {
        level: c.max_level,
        code: cfg.ssid_code.clone(),
        password: cfg.password.clone(),
        buffer_size: c.buffer_size,
        mode: c.mode,
        compression: c.compression,
        restart: c.restart,
        special_logic: false,
        credit: c.credit,
        secure_auth: c.secure_auth,
        user_data: cfg.user_data.clone(),
    }
}

/// The responder's SSIDSR (RFC 5024 3.2.1, Mode): a responder that can do both
/// answers a Sender-only caller as Receiver-only and a Receiver-only caller as
/// Sender-only; otherwise it states what it can do (an S/S or R/R pair then
/// fails the negotiation).
fn answer_mode(ours: SessionMode, peer: SessionMode) -> SessionMode {
    match (ours, peer) {
        (SessionMode::Both, SessionMode::Send) => SessionMode::Receive,
        (SessionMode::Both, SessionMode::Receive) => SessionMode::Send,
        _ => ours,
    }
}

/// Combines our capabilities with the peer's SSID (RFC 5024 5.3.2).
fn negotiate(ours: &Capabilities, peer: &Ssid) -> Negotiated {
    Negotiated {
        level: ProtocolLevel(ours.max_level.0.min(peer.level.0)),
        buffer_size: ours.buffer_size.min(peer.buffer_size),
        credit: ours.credit.min(peer.credit),
        compression: ours.compression && peer.compression,
        restart: ours.restart && peer.restart,
        secure_auth: ours.secure_auth && peer.secure_auth,
        can_send: ours.mode.can_send() && peer.mode.can_receive(),
        can_receive: ours.mode.can_receive() && peer.mode.can_send(),
        peer: peer.clone(),
    }
}

/// Compares secrets without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}
