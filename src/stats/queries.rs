//! Slow and frequent statements on the managed tables, over a real N-day
//! window.
//!
//! pg_stat_statements only counts up from its last reset, so "the last 7
//! days" needs a reading from 7 days ago: strata stores readings in
//! `strata.query_snapshots` (on each `maintain`, from the scheduler, or
//! `strata stats snapshot`) and subtracts the newest one at least N days
//! old. Readings taken before the last reset are not comparable and are
//! never used.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::TableSpec;
use crate::db::{DbError, Ident};

#[derive(Clone, Debug, Serialize)]
pub struct QueryStat {
    pub queryid: i64,
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub rows: i64,
    pub shared_blks_hit: i64,
    pub shared_blks_read: i64,
}

/// The window the numbers cover, and why when it is not the one asked for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    pub requested_days: u32,
    /// Start of the window: the baseline reading, or the statistics reset.
    pub from: Option<DateTime<Utc>>,
    pub to: DateTime<Utc>,
    /// `snapshot` (a reading N or more days old), `short_snapshot` (only a
    /// younger reading exists), or `since_reset` (no usable reading).
    pub basis: &'static str,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueryReport {
    /// Whether pg_stat_statements is usable in this database.
    pub available: bool,
    /// How to make it available, when it is not (or fully visible, when the
    /// role sees only its own statements).
    pub hint: Option<String>,
    pub window: Option<Window>,
    pub slowest: Vec<QueryStat>,
    pub most_frequent: Vec<QueryStat>,
}

/// A reading's time and the pg_stat_statements reset it was counted from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub captured_at: DateTime<Utc>,
    pub stats_reset: Option<DateTime<Utc>>,
}

/// Picks the baseline reading for an N-day window ending `now`: the newest
/// reading at least N days old taken since the current reset; failing that
/// the oldest reading since the reset (a shorter window, said so); failing
/// that none (cumulative since the reset).
pub fn choose_baseline(
    readings: &[Reading],
    current_reset: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    days: u32,
) -> (Option<Reading>, Window) {
    let cutoff = now - Duration::days(days as i64);
    let comparable: Vec<&Reading> = readings
        .iter()
        // Same reset value: counted from the same zero, so subtracting is valid.
        .filter(|r| r.stats_reset == current_reset && r.captured_at <= now)
        .collect();
    if let Some(best) = comparable
        .iter()
        .filter(|r| r.captured_at <= cutoff)
        .max_by_key(|r| r.captured_at)
    {
        return (
            Some(**best),
            Window {
                requested_days: days,
                from: Some(best.captured_at),
                to: now,
                basis: "snapshot",
                note: None,
            },
        );
    }
    if let Some(oldest) = comparable.iter().min_by_key(|r| r.captured_at) {
        let covered =
            crate::format::duration((now - oldest.captured_at).to_std().unwrap_or_default());
        return (
            Some(**oldest),
            Window {
                requested_days: days,
                from: Some(oldest.captured_at),
                to: now,
                basis: "short_snapshot",
                note: Some(format!(
                    "no reading is {} old yet; these numbers cover the last {covered}, since the oldest reading",
                    days_text(days)
                )),
            },
        );
    }
    (
        None,
        Window {
            requested_days: days,
            from: current_reset,
            to: now,
            basis: "since_reset",
            note: Some(
                "no stored reading since pg_stat_statements was last reset; these are totals since the reset \
                 (readings are stored on each `strata maintain`, by the scheduler, or with `strata stats snapshot`)"
                    .into(),
            ),
        },
    )
}

fn days_text(days: u32) -> String {
    if days == 1 {
        "1 day".into()
    } else {
        format!("{days} days")
    }
}

impl Window {
    /// The window in words, for people (`basis` is for programs).
    pub fn summary(&self) -> String {
        match self.basis {
            "snapshot" => format!("the last {}", days_text(self.requested_days)),
            "short_snapshot" => match self.from {
                Some(from) => format!(
                    "the last {}, shorter than the {} asked for",
                    crate::format::duration((self.to - from).to_std().unwrap_or_default()),
                    days_text(self.requested_days)
                ),
                None => "a shorter window than asked for".into(),
            },
            _ => "everything since pg_stat_statements was last reset".into(),
        }
    }
}

/// Stops pg_stat_statements from counting this session's statements, where
/// the role may (a superuser, or `GRANT SET ON PARAMETER
/// pg_stat_statements.track`): strata's own reads and maintenance would
/// otherwise crowd the application's statements out of `stats queries`.
/// pg_stat_statements has no application_name to filter by afterwards, so
/// the session must not be counted in the first place. Without the
/// privilege nothing changes (and nothing is logged on the server); strata's
/// statements are then recognised by their `/* strata */` marker.
pub async fn untrack_own_statements(client: &Client) {
    let sql = "/* strata */ SELECT pg_catalog.set_config('pg_stat_statements.track', 'none', false)
                 FROM pg_catalog.pg_settings
                WHERE name = 'pg_stat_statements.track'
                  AND pg_catalog.has_parameter_privilege('pg_stat_statements.track', 'SET')";
    if let Err(e) = client.batch_execute(sql).await {
        tracing::debug!(error = %e, "could not stop pg_stat_statements tracking this session");
    }
}

/// The view and its `_info` companion, schema-qualified.
struct Pgss {
    view: String,
    info: String,
}

/// Where pg_stat_statements lives in this database, or how to get it.
/// Works for a role that is not superuser: whether the module is loaded is
/// learned by reading the view (SQLSTATE 55000 when it is not), because
/// `shared_preload_libraries` is readable only with pg_read_all_settings.
async fn locate(client: &Client) -> Result<Result<Pgss, String>, DbError> {
    let row = client
        .query_one(
            "SELECT (SELECT n.nspname::text FROM pg_catalog.pg_extension e
                       JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                      WHERE e.extname = 'pg_stat_statements'),
                    EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'pg_stat_statements')",
            &[],
        )
        .await
        .map_err(DbError::query("looking for pg_stat_statements"))?;
    let schema: Option<String> = row.get(0);
    let available: bool = row.get(1);
    const PRELOAD: &str = "add pg_stat_statements to shared_preload_libraries (ALTER SYSTEM SET \
                           shared_preload_libraries = 'pg_stat_statements', keeping any libraries already \
                           listed), restart the server";
    let Some(schema) = schema else {
        return Ok(Err(if available {
            format!("run CREATE EXTENSION pg_stat_statements in this database (and, if it is not loaded yet, {PRELOAD})")
        } else {
            "the pg_stat_statements module is not installed on the server; install PostgreSQL's contrib \
             package (Debian: postgresql-contrib), add it to shared_preload_libraries, restart, then run \
             CREATE EXTENSION pg_stat_statements"
                .into()
        }));
    };
    let schema = Ident::new(schema)?;
    let pgss = Pgss {
        view: format!("{schema}.pg_stat_statements"),
        info: format!("{schema}.pg_stat_statements_info"),
    };
    match client
        .query_one(
            &format!(
                "SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1) x",
                pgss.view
            ),
            &[],
        )
        .await
    {
        Ok(_) => Ok(Ok(pgss)),
        Err(e)
            if e.code()
                == Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) =>
        {
            Ok(Err(format!(
                "{PRELOAD}: the extension exists but the module is not loaded"
            )))
        }
        Err(e) => Err(DbError::query("reading pg_stat_statements")(e)),
    }
}

/// Without pg_read_all_stats a role sees only its own statements (others
/// have no queryid): say so rather than show a silently partial list.
async fn visibility_note(client: &Client) -> Result<Option<String>, DbError> {
    let sees_all: bool = client
        .query_one(
            "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
                    OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .map_err(DbError::query("checking statistics privileges"))?
        .get(0);
    Ok((!sees_all).then(|| {
        "this role sees only its own statements; GRANT pg_read_all_stats TO it to see every role's".to_string()
    }))
}

fn patterns(tables: &[TableSpec]) -> Vec<String> {
    tables
        .iter()
        .map(|t| t.name.name.as_str().to_lowercase())
        .collect()
}

async fn current_reset(client: &Client, pgss: &Pgss) -> Result<Option<DateTime<Utc>>, DbError> {
    let row = client
        .query_opt(&format!("SELECT stats_reset FROM {}", pgss.info), &[])
        .await
        .map_err(DbError::query("reading pg_stat_statements_info"))?;
    Ok(row.and_then(|r| r.get(0)))
}

type Key = (u32, u32, i64);

async fn current(
    client: &Client,
    pgss: &Pgss,
    tables: &[TableSpec],
) -> Result<HashMap<Key, QueryStat>, DbError> {
    let sql = include_str!("queries.sql").replace("{pgss}", &pgss.view);
    let rows = client
        .query(&sql, &[&patterns(tables)])
        .await
        .map_err(DbError::query("reading pg_stat_statements"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let calls: i64 = r.get(4);
            let total: f64 = r.get(5);
            (
                (r.get(0), r.get(1), r.get(2)),
                QueryStat {
                    queryid: r.get(2),
                    query: r.get(3),
                    calls,
                    total_ms: total,
                    mean_ms: if calls > 0 { total / calls as f64 } else { 0.0 },
                    rows: r.get(6),
                    shared_blks_hit: r.get(7),
                    shared_blks_read: r.get(8),
                },
            )
        })
        .collect())
}

/// Stores a reading of pg_stat_statements for the managed tables. Returns
/// the number of statements stored (0 when the extension is unusable).
pub async fn snapshot(client: &Client, tables: &[TableSpec]) -> Result<u64, DbError> {
    let Ok(pgss) = locate(client).await? else {
        return Ok(0);
    };
    let reset = current_reset(client, &pgss).await?;
    let sql = format!(
        "INSERT INTO strata.query_snapshots (captured_at, stats_reset, userid, dbid, queryid, query, calls,
                                             total_exec_time, rows, shared_blks_hit, shared_blks_read)
         SELECT now(), $2, q.* FROM ({}) q",
        include_str!("queries.sql")
            .replace("{pgss}", &pgss.view)
            .trim_end()
            .trim_end_matches(';')
    );
    let n = client
        .execute(&sql, &[&patterns(tables), &reset])
        .await
        .map_err(DbError::query("storing a pg_stat_statements reading"))?;
    Ok(n)
}

/// Drops readings older than `days`.
pub async fn prune_snapshots(client: &Client, days: u64) -> Result<u64, DbError> {
    client
        .execute(
            "DELETE FROM strata.query_snapshots WHERE captured_at < now() - make_interval(days => $1::int)",
            &[&(days.min(i32::MAX as u64) as i32)],
        )
        .await
        .map_err(DbError::query("pruning query readings"))
}

/// The `limit` slowest (by total time) and most frequent statements of the
/// last `days` days.
pub async fn queries(
    client: &Client,
    tables: &[TableSpec],
    days: u32,
    limit: usize,
) -> Result<QueryReport, DbError> {
    let pgss = match locate(client).await? {
        Ok(p) => p,
        Err(hint) => {
            return Ok(QueryReport {
                available: false,
                hint: Some(hint),
                window: None,
                slowest: vec![],
                most_frequent: vec![],
            })
        }
    };
    let now: DateTime<Utc> = client
        .query_one("SELECT now()", &[])
        .await
        .map_err(DbError::query("reading the clock"))?
        .get(0);
    let reset = current_reset(client, &pgss).await?;
    let readings: Vec<Reading> = client
        .query(
            "SELECT DISTINCT captured_at, stats_reset FROM strata.query_snapshots",
            &[],
        )
        .await
        .map_err(DbError::query("listing query readings"))?
        .iter()
        .map(|r| Reading {
            captured_at: r.get(0),
            stats_reset: r.get(1),
        })
        .collect();
    let (baseline, window) = choose_baseline(&readings, reset, now, days);
    let mut stats = current(client, &pgss, tables).await?;
    if let Some(b) = baseline {
        let rows = client
            .query(
                "SELECT userid, dbid, queryid, calls, total_exec_time, rows, shared_blks_hit, shared_blks_read
                   FROM strata.query_snapshots WHERE captured_at = $1",
                &[&b.captured_at],
            )
            .await
            .map_err(DbError::query("reading the baseline"))?;
        for r in rows {
            let key: Key = (r.get(0), r.get(1), r.get(2));
            let Some(s) = stats.get_mut(&key) else {
                continue;
            };
            let calls: i64 = r.get(3);
            // Fewer calls now than then: the entry was evicted and counted
            // again from zero, so all of today's count is in the window.
            if calls > s.calls {
                continue;
            }
            s.calls -= calls;
            s.total_ms -= r.get::<_, f64>(4);
            s.rows -= r.get::<_, i64>(5);
            s.shared_blks_hit -= r.get::<_, i64>(6);
            s.shared_blks_read -= r.get::<_, i64>(7);
            s.mean_ms = if s.calls > 0 {
                s.total_ms / s.calls as f64
            } else {
                0.0
            };
        }
    }
    let active: Vec<QueryStat> = stats.into_values().filter(|s| s.calls > 0).collect();
    let mut slowest = active.clone();
    slowest.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    slowest.truncate(limit);
    let mut most_frequent = active;
    most_frequent.sort_by(|a, b| {
        b.calls
            .cmp(&a.calls)
            .then(b.total_ms.total_cmp(&a.total_ms))
    });
    most_frequent.truncate(limit);
    Ok(QueryReport {
        available: true,
        hint: visibility_note(client).await?,
        window: Some(window),
        slowest,
        most_frequent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, d, h, 0, 0).unwrap()
    }

    fn reading(d: u32, h: u32, reset: Option<DateTime<Utc>>) -> Reading {
        Reading {
            captured_at: at(d, h),
            stats_reset: reset,
        }
    }

    #[test]
    fn the_newest_reading_old_enough_is_the_baseline() {
        let reset = Some(at(1, 0));
        let rs = [
            reading(2, 2, reset),
            reading(5, 2, reset),
            reading(8, 2, reset),
            reading(9, 2, reset),
        ];
        let (b, w) = choose_baseline(&rs, reset, at(10, 12), 1);
        assert_eq!(
            b.unwrap().captured_at,
            at(9, 2),
            "newest at least 1 day before Mar 10 12:00"
        );
        assert_eq!(w.basis, "snapshot");
        let (b, _) = choose_baseline(&rs, reset, at(10, 12), 3);
        assert_eq!(
            b.unwrap().captured_at,
            at(5, 2),
            "Mar 8 02:00 is only 2.4 days old"
        );
        let (b, _) = choose_baseline(&rs, reset, at(9, 2), 1);
        assert_eq!(
            b.unwrap().captured_at,
            at(8, 2),
            "exactly N days old counts"
        );
    }

    #[test]
    fn a_younger_reading_gives_a_shorter_window_said_so() {
        let rs = [reading(10, 6, None)];
        let (b, w) = choose_baseline(&rs, None, at(10, 12), 7);
        assert_eq!(b.unwrap().captured_at, at(10, 6));
        assert_eq!(w.basis, "short_snapshot");
        assert_eq!(
            w.summary(),
            "the last 6h 00m, shorter than the 7 days asked for"
        );
        let note = w.note.unwrap();
        assert!(
            note.contains("no reading is 7 days old yet; these numbers cover the last 6h 00m"),
            "{note}"
        );
        // Minutes old: never "the last 0.0 hours".
        let now = at(10, 6) + Duration::seconds(90);
        let (_, w) = choose_baseline(&rs, None, now, 1);
        assert!(w.note.unwrap().contains("the last 1m 30s"));
        let (_, w) = choose_baseline(&[reading(1, 0, None)], None, at(10, 12), 1);
        assert_eq!(w.summary(), "the last 1 day");
        let (_, w) = choose_baseline(&[], None, at(10, 12), 1);
        assert_eq!(
            w.summary(),
            "everything since pg_stat_statements was last reset"
        );
    }

    #[test]
    fn readings_from_before_a_reset_are_never_used() {
        let old_reset = Some(at(1, 0));
        let new_reset = Some(at(9, 0));
        let rs = [reading(2, 0, old_reset), reading(8, 0, old_reset)];
        let (b, w) = choose_baseline(&rs, new_reset, at(10, 12), 1);
        assert!(b.is_none());
        assert_eq!(w.basis, "since_reset");
        assert_eq!(w.from, new_reset);
        // A reading taken after the reset is used.
        let rs = [reading(2, 0, old_reset), reading(9, 6, new_reset)];
        let (b, _) = choose_baseline(&rs, new_reset, at(10, 12), 1);
        assert_eq!(b.unwrap().captured_at, at(9, 6));
    }

    #[test]
    fn future_readings_are_ignored() {
        let rs = [reading(20, 0, None)];
        let (b, w) = choose_baseline(&rs, None, at(10, 12), 1);
        assert!(b.is_none());
        assert_eq!(w.basis, "since_reset");
    }
}
