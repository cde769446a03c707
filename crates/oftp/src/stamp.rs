//! The date/time stamp that, with the dataset name and the originator, identifies a virtual file.
//!
//! OFTP 1.4 and 2.0 (levels 4 and 5) carry `DATE` as `CCYYMMDD` and `TIME` as `HHMMSScccc` (the
//! last four digits a counter 0001-9999 that makes stamps unique within one second); OFTP 1.2 and
//! 1.3 carry `YYMMDD` and `HHMMSS`.
//!
//! There is one stamp type: the protocol crate's [`VirtualFileTime`], the value the codec
//! decodes and encodes, named [`FileStamp`] here. The runtime carries it unchanged from the
//! SFID into the journal, the handler events and the EERP/NERP, with no copy and no
//! conversion. What only the runtime needs is [`FileStampExt`]: the clock ([`now`]), chrono
//! date-times, the 18-digit text form the journal stores and `oftp` prints ([`digits`],
//! [`parse`]), and the `.NET`-style patterns of the file name macros ([`format`]). These stay
//! out of `oftp-proto`, which has no clock and no chrono and knows nothing of journals or
//! file names.
//!
//! Validity is the protocol crate's: a calendar date and a time of day
//! ([`VirtualFileTime::is_calendar_date`], [`VirtualFileTime::is_time_of_day`]). The codec lets
//! no other stamp in from a partner (ESID 06), so [`parse`] and the journal refuse the rest too.
//!
//! The stamp's `Display` is the codec's (`2026-03-07T14:05:09.0042`, used in logs); the
//! journal form is [`digits`].
//!
//! [`now`]: FileStampExt::now
//! [`digits`]: FileStampExt::digits
//! [`parse`]: FileStampExt::parse
//! [`format`]: FileStampExt::format

use chrono::{Datelike, NaiveDateTime, Timelike};
pub use oftp_proto::codec::VirtualFileTime;

/// Date, time and counter of a virtual file (`SFIDDATE` + `SFIDTIME`): the codec's type.
///
/// Fields: `year` (0..=9999), `month`, `day`, `hour`, `minute`, `second` (60 for a leap
/// second), and `counter`, the `cccc` of OFTP 1.4 and 2.0 (1..=9999; 0 for a stamp of OFTP
/// 1.2/1.3). The runtime's operations on it are in [`FileStampExt`].
pub type FileStamp = VirtualFileTime;

/// A stamp text that is not `yyyyMMddHHmmss` followed by an optional 4-digit counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid virtual file stamp {0:?}: expected a valid date and time as yyyyMMddHHmmss plus an optional 4-digit counter"
)]
pub struct StampParseError(pub String);

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::FileStamp {}
}

/// What the runtime does with a [`FileStamp`] beyond the protocol: the clock, chrono
/// date-times, the journal's text form and the file name macro patterns. Implemented for
/// [`FileStamp`] only (`use oftp::stamp::FileStampExt` to call these).
pub trait FileStampExt: sealed::Sealed + Sized {
    /// A stamp from a calendar date/time and a counter (clamped to 9999).
    fn from_datetime(datetime: NaiveDateTime, counter: u16) -> Self;

    /// The current local time with a counter derived from the sub-second part, so that two
    /// files stamped within one second still differ (the counter is what OFTP 1.4 and 2.0
    /// provide it for). The counter is 1..=9999, never the 0000 RFC 5024 5.3.3 does not allow.
    fn now() -> Self;

    /// Whether the stamp is a calendar date and a time of day with a counter of at most 9999
    /// (0 is the counter of an OFTP 1.2/1.3 stamp).
    fn is_valid(&self) -> bool;

    /// Parses the journal form `yyyyMMddHHmmssffff` (counter optional).
    fn parse(text: &str) -> Result<Self, StampParseError>;

    /// The journal form `yyyyMMddHHmmssffff` (`CCYYMMDD` and `HHMMSScccc` side by side): what
    /// the journal stores, `%VirtualFileDate%` gives and `oftp` prints.
    fn digits(&self) -> String;

    /// Formats with a .NET-style pattern as the seed's `%VirtualFileDate:FORMAT%` macro does:
    /// `yyyy yy MM dd HH hh mm ss tt` and `f`..`ffff` (the counter); text in single quotes and
    /// any other character is copied as is.
    fn format(&self, pattern: &str) -> String;
}

impl FileStampExt for FileStamp {
    fn from_datetime(datetime: NaiveDateTime, counter: u16) -> Self {
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

    fn now() -> Self {
        let now = chrono::Local::now().naive_local();
        let counter = u16::try_from(now.nanosecond() / 100_000)
            .unwrap_or(0)
            .clamp(1, 9999);
        Self::from_datetime(now, counter)
    }

    fn is_valid(&self) -> bool {
        self.is_calendar_date() && self.is_time_of_day()
    }

    fn parse(text: &str) -> Result<Self, StampParseError> {
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

    fn digits(&self) -> String {
        format!("{}{}", self.date_string(), self.time_string())
    }

    fn format(&self, pattern: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::NaiveDate;

    fn stamp() -> FileStamp {
        let dt = NaiveDate::from_ymd_opt(2026, 3, 7)
            .unwrap()
            .and_hms_opt(14, 5, 9)
            .unwrap();
        FileStamp::from_datetime(dt, 42)
    }

    #[test]
    fn digits_and_parse_round_trip() {
        let s = stamp();
        assert_eq!(s.digits(), "202603071405090042");
        assert_eq!(FileStamp::parse("202603071405090042").unwrap(), s);
        let no_counter = FileStamp::parse("20260307140509").unwrap();
        assert_eq!(no_counter.counter, 0);
        let leap = FileStamp::parse("202402291405600001").unwrap();
        assert_eq!(leap.digits(), "202402291405600001");
    }

    #[test]
    fn the_journal_form_is_the_wire_date_and_time_side_by_side() {
        let s = stamp();
        assert_eq!(
            s.digits(),
            format!("{}{}", s.date_string(), s.time_string())
        );
        // A stamp of OFTP 1.2/1.3 has counter 0, written as 0000.
        let old = FileStamp::parse("20260307140509").unwrap();
        assert_eq!(old.digits(), "202603071405090000");
        assert_eq!(FileStamp::parse(&old.digits()).unwrap(), old);
    }

    #[test]
    fn now_has_a_counter_the_wire_allows() {
        for _ in 0..1000 {
            let s = FileStamp::now();
            assert!((1..=9999).contains(&s.counter), "{}", s.digits());
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
