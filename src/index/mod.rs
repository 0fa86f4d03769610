//! The index set of a managed table: plan against the catalog, apply online.
//!
//! On a table that already holds data nothing is built under a lock that
//! blocks writers: `CREATE INDEX … ON ONLY parent` (instant), then per
//! partition `CREATE INDEX CONCURRENTLY` and `ALTER INDEX … ATTACH
//! PARTITION`. Partition index names are deterministic, so a run that was
//! interrupted (leaving an INVALID index) is detected and repaired by the next.

mod plan;
mod set;

use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

pub use plan::{
    plan, ChildIndex, IndexConflict, IndexPlan, IndexSnapshot, IndexStep, ParentIndex,
    PartitionIndexes,
};
pub use set::{child_name, fit_name, wanted, IndexDef, Method};

use crate::config::TableSpec;
use crate::db::{self, DbError, LockPolicy, QualifiedName};
use crate::partition::{self, PartitionError};

/// `maintenance_work_mem` for index builds: GIN builds are several times
/// faster with room to sort than at PostgreSQL's 64 MB default.
const BUILD_MEMORY: &str = "256MB";

pub async fn snapshot(
    client: &mut Client,
    spec: &TableSpec,
) -> Result<IndexSnapshot, PartitionError> {
    let parent = spec.name.to_string();
    let columns = client
        .query(
            "SELECT attname::text FROM pg_catalog.pg_attribute
              WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&parent],
        )
        .await
        .map_err(DbError::query("listing columns"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let parent_indexes = client
        .query(include_str!("parent_indexes.sql"), &[&parent])
        .await
        .map_err(DbError::query("listing the parent's indexes"))?
        .iter()
        .map(|r| ParentIndex {
            name: r.get(0),
            method: r.get(1),
            valid: r.get(2),
            columns: r.get(3),
            opclasses: r.get(4),
        })
        .collect();
    let parts = partition::snapshot(client, spec).await?;
    let children = client
        .query(include_str!("child_indexes.sql"), &[&parent])
        .await
        .map_err(DbError::query("listing partition indexes"))?;
    // Grouped once: matching every partition against every row is
    // quadratic (8 million comparisons at 1,000 partitions).
    let mut by_partition: std::collections::HashMap<(String, String), Vec<ChildIndex>> =
        std::collections::HashMap::new();
    for r in &children {
        by_partition
            .entry((r.get(0), r.get(1)))
            .or_default()
            .push(ChildIndex {
                name: r.get(2),
                valid: r.get(3),
                attached_to: r.get(4),
            });
    }
    let partitions = parts
        .partitions
        .iter()
        .filter(|p| !p.detach_pending)
        .map(|p| PartitionIndexes {
            partition: p.name.clone(),
            indexes: by_partition
                .remove(&(
                    p.name.schema.as_str().to_string(),
                    p.name.name.as_str().to_string(),
                ))
                .unwrap_or_default(),
        })
        .collect();
    Ok(IndexSnapshot {
        columns,
        parent: parent_indexes,
        partitions,
    })
}

pub async fn plan_now(client: &mut Client, spec: &TableSpec) -> Result<IndexPlan, PartitionError> {
    let snap = snapshot(client, spec).await?;
    Ok(plan(&spec.name, &wanted(spec), &snap))
}

/// The SQL of a step (statements; BEGIN/COMMIT mark one transaction).
pub fn step_sql(parent: &QualifiedName, step: &IndexStep, policy: &LockPolicy) -> Vec<String> {
    match step {
        IndexStep::CreateOnParent { def } => vec![
            "BEGIN".into(),
            policy.set_sql(true),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON ONLY {parent} {}",
                db::Ident::new(def.name.clone()).expect("checked name"),
                def.body()
            ),
            "COMMIT".into(),
        ],
        IndexStep::DropInvalid { index } => {
            vec![format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")]
        }
        IndexStep::Build {
            partition,
            index,
            def,
        } => vec![
            format!("SET maintenance_work_mem = '{BUILD_MEMORY}'"),
            format!(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {partition} {}",
                db::Ident::new(index.clone()).expect("checked name"),
                def.body()
            ),
            "RESET maintenance_work_mem".into(),
        ],
        IndexStep::Attach {
            parent_index,
            index,
        } => vec![
            "BEGIN".into(),
            policy.set_sql(true),
            format!("ALTER INDEX {parent_index} ATTACH PARTITION {index}"),
            "COMMIT".into(),
        ],
    }
}

pub fn describe(step: &IndexStep) -> String {
    match step {
        IndexStep::CreateOnParent { def } => {
            format!("create {} on the parent ({})", def.name, def.body())
        }
        IndexStep::DropInvalid { index } => {
            format!("drop the INVALID leftover {}", index.display_unquoted())
        }
        IndexStep::Build {
            partition, index, ..
        } => format!(
            "build {index} on {} concurrently",
            partition.display_unquoted()
        ),
        IndexStep::Attach {
            parent_index,
            index,
        } => {
            format!(
                "attach {} to {}",
                index.display_unquoted(),
                parent_index.name.as_str()
            )
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct IndexStepResult {
    pub step: IndexStep,
    pub ok: bool,
    pub millis: u128,
    pub bytes: Option<i64>,
    pub error: Option<String>,
}

/// Applies the plan under the table's `indexes:` advisory lock. Stops at the
/// first failure: later steps (an ATTACH after a failed build) depend on it.
pub async fn apply(
    client: &mut Client,
    spec: &TableSpec,
    steps: &[IndexStep],
    policy: &LockPolicy,
    mut progress: impl FnMut(usize, &IndexStepResult),
) -> Result<Vec<IndexStepResult>, PartitionError> {
    let lock = format!("indexes:{}", spec.name.display_unquoted());
    if !db::try_advisory_lock(client, &lock).await? {
        return Err(PartitionError::AlreadyRunning(format!(
            "index build of {}",
            spec.name.display_unquoted()
        )));
    }
    let results = apply_locked(client, spec, steps, policy, &mut progress).await;
    db::advisory_unlock(client, &lock).await?;
    results
}

async fn apply_locked(
    client: &mut Client,
    spec: &TableSpec,
    steps: &[IndexStep],
    policy: &LockPolicy,
    progress: &mut impl FnMut(usize, &IndexStepResult),
) -> Result<Vec<IndexStepResult>, PartitionError> {
    let mut results = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let started = Instant::now();
        let sql = step_sql(&spec.name, step, policy);
        let stmts: &[String] = &sql;
        let c: &Client = client;
        let outcome = policy
            .run(&describe(step), move || partition::run_statements(c, stmts))
            .await;
        let bytes = match (&outcome, step) {
            (
                Ok(()),
                IndexStep::Build {
                    partition, index, ..
                },
            ) => {
                let q = partition.sibling(index)?;
                client
                    .query_one(
                        "SELECT pg_relation_size(to_regclass($1))",
                        &[&q.to_string()],
                    )
                    .await
                    .ok()
                    .map(|r| r.get(0))
            }
            _ => None,
        };
        let result = IndexStepResult {
            step: step.clone(),
            ok: outcome.is_ok(),
            millis: started.elapsed().as_millis(),
            bytes,
            error: outcome.err().map(|e| e.to_string()),
        };
        progress(i, &result);
        let failed = !result.ok;
        results.push(result);
        if failed {
            break;
        }
    }
    Ok(results)
}
