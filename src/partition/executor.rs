//! Applying a plan: each step in its own short transaction, lock-safe.

use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use super::catalog;
use super::default_move::{self, BOUNDS_CHECK};
use super::period::sql_timestamp;
use super::planner::Step;
use super::PartitionError;
use crate::config::{MaintenanceConfig, TableSpec};
use crate::db::{self, literal, DbError, Ident, LockPolicy, QualifiedName};

#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub step: Step,
    pub ok: bool,
    pub millis: u128,
    pub error: Option<String>,
}

/// What [`apply`] says as it goes.
pub enum Applied<'a> {
    /// A step ended (each step of a swap ends with it).
    Step(&'a StepResult),
    /// How far a long step got: a batch copied, a phase begun.
    Note(String),
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ApplyReport {
    pub results: Vec<StepResult>,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.ok).count()
    }
}

/// The SQL a step runs, for `--dry-run`. `columns` are the insertable columns
/// (only used when rows move out of the default partition).
pub fn step_sql(
    spec: &TableSpec,
    step: &Step,
    default: Option<&QualifiedName>,
    columns: &[Ident],
    policy: &LockPolicy,
) -> Vec<String> {
    let parent = &spec.name;
    let col = &spec.time_column;
    match step {
        Step::Create {
            name,
            from,
            to,
            default_rows,
        } => {
            let (f, t) = (literal(&sql_timestamp(*from)), literal(&sql_timestamp(*to)));
            let check = Ident::new(BOUNDS_CHECK).expect("static name");
            let mut sql = vec![
                "BEGIN".to_string(),
                policy.set_sql(true),
                // A standalone table plus a CHECK matching the bounds: ATTACH
                // then takes only SHARE UPDATE EXCLUSIVE on the parent and
                // skips scanning the new table; inserts into the parent go on.
                format!(
                    "CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING GENERATED \
                     INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) WITH (fillfactor = 100)"
                ),
                format!("ALTER TABLE {name} ADD CONSTRAINT {check} CHECK ({col} >= {f} AND {col} < {t})"),
            ];
            if default.is_some() {
                sql.push(hold_writers_at_parent(parent));
            }
            if let (Some(default), true) = (default, *default_rows > 0) {
                let cols = columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                sql.push(format!(
                    "INSERT INTO {name} ({cols}) SELECT {cols} FROM {default} WHERE {col} >= {f} AND {col} < {t}"
                ));
                sql.push(format!(
                    "DELETE FROM {default} WHERE {col} >= {f} AND {col} < {t}"
                ));
            }
            sql.push(format!(
                "ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM ({f}) TO ({t})"
            ));
            sql.push(format!("ALTER TABLE {name} DROP CONSTRAINT {check}"));
            sql.push("COMMIT".into());
            sql
        }
        Step::Detach {
            name,
            concurrently: true,
        } => vec![
            policy.set_sql(false),
            format!("ALTER TABLE {parent} DETACH PARTITION {name} CONCURRENTLY"),
        ],
        Step::Detach {
            name,
            concurrently: false,
        } => vec![
            "BEGIN".into(),
            policy.set_sql(true),
            format!("ALTER TABLE {parent} DETACH PARTITION {name}"),
            "COMMIT".into(),
        ],
        Step::FinalizeDetach { name } => vec![
            policy.set_sql(false),
            format!("ALTER TABLE {parent} DETACH PARTITION {name} FINALIZE"),
        ],
        Step::Drop { name } => vec![
            "BEGIN".into(),
            policy.set_sql(true),
            format!("ALTER TABLE {parent} DETACH PARTITION {name}"),
            format!("DROP TABLE {name}"),
            "COMMIT".into(),
        ],
        Step::DropDetached { name } => vec![
            "BEGIN".into(),
            policy.set_sql(true),
            format!("DROP TABLE {name}"),
            "COMMIT".into(),
        ],
    }
}

/// Runs the plan's steps under the table's advisory lock. A step that fails
/// (after its lock retries) is reported and the remaining steps still run:
/// each is independent, and a failed step left nothing behind (or, for a
/// batched default-partition move, a marked staging table the next run resumes).
pub async fn apply(
    client: &mut Client,
    spec: &TableSpec,
    steps: &[Step],
    maintenance: &MaintenanceConfig,
    mut progress: impl FnMut(Applied<'_>) + Send,
) -> Result<ApplyReport, PartitionError> {
    let lock = super::table_lock(&spec.name);
    if !db::try_advisory_lock(client, &lock).await? {
        return Err(PartitionError::AlreadyRunning(spec.name.display_unquoted()));
    }
    let result = apply_locked(client, spec, steps, maintenance, &mut progress).await;
    db::advisory_unlock(client, &lock).await?;
    result
}

struct Context<'a> {
    spec: &'a TableSpec,
    maintenance: &'a MaintenanceConfig,
    default: Option<QualifiedName>,
    columns: Vec<Ident>,
    pk: Vec<Ident>,
    partitions: Vec<super::ExistingPartition>,
}

type Bounds = (
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
);

impl Context<'_> {
    fn bounds_of(&self, name: &QualifiedName) -> Bounds {
        match self
            .partitions
            .iter()
            .find(|p| &p.name == name)
            .map(|p| &p.bound)
        {
            Some(super::Bound::Range { from, to }) => (*from, *to),
            _ => (None, None),
        }
    }
}

async fn apply_locked(
    client: &mut Client,
    spec: &TableSpec,
    steps: &[Step],
    maintenance: &MaintenanceConfig,
    progress: &mut (impl FnMut(Applied<'_>) + Send),
) -> Result<ApplyReport, PartitionError> {
    let snap = catalog::snapshot(client, spec).await?;
    let ctx = Context {
        spec,
        maintenance,
        default: snap.default_partition().cloned(),
        columns: catalog::insertable_columns(client, &spec.name).await?,
        pk: default_move::primary_key(client, &spec.name).await?,
        partitions: snap.partitions.clone(),
    };
    let mut report = ApplyReport::default();
    let swap = swap_group(client, &ctx, steps).await?;
    // The swap first: every step after it sees a default partition holding
    // only the rows outside the window, so their ATTACH scans little.
    let order = swap
        .iter()
        .copied()
        .chain((0..steps.len()).filter(|i| !swap.contains(i)));
    for i in order {
        let step = &steps[i];
        if swap.contains(&i) {
            if i != swap[0] {
                continue;
            }
            let started = Instant::now();
            let mut notes = |m: String| progress(Applied::Note(m));
            let error = match run_swap(client, &ctx, steps, &swap, &mut notes).await {
                Ok(()) => None,
                Err(e) => Some(describe_error(client, spec, e).await),
            };
            for &j in &swap {
                let result = StepResult {
                    step: steps[j].clone(),
                    ok: error.is_none(),
                    millis: started.elapsed().as_millis(),
                    error: error.clone(),
                };
                progress(Applied::Step(&result));
                report.results.push(result);
            }
            continue;
        }
        let started = Instant::now();
        let mut notes = |m: String| progress(Applied::Note(m));
        let error = match run_step(client, &ctx, step, &mut notes).await {
            Ok(()) => None,
            Err(e) => Some(describe_error(client, spec, e).await),
        };
        let result = StepResult {
            step: step.clone(),
            ok: error.is_none(),
            millis: started.elapsed().as_millis(),
            error,
        };
        progress(Applied::Step(&result));
        report.results.push(result);
    }
    Ok(report)
}

/// A failed step's error; a lock timeout names who held the lock.
async fn describe_error(client: &Client, spec: &TableSpec, e: PartitionError) -> String {
    match e {
        PartitionError::Db(e @ DbError::LockTimeout { .. }) => {
            let holders = db::describe_blockers(&db::blockers(client, &spec.name).await);
            format!("{e}; {holders}")
        }
        e => e.to_string(),
    }
}

/// The create steps (by index) to run as one swap of the default partition
/// (see `default_move::run_swap`), or none. A swap is worth it when more rows
/// move than one short transaction should delete and ATTACH should scan,
/// while few rows stay behind (the new default partition is scanned at
/// ATTACH) and nothing else depends on the default partition. Otherwise the
/// steps run one by one, and a swap left unfinished by an earlier run is
/// abandoned (its staging table and triggers dropped).
async fn swap_group(
    client: &Client,
    ctx: &Context<'_>,
    steps: &[Step],
) -> Result<Vec<usize>, PartitionError> {
    let Some(default) = &ctx.default else {
        return Ok(Vec::new());
    };
    // What an earlier swap may have left: its old default, index names.
    default_move::drop_retired(client, default, &ctx.maintenance.lock).await?;
    let creates: Vec<usize> = steps
        .iter()
        .enumerate()
        // Periods with no rows in the default partition (those ahead) are
        // created after the swap, each in its own short transaction: attaching
        // them in the final transaction would only lengthen it.
        .filter(|(_, s)| matches!(s, Step::Create { default_rows, .. } if *default_rows > 0))
        .map(|(i, _)| i)
        .collect();
    let moved: u64 = creates
        .iter()
        .map(|&i| match &steps[i] {
            Step::Create { default_rows, .. } => *default_rows as u64,
            _ => 0,
        })
        .sum();
    let batch = ctx.maintenance.move_batch_rows;
    let wanted = !ctx.pk.is_empty()
        && moved > batch
        && default_move::swappable(client, default).await?
        && default_move::rest_rows(client, ctx.spec, default, &ranges(steps, &creates)).await?
            <= batch as i64;
    if wanted {
        return Ok(creates);
    }
    default_move::abandon_rest(client, default, &ctx.maintenance.lock).await?;
    Ok(Vec::new())
}

fn ranges(
    steps: &[Step],
    group: &[usize],
) -> Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    group
        .iter()
        .filter_map(|&i| match &steps[i] {
            Step::Create { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

async fn run_swap(
    client: &Client,
    ctx: &Context<'_>,
    steps: &[Step],
    group: &[usize],
    notes: default_move::Notes<'_>,
) -> Result<(), PartitionError> {
    let default = ctx
        .default
        .as_ref()
        .expect("a swap has a default partition");
    for &i in group {
        invalidate_rollups(client, ctx, &steps[i]).await?;
    }
    let mut moves = Vec::with_capacity(group.len());
    let mut resume = Vec::with_capacity(group.len());
    for &i in group {
        let Step::Create { name, from, to, .. } = &steps[i] else {
            continue;
        };
        match default_move::existing(client, name).await? {
            default_move::Existing::Other => {
                return Err(PartitionError::NameTaken(name.display_unquoted()))
            }
            e => resume.push(e == default_move::Existing::Staging),
        }
        moves.push(default_move::Move {
            spec: ctx.spec,
            name,
            default,
            rows: default_move::Rows::Range {
                from: *from,
                to: *to,
            },
            columns: &ctx.columns,
            pk: &ctx.pk,
        });
    }
    let rest_name = default_move::rest_name(client, default).await?;
    let rest = default_move::Move {
        spec: ctx.spec,
        name: &rest_name,
        default,
        rows: default_move::Rows::Rest(ranges(steps, group)),
        columns: &ctx.columns,
        pk: &ctx.pk,
    };
    default_move::run_swap(
        client,
        &moves,
        &resume,
        &rest,
        &ctx.maintenance.lock,
        ctx.maintenance.move_batch_rows,
        notes,
    )
    .await
}

/// Runs `sql` (see [`run_statements`]) under the lock policy's retries.
async fn retried(
    client: &Client,
    policy: &LockPolicy,
    what: &str,
    sql: &[String],
) -> Result<(), DbError> {
    policy.run(what, move || run_statements(client, sql)).await
}

async fn run_step(
    client: &Client,
    ctx: &Context<'_>,
    step: &Step,
    notes: default_move::Notes<'_>,
) -> Result<(), PartitionError> {
    let policy = &ctx.maintenance.lock;
    let what = describe(step);
    invalidate_rollups(client, ctx, step).await?;
    let (name, from, to, default_rows) = match step {
        Step::Create {
            name,
            from,
            to,
            default_rows,
        } => (name, from, to, default_rows),
        Step::Detach {
            name,
            concurrently: false,
        } => {
            let bounds = ctx.bounds_of(name);
            return super::detached::detach(client, ctx.spec, name, bounds, policy).await;
        }
        Step::Detach { name, .. } => {
            // DETACH CONCURRENTLY cannot run in a transaction: the rename
            // follows it, and a run killed in between leaves a plain table
            // under the live name, which the next maintain adopts.
            let sql = step_sql(ctx.spec, step, ctx.default.as_ref(), &ctx.columns, policy);
            retried(client, policy, &what, &sql).await?;
            let bounds = ctx.bounds_of(name);
            return super::detached::record(client, ctx.spec, name, bounds, policy).await;
        }
        Step::DropDetached { name } => {
            let sql = step_sql(ctx.spec, step, ctx.default.as_ref(), &ctx.columns, policy);
            retried(client, policy, &what, &sql).await?;
            return super::detached::mark_dropped(client, name).await;
        }
        _ => {
            let sql = step_sql(ctx.spec, step, ctx.default.as_ref(), &ctx.columns, policy);
            return Ok(retried(client, policy, &what, &sql).await?);
        }
    };
    let staged = default_move::existing(client, name).await?;
    if staged == default_move::Existing::Other {
        return Err(PartitionError::NameTaken(name.display_unquoted()));
    }
    let batched = staged == default_move::Existing::Staging
        || (*default_rows as u64 > ctx.maintenance.move_batch_rows && !ctx.pk.is_empty());
    let default = match (&ctx.default, batched) {
        (Some(d), true) => d,
        // Small moves (and tables without a primary key to reconcile by) go
        // in one transaction: the lock on the default partition is short.
        _ => {
            let sql = step_sql(ctx.spec, step, ctx.default.as_ref(), &ctx.columns, policy);
            return Ok(retried(client, policy, &what, &sql).await?);
        }
    };
    let mv = default_move::Move {
        spec: ctx.spec,
        name,
        default,
        rows: default_move::Rows::Range {
            from: *from,
            to: *to,
        },
        columns: &ctx.columns,
        pk: &ctx.pk,
    };
    let resume = staged == default_move::Existing::Staging;
    default_move::run(
        client,
        &mv,
        policy,
        ctx.maintenance.move_batch_rows,
        resume,
        notes,
    )
    .await
}

/// Partition DDL fires no DML trigger, so the rows a step removes (or moves
/// out of the default partition) are announced to the rollups first: their
/// views then read that range live, exact before and after the step.
async fn invalidate_rollups(
    client: &Client,
    ctx: &Context<'_>,
    step: &Step,
) -> Result<(), PartitionError> {
    let (from, to) = match step {
        Step::Detach { name, .. } | Step::Drop { name } => ctx.bounds_of(name),
        Step::Create {
            from,
            to,
            default_rows,
            ..
        } if *default_rows > 0 => (Some(*from), Some(*to)),
        _ => return Ok(()),
    };
    crate::rollup::invalidate_range(client, &ctx.spec.name, from, to).await?;
    Ok(())
}

pub fn describe(step: &Step) -> String {
    match step {
        Step::Create {
            name,
            from,
            to,
            default_rows,
        } if *default_rows > 0 => format!(
            "create {} [{}, {}) moving {} rows out of the default partition",
            name.display_unquoted(),
            sql_timestamp(*from),
            sql_timestamp(*to),
            default_rows
        ),
        Step::Create { name, from, to, .. } => {
            format!(
                "create {} [{}, {})",
                name.display_unquoted(),
                sql_timestamp(*from),
                sql_timestamp(*to)
            )
        }
        Step::Detach { name, .. } => format!("detach {}", name.display_unquoted()),
        Step::Drop { name } => format!("drop {}", name.display_unquoted()),
        Step::FinalizeDetach { name } => format!(
            "finish the interrupted detach of {}",
            name.display_unquoted()
        ),
        Step::DropDetached { name } => format!(
            "drop {} (detached earlier, past detached_drop_after)",
            name.display_unquoted()
        ),
    }
}

/// Runs the statements of one step (any module's DDL uses this), through
/// [`db::run_statements`], and resets the session's `lock_timeout` the
/// step set to the session default afterwards.
pub async fn run_statements(client: &Client, sql: &[String]) -> Result<(), DbError> {
    let stmts: Vec<db::Statement> = sql.iter().cloned().map(db::Statement::from).collect();
    let result = db::run_statements(client, &stmts).await;
    let _ = client.batch_execute("RESET lock_timeout").await;
    result
}

/// With a default partition, ATTACH takes ACCESS EXCLUSIVE on it, and an
/// INSERT that was already routed to the default partition and waits for
/// that lock fails afterwards with SQLSTATE 23514 (the default's constraint
/// changed under it). Holding the parent makes writers wait *before* routing
/// instead, so they route to the new partition once we commit: a wait of the
/// step's length, never a failed insert. It must be ACCESS EXCLUSIVE, not
/// merely against writers: a reader that locks the parent while we work plans
/// with the partitions it saw then (without the new one) but reads with a
/// snapshot taken after our commit, and would miss the rows we moved.
pub(super) fn hold_writers_at_parent(parent: &QualifiedName) -> String {
    format!("LOCK TABLE ONLY {parent} IN ACCESS EXCLUSIVE MODE")
}
