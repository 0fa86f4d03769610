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
    mut progress: impl FnMut(&StepResult),
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
}

async fn apply_locked(
    client: &mut Client,
    spec: &TableSpec,
    steps: &[Step],
    maintenance: &MaintenanceConfig,
    progress: &mut impl FnMut(&StepResult),
) -> Result<ApplyReport, PartitionError> {
    let snap = catalog::snapshot(client, spec).await?;
    let ctx = Context {
        spec,
        maintenance,
        default: snap.default_partition().cloned(),
        columns: catalog::insertable_columns(client, &spec.name).await?,
        pk: default_move::primary_key(client, &spec.name).await?,
    };
    let mut report = ApplyReport::default();
    for step in steps {
        let started = Instant::now();
        let error = match run_step(client, &ctx, step).await {
            Ok(()) => None,
            Err(PartitionError::Db(e @ DbError::LockTimeout { .. })) => {
                let holders = lock_holders(client, &spec.name, ctx.default.as_ref()).await;
                Some(format!("{e}; {holders}"))
            }
            Err(e) => Some(e.to_string()),
        };
        let result = StepResult {
            step: step.clone(),
            ok: error.is_none(),
            millis: started.elapsed().as_millis(),
            error,
        };
        progress(&result);
        report.results.push(result);
    }
    Ok(report)
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

async fn run_step(client: &Client, ctx: &Context<'_>, step: &Step) -> Result<(), PartitionError> {
    let policy = &ctx.maintenance.lock;
    let what = describe(step);
    let Step::Create {
        name,
        from,
        to,
        default_rows,
    } = step
    else {
        let sql = step_sql(ctx.spec, step, ctx.default.as_ref(), &ctx.columns, policy);
        return Ok(retried(client, policy, &what, &sql).await?);
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
        from: *from,
        to: *to,
        columns: &ctx.columns,
        pk: &ctx.pk,
    };
    let resume = staged == default_move::Existing::Staging;
    default_move::run(client, &mv, policy, ctx.maintenance.move_batch_rows, resume).await
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
    }
}

/// Runs the statements of one step (any module's DDL uses this). Statements between BEGIN and COMMIT form
/// one transaction; on any error it is rolled back, so a timed-out attempt
/// leaves no half-made partition.
pub async fn run_statements(client: &Client, sql: &[String]) -> Result<(), DbError> {
    let mut in_tx = false;
    for stmt in sql {
        if let Err(e) = client.batch_execute(stmt).await {
            if in_tx {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            let _ = client.batch_execute("RESET lock_timeout").await;
            return Err(DbError::query(format!("running `{}`", truncate(stmt)))(e));
        }
        match stmt.as_str() {
            "BEGIN" => in_tx = true,
            "COMMIT" => in_tx = false,
            _ => {}
        }
    }
    client
        .batch_execute("RESET lock_timeout")
        .await
        .map_err(DbError::query("resetting lock_timeout"))?;
    Ok(())
}

fn truncate(s: &str) -> String {
    if s.len() <= 160 {
        s.to_string()
    } else {
        let mut end = 160;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// Who holds locks on the table (or its default partition), for the error of
/// a step that gave up waiting: the operator needs the session to look at.
async fn lock_holders(
    client: &Client,
    parent: &QualifiedName,
    default: Option<&QualifiedName>,
) -> String {
    let default = default.map(|d| d.to_string()).unwrap_or_default();
    let rows = client
        .query(
            "SELECT l.pid, l.mode, l.relation::regclass::text, coalesce(a.application_name, ''),
                    coalesce(a.state, ''), left(coalesce(a.query, ''), 80),
                    coalesce(extract(epoch FROM now() - a.xact_start), 0)::int8
               FROM pg_catalog.pg_locks l
               JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid()
                AND l.relation IN (to_regclass($1), to_regclass(nullif($2, '')))
              ORDER BY a.xact_start",
            &[&parent.to_string(), &default],
        )
        .await;
    match rows {
        Ok(rows) if !rows.is_empty() => {
            let held: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "pid {} holds {} on {} ({}{}, transaction open {} s: {})",
                        r.get::<_, i32>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                        r.get::<_, String>(4),
                        match r.get::<_, String>(3) {
                            a if a.is_empty() => String::new(),
                            a => format!(", application {a}"),
                        },
                        r.get::<_, i64>(6),
                        r.get::<_, String>(5)
                    )
                })
                .collect();
            held.join("; ")
        }
        Ok(_) => "the conflicting lock was released before it could be identified".into(),
        Err(e) => format!("could not list the lock holders: {e}"),
    }
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
