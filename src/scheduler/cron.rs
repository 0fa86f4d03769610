//! Cron expressions evaluated in a time zone (croner + chrono-tz), with the
//! answers in UTC.
//!
//! Daylight-saving rules are croner's: a wall-clock time skipped by the
//! spring change runs at the first valid time after the gap (02:00 on the
//! night Europe/Berlin jumps from 02:00 to 03:00 runs at 03:00), and a time
//! repeated by the autumn change runs once, at its first occurrence.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

#[derive(Clone, Debug)]
pub struct Schedule {
    pub expression: String,
    pub timezone: Tz,
    cron: Cron,
}

impl Schedule {
    /// Five fields (minute hour day month weekday), or six with seconds
    /// first; `timezone` is an IANA name such as `UTC` or `Europe/Berlin`.
    pub fn parse(expression: &str, timezone: &str) -> Result<Schedule, String> {
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "{expression:?} is not a cron expression; expected five fields such as \"0 2 * * *\" \
                 (or six, with seconds first)"
            ));
        }
        let cron = Cron::from_str(expression)
            .map_err(|e| format!("{expression:?} is not a valid cron expression: {e}"))?;
        let timezone = Tz::from_str(timezone).map_err(|_| {
            format!("{timezone:?} is not a time zone; expected an IANA name such as \"UTC\" or \"Europe/Berlin\"")
        })?;
        Ok(Schedule {
            expression: expression.to_string(),
            timezone,
            cron,
        })
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner keeps the sub-second part of its input; occurrences are whole seconds.
        let t = whole_second(t);
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.timezone), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last occurrence at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = whole_second(t);
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.timezone), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).expect("in range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn next_n(s: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from;
        for _ in 0..n {
            t = s.next_after(t).unwrap();
            out.push(t);
        }
        out
    }

    #[test]
    fn daily_at_two_utc_across_month_and_year_ends() {
        let s = Schedule::parse("0 2 * * *", "UTC").unwrap();
        assert_eq!(
            next_n(&s, utc(2025, 12, 30, 12, 0), 3),
            vec![
                utc(2025, 12, 31, 2, 0),
                utc(2026, 1, 1, 2, 0),
                utc(2026, 1, 2, 2, 0)
            ]
        );
        assert_eq!(
            next_n(&s, utc(2028, 2, 28, 2, 0), 2),
            vec![utc(2028, 2, 29, 2, 0), utc(2028, 3, 1, 2, 0)],
            "leap day, and 'after' is strict"
        );
        assert_eq!(
            s.last_at_or_before(utc(2026, 1, 1, 2, 0)),
            Some(utc(2026, 1, 1, 2, 0))
        );
        assert_eq!(
            s.last_at_or_before(utc(2026, 1, 1, 1, 59)),
            Some(utc(2025, 12, 31, 2, 0))
        );
    }

    #[test]
    fn weekly_on_sunday_at_three_utc() {
        let s = Schedule::parse("0 3 * * 0", "UTC").unwrap();
        // 2025-12-28 and 2026-01-04 are Sundays.
        assert_eq!(
            next_n(&s, utc(2025, 12, 25, 0, 0), 2),
            vec![utc(2025, 12, 28, 3, 0), utc(2026, 1, 4, 3, 0)]
        );
        // 2026-02-28 is a Saturday: the next Sunday is in March.
        assert_eq!(
            s.next_after(utc(2026, 2, 28, 12, 0)),
            Some(utc(2026, 3, 1, 3, 0))
        );
    }

    #[test]
    fn daily_at_two_in_berlin_across_both_dst_changes() {
        let s = Schedule::parse("0 2 * * *", "Europe/Berlin").unwrap();
        // Winter: 02:00 CET = 01:00 UTC.
        assert_eq!(
            s.next_after(utc(2025, 3, 28, 12, 0)),
            Some(utc(2025, 3, 29, 1, 0))
        );
        // 2025-03-30: 02:00 does not exist (clocks jump to 03:00 CEST = 01:00 UTC).
        assert_eq!(
            s.next_after(utc(2025, 3, 29, 12, 0)),
            Some(utc(2025, 3, 30, 1, 0))
        );
        // Summer: 02:00 CEST = 00:00 UTC.
        assert_eq!(
            s.next_after(utc(2025, 3, 30, 12, 0)),
            Some(utc(2025, 3, 31, 0, 0))
        );
        // 2025-10-26: 02:00 happens twice; the job runs once, at the first (CEST, 00:00 UTC).
        let runs = next_n(&s, utc(2025, 10, 25, 12, 0), 2);
        assert_eq!(runs, vec![utc(2025, 10, 26, 0, 0), utc(2025, 10, 27, 1, 0)]);
    }

    #[test]
    fn weekly_in_new_york_across_a_year_end_and_dst() {
        let s = Schedule::parse("0 3 * * 0", "America/New_York").unwrap();
        // EST: 03:00 = 08:00 UTC; 2025-12-28 and 2026-01-04 are Sundays.
        assert_eq!(
            next_n(&s, utc(2025, 12, 24, 0, 0), 2),
            vec![utc(2025, 12, 28, 8, 0), utc(2026, 1, 4, 8, 0)]
        );
        // 2026-03-08 (a Sunday) clocks go 02:00 -> 03:00: 03:00 EDT = 07:00 UTC.
        assert_eq!(
            s.next_after(utc(2026, 3, 7, 0, 0)),
            Some(utc(2026, 3, 8, 7, 0))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        assert!(Schedule::parse("daily", "UTC")
            .unwrap_err()
            .contains("five fields"));
        assert!(Schedule::parse("0 25 * * *", "UTC")
            .unwrap_err()
            .contains("not a valid"));
        assert!(Schedule::parse("0 2 * * *", "Mars/Olympus")
            .unwrap_err()
            .contains("time zone"));
        let every_second = Schedule::parse("* * * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            every_second.next_after(t),
            Some(t + chrono::Duration::seconds(1))
        );
    }
}
