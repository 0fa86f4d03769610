//! Partition periods in UTC: boundaries and names.
//!
//! All arithmetic is on `DateTime<Utc>`, so a partition for March is
//! `[2025-03-01 00:00:00+00, 2025-04-01 00:00:00+00)` whatever the session or
//! server `TimeZone` is.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};

use crate::config::{Interval, Retention};

/// Midnight UTC of `date`.
pub fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// Start of the period holding `t`.
pub fn floor(interval: Interval, t: DateTime<Utc>) -> DateTime<Utc> {
    let d = t.date_naive();
    let start = match interval {
        Interval::Day => d,
        Interval::Week => d - Duration::days(d.weekday().num_days_from_monday() as i64),
        Interval::Month => d.with_day(1).expect("day 1 exists"),
    };
    midnight(start)
}

/// Start of the period after the one starting at `start`.
pub fn next(interval: Interval, start: DateTime<Utc>) -> DateTime<Utc> {
    match interval {
        Interval::Day => start + Duration::days(1),
        Interval::Week => start + Duration::days(7),
        Interval::Month => start + Months::new(1),
    }
}

/// `n` periods after `start` (which must be a period start).
pub fn advance(interval: Interval, start: DateTime<Utc>, n: u32) -> DateTime<Utc> {
    match interval {
        Interval::Day => start + Duration::days(n as i64),
        Interval::Week => start + Duration::days(7 * n as i64),
        Interval::Month => start + Months::new(n),
    }
}

/// Whether `t` is exactly a period boundary.
pub fn is_boundary(interval: Interval, t: DateTime<Utc>) -> bool {
    floor(interval, t) == t
}

/// The instant before which data is past retention, as seen at `now`.
pub fn retention_cutoff(retention: Retention, now: DateTime<Utc>) -> DateTime<Utc> {
    match retention {
        Retention::Days(n) => now
            .checked_sub_signed(Duration::days(n as i64))
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        Retention::Weeks(n) => now
            .checked_sub_signed(Duration::weeks(n as i64))
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        Retention::Months(n) => now
            .checked_sub_months(Months::new(n))
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    }
}

/// The partition name for the period starting at `start`.
pub fn render_name(template: &str, table: &str, start: DateTime<Utc>) -> String {
    let d = start.date_naive();
    let iso = d.iso_week();
    template
        .replace("{table}", table)
        .replace("{YYYY}", &format!("{:04}", d.year()))
        .replace("{MM}", &format!("{:02}", d.month()))
        .replace("{DD}", &format!("{:02}", d.day()))
        .replace("{IYYY}", &format!("{:04}", iso.year()))
        .replace("{IW}", &format!("{:02}", iso.week()))
}

/// The bound as PostgreSQL should read it: an explicit UTC timestamp.
pub fn sql_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S+00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn month_floor_and_next_across_year_end() {
        assert_eq!(
            floor(Interval::Month, ts("2025-12-31T23:59:59Z")),
            ts("2025-12-01T00:00:00Z")
        );
        assert_eq!(
            next(Interval::Month, ts("2025-12-01T00:00:00Z")),
            ts("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            next(Interval::Month, ts("2024-01-01T00:00:00Z")),
            ts("2024-02-01T00:00:00Z")
        );
    }

    #[test]
    fn leap_years() {
        assert_eq!(
            next(Interval::Day, ts("2024-02-28T00:00:00Z")),
            ts("2024-02-29T00:00:00Z")
        );
        assert_eq!(
            next(Interval::Day, ts("2024-02-29T00:00:00Z")),
            ts("2024-03-01T00:00:00Z")
        );
        assert_eq!(
            next(Interval::Day, ts("2025-02-28T00:00:00Z")),
            ts("2025-03-01T00:00:00Z")
        );
        assert_eq!(
            next(Interval::Month, ts("2024-02-01T00:00:00Z")),
            ts("2024-03-01T00:00:00Z")
        );
    }

    #[test]
    fn weeks_start_on_iso_monday() {
        // 2025-01-01 is a Wednesday; its ISO week 1 starts Monday 2024-12-30.
        assert_eq!(
            floor(Interval::Week, ts("2025-01-01T12:00:00Z")),
            ts("2024-12-30T00:00:00Z")
        );
        assert_eq!(
            render_name("{table}_{IYYY}_w{IW}", "t", ts("2024-12-30T00:00:00Z")),
            "t_2025_w01"
        );
        // 2020 has an ISO week 53.
        assert_eq!(
            render_name("{table}_{IYYY}_w{IW}", "t", ts("2020-12-28T00:00:00Z")),
            "t_2020_w53"
        );
    }

    #[test]
    fn names_follow_the_template() {
        assert_eq!(
            render_name(
                "{table}_{YYYY}_{MM}",
                "audit_logs",
                ts("2025-03-01T00:00:00Z")
            ),
            "audit_logs_2025_03"
        );
        assert_eq!(
            render_name("{table}_{YYYY}_{MM}_{DD}", "a", ts("2025-03-09T00:00:00Z")),
            "a_2025_03_09"
        );
    }

    #[test]
    fn retention_cutoffs() {
        let now = ts("2025-03-31T10:00:00Z");
        assert_eq!(
            retention_cutoff(Retention::Months(1), now),
            ts("2025-02-28T10:00:00Z")
        );
        assert_eq!(
            retention_cutoff(Retention::Days(30), now),
            ts("2025-03-01T10:00:00Z")
        );
        assert_eq!(
            retention_cutoff(Retention::Weeks(2), now),
            ts("2025-03-17T10:00:00Z")
        );
    }

    #[test]
    fn bounds_are_explicit_utc() {
        assert_eq!(
            sql_timestamp(ts("2025-03-01T00:00:00Z")),
            "2025-03-01 00:00:00+00"
        );
    }
}
