//! Arbitrary operation sequences on an initiator + responder pair.
//!
//! Shared by the `session_ops` proptest (runs in CI) and the `session_pair`
//! cargo-fuzz target (local, nightly): both turn raw bytes into operations —
//! application calls with arbitrary arguments, byte delivery (whole, split,
//! corrupted, or invented), clock jumps — and check that nothing panics and
//! that every frame a session emits is well formed: it decodes with the
//! session's own decoder and a DATA buffer never exceeds the negotiated size.

use std::time::{Duration, Instant};

use oftp_proto::codec::*;
use oftp_proto::session::*;
use oftp_proto::sth;

/// Reads operation arguments from the input bytes.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn b(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }

    fn flag(&mut self) -> bool {
        self.b() & 1 == 1
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.data.len());
        let (a, rest) = self.data.split_at(n);
        self.data = rest;
        a.to_vec()
    }
}

struct Side {
    session: Session,
    /// Bytes sent but not yet delivered to the other side.
    pending: Vec<u8>,
}

fn caps(inp: &mut Input<'_>) -> Capabilities {
    let levels = [1u8, 2, 4, 5];
    let modes = [SessionMode::Send, SessionMode::Receive, SessionMode::Both];
    let flags = inp.b();
    let max_level = ProtocolLevel(levels[(flags & 3) as usize]);
    Capabilities {
        max_level,
        buffer_size: 128 + (inp.b() as u32) * 4,
        credit: 1 + (inp.b() % 8) as u16,
        compression: flags & 4 != 0,
        restart: flags & 8 != 0,
        mode: modes[(inp.b() % 3) as usize],
        secure_auth: flags & 16 != 0 && max_level.is_v2(),
    }
}

fn file_sfid(inp: &mut Input<'_>) -> Sfid {
    let formats = [
        FileFormat::Unstructured,
        FileFormat::Text,
        FileFormat::Fixed,
        FileFormat::Variable,
    ];
    let format = formats[(inp.b() % 4) as usize];
    let lrecl = if format.is_record_oriented() {
        1 + inp.b() as u32
    } else {
        0
    };
    let time =
        VirtualFileTime::new(2024, 1, 1, 0, 0, 0, inp.b() as u16).unwrap_or(VirtualFileTime {
            year: 2024,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            counter: 0,
        });
    let mut s = Sfid::new(
        "FUZZ.FILE",
        time,
        "O0013000000ACME",
        "O0013000000PEER",
        format,
        lrecl,
    );
    s.restart_position = (inp.b() % 4) as u64;
    if inp.b().is_multiple_of(8) {
        s.security = SecurityLevel::SIGNED;
        s.cipher_suite = CipherSuite::AES256_RSA_SHA256;
        s.signed_eerp = true;
    }
    s
}

/// Checks every frame in `bytes` and returns them.
fn check_frames(bytes: &[u8], session: &Session) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (range, used) = sth::decode_frame(rest)
            .expect("emitted frame header is valid")
            .expect("emitted frames are complete");
        let buf = &rest[range];
        let cmd = Command::decode(buf, session.level()).expect("emitted command decodes");
        if let (Command::Data(_), Some(n)) = (&cmd, session.negotiated()) {
            assert!(
                buf.len() <= n.buffer_size as usize,
                "DATA above buffer size"
            );
        }
        rest = &rest[used..];
    }
}

/// How far a run got (lets scripted tests assert progress).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Stats {
    pub(crate) established: usize,
    pub(crate) files_accepted: usize,
    pub(crate) data_events: usize,
    pub(crate) files_ended: usize,
    pub(crate) sessions_ended: usize,
}

fn collect(side: &mut Side, stats: &mut Stats) {
    if let Some(bytes) = side.session.poll_transmit() {
        check_frames(&bytes, &side.session);
        side.pending.extend_from_slice(&bytes);
    }
    let mut guard = 0;
    while let Some(e) = side.session.poll_event() {
        guard += 1;
        assert!(guard < 1_000_000, "event flood");
        match e {
            Event::SessionEstablished { .. } => stats.established += 1,
            Event::FileAccepted { .. } => stats.files_accepted += 1,
            Event::DataReceived { .. } => stats.data_events += 1,
            Event::FileEnded { .. } => stats.files_ended += 1,
            Event::SessionEnded { .. } => stats.sessions_ended += 1,
            _ => {}
        }
    }
}

/// Interprets `data` as a sequence of operations on a fresh pair.
pub(crate) fn run(data: &[u8]) -> Stats {
    let mut stats = Stats::default();
    let mut inp = Input { data };
    let start = Instant::now();
    let mut now = start;
    let mut cfg = InitiatorConfig::new("O0013000000ACME", Password::new("PW"));
    cfg.capabilities = caps(&mut inp);
    let Ok(initiator) = Session::initiator(cfg, now) else {
        return stats;
    };
    let mut sides = [
        Side {
            session: initiator,
            pending: Vec::new(),
        },
        Side {
            session: Session::responder(ResponderConfig::default(), now),
            pending: Vec::new(),
        },
    ];
    let rcaps = caps(&mut inp);
    for _ in 0..2000 {
        let Some(op) = inp.byte() else { break };
        let who = (op >> 7) as usize;
        let other = 1 - who;
        collect(&mut sides[0], &mut stats);
        collect(&mut sides[1], &mut stats);
        match op & 0x1f {
            // Deliver everything pending to the other side.
            0..=3 => {
                let bytes = std::mem::take(&mut sides[who].pending);
                sides[other].session.handle_input(&bytes, now);
            }
            // Deliver a prefix.
            4 => {
                let n = inp.b() as usize;
                let p = &mut sides[who].pending;
                let n = n.min(p.len());
                let bytes: Vec<u8> = p.drain(..n).collect();
                sides[other].session.handle_input(&bytes, now);
            }
            // Corrupt one pending byte.
            5 => {
                let pos = inp.b() as usize;
                let val = inp.b();
                let p = &mut sides[who].pending;
                if !p.is_empty() {
                    let k = pos % p.len();
                    p[k] = val;
                }
            }
            // Invented bytes.
            6 => {
                let n = inp.b() as usize;
                let bytes = inp.bytes(n);
                sides[who].session.handle_input(&bytes, now);
            }
            7 => {
                let _ = sides[1].session.accept_session(ResponderParams {
                    ssid_code: "O0013000000PEER".into(),
                    password: Password::new("PW2"),
                    user_data: String::new(),
                    capabilities: rcaps.clone(),
                });
            }
            8 => {
                let _ = sides[1]
                    .session
                    .reject_session(EsidReason(inp.b() % 100), "rejected");
            }
            9 => {
                let sfid = file_sfid(&mut inp);
                let _ = sides[who].session.send_file(sfid);
            }
            10 => {
                let pos = (inp.b() % 4) as u64;
                let _ = sides[who].session.accept_file(pos);
            }
            11 => {
                let r = SfnaReason(inp.b() % 100);
                let retry = inp.flag();
                let _ = sides[who].session.reject_file(r, retry, "no");
            }
            12 => {
                let n = inp.b() as usize * 3;
                let eor = inp.flag();
                let fill = inp.b();
                let data = vec![fill; n];
                let _ = sides[who].session.write_data(&data, eor);
            }
            13 => {
                let rc = inp.b() as u64;
                let uc = inp.b() as u64 * 100;
                let _ = sides[who].session.finish_file(rc, uc);
            }
            14 => {
                let cd = inp.flag();
                let _ = sides[who].session.confirm_file(cd);
            }
            15 => {
                let r = EfnaReason(inp.b() % 100);
                let _ = sides[who].session.refuse_file(r, "bad");
            }
            16 => {
                let time =
                    VirtualFileTime::new(2024, 1, 1, 0, 0, 0, 1).unwrap_or(VirtualFileTime {
                        year: 2024,
                        month: 1,
                        day: 1,
                        hour: 0,
                        minute: 0,
                        second: 0,
                        counter: 1,
                    });
                let resp = if inp.flag() {
                    EndResponse::Positive(Eerp {
                        dsn: "FUZZ.FILE".into(),
                        date_time: time,
                        user_data: String::new(),
                        destination: "O0013000000ACME".into(),
                        originator: "O0013000000PEER".into(),
                        hash: inp.bytes(4),
                        signature: vec![],
                    })
                } else {
                    EndResponse::Negative(Nerp {
                        dsn: "FUZZ.FILE".into(),
                        date_time: time,
                        destination: "O0013000000ACME".into(),
                        originator: "O0013000000PEER".into(),
                        creator: "O0013000000PEER".into(),
                        reason: NerpReason(inp.b() % 100),
                        text: "fuzz".into(),
                        hash: vec![],
                        signature: vec![],
                    })
                };
                let _ = sides[who].session.send_end_response(resp);
            }
            17 => {
                let _ = sides[who].session.change_direction();
            }
            18 => {
                let r = EsidReason(inp.b() % 100);
                let _ = sides[who].session.end_session(r, "bye");
            }
            19 => {
                now += Duration::from_secs(inp.b() as u64);
                sides[who].session.handle_timeout(now);
            }
            20 => {
                sides[who].session.handle_transport_closed(now);
            }
            21 => {
                let mut expected = [0u8; 20];
                expected[0] = inp.b();
                let _ = sides[who].session.send_challenge(inp.bytes(8), expected);
            }
            22 => {
                let mut response = [0u8; 20];
                response[0] = inp.b();
                let _ = sides[who].session.answer_challenge(response);
            }
            _ => {
                // Let time pass to the deadline, as a runtime would.
                if let Some(d) = sides[who].session.poll_timeout() {
                    now = now.max(d);
                    sides[who].session.handle_timeout(now);
                    assert!(
                        sides[who].session.is_closed(),
                        "deadline reached but not closed"
                    );
                }
            }
        }
    }
    // Whatever happened, once closed a session stays quiet.
    for side in &mut sides {
        collect(side, &mut stats);
        if side.session.is_closed() {
            side.session.handle_input(&[0x10, 0, 0, 5, b'R'], now);
            assert!(side.session.poll_transmit().is_none());
            assert_eq!(side.session.poll_timeout(), None);
        }
    }
    stats
}
