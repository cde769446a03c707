//! Field readers and writers for the fixed-position command layouts.
//!
//! Decoding is liberal where partners are known to deviate (lower-case letters,
//! punctuation outside the RFC set in names, Y/N in lower case, CR as 0x0D or
//! 0x8D); encoding is conservative (upper case, RFC character set, exact widths).

use super::error::{DecodeError, EncodeError};
use super::types::VirtualFileTime;

/// Sequential reader over one exchange buffer.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    command: &'static str,
}

impl<'a> Reader<'a> {
    /// `buf` is the whole exchange buffer; reading starts after the command octet.
    pub(crate) fn new(buf: &'a [u8], command: &'static str) -> Self {
        Reader {
            buf,
            pos: 1,
            command,
        }
    }

    pub(crate) fn invalid(&self, field: &'static str, problem: &'static str) -> DecodeError {
        DecodeError::InvalidField {
            command: self.command,
            field,
            problem,
        }
    }

    fn short(&self, need: usize) -> DecodeError {
        DecodeError::Length {
            command: self.command,
            expected: self.pos + need,
            actual: self.buf.len(),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.short(n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Alphanumeric field X(n): printable ASCII accepted, upper-cased, trailing
    /// spaces removed.
    pub(crate) fn alnum(&mut self, n: usize, field: &'static str) -> Result<String, DecodeError> {
        let raw = self.take(n)?;
        if raw.iter().any(|b| !(0x20..=0x7e).contains(b)) {
            return Err(self.invalid(field, "contains a non-printable or non-ASCII octet"));
        }
        let s: String = raw.iter().map(|b| b.to_ascii_uppercase() as char).collect();
        Ok(s.trim_end_matches(' ').to_owned())
    }

    /// Password X(8): printable ASCII, case preserved, trailing spaces removed.
    pub(crate) fn password(
        &mut self,
        n: usize,
        field: &'static str,
    ) -> Result<String, DecodeError> {
        let raw = self.take(n)?;
        if raw.iter().any(|b| !(0x20..=0x7e).contains(b)) {
            return Err(self.invalid(field, "contains a non-printable or non-ASCII octet"));
        }
        let s: String = raw.iter().map(|&b| b as char).collect();
        Ok(s.trim_end_matches(' ').to_owned())
    }

    /// Reserved field: skipped without checking its content (RFC: "should be
    /// padded with spaces"; partners put anything there).
    pub(crate) fn reserved(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(|_| ())
    }

    /// Numeric field 9(n): exactly n ASCII digits.
    pub(crate) fn num(&mut self, n: usize, field: &'static str) -> Result<u64, DecodeError> {
        let raw = self.take(n)?;
        parse_digits(raw).ok_or_else(|| self.invalid(field, "is not all decimal digits"))
    }

    /// Y/N flag (lower case accepted).
    pub(crate) fn yes_no(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.take(1)?[0].to_ascii_uppercase() {
            b'Y' => Ok(true),
            b'N' => Ok(false),
            _ => Err(self.invalid(field, "is neither Y nor N")),
        }
    }

    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Binary U(2) length, network byte order.
    pub(crate) fn u16_be(&mut self) -> Result<usize, DecodeError> {
        let raw = self.take(2)?;
        Ok(u16::from_be_bytes([raw[0], raw[1]]) as usize)
    }

    /// UTF-8 text T(n). `strict`: invalid UTF-8 is an error; otherwise it is
    /// replaced (reason texts are informational and must not abort a session).
    pub(crate) fn text(
        &mut self,
        n: usize,
        field: &'static str,
        strict: bool,
    ) -> Result<String, DecodeError> {
        let raw = self.take(n)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) if !strict => Ok(String::from_utf8_lossy(raw).into_owned()),
            Err(_) => Err(self.invalid(field, "is not valid UTF-8")),
        }
    }

    /// Carriage return: 0x0D or 0x8D.
    pub(crate) fn cr(&mut self, field: &'static str) -> Result<(), DecodeError> {
        match self.take(1)?[0] {
            0x0d | 0x8d => Ok(()),
            _ => Err(self.invalid(field, "is not a carriage return (0x0D or 0x8D)")),
        }
    }

    /// Date and time stamp, checked as a calendar date and a time of day.
    /// `extended` (levels 4 and 5): `CCYYMMDD` + `HHMMSScccc` with the counter
    /// in 0001-9999 (RFC 5024 5.3.3); otherwise the RFC 2204 `YYMMDD` +
    /// `HHMMSS` (century inferred: 00-69 are 20xx, 70-99 are 19xx; counter 0).
    pub(crate) fn date_time(
        &mut self,
        extended: bool,
        date_field: &'static str,
        time_field: &'static str,
    ) -> Result<VirtualFileTime, DecodeError> {
        let (date_len, time_len) = if extended { (8, 10) } else { (6, 6) };
        let d = self.take(date_len)?;
        let dd = digits_of(d).ok_or_else(|| {
            self.invalid(
                date_field,
                if extended {
                    "is not 8 digits (CCYYMMDD)"
                } else {
                    "is not 6 digits (YYMMDD)"
                },
            )
        })?;
        let t = self.take(time_len)?;
        let tt = digits_of(t).ok_or_else(|| {
            self.invalid(
                time_field,
                if extended {
                    "is not 10 digits (HHMMSScccc)"
                } else {
                    "is not 6 digits (HHMMSS)"
                },
            )
        })?;
        let (year, md) = if extended {
            (num_of(&dd[0..4]) as u16, &dd[4..])
        } else {
            let yy = num_of(&dd[0..2]) as u16;
            (if yy < 70 { 2000 + yy } else { 1900 + yy }, &dd[2..])
        };
        let stamp = VirtualFileTime {
            year,
            month: num_of(&md[0..2]) as u8,
            day: num_of(&md[2..4]) as u8,
            hour: num_of(&tt[0..2]) as u8,
            minute: num_of(&tt[2..4]) as u8,
            second: num_of(&tt[4..6]) as u8,
            counter: if extended {
                num_of(&tt[6..10]) as u16
            } else {
                0
            },
        };
        let command = self.command;
        let bad = |field, raw: &[u8], problem| DecodeError::InvalidDateTime {
            command,
            field,
            value: String::from_utf8_lossy(raw).into_owned(),
            problem,
        };
        if !stamp.is_calendar_date() {
            return Err(bad(date_field, d, "not a calendar date"));
        }
        if !stamp.is_time_of_day() {
            return Err(bad(time_field, t, "not a time of day"));
        }
        if extended && stamp.counter == 0 {
            return Err(bad(
                time_field,
                t,
                "counter cccc is 0000, RFC 5024 5.3.3 allows 0001-9999",
            ));
        }
        Ok(stamp)
    }

    /// The buffer must end here.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::Length {
                command: self.command,
                expected: self.pos,
                actual: self.buf.len(),
            })
        }
    }
}

fn digits_of(raw: &[u8]) -> Option<Vec<u8>> {
    raw.iter()
        .map(|b| b.is_ascii_digit().then(|| b - b'0'))
        .collect()
}

fn num_of(d: &[u8]) -> u64 {
    d.iter().fold(0u64, |acc, &x| acc * 10 + x as u64)
}

/// Parses a run of ASCII digits (at most 19, which always fits a u64).
pub(crate) fn parse_digits(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 19 {
        return None;
    }
    digits_of(raw).map(|d| num_of(&d))
}

/// Writer that validates as it appends.
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    command: &'static str,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>, command: &'static str, code: u8) -> Self {
        let start = out.len();
        out.push(code);
        Writer {
            out,
            start,
            command,
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// Alphanumeric X(n): upper-cased, checked against the RFC set (plus `_`,
    /// which the Odette certificate exchange names use), space-padded.
    pub(crate) fn alnum(
        &mut self,
        s: &str,
        n: usize,
        field: &'static str,
    ) -> Result<(), EncodeError> {
        let s = s.trim_end_matches(' ');
        self.fits(s.len(), n, field)?;
        for (i, ch) in s.chars().enumerate() {
            let c = ch.to_ascii_uppercase();
            let ok = c.is_ascii_uppercase()
                || c.is_ascii_digit()
                || matches!(c, '/' | '-' | '.' | '&' | '(' | ')' | '_')
                || (c == ' ' && i > 0);
            if !ok {
                return Err(EncodeError::InvalidCharacter {
                    command: self.command,
                    field,
                    ch,
                });
            }
        }
        self.out.extend(s.bytes().map(|b| b.to_ascii_uppercase()));
        self.pad(n - s.len());
        Ok(())
    }

    /// Password X(n): printable ASCII without spaces, case preserved.
    pub(crate) fn password(
        &mut self,
        s: &str,
        n: usize,
        field: &'static str,
    ) -> Result<(), EncodeError> {
        let s = s.trim_end_matches(' ');
        self.fits(s.len(), n, field)?;
        if let Some(ch) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(EncodeError::InvalidCharacter {
                command: self.command,
                field,
                ch,
            });
        }
        self.bytes(s.as_bytes());
        self.pad(n - s.len());
        Ok(())
    }

    /// Refuses a value of `len` octets for a field that holds at most `max`.
    fn fits(&self, len: usize, max: usize, field: &'static str) -> Result<(), EncodeError> {
        if len > max {
            return Err(EncodeError::TooLong {
                command: self.command,
                field,
                len,
                max,
            });
        }
        Ok(())
    }

    pub(crate) fn pad(&mut self, n: usize) {
        self.out.extend(std::iter::repeat_n(b' ', n));
    }

    /// Numeric 9(n), zero-padded.
    pub(crate) fn num(&mut self, v: u64, n: usize, field: &'static str) -> Result<(), EncodeError> {
        let max = 10u64.checked_pow(n as u32).map_or(u64::MAX, |p| p - 1);
        if v > max {
            return Err(EncodeError::OutOfRange {
                command: self.command,
                field,
                value: v,
                max,
            });
        }
        self.bytes(format!("{v:0n$}").as_bytes());
        Ok(())
    }

    pub(crate) fn yes_no(&mut self, v: bool) {
        self.out.push(if v { b'Y' } else { b'N' });
    }

    /// T(n) with a preceding 9(3) length (max 999 octets).
    pub(crate) fn text_with_len(
        &mut self,
        s: &str,
        field: &'static str,
    ) -> Result<(), EncodeError> {
        self.fits(s.len(), 999, field)?;
        self.num(s.len() as u64, 3, field)?;
        self.bytes(s.as_bytes());
        Ok(())
    }

    /// U(2) length + U(n) binary.
    pub(crate) fn binary_with_len(
        &mut self,
        b: &[u8],
        field: &'static str,
    ) -> Result<(), EncodeError> {
        self.fits(b.len(), u16::MAX as usize, field)?;
        self.bytes(&(b.len() as u16).to_be_bytes());
        self.bytes(b);
        Ok(())
    }

    pub(crate) fn cr(&mut self) {
        self.out.push(0x0d);
    }

    /// Date and time stamp in the level's form (see [`Reader::date_time`]);
    /// refuses what the decoder would refuse.
    pub(crate) fn date_time(
        &mut self,
        t: &VirtualFileTime,
        extended: bool,
        field: &'static str,
    ) -> Result<(), EncodeError> {
        let problem = if !t.is_calendar_date() {
            Some("not a calendar date")
        } else if !t.is_time_of_day() {
            Some("not a time of day")
        } else if extended && t.counter == 0 {
            Some("counter cccc is 0000, RFC 5024 5.3.3 allows 0001-9999")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(EncodeError::InvalidDateTime {
                command: self.command,
                field,
                stamp: *t,
                problem,
            });
        }
        if extended {
            self.bytes(t.date_string().as_bytes());
            self.bytes(t.time_string().as_bytes());
        } else {
            let s = format!(
                "{:02}{:02}{:02}{:02}{:02}{:02}",
                t.year % 100,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second
            );
            self.bytes(s.as_bytes());
        }
        Ok(())
    }

    /// Checks the finished buffer against the exchange buffer maximum.
    pub(crate) fn finish(self) -> Result<(), EncodeError> {
        let len = self.out.len() - self.start;
        if len > crate::sth::MAX_EXCHANGE_BUFFER {
            self.out.truncate(self.start);
            return Err(EncodeError::BufferTooLarge {
                command: self.command,
                len,
            });
        }
        Ok(())
    }
}
