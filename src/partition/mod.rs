//! The partition lifecycle: a pure planner and an executor that applies its
//! steps without stalling writers.

mod catalog;
mod default_move;
pub mod detached;
mod executor;
pub mod partman;
pub mod period;
mod planner;
#[cfg(test)]
mod planner_tests;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

pub use catalog::{insertable_columns, list, parse_bound, resolve_parent, snapshot, PartitionInfo};
pub use executor::{apply, describe, run_statements, step_sql, Applied, ApplyReport, StepResult};
pub use planner::{
    plan, plan_with, wanted_periods, Bound, Clock, Conflict, DetachedPartition, ExistingPartition,
    Plan, Snapshot, Step,
};

use crate::config::{Backend, MaintenanceConfig, TableSpec};
use crate::db::{DbError, IdentError};

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Ident(#[from] IdentError),
    #[error(
        "table {0} does not exist (run `strata migrate`, or check the table name in strata.toml)"
    )]
    NotFound(String),
    #[error("table {0} is not partitioned; to convert a plain table use `strata convert start --table {0}`")]
    NotPartitioned(String),
    #[error("partition maintenance of {0} is already running in another process")]
    AlreadyRunning(String),
    #[error("a table named {0} already exists and is neither a partition of this table nor strata's staging table; rename or drop it")]
    NameTaken(String),
    #[error(
        "backend = \"partman\" needs the pg_partman extension, which this server does not have; \
         install it (Debian/Ubuntu: apt-get install postgresql-15-partman) or use backend = \"native\""
    )]
    PartmanMissing,
    #[error("pg_partman {0} is too old; strata supports 4.x and 5.x")]
    PartmanVersion(String),
    #[error(
        "{table} already has {partitions} range partitions made without pg_partman; pg_partman can only adopt \
         partitions named its way, so keep backend = \"native\" for this table"
    )]
    PartmanExisting { table: String, partitions: usize },
    #[error(
        "{default} holds {rows} rows and pg_partman 4.x must create its own default partition; run `strata \
         maintain` with backend = \"native\" once to move them into partitions, then switch to partman"
    )]
    PartmanDefaultRows { default: String, rows: i64 },
    #[error("pg_partman plans from the server clock; --now works only with backend = \"native\"")]
    PartmanNow,
    #[error(
        "{table} must be partitioned BY RANGE ({column}) on a timestamptz column (time_column in strata.toml), \
         but its key is {found}"
    )]
    BadKey {
        table: String,
        column: String,
        found: String,
    },
    #[error("partition {partition} has a bound strata cannot read: {bound}")]
    UnknownBound { partition: String, bound: String },
}

/// The session advisory lock that serialises all maintenance of one managed
/// table: partition DDL, vacuum, analyze, reindex, whoever starts them (CLI,
/// API, scheduler).
pub fn table_lock(table: &crate::db::QualifiedName) -> String {
    format!("maintain:{}", table.display_unquoted())
}

/// Plans against the current catalog state.
pub async fn plan_now(
    client: &mut Client,
    spec: &TableSpec,
    now: DateTime<Utc>,
) -> Result<Plan, PartitionError> {
    let snap = snapshot(client, spec).await?;
    Ok(plan(spec, now, &snap))
}

/// Registers `spec` in `strata.managed_tables` when the table has no stored
/// spec yet. A stored spec is never overwritten here: it is the source of
/// truth, changed only by `strata config apply`.
pub async fn register(client: &Client, spec: &TableSpec) -> Result<(), PartitionError> {
    let json = serde_json::to_value(spec).expect("spec serializes");
    client
        .execute(
            "INSERT INTO strata.managed_tables (schema_name, table_name, spec) VALUES ($1, $2, $3)
             ON CONFLICT (schema_name, table_name) DO NOTHING",
            &[&spec.name.schema.as_str(), &spec.name.name.as_str(), &json],
        )
        .await
        .map_err(DbError::query("registering the managed table"))?;
    Ok(())
}

/// Plans and applies in one go: what `strata maintain` does for partitions.
/// With the pg_partman backend, `now` is ignored (partman uses the server
/// clock) and the returned plan and report are empty.
pub async fn maintain(
    client: &mut Client,
    spec: &TableSpec,
    now: DateTime<Utc>,
    maintenance: &MaintenanceConfig,
    progress: impl FnMut(Applied<'_>) + Send,
) -> Result<(Plan, ApplyReport), PartitionError> {
    register(client, spec).await?;
    if spec.backend == Backend::Partman {
        // pg_partman decides what to create and retain from the server clock.
        partman::maintain(client, spec, &maintenance.lock).await?;
        return Ok((Plan::default(), ApplyReport::default()));
    }
    let plan = plan_now(client, spec, now).await?;
    let report = apply(client, spec, &plan.steps, maintenance, progress).await?;
    Ok((plan, report))
}
