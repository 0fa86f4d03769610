//! Moving rows out of the default partition while writers wait only for a
//! transaction whose work does not depend on the rows moved.
//!
//! 1. A staging table with the parent's columns, indexes and a bounds CHECK
//!    (and a comment marking it as strata's) is created; nothing is locked
//!    that writers use.
//! 2. The range's rows are *copied* into it in committed batches of heap
//!    blocks; they stay visible in the default partition throughout.
//! 3. Row triggers on the default partition start logging the primary keys of
//!    rows of the range that are inserted, updated or deleted (into an
//!    unlogged table). A full reconcile (primary key + whole row) in one
//!    REPEATABLE READ snapshot taken after that makes the staging table equal
//!    to the range as of the snapshot; every later change is in the log.
//! 4. Catch-up passes apply the logged keys (delete them from the staging
//!    table, copy their current rows), each in its own snapshot, until what
//!    arrived during the last pass is small.
//! 5. One final transaction locks the parent against writers and the default
//!    partition, applies the small remaining delta, deletes the range from the
//!    default partition, drops the triggers and attaches the staging table.
//!
//! Readers see every row in exactly one place: in the default partition until
//! the final commit, in the new partition after it. A run that stops anywhere
//! leaves the marked staging table (and perhaps the triggers); the next run
//! resumes at step 2, and step 3's full reconcile makes whatever was left
//! right again.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::period::sql_timestamp;
use super::PartitionError;
use crate::config::TableSpec;
use crate::db::{literal, DbError, Ident, IdentError, LockPolicy, QualifiedName, Statement};
use crate::format;

/// Table comment that marks a staging table as strata's own.
pub const STAGING_MARK: &str = "strata staging partition";
pub(super) const BOUNDS_CHECK: &str = "strata_bounds";

/// Catch-up passes before the final transaction at most. Each pass applies
/// what arrived during the previous one, so the log shrinks geometrically
/// unless writers change the range faster than a pass applies it.
const MAX_CATCH_UP_PASSES: u32 = 20;
/// A pass that applied at most this many logged keys ends the catch-up: what
/// arrives during such a pass is applied by the final transaction in a few ms.
const SMALL_DELTA: u64 = 200;

#[derive(Debug, PartialEq, Eq)]
pub enum Existing {
    None,
    /// A staging table left by an interrupted move: resume it.
    Staging,
    /// Something else already has the name.
    Other,
}

/// Where a long move says how far it got: a line per batch copied (rate
/// and ETA) and one per phase. The CLI prints them; jobs run by the API and
/// the scheduler drop them.
pub type Notes<'a> = &'a mut (dyn FnMut(String) + Send);

pub async fn existing(client: &Client, name: &QualifiedName) -> Result<Existing, DbError> {
    let row = client
        .query_opt(
            "SELECT c.relispartition, coalesce(obj_description(c.oid, 'pg_class'), '')
               FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)",
            &[&name.to_string()],
        )
        .await
        .map_err(DbError::query("looking for a staging table"))?;
    Ok(match row {
        None => Existing::None,
        Some(r) if !r.get::<_, bool>(0) && r.get::<_, String>(1).starts_with(STAGING_MARK) => {
            Existing::Staging
        }
        Some(_) => Existing::Other,
    })
}

/// The parent's primary-key columns (empty when it has none).
pub async fn primary_key(
    client: &Client,
    table: &QualifiedName,
) -> Result<Vec<Ident>, PartitionError> {
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
              WHERE i.indrelid = to_regclass($1) AND i.indisprimary
              ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table.to_string()],
        )
        .await
        .map_err(DbError::query("reading the primary key"))?;
    rows.iter()
        .map(|r| Ok(Ident::new(r.get::<_, String>(0))?))
        .collect()
}

fn list(cols: &[Ident], prefix: &str) -> String {
    cols.iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_eq(pk: &[Ident], a: &str, b: &str) -> String {
    pk.iter()
        .map(|c| format!("{a}.{c} = {b}.{c}"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Which rows of the default partition a staging table takes.
#[derive(Clone, Debug)]
pub enum Rows {
    /// The rows of one new partition, `[from, to)`.
    Range {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// Every row outside all the ranges (NULL times included): the
    /// replacement default partition of a swap.
    Rest(Vec<(DateTime<Utc>, DateTime<Utc>)>),
}

impl Rows {
    /// The condition as SQL on `row` (`""`, `"d."`, `"NEW."`), with the
    /// bounds as literals: the same text serves DML, trigger WHEN clauses and
    /// CHECK constraints, which cannot take parameters.
    fn sql(&self, col: &Ident, row: &str) -> String {
        let range = |from: &DateTime<Utc>, to: &DateTime<Utc>| {
            format!(
                "{row}{col} >= {} AND {row}{col} < {}",
                literal(&sql_timestamp(*from)),
                literal(&sql_timestamp(*to))
            )
        };
        match self {
            Rows::Range { from, to } => range(from, to),
            Rows::Rest(ranges) if ranges.is_empty() => "true".into(),
            Rows::Rest(ranges) => format!(
                "NOT coalesce({}, false)",
                ranges
                    .iter()
                    .map(|(f, t)| format!("({})", range(f, t)))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
        }
    }
}

pub struct Move<'a> {
    pub spec: &'a TableSpec,
    pub name: &'a QualifiedName,
    pub default: &'a QualifiedName,
    pub rows: Rows,
    pub columns: &'a [Ident],
    pub pk: &'a [Ident],
}

/// The change log of one move and what feeds it, named after the staging
/// table's oid: short, unique, and the same when a later run resumes.
struct ChangeLog {
    table: QualifiedName,
    function: QualifiedName,
    triggers: [Ident; 3],
}

impl ChangeLog {
    fn for_staging(staging: &QualifiedName, oid: u32) -> Result<Self, IdentError> {
        let base = format!("strata_move_{oid}");
        Ok(ChangeLog {
            table: staging.sibling(&format!("{base}_log"))?,
            function: staging.sibling(&base)?,
            triggers: [
                Ident::new(format!("{base}_ins"))?,
                Ident::new(format!("{base}_upd"))?,
                Ident::new(format!("{base}_del"))?,
            ],
        })
    }
}

impl Move<'_> {
    fn range_literal(&self, row: &str) -> String {
        self.rows.sql(&self.spec.time_column, row)
    }

    /// `FOR VALUES FROM (…) TO (…)`, or `DEFAULT` for the rest.
    fn bound_sql(&self) -> String {
        match &self.rows {
            Rows::Range { from, to } => format!(
                "FOR VALUES FROM ({}) TO ({})",
                literal(&sql_timestamp(*from)),
                literal(&sql_timestamp(*to))
            ),
            Rows::Rest(_) => "DEFAULT".into(),
        }
    }

    fn describe_rows(&self) -> String {
        match &self.rows {
            Rows::Range { from, to } => {
                format!("[{}, {})", sql_timestamp(*from), sql_timestamp(*to))
            }
            Rows::Rest(_) => "the rest of the default partition".into(),
        }
    }

    /// Creates the staging table: the parent's columns, constraints and
    /// indexes, the bounds CHECK (so ATTACH need not scan it), and the marker
    /// comment. Locks nothing writers use.
    pub fn create_staging_sql(&self, policy: &LockPolicy) -> Vec<Statement> {
        let (name, parent) = (self.name, &self.spec.name);
        let check = Ident::new(BOUNDS_CHECK).expect("static name");
        let mark = format!("{STAGING_MARK} {}", self.describe_rows());
        let mut sql = vec![
            Statement::Begin,
            Statement::Sql(policy.set_sql(true)),
            Statement::Sql(format!(
                "CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS \
                 INCLUDING STORAGE INCLUDING COMMENTS INCLUDING INDEXES) WITH (fillfactor = 100)"
            )),
        ];
        // A replacement default partition gets no CHECK: its condition is the
        // default's own partition constraint, which PostgreSQL checks at ATTACH.
        if let Rows::Range { .. } = self.rows {
            sql.push(Statement::Sql(format!(
                "ALTER TABLE {name} ADD CONSTRAINT {check} CHECK ({})",
                self.range_literal("")
            )));
        }
        sql.push(Statement::Sql(format!(
            "COMMENT ON TABLE {name} IS {}",
            literal(&mark)
        )));
        sql.push(Statement::Commit);
        sql
    }

    /// Copies the rows of the range found in heap blocks `[first, last)` of
    /// the default partition (a TID range scan: no sort, no index).
    pub async fn copy_blocks(
        &self,
        client: &Client,
        first: i64,
        last: i64,
    ) -> Result<u64, DbError> {
        let cols = list(self.columns, "");
        let sql = format!(
            "INSERT INTO {name} ({cols}) SELECT {cols} FROM {default}
              WHERE ctid >= $1::text::tid AND ctid < $2::text::tid AND {range}
             ON CONFLICT DO NOTHING",
            name = self.name,
            default = self.default,
            range = self.range_literal(""),
        );
        let (a, b) = (format!("({first},0)"), format!("({last},0)"));
        client
            .execute(&sql, &[&a, &b])
            .await
            .map_err(DbError::query(format!(
                "copying rows into {}",
                self.name.display_unquoted()
            )))
    }

    /// Row triggers on the default partition that log the primary key of every
    /// row of the range inserted, updated (old and new key) or deleted.
    /// `ENABLE ALWAYS`, so writes under `session_replication_role = replica`
    /// are logged too. Idempotent: a resumed run keeps what is there.
    fn change_log_sql(&self, log: &ChangeLog, policy: &LockPolicy) -> Vec<Statement> {
        let (default, parent, table, function) =
            (self.default, &self.spec.name, &log.table, &log.function);
        let keys = list(self.pk, "");
        let body = crate::db::DollarQuoted::new(format!(
            "BEGIN
    IF TG_OP <> 'INSERT' THEN INSERT INTO {table} ({keys}) VALUES ({old}); END IF;
    IF TG_OP <> 'DELETE' THEN INSERT INTO {table} ({keys}) VALUES ({new}); END IF;
    RETURN NULL;
END",
            old = list(self.pk, "OLD."),
            new = list(self.pk, "NEW."),
        ));
        let [ins, upd, del] = &log.triggers;
        let (old_in, new_in) = (self.range_literal("OLD."), self.range_literal("NEW."));
        let mut sql = vec![
            Statement::Begin,
            Statement::Sql(policy.set_sql(true)),
            // First the lock that waits out autovacuum and DDL without making
            // writers queue behind us (SHARE UPDATE EXCLUSIVE does not
            // conflict with theirs); CREATE TRIGGER below then only waits for
            // inserts already running.
            Statement::Sql(format!("LOCK TABLE {default} IN SHARE UPDATE EXCLUSIVE MODE")),
            Statement::Sql(format!(
                "CREATE UNLOGGED TABLE IF NOT EXISTS {table} AS SELECT {keys} FROM {parent} WITH NO DATA"
            )),
            Statement::Sql(format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {body}"
            )),
        ];
        // CREATE TRIGGER takes SHARE ROW EXCLUSIVE on the default partition:
        // it waits (lock_timeout) for in-flight writers, and every write
        // committed after this transaction fires the triggers.
        for (trigger, when) in [
            (
                ins,
                format!("INSERT ON {default} FOR EACH ROW WHEN ({new_in})"),
            ),
            (
                upd,
                format!("UPDATE ON {default} FOR EACH ROW WHEN (({old_in}) OR ({new_in}))"),
            ),
            (
                del,
                format!("DELETE ON {default} FOR EACH ROW WHEN ({old_in})"),
            ),
        ] {
            sql.push(Statement::Sql(format!(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER {when} EXECUTE FUNCTION {function}()"
            )));
            sql.push(Statement::Sql(format!(
                "ALTER TABLE {default} ENABLE ALWAYS TRIGGER {trigger}"
            )));
        }
        sql.push(Statement::Commit);
        sql
    }

    /// Applies the logged keys visible to the current snapshot: their rows
    /// leave the staging table and come back as the default partition has
    /// them now (if still in the range). Returns the keys applied.
    async fn apply_delta(&self, client: &Client, log: &ChangeLog) -> Result<u64, DbError> {
        let (name, default, table) = (self.name, self.default, &log.table);
        let cols = list(self.columns, "");
        let keys = list(self.pk, "");
        let ctx = || DbError::query(format!("applying changes to {}", name.display_unquoted()));
        client
            .execute(
                &format!(
                    "DELETE FROM {name} t USING {table} l WHERE {}",
                    key_eq(self.pk, "t", "l")
                ),
                &[],
            )
            .await
            .map_err(ctx())?;
        client
            .execute(
                &format!(
                    "INSERT INTO {name} ({cols}) SELECT {cols} FROM {default} d
                      WHERE {range} AND ({dkeys}) IN (SELECT {keys} FROM {table})",
                    range = self.range_literal("d."),
                    dkeys = list(self.pk, "d."),
                ),
                &[],
            )
            .await
            .map_err(ctx())?;
        client
            .execute(&format!("DELETE FROM {table}"), &[])
            .await
            .map_err(ctx())
    }

    /// Makes the staging table equal to the range as of one snapshot taken
    /// after the change log started: what the log holds then is in the
    /// snapshot already, so it is cleared in the same transaction.
    async fn full_reconcile(&self, client: &Client, log: &ChangeLog) -> Result<(), DbError> {
        let (name, default, table) = (self.name, self.default, &log.table);
        let cols = list(self.columns, "");
        let ctx = || DbError::query(format!("reconciling {}", name.display_unquoted()));
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(ctx())?;
        let result = async {
            client
                .execute(&format!("DELETE FROM {table}"), &[])
                .await?;
            // Rows deleted or changed in the default partition since they were copied.
            client
                .execute(
                    &format!(
                        "DELETE FROM {name} t WHERE NOT EXISTS (SELECT 1 FROM {default} d WHERE {pk_eq} \
                         AND ROW({dcols}) IS NOT DISTINCT FROM ROW({tcols}))",
                        pk_eq = key_eq(self.pk, "d", "t"),
                        dcols = list(self.columns, "d."),
                        tcols = list(self.columns, "t."),
                    ),
                    &[],
                )
                .await?;
            // Rows added (or changed) since.
            client
                .execute(
                    &format!(
                        "INSERT INTO {name} ({cols}) SELECT {cols} FROM {default} WHERE {range} \
                         ON CONFLICT DO NOTHING",
                        range = self.range_literal("")
                    ),
                    &[],
                )
                .await?;
            client.batch_execute("COMMIT").await
        }
        .await;
        if result.is_err() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result.map_err(ctx())
    }

    /// One catch-up pass in its own snapshot. Keys logged by transactions
    /// that commit after the snapshot stay in the log for the next pass.
    async fn catch_up(&self, client: &Client, log: &ChangeLog) -> Result<u64, DbError> {
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; {NESTED_LOOPS}"
            ))
            .await
            .map_err(DbError::query("starting a catch-up pass"))?;
        match self.apply_delta(client, log).await {
            Ok(n) => {
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(DbError::query("committing a catch-up pass"))?;
                Ok(n)
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }
}

/// The log is tiny and never analyzed; without this the planner may hash the
/// whole default partition to join it. With nested loops each logged key is
/// one primary-key probe, so the delta costs what the delta is.
const NESTED_LOOPS: &str = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// Runs a DDL step's statements; any error rolls the transaction back, so a
/// timed-out attempt leaves nothing half made.
async fn run_statements(client: &Client, sql: &[Statement]) -> Result<(), DbError> {
    let text: Vec<String> = sql.iter().map(|s| s.to_string()).collect();
    super::executor::run_statements(client, &text).await
}

/// Heap blocks of the default partition, and roughly how many rows a block holds.
pub async fn default_blocks(
    client: &Client,
    default: &QualifiedName,
) -> Result<(i64, f64), DbError> {
    let row = client
        .query_one(
            "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int8),
                    CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages ELSE 50 END::float8
               FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)",
            &[&default.to_string()],
        )
        .await
        .map_err(DbError::query("sizing the default partition"))?;
    Ok((row.get(0), row.get(1)))
}

async fn oid_of(client: &Client, name: &QualifiedName) -> Result<u32, DbError> {
    client
        .query_one("SELECT to_regclass($1)::oid", &[&name.to_string()])
        .await
        .map(|r| r.get(0))
        .map_err(DbError::query("looking up the staging table"))
}

/// Steps 1–3 of the module comment for one staging table: create it (unless
/// resuming), copy its rows in batches, start its change log and reconcile.
async fn prepare(
    client: &Client,
    mv: &Move<'_>,
    policy: &LockPolicy,
    batch_rows: u64,
    resume: bool,
    notes: Notes<'_>,
) -> Result<ChangeLog, PartitionError> {
    let log = copy_into_staging(client, mv, policy, batch_rows, resume, notes).await?;
    start_change_logs(client, &[(mv, &log)], policy).await?;
    reconcile(client, mv, &log).await?;
    Ok(log)
}

/// Steps 1–2: the staging table (unless resuming) and the batched copy.
async fn copy_into_staging(
    client: &Client,
    mv: &Move<'_>,
    policy: &LockPolicy,
    batch_rows: u64,
    resume: bool,
    notes: Notes<'_>,
) -> Result<ChangeLog, PartitionError> {
    if !resume {
        let what = format!("staging {}", mv.name.display_unquoted());
        let sql = mv.create_staging_sql(policy);
        policy.run(&what, || run_statements(client, &sql)).await?;
    }
    let log = ChangeLog::for_staging(mv.name, oid_of(client, mv.name).await?)?;
    let partition = mv.name.display_unquoted();
    let started = Instant::now();
    let (blocks, rows_per_block) = default_blocks(client, mv.default).await?;
    let step_blocks = ((batch_rows as f64 / rows_per_block.max(1.0)) as i64).max(1);
    let (mut first, mut copied) = (0, 0);
    let default = mv.default.display_unquoted();
    while first < blocks {
        copied += mv.copy_blocks(client, first, first + step_blocks).await?;
        first = (first + step_blocks).min(blocks);
        notes(copy_line(
            &partition,
            &default,
            first,
            blocks,
            copied,
            started.elapsed(),
        ));
    }
    tracing::info!(%partition, copied, ms = started.elapsed().as_millis() as u64, "copied out of the default partition");
    Ok(log)
}

/// `copying into audit_logs_2026_03 out of audit_logs_default: block
/// 1,200/5,000 (24%), 12,345 rows, 8,000 rows/s, ETA 12s`. The ETA is by
/// blocks: the rows a block holds for this range are not known up front.
fn copy_line(
    partition: &str,
    default: &str,
    done: i64,
    blocks: i64,
    copied: u64,
    elapsed: Duration,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let left = (blocks - done).max(0) as f64 * secs / done.max(1) as f64;
    format!(
        "copying into {partition} out of {default}: block {}/{} ({}%), {} rows, {} rows/s, ETA {}",
        format::count(done as u64),
        format::count(blocks as u64),
        done * 100 / blocks.max(1),
        format::count(copied),
        format::count((copied as f64 / secs) as u64),
        format::duration(Duration::from_secs_f64(left)),
    )
}

/// Step 3's triggers, for all the moves in one transaction: each CREATE
/// TRIGGER takes SHARE ROW EXCLUSIVE on the default partition, which waits
/// for the inserts in flight while new ones queue behind it, so that wait
/// happens once, not once per period.
async fn start_change_logs(
    client: &Client,
    moves: &[(&Move<'_>, &ChangeLog)],
    policy: &LockPolicy,
) -> Result<(), PartitionError> {
    let Some((first, _)) = moves.first() else {
        return Ok(());
    };
    let mut sql = vec![Statement::Begin];
    for (mv, log) in moves {
        sql.extend(
            mv.change_log_sql(log, policy)
                .into_iter()
                .filter(|s| !matches!(s, Statement::Begin | Statement::Commit)),
        );
    }
    sql.push(Statement::Commit);
    let what = format!(
        "logging changes of {} for {} staging table(s)",
        first.default.display_unquoted(),
        moves.len()
    );
    policy
        .run(&what, || async {
            cancel_autovacuum(client, &[first.default]).await;
            run_statements(client, &sql).await
        })
        .await?;
    Ok(())
}

/// Step 3's full reconcile.
async fn reconcile(client: &Client, mv: &Move<'_>, log: &ChangeLog) -> Result<(), DbError> {
    let started = Instant::now();
    mv.full_reconcile(client, log).await?;
    tracing::info!(partition = %mv.name.display_unquoted(), ms = started.elapsed().as_millis() as u64, "reconciled");
    Ok(())
}

/// Step 4 for every staging table at once, until one pass applied little.
async fn catch_up_all(client: &Client, moves: &[(&Move<'_>, &ChangeLog)]) -> Result<(), DbError> {
    for pass in 1..=MAX_CATCH_UP_PASSES {
        let started = Instant::now();
        let mut applied = 0;
        for (mv, log) in moves {
            applied += mv.catch_up(client, log).await?;
        }
        tracing::info!(
            pass,
            applied,
            ms = started.elapsed().as_millis() as u64,
            "caught up"
        );
        if applied <= SMALL_DELTA {
            break;
        }
    }
    Ok(())
}

/// Moves the range out of the default partition (see the module comment).
/// `resume` when a marked staging table exists already.
pub async fn run(
    client: &Client,
    mv: &Move<'_>,
    policy: &LockPolicy,
    batch_rows: u64,
    resume: bool,
    notes: Notes<'_>,
) -> Result<(), PartitionError> {
    let log = prepare(client, mv, policy, batch_rows, resume, &mut *notes).await?;
    notes(format!(
        "catching up with writes to {} since the copy",
        mv.default.display_unquoted()
    ));
    catch_up_all(client, &[(mv, &log)]).await?;
    let finish = format!(
        "moving rows of {} out of {}",
        mv.name.display_unquoted(),
        mv.default.display_unquoted()
    );
    policy
        .run(&finish, || async {
            cancel_autovacuum(client, &[mv.name, mv.default]).await;
            mv.finish(client, &log, policy).await
        })
        .await?;
    Ok(())
}

/// The staging table that becomes the default partition in a swap: named
/// after the default's oid, so a resumed run finds it again.
pub async fn rest_name(
    client: &Client,
    default: &QualifiedName,
) -> Result<QualifiedName, PartitionError> {
    let oid = oid_of(client, default).await?;
    Ok(default.sibling(&format!("strata_default_{oid}"))?)
}

/// Rows of the default partition outside all `ranges` (what a swap's new
/// default partition would hold, and ATTACH would scan).
pub async fn rest_rows(
    client: &Client,
    spec: &TableSpec,
    default: &QualifiedName,
    ranges: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<i64, DbError> {
    let cond = Rows::Rest(ranges.to_vec()).sql(&spec.time_column, "");
    client
        .query_one(&format!("SELECT count(*) FROM {default} WHERE {cond}"), &[])
        .await
        .map(|r| r.get(0))
        .map_err(DbError::query(
            "counting rows that stay in the default partition",
        ))
}

/// Drops what an interrupted swap left (the rest's staging table, its
/// triggers on the default partition and its change log) when this run does
/// not swap: the triggers would otherwise log writes forever.
pub async fn abandon_rest(
    client: &Client,
    default: &QualifiedName,
    policy: &LockPolicy,
) -> Result<(), PartitionError> {
    let rest = rest_name(client, default).await?;
    if existing(client, &rest).await? != Existing::Staging {
        return Ok(());
    }
    let log = ChangeLog::for_staging(&rest, oid_of(client, &rest).await?)?;
    let mut sql = vec![Statement::Begin, Statement::Sql(policy.set_sql(true))];
    for trigger in &log.triggers {
        sql.push(Statement::Sql(format!(
            "DROP TRIGGER IF EXISTS {trigger} ON {default}"
        )));
    }
    sql.push(Statement::Sql(format!(
        "DROP TABLE IF EXISTS {}; DROP FUNCTION IF EXISTS {}(); DROP TABLE {rest}",
        log.table, log.function
    )));
    sql.push(Statement::Commit);
    let what = format!("dropping the unfinished swap {}", rest.display_unquoted());
    policy.run(&what, || run_statements(client, &sql)).await?;
    tracing::info!(staging = %rest.display_unquoted(), "abandoned an unfinished default-partition swap");
    Ok(())
}

/// Whether the default partition can be replaced by a rebuilt table: nothing
/// but strata's own change-log triggers hangs on it (no views, rules, user
/// triggers, publications, foreign keys, policies, grants of its own), so
/// replacing it cannot fail or lose an object.
pub async fn swappable(client: &Client, default: &QualifiedName) -> Result<bool, DbError> {
    let row = client
        .query_one(
            "WITH t AS (SELECT to_regclass($1) AS oid)
             SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d, t
                                 WHERE d.refobjid = t.oid AND d.classid = 'pg_catalog.pg_rewrite'::regclass)
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g, t
                                 WHERE g.tgrelid = t.oid AND NOT g.tgisinternal AND g.tgparentid = 0
                                   AND g.tgname NOT LIKE 'strata\\_move\\_%')
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel p, t WHERE p.prrelid = t.oid)
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c, t
                                 WHERE (c.conrelid = t.oid OR c.confrelid = t.oid) AND c.contype = 'f'
                                   AND c.conparentid = 0)
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p, t WHERE p.polrelid = t.oid)
                -- Grants of its own would not carry over to the rebuilt table.
                AND (SELECT c.relacl IS NULL FROM pg_catalog.pg_class c, t WHERE c.oid = t.oid)",
            &[&default.to_string()],
        )
        .await
        .map_err(DbError::query("checking whether the default partition can be swapped"))?;
    Ok(row.get(0))
}

/// Moves several ranges out of the default partition at once by swapping
/// the default partition itself: every range gets a staging table as in
/// [`run`], and so does the rest (the rows staying in the default). The one
/// final transaction applies the small deltas, detaches the old default,
/// attaches each range (no default to scan, a CHECK proving the bounds) and
/// the rest as the new default (scanned, but it holds only rows outside every
/// range), and drops the old one. Nothing in it grows with the rows moved:
/// no DELETE, no scan of the old default partition.
///
/// `resume[i]` says whether `ranges[i]`'s staging table exists already.
pub async fn run_swap(
    client: &Client,
    ranges: &[Move<'_>],
    resume: &[bool],
    rest: &Move<'_>,
    policy: &LockPolicy,
    batch_rows: u64,
    notes: Notes<'_>,
) -> Result<(), PartitionError> {
    let mut logs = Vec::with_capacity(ranges.len() + 1);
    for (mv, resume) in ranges.iter().zip(resume) {
        logs.push(copy_into_staging(client, mv, policy, batch_rows, *resume, &mut *notes).await?);
    }
    let rest_resume = match existing(client, rest.name).await? {
        Existing::None => false,
        Existing::Staging => true,
        Existing::Other => return Err(PartitionError::NameTaken(rest.name.display_unquoted())),
    };
    logs.push(copy_into_staging(client, rest, policy, batch_rows, rest_resume, &mut *notes).await?);
    let all: Vec<&Move<'_>> = ranges.iter().chain(std::iter::once(rest)).collect();
    let pairs: Vec<(&Move<'_>, &ChangeLog)> = all.iter().copied().zip(logs.iter()).collect();
    start_change_logs(client, &pairs, policy).await?;
    notes(format!(
        "reconciling {} staging table(s) with writes to {} since the copy",
        pairs.len(),
        rest.default.display_unquoted()
    ));
    for (mv, log) in &pairs {
        reconcile(client, mv, log).await?;
    }
    catch_up_all(client, &pairs).await?;
    let finish = format!(
        "swapping {} for a rebuilt default partition",
        rest.default.display_unquoted()
    );
    let mut tables: Vec<&QualifiedName> = all.iter().map(|m| m.name).collect();
    tables.push(rest.default);
    policy
        .run(&finish, || async {
            cancel_autovacuum(client, &tables).await;
            finish_swap(client, &pairs, policy).await
        })
        .await?;
    drop_retired(client, rest.default, policy).await
}

/// The swap's final transaction; the last of `moves` is the rest.
async fn finish_swap(
    client: &Client,
    moves: &[(&Move<'_>, &ChangeLog)],
    policy: &LockPolicy,
) -> Result<(), DbError> {
    client
        .batch_execute(&format!("BEGIN; {}; {NESTED_LOOPS}", policy.set_sql(true)))
        .await
        .map_err(DbError::query("starting the swap transaction"))?;
    let started = Instant::now();
    match finish_swap_body(client, moves).await {
        Ok(laps) => {
            let body_ms = started.elapsed().as_secs_f64() * 1e3;
            client
                .batch_execute("COMMIT")
                .await
                .map_err(DbError::query("committing the swap transaction"))?;
            // Logged apart from the body: a slow commit (WAL flush behind a
            // checkpoint) is the disk's, not the swap's, and tuning differs.
            tracing::info!(
                partitions = moves.len() - 1,
                total_ms = started.elapsed().as_secs_f64() * 1e3,
                body_ms,
                steps = ?laps,
                "swapped the default partition"
            );
            Ok(())
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn finish_swap_body(
    client: &Client,
    moves: &[(&Move<'_>, &ChangeLog)],
) -> Result<Vec<Lap>, DbError> {
    let (rest, _) = moves.last().expect("a swap has its rest");
    let (default, parent) = (rest.default, &rest.spec.name);
    let mut laps = Laps::default();
    // One round trip per batch: writers wait for this transaction, and with
    // a dozen partitions statement-by-statement round trips add up.
    let run = |sql: Vec<String>| async move {
        let sql = sql.join(";\n");
        client
            .batch_execute(&sql)
            .await
            .map_err(DbError::query(format!("running `{sql}`")))
    };
    // The lock order of Move::finish_body, for every staging table.
    let mut sql: Vec<String> = moves
        .iter()
        .map(|(mv, _)| format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", mv.name))
        .collect();
    sql.push(format!(
        "LOCK TABLE {default} IN SHARE UPDATE EXCLUSIVE MODE"
    ));
    run(sql).await?;
    laps.lap("lock staging and default (writers go on)", 0);
    run(vec![super::executor::hold_writers_at_parent(parent)]).await?;
    laps.lap("lock parent", 0);
    run(vec![format!(
        "LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE"
    )])
    .await?;
    laps.lap("lock default", 0);
    let pending = format!(
        "SELECT ARRAY[{}]",
        moves
            .iter()
            .map(|(_, log)| format!("EXISTS (SELECT 1 FROM {})", log.table))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pending: Vec<bool> = client
        .query_one(&pending, &[])
        .await
        .map_err(DbError::query("reading the change logs"))?
        .get(0);
    let mut applied = 0;
    for ((mv, log), pending) in moves.iter().zip(pending) {
        if pending {
            applied += mv.apply_delta(client, log).await?;
        }
    }
    laps.lap("apply deltas", applied);
    let mut sql = Vec::new();
    for (_, log) in moves {
        for trigger in &log.triggers {
            sql.push(format!("DROP TRIGGER IF EXISTS {trigger} ON {default}"));
        }
        sql.push(format!("DROP TABLE {}", log.table));
        sql.push(format!("DROP FUNCTION {}()", log.function));
    }
    run(sql).await?;
    laps.lap("drop change logs", 0);
    // With no default partition attached, ATTACH has nothing to scan but the
    // new partition, and its CHECK proves the bounds. The old default is
    // renamed, not dropped: unlinking its files would lengthen the commit
    // writers wait for; it is dropped right after, in its own transaction.
    let retired = retired_name(default, oid_of(client, default).await?)?;
    let check = Ident::new(BOUNDS_CHECK).expect("static name");
    let mut sql = vec![format!("ALTER TABLE {parent} DETACH PARTITION {default}")];
    for (mv, _) in moves {
        sql.push(format!(
            "ALTER TABLE {parent} ATTACH PARTITION {} {}",
            mv.name,
            mv.bound_sql()
        ));
    }
    for (mv, _) in moves {
        if let Rows::Range { .. } = mv.rows {
            sql.push(format!("ALTER TABLE {} DROP CONSTRAINT {check}", mv.name));
        }
        sql.push(format!("COMMENT ON TABLE {} IS NULL", mv.name));
    }
    sql.push(format!("ALTER TABLE {default} RENAME TO {}", retired.name));
    sql.push(format!(
        "COMMENT ON TABLE {retired} IS {}",
        literal(RETIRED_MARK)
    ));
    sql.push(format!(
        "ALTER TABLE {} RENAME TO {}",
        rest.name, default.name
    ));
    run(sql).await?;
    laps.lap("detach old default, attach, rename", 0);
    Ok(laps.done)
}

/// Comment on an old default partition replaced by a swap, until dropped.
const RETIRED_MARK: &str = "strata retired default partition";

fn retired_name(default: &QualifiedName, oid: u32) -> Result<QualifiedName, IdentError> {
    default.sibling(&format!("strata_retired_{oid}"))
}

/// Drops old default partitions that swaps replaced (marked, detached, in
/// the default's schema), then gives the current default's indexes the names
/// the old ones had. Each in a short transaction of its own; nothing here
/// touches a table writers use but through SHARE UPDATE EXCLUSIVE (index
/// renames). A lock that is not granted in time leaves the rest for the
/// next run.
pub async fn drop_retired(
    client: &Client,
    default: &QualifiedName,
    policy: &LockPolicy,
) -> Result<(), PartitionError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c
              WHERE c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1)
                AND c.relkind = 'r' AND NOT c.relispartition
                AND c.relname LIKE 'strata\\_retired\\_%' AND obj_description(c.oid, 'pg_class') = $2",
            &[&default.schema.as_str(), &RETIRED_MARK],
        )
        .await
        .map_err(DbError::query("looking for retired default partitions"))?;
    for row in rows {
        let name = default.sibling(&row.get::<_, String>(0))?;
        let sql = vec![
            Statement::Begin,
            Statement::Sql(policy.set_sql(true)),
            Statement::Sql(format!("DROP TABLE {name}")),
            Statement::Commit,
        ];
        let what = format!("dropping {}", name.display_unquoted());
        policy.run(&what, || run_statements(client, &sql)).await?;
    }
    rename_indexes(client, default, policy).await
}

/// Autovacuum (likely on the freshly filled staging table, or on the default
/// partition after earlier moves) holds SHARE UPDATE EXCLUSIVE for as long as
/// it runs, and PostgreSQL cancels it only after `deadlock_timeout` (1 s) of a
/// conflicting wait, longer than our lock_timeout. So each final attempt
/// first cancels it, as the server itself would; without the privilege to,
/// nothing happens.
async fn cancel_autovacuum(client: &Client, tables: &[&QualifiedName]) {
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    let r = client
        .execute(
            "SELECT pg_catalog.pg_cancel_backend(a.pid)
               FROM pg_catalog.pg_stat_activity a
              WHERE a.backend_type = 'autovacuum worker' AND a.datname = current_database()
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.pid = a.pid
                               AND l.relation = ANY (SELECT to_regclass(n) FROM unnest($1::text[]) n))",
            &[&names],
        )
        .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "could not cancel autovacuum");
    }
}

impl Move<'_> {
    /// The final transaction. Writers wait for it (at the parent), so it does
    /// only what does not grow with the delta already applied: lock, apply the
    /// last few logged keys, delete the range from the default partition,
    /// attach. Each statement is timed, for the operator and the benchmark.
    async fn finish(
        &self,
        client: &Client,
        log: &ChangeLog,
        policy: &LockPolicy,
    ) -> Result<(), DbError> {
        client
            .batch_execute(&format!("BEGIN; {}; {NESTED_LOOPS}", policy.set_sql(true)))
            .await
            .map_err(DbError::query("starting the final move transaction"))?;
        let started = Instant::now();
        match self.finish_body(client, log).await {
            Ok(timings) => {
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(DbError::query("committing the final move transaction"))?;
                tracing::info!(
                    partition = %self.name.display_unquoted(),
                    total_ms = started.elapsed().as_secs_f64() * 1e3,
                    steps = ?timings,
                    "moved rows out of the default partition"
                );
                Ok(())
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    async fn finish_body(&self, client: &Client, log: &ChangeLog) -> Result<Vec<Lap>, DbError> {
        let (name, default, parent) = (self.name, self.default, &self.spec.name);
        let mut laps = Laps::default();
        let run = |sql: String| async move {
            client
                .batch_execute(&sql)
                .await
                .map_err(DbError::query(format!("running `{sql}`")))
        };
        // Locks in an order that never makes writers wait on our waits for
        // anyone else: the staging table (only autovacuum might hold it), the
        // default partition against autovacuum and DDL (writers and readers go
        // on), then the parent, at which point writers and readers queue in
        // front of routing and planning (see hold_writers_at_parent), then the
        // default partition exclusively, waiting only for statements already
        // running on it.
        run(format!("LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")).await?;
        run(format!(
            "LOCK TABLE {default} IN SHARE UPDATE EXCLUSIVE MODE"
        ))
        .await?;
        laps.lap("lock staging and default (writers go on)", 0);
        run(super::executor::hold_writers_at_parent(parent)).await?;
        laps.lap("lock parent", 0);
        run(format!("LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE")).await?;
        laps.lap("lock default", 0);
        let applied = self.apply_delta(client, log).await?;
        laps.lap("apply delta", applied);
        // Before the DELETE, or it would log every row it deletes.
        for trigger in &log.triggers {
            run(format!("DROP TRIGGER IF EXISTS {trigger} ON {default}")).await?;
        }
        run(format!(
            "DROP TABLE {}; DROP FUNCTION {}()",
            log.table, log.function
        ))
        .await?;
        laps.lap("drop change log", 0);
        let deleted = client
            .execute(
                &format!("DELETE FROM {default} WHERE {}", self.range_literal("")),
                &[],
            )
            .await
            .map_err(DbError::query(format!(
                "deleting the moved rows from {}",
                default.display_unquoted()
            )))?;
        laps.lap("delete from default", deleted);
        run(format!(
            "ALTER TABLE {parent} ATTACH PARTITION {name} {}",
            self.bound_sql()
        ))
        .await?;
        laps.lap("attach", 0);
        let check = Ident::new(BOUNDS_CHECK).expect("static name");
        run(format!(
            "ALTER TABLE {name} DROP CONSTRAINT {check}; COMMENT ON TABLE {name} IS NULL"
        ))
        .await?;
        laps.lap("unmark", 0);
        Ok(laps.done)
    }
}

/// The rebuilt default's indexes were named after its staging name
/// (`strata_default_<oid>_…`); once the old default is dropped they take the
/// names the default partition's indexes would have. A name that is taken
/// or too long stays as it is.
async fn rename_indexes(
    client: &Client,
    default: &QualifiedName,
    policy: &LockPolicy,
) -> Result<(), PartitionError> {
    let rows = client
        .query(
            "SELECT i.relname::text, to_regclass(quote_ident(n.nspname) || '.' || quote_ident($2 || substring(i.relname from '^strata_default_[0-9]+(.*)$'))) IS NOT NULL
               FROM pg_catalog.pg_index x
               JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
              WHERE x.indrelid = to_regclass($1) AND i.relname ~ '^strata_default_[0-9]+'",
            &[&default.to_string(), &default.name.as_str()],
        )
        .await
        .map_err(DbError::query("reading the new default partition's indexes"))?;
    for row in rows {
        let (old, taken): (String, bool) = (row.get(0), row.get(1));
        let suffix = old
            .trim_start_matches("strata_default_")
            .trim_start_matches(|c: char| c.is_ascii_digit());
        let (Ok(from), Ok(to)) = (
            default.sibling(&old),
            Ident::new(format!("{}{suffix}", default.name.as_str())),
        ) else {
            continue;
        };
        if taken {
            continue;
        }
        let sql = vec![
            Statement::Begin,
            Statement::Sql(policy.set_sql(true)),
            Statement::Sql(format!("ALTER INDEX {from} RENAME TO {to}")),
            Statement::Commit,
        ];
        let what = format!("renaming index {}", from.display_unquoted());
        policy.run(&what, || run_statements(client, &sql)).await?;
    }
    Ok(())
}

/// One timed statement of the final transaction: what, how long, rows.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug, in the log
struct Lap(&'static str, Duration, u64);

struct Laps {
    at: Instant,
    done: Vec<Lap>,
}

impl Default for Laps {
    fn default() -> Self {
        Laps {
            at: Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Laps {
    fn lap(&mut self, what: &'static str, rows: u64) {
        self.done.push(Lap(what, self.at.elapsed(), rows));
        self.at = Instant::now();
    }
}
