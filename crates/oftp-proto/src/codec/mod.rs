//! ODETTE-FTP command exchange buffers: typed commands, decode and encode.
//!
//! One struct per command (RFC 5024 section 5.3), gathered in [`Command`].
//! [`Command::decode`] takes one exchange buffer (the payload of an STH frame,
//! see [`crate::sth`]) and the session's protocol level; [`Command::encode`]
//! appends one.
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
mod types;

pub use error::{DecodeError, EncodeError};
pub use types::{
    CipherSuite, EfnaReason, EsidReason, FileCompression, FileEnvelope, FileFormat, NerpReason,
    Password, ProtocolLevel, SecurityLevel, SessionMode, SfnaReason, VirtualFileTime,
};

use fields::{Reader, Writer};

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

fn decode_ssid(buf: &[u8]) -> Result<Ssid, DecodeError> {
    let mut r = Reader::new(buf, "SSID");
    // Levels are 1, 2, 4, 5 and future higher ones (RFC 5024 5.3.2); the
    // lower of two levels is used, so 0 or 3 would stick. Either, or a
    // non-digit, fails the SSID negotiation (9.8.2 D and G: ESID 10).
    let raw = r.byte()?;
    let level = ProtocolLevel(raw.wrapping_sub(b'0'));
    if !raw.is_ascii_digit() || !level.is_release_level() {
        return Err(DecodeError::UnsupportedLevel {
            value: raw.escape_ascii().to_string(),
        });
    }
    let code = r.alnum(25, "SSIDCODE")?;
    let password = Password::new(r.password(8, "SSIDPSWD")?);
    let buffer_size = r.num(5, "SSIDSDEB")? as u32;
    if !(128..=99_999).contains(&buffer_size) {
        return Err(r.invalid("SSIDSDEB", "is outside 128..=99999"));
    }
    let mode =
        SessionMode::from_byte(r.byte()?).ok_or_else(|| r.invalid("SSIDSR", "is not S, R or B"))?;
    let compression = r.yes_no("SSIDCMPR")?;
    let restart = r.yes_no("SSIDREST")?;
    let special_logic = r.yes_no("SSIDSPEC")?;
    let credit = r.num(3, "SSIDCRED")? as u16;
    if credit == 0 {
        return Err(r.invalid("SSIDCRED", "is zero"));
    }
    let secure_auth = if level.is_v2() {
        let a = r.yes_no("SSIDAUTH")?;
        r.reserved(4)?;
        a
    } else {
        r.reserved(5)?;
        false
    };
    let user_data = r.alnum(8, "SSIDUSER")?;
    r.cr("SSIDCR")?;
    r.finish()?;
    Ok(Ssid {
        level,
        code,
        password,
        buffer_size,
        mode,
        compression,
        restart,
        special_logic,
        credit,
        secure_auth,
        user_data,
    })
}

fn encode_ssid(s: &Ssid, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut w = Writer::new(out, "SSID", code::SSID);
    w.num(s.level.0 as u64, 1, "SSIDLEV")?;
    w.alnum(&s.code, 25, "SSIDCODE")?;
    w.password(s.password.expose(), 8, "SSIDPSWD")?;
    if !(128..=99_999).contains(&s.buffer_size) {
        return Err(EncodeError::OutOfRange {
            command: "SSID",
            field: "SSIDSDEB",
            value: s.buffer_size as u64,
            max: 99_999,
        });
    }
    w.num(s.buffer_size as u64, 5, "SSIDSDEB")?;
    w.bytes(&[s.mode.as_byte()]);
    w.yes_no(s.compression);
    w.yes_no(s.restart);
    w.yes_no(s.special_logic);
    if s.credit == 0 {
        return Err(EncodeError::OutOfRange {
            command: "SSID",
            field: "SSIDCRED",
            value: 0,
            max: 999,
        });
    }
    w.num(s.credit as u64, 3, "SSIDCRED")?;
    if s.level.is_v2() {
        w.yes_no(s.secure_auth);
        w.pad(4);
    } else {
        if s.secure_auth {
            return Err(EncodeError::NotAtLevel {
                what: "secure authentication (SSIDAUTH)",
                level: s.level,
                needs: V2_NEEDED,
            });
        }
        w.pad(5);
    }
    w.alnum(&s.user_data, 8, "SSIDUSER")?;
    w.cr();
    w.finish()
}

fn decode_sfid(buf: &[u8], level: ProtocolLevel) -> Result<Sfid, DecodeError> {
    let v2 = level.is_v2();
    let mut r = Reader::new(buf, "SFID");
    let dsn = r.alnum(26, "SFIDDSN")?;
    let date_time = stamp(&mut r, level, "SFIDDATE", "SFIDTIME")?;
    let user_data = r.alnum(8, "SFIDUSER")?;
    let destination = r.alnum(25, "SFIDDEST")?;
    let originator = r.alnum(25, "SFIDORIG")?;
    let format = FileFormat::from_byte(r.byte()?)
        .ok_or_else(|| r.invalid("SFIDFMT", "is not F, V, U or T"))?;
    let max_record_len = r.num(5, "SFIDLRECL")? as u32;
    let mut sfid = Sfid {
        dsn,
        date_time,
        user_data,
        destination,
        originator,
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
    };
    if v2 {
        sfid.file_size = r.num(13, "SFIDFSIZ")?;
        sfid.original_file_size = r.num(13, "SFIDOSIZ")?;
        sfid.restart_position = r.num(17, "SFIDREST")?;
        sfid.security = SecurityLevel(r.num(2, "SFIDSEC")? as u8);
        sfid.cipher_suite = CipherSuite(r.num(2, "SFIDCIPH")? as u8);
        sfid.compression = FileCompression(r.num(1, "SFIDCOMP")? as u8);
        sfid.envelope = FileEnvelope(r.num(1, "SFIDENV")? as u8);
        sfid.signed_eerp = r.yes_no("SFIDSIGN")?;
        let n = r.num(3, "SFIDDESCL")? as usize;
        sfid.description = r.text(n, "SFIDDESC", true)?;
    } else {
        sfid.file_size = r.num(7, "SFIDFSIZ")?;
        sfid.original_file_size = sfid.file_size;
        sfid.restart_position = r.num(9, "SFIDREST")?;
    }
    r.finish()?;
    Ok(sfid)
}

fn encode_sfid(s: &Sfid, level: ProtocolLevel, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let v2 = level.is_v2();
    let mut w = Writer::new(out, "SFID", code::SFID);
    w.alnum(&s.dsn, 26, "SFIDDSN")?;
    write_stamp(&mut w, &s.date_time, level, "SFIDDATE/SFIDTIME")?;
    w.alnum(&s.user_data, 8, "SFIDUSER")?;
    w.alnum(&s.destination, 25, "SFIDDEST")?;
    w.alnum(&s.originator, 25, "SFIDORIG")?;
    w.bytes(&[s.format.as_byte()]);
    w.num(s.max_record_len as u64, 5, "SFIDLRECL")?;
    if v2 {
        w.num(s.file_size, 13, "SFIDFSIZ")?;
        w.num(s.original_file_size, 13, "SFIDOSIZ")?;
        w.num(s.restart_position, 17, "SFIDREST")?;
        w.num(s.security.0 as u64, 2, "SFIDSEC")?;
        w.num(s.cipher_suite.0 as u64, 2, "SFIDCIPH")?;
        w.num(s.compression.0 as u64, 1, "SFIDCOMP")?;
        w.num(s.envelope.0 as u64, 1, "SFIDENV")?;
        w.yes_no(s.signed_eerp);
        w.text_with_len(&s.description, "SFIDDESC")?;
    } else {
        // File services do not exist below 2.0: refuse rather than send a
        // signed or encrypted file that the partner would take for plain data.
        let secured = s.security != SecurityLevel::NONE
            || s.cipher_suite != CipherSuite::NONE
            || s.compression != FileCompression::NONE
            || s.envelope != FileEnvelope::NONE
            || s.signed_eerp;
        if secured {
            return Err(EncodeError::NotAtLevel {
                what: "file security, compression or envelope (SFIDSEC..SFIDSIGN)",
                level,
                needs: V2_NEEDED,
            });
        }
        w.num(s.file_size, 7, "SFIDFSIZ")?;
        w.num(s.restart_position, 9, "SFIDREST")?;
    }
    w.finish()
}

fn decode_esid(buf: &[u8]) -> Result<Esid, DecodeError> {
    let mut r = Reader::new(buf, "ESID");
    let reason = EsidReason(r.num(2, "ESIDREAS")? as u8);
    // RFC 2204 layout: 'F' REAS CR (CR sometimes missing).
    if r.remaining() == 0 || (r.remaining() == 1 && matches!(buf[3], 0x0d | 0x8d)) {
        return Ok(Esid {
            reason,
            text: String::new(),
        });
    }
    let n = r.num(3, "ESIDREASL")? as usize;
    let text = r.text(n, "ESIDREAST", false)?;
    // The trailing CR is missing in some implementations; accept both.
    if r.remaining() > 0 {
        r.cr("ESIDCR")?;
    }
    r.finish()?;
    Ok(Esid { reason, text })
}

fn decode_eerp(buf: &[u8], level: ProtocolLevel) -> Result<Eerp, DecodeError> {
    let mut r = Reader::new(buf, "EERP");
    let dsn = r.alnum(26, "EERPDSN")?;
    let date_time = stamp(&mut r, level, "EERPDATE", "EERPTIME")?;
    let user_data = r.alnum(8, "EERPUSER")?;
    let destination = r.alnum(25, "EERPDEST")?;
    let originator = r.alnum(25, "EERPORIG")?;
    // An unsigned 2.0 EERP that stops after EERPORIG (no length fields) is
    // taken as having no hash and no signature.
    let (hash, signature) = if level.is_v2() && r.remaining() > 0 {
        hash_and_signature(&mut r)?
    } else {
        (Vec::new(), Vec::new())
    };
    r.finish()?;
    Ok(Eerp {
        dsn,
        date_time,
        user_data,
        destination,
        originator,
        hash,
        signature,
    })
}

fn encode_eerp(e: &Eerp, level: ProtocolLevel, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut w = Writer::new(out, "EERP", code::EERP);
    w.alnum(&e.dsn, 26, "EERPDSN")?;
    write_stamp(&mut w, &e.date_time, level, "EERPDATE/EERPTIME")?;
    w.alnum(&e.user_data, 8, "EERPUSER")?;
    w.alnum(&e.destination, 25, "EERPDEST")?;
    w.alnum(&e.originator, 25, "EERPORIG")?;
    if level.is_v2() {
        w.binary_with_len(&e.hash, "EERPHSH")?;
        w.binary_with_len(&e.signature, "EERPSIG")?;
    } else if !e.hash.is_empty() || !e.signature.is_empty() {
        return Err(EncodeError::NotAtLevel {
            what: "signed EERP (EERPHSH/EERPSIG)",
            level,
            needs: V2_NEEDED,
        });
    }
    w.finish()
}

/// NERP, levels 4 and 5. At level 4 it ends after NERPREAS (128 octets): the
/// reason text and the hash and signature came with 2.0 (RFC 5024 1.2,
/// "Signed NERP", "Extended error codes"); see the crate README.
fn decode_nerp(buf: &[u8], level: ProtocolLevel) -> Result<Nerp, DecodeError> {
    let mut r = Reader::new(buf, "NERP");
    let dsn = r.alnum(26, "NERPDSN")?;
    r.reserved(6)?;
    let date_time = r.date_time(true, "NERPDATE", "NERPTIME")?;
    let destination = r.alnum(25, "NERPDEST")?;
    let originator = r.alnum(25, "NERPORIG")?;
    let creator = r.alnum(25, "NERPCREA")?;
    let reason = NerpReason(r.num(2, "NERPREAS")? as u8);
    let mut text = String::new();
    let (mut hash, mut signature) = (Vec::new(), Vec::new());
    if level.is_v2() {
        let n = r.num(3, "NERPREASL")? as usize;
        text = r.text(n, "NERPREAST", false)?;
        // As for EERP: missing hash and signature length fields mean unsigned.
        if r.remaining() > 0 {
            (hash, signature) = hash_and_signature(&mut r)?;
        }
    }
    r.finish()?;
    Ok(Nerp {
        dsn,
        date_time,
        destination,
        originator,
        creator,
        reason,
        text,
        hash,
        signature,
    })
}

fn encode_nerp(n: &Nerp, level: ProtocolLevel, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut w = Writer::new(out, "NERP", code::NERP);
    w.alnum(&n.dsn, 26, "NERPDSN")?;
    w.pad(6);
    w.date_time(&n.date_time, true, "NERPDATE/NERPTIME")?;
    w.alnum(&n.destination, 25, "NERPDEST")?;
    w.alnum(&n.originator, 25, "NERPORIG")?;
    w.alnum(&n.creator, 25, "NERPCREA")?;
    w.num(n.reason.0 as u64, 2, "NERPREAS")?;
    if level.is_v2() {
        w.text_with_len(&n.text, "NERPREAST")?;
        w.binary_with_len(&n.hash, "NERPHSH")?;
        w.binary_with_len(&n.signature, "NERPSIG")?;
    } else if !n.hash.is_empty() || !n.signature.is_empty() {
        return Err(EncodeError::NotAtLevel {
            what: "signed NERP (NERPHSH/NERPSIG)",
            level,
            needs: V2_NEEDED,
        });
    }
    // Below 2.0 the reason text has no field and is not sent, as for SFNA,
    // EFNA and ESID (informational only).
    w.finish()
}

/// What the 2.0-only parts of a command need.
const V2_NEEDED: &str = "ODETTE-FTP 2.0 (level 5)";

/// The reserved field and the date and time stamp of SFID and EERP: levels 4
/// and 5 have `X(3)` + `CCYYMMDD` + `HHMMSScccc` (the extended stamp of
/// revision 1.4, RFC 5024 1.2 and 5.3.3), levels 1 and 2 the RFC 2204 `X(9)` +
/// `YYMMDD` + `HHMMSS`. Both end at position 48.
fn stamp(
    r: &mut Reader<'_>,
    level: ProtocolLevel,
    date_field: &'static str,
    time_field: &'static str,
) -> Result<VirtualFileTime, DecodeError> {
    let extended = level.has_extended_stamp();
    r.reserved(if extended { 3 } else { 9 })?;
    r.date_time(extended, date_field, time_field)
}

fn write_stamp(
    w: &mut Writer<'_>,
    t: &VirtualFileTime,
    level: ProtocolLevel,
    field: &'static str,
) -> Result<(), EncodeError> {
    let extended = level.has_extended_stamp();
    w.pad(if extended { 3 } else { 9 });
    w.date_time(t, extended, field)
}

/// EERP/NERP hash and signature: `U(2)` length + octets, twice.
fn hash_and_signature(r: &mut Reader<'_>) -> Result<(Vec<u8>, Vec<u8>), DecodeError> {
    let n = r.u16_be()?;
    let hash = r.take(n)?.to_vec();
    let n = r.u16_be()?;
    Ok((hash, r.take(n)?.to_vec()))
}

#[cfg(test)]
mod tests;
