//! The date/time stamp that, with the dataset name and the originator, identifies a virtual file.
//!
//! OFTP 2.0 carries `DATE` as `CCYYMMDD` and `TIME` as `HHMMSScccc` (the last four digits a counter
//! that makes stamps unique within one second); OFTP 1.x carries `YYMMDD` and `HHMMSS`. This module
//! keeps one runtime-side representation ([`FileStamp`]) that round-trips through the journal and the
//! file name macros. It does not talk to the wire codec: the connection driver converts to and from
//! the protocol crate's type.

use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

/// Date, time and counter of a virtual file (`SFIDDATE` + `SFIDTIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileStamp {
    /// Calendar date and time of day (second resolution).
    pub datetime: NaiveDateTime,
    /// The `cccc` counter of OFTP 2.0 (0..=9999); always 0 for OFTP 1.x.
    pub counter: u16,
}

/// A stamp text that is not `yyyyMMddHHmmss` followed by an optional 4-digit counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid virtual file stamp {0:?}: expected yyyyMMddHHmmss plus an optional 4-digit counter"
)]
pub struct StampParseError(pub String);

impl FileStamp {
    /// A stamp for the given date/time and counter (the counter is clamped to 9999).
    pub fn new(datetime: NaiveDateTime, counter: u16) -> Self {
        Self {
            datetime: datetime.with_nanosecond(0).unwrap_or(datetime),
            counter: counter.min(9999),
        }
    }

    /// The current local time with a counter derived from the sub-second part, so that two files
    /// stamped within one second still differ (the counter is what OFTP 2.0 provides it for).
    pub fn now() -> Self {
        let now = chrono::Local::now().naive_local();
        let counter = u16::try_from(now.nanosecond() / 100_000)
            .unwrap_or(0)
            .min(9999);
        Self::new(now, counter)
    }

    /// Parses the journal form `yyyyMMddHHmmssffff` (counter optional).
    pub fn parse(text: &str) -> Result<Self, StampParseError> {
        let err = || StampParseError(text.to_owned());
        if !(text.len() == 14 || text.len() == 18) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| text[r].parse::<u32>().map_err(|_| err());
        let date =
            NaiveDate::from_ymd_opt(num(0..4)? as i32, num(4..6)?, num(6..8)?).ok_or_else(err)?;
        let datetime = date
            .and_hms_opt(num(8..10)?, num(10..12)?, num(12..14)?)
            .ok_or_else(err)?;
        let counter = if text.len() == 18 {
            num(14..18)? as u16
        } else {
            0
        };
        Ok(Self::new(datetime, counter))
    }

    /// Formats with a .NET-style pattern as the seed's `%VirtualFileDate:FORMAT%` macro does:
    /// `yyyy yy MM dd HH hh mm ss tt` and `f`..`ffff` (the counter); text in single quotes and any
    /// other character is copied as is.
    pub fn format(&self, pattern: &str) -> String {
        let d = &self.datetime;
        let mut out = String::with_capacity(pattern.len() + 8);
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    out.push(chars[i]);
                    i += 1;
                }
                i += 1;
                continue;
            }
            let run = chars[i..].iter().take_while(|&&x| x == c).count();
            let mut push_num = |value: u32, width: usize| {
                out.push_str(&format!("{value:0width$}"));
            };
            match (c, run) {
                ('y', n) if n >= 4 => push_num(d.year().unsigned_abs(), 4),
                ('y', _) => push_num(d.year().unsigned_abs() % 100, 2),
                ('M', _) => push_num(d.month(), 2.min(run)),
                ('d', _) => push_num(d.day(), 2.min(run)),
                ('H', _) => push_num(d.hour(), 2.min(run)),
                ('h', _) => push_num(d.hour12().1, 2.min(run)),
                ('m', _) => push_num(d.minute(), 2.min(run)),
                ('s', _) => push_num(d.second(), 2.min(run)),
                ('t', _) => out.push_str(if d.hour12().0 { "PM" } else { "AM" }),
                ('f', n) => {
                    let n = n.min(4);
                    let digits = format!("{:04}", self.counter);
                    out.push_str(&digits[..n]);
                }
                _ => {
                    for _ in 0..run {
                        out.push(c);
                    }
                }
            }
            i += run;
        }
        out
    }
}

impl fmt::Display for FileStamp {
    /// The journal form `yyyyMMddHHmmssffff`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format("yyyyMMddHHmmssffff"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> FileStamp {
        let dt = NaiveDate::from_ymd_opt(2026, 3, 7)
            .unwrap()
            .and_hms_opt(14, 5, 9)
            .unwrap();
        FileStamp::new(dt, 42)
    }

    #[test]
    fn display_and_parse_round_trip() {
        let s = stamp();
        assert_eq!(s.to_string(), "202603071405090042");
        assert_eq!(FileStamp::parse("202603071405090042").unwrap(), s);
        let no_counter = FileStamp::parse("20260307140509").unwrap();
        assert_eq!(no_counter.counter, 0);
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "2026030714050",
            "20261307140509",
            "2026030714050x",
            "20260307250509",
        ] {
            assert!(FileStamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dotnet_style_format() {
        let s = stamp();
        assert_eq!(s.format("MM/dd/yyyy HH:mm:ss"), "03/07/2026 14:05:09");
        assert_eq!(s.format("yyMMdd-'T'HHmm"), "260307-T1405");
        assert_eq!(s.format("hh tt ff"), "02 PM 00");
        assert_eq!(s.format("ffff"), "0042");
    }
}
