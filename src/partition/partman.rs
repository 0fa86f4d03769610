//! The pg_partman backend, for users who already run pg_partman: strata
//! registers the table with `create_parent`, keeps `part_config` in line with
//! strata.toml, and maintenance calls `run_maintenance`.
//!
//! 4.x (what Debian's postgresql-15-partman installs) and 5.x differ: the
//! third positional parameter of `create_parent` is `p_type` in 4.x and
//! `p_interval` in 5.x, so every call uses named arguments; `p_type` is
//! 'native' in 4.x and 'range' in 5.x; 5.x rejects 'monthly'-style intervals,
//! while '1 month' works on both; only 5.x can be told not to create a
//! default partition.

use serde::Serialize;
use tokio_postgres::Client;

use super::{catalog, Bound, PartitionError};
use crate::config::{Interval, RetentionMode, TableSpec};
use crate::db::{self, literal, DbError, Ident, LockPolicy};

#[derive(Clone, Debug, Serialize)]
pub struct Partman {
    pub version: String,
    pub major: u32,
    pub schema: Ident,
}

impl Partman {
    pub fn func(&self, name: &str) -> String {
        format!("{}.{}", self.schema, Ident::new(name).expect("static name"))
    }
}

/// Finds pg_partman, creating the extension (in schema `partman`) when the
/// package is installed but the extension is not.
pub async fn ensure(client: &Client) -> Result<Partman, PartitionError> {
    if let Some(p) = detect(client).await? {
        return Ok(p);
    }
    let available: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'pg_partman')", &[])
        .await
        .map_err(DbError::query("looking for pg_partman"))?
        .get(0);
    if !available {
        return Err(PartitionError::PartmanMissing);
    }
    client
        .batch_execute("CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman")
        .await
        .map_err(DbError::query("creating the pg_partman extension"))?;
    detect(client).await?.ok_or(PartitionError::PartmanMissing)
}

pub async fn detect(client: &Client) -> Result<Option<Partman>, PartitionError> {
    let row = client
        .query_opt(
            "SELECT e.extversion, n.nspname::text FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'",
            &[],
        )
        .await
        .map_err(DbError::query("detecting pg_partman"))?;
    let Some(row) = row else { return Ok(None) };
    let version: String = row.get(0);
    // Versions like "5.0.0-beta" exist: read the leading digits only.
    let major = version
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    Ok(Some(Partman {
        version,
        major,
        schema: Ident::new(row.get::<_, String>(1))?,
    }))
}

fn interval_text(i: Interval) -> &'static str {
    match i {
        Interval::Day => "1 day",
        Interval::Week => "1 week",
        Interval::Month => "1 month",
    }
}

/// Registers the table (once) and brings `part_config` in line with the spec.
pub async fn register(
    client: &mut Client,
    spec: &TableSpec,
    policy: &LockPolicy,
) -> Result<Partman, PartitionError> {
    let pm = ensure(client).await?;
    if pm.major < 4 {
        return Err(PartitionError::PartmanVersion(pm.version));
    }
    let parent = spec.name.display_unquoted();
    let config_table = format!("{}.part_config", pm.schema);
    let registered: bool = client
        .query_one(
            &format!("SELECT EXISTS (SELECT 1 FROM {config_table} WHERE parent_table = $1)"),
            &[&parent],
        )
        .await
        .map_err(DbError::query("reading part_config"))?
        .get(0);
    if !registered {
        create_parent(client, spec, &pm, policy).await?;
    }
    let retention = spec.retention.map(|r| r.to_string());
    client
        .execute(
            &format!(
                "UPDATE {config_table} SET premake = $2, retention = $3, retention_keep_table = $4,
                        retention_keep_index = $4, infinite_time_partitions = true
                  WHERE parent_table = $1"
            ),
            &[
                &parent,
                &(spec.premake.max(1) as i32),
                &retention,
                &(spec.retention_mode == RetentionMode::Detach),
            ],
        )
        .await
        .map_err(DbError::query("updating part_config"))?;
    Ok(pm)
}

async fn create_parent(
    client: &mut Client,
    spec: &TableSpec,
    pm: &Partman,
    policy: &LockPolicy,
) -> Result<(), PartitionError> {
    let snap = catalog::snapshot(client, spec).await?;
    let default = snap
        .partitions
        .iter()
        .find(|p| p.bound == Bound::Default)
        .map(|p| p.name.clone());
    let ranges = snap
        .partitions
        .iter()
        .filter(|p| p.bound != Bound::Default)
        .count();
    if ranges > 0 {
        return Err(PartitionError::PartmanExisting {
            table: spec.name.display_unquoted(),
            partitions: ranges,
        });
    }
    let mut sql = vec![
        "BEGIN".to_string(),
        policy.set_sql(true),
        "SET LOCAL TimeZone = 'UTC'".into(),
    ];
    let mut args = vec![
        format!(
            "p_parent_table := {}",
            literal(&spec.name.display_unquoted())
        ),
        format!("p_control := {}", literal(spec.time_column.as_str())),
        format!("p_interval := {}", literal(interval_text(spec.interval))),
        format!("p_premake := {}", spec.premake.max(1)),
        format!(
            "p_start_partition := {}",
            literal(&spec.start.format("%Y-%m-%d").to_string())
        ),
    ];
    if spec.interval == Interval::Week {
        // Monday-aligned weeks on both versions ('1 week' alone starts on today's weekday in 4.x).
        args.push("p_date_trunc_interval := 'week'".into());
    }
    if pm.major >= 5 {
        args.push("p_type := 'range'".into());
        if default.is_some() {
            args.push("p_default_table := false".into());
        }
    } else {
        args.push("p_type := 'native'".into());
        if let Some(d) = &default {
            // 4.x always creates `<parent>_default` and cannot be told not
            // to; an empty default partition is dropped so it can. The
            // emptiness check runs inside the transaction, after the parent
            // is locked, so no row can slip into the default between the
            // check and the DROP (which needs this lock anyway).
            sql.push(format!(
                "LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE",
                spec.name
            ));
            // The default's name comes from the catalog: the body's quote
            // tag is one that provably does not occur in it.
            let body = crate::db::DollarQuoted::new(format!(
                " BEGIN IF EXISTS (SELECT 1 FROM {d}) THEN \
                 RAISE EXCEPTION 'default partition holds rows' USING ERRCODE = '{DEFAULT_NOT_EMPTY}'; \
                 END IF; END "
            ));
            sql.push(format!("DO {body}"));
            sql.push(format!("DROP TABLE {d}"));
        }
    }
    sql.push(format!(
        "SELECT {}({})",
        pm.func("create_parent"),
        args.join(", ")
    ));
    sql.push("COMMIT".into());
    let stmts: &[String] = &sql;
    let c: &Client = client;
    let result = policy
        .run_with(
            "pg_partman create_parent",
            is_partman_lock_timeout,
            move || super::executor::run_statements(c, stmts),
        )
        .await;
    match (result, &default) {
        (Err(e), Some(d)) if e.code().map(|c| c.code()) == Some(DEFAULT_NOT_EMPTY) => {
            let rows: i64 = client
                .query_one(&format!("SELECT count(*) FROM {d}"), &[])
                .await
                .map_err(DbError::query("counting the default partition"))?
                .get(0);
            Err(PartitionError::PartmanDefaultRows {
                default: d.display_unquoted(),
                rows,
            })
        }
        (r, _) => Ok(r?),
    }
}

/// SQLSTATE strata raises when pg_partman 4.x would have to drop a default
/// partition that holds rows.
const DEFAULT_NOT_EMPTY: &str = "SA001";

/// pg_partman catches errors inside its functions and re-raises them as
/// `P0001` with the original text, so a lock timeout inside
/// `run_maintenance` loses its SQLSTATE; recognise it by its message.
fn is_partman_lock_timeout(e: &DbError) -> bool {
    if crate::db::is_lock_timeout(e) {
        return true;
    }
    match e {
        DbError::Query { source, .. } => source.as_db_error().is_some_and(|d| {
            d.code().code() == "P0001"
                && (d.message().contains("lock timeout")
                    || d.message().contains("could not obtain lock"))
        }),
        _ => false,
    }
}

/// `run_maintenance` for this table, under lock_timeout and retries.
pub async fn run_maintenance(
    client: &Client,
    spec: &TableSpec,
    pm: &Partman,
    policy: &LockPolicy,
) -> Result<(), PartitionError> {
    let sql = vec![
        "BEGIN".to_string(),
        policy.set_sql(true),
        "SET LOCAL TimeZone = 'UTC'".into(),
        format!(
            "SELECT {}(p_parent_table := {}, p_analyze := true, p_jobmon := false)",
            pm.func("run_maintenance"),
            literal(&spec.name.display_unquoted())
        ),
        "COMMIT".into(),
    ];
    let stmts: &[String] = &sql;
    policy
        .run_with(
            "pg_partman run_maintenance",
            is_partman_lock_timeout,
            move || super::executor::run_statements(client, stmts),
        )
        .await?;
    Ok(())
}

/// The partman backend's `maintain`: register, run maintenance, under the
/// same per-table advisory lock as the native backend.
pub async fn maintain(
    client: &mut Client,
    spec: &TableSpec,
    policy: &LockPolicy,
) -> Result<Partman, PartitionError> {
    let lock = super::table_lock(&spec.name);
    if !db::try_advisory_lock(client, &lock).await? {
        return Err(PartitionError::AlreadyRunning(spec.name.display_unquoted()));
    }
    let result = async {
        let pm = register(client, spec, policy).await?;
        run_maintenance(client, spec, &pm, policy).await?;
        Ok(pm)
    }
    .await;
    db::advisory_unlock(client, &lock).await?;
    result
}
