//! `strata health`: PgHero-level checks of the server and of each managed
//! table, each graded ok / warning / critical against `[health]` thresholds.
//!
//! Checks only read: a `fix` is shown to the operator, never run. Every query
//! reads the catalog or statistics views without taking relation locks, except
//! the default-partition count of the partition snapshot, which runs under a
//! short `lock_timeout` so that a locked table is reported rather than waited on.

mod server;
mod sessions;
mod table;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

pub use crate::config::HealthThresholds;
use crate::config::TableSpec;
use crate::db::DbError;
use crate::partition::PartitionError;

pub use table::judge_future_partitions;
// The dashboard's Live page lists the same sessions with every threshold at zero.
pub use sessions::{idle_in_transaction, lock_waits, long_running_queries};

/// How long a health query may wait for a relation lock. Health runs when
/// something may already be wrong; queueing behind an ACCESS EXCLUSIVE lock
/// would hang the check and every query queued behind it.
const LOCK_TIMEOUT: &str = "1s";

/// Sessions, slots or relations listed in one check's evidence at most.
const MAX_LISTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
}

/// Ordered so that the worst of several is their maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// Grades a value where more is worse.
    pub fn at_least<T: PartialOrd>(value: T, warning: T, critical: T) -> Status {
        if value >= critical {
            Status::Critical
        } else if value >= warning {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// Stable snake_case id, e.g. `future_partitions`.
    pub name: &'static str,
    /// The managed table a per-table check is about; `null` for server checks.
    pub table: Option<String>,
    pub status: Status,
    /// One human line.
    pub message: String,
    /// The numbers behind the verdict.
    pub evidence: Value,
    /// A command or SQL that would fix it; shown, never run.
    pub fix: Option<String>,
}

impl CheckResult {
    fn new(
        name: &'static str,
        status: Status,
        message: impl Into<String>,
        evidence: Value,
    ) -> Self {
        CheckResult {
            name,
            table: None,
            status,
            message: message.into(),
            evidence,
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    fn table(mut self, table: &TableSpec) -> Self {
        self.table = Some(table.name.display_unquoted());
        self
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    /// The worst status of all checks.
    pub status: Status,
    pub checked_at: DateTime<Utc>,
    pub checks: Vec<CheckResult>,
}

impl HealthReport {
    fn new(checked_at: DateTime<Utc>, checks: Vec<CheckResult>) -> Self {
        let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
        HealthReport {
            status,
            checked_at,
            checks,
        }
    }

    pub fn critical(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.status == Status::Critical)
    }
}

/// Runs every check: the server-wide ones, then the per-table ones for each
/// of `tables`. `now` decides which partition period is current.
///
/// The session's `lock_timeout` is set for the duration and restored after.
/// Errors are returned only when the server cannot be queried at all; a
/// missing or locked managed table is a check result.
pub async fn check(
    client: &mut Client,
    tables: &[TableSpec],
    thresholds: &HealthThresholds,
    now: DateTime<Utc>,
) -> Result<HealthReport, HealthError> {
    let previous: String = client
        .query_one("SELECT pg_catalog.current_setting('lock_timeout')", &[])
        .await
        .map_err(DbError::query("reading lock_timeout"))?
        .get(0);
    set_lock_timeout(client, LOCK_TIMEOUT).await?;
    let result = run_checks(client, tables, thresholds, now).await;
    set_lock_timeout(client, &previous).await?;
    Ok(HealthReport::new(now, result?))
}

async fn set_lock_timeout(client: &Client, value: &str) -> Result<(), DbError> {
    client
        .execute(
            "SELECT pg_catalog.set_config('lock_timeout', $1, false)",
            &[&value],
        )
        .await
        .map_err(DbError::query("setting lock_timeout"))?;
    Ok(())
}

async fn run_checks(
    client: &mut Client,
    tables: &[TableSpec],
    t: &HealthThresholds,
    now: DateTime<Utc>,
) -> Result<Vec<CheckResult>, HealthError> {
    let mut checks = vec![
        sessions::connections(client, t).await?,
        sessions::long_running_queries(client, t).await?,
        sessions::idle_in_transaction(client, t).await?,
        sessions::lock_waits(client, t).await?,
        server::xid_wraparound(client, t).await?,
        server::cache_hit_ratio(client, t).await?,
        server::replication_slots(client).await?,
    ];
    for spec in tables {
        checks.extend(table::checks(client, spec, t, now).await?);
    }
    Ok(checks)
}

/// A count with its noun, singular or plural.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Seconds as `4m 05s`.
fn seconds(s: f64) -> String {
    crate::format::duration(std::time::Duration::from_secs_f64(s.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grading_is_inclusive_and_the_worst_wins() {
        assert_eq!(Status::at_least(0.5, 0.8, 0.95), Status::Ok);
        assert_eq!(Status::at_least(0.8, 0.8, 0.95), Status::Warning);
        assert_eq!(Status::at_least(0.95, 0.8, 0.95), Status::Critical);
        // A zero threshold flags anything found, which tests rely on.
        assert_eq!(Status::at_least(0.0, 0.0, 10.0), Status::Warning);
        let r = HealthReport::new(
            Utc::now(),
            vec![
                CheckResult::new("a", Status::Warning, "", Value::Null),
                CheckResult::new("b", Status::Ok, "", Value::Null),
            ],
        );
        assert_eq!(r.status, Status::Warning);
        assert_eq!(r.critical().count(), 0);
        assert_eq!(HealthReport::new(Utc::now(), vec![]).status, Status::Ok);
    }

    #[test]
    fn results_serialize_with_every_documented_field() {
        let c = CheckResult::new("x", Status::Critical, "m", serde_json::json!({"n": 1}))
            .fix("strata maintain");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["status"], "critical");
        assert_eq!(v["fix"], "strata maintain");
        assert!(v["table"].is_null());
        assert_eq!(v["evidence"]["n"], 1);
    }
}
