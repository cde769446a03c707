//! A scripted OFTP responder on 127.0.0.1 that answers each offered file as a test says (an
//! ESID at the offer, an SFNA, a transfer cut, an EFNA, a NERP, no end response), which a
//! real `oftp serve` does not do on demand, and records the SFIDs it was offered exactly as
//! they arrived. It speaks just enough OFTP for one session, with the oftp-proto codec at the
//! level it agrees (the RFC 2204 layouts below 5): SSRM, SSID, then the files, then its turn
//! for the end responses, then CD.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oftp_proto::codec::{
    Cd, Cdt, Command, Eerp, Efna, EfnaReason, Efpa, Esid, EsidReason, Nerp, NerpReason, Password,
    ProtocolLevel, SessionMode, Sfid, Sfna, SfnaReason, Sfpa, Ssid, Ssrm,
};
use oftp_proto::sth;

/// The scripted partner's SSID code and password.
pub(crate) const SSID: &str = "O0013SCRIPTED";
pub(crate) const PASSWORD: &str = "SCRIPTPW";

/// How the scripted partner answers one offered file.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answer {
    /// SFNA with this reason; `retry` is SFNARRTR.
    Sfna { reason: u8, retry: bool },
    /// An ESID with this reason instead of an answer to the SFID.
    EsidAtOffer(u8),
    /// SFPA, then the connection closes at the first DATA.
    CutInData,
    /// SFPA, then the connection closes when the EFID arrives.
    CutAtEfid,
    /// SFPA, then EFNA with this reason after the EFID.
    Efna(u8),
    /// SFPA, EFPA, and an EERP at the partner's turn.
    Eerp,
    /// SFPA, EFPA, and a NERP with this reason at the partner's turn.
    Nerp(u8),
    /// SFPA, EFPA, and no end response.
    NoEndResponse,
}

/// A running scripted partner (one session).
pub(crate) struct Scripted {
    pub(crate) port: u16,
    thread: JoinHandle<Vec<Sfid>>,
}

impl Scripted {
    /// Listens on a loopback port for one session at most at `level`; the files offered get
    /// `answers` in order (an EERP for any beyond them).
    pub(crate) fn start(level: u8, answers: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let Some(stream) = accept_within(&listener, Duration::from_secs(60)) else {
                return Vec::new();
            };
            session(stream, level, answers)
        });
        Self { port, thread }
    }

    /// The SFIDs offered in the session, once it is over.
    pub(crate) fn offered(self) -> Vec<Sfid> {
        self.thread.join().unwrap()
    }
}

fn accept_within(listener: &TcpListener, limit: Duration) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                return Some(s);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

fn read_command(s: &mut TcpStream, level: u8) -> Option<Command> {
    let mut header = [0u8; sth::HEADER_LEN];
    s.read_exact(&mut header).ok()?;
    let len = sth::frame_length(&header).ok()??;
    let mut buf = vec![0u8; len - sth::HEADER_LEN];
    s.read_exact(&mut buf).ok()?;
    Some(Command::decode(&buf, ProtocolLevel(level)).unwrap())
}

fn send(s: &mut TcpStream, level: u8, cmd: Command) {
    let mut frame = Vec::new();
    sth::encode_frame(&cmd.to_bytes(ProtocolLevel(level)).unwrap(), &mut frame).unwrap();
    let _ = s.write_all(&frame);
}

fn session(mut s: TcpStream, our_level: u8, answers: Vec<Answer>) -> Vec<Sfid> {
    let mut offered = Vec::new();
    send(&mut s, our_level, Command::Ssrm(Ssrm));
    let Some(Command::Ssid(peer)) = read_command(&mut s, our_level) else {
        return offered;
    };
    let level = peer.level.0.min(our_level);
    let credit = peer.credit;
    let ssid = Ssid {
        level: ProtocolLevel(level),
        code: SSID.into(),
        password: Password::new(PASSWORD),
        buffer_size: peer.buffer_size,
        mode: SessionMode::Both,
        compression: false,
        restart: false,
        special_logic: false,
        credit,
        secure_auth: false,
        user_data: String::new(),
    };
    send(&mut s, level, Command::Ssid(ssid));
    let mut answers = answers.into_iter();
    let mut current: Option<(Sfid, Answer)> = None;
    let mut end_responses: Vec<(Sfid, Answer)> = Vec::new();
    let mut data_since_credit = 0u16;
    while let Some(cmd) = read_command(&mut s, level) {
        match cmd {
            Command::Sfid(sfid) => {
                offered.push(sfid.clone());
                match answers.next().unwrap_or(Answer::Eerp) {
                    Answer::Sfna { reason, retry } => {
                        let sfna = Sfna {
                            reason: SfnaReason(reason),
                            retry,
                            text: "scripted refusal".into(),
                        };
                        send(&mut s, level, Command::Sfna(sfna));
                    }
                    Answer::EsidAtOffer(reason) => {
                        let esid = Esid {
                            reason: EsidReason(reason),
                            text: String::new(),
                        };
                        send(&mut s, level, Command::Esid(esid));
                        break;
                    }
                    answer => {
                        send(&mut s, level, Command::Sfpa(Sfpa { answer_count: 0 }));
                        data_since_credit = 0;
                        current = Some((sfid, answer));
                    }
                }
            }
            Command::Data(_) => {
                if matches!(current, Some((_, Answer::CutInData))) {
                    break;
                }
                data_since_credit += 1;
                if data_since_credit == credit {
                    data_since_credit = 0;
                    send(&mut s, level, Command::Cdt(Cdt));
                }
            }
            Command::Efid(_) => match current.take() {
                Some((_, Answer::CutAtEfid)) | None => break,
                Some((_, Answer::Efna(reason))) => {
                    let efna = Efna {
                        reason: EfnaReason(reason),
                        text: String::new(),
                    };
                    send(&mut s, level, Command::Efna(efna));
                }
                Some((sfid, answer)) => {
                    send(
                        &mut s,
                        level,
                        Command::Efpa(Efpa {
                            change_direction: false,
                        }),
                    );
                    end_responses.push((sfid, answer));
                }
            },
            Command::Cd(_) => {
                for (sfid, answer) in end_responses.drain(..) {
                    let response = match answer {
                        Answer::Eerp => Command::Eerp(Eerp {
                            dsn: sfid.dsn,
                            date_time: sfid.date_time,
                            user_data: sfid.user_data,
                            destination: sfid.originator,
                            originator: sfid.destination,
                            hash: Vec::new(),
                            signature: Vec::new(),
                        }),
                        Answer::Nerp(reason) => Command::Nerp(Nerp {
                            dsn: sfid.dsn,
                            date_time: sfid.date_time,
                            destination: sfid.originator,
                            creator: sfid.destination.clone(),
                            originator: sfid.destination,
                            reason: NerpReason(reason),
                            text: "scripted".into(),
                            hash: Vec::new(),
                            signature: Vec::new(),
                        }),
                        _ => continue,
                    };
                    send(&mut s, level, response);
                    if !matches!(read_command(&mut s, level), Some(Command::Rtr(_))) {
                        return offered;
                    }
                }
                send(&mut s, level, Command::Cd(Cd));
            }
            Command::Esid(_) => break,
            _ => {}
        }
    }
    offered
}
