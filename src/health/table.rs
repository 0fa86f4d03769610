//! Checks of one managed table: partitions ahead, the default partition,
//! invalid indexes, the id sequence and the partitions' transaction ID ages.

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::{plural, CheckResult, HealthError, HealthThresholds, Status, MAX_LISTED};
use crate::config::TableSpec;
use crate::db::DbError;
use crate::format;
use crate::partition::{self, period, Bound, PartitionError, Snapshot};

const FUTURE: &str = "future_partitions";
const DEFAULT_ROWS: &str = "default_partition_rows";
const SEALS: &str = "seals";
const ARCHIVE: &str = "archive";

/// The archive tier (docs/archive.md) of a table with `archive_to`:
/// critical when a verify found an archived period's files changed or
/// missing (the archive is the only copy once the partition is dropped), a
/// warning while periods past archive_after wait for `archive run`. A table
/// without archive_to gets no such check.
async fn archive(client: &mut Client, spec: &TableSpec, snap: &Snapshot) -> Option<CheckResult> {
    let table = spec.name.display_unquoted();
    let s = match crate::archive::status_of(client, spec, snap).await {
        Ok(s) => s?,
        // The store's catalog could not be read: say so rather than fail
        // every other check with it.
        Err(e) => {
            return Some(
                CheckResult::new(
                    ARCHIVE,
                    Status::Warning,
                    format!("could not read the archive tier: {e}"),
                    json!({}),
                )
                .table(spec),
            )
        }
    };
    let evidence = json!({
        "periods_archived": s.periods_archived,
        "bytes_archived": s.bytes_archived,
        "periods_due": s.periods_due,
        "failed_verifies": s.failed_verifies,
        "last_run": s.last_run,
    });
    let (status, message, fix) = if s.failed_verifies > 0 {
        (
            Status::Critical,
            format!(
                "{} failed verification: its files in the store are changed or missing",
                plural(s.failed_verifies, "archived period", "archived periods")
            ),
            Some(format!("strata archive verify --table {table}")),
        )
    } else if s.periods_due > 0 {
        (
            Status::Warning,
            format!(
                "{} past archive_after not archived yet",
                plural(s.periods_due, "period", "periods")
            ),
            Some(format!("strata archive run --table {table}")),
        )
    } else {
        (
            Status::Ok,
            format!(
                "{} archived ({} in the store), none due",
                plural(s.periods_archived, "period", "periods"),
                format::bytes(s.bytes_archived.max(0) as u64)
            ),
            None,
        )
    };
    let mut c = CheckResult::new(ARCHIVE, status, message, evidence).table(spec);
    if let Some(fix) = fix {
        c = c.fix(fix);
    }
    Some(c)
}

/// Sealed months (docs/seals.md): critical when the last verification found
/// a difference, a warning for closed periods left unsealed once sealing is
/// in use (a table never sealed is not judged).
async fn seals(
    client: &Client,
    spec: &TableSpec,
    snap: &Snapshot,
    t: &HealthThresholds,
    now: DateTime<Utc>,
) -> Result<CheckResult, HealthError> {
    let f = crate::seal::health_facts(client, spec, snap, t.seal_after, now).await?;
    let evidence = json!({
        "seals": f.seals,
        "unsealed_closed": f.unsealed_closed,
        "last_verify": f.last_verify,
    });
    let intact = f.last_verify.as_ref().map(|v| v.intact == Some(true));
    let (status, message, fix) = if intact == Some(false) {
        (
            Status::Critical,
            "the last seal verification found sealed rows, seals or the chain changed".to_string(),
            Some(format!(
                "strata seal verify --table {}",
                spec.name.display_unquoted()
            )),
        )
    } else if f.seals > 0 && !f.unsealed_closed.is_empty() {
        (
            Status::Warning,
            format!(
                "{} closed but not sealed",
                plural(f.unsealed_closed.len(), "period is", "periods are")
            ),
            Some(format!(
                "strata seal run --table {}",
                spec.name.display_unquoted()
            )),
        )
    } else if f.seals == 0 {
        (
            Status::Ok,
            "no period sealed (sealing not in use)".to_string(),
            None,
        )
    } else {
        (
            Status::Ok,
            format!("{} sealed", plural(f.seals, "period", "periods")),
            None,
        )
    };
    let mut c = CheckResult::new(SEALS, status, message, evidence).table(spec);
    if let Some(fix) = fix {
        c = c.fix(fix);
    }
    Ok(c)
}

pub async fn checks(
    client: &mut Client,
    spec: &TableSpec,
    t: &HealthThresholds,
    now: DateTime<Utc>,
) -> Result<Vec<CheckResult>, HealthError> {
    let oid: Option<u32> = client
        .query_one(
            "SELECT pg_catalog.to_regclass($1::text)::pg_catalog.oid",
            &[&spec.name.to_string()],
        )
        .await
        .map_err(DbError::query("resolving the managed table"))?
        .get(0);
    let Some(oid) = oid else {
        let message = format!(
            "{} does not exist: every insert fails",
            spec.name.display_unquoted()
        );
        return Ok(vec![CheckResult::new(
            FUTURE,
            Status::Critical,
            message,
            json!({}),
        )
        .table(spec)
        .fix("strata migrate && strata maintain")]);
    };
    let mut out = Vec::new();
    match partition::snapshot(client, spec).await {
        Ok(snap) => {
            out.push(judge_future_partitions(spec, &snap, now));
            out.push(default_rows(spec, &snap, now));
            out.push(seals(client, spec, &snap, t, now).await?);
            out.extend(archive(client, spec, &snap).await);
        }
        Err(PartitionError::Db(e)) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            // The snapshot counts the default partition's rows, which needs a
            // lock that a long ACCESS EXCLUSIVE holder denies.
            let message = format!(
                "could not read the partitions of {}: it is locked by another session ({e})",
                spec.name.display_unquoted()
            );
            for name in [FUTURE, DEFAULT_ROWS, SEALS] {
                out.push(
                    CheckResult::new(
                        name,
                        Status::Warning,
                        message.clone(),
                        json!({"locked": true}),
                    )
                    .table(spec),
                );
            }
        }
        Err(
            e @ (PartitionError::NotPartitioned(_)
            | PartitionError::BadKey { .. }
            | PartitionError::UnknownBound { .. }),
        ) => out
            .push(CheckResult::new(FUTURE, Status::Critical, e.to_string(), json!({})).table(spec)),
        Err(e) => return Err(e.into()),
    }
    out.push(invalid_indexes(client, spec, oid).await?);
    out.push(sequence_headroom(client, spec, oid, t).await?);
    out.push(table_xid_age(client, spec, oid, t).await?);
    Ok(out)
}

fn covers(bound: &Bound, t: DateTime<Utc>) -> bool {
    match bound {
        Bound::Default => false,
        Bound::Range { from, to } => from.is_none_or(|f| f <= t) && to.is_none_or(|e| t < e),
    }
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Judges whether the period holding `now` and the `premake` periods after it
/// have partitions. Pure, for tests without a database.
pub fn judge_future_partitions(
    spec: &TableSpec,
    snap: &Snapshot,
    now: DateTime<Utc>,
) -> CheckResult {
    // A half-detached partition is on its way out and takes no new rows.
    let live: Vec<&Bound> = snap
        .partitions
        .iter()
        .filter(|p| !p.detach_pending)
        .map(|p| &p.bound)
        .collect();
    let covered = |t: DateTime<Utc>| live.iter().any(|b| covers(b, t));
    let current = period::floor(spec.interval, now);
    // Periods before the table's configured start are not expected to exist.
    let first = period::floor(spec.interval, period::midnight(spec.start));
    let from_current = live
        .iter()
        .filter(|b| matches!(b, Bound::Range { from: Some(f), .. } if *f >= current))
        .count();
    // Premade partitions: those starting after the current period (what
    // `/metrics` exports as `strata_partitions_ahead`).
    let ahead = live
        .iter()
        .filter(|b| matches!(b, Bound::Range { from: Some(f), .. } if *f > current))
        .count();
    // The same definition of "should exist" the planner creates from.
    let missing: Vec<DateTime<Utc>> = partition::wanted_periods(spec, now, None)
        .into_iter()
        .filter(|p| *p > current && !covered(*p))
        .collect();
    let default = snap.default_partition().map(|d| d.display_unquoted());
    let evidence = json!({
        "interval": spec.interval.to_string(),
        "current_period_start": current,
        "current_period_covered": covered(now),
        "partitions_from_current_period": from_current,
        "partitions_ahead": ahead,
        "premake": spec.premake,
        "missing_periods_ahead": missing,
        "default_partition": default,
    });
    let c = if current >= first && !covered(now) {
        let fate = match &default {
            Some(d) => format!("go to the default partition {d}"),
            None => "are refused (no default partition)".to_string(),
        };
        let message = format!(
            "no partition for the current period (from {}): new rows {fate}",
            day(current)
        );
        CheckResult::new(FUTURE, Status::Critical, message, evidence)
    } else if let Some(first_missing) = missing.first() {
        let message = format!(
            "{} of the {} ahead {} no partition (first missing: {})",
            missing.len(),
            plural(spec.premake as usize, "period", "periods"),
            if missing.len() == 1 { "has" } else { "have" },
            day(*first_missing)
        );
        CheckResult::new(FUTURE, Status::Warning, message, evidence)
    } else {
        let message = format!(
            "current period and {} ahead have partitions ({from_current} from {} on)",
            plural(spec.premake as usize, "period", "periods"),
            day(current)
        );
        return CheckResult::new(FUTURE, Status::Ok, message, evidence).table(spec);
    };
    c.table(spec).fix("strata maintain")
}

fn default_rows(spec: &TableSpec, snap: &Snapshot, now: DateTime<Utc>) -> CheckResult {
    let Some(default) = snap.default_partition() else {
        return CheckResult::new(
            DEFAULT_ROWS,
            Status::Ok,
            "no default partition",
            json!({"rows": 0}),
        )
        .table(spec);
    };
    let rows: i64 = snap.default_rows.iter().map(|(_, n)| n).sum();
    let evidence = json!({
        "default_partition": default.display_unquoted(),
        "rows": rows,
        "periods": snap.default_rows.iter().take(MAX_LISTED)
            .map(|(start, n)| json!({"period_start": start, "rows": n})).collect::<Vec<_>>(),
    });
    if rows == 0 {
        let message = format!("{} is empty", default.display_unquoted());
        return CheckResult::new(DEFAULT_ROWS, Status::Ok, message, evidence).table(spec);
    }
    // Rows whose period is outside [start, now + premake] get no partition
    // from `maintain` (a stray year-9999 row must not create thousands):
    // they need a person.
    let outside = partition::plan(spec, now, snap).out_of_window;
    if !outside.is_empty() {
        let n: i64 = outside.iter().map(|(_, n)| n).sum();
        let mut evidence = evidence;
        evidence["outside_window"] = json!(outside
            .iter()
            .take(MAX_LISTED)
            .map(|(start, n)| json!({"period_start": start, "rows": n}))
            .collect::<Vec<_>>());
        evidence["outside_window_rows"] = json!(n);
        let message = format!(
            "{} in the default partition {} lie outside [start, now + premake] ({} from {}): maintain makes no partition for them",
            plural(n as usize, "row", "rows"),
            default.display_unquoted(),
            plural(outside.len(), "period", "periods"),
            day(outside[0].0)
        );
        let fix = format!(
            "look at them: SELECT * FROM {d} WHERE {c} < '{first}' OR {c} >= '{end}'; then correct or delete them, or set an earlier start",
            d = default,
            c = spec.time_column,
            first = day(period::floor(spec.interval, period::midnight(spec.start))),
            end = day(period::advance(spec.interval, period::floor(spec.interval, now), spec.premake + 1)),
        );
        return CheckResult::new(DEFAULT_ROWS, Status::Warning, message, evidence)
            .table(spec)
            .fix(fix);
    }
    // Rows there are scanned by every query and block creating the partition
    // their range belongs to.
    let message = format!(
        "{} in the default partition {} ({})",
        plural(rows as usize, "row", "rows"),
        default.display_unquoted(),
        plural(snap.default_rows.len(), "period", "periods")
    );
    CheckResult::new(DEFAULT_ROWS, Status::Warning, message, evidence)
        .table(spec)
        .fix("strata maintain")
}

async fn invalid_indexes(
    client: &Client,
    spec: &TableSpec,
    oid: u32,
) -> Result<CheckResult, HealthError> {
    let rows = client
        .query(include_str!("invalid_indexes.sql"), &[&oid])
        .await
        .map_err(DbError::query("listing invalid indexes"))?;
    let names: Vec<String> = rows.iter().map(|r| r.get("index")).collect();
    let evidence = json!({
        "count": rows.len(),
        "indexes": rows.iter().take(MAX_LISTED).map(|r| json!({
            "index": r.get::<_, String>("index"),
            "table": r.get::<_, String>("on_table"),
            "partitioned": r.get::<_, bool>("partitioned"),
            "unique": r.get::<_, bool>("is_unique"),
            "ready": r.get::<_, bool>("is_ready"),
        })).collect::<Vec<_>>(),
    });
    let Some(first) = names.first() else {
        return Ok(
            CheckResult::new("invalid_indexes", Status::Ok, "no INVALID index", evidence)
                .table(spec),
        );
    };
    // INVALID indexes serve no query, yet a "ready" one is still updated by
    // every write: pure cost, typically left by a failed CONCURRENTLY build.
    let message = format!(
        "{}: {}",
        plural(names.len(), "INVALID index", "INVALID indexes"),
        names.join(", ")
    );
    Ok(
        CheckResult::new("invalid_indexes", Status::Warning, message, evidence)
            .table(spec)
            .fix(format!(
                "strata indexes apply (rebuilds strata's own indexes); for others: DROP INDEX CONCURRENTLY {first}; and build it again"
            )),
    )
}

async fn sequence_headroom(
    client: &Client,
    spec: &TableSpec,
    oid: u32,
    t: &HealthThresholds,
) -> Result<CheckResult, HealthError> {
    let rows = client
        .query(include_str!("sequences.sql"), &[&oid])
        .await
        .map_err(DbError::query("reading the table's sequences"))?;
    let mut worst: Option<(f64, String, String, i64)> = None;
    let mut listed = Vec::new();
    for r in &rows {
        let (seq, column): (String, String) = (r.get("sequence"), r.get("column_name"));
        let last: Option<i64> = r.get("last_value");
        let (inc, min, max): (i64, i64, i64) =
            (r.get("increment"), r.get("min_value"), r.get("max_value"));
        let used = fraction_used(last, inc, min, max);
        listed.push(json!({"sequence": seq, "column": column, "last_value": last,
                           "increment": inc, "min_value": min, "max_value": max, "fraction_used": used}));
        if worst.as_ref().is_none_or(|w| used > w.0) {
            let limit = if inc > 0 { max } else { min };
            worst = Some((used, seq, column, limit));
        }
    }
    let evidence = json!({"sequences": listed, "warning": t.sequence_warning, "critical": t.sequence_critical});
    let Some((used, seq, column, limit)) = worst else {
        return Ok(CheckResult::new(
            "sequence_headroom",
            Status::Ok,
            "no sequence owned by a column of the table",
            evidence,
        )
        .table(spec));
    };
    let status = Status::at_least(used, t.sequence_warning, t.sequence_critical);
    let sign = if limit < 0 { "-" } else { "" };
    let message = format!(
        "{seq} ({column}): {:.4}% of its range used (limit {sign}{})",
        used * 100.0,
        format::count(limit.unsigned_abs())
    );
    let mut c = CheckResult::new("sequence_headroom", status, message, evidence).table(spec);
    if status != Status::Ok {
        c = c.fix(format!(
            "widen {column} to bigint and ALTER SEQUENCE {seq} AS bigint before it runs out (inserts fail at the limit)"
        ));
    }
    Ok(c)
}

/// Share of a sequence's range already handed out; 0 for one never used.
fn fraction_used(last: Option<i64>, increment: i64, min: i64, max: i64) -> f64 {
    let Some(last) = last else { return 0.0 };
    let span = max as i128 - min as i128;
    if span <= 0 {
        return 1.0;
    }
    let done = if increment > 0 {
        last as i128 - min as i128
    } else {
        max as i128 - last as i128
    };
    (done as f64 / span as f64).clamp(0.0, 1.0)
}

async fn table_xid_age(
    client: &Client,
    spec: &TableSpec,
    oid: u32,
    t: &HealthThresholds,
) -> Result<CheckResult, HealthError> {
    let rows = client
        .query(include_str!("table_xid.sql"), &[&oid])
        .await
        .map_err(DbError::query("reading partition transaction ID ages"))?;
    let evidence = json!({
        "oldest_partitions": rows.iter().map(|r| json!({
            "partition": r.get::<_, String>("partition"),
            "xid_age": r.get::<_, i64>("xid_age"),
            "bytes": r.get::<_, i64>("bytes"),
        })).collect::<Vec<_>>(),
        "warning": t.xid_age_warning,
        "critical": t.xid_age_critical,
    });
    let Some(first) = rows.first() else {
        return Ok(
            CheckResult::new("table_xid_age", Status::Ok, "no partitions", evidence).table(spec),
        );
    };
    let (name, age): (String, i64) = (first.get("partition"), first.get("xid_age"));
    let status = Status::at_least(age, t.xid_age_warning, t.xid_age_critical);
    let message = format!(
        "oldest partition {name}: transaction ID age {}",
        format::count(age.max(0) as u64)
    );
    let mut c = CheckResult::new("table_xid_age", status, message, evidence).table(spec);
    if status != Status::Ok {
        c = c.fix(format!("VACUUM (FREEZE, VERBOSE) {name}"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::QualifiedName;
    use crate::partition::ExistingPartition;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn part(name: &str, bound: Bound) -> ExistingPartition {
        ExistingPartition {
            name: QualifiedName::new("public", name).unwrap(),
            bound,
            detach_pending: false,
        }
    }

    fn month(from: &str, to: &str) -> Bound {
        Bound::Range {
            from: Some(ts(from)),
            to: Some(ts(to)),
        }
    }

    /// Monthly partitions from `first` (YYYY-MM) for `n` months, plus a default.
    fn snap(first: (i32, u32), n: u32) -> Snapshot {
        let start = period::midnight(chrono::NaiveDate::from_ymd_opt(first.0, first.1, 1).unwrap());
        let mut partitions: Vec<ExistingPartition> = (0..n)
            .map(|k| {
                let from = period::advance(crate::config::Interval::Month, start, k);
                let to = period::next(crate::config::Interval::Month, from);
                part(
                    &format!("p{k}"),
                    Bound::Range {
                        from: Some(from),
                        to: Some(to),
                    },
                )
            })
            .collect();
        partitions.push(part("audit_logs_default", Bound::Default));
        Snapshot {
            detached: vec![],
            partitions,
            default_rows: vec![],
        }
    }

    #[test]
    fn current_plus_premake_is_ok_one_short_warns_none_current_is_critical() {
        let spec = TableSpec::seed_default(); // monthly, premake 6, start 2025-01
        let now = ts("2025-12-15T10:00:00Z");
        // January 2025 .. June 2026: December + 6 ahead.
        let c = judge_future_partitions(&spec, &snap((2025, 1), 18), now);
        assert_eq!(c.status, Status::Ok, "{}", c.message);
        assert_eq!(c.evidence["partitions_from_current_period"], 7);
        assert_eq!(c.evidence["partitions_ahead"], 6);
        let c = judge_future_partitions(&spec, &snap((2025, 1), 17), now);
        assert_eq!(c.status, Status::Warning, "{}", c.message);
        assert!(c.message.contains("2026-06-01"), "{}", c.message);
        let c = judge_future_partitions(&spec, &snap((2025, 1), 11), now);
        assert_eq!(c.status, Status::Critical, "{}", c.message);
        assert!(c.message.contains("audit_logs_default"), "{}", c.message);
        assert_eq!(c.fix.as_deref(), Some("strata maintain"));
    }

    #[test]
    fn a_gap_ahead_is_found_and_detaching_partitions_do_not_count() {
        let spec = TableSpec::seed_default();
        let now = ts("2025-12-15T10:00:00Z");
        let mut s = snap((2025, 1), 18);
        s.partitions
            .retain(|p| p.bound != month("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"));
        let c = judge_future_partitions(&spec, &s, now);
        assert_eq!(c.status, Status::Warning);
        assert_eq!(
            c.evidence["missing_periods_ahead"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let mut s = snap((2025, 1), 18);
        for p in &mut s.partitions {
            if p.bound == month("2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z") {
                p.detach_pending = true;
            }
        }
        assert_eq!(
            judge_future_partitions(&spec, &s, now).status,
            Status::Critical
        );
    }

    #[test]
    fn an_unbounded_partition_covers_and_periods_before_start_are_not_required() {
        let mut spec = TableSpec::seed_default();
        let s = Snapshot {
            detached: vec![],
            partitions: vec![part(
                "all",
                Bound::Range {
                    from: None,
                    to: None,
                },
            )],
            default_rows: vec![],
        };
        let c = judge_future_partitions(&spec, &s, ts("2025-12-15T00:00:00Z"));
        assert_eq!(c.status, Status::Ok, "{}", c.message);
        spec.start = chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap();
        spec.premake = 0;
        let empty = Snapshot::default();
        let c = judge_future_partitions(&spec, &empty, ts("2025-12-15T00:00:00Z"));
        assert_eq!(c.status, Status::Ok, "{}", c.message);
    }

    #[test]
    fn sequence_fractions() {
        assert_eq!(fraction_used(None, 1, 1, 100), 0.0);
        assert!((fraction_used(Some(76), 1, 1, 101) - 0.75).abs() < 1e-9);
        assert!((fraction_used(Some(-91), -1, -101, -1) - 0.9).abs() < 1e-9);
        assert_eq!(fraction_used(Some(i64::MAX), 1, 1, i64::MAX), 1.0);
    }
}
