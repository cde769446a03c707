//! The octet layouts of the commands whose fields depend on the protocol level
//! or need more than a fixed table (SSID, SFID, ESID, EERP, NERP): one decode
//! and one encode function each, with the date and time stamp and the EERP/NERP
//! hash and signature fields they share. [`Command`](super::Command) calls them.

use super::fields::{Reader, Writer};
use super::{
    CipherSuite, DecodeError, Eerp, EncodeError, Esid, EsidReason, FileCompression, FileEnvelope,
    FileFormat, Nerp, NerpReason, Password, ProtocolLevel, SecurityLevel, SessionMode, Sfid, Ssid,
    VirtualFileTime, code,
};

pub(super) fn decode_ssid(buf: &[u8]) -> Result<Ssid, DecodeError> {
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

pub(super) fn encode_ssid(s: &Ssid, out: &mut Vec<u8>) -> Result<(), EncodeError> {
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

pub(super) fn decode_sfid(buf: &[u8], level: ProtocolLevel) -> Result<Sfid, DecodeError> {
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
        user_data,
        ..Sfid::new(
            dsn,
            date_time,
            originator,
            destination,
            format,
            max_record_len,
        )
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

pub(super) fn encode_sfid(
    s: &Sfid,
    level: ProtocolLevel,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
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

pub(super) fn decode_esid(buf: &[u8]) -> Result<Esid, DecodeError> {
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

pub(super) fn decode_eerp(buf: &[u8], level: ProtocolLevel) -> Result<Eerp, DecodeError> {
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

pub(super) fn encode_eerp(
    e: &Eerp,
    level: ProtocolLevel,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
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
pub(super) fn decode_nerp(buf: &[u8], level: ProtocolLevel) -> Result<Nerp, DecodeError> {
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

pub(super) fn encode_nerp(
    n: &Nerp,
    level: ProtocolLevel,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
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
pub(super) const V2_NEEDED: &str = "ODETTE-FTP 2.0 (level 5)";

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
