//! Call schedules: when the gateway calls a partner on its own.
//!
//! A partner's schedule is an interval ("call at least every 4 hours"), calendar times in cron
//! syntax read in a time zone ("at 06:30 on working days, Europe/Berlin"), or both; the next
//! call is the earliest of them. The operator writes it in the partner's entry of the oftp
//! configuration:
//!
//! ```toml
//! [partners.schedule]
//! interval_minutes = 240                      # at most this long after the last call
//! calendar = ["30 6 * * MON-FRI", "0 18 * * *"]  # cron: minute hour day-of-month month day-of-week
//! time_zone = "Europe/Berlin"                 # IANA name the calendar is read in; default "UTC"
//! ```
//!
//! Everything here is pure: the caller passes the clock ([`Schedule::next_after`],
//! [`Schedule::next_call`]), so tests use fixed instants.
//!
//! Rules, as tested below:
//! - The interval counts real time from the start of the last call, whatever started it (a
//!   calendar time, a new file in the outbox, `oftp call`): across a change of daylight saving
//!   time "240 minutes" stays 4 hours of real time.
//! - Calendar times are wall-clock times of `time_zone`. A time that does not exist on the day
//!   the clock goes forward (02:30 in Europe/Berlin on the last Sunday of March) is called at
//!   the first instant after the gap (03:00 summer time); a time that happens twice on the day
//!   the clock goes back is called once, at its first occurrence. Patterns with a wildcard or
//!   step in the hour (`0 * * * *`) run in both halves of the repeated hour, as cron does
//!   (croner's OCPS rules).
//! - Calls missed while the daemon was down are made once, at start, not once per missed slot:
//!   [`Schedule::next_call`] of the last call gives "now" when a slot passed since.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;

/// A partner's `[partners.schedule]` table as the operator writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Call again at most this many minutes after the start of the last call.
    #[serde(default)]
    pub interval_minutes: Option<u64>,
    /// Calendar times in five-field cron syntax (`minute hour day-of-month month
    /// day-of-week`, or `@daily`, `@hourly`, ...), read in `time_zone`.
    #[serde(default)]
    pub calendar: Vec<String>,
    /// IANA time zone of the calendar times (`Europe/Berlin`, `America/New_York`); default UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// Why a schedule cannot be used; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Neither an interval nor a calendar time.
    #[error(
        "the schedule has neither interval_minutes nor calendar; give one of them, or remove \
         the schedule table to call this partner only when files arrive or on demand"
    )]
    Empty,
    /// `interval_minutes = 0`.
    #[error("interval_minutes must be at least 1 (or left out for calendar times only)")]
    ZeroInterval,
    /// An interval too large to add to a date.
    #[error("interval_minutes = {0} is too large; use at most 52560000 (100 years)")]
    IntervalTooLarge(u64),
    /// A calendar entry that is not a cron pattern.
    #[error(
        "calendar entry {pattern:?} is not a cron pattern ({reason}); write five fields \
         \"minute hour day-of-month month day-of-week\", e.g. \"30 6 * * MON-FRI\", or @daily, \
         @hourly, @weekly, @monthly, @yearly"
    )]
    BadCron {
        /// The entry as written.
        pattern: String,
        /// What the parser objected to.
        reason: String,
    },
    /// A calendar entry that is a valid pattern but names no time that ever comes (30 February).
    #[error("calendar entry {0:?} never matches a date (e.g. 30 February); check day and month")]
    NeverMatches(String),
    /// A time zone name the IANA database does not know.
    #[error(
        "unknown time zone {0:?}; use an IANA name such as \"UTC\", \"Europe/Berlin\" or \
         \"America/New_York\" (names are case-sensitive)"
    )]
    UnknownTimeZone(String),
}

/// One calendar entry: the text the operator wrote and the parsed pattern.
#[derive(Clone)]
struct CalendarTime {
    text: String,
    cron: Cron,
}

impl fmt::Debug for CalendarTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A validated call schedule (see the module documentation for the rules).
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Option<TimeDelta>,
    calendar: Vec<CalendarTime>,
    zone: Tz,
}

impl TryFrom<&ScheduleConfig> for Schedule {
    type Error = ScheduleError;

    fn try_from(config: &ScheduleConfig) -> Result<Self, ScheduleError> {
        let interval = match config.interval_minutes {
            None => None,
            Some(0) => return Err(ScheduleError::ZeroInterval),
            Some(m) => Some(
                i64::try_from(m)
                    .ok()
                    .filter(|&m| m <= 100 * 365 * 24 * 60)
                    .and_then(TimeDelta::try_minutes)
                    .ok_or(ScheduleError::IntervalTooLarge(m))?,
            ),
        };
        let zone = match config.time_zone.as_deref() {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name.trim())
                .map_err(|_| ScheduleError::UnknownTimeZone(name.to_owned()))?,
        };
        // Minutes are the finest grain: a seconds field would let a typo call a partner
        // every second.
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let calendar = config
            .calendar
            .iter()
            .map(|text| {
                let cron = parser
                    .parse(text.trim())
                    .map_err(|e| ScheduleError::BadCron {
                        pattern: text.clone(),
                        reason: e.to_string(),
                    })?;
                // A pattern that matches at all matches within 28 years (the calendar
                // repeats): look from a fixed instant, so that validation needs no clock.
                let reference = DateTime::<Utc>::UNIX_EPOCH.with_timezone(&zone);
                cron.find_next_occurrence(&reference, false)
                    .map_err(|_| ScheduleError::NeverMatches(text.clone()))?;
                Ok(CalendarTime {
                    text: text.trim().to_owned(),
                    cron,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if interval.is_none() && calendar.is_empty() {
            return Err(ScheduleError::Empty);
        }
        Ok(Schedule {
            interval,
            calendar,
            zone,
        })
    }
}

impl Schedule {
    /// The earliest scheduled instant strictly after `after`: `after` plus the interval, or
    /// the next calendar time, whichever comes first. `None` only when no calendar time comes
    /// before the end of chrono's range and there is no interval.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let by_interval = self.interval.and_then(|i| after.checked_add_signed(i));
        let local = after.with_timezone(&self.zone);
        let by_calendar = self
            .calendar
            .iter()
            .filter_map(|c| c.cron.find_next_occurrence(&local, false).ok())
            .map(|t| t.with_timezone(&Utc))
            .min();
        by_interval.into_iter().chain(by_calendar).min()
    }

    /// When the next scheduled call is due, given when the last call started.
    ///
    /// - A slot that passed since the last call (the daemon was down, or busy) gives `now`:
    ///   one call makes up for all of them. Once that call is made, it is the last call and the
    ///   next one comes from the schedule again.
    /// - Never called (`None`): with an interval, now; calendar times only, the next one after
    ///   `now`.
    /// - A last call in the future (the clock was set back) counts as made `now`, so the
    ///   interval does not stretch by the time the clock jumped.
    pub fn next_call(
        &self,
        last_call: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let due = match last_call {
            Some(last) => self.next_after(last.min(now))?,
            None if self.interval.is_some() => now,
            None => self.next_after(now)?,
        };
        Some(due.max(now))
    }

    /// The time zone calendar times are read in.
    pub fn time_zone(&self) -> Tz {
        self.zone
    }
}

impl fmt::Display for Schedule {
    /// What `oftp check-config` can print: `every 240 min; 30 6 * * MON-FRI (Europe/Berlin)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(i) = self.interval {
            parts.push(format!("every {} min", i.num_minutes()));
        }
        for c in &self.calendar {
            parts.push(format!("{} ({})", c.text, self.zone.name()));
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    fn schedule(toml_text: &str) -> Result<Schedule, ScheduleError> {
        let config: ScheduleConfig = toml::from_str(toml_text).expect("schedule table");
        Schedule::try_from(&config)
    }

    /// The calls a daemon polling every minute from `from` to `to` makes, starting from
    /// `last_call`.
    fn simulate(
        s: &Schedule,
        mut last_call: Option<DateTime<Utc>>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut calls = Vec::new();
        let mut now = from;
        while now <= to {
            if s.next_call(last_call, now).is_some_and(|due| due <= now) {
                calls.push(now);
                last_call = Some(now);
            }
            now += TimeDelta::minutes(1);
        }
        calls
    }

    #[test]
    fn parses_the_operator_table() {
        let s = schedule(
            r#"
            interval_minutes = 240
            calendar = ["30 6 * * MON-FRI", "@daily"]
            time_zone = "Europe/Berlin"
            "#,
        )
        .unwrap();
        assert_eq!(s.time_zone(), Tz::Europe__Berlin);
        assert_eq!(
            s.to_string(),
            "every 240 min; 30 6 * * MON-FRI (Europe/Berlin); @daily (Europe/Berlin)"
        );
    }

    #[test]
    fn time_zone_defaults_to_utc() {
        let s = schedule(r#"calendar = ["0 6 * * *"]"#).unwrap();
        assert_eq!(s.time_zone(), Tz::UTC);
        assert_eq!(
            s.next_after(utc("2026-06-01T07:00:00Z")),
            Some(utc("2026-06-02T06:00:00Z"))
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = toml::from_str::<ScheduleConfig>("intervall_minutes = 5").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn bad_cron_says_what_to_write() {
        let e = schedule(r#"calendar = ["61 6 * * *"]"#).unwrap_err();
        assert!(matches!(e, ScheduleError::BadCron { .. }), "{e:?}");
        assert!(e.to_string().contains("\"61 6 * * *\""), "{e}");
        assert!(e.to_string().contains("minute hour"), "{e}");
        // Seconds are not allowed: six fields are an error, not "every second".
        let e = schedule(r#"calendar = ["* * * * * *"]"#).unwrap_err();
        assert!(matches!(e, ScheduleError::BadCron { .. }), "{e:?}");
        let e = schedule(r#"calendar = [""]"#).unwrap_err();
        assert!(matches!(e, ScheduleError::BadCron { .. }), "{e:?}");
    }

    #[test]
    fn pattern_that_never_matches_is_refused() {
        let e = schedule(r#"calendar = ["0 6 30 2 *"]"#).unwrap_err();
        assert_eq!(e, ScheduleError::NeverMatches("0 6 30 2 *".into()));
    }

    #[test]
    fn unknown_time_zone_is_refused() {
        let e = schedule(
            r#"calendar = ["0 6 * * *"]
               time_zone = "Europe/Berlln""#,
        )
        .unwrap_err();
        assert_eq!(e, ScheduleError::UnknownTimeZone("Europe/Berlln".into()));
        assert!(e.to_string().contains("IANA"), "{e}");
    }

    #[test]
    fn empty_or_zero_schedule_is_refused() {
        assert_eq!(schedule("").unwrap_err(), ScheduleError::Empty);
        assert_eq!(
            schedule("interval_minutes = 0").unwrap_err(),
            ScheduleError::ZeroInterval
        );
        assert_eq!(
            schedule("interval_minutes = 18446744073709551615").unwrap_err(),
            ScheduleError::IntervalTooLarge(u64::MAX)
        );
    }

    #[test]
    fn interval_counts_from_the_last_call() {
        let s = schedule("interval_minutes = 90").unwrap();
        assert_eq!(
            s.next_after(utc("2026-06-01T10:17:00Z")),
            Some(utc("2026-06-01T11:47:00Z"))
        );
    }

    #[test]
    fn interval_and_calendar_take_the_earliest() {
        let s = schedule(
            r#"interval_minutes = 240
               calendar = ["0 6 * * *"]"#,
        )
        .unwrap();
        // 03:00 + 4 h = 07:00, but 06:00 comes first.
        assert_eq!(
            s.next_after(utc("2026-06-01T03:00:00Z")),
            Some(utc("2026-06-01T06:00:00Z"))
        );
        // After the 06:00 call the interval runs from it.
        assert_eq!(
            s.next_after(utc("2026-06-01T06:00:00Z")),
            Some(utc("2026-06-01T10:00:00Z"))
        );
        // A day of it: 06, 10, 14, 18, 22, then 02 and the 06:00 calendar time again
        // (02 + 4 h = 06 as well: one call).
        let calls = simulate(
            &s,
            Some(utc("2026-06-01T03:00:00Z")),
            utc("2026-06-01T03:00:00Z"),
            utc("2026-06-02T06:30:00Z"),
        );
        let hours: Vec<String> = calls
            .iter()
            .map(|t| t.format("%d %H:%M").to_string())
            .collect();
        assert_eq!(
            hours,
            [
                "01 06:00", "01 10:00", "01 14:00", "01 18:00", "01 22:00", "02 02:00", "02 06:00"
            ]
        );
    }

    #[test]
    fn calls_missed_during_downtime_are_made_once() {
        let s = schedule(r#"calendar = ["0 * * * *"]"#).unwrap();
        // Last call at 08:00, daemon down until 14:20: six slots missed.
        let last = Some(utc("2026-06-01T08:00:00Z"));
        let now = utc("2026-06-01T14:20:00Z");
        assert_eq!(s.next_call(last, now), Some(now));
        let calls = simulate(&s, last, now, utc("2026-06-01T15:30:00Z"));
        assert_eq!(
            calls,
            [utc("2026-06-01T14:20:00Z"), utc("2026-06-01T15:00:00Z")]
        );
        // The same with an interval.
        let s = schedule("interval_minutes = 30").unwrap();
        let calls = simulate(&s, last, now, utc("2026-06-01T15:00:00Z"));
        assert_eq!(
            calls,
            [utc("2026-06-01T14:20:00Z"), utc("2026-06-01T14:50:00Z")]
        );
    }

    #[test]
    fn never_called_partner() {
        let now = utc("2026-06-01T10:17:00Z");
        let s = schedule("interval_minutes = 60").unwrap();
        assert_eq!(s.next_call(None, now), Some(now));
        let s = schedule(r#"calendar = ["0 12 * * *"]"#).unwrap();
        assert_eq!(s.next_call(None, now), Some(utc("2026-06-01T12:00:00Z")));
    }

    #[test]
    fn clock_set_back_does_not_stretch_the_interval() {
        let s = schedule("interval_minutes = 60").unwrap();
        let now = utc("2026-06-01T10:00:00Z");
        // The journal says the last call was at 15:00: the clock was 5 hours fast then.
        let due = s.next_call(Some(utc("2026-06-01T15:00:00Z")), now);
        assert_eq!(due, Some(utc("2026-06-01T11:00:00Z")));
    }

    #[test]
    fn calendar_time_in_the_spring_gap_runs_after_the_gap() {
        // Europe/Berlin 2026-03-29: 02:00 CET becomes 03:00 CEST, so 02:30 does not exist.
        let s = schedule(
            r#"calendar = ["30 2 * * *"]
               time_zone = "Europe/Berlin""#,
        )
        .unwrap();
        // 28 March 02:30 CET = 01:30 UTC.
        let on_28th = utc("2026-03-28T01:30:00Z");
        assert_eq!(s.next_after(utc("2026-03-28T00:00:00Z")), Some(on_28th));
        // 29 March: the first instant after the gap, 03:00 CEST = 01:00 UTC: once.
        let on_29th = s.next_after(on_28th).unwrap();
        assert_eq!(on_29th, utc("2026-03-29T01:00:00Z"));
        // 30 March 02:30 CEST = 00:30 UTC.
        assert_eq!(s.next_after(on_29th), Some(utc("2026-03-30T00:30:00Z")));
    }

    #[test]
    fn calendar_time_in_the_autumn_overlap_runs_once() {
        // Europe/Berlin 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice
        // (00:30 UTC and 01:30 UTC).
        let s = schedule(
            r#"calendar = ["30 2 * * *"]
               time_zone = "Europe/Berlin""#,
        )
        .unwrap();
        let calls = simulate(
            &s,
            Some(utc("2026-10-24T12:00:00Z")),
            utc("2026-10-24T12:00:00Z"),
            utc("2026-10-26T12:00:00Z"),
        );
        assert_eq!(
            calls,
            [utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );
    }

    #[test]
    fn hourly_pattern_runs_in_both_halves_of_the_repeated_hour() {
        let s = schedule(
            r#"calendar = ["0 * * * *"]
               time_zone = "Europe/Berlin""#,
        )
        .unwrap();
        // 02:00 CEST = 00:00 UTC, 02:00 CET = 01:00 UTC: both are calls.
        let calls = simulate(
            &s,
            Some(utc("2026-10-24T23:30:00Z")),
            utc("2026-10-24T23:30:00Z"),
            utc("2026-10-25T02:30:00Z"),
        );
        assert_eq!(
            calls,
            [
                utc("2026-10-25T00:00:00Z"),
                utc("2026-10-25T01:00:00Z"),
                utc("2026-10-25T02:00:00Z")
            ]
        );
    }

    #[test]
    fn interval_is_real_time_across_a_clock_change() {
        let s = schedule(
            r#"interval_minutes = 120
               time_zone = "Europe/Berlin""#,
        )
        .unwrap();
        // 01:30 CEST (23:30 UTC) + 2 h = 02:30 CET (01:30 UTC), not 03:30 on the wall clock.
        assert_eq!(
            s.next_after(utc("2026-10-24T23:30:00Z")),
            Some(utc("2026-10-25T01:30:00Z"))
        );
    }
}
