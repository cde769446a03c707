//! The date/time stamp that, with the dataset name and the originator, identifies a virtual file.
//!
//! OFTP 1.4 and 2.0 (levels 4 and 5) carry `DATE` as `CCYYMMDD` and `TIME` as `HHMMSScccc` (the
//! last four digits a counter 0001-9999 that makes stamps unique within one second); OFTP 1.2 and
//! 1.3 carry `YYMMDD` and `HHMMSS`. This module keeps one runtime-side representation
//! ([`FileStamp`]) that round-trips through the journal and the file name macros, and converts to
//! and from the protocol crate's [`VirtualFileTime`] (`From` both ways).
//!
//! Validity is the protocol crate's: a calendar date and a time of day
//! ([`VirtualFileTime::is_calendar_date`], [`VirtualFileTime::is_time_of_day`]). The codec lets
//! no other stamp in from a partner (ESID 06), so [`FileStamp::parse`] and the journal refuse
//! the rest too.

use std::fmt;

use chrono::{Datelike, NaiveDateTime, Timelike};
use oftp_proto::codec::VirtualFileTime;

/// Date, time and counter of a virtual file (`SFIDDATE` + `SFIDTIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileStamp {
    /// Year (0..=9999).
    pub year: u16,
    /// Month (1..=12).
    pub month: u8,
    /// Day (1..=28/29/30/31 as the month has).
    pub day: u8,
    /// Hour (0..=23).
    pub hour: u8,
    /// Minute (0..=59).
    pub minute: u8,
    /// Second (0..=60).
    pub second: u8,
    /// The `cccc` counter of OFTP 1.4 and 2.0 (1..=9999); 0 for a stamp of OFTP 1.2/1.3.
    pub counter: u16,
}

impl From<FileStamp> for VirtualFileTime {
    fn from(s: FileStamp) -> Self {
        VirtualFileTime {
            year: s.year,
            month: s.month,
            day: s.day,
            hour: s.hour,
            minute: s.minute,
            second: s.second,
            counter: s.counter,
        }
    }
}

impl From<VirtualFileTime> for FileStamp {
    fn from(t: VirtualFileTime) -> Self {
        FileStamp {
            year: t.year,
            month: t.month,
            day: t.day,
            hour: t.hour,
            minute: t.minute,
            second: t.second,
            counter: t.counter,
        }
    }
}

/// A stamp text that is not `yyyyMMddHHmmss` followed by an optional 4-digit counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid virtual file stamp {0:?}: expected a valid date and time as yyyyMMddHHmmss plus an optional 4-digit counter"
)]
pub struct StampParseError(pub String);

impl FileStamp {
    /// A stamp from a calendar date/time and a counter (clamped to 9999).
    pub fn new(datetime: NaiveDateTime, counter: u16) -> Self {
        Self {
            year: u16::try_from(datetime.year().clamp(0, 9999)).unwrap_or(0),
            month: datetime.month() as u8,
            day: datetime.day() as u8,
            hour: datetime.hour() as u8,
            minute: datetime.minute() as u8,
            second: datetime.second().min(60) as u8,
            counter: counter.min(9999),
        }
    }

    /// The current local time with a counter derived from the sub-second part, so that two files
    /// stamped within one second still differ (the counter is what OFTP 1.4 and 2.0 provide it
    /// for). The counter is 1..=9999, never the 0000 RFC 5024 5.3.3 does not allow.
    pub fn now() -> Self {
        let now = chrono::Local::now().naive_local();
        let counter = u16::try_from(now.nanosecond() / 100_000)
            .unwrap_or(0)
            .clamp(1, 9999);
        Self::new(now, counter)
    }

    /// Whether the stamp is a calendar date and a time of day with a counter of at most 9999
    /// (0 is the counter of an OFTP 1.2/1.3 stamp).
    pub fn is_valid(&self) -> bool {
        let t = VirtualFileTime::from(*self);
        t.is_calendar_date() && t.is_time_of_day()
    }

    /// Parses the journal form `yyyyMMddHHmmssffff` (counter optional).
    pub fn parse(text: &str) -> Result<Self, StampParseError> {
        let err = || StampParseError(text.to_owned());
        if !(text.len() == 14 || text.len() == 18) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| text[r].parse::<u16>().map_err(|_| err());
        let stamp = Self {
            year: num(0..4)?,
            month: num(4..6)? as u8,
            day: num(6..8)? as u8,
            hour: num(8..10)? as u8,
            minute: num(10..12)? as u8,
            second: num(12..14)? as u8,
            counter: if text.len() == 18 { num(14..18)? } else { 0 },
        };
        if stamp.is_valid() {
            Ok(stamp)
        } else {
            Err(err())
        }
    }

    /// Formats with a .NET-style pattern as the seed's `%VirtualFileDate:FORMAT%` macro does:
    /// `yyyy yy MM dd HH hh mm ss tt` and `f`..`ffff` (the counter); text in single quotes and any
    /// other character is copied as is.
    pub fn format(&self, pattern: &str) -> String {
        let mut out = String::with_capacity(pattern.len() + 8);
        let chars: Vec<char> = pattern.chars().collect();
        let hour12 = match self.hour % 12 {
            0 => 12,
            h => h,
        };
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
                ('y', n) if n >= 4 => push_num(u32::from(self.year), 4),
                ('y', _) => push_num(u32::from(self.year) % 100, 2),
                ('M', _) => push_num(u32::from(self.month), 2.min(run)),
                ('d', _) => push_num(u32::from(self.day), 2.min(run)),
                ('H', _) => push_num(u32::from(self.hour), 2.min(run)),
                ('h', _) => push_num(u32::from(hour12), 2.min(run)),
                ('m', _) => push_num(u32::from(self.minute), 2.min(run)),
                ('s', _) => push_num(u32::from(self.second), 2.min(run)),
                ('t', _) => out.push_str(if self.hour >= 12 { "PM" } else { "AM" }),
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

    use chrono::NaiveDate;

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
        let leap = FileStamp::parse("202402291405600001").unwrap();
        assert_eq!(leap.to_string(), "202402291405600001");
        assert_eq!(FileStamp::from(VirtualFileTime::from(leap)), leap);
    }

    #[test]
    fn now_has_a_counter_the_wire_allows() {
        for _ in 0..1000 {
            let s = FileStamp::now();
            assert!((1..=9999).contains(&s.counter), "{s}");
            assert!(s.is_valid());
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "2026030714050",
            "20261307140509",
            "2026030714050x",
            "20260307250509",
            // Not calendar dates: 31 February, 29 February of a common year, day 43.
            "202602311405090000",
            "20230229000000",
            "200606435186720000",
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
