//! In-memory initiator + responder pair tests: a `Pair` shuttles the bytes
//! both ways (optionally one byte at a time), and raw-peer tests feed hand-made
//! frames to one session to check every abort reason.

use std::time::{Duration, Instant};

use oftp_proto::codec::*;
use oftp_proto::data::parse_data_payload;
use oftp_proto::session::*;
use oftp_proto::sth;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    I,
    R,
}

struct Pair {
    i: Session,
    r: Session,
    now: Instant,
    /// Deliver bytes one at a time.
    chunked: bool,
    ev_i: Vec<Event>,
    ev_r: Vec<Event>,
}

fn caps(level: ProtocolLevel) -> Capabilities {
    Capabilities {
        max_level: level,
        ..Capabilities::default()
    }
}

fn responder_params(c: Capabilities) -> ResponderParams {
    ResponderParams {
        ssid_code: "O0013000000PARTNER".into(),
        password: Password::new("RSECRET"),
        user_data: String::new(),
        capabilities: c,
    }
}

impl Pair {
    /// Both sessions up to the end of the SSID exchange (responder accepts).
    fn new(ic: Capabilities, rc: Capabilities, chunked: bool) -> Pair {
        let mut p = Pair::connect(ic, chunked);
        let peer = p.take_ssid_received();
        assert_eq!(peer.code, "O0013000000ACME");
        assert_eq!(peer.password.expose(), "ISECRET");
        p.r.accept_session(responder_params(rc)).unwrap();
        p.drive();
        p
    }

    /// Up to the responder's SsidReceived.
    fn connect(ic: Capabilities, chunked: bool) -> Pair {
        let now = Instant::now();
        let mut cfg = InitiatorConfig::new("O0013000000ACME", Password::new("ISECRET"));
        cfg.capabilities = ic;
        let mut p = Pair {
            i: Session::initiator(cfg, now).unwrap(),
            r: Session::responder(ResponderConfig::default(), now),
            now,
            chunked,
            ev_i: Vec::new(),
            ev_r: Vec::new(),
        };
        p.drive();
        p
    }

    fn take_ssid_received(&mut self) -> Ssid {
        let pos = self
            .ev_r
            .iter()
            .position(|e| matches!(e, Event::SsidReceived { .. }))
            .expect("SsidReceived");
        match self.ev_r.remove(pos) {
            Event::SsidReceived { peer } => peer,
            _ => unreachable!(),
        }
    }

    fn s(&mut self, side: Side) -> &mut Session {
        match side {
            Side::I => &mut self.i,
            Side::R => &mut self.r,
        }
    }

    fn ev(&mut self, side: Side) -> &mut Vec<Event> {
        match side {
            Side::I => &mut self.ev_i,
            Side::R => &mut self.ev_r,
        }
    }

    /// Shuttles bytes until both sides are quiet (bounded).
    fn drive(&mut self) {
        for _ in 0..100_000 {
            let a = self.i.poll_transmit();
            let b = self.r.poll_transmit();
            if a.is_none() && b.is_none() {
                break;
            }
            if let Some(bytes) = a {
                deliver(&mut self.r, &bytes, self.chunked, self.now);
            }
            if let Some(bytes) = b {
                deliver(&mut self.i, &bytes, self.chunked, self.now);
            }
            self.collect();
        }
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(e) = self.i.poll_event() {
            self.ev_i.push(e);
        }
        while let Some(e) = self.r.poll_event() {
            self.ev_r.push(e);
        }
    }

    /// Removes and returns the first event of `side` matching `f`.
    fn expect<T>(&mut self, side: Side, what: &str, f: impl Fn(&Event) -> Option<T>) -> T {
        let evs = self.ev(side);
        let pos = evs
            .iter()
            .position(|e| f(e).is_some())
            .unwrap_or_else(|| panic!("{side:?}: no {what} in {evs:#?}"));
        let e = evs.remove(pos);
        f(&e).unwrap()
    }

    fn has(&mut self, side: Side, f: impl Fn(&Event) -> bool) -> bool {
        self.ev(side).iter().any(f)
    }

    fn ended(&mut self, side: Side) -> (EsidReason, bool) {
        self.expect(side, "SessionEnded", |e| match e {
            Event::SessionEnded {
                reason, by_peer, ..
            } => Some((*reason, *by_peer)),
            _ => None,
        })
    }

    /// Sends one file from `from` to the other side and returns what arrived,
    /// as records (a U/T file is one record). `chunk` is the write size.
    fn transfer(
        &mut self,
        from: Side,
        sfid: Sfid,
        records: &[Vec<u8>],
        accept_at: u64,
        chunk: usize,
        change_direction: bool,
    ) -> Vec<Vec<u8>> {
        let to = if from == Side::I { Side::R } else { Side::I };
        let format = sfid.transmitted_format();
        self.s(from).send_file(sfid.clone()).unwrap();
        self.drive();
        let offered = self.expect(to, "FileOffered", |e| match e {
            Event::FileOffered { sfid } => Some(sfid.clone()),
            _ => None,
        });
        assert_eq!(offered.dsn, sfid.dsn.to_uppercase());
        assert_eq!(offered.restart_position, sfid.restart_position);
        self.s(to).accept_file(accept_at).unwrap();
        self.drive();
        let pos = self.expect(from, "FileAccepted", |e| match e {
            Event::FileAccepted { restart_position } => Some(*restart_position),
            _ => None,
        });
        assert_eq!(pos, accept_at);
        let mut units = 0u64;
        for rec in records {
            let pieces: Vec<&[u8]> = if rec.is_empty() {
                vec![&rec[..]]
            } else {
                rec.chunks(chunk).collect()
            };
            let n = pieces.len();
            for (k, piece) in pieces.into_iter().enumerate() {
                let mut guard = 0;
                while !self.s(from).can_accept_data() {
                    self.drive();
                    guard += 1;
                    assert!(guard < 1000, "sender never got credit back");
                }
                self.s(from).write_data(piece, k + 1 == n).unwrap();
                units += piece.len() as u64;
            }
        }
        let rcount = if format.is_record_oriented() {
            records.len() as u64
        } else {
            0
        };
        self.s(from).finish_file(rcount, units).unwrap();
        self.drive();
        let (rc, uc, got_units) = self.expect(to, "FileEnded", |e| match e {
            Event::FileEnded {
                record_count,
                unit_count,
                received_units,
                record_length_violation,
                ..
            } => {
                assert!(record_length_violation.is_none());
                Some((*record_count, *unit_count, *received_units))
            }
            _ => None,
        });
        assert_eq!((rc, uc), (rcount, units));
        assert_eq!(got_units, units);
        // Gather the data events that arrived before FileEnded.
        let mut out = Vec::new();
        let mut open = Vec::new();
        let mut ends = 0;
        self.ev(to).retain(|e| match e {
            Event::DataReceived {
                bytes,
                end_of_record,
            } => {
                open.extend_from_slice(bytes);
                if *end_of_record {
                    out.push(std::mem::take(&mut open));
                    ends += 1;
                }
                false
            }
            _ => true,
        });
        assert!(open.is_empty(), "data after the last end of record");
        self.s(to).confirm_file(change_direction).unwrap();
        self.drive();
        let cd = self.expect(from, "FileConfirmed", |e| match e {
            Event::FileConfirmed { change_direction } => Some(*change_direction),
            _ => None,
        });
        assert_eq!(cd, change_direction);
        if !format.is_record_oriented() {
            assert!(ends <= 1);
        }
        out
    }

    /// The speaker gives the turn away, the other side has nothing to send and
    /// ends the session normally.
    fn close_normally(&mut self, speaker: Side) {
        let other = if speaker == Side::I { Side::R } else { Side::I };
        self.ev(other).clear();
        self.s(speaker).change_direction().unwrap();
        self.drive();
        let (may_end, may_cd) = self.expect(other, "ReadyToSend", |e| match e {
            Event::ReadyToSend {
                may_end_session,
                may_change_direction,
            } => Some((*may_end_session, *may_change_direction)),
            _ => None,
        });
        assert!(may_end && !may_cd);
        // Handing the turn straight back is refused (no CD loops).
        assert!(self.s(other).change_direction().is_err());
        self.s(other).end_session(EsidReason::NORMAL, "").unwrap();
        self.drive();
        assert_eq!(self.ended(other), (EsidReason::NORMAL, false));
        assert_eq!(self.ended(speaker), (EsidReason::NORMAL, true));
        assert!(self.i.is_closed() && self.r.is_closed());
    }
}

fn deliver(s: &mut Session, bytes: &[u8], chunked: bool, now: Instant) {
    if chunked {
        for b in bytes {
            s.handle_input(std::slice::from_ref(b), now);
        }
    } else {
        s.handle_input(bytes, now);
    }
}

fn file_time() -> VirtualFileTime {
    VirtualFileTime::new(2024, 3, 1, 8, 0, 0, 1).unwrap()
}

fn sfid(dsn: &str, format: FileFormat, lrecl: u32) -> Sfid {
    let mut s = Sfid::new(
        dsn,
        file_time(),
        "O0013000000ACME",
        "O0013000000PARTNER",
        format,
        lrecl,
    );
    s.file_size = 1;
    s.original_file_size = 1;
    s
}

fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Long runs too, to exercise compression.
            if (i / 100) % 3 == 0 { b'0' } else { x as u8 }
        })
        .collect()
}

// ---------- happy paths ----------

#[test]
fn every_level_negotiates_and_transfers() {
    for level in [
        ProtocolLevel::V2_0,
        ProtocolLevel::V1_4,
        ProtocolLevel::V1_3,
        ProtocolLevel::V1_2,
    ] {
        for (ilevel, rlevel) in [(level, ProtocolLevel::V2_0), (ProtocolLevel::V2_0, level)] {
            let mut p = Pair::new(caps(ilevel), caps(rlevel), false);
            let n = p.expect(Side::I, "SessionEstablished", |e| match e {
                Event::SessionEstablished { negotiated } => Some(negotiated.clone()),
                _ => None,
            });
            assert_eq!(n.level, level, "lower level wins");
            assert_eq!(p.i.level(), level);
            assert_eq!(p.r.level(), level);
            assert!(p.has(Side::I, |e| matches!(
                e,
                Event::ReadyToSend {
                    may_end_session: false,
                    ..
                }
            )));
            let data = pseudo_random(5000, level.0 as u32);
            let got = p.transfer(
                Side::I,
                sfid("LEVEL.TEST", FileFormat::Unstructured, 0),
                std::slice::from_ref(&data),
                0,
                1000,
                false,
            );
            assert_eq!(got, vec![data]);
            p.close_normally(Side::I);
        }
    }
}

#[test]
fn formats_with_and_without_compression_and_small_buffers() {
    let text: Vec<u8> = (0..200)
        .flat_map(|i| format!("line {i} of the text file      \r\n").into_bytes())
        .collect();
    let fixed: Vec<Vec<u8>> = (0..50).map(|i| vec![b'A' + (i % 26) as u8; 80]).collect();
    let variable: Vec<Vec<u8>> = (0..60)
        .map(|i| pseudo_random(i * 7 % 300, i as u32))
        .collect();
    for compression in [false, true] {
        for (buffer_size, credit, chunked) in
            [(4096u32, 64u16, false), (128, 1, false), (128, 2, true)]
        {
            let c = Capabilities {
                buffer_size,
                credit,
                compression,
                ..Capabilities::default()
            };
            let mut p = Pair::new(c.clone(), c, chunked);
            let n = p.i.negotiated().unwrap().clone();
            assert_eq!(n.compression, compression);
            assert_eq!((n.buffer_size, n.credit), (buffer_size, credit));

            let data = pseudo_random(3000, 7);
            let got = p.transfer(
                Side::I,
                sfid("U.FILE", FileFormat::Unstructured, 0),
                std::slice::from_ref(&data),
                0,
                333,
                false,
            );
            assert_eq!(got, vec![data]);

            let got = p.transfer(
                Side::I,
                sfid("T.FILE", FileFormat::Text, 0),
                std::slice::from_ref(&text),
                0,
                100,
                false,
            );
            assert_eq!(got, vec![text.clone()], "T files keep CR LF in the data");

            let got = p.transfer(
                Side::I,
                sfid("F.FILE", FileFormat::Fixed, 80),
                &fixed,
                0,
                50,
                false,
            );
            assert_eq!(got, fixed);

            let got = p.transfer(
                Side::I,
                sfid("V.FILE", FileFormat::Variable, 300),
                &variable,
                0,
                64,
                false,
            );
            assert_eq!(got, variable);
            p.close_normally(Side::I);
        }
    }
}

#[test]
fn empty_file_sends_no_data() {
    let mut p = Pair::new(Capabilities::default(), Capabilities::default(), false);
    let got = p.transfer(
        Side::I,
        sfid("EMPTY", FileFormat::Unstructured, 0),
        &[],
        0,
        10,
        false,
    );
    assert!(got.is_empty());
}

#[test]
fn restart_at_a_position() {
    let mut p = Pair::new(Capabilities::default(), Capabilities::default(), false);
    let mut s = sfid("RESTART.ME", FileFormat::Fixed, 10);
    s.restart_position = 5;
    // Accepting above the asked position is refused locally.
    p.i.send_file(s.clone()).unwrap();
    p.drive();
    p.expect(Side::R, "FileOffered", |e| match e {
        Event::FileOffered { sfid } => Some(sfid.restart_position),
        _ => None,
    });
    assert!(matches!(p.r.accept_file(6), Err(UsageError::NotAllowed(_))));
    p.r.accept_file(3).unwrap();
    p.drive();
    let pos = p.expect(Side::I, "FileAccepted", |e| match e {
        Event::FileAccepted { restart_position } => Some(*restart_position),
        _ => None,
    });
    assert_eq!(pos, 3);
    // Send records 4..=7 (positions count records for F).
    for k in 3..7u8 {
        p.i.write_data(&[b'0' + k; 10], true).unwrap();
    }
    p.i.finish_file(7, 70).unwrap();
    p.drive();
    let (rc, rr, rp) = p.expect(Side::R, "FileEnded", |e| match e {
        Event::FileEnded {
            record_count,
            received_records,
            restart_position,
            ..
        } => Some((*record_count, *received_records, *restart_position)),
        _ => None,
    });
    assert_eq!((rc, rr, rp), (7, 4, 3));
}

#[test]
fn restart_refused_when_not_negotiated() {
    let no_restart = Capabilities {
        restart: false,
        ..Capabilities::default()
    };
    let mut p = Pair::new(Capabilities::default(), no_restart, false);
    assert!(!p.i.negotiated().unwrap().restart);
    let mut s = sfid("RESTART.ME", FileFormat::Unstructured, 0);
    s.restart_position = 2;
    assert!(matches!(p.i.send_file(s), Err(UsageError::NotAllowed(_))));
}

#[test]
fn speaker_handover_and_files_back_with_eerp_later() {
    for chunked in [false, true] {
        let mut p = Pair::new(Capabilities::default(), Capabilities::default(), chunked);
        let data = b"first file".to_vec();
        // The responder confirms and asks for the turn: the initiator sends CD.
        let got = p.transfer(
            Side::I,
            sfid("TO.PARTNER", FileFormat::Unstructured, 0),
            std::slice::from_ref(&data),
            0,
            4,
            true,
        );
        assert_eq!(got, vec![data]);
        assert!(!p.i.is_speaker());
        let (may_end, may_cd) = p.expect(Side::R, "ReadyToSend", |e| match e {
            Event::ReadyToSend {
                may_end_session,
                may_change_direction,
            } => Some((*may_end_session, *may_change_direction)),
            _ => None,
        });
        // A solicited CD: no normal end yet, the turn may be handed back.
        assert!(!may_end && may_cd);
        assert!(p.r.end_session(EsidReason::NORMAL, "").is_err());

        // The responder sends a file back ...
        let back = vec![b"record one".to_vec(), b"record two".to_vec()];
        let got = p.transfer(
            Side::R,
            sfid("TO.ACME", FileFormat::Variable, 100),
            &back,
            0,
            3,
            false,
        );
        assert_eq!(got, back);
        // ... and the EERP for the first file, later in the same turn.
        let eerp = Eerp {
            dsn: "TO.PARTNER".into(),
            date_time: file_time(),
            user_data: String::new(),
            destination: "O0013000000ACME".into(),
            originator: "O0013000000PARTNER".into(),
            hash: vec![],
            signature: vec![],
        };
        p.r.send_end_response(EndResponse::Positive(eerp.clone()))
            .unwrap();
        assert!(
            p.r.send_file(sfid("X", FileFormat::Unstructured, 0))
                .is_err(),
            "waits for RTR"
        );
        p.drive();
        let got = p.expect(Side::I, "EndResponseReceived", |e| match e {
            Event::EndResponseReceived(EndResponse::Positive(e)) => Some(e.clone()),
            _ => None,
        });
        assert_eq!(got, eerp);
        p.expect(Side::R, "EndResponseAcknowledged", |e| {
            matches!(e, Event::EndResponseAcknowledged).then_some(())
        });
        assert!(p.has(Side::R, |e| matches!(e, Event::ReadyToSend { .. })));
        p.close_normally(Side::R);
    }
}

fn lost_file_nerp() -> Nerp {
    Nerp {
        dsn: "LOST.FILE".into(),
        date_time: file_time(),
        destination: "O0013000000PARTNER".into(),
        originator: "O0013000000ACME".into(),
        creator: "O0013000000ACME".into(),
        reason: NerpReason::NOT_DELIVERED,
        text: "next hop refused".into(),
        hash: vec![],
        signature: vec![],
    }
}

/// NERP came with revision 1.4 (RFC 5024 1.2): at level 5 it goes through
/// with its reason text, at level 4 without (only 2.0 carries it); below it
/// is refused with a usage error that says why, and the session goes on
/// unchanged.
#[test]
fn nerp_from_level_4_on_and_refused_below() {
    for (level, text) in [
        (ProtocolLevel::V2_0, "next hop refused"),
        (ProtocolLevel::V1_4, ""),
    ] {
        for chunked in [false, true] {
            let mut p = Pair::new(caps(level), Capabilities::default(), chunked);
            let nerp = lost_file_nerp();
            p.i.send_end_response(EndResponse::Negative(nerp.clone()))
                .unwrap();
            p.drive();
            let got = p.expect(Side::R, "NERP", |e| match e {
                Event::EndResponseReceived(EndResponse::Negative(n)) => Some(n.clone()),
                _ => None,
            });
            let expected = Nerp {
                text: text.into(),
                ..nerp
            };
            assert_eq!(got, expected, "{level:?}: the stamp keeps its counter");
            assert!(p.has(Side::I, |e| matches!(e, Event::EndResponseAcknowledged)));
        }
    }
    for level in [ProtocolLevel::V1_3, ProtocolLevel::V1_2] {
        let mut p = Pair::new(caps(level), Capabilities::default(), false);
        let err =
            p.i.send_end_response(EndResponse::Negative(lost_file_nerp()))
                .unwrap_err();
        assert!(matches!(err, UsageError::NotAllowed(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("LOST.FILE") && msg.contains("1.4"), "{msg}");
        assert!(p.i.poll_transmit().is_none(), "nothing was sent");
        // The session is unchanged and still usable.
        assert!(p.i.change_direction().is_ok());
    }
}

/// OFTP 1.4 (level 4) carries CCYYMMDD + HHMMSScccc: a file's stamp, counter
/// included, reaches the receiver as sent, and so does the EERP that answers
/// it (a 1.2/1.3 session drops the century's digits and the counter).
#[test]
fn level_4_carries_the_extended_stamp_through_sfid_and_eerp() {
    let stamp = VirtualFileTime::new(2031, 12, 31, 23, 59, 58, 4321).unwrap();
    for chunked in [false, true] {
        let mut p = Pair::new(
            caps(ProtocolLevel::V1_4),
            caps(ProtocolLevel::V2_0),
            chunked,
        );
        assert_eq!(p.r.level(), ProtocolLevel::V1_4);
        let mut file = sfid("STAMPED", FileFormat::Fixed, 4);
        file.date_time = stamp;
        p.i.send_file(file).unwrap();
        p.drive();
        let offered = p.expect(Side::R, "FileOffered", |e| match e {
            Event::FileOffered { sfid } => Some(sfid.clone()),
            _ => None,
        });
        assert_eq!(offered.date_time, stamp);
        p.r.reject_file(SfnaReason::DUPLICATE_FILE, false, "")
            .unwrap();
        p.drive();
        p.i.change_direction().unwrap();
        p.drive();
        let eerp = Eerp {
            dsn: "STAMPED".into(),
            date_time: stamp,
            user_data: "U".into(),
            destination: "O0013000000ACME".into(),
            originator: "O0013000000PARTNER".into(),
            hash: vec![],
            signature: vec![],
        };
        p.r.send_end_response(EndResponse::Positive(eerp.clone()))
            .unwrap();
        p.drive();
        let got = p.expect(Side::I, "EERP", |e| match e {
            Event::EndResponseReceived(EndResponse::Positive(e)) => Some(e.clone()),
            _ => None,
        });
        assert_eq!(got, eerp);
    }
    // At level 2 the same stamp travels as YYMMDD HHMMSS: counter lost.
    let mut p = Pair::new(caps(ProtocolLevel::V1_3), Capabilities::default(), false);
    let mut file = sfid("STAMPED", FileFormat::Fixed, 4);
    file.date_time = stamp;
    p.i.send_file(file).unwrap();
    p.drive();
    let offered = p.expect(Side::R, "FileOffered", |e| match e {
        Event::FileOffered { sfid } => Some(sfid.clone()),
        _ => None,
    });
    assert_eq!(offered.date_time.counter, 0);
}

/// A stamp that is no date or time ends the session with ESID 06 that names
/// the field (the text where the level has one), whatever the level; the
/// application never sees the file.
#[test]
fn invalid_stamp_from_the_partner_ends_the_session_with_esid_06() {
    let now = Instant::now();
    for (level, date, time, field, v1) in [
        (
            ProtocolLevel::V2_0,
            "20060643",
            "1230450001",
            "SFIDDATE",
            false,
        ),
        (
            ProtocolLevel::V2_0,
            "20060606",
            "5186720001",
            "SFIDTIME",
            false,
        ),
        (
            ProtocolLevel::V2_0,
            "20060606",
            "1230450000",
            "SFIDTIME",
            false,
        ),
        (
            ProtocolLevel::V1_4,
            "20060643",
            "1230450001",
            "SFIDDATE",
            true,
        ),
        (ProtocolLevel::V1_3, "060643", "123045", "SFIDDATE", true),
    ] {
        let mut r = Session::responder(ResponderConfig::default(), now);
        r.poll_transmit().unwrap();
        let mut peer = peer_ssid(4, SessionMode::Both, 4096);
        peer.level = level;
        r.handle_input(&frame(&Command::Ssid(peer), level), now);
        r.accept_session(responder_params(Capabilities::default()))
            .unwrap();
        r.poll_transmit().unwrap();
        while r.poll_event().is_some() {}
        let mut wire = Command::Sfid(Sfid {
            description: String::new(),
            ..sfid("BAD.STAMP", FileFormat::Unstructured, 0)
        })
        .to_bytes(level)
        .unwrap();
        let at = if level.has_extended_stamp() { 30 } else { 36 };
        let stamp = format!("{date}{time}");
        wire[at..at + stamp.len()].copy_from_slice(stamp.as_bytes());
        r.handle_input(&raw_frame(&wire), now);
        assert!(r.is_closed(), "{level:?} {date} {time}");
        let bytes = r.poll_transmit().expect("ESID");
        let Some(Command::Esid(esid)) = commands(&bytes, level).pop() else {
            panic!("no ESID")
        };
        assert_eq!(
            esid.reason,
            EsidReason::INVALID_DATA,
            "{level:?} {date} {time}"
        );
        if v1 {
            assert_eq!(bytes, raw_frame(b"F06\r"), "RFC 2204 ESID has no text");
        } else {
            assert!(esid.text.contains(field), "{}", esid.text);
        }
        let mut offered = false;
        let mut ended = None;
        while let Some(e) = r.poll_event() {
            match e {
                Event::FileOffered { .. } => offered = true,
                Event::SessionEnded { text, .. } => ended = Some(text),
                _ => {}
            }
        }
        assert!(!offered);
        let text = ended.expect("SessionEnded");
        assert!(text.contains(field), "{text}");
    }
}

/// RFC 5024 5.3.2 and 9.8.2: an SSIDLEV that is no release level (0, 3, not a
/// digit) fails the SSID negotiation with ESID 10 on either side, not with
/// a "resources not available" or an "invalid data".
#[test]
fn ssid_level_that_is_no_release_level_ends_with_esid_10() {
    let now = Instant::now();
    let good = Command::Ssid(peer_ssid(4, SessionMode::Both, 4096))
        .to_bytes(ProtocolLevel::V2_0)
        .unwrap();
    for lev in [b'0', b'3', b'X'] {
        let mut wire = good.clone();
        wire[1] = lev;
        // Responder: the caller's SSID.
        let mut r = Session::responder(ResponderConfig::default(), now);
        r.poll_transmit().unwrap();
        r.handle_input(&raw_frame(&wire), now);
        assert!(r.is_closed());
        assert_eq!(last_esid(&mut r), EsidReason::MODE_INCOMPATIBLE, "{lev}");
        assert!(
            !std::iter::from_fn(|| r.poll_event()).any(|e| matches!(e, Event::SsidReceived { .. })),
            "the application is not asked to accept it"
        );
        // Initiator: the responder's answer.
        let cfg = InitiatorConfig::new("O0013000000ACME", Password::new("PW"));
        let mut i = Session::initiator(cfg, now).unwrap();
        i.handle_input(&frame(&Command::Ssrm(Ssrm), ProtocolLevel::V2_0), now);
        i.poll_transmit().unwrap();
        i.handle_input(&raw_frame(&wire), now);
        assert!(i.is_closed());
        assert_eq!(last_esid(&mut i), EsidReason::MODE_INCOMPATIBLE, "{lev}");
    }
}

/// RFC 5024 3.2.1 (Mode): a responder that can both send and receive answers
/// a Sender-only initiator with Receiver-only ('R') and a Receiver-only one
/// with Sender-only ('S'); a Both initiator gets Both.
#[test]
fn responder_answers_a_one_way_initiator_with_the_opposite_mode() {
    for (im, answer) in [
        (SessionMode::Send, SessionMode::Receive),
        (SessionMode::Receive, SessionMode::Send),
        (SessionMode::Both, SessionMode::Both),
    ] {
        for level in [
            ProtocolLevel::V2_0,
            ProtocolLevel::V1_4,
            ProtocolLevel::V1_2,
        ] {
            let mut p = Pair::new(
                Capabilities {
                    mode: im,
                    max_level: level,
                    ..Capabilities::default()
                },
                Capabilities::default(),
                false,
            );
            let n = p.expect(Side::I, "SessionEstablished", |e| match e {
                Event::SessionEstablished { negotiated } => Some(negotiated.clone()),
                _ => None,
            });
            assert_eq!(n.peer.mode, answer, "{im:?} at {level:?}");
            assert_eq!(n.can_send, im.can_send());
            assert_eq!(n.can_receive, im.can_receive());
        }
    }
}

#[test]
fn sfna_with_retry_and_efna() {
    let mut p = Pair::new(Capabilities::default(), Capabilities::default(), false);
    p.i.send_file(sfid("FULL.DISK", FileFormat::Unstructured, 0))
        .unwrap();
    p.drive();
    p.expect(Side::R, "FileOffered", |e| {
        matches!(e, Event::FileOffered { .. }).then_some(())
    });
    p.r.reject_file(SfnaReason::ACCESS_METHOD_FAILURE, true, "disk full")
        .unwrap();
    p.drive();
    let (reason, retry, text) = p.expect(Side::I, "FileRejected", |e| match e {
        Event::FileRejected {
            reason,
            retry,
            text,
        } => Some((*reason, *retry, text.clone())),
        _ => None,
    });
    assert_eq!(reason, SfnaReason::ACCESS_METHOD_FAILURE);
    assert!(retry);
    assert_eq!(text, "disk full");
    assert!(p.has(Side::I, |e| matches!(e, Event::ReadyToSend { .. })));

    // EFNA after the data.
    p.i.send_file(sfid("BAD.COUNT", FileFormat::Unstructured, 0))
        .unwrap();
    p.drive();
    p.r.accept_file(0).unwrap();
    p.drive();
    p.i.write_data(b"abc", false).unwrap();
    p.i.finish_file(0, 4).unwrap();
    p.drive();
    let (uc, ru) = p.expect(Side::R, "FileEnded", |e| match e {
        Event::FileEnded {
            unit_count,
            received_units,
            ..
        } => Some((*unit_count, *received_units)),
        _ => None,
    });
    assert_ne!(uc, ru);
    p.r.refuse_file(EfnaReason::INVALID_BYTE_COUNT, "count mismatch")
        .unwrap();
    p.drive();
    let reason = p.expect(Side::I, "FileRefused", |e| match e {
        Event::FileRefused { reason, .. } => Some(*reason),
        _ => None,
    });
    assert_eq!(reason, EfnaReason::INVALID_BYTE_COUNT);
    assert!(
        p.i.is_speaker(),
        "the turn is not exchanged after a failure"
    );
}

// ---------- session rejected ----------

#[test]
fn session_rejected_unknown_user_and_password() {
    for reason in [
        EsidReason::USER_CODE_NOT_KNOWN,
        EsidReason::INVALID_PASSWORD,
    ] {
        let mut p = Pair::connect(Capabilities::default(), false);
        p.take_ssid_received();
        p.r.reject_session(reason, "no").unwrap();
        p.drive();
        assert_eq!(p.ended(Side::R), (reason, false));
        assert_eq!(p.ended(Side::I), (reason, true));
    }
}

#[test]
fn incompatible_modes_end_with_esid_10() {
    for (im, rm) in [
        (SessionMode::Send, SessionMode::Send),
        (SessionMode::Receive, SessionMode::Receive),
    ] {
        let mut p = Pair::connect(
            Capabilities {
                mode: im,
                ..Capabilities::default()
            },
            false,
        );
        p.take_ssid_received();
        p.r.accept_session(responder_params(Capabilities {
            mode: rm,
            ..Capabilities::default()
        }))
        .unwrap();
        p.drive();
        assert_eq!(p.ended(Side::R), (EsidReason::MODE_INCOMPATIBLE, false));
        assert_eq!(p.ended(Side::I), (EsidReason::MODE_INCOMPATIBLE, true));
    }
}

#[test]
fn send_only_and_receive_only_modes() {
    let mut p = Pair::new(
        Capabilities {
            mode: SessionMode::Receive,
            ..Capabilities::default()
        },
        Capabilities {
            mode: SessionMode::Send,
            ..Capabilities::default()
        },
        false,
    );
    let n = p.i.negotiated().unwrap().clone();
    assert!(!n.can_send && n.can_receive);
    assert!(matches!(
        p.i.send_file(sfid("NO", FileFormat::Unstructured, 0)),
        Err(UsageError::NotAllowed(_))
    ));
    p.i.change_direction().unwrap();
    p.drive();
    let got = p.transfer(
        Side::R,
        sfid("FROM.SENDER", FileFormat::Unstructured, 0),
        &[b"payload".to_vec()],
        0,
        100,
        false,
    );
    assert_eq!(got, vec![b"payload".to_vec()]);
}

#[test]
fn negotiation_takes_the_lower_values() {
    let i = Capabilities {
        buffer_size: 2048,
        credit: 10,
        compression: true,
        restart: true,
        ..Capabilities::default()
    };
    let r = Capabilities {
        buffer_size: 99_999,
        credit: 999,
        compression: false,
        restart: true,
        ..Capabilities::default()
    };
    let p = Pair::new(i, r, false);
    for s in [&p.i, &p.r] {
        let n = s.negotiated().unwrap();
        assert_eq!(n.buffer_size, 2048);
        assert_eq!(n.credit, 10);
        assert!(!n.compression);
        assert!(n.restart);
    }
}

#[test]
fn secure_authentication_phase_is_sequenced() {
    let c = Capabilities {
        secure_auth: true,
        ..Capabilities::default()
    };
    for wrong in [false, true] {
        let mut p = Pair::new(c.clone(), c.clone(), false);
        // Responder challenges the initiator first.
        p.expect(Side::R, "AuthChallengeRequested", |e| {
            matches!(e, Event::AuthChallengeRequested).then_some(())
        });
        let secret_r = [7u8; 20];
        p.r.send_challenge(b"cms-enveloped-for-initiator".to_vec(), secret_r)
            .unwrap();
        p.drive();
        let ch = p.expect(Side::I, "AuthChallengeReceived", |e| match e {
            Event::AuthChallengeReceived { challenge } => Some(challenge.clone()),
            _ => None,
        });
        assert_eq!(ch, b"cms-enveloped-for-initiator");
        p.i.answer_challenge(secret_r).unwrap();
        p.drive();
        // Then the initiator challenges the responder.
        p.expect(Side::I, "AuthChallengeRequested", |e| {
            matches!(e, Event::AuthChallengeRequested).then_some(())
        });
        let secret_i = [9u8; 20];
        p.i.send_challenge(b"cms-enveloped-for-responder".to_vec(), secret_i)
            .unwrap();
        p.drive();
        p.expect(Side::R, "AuthChallengeReceived", |e| {
            matches!(e, Event::AuthChallengeReceived { .. }).then_some(())
        });
        if wrong {
            p.r.answer_challenge([0u8; 20]).unwrap();
            p.drive();
            assert_eq!(
                p.ended(Side::I),
                (EsidReason::INVALID_CHALLENGE_RESPONSE, false)
            );
            assert_eq!(
                p.ended(Side::R),
                (EsidReason::INVALID_CHALLENGE_RESPONSE, true)
            );
        } else {
            p.r.answer_challenge(secret_i).unwrap();
            p.drive();
            assert!(p.has(Side::I, |e| matches!(e, Event::Authenticated)));
            assert!(p.has(Side::R, |e| matches!(e, Event::Authenticated)));
            assert!(p.i.is_speaker());
            let got = p.transfer(
                Side::I,
                sfid("AFTER.AUTH", FileFormat::Unstructured, 0),
                &[b"x".to_vec()],
                0,
                1,
                false,
            );
            assert_eq!(got, vec![b"x".to_vec()]);
        }
    }
}

#[test]
fn secure_auth_mismatch_ends_with_esid_12() {
    let mut p = Pair::connect(
        Capabilities {
            secure_auth: true,
            ..Capabilities::default()
        },
        false,
    );
    p.take_ssid_received();
    p.r.accept_session(responder_params(Capabilities::default()))
        .unwrap();
    p.drive();
    assert_eq!(
        p.ended(Side::R),
        (EsidReason::SECURE_AUTH_INCOMPATIBLE, false)
    );
}

// ---------- usage errors ----------

#[test]
fn methods_in_the_wrong_state_are_usage_errors() {
    let mut p = Pair::new(Capabilities::default(), Capabilities::default(), false);
    assert!(matches!(
        p.r.send_file(sfid("A", FileFormat::Unstructured, 0)),
        Err(UsageError::WrongState { .. })
    ));
    assert!(p.r.confirm_file(false).is_err());
    assert!(p.i.accept_file(0).is_err());
    assert!(p.i.write_data(b"x", false).is_err());
    assert!(
        p.i.end_session(EsidReason::NORMAL, "").is_err(),
        "no ESID 00 without the peer's CD"
    );
    assert!(
        p.r.accept_session(responder_params(Capabilities::default()))
            .is_err()
    );
    // Nothing was sent by the failed calls.
    assert!(p.i.poll_transmit().is_none());
    assert!(p.r.poll_transmit().is_none());
    // An abnormal end is always allowed, even for the listener.
    p.r.end_session(EsidReason::EMERGENCY_CLOSE_DOWN, "shutting down")
        .unwrap();
    p.drive();
    assert_eq!(p.ended(Side::I), (EsidReason::EMERGENCY_CLOSE_DOWN, true));
    assert!(p.i.end_session(EsidReason::UNSPECIFIED, "").is_err());
}

#[test]
fn invalid_configuration_is_refused() {
    let mut cfg = InitiatorConfig::new("O0013000000ACME", Password::new("X"));
    cfg.capabilities.buffer_size = 127;
    assert!(Session::initiator(cfg.clone(), Instant::now()).is_err());
    cfg.capabilities.buffer_size = 128;
    cfg.capabilities.credit = 0;
    assert!(Session::initiator(cfg.clone(), Instant::now()).is_err());
    cfg.capabilities.credit = 1;
    cfg.ssid_code = "bad*code".into();
    assert!(Session::initiator(cfg, Instant::now()).is_err());
}

// ---------- raw peer: abort reasons ----------

fn frame(cmd: &Command, level: ProtocolLevel) -> Vec<u8> {
    let mut out = Vec::new();
    sth::encode_frame(&cmd.to_bytes(level).unwrap(), &mut out).unwrap();
    out
}

fn raw_frame(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    sth::encode_frame(buf, &mut out).unwrap();
    out
}

fn commands(bytes: &[u8], level: ProtocolLevel) -> Vec<Command> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some((range, used)) = sth::decode_frame(rest).unwrap() {
        out.push(Command::decode(&rest[range], level).unwrap());
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    out
}

fn last_esid(s: &mut Session) -> EsidReason {
    let bytes = s.poll_transmit().expect("ESID sent");
    match commands(&bytes, s.level()).pop() {
        Some(Command::Esid(e)) => e.reason,
        other => panic!("expected ESID, got {other:?}"),
    }
}

fn peer_ssid(credit: u16, mode: SessionMode, buffer_size: u32) -> Ssid {
    Ssid {
        level: ProtocolLevel::V2_0,
        code: "O0013000000PEER".into(),
        password: Password::new("PW"),
        buffer_size,
        mode,
        compression: false,
        restart: true,
        special_logic: false,
        credit,
        secure_auth: false,
        user_data: String::new(),
    }
}

/// A responder that accepted a raw initiator; the SSRM and SSID are drained.
fn raw_responder(credit: u16) -> Session {
    let now = Instant::now();
    let mut r = Session::responder(ResponderConfig::default(), now);
    r.poll_transmit().unwrap();
    let l5 = ProtocolLevel::V2_0;
    r.handle_input(
        &frame(
            &Command::Ssid(peer_ssid(credit, SessionMode::Both, 128)),
            l5,
        ),
        now,
    );
    r.accept_session(responder_params(Capabilities {
        buffer_size: 128,
        credit,
        ..Capabilities::default()
    }))
    .unwrap();
    r.poll_transmit().unwrap();
    while r.poll_event().is_some() {}
    r
}

/// An initiator whose raw responder answered with `peer`.
fn raw_initiator(peer: Ssid) -> Session {
    let now = Instant::now();
    let mut cfg = InitiatorConfig::new("O0013000000ACME", Password::new("PW"));
    cfg.capabilities.buffer_size = 128;
    cfg.capabilities.credit = 2;
    let mut i = Session::initiator(cfg, now).unwrap();
    let l5 = ProtocolLevel::V2_0;
    i.handle_input(&frame(&Command::Ssrm(Ssrm), l5), now);
    i.poll_transmit().unwrap();
    i.handle_input(&frame(&Command::Ssid(peer), l5), now);
    i
}

#[test]
fn malformed_commands_get_the_right_esid() {
    let now = Instant::now();
    let cases: Vec<(Vec<u8>, EsidReason)> = vec![
        (raw_frame(b"Z"), EsidReason::COMMAND_NOT_RECOGNISED),
        (raw_frame(b"X5short\r"), EsidReason::BUFFER_SIZE_ERROR),
        (
            raw_frame(b"X5O0013000000ACME          SECRET  0409XBNNN064N            \r"),
            EsidReason::INVALID_DATA,
        ),
        (vec![0x10, 0x00, 0x00, 0x03], EsidReason::BUFFER_SIZE_ERROR),
        (vec![0x10, 0x0f, 0xff, 0xff], EsidReason::BUFFER_SIZE_ERROR),
        (
            vec![0x30, 0, 0, 5, b'R'],
            EsidReason::COMMAND_NOT_RECOGNISED,
        ),
        (raw_frame(b"R"), EsidReason::PROTOCOL_VIOLATION),
    ];
    for (input, reason) in cases {
        let mut r = Session::responder(ResponderConfig::default(), now);
        r.poll_transmit().unwrap();
        // One byte at a time: framing must cope.
        for b in &input {
            r.handle_input(std::slice::from_ref(b), now);
        }
        assert!(r.is_closed(), "{input:?}");
        assert_eq!(last_esid(&mut r), reason, "{input:?}");
        let mut ended = None;
        while let Some(e) = r.poll_event() {
            if let Event::SessionEnded {
                reason, by_peer, ..
            } = e
            {
                ended = Some((reason, by_peer));
            }
        }
        assert_eq!(ended, Some((reason, false)));
        // Input after the end is ignored, nothing more is sent.
        r.handle_input(&raw_frame(b"R"), now);
        assert!(r.poll_transmit().is_none());
    }
}

#[test]
fn out_of_turn_commands_are_protocol_violations() {
    let l5 = ProtocolLevel::V2_0;
    // The initiator is the speaker: an SFID from the responder is out of turn.
    let mut i = raw_initiator(peer_ssid(2, SessionMode::Both, 128));
    i.poll_transmit();
    i.handle_input(
        &frame(&Command::Sfid(sfid("X", FileFormat::Unstructured, 0)), l5),
        Instant::now(),
    );
    assert_eq!(last_esid(&mut i), EsidReason::PROTOCOL_VIOLATION);

    // The responder is the listener: CDT, EFID, RTR, SFPA are out of turn.
    for cmd in [
        Command::Cdt(Cdt),
        Command::Efid(Efid {
            record_count: 0,
            unit_count: 0,
        }),
        Command::Rtr(Rtr),
        Command::Sfpa(Sfpa { answer_count: 0 }),
        Command::Ssid(peer_ssid(2, SessionMode::Both, 128)),
    ] {
        let mut r = raw_responder(2);
        r.handle_input(&frame(&cmd, l5), Instant::now());
        assert_eq!(last_esid(&mut r), EsidReason::PROTOCOL_VIOLATION, "{cmd:?}");
    }
}

/// A responder answering with more credit than offered fails the SSID
/// negotiation (RFC 5024 9.8.3 P2 lists the window): ESID 10 (9.8.2 D "else";
/// RFC 2204 8.8.2 D for 1.x), at either revision.
#[test]
fn responder_credit_above_ours_fails_negotiation_with_esid_10() {
    let mut i = raw_initiator(peer_ssid(3, SessionMode::Both, 128));
    assert_eq!(last_esid(&mut i), EsidReason::MODE_INCOMPATIBLE);
    let mut v1 = peer_ssid(3, SessionMode::Both, 128);
    v1.level = ProtocolLevel::V1_4;
    let mut i = raw_initiator(v1);
    assert_eq!(i.poll_transmit(), Some(raw_frame(b"F10\r")));
    let mut i = raw_initiator(peer_ssid(2, SessionMode::Send, 128));
    assert!(!i.is_closed(), "S with B is compatible");
    assert!(i.poll_transmit().is_none());
}

#[test]
fn initiator_checks_expected_peer_identity() {
    let now = Instant::now();
    let l5 = ProtocolLevel::V2_0;
    for (code, pw, reason) in [
        ("O0013000000OTHER", "PW", EsidReason::USER_CODE_NOT_KNOWN),
        ("O0013000000PEER", "WRONG", EsidReason::INVALID_PASSWORD),
    ] {
        let mut cfg = InitiatorConfig::new("O0013000000ACME", Password::new("PW"));
        cfg.expected_peer_code = Some(code.into());
        cfg.expected_peer_password = Some(Password::new(pw));
        let mut i = Session::initiator(cfg, now).unwrap();
        i.handle_input(&frame(&Command::Ssrm(Ssrm), l5), now);
        i.poll_transmit().unwrap();
        i.handle_input(
            &frame(&Command::Ssid(peer_ssid(64, SessionMode::Both, 4096)), l5),
            now,
        );
        assert_eq!(last_esid(&mut i), reason);
    }
}

/// Responder with credit 1 in a file: returns it after SFID/SFPA.
fn receiving_responder(credit: u16) -> Session {
    let l5 = ProtocolLevel::V2_0;
    let mut r = raw_responder(credit);
    r.handle_input(
        &frame(&Command::Sfid(sfid("F", FileFormat::Unstructured, 0)), l5),
        Instant::now(),
    );
    r.accept_file(0).unwrap();
    r.poll_transmit().unwrap();
    r
}

#[test]
fn data_beyond_credit_is_esid_02() {
    let l5 = ProtocolLevel::V2_0;
    let data = frame(
        &Command::Data(Data {
            payload: vec![0x03, b'a', b'b', b'c'],
        }),
        l5,
    );
    // Two DATA in one read with credit 1: the second was sent before our CDT.
    let mut r = receiving_responder(1);
    let mut two = data.clone();
    two.extend_from_slice(&data);
    r.handle_input(&two, Instant::now());
    let bytes = r.poll_transmit().unwrap();
    let cmds = commands(&bytes, l5);
    assert!(matches!(cmds[0], Command::Cdt(_)), "{cmds:?}");
    assert!(matches!(&cmds[1], Command::Esid(e) if e.reason == EsidReason::PROTOCOL_VIOLATION));

    // The same DATA after our CDT left is fine.
    let mut r = receiving_responder(1);
    r.handle_input(&data, Instant::now());
    let cmds = commands(&r.poll_transmit().unwrap(), l5);
    assert!(matches!(cmds[..], [Command::Cdt(_)]));
    r.handle_input(&data, Instant::now());
    assert!(!r.is_closed());
}

#[test]
fn oversized_and_malformed_data_buffers() {
    let l5 = ProtocolLevel::V2_0;
    let mut r = receiving_responder(5);
    let mut payload = vec![0x3f];
    payload.extend(std::iter::repeat_n(b'x', 63));
    payload.push(0x3f);
    payload.extend(std::iter::repeat_n(b'y', 63));
    // 1 + 128 octets > the negotiated 128.
    r.handle_input(&frame(&Command::Data(Data { payload }), l5), Instant::now());
    assert_eq!(last_esid(&mut r), EsidReason::BUFFER_SIZE_ERROR);

    let mut r = receiving_responder(5);
    r.handle_input(
        &frame(
            &Command::Data(Data {
                payload: vec![0x05, 1],
            }),
            l5,
        ),
        Instant::now(),
    );
    assert_eq!(last_esid(&mut r), EsidReason::INVALID_DATA);
}

#[test]
fn cdt_with_credit_left_is_esid_02() {
    let l5 = ProtocolLevel::V2_0;
    let mut i = raw_initiator(peer_ssid(2, SessionMode::Both, 128));
    assert!(i.poll_transmit().is_none());
    i.send_file(sfid("F", FileFormat::Unstructured, 0)).unwrap();
    i.poll_transmit().unwrap();
    i.handle_input(
        &frame(&Command::Sfpa(Sfpa { answer_count: 0 }), l5),
        Instant::now(),
    );
    // One buffer's worth of data: one DATA sent, one credit left.
    i.write_data(&[b'z'; 200], false).unwrap();
    let sent = commands(&i.poll_transmit().unwrap(), l5);
    assert_eq!(sent.len(), 1);
    i.handle_input(&frame(&Command::Cdt(Cdt), l5), Instant::now());
    assert_eq!(last_esid(&mut i), EsidReason::PROTOCOL_VIOLATION);
}

#[test]
fn sender_waits_for_credit_before_more_data_and_efid() {
    let l5 = ProtocolLevel::V2_0;
    let mut i = raw_initiator(peer_ssid(2, SessionMode::Both, 128));
    i.send_file(sfid("F", FileFormat::Unstructured, 0)).unwrap();
    i.poll_transmit().unwrap();
    i.handle_input(
        &frame(&Command::Sfpa(Sfpa { answer_count: 0 }), l5),
        Instant::now(),
    );
    let data = pseudo_random(1000, 3);
    i.write_data(&data, false).unwrap();
    assert!(!i.can_accept_data());
    i.finish_file(0, 1000).unwrap();
    // Credit 2: exactly two DATA, no EFID yet.
    let sent = commands(&i.poll_transmit().unwrap(), l5);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|c| matches!(c, Command::Data(_))));
    let mut got = Vec::new();
    let mut all = sent;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 100);
        i.handle_input(&frame(&Command::Cdt(Cdt), l5), Instant::now());
        let more = commands(&i.poll_transmit().unwrap(), l5);
        let done = more.iter().any(|c| matches!(c, Command::Efid(_)));
        all.extend(more);
        if done {
            break;
        }
    }
    for c in &all {
        if let Command::Data(d) = c {
            assert!(d.payload.len() < 128);
            for p in parse_data_payload(&d.payload).unwrap() {
                got.extend_from_slice(&p.bytes);
            }
        }
    }
    assert_eq!(got, data);
    assert!(matches!(all.last(), Some(Command::Efid(e)) if e.unit_count == 1000));
}

#[test]
fn sfpa_above_the_asked_restart_is_esid_02() {
    let l5 = ProtocolLevel::V2_0;
    let mut i = raw_initiator(peer_ssid(2, SessionMode::Both, 128));
    let mut s = sfid("F", FileFormat::Unstructured, 0);
    s.restart_position = 4;
    i.send_file(s).unwrap();
    i.poll_transmit().unwrap();
    i.handle_input(
        &frame(&Command::Sfpa(Sfpa { answer_count: 5 }), l5),
        Instant::now(),
    );
    assert_eq!(last_esid(&mut i), EsidReason::PROTOCOL_VIOLATION);
}

#[test]
fn cd_after_our_unsolicited_cd_is_esid_02() {
    let l5 = ProtocolLevel::V2_0;
    let mut i = raw_initiator(peer_ssid(2, SessionMode::Both, 128));
    i.change_direction().unwrap();
    i.poll_transmit().unwrap();
    i.handle_input(&frame(&Command::Cd(Cd), l5), Instant::now());
    assert_eq!(last_esid(&mut i), EsidReason::PROTOCOL_VIOLATION);
}

#[test]
fn inactivity_timeout_is_esid_09() {
    let start = Instant::now();
    let mut cfg = InitiatorConfig::new("O0013000000ACME", Password::new("PW"));
    cfg.inactivity_timeout = Duration::from_secs(30);
    let mut i = Session::initiator(cfg, start).unwrap();
    assert_eq!(i.poll_timeout(), Some(start + Duration::from_secs(30)));
    i.handle_timeout(start + Duration::from_secs(29));
    assert!(!i.is_closed());
    // Activity pushes the deadline.
    let t = start + Duration::from_secs(29);
    i.handle_input(&frame(&Command::Ssrm(Ssrm), ProtocolLevel::V2_0), t);
    i.poll_transmit().unwrap();
    assert_eq!(i.poll_timeout(), Some(t + Duration::from_secs(30)));
    i.handle_timeout(t + Duration::from_secs(30));
    assert!(i.is_closed());
    assert_eq!(last_esid(&mut i), EsidReason::TIME_OUT);
    assert_eq!(i.poll_timeout(), None);

    // A pair where the responder's application never answers the SSID: the
    // initiator times out, the responder (waiting on its application) does not.
    let mut p = Pair::connect(Capabilities::default(), false);
    assert_eq!(p.r.poll_timeout(), None);
    let d = p.i.poll_timeout().unwrap();
    p.i.handle_timeout(d);
    p.drive();
    assert_eq!(p.ended(Side::I), (EsidReason::TIME_OUT, false));
    assert_eq!(p.ended(Side::R), (EsidReason::TIME_OUT, true));
}

#[test]
fn transport_closed_without_esid() {
    let mut p = Pair::new(Capabilities::default(), Capabilities::default(), false);
    p.r.handle_transport_closed(Instant::now());
    p.collect();
    let (reason, by_peer) = p.ended(Side::R);
    assert_eq!(reason, EsidReason::UNSPECIFIED);
    assert!(by_peer);
    p.r.handle_transport_closed(Instant::now());
    p.collect();
    assert!(!p.has(Side::R, |e| matches!(e, Event::SessionEnded { .. })));
}

#[test]
fn v1_peer_esid_without_cr_is_understood() {
    let now = Instant::now();
    let mut i = Session::initiator(
        InitiatorConfig::new("O0013000000ACME", Password::new("PW")),
        now,
    )
    .unwrap();
    i.handle_input(&frame(&Command::Ssrm(Ssrm), ProtocolLevel::V1_2), now);
    i.poll_transmit().unwrap();
    i.handle_input(&raw_frame(b"F04"), now);
    let mut ended = None;
    while let Some(e) = i.poll_event() {
        if let Event::SessionEnded {
            reason, by_peer, ..
        } = e
        {
            ended = Some((reason, by_peer));
        }
    }
    assert_eq!(ended, Some((EsidReason::INVALID_PASSWORD, true)));
    assert!(i.poll_transmit().is_none(), "no ESID answers an ESID");
}

#[test]
fn audit_trail_reports_commands_without_secrets() {
    let mut p = Pair::new(Capabilities::default(), Capabilities::default(), false);
    let sent: Vec<String> = p
        .ev_i
        .iter()
        .filter_map(|e| match e {
            Event::CommandSent { summary, .. } => Some(summary.clone()),
            _ => None,
        })
        .collect();
    assert!(sent.iter().any(|s| s.starts_with("SSID")), "{sent:?}");
    assert!(sent.iter().all(|s| !s.contains("ISECRET")));
    assert!(p.has(Side::I, |e| matches!(
        e,
        Event::CommandReceived { name: "SSRM", .. }
    )));
}

#[test]
fn ready_for_data_is_reported_when_credit_returns() {
    let l5 = ProtocolLevel::V2_0;
    let mut i = raw_initiator(peer_ssid(2, SessionMode::Both, 128));
    i.send_file(sfid("F", FileFormat::Unstructured, 0)).unwrap();
    i.poll_transmit().unwrap();
    i.handle_input(
        &frame(&Command::Sfpa(Sfpa { answer_count: 0 }), l5),
        Instant::now(),
    );
    while i.poll_event().is_some() {}
    // Writes while credit lasts report nothing.
    i.write_data(&pseudo_random(100, 1), false).unwrap();
    assert!(i.can_accept_data());
    i.write_data(&pseudo_random(400, 2), false).unwrap();
    assert!(!i.can_accept_data(), "credit spent and a buffer waits");
    let events: Vec<Event> = std::iter::from_fn(|| i.poll_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(e, Event::ReadyForData)),
        "{events:?}"
    );
    i.poll_transmit().unwrap();
    // CDT: the waiting buffers go out; once none wait, writing may go on.
    let mut rounds = 0;
    while !i.can_accept_data() {
        rounds += 1;
        assert!(rounds < 10);
        i.handle_input(&frame(&Command::Cdt(Cdt), l5), Instant::now());
        i.poll_transmit().unwrap();
    }
    let events: Vec<Event> = std::iter::from_fn(|| i.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e, Event::ReadyForData)),
        "{events:?}"
    );
}

#[test]
fn record_length_must_suit_the_format() {
    let mut p = Pair::new(Capabilities::default(), Capabilities::default(), false);
    for (format, lrecl) in [
        (FileFormat::Unstructured, 80),
        (FileFormat::Text, 1),
        (FileFormat::Fixed, 0),
        (FileFormat::Variable, 0),
    ] {
        assert!(
            matches!(
                p.i.send_file(sfid("X", format, lrecl)),
                Err(UsageError::NotAllowed(_))
            ),
            "{format:?} {lrecl}"
        );
    }
    assert!(p.i.poll_transmit().is_none());
    assert!(p.i.send_file(sfid("X", FileFormat::Fixed, 80)).is_ok());
}

#[test]
fn fixed_record_of_wrong_length_is_reported_to_the_receiver() {
    let l5 = ProtocolLevel::V2_0;
    let mut r = raw_responder(4);
    r.handle_input(
        &frame(&Command::Sfid(sfid("F", FileFormat::Fixed, 4)), l5),
        Instant::now(),
    );
    r.accept_file(0).unwrap();
    r.poll_transmit().unwrap();
    // One good record of 4, then a short one of 2.
    let payload = vec![0x84, b'a', b'b', b'c', b'd', 0x82, b'e', b'f'];
    r.handle_input(&frame(&Command::Data(Data { payload }), l5), Instant::now());
    r.handle_input(
        &frame(
            &Command::Efid(Efid {
                record_count: 2,
                unit_count: 6,
            }),
            l5,
        ),
        Instant::now(),
    );
    let ended = std::iter::from_fn(|| r.poll_event())
        .find_map(|e| match e {
            Event::FileEnded {
                received_records,
                record_length_violation,
                ..
            } => Some((received_records, record_length_violation)),
            _ => None,
        })
        .expect("FileEnded");
    assert_eq!(ended.0, 2);
    assert!(matches!(
        ended.1,
        Some(oftp_proto::data::DataError::ShortFixedRecord { len: 2, lrecl: 4 })
    ));
    r.refuse_file(EfnaReason::RECORD_LENGTH_NOT_SUPPORTED, "short record")
        .unwrap();
    let cmds = commands(&r.poll_transmit().unwrap(), l5);
    assert!(
        matches!(&cmds[..], [Command::Efna(e)] if e.reason == EfnaReason::RECORD_LENGTH_NOT_SUPPORTED)
    );
}

// ---------- conformance review findings ----------

/// RFC 5024 4.7.2 and 9.10.2 M (action 2): the speaker starts the inactivity
/// timer when it sends DATA; once its credit is used up it waits for the
/// listener's CDT, so a silent listener must time out (ESID 09) instead of
/// hanging the session forever.
#[test]
fn speaker_waiting_for_credit_after_write_data_times_out() {
    let l5 = ProtocolLevel::V2_0;
    let now = Instant::now();
    let mut i = raw_initiator(peer_ssid(2, SessionMode::Both, 128));
    i.send_file(sfid("F", FileFormat::Unstructured, 0)).unwrap();
    i.poll_transmit().unwrap();
    i.handle_input(&frame(&Command::Sfpa(Sfpa { answer_count: 0 }), l5), now);
    // Credit 2, buffers of 128: 1000 octets use it all up.
    i.write_data(&pseudo_random(1000, 9), false).unwrap();
    assert!(!i.can_accept_data());
    let sent = commands(&i.poll_transmit().unwrap(), l5);
    assert_eq!(sent.len(), 2);
    let deadline = i
        .poll_timeout()
        .expect("an inactivity deadline while waiting for CDT");
    i.handle_timeout(deadline);
    assert_eq!(last_esid(&mut i), EsidReason::TIME_OUT);
}

/// A timeout too large for `Instant` (e.g. `Duration::MAX` for "never") must
/// not panic; it means no deadline.
#[test]
fn huge_inactivity_timeout_does_not_panic() {
    let now = Instant::now();
    let mut cfg = InitiatorConfig::new("O0013000000ACME", Password::new("PW"));
    cfg.inactivity_timeout = Duration::MAX;
    let mut i = Session::initiator(cfg, now).unwrap();
    assert_eq!(i.poll_timeout(), None);
    i.handle_input(&frame(&Command::Ssrm(Ssrm), ProtocolLevel::V2_0), now);
    assert!(i.poll_transmit().is_some());
    let r = Session::responder(
        ResponderConfig {
            inactivity_timeout: Duration::MAX,
        },
        now,
    );
    assert_eq!(r.poll_timeout(), None);
}

/// RFC 2204 5.3.11: a 1.x partner expects ESID as 'F' + reason + CR. When the
/// initiator (able to do 2.0) refuses a 1.4 responder's SSID, its ESID must
/// use the negotiated (lower) level's layout, not 2.0's.
#[test]
fn initiator_refusing_a_v1_responder_sends_a_v1_esid() {
    let now = Instant::now();
    let mut cfg = InitiatorConfig::new("O0013000000ACME", Password::new("PW"));
    cfg.capabilities.mode = SessionMode::Send;
    let mut i = Session::initiator(cfg, now).unwrap();
    i.handle_input(&frame(&Command::Ssrm(Ssrm), ProtocolLevel::V2_0), now);
    i.poll_transmit().unwrap();
    let mut peer = peer_ssid(64, SessionMode::Send, 4096);
    peer.level = ProtocolLevel::V1_4;
    i.handle_input(&frame(&Command::Ssid(peer), ProtocolLevel::V1_4), now);
    assert!(i.is_closed());
    let bytes = i.poll_transmit().expect("ESID");
    assert_eq!(bytes, raw_frame(b"F10\r"));
}

/// RFC 5024 9.8.2 G: a responder that requires secure authentication and
/// meets an initiator that does not offer it (here a 1.4 initiator, which
/// cannot) ends the session with ESID 12; `accept_session` reports this by
/// events, not by failing to encode its own SSID.
#[test]
fn responder_requiring_auth_ends_a_v1_session_with_esid_12() {
    let now = Instant::now();
    let mut r = Session::responder(ResponderConfig::default(), now);
    r.poll_transmit().unwrap();
    let mut peer = peer_ssid(64, SessionMode::Both, 4096);
    peer.level = ProtocolLevel::V1_4;
    r.handle_input(&frame(&Command::Ssid(peer), ProtocolLevel::V1_4), now);
    while r.poll_event().is_some() {}
    r.accept_session(responder_params(Capabilities {
        secure_auth: true,
        ..Capabilities::default()
    }))
    .expect("a negotiation failure is not a usage error");
    assert!(r.is_closed());
    let bytes = r.poll_transmit().expect("ESID");
    assert_eq!(bytes, raw_frame(b"F12\r"));
}

/// More data written while the speaker already waits for CDT is not
/// activity of the peer: it must not push the inactivity deadline.
#[test]
fn writing_while_waiting_for_credit_keeps_the_deadline() {
    let l5 = ProtocolLevel::V2_0;
    let now = Instant::now();
    let mut i = raw_initiator(peer_ssid(2, SessionMode::Both, 128));
    i.send_file(sfid("F", FileFormat::Unstructured, 0)).unwrap();
    i.poll_transmit().unwrap();
    i.handle_input(&frame(&Command::Sfpa(Sfpa { answer_count: 0 }), l5), now);
    i.write_data(&pseudo_random(1000, 9), false).unwrap();
    let deadline = i.poll_timeout().expect("waiting for CDT");
    // The runtime checks the clock early; the application keeps writing.
    i.handle_timeout(deadline - Duration::from_secs(1));
    i.write_data(b"more", false).unwrap();
    i.finish_file(0, 1004).unwrap();
    assert_eq!(i.poll_timeout(), Some(deadline));
    i.handle_timeout(deadline);
    assert!(i.is_closed());
}

// ---------- transmit and input variants (zero-copy paths) ----------

/// How the receiver's runtime hands over what it read.
#[derive(Clone, Copy, Debug)]
enum Input {
    /// `handle_input` with its own buffer.
    Slices,
    /// `read_buffer` + `commit_read`.
    Direct,
    /// Both, alternately.
    Mixed,
}

/// How the sender's runtime takes its frames.
#[derive(Clone, Copy, Debug)]
enum Drain {
    Whole,
    Into,
    Frames,
}

/// Sends `data` as a U file from I to R with the sender draining by `drain`
/// and the receiver reading in pieces of the sizes in `reads` (cycled), then
/// returns what R received. Every frame handed out alone must be exactly one
/// well-formed frame.
fn transfer_with(
    data: &[u8],
    ic: Capabilities,
    drain: Drain,
    input: Input,
    reads: &[usize],
) -> Vec<u8> {
    let small_frames = ic.buffer_size <= 4096;
    let mut p = Pair::new(ic.clone(), ic, false);
    p.i.send_file(sfid("ZEROCOPY", FileFormat::Unstructured, 0))
        .unwrap();
    p.drive();
    p.r.accept_file(0).unwrap();
    p.drive();
    p.ev_i.clear();
    p.ev_r.clear();
    let mut wire: Vec<u8> = Vec::new();
    let mut sent = 0;
    let mut out = Vec::new();
    let mut received = Vec::new();
    let mut read_k = 0;
    let mut finished = false;
    for _ in 0..100_000 {
        while sent < data.len() && p.i.can_accept_data() {
            let n = 10_000.min(data.len() - sent);
            p.i.write_data(&data[sent..sent + n], false).unwrap();
            sent += n;
        }
        if sent == data.len() && !finished && p.i.can_accept_data() {
            p.i.finish_file(0, data.len() as u64).unwrap();
            finished = true;
        }
        match drain {
            Drain::Whole => {
                if let Some(b) = p.i.poll_transmit() {
                    wire.extend_from_slice(&b);
                }
            }
            Drain::Into => {
                // A runtime's reused buffer that still holds a previous write.
                out.clear();
                out.push(0xEE);
                let n = p.i.poll_transmit_into(&mut out);
                assert_eq!(n, out.len() - 1);
                wire.extend_from_slice(&out[1..]);
            }
            Drain::Frames => {
                while let Some(frame) = p.i.poll_transmit_frame() {
                    let (_, used) = sth::decode_frame(&frame).unwrap().unwrap();
                    assert_eq!(used, frame.len(), "one frame per poll_transmit_frame");
                    wire.extend_from_slice(&frame);
                }
            }
        }
        assert!(!p.i.has_transmit());
        let mut at = 0;
        while at < wire.len() {
            let n = reads[read_k % reads.len()].min(wire.len() - at);
            read_k += 1;
            let direct = match input {
                Input::Slices => false,
                Input::Direct => true,
                Input::Mixed => read_k % 2 == 0,
            };
            if direct {
                let space = p.r.read_buffer();
                assert!(space.len() >= 8 * 1024);
                // Small frames keep the first 16 KiB; large ones grow it by one frame at most.
                let bound = if small_frames {
                    16 * 1024
                } else {
                    sth::MAX_FRAME_LEN + 128 * 1024
                };
                assert!(space.len() <= bound, "read buffer of {}", space.len());
                let n = n.min(space.len());
                space[..n].copy_from_slice(&wire[at..at + n]);
                p.r.commit_read(n, p.now);
                at += n;
            } else {
                p.r.handle_input(&wire[at..at + n], p.now);
                at += n;
            }
        }
        wire.clear();
        while let Some(e) = p.r.poll_event() {
            match e {
                Event::DataReceived { bytes, .. } => received.extend_from_slice(&bytes),
                Event::FileEnded { .. } => return received,
                Event::SessionEnded { reason, text, .. } => panic!("ended: {reason} {text}"),
                _ => {}
            }
        }
        if let Some(back) = p.r.poll_transmit() {
            p.i.handle_input(&back, p.now);
        }
        while p.i.poll_event().is_some() {}
    }
    panic!("transfer did not finish");
}

#[test]
fn transmit_variants_and_cut_input_deliver_the_same_bytes() {
    let data = pseudo_random(300_000, 7);
    for (buffer_size, credit) in [(128, 1), (4096, 3), (99_999, 2)] {
        for compression in [false, true] {
            let ic = Capabilities {
                buffer_size,
                credit,
                compression,
                ..caps(ProtocolLevel::V2_0)
            };
            for (drain, input) in [
                (Drain::Whole, Input::Slices),
                (Drain::Into, Input::Direct),
                (Drain::Frames, Input::Mixed),
                (Drain::Whole, Input::Direct),
            ] {
                // Reads that cut headers and bodies everywhere, and large ones.
                for reads in [
                    &[1usize, 2, 3, 5][..],
                    &[4, 4099, 65_536],
                    &[100_003, 7, 99_000],
                    &[1_000_000],
                ] {
                    let got = transfer_with(&data, ic.clone(), drain, input, reads);
                    assert!(
                        got == data,
                        "{buffer_size}/{credit} compression {compression} {drain:?} {input:?} reads {reads:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn poll_transmit_into_an_empty_vec_and_frame_by_frame() {
    let now = Instant::now();
    let mut r = Session::responder(ResponderConfig::default(), now);
    assert!(r.has_transmit());
    let mut out = Vec::new();
    let n = r.poll_transmit_into(&mut out);
    assert_eq!(n, out.len());
    assert_eq!(&out[..4], &[0x10, 0x00, 0x00, 0x17]);
    assert_eq!(&out[4..], b"IODETTE FTP READY \r");
    assert_eq!(r.poll_transmit_into(&mut out), 0);
    assert!(r.poll_transmit_frame().is_none() && r.poll_transmit().is_none());
}

#[test]
fn malformed_header_split_across_inputs_is_detected() {
    let now = Instant::now();
    let mut r = Session::responder(ResponderConfig::default(), now);
    r.poll_transmit();
    // A valid first octet, then a length of 3 (below the minimum) in the next read.
    r.handle_input(&[0x10, 0x00], now);
    assert!(!r.is_closed());
    r.handle_input(&[0x00, 0x03, b'X'], now);
    assert!(r.is_closed());
    let esid = r.poll_transmit().unwrap();
    let (range, _) = sth::decode_frame(&esid).unwrap().unwrap();
    match Command::decode(&esid[range], ProtocolLevel::V2_0).unwrap() {
        Command::Esid(e) => assert_eq!(e.reason, EsidReason::BUFFER_SIZE_ERROR),
        other => panic!("expected ESID, got {other:?}"),
    }
}

#[test]
fn commit_read_reports_a_malformed_header_and_frees_the_buffer() {
    let now = Instant::now();
    let mut r = Session::responder(ResponderConfig::default(), now);
    r.poll_transmit();
    let space = r.read_buffer();
    assert!(space.len() >= 8 * 1024);
    space[..5].copy_from_slice(&[0x20, 0, 0, 5, b'X']);
    r.commit_read(5, now);
    assert!(r.is_closed());
    let esid = r.poll_transmit().unwrap();
    let (range, _) = sth::decode_frame(&esid).unwrap().unwrap();
    match Command::decode(&esid[range], ProtocolLevel::V2_0).unwrap() {
        Command::Esid(e) => assert_eq!(e.reason, EsidReason::COMMAND_NOT_RECOGNISED),
        other => panic!("expected ESID, got {other:?}"),
    }
    // Input after the end is ignored.
    r.commit_read(usize::MAX, now);
    assert!(r.poll_transmit().is_none());
}

/// The receiver's read buffer (one per connection on a server) is 16 KiB and
/// stays so with the RFC's default 4096-octet buffers, however reads cut the
/// frames (reads of at least 8 KiB behind a cut frame; an earlier 16 KiB start
/// with 16 KiB reads grew at the first cut frame, and 24 KiB kept 1,000
/// sessions over 64 MiB).
#[test]
fn read_buffer_stays_small_with_default_buffer_size() {
    let ic = Capabilities {
        buffer_size: 4096,
        credit: 64,
        ..caps(ProtocolLevel::V2_0)
    };
    let mut p = Pair::new(ic.clone(), ic, false);
    p.i.send_file(sfid("SMALLBUF", FileFormat::Unstructured, 0))
        .unwrap();
    p.drive();
    p.r.accept_file(0).unwrap();
    p.drive();
    let data = pseudo_random(200_000, 3);
    let mut sent = 0;
    while sent < data.len() && p.i.can_accept_data() {
        let n = 10_000.min(data.len() - sent);
        p.i.write_data(&data[sent..sent + n], false).unwrap();
        sent += n;
    }
    let mut wire = Vec::new();
    while let Some(b) = p.i.poll_transmit() {
        wire.extend_from_slice(&b);
    }
    assert_eq!(p.r.read_buffer().len(), 16 * 1024, "first read buffer");
    // Short reads and reads that fill the buffer, cutting frames anywhere.
    let mut at = 0;
    for k in 0.. {
        let space = p.r.read_buffer();
        assert!(space.len() >= 8 * 1024);
        assert!(space.len() <= 16 * 1024, "read buffer of {}", space.len());
        let n = if k % 2 == 0 { 1000 } else { space.len() }.min(wire.len() - at);
        if n == 0 {
            break;
        }
        space[..n].copy_from_slice(&wire[at..at + n]);
        p.r.commit_read(n, p.now);
        at += n;
    }
    let mut received = Vec::new();
    while let Some(e) = p.r.poll_event() {
        match e {
            Event::DataReceived { bytes, .. } => received.extend_from_slice(&bytes),
            Event::SessionEnded { reason, text, .. } => panic!("ended: {reason} {text}"),
            _ => {}
        }
    }
    assert!(received.len() > 100_000);
    assert_eq!(received[..], data[..received.len()]);
}
