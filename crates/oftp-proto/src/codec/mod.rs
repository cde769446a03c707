//! ODETTE-FTP command exchange buffers: typed commands, decode and encode.
//!
//! One struct per command (RFC 5024 section 5.3), gathered in [`Command`].
//! [`Command::decode`] takes one exchange buffer (the payload of an STH frame,
//! see [`crate::sth`]) and the session's protocol level; [`Command::encode`]
//! appends one. The structs and the dispatch are here; the layouts of the
//! commands that differ per level (SSID, SFID, ESID, EERP, NERP) are in
//! `layouts`, the field readers and writers in `fields`.
//!
//! # Layouts per level
//!
//! Level 5 (2.0) uses the RFC 5024 tables. Levels 1 and 2 (revisions 1.2 and
//! 1.3) use the RFC 2204 tables: 6-digit dates, 9-digit restart counts, no
//! security fields, no reason texts, ESID as `F` + reason + CR, no NERP.
//!
//! Level 4 (revision 1.4) has no RFC of its own. RFC 5024 1.2 lists what 1.4
//! added to 1.3: the Negative End Response (NERP), the Extended Date and Time
//! stamp and SFNA reason 14. Everything else in its list (file services,
//! signed EERP/NERP, 9 PB file sizes, the description, extended error codes,
//! i.e. the reason texts) is 2.0's. So level 4 is RFC 2204 with the 2.0
//! stamp fields, at the positions the RFC 5024 tables give them:
//!
//! ```text
//! SFID (128 octets)         EERP (106 octets)         NERP (128 octets)
//!   0 SFIDCMD   X(1)          0 EERPCMD   X(1)          0 NERPCMD   X(1)
//!   1 SFIDDSN   X(26)         1 EERPDSN   X(26)         1 NERPDSN   X(26)
//!  27 SFIDRSV1  X(3)         27 EERPRSV1  X(3)         27 NERPRSV1  X(6)
//!  30 SFIDDATE  9(8)         30 EERPDATE  9(8)         33 NERPDATE  9(8)
//!  38 SFIDTIME  9(10)        38 EERPTIME  9(10)        41 NERPTIME  9(10)
//!  48 SFIDUSER  X(8)         48 EERPUSER  X(8)         51 NERPDEST  X(25)
//!  56 SFIDDEST  X(25)        56 EERPDEST  X(25)        76 NERPORIG  X(25)
//!  81 SFIDORIG  X(25)        81 EERPORIG  X(25)       101 NERPCREA  X(25)
//! 106 SFIDFMT   X(1)                                  126 NERPREAS  9(2)
//! 107 SFIDLRECL 9(5)
//! 112 SFIDFSIZ  9(7)
//! 119 SFIDREST  9(9)
//! ```
//!
//! SFID and EERP: RFC 2204 has `RSV1 X(9)` + `DATE X(6)` + `TIME X(6)` from
//! position 27 to 48; RFC 5024 has `RSV1 X(3)` + `DATE 9(8)` + `TIME 9(10)`
//! over the same 21 octets, so the 1.4 stamp fits without moving any other
//! field and the commands keep their RFC 2204 length; SFIDFSIZ 9(7) and
//! SFIDREST 9(9) stay (the 9(13)/9(17) sizes and SFIDOSIZ..SFIDDESC are 2.0's
//! file-size and file-service additions), and the EERP ends after EERPORIG
//! (EERPHSHL..EERPSIG are the 2.0 signed receipt). NERP: the RFC 5024 table up
//! to NERPREAS; NERPREASL/NERPREAST (reason text) and NERPHSHL..NERPSIG
//! (signed NERP) are 2.0's. A reason text given for a level-4 NERP is not sent,
//! as for SFNA, EFNA and ESID below 2.0. All other commands are those of
//! RFC 2204. The Accord OFTP library's 1.4 formats have the same fields.
//!
//! # Validation
//!
//! Every date and time stamp is decoded as a calendar date and a time of day,
//! with the counter in 0001-9999 at levels 4 and 5 (RFC 5024 5.3.3);
//! anything else is [`DecodeError::InvalidDateTime`] naming the field (ESID
//! 06). An SSIDLEV that is no release level (0, 3, not a digit) is
//! [`DecodeError::UnsupportedLevel`] (ESID 10, the SSID negotiation fails).
//! Otherwise decoding is liberal where real partners deviate: lower-case names
//! (stored upper-cased), ESID without its trailing CR, an ESID in the other
//! revision's layout, CR as 0x0D or 0x8D, reserved fields with any content.
//! Encoding is strict and refuses values that do not fit instead of truncating
//! them, and stamps the decoder would refuse.
//!
//! DATA payloads are carried as raw subrecord bytes here; [`crate::data`] builds
//! and parses them. This module does no I/O and keeps no state.

mod error;
mod fields;
mod layouts;
mod types;

pub use error::{DecodeError, EncodeError};
pub use types::{
    CipherSuite, EfnaReason, EsidReason, FileCompression, FileEnvelope, FileFormat, NerpReason,
    Password, ProtocolLevel, SecurityLevel, SessionMode, SfnaReason, VirtualFileTime,
};

use fields::{Reader, Writer};
use layouts::{
    V2_NEEDED, decode_eerp, decode_esid, decode_nerp, decode_sfid, decode_ssid, encode_eerp,
    encode_nerp, encode_sfid, encode_ssid,
};

/// SSRM: Start Session Ready Message (`I`), sent by the responder first.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ssrm;

/// The fixed SSRM text.
pub const SSRM_MESSAGE: &[u8; 17] = b"ODETTE FTP READY ";

/// SSID: Start Session (`X`), exchanged by initiator and responder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ssid {
    /// Protocol release level (SSIDLEV).
    pub level: ProtocolLevel,
    /// Identification code of the sending location (SSIDCODE, X(25)).
    pub code: String,
    /// Password (SSIDPSWD, X(8)).
    pub password: Password,
    /// Largest data exchange buffer accepted, including the command octet
    /// (SSIDSDEB, 128..=99999).
    pub buffer_size: u32,
    /// Send/receive capability (SSIDSR).
    pub mode: SessionMode,
    /// Buffer compression supported (SSIDCMPR).
    pub compression: bool,
    /// Restart supported (SSIDREST).
    pub restart: bool,
    /// Special logic (X.25 only; SSIDSPEC). This crate always sends `N`.
    pub special_logic: bool,
    /// Credit window (SSIDCRED, 1..=999).
    pub credit: u16,
    /// Secure authentication requested (SSIDAUTH, 2.0 only).
    pub secure_auth: bool,
    /// User data (SSIDUSER, X(8)).
    pub user_data: String,
}

/// SFID: Start File (`H`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sfid {
    /// Virtual file dataset name (SFIDDSN, X(26)).
    pub dsn: String,
    /// Date and time stamp identifying the file together with the name.
    pub date_time: VirtualFileTime,
    /// User data (SFIDUSER, X(8)).
    pub user_data: String,
    /// Final recipient (SFIDDEST, X(25)).
    pub destination: String,
    /// Originator (SFIDORIG, X(25)).
    pub originator: String,
    /// File format (SFIDFMT).
    pub format: FileFormat,
    /// Maximum record size (SFIDLRECL, 0 for U and T).
    pub max_record_len: u32,
    /// Transmitted file size in 1 KiB blocks (SFIDFSIZ; 9(7) below 2.0).
    pub file_size: u64,
    /// Original file size in 1 KiB blocks (SFIDOSIZ, 2.0 only; equal to
    /// `file_size` when decoded below 2.0).
    pub original_file_size: u64,
    /// Restart position: records for F/V, 1 KiB blocks for U/T (SFIDREST).
    pub restart_position: u64,
    /// Security level (SFIDSEC, 2.0 only).
    pub security: SecurityLevel,
    /// Cipher suite (SFIDCIPH, 2.0 only).
    pub cipher_suite: CipherSuite,
    /// File compression (SFIDCOMP, 2.0 only).
    pub compression: FileCompression,
    /// File envelope (SFIDENV, 2.0 only).
    pub envelope: FileEnvelope,
    /// Signed EERP requested (SFIDSIGN, 2.0 only).
    pub signed_eerp: bool,
    /// Description (SFIDDESC, UTF-8, at most 999 octets, 2.0 only).
    pub description: String,
}

impl Sfid {
    /// A start-file command for an unsecured, uncompressed file with no
    /// restart; adjust the public fields for anything else.
    pub fn new(
        dsn: impl Into<String>,
        date_time: VirtualFileTime,
        originator: impl Into<String>,
        destination: impl Into<String>,
        format: FileFormat,
        max_record_len: u32,
    ) -> Self {
        Sfid {
            dsn: dsn.into(),
            date_time,
            user_data: String::new(),
            destination: destination.into(),
            originator: originator.into(),
            format,
            max_record_len,
            file_size: 0,
            original_file_size: 0,
            restart_position: 0,
            security: SecurityLevel::NONE,
            cipher_suite: CipherSuite::NONE,
            compression: FileCompression::NONE,
            envelope: FileEnvelope::NONE,
            signed_eerp: false,
            description: String::new(),
        }
    }

    /// Whether the file was signed, encrypted, compressed or enveloped before
    /// transmission.
    pub fn has_file_services(&self) -> bool {
        self.security != SecurityLevel::NONE
            || self.compression != FileCompression::NONE
            || self.envelope != FileEnvelope::NONE
    }

    /// The format the data travels in: a file with file services applied has
    /// lost its record structure and travels (and restarts) as U (RFC 5024
    /// 5.3.3 SFIDFMT and SFIDREST); otherwise the declared format.
    pub fn transmitted_format(&self) -> FileFormat {
        if self.has_file_services() {
            FileFormat::Unstructured
        } else {
            self.format
        }
    }
}

/// SFPA: Start File Positive Answer (`2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sfpa {
    /// Restart position accepted, at most the one asked for (SFPAACNT).
    pub answer_count: u64,
}

/// SFNA: Start File Negative Answer (`3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sfna {
    /// Reason (SFNAREAS).
    pub reason: SfnaReason,
    /// Whether the speaker may retry later (SFNARRTR).
    pub retry: bool,
    /// Reason text (SFNAREAST, 2.0 only).
    pub text: String,
}

/// DATA: Data Exchange Buffer (`D`); the payload is the subrecord sequence.
#[derive(Clone, PartialEq, Eq)]
pub struct Data {
    /// Subrecord headers and subrecords, without the `D` (see [`crate::data`]).
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Data({} octets)", self.payload.len())
    }
}

/// CDT: Set Credit (`C`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Cdt;

/// EFID: End File (`T`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Efid {
    /// Records in the whole file for F/V, 0 for U/T (EFIDRCNT).
    pub record_count: u64,
    /// Octets in the whole file (EFIDUCNT).
    pub unit_count: u64,
}

/// EFPA: End File Positive Answer (`4`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Efpa {
    /// The listener asks the speaker for a CD (EFPACD).
    pub change_direction: bool,
}

/// EFNA: End File Negative Answer (`5`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Efna {
    /// Reason (EFNAREAS).
    pub reason: EfnaReason,
    /// Reason text (EFNAREAST, 2.0 only).
    pub text: String,
}

/// ESID: End Session (`F`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Esid {
    /// Reason (ESIDREAS).
    pub reason: EsidReason,
    /// Reason text (ESIDREAST, 2.0 only).
    pub text: String,
}

/// CD: Change Direction (`R`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Cd;

/// RTR: Ready To Receive (`P`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Rtr;

/// SECD: Security Change Direction (`J`, 2.0 only).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Secd;

/// EERP: End to End Response (`E`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eerp {
    /// Dataset name of the file acknowledged (EERPDSN).
    pub dsn: String,
    /// Date and time stamp of the file acknowledged.
    pub date_time: VirtualFileTime,
    /// User data (EERPUSER).
    pub user_data: String,
    /// Originator of the file, to whom the EERP goes (EERPDEST).
    pub destination: String,
    /// Final recipient of the file, who creates the EERP (EERPORIG).
    pub originator: String,
    /// Hash of the transmitted file (EERPHSH, 2.0 only; empty if unsigned).
    pub hash: Vec<u8>,
    /// CMS SignedData over the EERP fields (EERPSIG, 2.0 only; empty if unsigned).
    pub signature: Vec<u8>,
}

/// NERP: Negative End Response (`N`, levels 4 and 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nerp {
    /// Dataset name (NERPDSN).
    pub dsn: String,
    /// Date and time stamp of the file.
    pub date_time: VirtualFileTime,
    /// Originator of the file, to whom the NERP goes (NERPDEST).
    pub destination: String,
    /// Final recipient of the file (NERPORIG).
    pub originator: String,
    /// Location that created the NERP (NERPCREA).
    pub creator: String,
    /// Reason (NERPREAS).
    pub reason: NerpReason,
    /// Reason text (NERPREAST, 2.0 only: not sent at level 4).
    pub text: String,
    /// Hash of the file (NERPHSH, 2.0 only; empty if unsigned).
    pub hash: Vec<u8>,
    /// CMS SignedData over the NERP fields (NERPSIG, 2.0 only; empty if unsigned).
    pub signature: Vec<u8>,
}

/// AUCH: Authentication Challenge (`A`, 2.0 only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auch {
    /// CMS EnvelopedData holding 20 random octets (AUCHCHAL).
    pub challenge: Vec<u8>,
}

/// AURP: Authentication Response (`S`, 2.0 only).
#[derive(Clone, PartialEq, Eq)]
pub struct Aurp {
    /// The decrypted challenge (AURPRSP).
    pub response: [u8; 20],
}

impl std::fmt::Debug for Aurp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The response proves identity; keep it out of logs.
        f.write_str("Aurp(<20 octets>)")
    }
}

/// One ODETTE-FTP command.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Command {
    Ssrm(Ssrm),
    Ssid(Ssid),
    Sfid(Sfid),
    Sfpa(Sfpa),
    Sfna(Sfna),
    Data(Data),
    Cdt(Cdt),
    Efid(Efid),
    Efpa(Efpa),
    Efna(Efna),
    Esid(Esid),
    Cd(Cd),
    Rtr(Rtr),
    Eerp(Eerp),
    Nerp(Nerp),
    Secd(Secd),
    Auch(Auch),
    Aurp(Aurp),
}

/// Command codes (first octet of an exchange buffer).
pub mod code {
    /// SSRM.
    pub const SSRM: u8 = b'I';
    /// SSID.
    pub const SSID: u8 = b'X';
    /// SFID.
    pub const SFID: u8 = b'H';
    /// SFPA.
    pub const SFPA: u8 = b'2';
    /// SFNA.
    pub const SFNA: u8 = b'3';
    /// DATA.
    pub const DATA: u8 = b'D';
    /// CDT.
    pub const CDT: u8 = b'C';
    /// EFID.
    pub const EFID: u8 = b'T';
    /// EFPA.
    pub const EFPA: u8 = b'4';
    /// EFNA.
    pub const EFNA: u8 = b'5';
    /// ESID.
    pub const ESID: u8 = b'F';
    /// CD.
    pub const CD: u8 = b'R';
    /// RTR.
    pub const RTR: u8 = b'P';
    /// EERP.
    pub const EERP: u8 = b'E';
    /// NERP.
    pub const NERP: u8 = b'N';
    /// SECD.
    pub const SECD: u8 = b'J';
    /// AUCH.
    pub const AUCH: u8 = b'A';
    /// AURP.
    pub const AURP: u8 = b'S';
}

impl Command {
    /// The RFC name of the command (`"SFID"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ssrm(_) => "SSRM",
            Command::Ssid(_) => "SSID",
            Command::Sfid(_) => "SFID",
            Command::Sfpa(_) => "SFPA",
            Command::Sfna(_) => "SFNA",
            Command::Data(_) => "DATA",
            Command::Cdt(_) => "CDT",
            Command::Efid(_) => "EFID",
            Command::Efpa(_) => "EFPA",
            Command::Efna(_) => "EFNA",
            Command::Esid(_) => "ESID",
            Command::Cd(_) => "CD",
            Command::Rtr(_) => "RTR",
            Command::Eerp(_) => "EERP",
            Command::Nerp(_) => "NERP",
            Command::Secd(_) => "SECD",
            Command::Auch(_) => "AUCH",
            Command::Aurp(_) => "AURP",
        }
    }

    /// A one-line summary for audit trails (PITrail). Never contains the
    /// password, the challenge response or DATA content.
    pub fn summary(&self) -> String {
        match self {
            Command::Ssid(s) => format!(
                "SSID level {} code {} buffer {} mode {:?} compression {} restart {} credit {} auth {}",
                s.level.0,
                s.code,
                s.buffer_size,
                s.mode,
                yn(s.compression),
                yn(s.restart),
                s.credit,
                yn(s.secure_auth)
            ),
            Command::Sfid(s) => format!(
                "SFID {} {} from {} to {} format {:?} restart {}",
                s.dsn, s.date_time, s.originator, s.destination, s.format, s.restart_position
            ),
            Command::Sfpa(s) => format!("SFPA answer count {}", s.answer_count),
            Command::Sfna(s) => format!("SFNA {} retry {} {}", s.reason, yn(s.retry), s.text),
            Command::Data(d) => format!("DATA {} octets", d.payload.len() + 1),
            Command::Efid(e) => format!("EFID records {} units {}", e.record_count, e.unit_count),
            Command::Efpa(e) => format!("EFPA change direction {}", yn(e.change_direction)),
            Command::Efna(e) => format!("EFNA {} {}", e.reason, e.text),
            Command::Esid(e) => format!("ESID {} {}", e.reason, e.text),
            Command::Eerp(e) => format!(
                "EERP {} {} from {} to {} signed {}",
                e.dsn,
                e.date_time,
                e.originator,
                e.destination,
                yn(!e.signature.is_empty())
            ),
            Command::Nerp(n) => format!(
                "NERP {} {} created by {} {} {}",
                n.dsn, n.date_time, n.creator, n.reason, n.text
            ),
            Command::Auch(a) => format!("AUCH challenge {} octets", a.challenge.len()),
            other => other.name().to_owned(),
        }
    }

    /// Decodes one exchange buffer received at protocol `level`.
    ///
    /// The SSID layout is chosen by its own level field, and an ESID is
    /// accepted in either revision's layout (with or without its final CR),
    /// because both can arrive before the level is settled.
    pub fn decode(buf: &[u8], level: ProtocolLevel) -> Result<Command, DecodeError> {
        let Some(&code) = buf.first() else {
            return Err(DecodeError::Empty);
        };
        let v2 = level.is_v2();
        let need_v2 = |command: &'static str| {
            if v2 {
                Ok(())
            } else {
                Err(DecodeError::NotAtLevel { command, level })
            }
        };
        let cmd = match code {
            code::SSRM => {
                let mut r = Reader::new(buf, "SSRM");
                if r.take(17)? != SSRM_MESSAGE {
                    return Err(r.invalid("SSRMMSG", "is not 'ODETTE FTP READY '"));
                }
                r.cr("SSRMCR")?;
                r.finish()?;
                Command::Ssrm(Ssrm)
            }
            code::SSID => Command::Ssid(decode_ssid(buf)?),
            code::SFID => Command::Sfid(decode_sfid(buf, level)?),
            code::SFPA => {
                let mut r = Reader::new(buf, "SFPA");
                let answer_count = r.num(if v2 { 17 } else { 9 }, "SFPAACNT")?;
                r.finish()?;
                Command::Sfpa(Sfpa { answer_count })
            }
            code::SFNA => {
                let mut r = Reader::new(buf, "SFNA");
                let reason = SfnaReason(r.num(2, "SFNAREAS")? as u8);
                let retry = r.yes_no("SFNARRTR")?;
                let text = if v2 {
                    let n = r.num(3, "SFNAREASL")? as usize;
                    r.text(n, "SFNAREAST", false)?
                } else {
                    String::new()
                };
                r.finish()?;
                Command::Sfna(Sfna {
                    reason,
                    retry,
                    text,
                })
            }
            code::DATA => Command::Data(Data {
                payload: buf[1..].to_vec(),
            }),
            code::CDT => {
                let mut r = Reader::new(buf, "CDT");
                r.reserved(2)?;
                r.finish()?;
                Command::Cdt(Cdt)
            }
            code::EFID => {
                let mut r = Reader::new(buf, "EFID");
                let (rw, uw) = if v2 { (17, 17) } else { (9, 12) };
                let record_count = r.num(rw, "EFIDRCNT")?;
                let unit_count = r.num(uw, "EFIDUCNT")?;
                r.finish()?;
                Command::Efid(Efid {
                    record_count,
                    unit_count,
                })
            }
            code::EFPA => {
                let mut r = Reader::new(buf, "EFPA");
                let change_direction = r.yes_no("EFPACD")?;
                r.finish()?;
                Command::Efpa(Efpa { change_direction })
            }
            code::EFNA => {
                let mut r = Reader::new(buf, "EFNA");
                let reason = EfnaReason(r.num(2, "EFNAREAS")? as u8);
                let text = if v2 {
                    let n = r.num(3, "EFNAREASL")? as usize;
                    r.text(n, "EFNAREAST", false)?
                } else {
                    String::new()
                };
                r.finish()?;
                Command::Efna(Efna { reason, text })
            }
            code::ESID => Command::Esid(decode_esid(buf)?),
            code::CD => single(buf, "CD", Command::Cd(Cd))?,
            code::RTR => single(buf, "RTR", Command::Rtr(Rtr))?,
            code::EERP => Command::Eerp(decode_eerp(buf, level)?),
            code::NERP => {
                if !level.has_nerp() {
                    return Err(DecodeError::NotAtLevel {
                        command: "NERP",
                        level,
                    });
                }
                Command::Nerp(decode_nerp(buf, level)?)
            }
            code::SECD => {
                need_v2("SECD")?;
                single(buf, "SECD", Command::Secd(Secd))?
            }
            code::AUCH => {
                need_v2("AUCH")?;
                let mut r = Reader::new(buf, "AUCH");
                let n = r.u16_be()?;
                let challenge = r.take(n)?.to_vec();
                r.finish()?;
                Command::Auch(Auch { challenge })
            }
            code::AURP => {
                need_v2("AURP")?;
                let mut r = Reader::new(buf, "AURP");
                let mut response = [0u8; 20];
                response.copy_from_slice(r.take(20)?);
                r.finish()?;
                Command::Aurp(Aurp { response })
            }
            other => return Err(DecodeError::UnknownCommand { code: other }),
        };
        Ok(cmd)
    }

    /// Appends the exchange buffer for this command at protocol `level` to `out`.
    ///
    /// On error nothing is appended. Names are upper-cased; values that do not
    /// fit their field, or that the level cannot carry, are refused.
    pub fn encode(&self, level: ProtocolLevel, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_inner(level, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Encodes into a new vector.
    pub fn to_bytes(&self, level: ProtocolLevel) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(level, &mut out)?;
        Ok(out)
    }

    fn encode_inner(&self, level: ProtocolLevel, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let v2 = level.is_v2();
        let need_v2 = |what: &'static str| {
            if v2 {
                Ok(())
            } else {
                Err(EncodeError::NotAtLevel {
                    what,
                    level,
                    needs: V2_NEEDED,
                })
            }
        };
        match self {
            Command::Ssrm(_) => {
                let mut w = Writer::new(out, "SSRM", code::SSRM);
                w.bytes(SSRM_MESSAGE);
                w.cr();
                w.finish()
            }
            Command::Ssid(s) => encode_ssid(s, out),
            Command::Sfid(s) => encode_sfid(s, level, out),
            Command::Sfpa(s) => {
                let mut w = Writer::new(out, "SFPA", code::SFPA);
                w.num(s.answer_count, if v2 { 17 } else { 9 }, "SFPAACNT")?;
                w.finish()
            }
            Command::Sfna(s) => {
                let mut w = Writer::new(out, "SFNA", code::SFNA);
                w.num(s.reason.0 as u64, 2, "SFNAREAS")?;
                w.yes_no(s.retry);
                if v2 {
                    w.text_with_len(&s.text, "SFNAREAST")?;
                }
                w.finish()
            }
            Command::Data(d) => {
                let mut w = Writer::new(out, "DATA", code::DATA);
                w.bytes(&d.payload);
                w.finish()
            }
            Command::Cdt(_) => {
                let mut w = Writer::new(out, "CDT", code::CDT);
                w.pad(2);
                w.finish()
            }
            Command::Efid(e) => {
                let mut w = Writer::new(out, "EFID", code::EFID);
                let (rw, uw) = if v2 { (17, 17) } else { (9, 12) };
                w.num(e.record_count, rw, "EFIDRCNT")?;
                w.num(e.unit_count, uw, "EFIDUCNT")?;
                w.finish()
            }
            Command::Efpa(e) => {
                let mut w = Writer::new(out, "EFPA", code::EFPA);
                w.yes_no(e.change_direction);
                w.finish()
            }
            Command::Efna(e) => {
                let mut w = Writer::new(out, "EFNA", code::EFNA);
                w.num(e.reason.0 as u64, 2, "EFNAREAS")?;
                if v2 {
                    w.text_with_len(&e.text, "EFNAREAST")?;
                }
                w.finish()
            }
            Command::Esid(e) => {
                let mut w = Writer::new(out, "ESID", code::ESID);
                w.num(e.reason.0 as u64, 2, "ESIDREAS")?;
                if v2 {
                    w.text_with_len(&e.text, "ESIDREAST")?;
                }
                w.cr();
                w.finish()
            }
            Command::Cd(_) => Writer::new(out, "CD", code::CD).finish(),
            Command::Rtr(_) => Writer::new(out, "RTR", code::RTR).finish(),
            Command::Eerp(e) => encode_eerp(e, level, out),
            Command::Nerp(n) => {
                if !level.has_nerp() {
                    return Err(EncodeError::NotAtLevel {
                        what: "NERP",
                        level,
                        needs: "ODETTE-FTP 1.4 (level 4)",
                    });
                }
                encode_nerp(n, level, out)
            }
            Command::Secd(_) => {
                need_v2("SECD")?;
                Writer::new(out, "SECD", code::SECD).finish()
            }
            Command::Auch(a) => {
                need_v2("AUCH")?;
                let mut w = Writer::new(out, "AUCH", code::AUCH);
                w.binary_with_len(&a.challenge, "AUCHCHAL")?;
                w.finish()
            }
            Command::Aurp(a) => {
                need_v2("AURP")?;
                let mut w = Writer::new(out, "AURP", code::AURP);
                w.bytes(&a.response);
                w.finish()
            }
        }
    }
}

fn yn(b: bool) -> char {
    if b { 'Y' } else { 'N' }
}

fn single(buf: &[u8], name: &'static str, cmd: Command) -> Result<Command, DecodeError> {
    Reader::new(buf, name).finish()?;
    Ok(cmd)
}

#[cfg(test)]
mod tests;
