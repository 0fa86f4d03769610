//! Online conversion of a plain table into the partitioned layout, while the
//! application keeps writing: start (new table + mirror trigger) → backfill
//! (keyset batches, resumable) → indexes (online) → verify (per-range counts
//! and hashes) → cutover (one short locked transaction of renames) →
//! rollback possible until cleanup.
//!
//! Every phase's state is a row of `strata.conversions`, committed with the
//! work it describes, so a crash or `kill -9` at any point resumes exactly.

mod preconditions;
mod sql;

pub use preconditions::{check, Problems};

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;

use crate::config::{Config, TableSpec};
use crate::db::{self, literal, DbError, Ident, LockPolicy, QualifiedName};
use crate::index::fit_name;
use crate::partition::{self, period, PartitionError};

use self::sql::Columns;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("{table} cannot be converted:\n{problems}")]
    Precondition { table: String, problems: String },
    #[error("no conversion of {0} is in progress; start one with `strata convert start`")]
    NotStarted(String),
    #[error("a conversion of {0} is already in progress (phase {1}); use `strata convert resume` or `status`")]
    AlreadyStarted(String, String),
    #[error("conversion of {table} is in phase {phase}; {what} needs {needs}")]
    WrongPhase {
        table: String,
        phase: String,
        what: &'static str,
        needs: &'static str,
    },
    #[error("another strata process is working on the conversion of {0}")]
    Busy(String),
    #[error("verification failed: {0}")]
    Mismatch(String),
    #[error("cleanup drops {0} for good; pass --yes to confirm")]
    Unconfirmed(String),
}

impl From<crate::db::IdentError> for ConvertError {
    fn from(e: crate::db::IdentError) -> Self {
        ConvertError::Partition(e.into())
    }
}

/// Phases, in order. `rolled_back` returns to the state before `cut_over`.
pub const PHASES: &[&str] = &[
    "started",
    "backfilling",
    "backfilled",
    "indexed",
    "verified",
    "cut_over",
    "rolled_back",
    "cleaned",
];

/// A conversion's row in `strata.conversions`.
#[derive(Clone, Debug, Serialize)]
pub struct Conversion {
    pub id: i64,
    pub table: String,
    pub phase: String,
    pub watermark: Option<i64>,
    pub backfill_until: Option<i64>,
    pub rows_copied: i64,
    pub rows_total_estimate: Option<i64>,
    pub new_table: Option<String>,
    pub old_table: Option<String>,
    pub batch_rows: i64,
    pub bucket_rows: i64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    pub cutover_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub timings: serde_json::Value,
}

const COLUMNS: &str = "id, schema_name || '.' || table_name, phase, watermark, backfill_until, rows_copied,
    rows_total_estimate, new_table, old_table, batch_rows, bucket_rows, started_at, updated_at, verified_at,
    cutover_at, finished_at, last_error, timings";

fn conversion(r: &tokio_postgres::Row) -> Conversion {
    Conversion {
        id: r.get(0),
        table: r.get(1),
        phase: r.get(2),
        watermark: r.get(3),
        backfill_until: r.get(4),
        rows_copied: r.get(5),
        rows_total_estimate: r.get(6),
        new_table: r.get(7),
        old_table: r.get(8),
        batch_rows: r.get(9),
        bucket_rows: r.get(10),
        started_at: r.get(11),
        updated_at: r.get(12),
        verified_at: r.get(13),
        cutover_at: r.get(14),
        finished_at: r.get(15),
        last_error: r.get(16),
        timings: r.get(17),
    }
}

/// The active (unfinished) conversion of `table`, if any.
pub async fn active(
    client: &Client,
    table: &QualifiedName,
) -> Result<Option<Conversion>, ConvertError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM strata.conversions
          WHERE schema_name = $1 AND table_name = $2 AND finished_at IS NULL"
    );
    let row = client
        .query_opt(&sql, &[&table.schema.as_str(), &table.name.as_str()])
        .await
        .map_err(DbError::query("reading the conversion"))?;
    Ok(row.as_ref().map(conversion))
}

/// The newest conversion of `table`, finished or not.
pub async fn latest(
    client: &Client,
    table: &QualifiedName,
) -> Result<Option<Conversion>, ConvertError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM strata.conversions WHERE schema_name = $1 AND table_name = $2
          ORDER BY id DESC LIMIT 1"
    );
    let row = client
        .query_opt(&sql, &[&table.schema.as_str(), &table.name.as_str()])
        .await
        .map_err(DbError::query("reading the conversion"))?;
    Ok(row.as_ref().map(conversion))
}

/// Names of everything a conversion of `spec` creates.
pub struct Names {
    pub table: QualifiedName,
    pub new: QualifiedName,
    pub old: QualifiedName,
    pub forward: QualifiedName,
    pub reverse: QualifiedName,
    pub id: Ident,
    pub time: Ident,
}

impl Names {
    pub fn new(spec: &TableSpec, conversion_id: i64) -> Result<Names, ConvertError> {
        let base = spec.name.name.as_str();
        Ok(Names {
            table: spec.name.clone(),
            new: spec
                .name
                .sibling(&fit_name(&format!("{base}_strata_new")))?,
            old: spec.name.sibling(&fit_name(&format!("{base}_old")))?,
            forward: QualifiedName::new("strata", &format!("convert_forward_{conversion_id}"))?,
            reverse: QualifiedName::new("strata", &format!("convert_reverse_{conversion_id}"))?,
            id: Ident::new("id")?,
            time: spec.time_column.clone(),
        })
    }

    /// The spec of the new table while it has its temporary name: partitions
    /// are named for the final table, no retention runs during the
    /// conversion, and its indexes get names that cannot collide with the
    /// old table's (they are renamed at cutover).
    fn new_spec(&self, spec: &TableSpec, start: chrono::NaiveDate) -> TableSpec {
        let mut s = spec.clone();
        s.name = self.new.clone();
        s.name_template = spec
            .name_template
            .replace("{table}", spec.name.name.as_str());
        s.retention = None;
        s.start = start;
        s
    }
}

/// The session advisory lock every convert command holds: one process at a time.
async fn lock(client: &Client, table: &QualifiedName) -> Result<String, ConvertError> {
    // A killed convert process's backend notices within a second even
    // mid-statement, so its lock does not outlive it for long.
    let _ = client
        .batch_execute("SET client_connection_check_interval = '1s'")
        .await;
    let name = format!("convert:{}", table.display_unquoted());
    if !db::try_advisory_lock(client, &name).await? {
        return Err(ConvertError::Busy(table.display_unquoted()));
    }
    Ok(name)
}

/// Runs `work` under the conversion lock; see [`finish`].
async fn locked<T>(
    client: &mut Client,
    table: &QualifiedName,
    work: impl AsyncFnOnce(&mut Client) -> Result<T, ConvertError>,
) -> Result<T, ConvertError> {
    let name = lock(client, table).await?;
    let out = work(client).await;
    finish(client, table, &name, out).await
}

/// Releases the conversion lock and records an error (if any) in the row,
/// so `status` shows why the last attempt stopped.
async fn finish<T>(
    client: &Client,
    table: &QualifiedName,
    lock_name: &str,
    out: Result<T, ConvertError>,
) -> Result<T, ConvertError> {
    if let Err(e) = &out {
        if !matches!(e, ConvertError::Busy(_) | ConvertError::NotStarted(_)) {
            let _ = client
                .execute(
                    "UPDATE strata.conversions SET last_error = $3, updated_at = now()
                      WHERE schema_name = $1 AND table_name = $2 AND finished_at IS NULL",
                    &[&table.schema.as_str(), &table.name.as_str(), &e.to_string()],
                )
                .await;
        }
    }
    let _ = db::advisory_unlock(client, lock_name).await;
    out
}

async fn set_phase(client: &Client, id: i64, phase: &str) -> Result<(), ConvertError> {
    client
        .execute(
            "UPDATE strata.conversions SET phase = $2, updated_at = now(), last_error = NULL,
                    timings = timings || jsonb_build_object($2::text, now())
              WHERE id = $1",
            &[&id, &phase],
        )
        .await
        .map_err(DbError::query("recording the phase"))?;
    Ok(())
}

async fn require(client: &Client, spec: &TableSpec) -> Result<Conversion, ConvertError> {
    active(client, &spec.name)
        .await?
        .ok_or_else(|| ConvertError::NotStarted(spec.name.display_unquoted()))
}

fn wrong(c: &Conversion, what: &'static str, needs: &'static str) -> ConvertError {
    ConvertError::WrongPhase {
        table: c.table.clone(),
        phase: c.phase.clone(),
        what,
        needs,
    }
}

/// Options of the backfill.
#[derive(Clone, Copy, Debug)]
pub struct BackfillOptions {
    /// Rows per batch to start with (adapted to `target_batch`).
    pub batch_rows: i64,
    /// Batches aim to take this long.
    pub target_batch: Duration,
    /// Upper bound on rows per second (0: none).
    pub max_rate: u64,
    /// Stop after this many batches (for tests and careful operators; 0: all).
    pub max_batches: u64,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            batch_rows: 10_000,
            target_batch: Duration::from_millis(500),
            max_rate: 0,
            max_batches: 0,
        }
    }
}

/// Phase 1: checks, the new table with its partitions, the mirror trigger.
pub async fn start(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    opts: &BackfillOptions,
) -> Result<Conversion, ConvertError> {
    let table = spec.name.clone();
    let c: &Client = client;
    let name = lock(c, &table).await?;
    let out = start_locked(client, config, spec, opts).await;
    let _ = db::advisory_unlock(client, &name).await;
    out
}

async fn start_locked(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    opts: &BackfillOptions,
) -> Result<Conversion, ConvertError> {
    if let Some(c) = active(client, &spec.name).await? {
        return Err(ConvertError::AlreadyStarted(c.table, c.phase));
    }
    let facts = preconditions::check(client, spec).await?;
    if !facts.problems.is_empty() {
        return Err(ConvertError::Precondition {
            table: spec.name.display_unquoted(),
            problems: facts
                .problems
                .iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    for w in &facts.warnings {
        tracing::warn!("{w}");
    }
    let id: i64 = client
        .query_one(
            "INSERT INTO strata.conversions (schema_name, table_name, phase, rows_total_estimate, batch_rows, timings)
             VALUES ($1, $2, 'starting', $3, $4, jsonb_build_object('starting', now())) RETURNING id",
            &[
                &spec.name.schema.as_str(),
                &spec.name.name.as_str(),
                &facts.estimated_rows,
                &opts.batch_rows,
            ],
        )
        .await
        .map_err(DbError::query("recording the conversion"))?
        .get(0);
    let names = Names::new(spec, id)?;
    let policy = &config.maintenance.lock;
    let result = create_new_table(client, config, spec, &names, &facts, id, policy).await;
    if let Err(e) = result {
        // Nothing of a failed start is kept: the next start begins afresh.
        let _ = drop_new(client, &names).await;
        let _ = client
            .execute("DELETE FROM strata.conversions WHERE id = $1", &[&id])
            .await;
        return Err(e);
    }
    require(client, spec).await
}

async fn create_new_table(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    names: &Names,
    facts: &preconditions::Facts,
    id: i64,
    policy: &LockPolicy,
) -> Result<(), ConvertError> {
    let (table, new) = (&names.table, &names.new);
    client
        .batch_execute(&format!(
            "CREATE TABLE {new} (LIKE {table} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS \
                                 INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ({time});
             ALTER TABLE {new} ADD PRIMARY KEY ({idc}, {time});",
            time = names.time,
            idc = names.id,
        ))
        .await
        .map_err(DbError::query("creating the partitioned table"))?;
    let start = facts
        .min_time
        .map(|t| period::floor(spec.interval, t).date_naive())
        .unwrap_or(spec.start);
    let new_spec = names.new_spec(spec, start);
    let snap = partition::snapshot(client, &new_spec).await?;
    let plan = partition::plan(&new_spec, Utc::now(), &snap);
    let report =
        partition::apply(client, &new_spec, &plan.steps, &config.maintenance, |_| {}).await?;
    if report.failed() > 0 {
        return Err(ConvertError::Partition(PartitionError::Db(
            DbError::LockTimeout {
                what: "creating partitions of the new table".into(),
                attempts: policy.attempts,
                timeout_ms: policy.lock_timeout.as_millis() as u64,
                detail: report
                    .results
                    .iter()
                    .filter_map(|r| r.error.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        )));
    }
    let default = table.sibling(&fit_name(&format!("{}_default", table.name.as_str())))?;
    client
        .batch_execute(&format!(
            "CREATE TABLE {default} PARTITION OF {new} DEFAULT"
        ))
        .await
        .map_err(DbError::query("creating the default partition"))?;
    let cols = Columns(partition::insertable_columns(client, table).await?);
    let lock_key = lock_key(id);
    client
        .batch_execute(&sql::forward_function(
            &names.forward,
            new,
            &cols,
            &names.id,
            &names.time,
            lock_key,
            BUCKET_ROWS,
        ))
        .await
        .map_err(DbError::query("creating the mirror function"))?;
    // CREATE TRIGGER takes SHARE ROW EXCLUSIVE on the table, which writers
    // would queue behind: short lock_timeout, retried. Its commit is the
    // moment from which every write is mirrored; the backfill covers every
    // id up to the maximum read right after.
    let stmts = vec![
        "BEGIN".to_string(),
        policy.set_sql(true),
        sql::create_trigger(table, &names.forward),
        "COMMIT".to_string(),
    ];
    swap(client, policy, "installing the mirror trigger", &stmts).await?;
    let until: Option<i64> = client
        .query_one(&format!("SELECT max({}) FROM {table}", names.id), &[])
        .await
        .map_err(DbError::query("reading the highest id"))?
        .get(0);
    client
        .execute(
            "UPDATE strata.conversions SET phase = 'started', new_table = $2, old_table = $3, backfill_until = $4,
                    watermark = $5, bucket_rows = $6, updated_at = now(),
                    timings = timings || jsonb_build_object('started', now())
              WHERE id = $1",
            &[
                &id,
                &new.display_unquoted(),
                &names.old.display_unquoted(),
                &until.unwrap_or(0),
                &facts.min_id.map(|m| m - 1).unwrap_or(0),
                &BUCKET_ROWS,
            ],
        )
        .await
        .map_err(DbError::query("recording the conversion"))?;
    Ok(())
}

/// Rows per id bucket: the unit the backfill locks while it copies.
pub const BUCKET_ROWS: i64 = 50_000;

/// The first key of the conversion's two-key advisory locks (the bucket is
/// the second): distinct per conversion, so two tables never collide.
fn lock_key(conversion_id: i64) -> i32 {
    (0x5354_0000_i64 + conversion_id % 0xFFFF) as i32
}

async fn drop_new(client: &Client, names: &Names) -> Result<(), DbError> {
    let _ = client.batch_execute(&sql::drop_trigger(&names.table)).await;
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {} CASCADE; DROP FUNCTION IF EXISTS {}(); DROP FUNCTION IF EXISTS {}();",
            names.new, names.forward, names.reverse
        ))
        .await
        .map_err(DbError::query("dropping the new table"))
}

/// Progress of the backfill, for the caller to show.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BatchReport {
    pub watermark: i64,
    pub until: i64,
    pub rows: u64,
    pub rows_copied: i64,
    pub batch_rows: i64,
    pub millis: u64,
}

/// Phase 2: copies ids up to `backfill_until` in keyset batches, each one
/// committed with its watermark.
pub async fn backfill(
    client: &mut Client,
    spec: &TableSpec,
    opts: &BackfillOptions,
    mut progress: impl FnMut(&BatchReport),
) -> Result<Conversion, ConvertError> {
    let table = spec.name.clone();
    locked(client, &spec.name, async |client| {
        let conv = require(client, spec).await?;
        if !matches!(conv.phase.as_str(), "started" | "backfilling") {
            return Err(wrong(&conv, "backfill", "phase started or backfilling"));
        }
        set_phase(client, conv.id, "backfilling").await?;
        let names = Names::new(spec, conv.id)?;
        let cols = Columns(partition::insertable_columns(client, &table).await?);
        let until = conv.backfill_until.unwrap_or(0);
        let mut watermark = conv.watermark.unwrap_or(0);
        let mut batch = conv.batch_rows.clamp(100, BUCKET_ROWS);
        let mut copied = conv.rows_copied;
        let key = lock_key(conv.id);
        let started = Instant::now();
        let mut rows_this_run = 0u64;
        let mut batches = 0u64;
        let insert = format!(
            "INSERT INTO {new} ({list}) SELECT {list} FROM {table} WHERE {id} > $1 AND {id} <= $2
             ON CONFLICT DO NOTHING",
            new = names.new,
            list = cols.list(),
            id = names.id,
        );
        let next_id = format!("SELECT min({id}) FROM {table} WHERE {id} > $1 AND {id} <= $2", id = names.id);
        let nth = format!(
            "SELECT max({id}) FROM (SELECT {id} FROM {table} WHERE {id} > $1 AND {id} <= $2 ORDER BY {id} LIMIT $3) s",
            id = names.id
        );
        while watermark < until {
            if opts.max_batches > 0 && batches >= opts.max_batches {
                break;
            }
            let t = Instant::now();
            // Skip id gaps without a batch per empty bucket.
            let first: Option<i64> = client
                .query_one(&next_id, &[&watermark, &until])
                .await
                .map_err(DbError::query("finding the next id"))?
                .get(0);
            let Some(first) = first else {
                watermark = until;
                break;
            };
            let from = first - 1;
            let bucket = first / BUCKET_ROWS;
            let bucket_end = ((bucket + 1) * BUCKET_ROWS - 1).min(until);
            let tx = client
                .transaction()
                .await
                .map_err(DbError::query("starting a batch"))?;
            tx.execute(
                "SELECT pg_catalog.pg_advisory_xact_lock($1, $2)",
                &[&key, &(bucket as i32)],
            )
            .await
            .map_err(DbError::query("locking the id bucket"))?;
            let hi: Option<i64> = tx
                .query_one(&nth, &[&from, &bucket_end, &batch])
                .await
                .map_err(DbError::query("finding the batch end"))?
                .get(0);
            let hi = hi.unwrap_or(bucket_end);
            let n = tx
                .execute(&insert, &[&from, &hi])
                .await
                .map_err(DbError::query("copying a batch"))?;
            tx.execute(
                "UPDATE strata.conversions SET watermark = $2, rows_copied = rows_copied + $3, batch_rows = $4,
                        updated_at = now() WHERE id = $1",
                &[&conv.id, &hi, &(n as i64), &batch],
            )
            .await
            .map_err(DbError::query("recording the watermark"))?;
            tx.commit()
                .await
                .map_err(DbError::query("committing a batch"))?;
            watermark = hi;
            copied += n as i64;
            rows_this_run += n;
            batches += 1;
            let took = t.elapsed();
            progress(&BatchReport {
                watermark,
                until,
                rows: n,
                rows_copied: copied,
                batch_rows: batch,
                millis: took.as_millis() as u64,
            });
            // Adapt towards the target duration, at most doubling or halving.
            let ratio = opts.target_batch.as_secs_f64() / took.as_secs_f64().max(1e-3);
            batch = ((batch as f64) * ratio.clamp(0.5, 2.0)) as i64;
            batch = batch.clamp(100, BUCKET_ROWS);
            if opts.max_rate > 0 {
                let due = Duration::from_secs_f64(rows_this_run as f64 / opts.max_rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            back_off_for_replicas(client).await;
        }
        if watermark >= until {
            set_phase(client, conv.id, "backfilled").await?;
        }
        require(client, spec).await
    })
    .await
}

/// Replicas far behind get time to catch up: the backfill writes a second
/// copy of the table, all of which they must replay.
async fn back_off_for_replicas(client: &Client) {
    const MAX_LAG_SECONDS: f64 = 10.0;
    for _ in 0..60 {
        let lag: Option<f64> = client
            .query_one(
                "SELECT max(extract(epoch FROM replay_lag))::float8 FROM pg_catalog.pg_stat_replication",
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.get(0));
        match lag {
            Some(l) if l > MAX_LAG_SECONDS => {
                tracing::info!(lag_seconds = l, "replicas are behind; pausing the backfill");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return,
        }
    }
}

/// Phase 3: strata's index set on the new table, built online per partition
/// (the backfill copied into partitions carrying only the primary key).
pub async fn build_indexes(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    mut progress: impl FnMut(&crate::index::IndexStepResult),
) -> Result<Conversion, ConvertError> {
    locked(client, &spec.name, async |client| {
        let conv = require(client, spec).await?;
        if conv.phase != "backfilled" {
            return Err(wrong(&conv, "building indexes", "phase backfilled"));
        }
        let names = Names::new(spec, conv.id)?;
        let new_spec = names.new_spec(spec, spec.start);
        let plan = crate::index::plan_now(client, &new_spec).await?;
        let results = crate::index::apply(
            client,
            &new_spec,
            &plan.steps,
            &config.maintenance.lock,
            |_, r| progress(r),
        )
        .await?;
        if let Some(failed) = results.iter().find(|r| !r.ok) {
            return Err(ConvertError::Db(DbError::LockTimeout {
                what: crate::index::describe(&failed.step),
                attempts: 1,
                timeout_ms: 0,
                detail: failed.error.clone().unwrap_or_default(),
            }));
        }
        set_phase(client, conv.id, "indexed").await?;
        require(client, spec).await
    })
    .await
}

/// One id range's comparison.
#[derive(Clone, Debug, Serialize)]
pub struct RangeCheck {
    pub from_id: i64,
    pub to_id: i64,
    pub old_rows: i64,
    pub new_rows: i64,
    pub matches: bool,
}

/// Ids per verified range.
pub const VERIFY_RANGE: i64 = 1_000_000;

/// Phase 4: both tables, read in one snapshot, compared per id range by
/// row count and a hash of every row's content.
pub async fn verify(
    client: &mut Client,
    spec: &TableSpec,
) -> Result<Vec<RangeCheck>, ConvertError> {
    locked(client, &spec.name, async |client| {
        let conv = require(client, spec).await?;
        if !matches!(
            conv.phase.as_str(),
            "indexed" | "verified" | "rolled_back" | "cut_over"
        ) {
            return Err(wrong(
                &conv,
                "verify",
                "the backfill and indexes to be done",
            ));
        }
        let cutover = conv.phase == "cut_over";
        let names = Names::new(spec, conv.id)?;
        // After cutover the roles swap names: the partitioned table is `table`.
        let (plain, partitioned) = if cutover {
            (&names.old, &names.table)
        } else {
            (&names.table, &names.new)
        };
        let cols = Columns(partition::insertable_columns(client, plain).await?);
        let ranges = compare(client, plain, partitioned, &cols, &names.id).await?;
        let bad: Vec<&RangeCheck> = ranges.iter().filter(|r| !r.matches).collect();
        if !bad.is_empty() {
            let list = bad
                .iter()
                .take(10)
                .map(|r| {
                    format!(
                        "ids {}..{}: {} rows in the old table, {} in the new",
                        r.from_id, r.to_id, r.old_rows, r.new_rows
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ConvertError::Mismatch(format!(
                "{} of {} id ranges differ: {list}",
                bad.len(),
                ranges.len()
            )));
        }
        if conv.phase == "indexed" {
            set_phase(client, conv.id, "verified").await?;
        }
        client
            .execute(
                "UPDATE strata.conversions SET verified_at = now() WHERE id = $1",
                &[&conv.id],
            )
            .await
            .map_err(DbError::query("recording the verification"))?;
        Ok(ranges)
    })
    .await
}

async fn compare(
    client: &mut Client,
    a: &QualifiedName,
    b: &QualifiedName,
    cols: &Columns,
    id: &Ident,
) -> Result<Vec<RangeCheck>, ConvertError> {
    // One snapshot for both: the mirror writes in the writer's transaction,
    // so any snapshot sees the two tables equal.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(DbError::query("starting the verification"))?;
    let per_range = |t: &QualifiedName| {
        format!(
            "SELECT {id} / {VERIFY_RANGE} AS r, count(*)::int8,
                    sum(hashtextextended(ROW({list})::text, 0)::numeric)::text
               FROM {t} GROUP BY 1 ORDER BY 1",
            list = cols.list()
        )
    };
    let read = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0),
                    (r.get::<_, i64>(1), r.get::<_, Option<String>>(2)),
                )
            })
            .collect::<std::collections::BTreeMap<i64, (i64, Option<String>)>>()
    };
    let old = read(
        tx.query(&per_range(a), &[])
            .await
            .map_err(DbError::query("hashing the old table"))?,
    );
    let new = read(
        tx.query(&per_range(b), &[])
            .await
            .map_err(DbError::query("hashing the new table"))?,
    );
    tx.commit()
        .await
        .map_err(DbError::query("ending the verification"))?;
    let keys: std::collections::BTreeSet<i64> = old.keys().chain(new.keys()).copied().collect();
    Ok(keys
        .into_iter()
        .map(|k| {
            let o = old.get(&k).cloned().unwrap_or((0, None));
            let n = new.get(&k).cloned().unwrap_or((0, None));
            RangeCheck {
                from_id: k * VERIFY_RANGE,
                to_id: (k + 1) * VERIFY_RANGE - 1,
                old_rows: o.0,
                new_rows: n.0,
                matches: o == n,
            }
        })
        .collect())
}

/// Index and constraint renames done at cutover, so rollback can undo them.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
struct Renames {
    /// (index name before, after) on the old table.
    old_indexes: Vec<(String, String)>,
    /// (index name before, after) on the new table.
    new_indexes: Vec<(String, String)>,
}

/// The renames that give the new table's indexes their final names: every
/// index of the new parent named after the temporary table is renamed after
/// the final one; an index of the old table already holding such a name
/// moves aside to `<name>_old`.
async fn plan_renames(client: &Client, names: &Names) -> Result<Renames, ConvertError> {
    let list = |t: &QualifiedName| {
        let t = t.to_string();
        async move {
            client
                .query(
                    "SELECT c.relname::text FROM pg_catalog.pg_index i
                       JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
                      WHERE i.indrelid = to_regclass($1) ORDER BY 1",
                    &[&t],
                )
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.get::<_, String>(0))
                        .collect::<Vec<_>>()
                })
                .map_err(DbError::query("listing indexes"))
        }
    };
    let old_names = list(&names.table).await?;
    let new_names = list(&names.new).await?;
    let tmp = names.new.name.as_str();
    let fin = names.table.name.as_str();
    let mut r = Renames::default();
    for n in &new_names {
        if let Some(pos) = n.find(tmp) {
            let target = fit_name(&format!("{}{}{}", &n[..pos], fin, &n[pos + tmp.len()..]));
            r.new_indexes.push((n.clone(), target));
        }
    }
    for o in &old_names {
        if r.new_indexes.iter().any(|(_, t)| t == o) {
            r.old_indexes
                .push((o.clone(), fit_name(&format!("{o}_old"))));
        }
    }
    Ok(r)
}

fn rename_sql(
    schema: &Ident,
    pairs: &[(String, String)],
    reverse: bool,
) -> Result<Vec<String>, ConvertError> {
    pairs
        .iter()
        .map(|(a, b)| {
            let (from, to) = if reverse { (b, a) } else { (a, b) };
            Ok(format!(
                "ALTER INDEX {}.{} RENAME TO {}",
                schema,
                Ident::new(from.clone())?,
                Ident::new(to.clone())?
            ))
        })
        .collect()
}

/// Autovacuum on either table (likely on fresh partitions after a
/// backfill) holds SHARE UPDATE EXCLUSIVE for as long as it runs; PostgreSQL
/// cancels it only after `deadlock_timeout` (1 s) of a conflicting wait,
/// longer than our lock_timeout. So each swap attempt first cancels the
/// autovacuum workers on the tables involved, as the server itself would
/// (they come back later). Without the privilege to do so, nothing happens.
fn cancel_autovacuum(tables: &[&QualifiedName]) -> String {
    let regs = tables
        .iter()
        .map(|t| format!("to_regclass({})", literal(&t.to_string())))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "DO $strata$ BEGIN
            PERFORM pg_catalog.pg_cancel_backend(a.pid)
               FROM pg_catalog.pg_stat_activity a JOIN pg_catalog.pg_locks l ON l.pid = a.pid
              WHERE a.backend_type = 'autovacuum worker' AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                                                            WHERE datname = current_database())
                AND (l.relation IN ({regs})
                     OR l.relation IN (SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent IN ({regs})));
         EXCEPTION WHEN insufficient_privilege THEN NULL;
         END $strata$"
    )
}

/// The sequence that feeds `id` (it moves with ownership at cutover and
/// rollback, so it is found from whichever table `names.table` is now).
async fn id_sequence(client: &Client, names: &Names) -> Result<Option<String>, ConvertError> {
    Ok(client
        .query_one(
            "SELECT pg_catalog.pg_get_serial_sequence($1, $2)",
            &[&names.table.to_string(), &names.id.as_str()],
        )
        .await
        .map_err(DbError::query("finding the id sequence"))?
        .get(0))
}

/// Runs one lock-taking transaction (`stmts`, BEGIN … COMMIT) under the
/// lock policy: short lock_timeout, retried.
async fn swap(
    client: &Client,
    policy: &LockPolicy,
    what: &str,
    stmts: &[String],
) -> Result<(), ConvertError> {
    policy
        .run(what, move || partition::run_statements(client, stmts))
        .await?;
    Ok(())
}

/// Phase 5: the swap, in one transaction under a short lock_timeout,
/// retried. Writers wait at most one lock_timeout per attempt.
pub async fn cutover(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
) -> Result<Conversion, ConvertError> {
    locked(client, &spec.name, async |client| {
        let conv = require(client, spec).await?;
        if !matches!(conv.phase.as_str(), "verified" | "rolled_back") {
            return Err(wrong(&conv, "cutover", "phase verified (run `strata convert verify`) or rolled_back"));
        }
        let names = Names::new(spec, conv.id)?;
        let renames = plan_renames(client, &names).await?;
        let cols = Columns(partition::insertable_columns(client, &names.table).await?);
        let old_key = preconditions::id_key(client, &names.table, &names.id, &names.time).await?;
        let schema = &names.table.schema;
        let seq = id_sequence(client, &names).await?;
        let policy = &config.maintenance.lock;
        let mut stmts = vec![
            cancel_autovacuum(&[&names.table, &names.new]),
            "BEGIN".to_string(),
            policy.set_sql(true),
            format!("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE", names.table, names.new),
            sql::drop_trigger(&names.table),
            format!("ALTER TABLE {} RENAME TO {}", names.table, names.old.name),
        ];
        stmts.extend(rename_sql(schema, &renames.old_indexes, false)?);
        stmts.push(format!("ALTER TABLE {} RENAME TO {}", names.new, names.table.name));
        stmts.extend(rename_sql(schema, &renames.new_indexes, false)?);
        if let Some(seq) = &seq {
            // The sequence stays; it now belongs to the new table, so new
            // rows continue it and dropping the old table leaves it alone.
            stmts.push(format!(
                "ALTER SEQUENCE {seq} OWNED BY {}.{}",
                names.table, names.id
            ));
        }
        stmts.push(sql::reverse_function(&names.reverse, &names.old, &cols, &names.id, &old_key));
        stmts.push(sql::create_trigger(&names.table, &names.reverse));
        stmts.push(format!(
            "UPDATE strata.conversions SET phase = 'cut_over', cutover_at = now(), updated_at = now(), last_error = NULL,
                    timings = timings || jsonb_build_object('cut_over', now(), 'renames', {}::jsonb) WHERE id = {}",
            literal(&serde_json::to_string(&renames).expect("serializes")),
            conv.id
        ));
        stmts.push("COMMIT".into());
        swap(client, policy, "cutover", &stmts).await?;
        partition::register(client, spec).await?;
        require(client, spec).await
    })
    .await
}

/// Swaps back: the plain table is `table` again, mirrored forward.
pub async fn rollback(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
) -> Result<Conversion, ConvertError> {
    locked(client, &spec.name, async |client| {
        let conv = require(client, spec).await?;
        if conv.phase != "cut_over" {
            return Err(wrong(&conv, "rollback", "phase cut_over"));
        }
        let names = Names::new(spec, conv.id)?;
        let renames: Renames = serde_json::from_value(conv.timings["renames"].clone()).unwrap_or_default();
        let schema = &names.table.schema;
        let seq = id_sequence(client, &names).await?;
        let policy = &config.maintenance.lock;
        let mut stmts = vec![
            cancel_autovacuum(&[&names.table, &names.old]),
            "BEGIN".to_string(),
            policy.set_sql(true),
            format!("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE", names.table, names.old),
            sql::drop_trigger(&names.table),
        ];
        stmts.extend(rename_sql(schema, &renames.new_indexes, true)?);
        stmts.push(format!("ALTER TABLE {} RENAME TO {}", names.table, names.new.name));
        stmts.extend(rename_sql(schema, &renames.old_indexes, true)?);
        stmts.push(format!("ALTER TABLE {} RENAME TO {}", names.old, names.table.name));
        if let Some(seq) = &seq {
            stmts.push(format!("ALTER SEQUENCE {seq} OWNED BY {}.{}", names.table, names.id));
        }
        stmts.push(sql::create_trigger(&names.table, &names.forward));
        stmts.push(format!(
            "UPDATE strata.conversions SET phase = 'rolled_back', updated_at = now(), last_error = NULL,
                    timings = timings || jsonb_build_object('rolled_back', now()) WHERE id = {}",
            conv.id
        ));
        stmts.push("COMMIT".into());
        swap(client, policy, "rollback", &stmts).await?;
        require(client, spec).await
    })
    .await
}

/// Phase 6: drops the triggers, functions and the old table. No VACUUM FULL:
/// dropping the old table returns its space.
pub async fn cleanup(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    confirmed: bool,
) -> Result<Conversion, ConvertError> {
    locked(client, &spec.name, async |client| {
        let conv = require(client, spec).await?;
        if conv.phase != "cut_over" {
            return Err(wrong(&conv, "cleanup", "phase cut_over"));
        }
        let names = Names::new(spec, conv.id)?;
        if !confirmed {
            return Err(ConvertError::Unconfirmed(names.old.display_unquoted()));
        }
        let policy = &config.maintenance.lock;
        let stmts = vec![
            cancel_autovacuum(&[&names.table, &names.old]),
            "BEGIN".to_string(),
            policy.set_sql(true),
            sql::drop_trigger(&names.table),
            format!("DROP TABLE {}", names.old),
            format!(
                "DROP FUNCTION IF EXISTS {}(); DROP FUNCTION IF EXISTS {}()",
                names.forward, names.reverse
            ),
            format!(
                "UPDATE strata.conversions SET phase = 'cleaned', finished_at = now(), updated_at = now(),
                        timings = timings || jsonb_build_object('cleaned', now()) WHERE id = {}",
                conv.id
            ),
            "COMMIT".to_string(),
        ];
        swap(client, policy, "cleanup", &stmts).await?;
        latest(client, &spec.name)
            .await?
            .ok_or_else(|| ConvertError::NotStarted(spec.name.display_unquoted()))
    })
    .await
}

/// Status with rate and ETA of the backfill.
#[derive(Debug, Serialize)]
pub struct Status {
    pub conversion: Conversion,
    pub percent: f64,
    pub rows_per_second: Option<f64>,
    pub eta_seconds: Option<f64>,
}

pub async fn status(client: &Client, spec: &TableSpec) -> Result<Status, ConvertError> {
    let conv = latest(client, &spec.name)
        .await?
        .ok_or_else(|| ConvertError::NotStarted(spec.name.display_unquoted()))?;
    let until = conv.backfill_until.unwrap_or(0).max(1) as f64;
    let done = conv.watermark.unwrap_or(0) as f64;
    let percent = if PHASES.iter().position(|p| *p == conv.phase) > Some(1) {
        100.0
    } else {
        (done / until * 100.0).clamp(0.0, 100.0)
    };
    let began = conv.timings["backfilling"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    let rate = began.map(|b| {
        let secs = (conv.updated_at - b.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0;
        conv.rows_copied as f64 / secs.max(1e-3)
    });
    let remaining = conv
        .rows_total_estimate
        .map(|t| (t - conv.rows_copied).max(0) as f64);
    let eta = match (rate, remaining) {
        (Some(r), Some(rem)) if r > 0.0 && percent < 100.0 => Some(rem / r),
        _ => None,
    };
    Ok(Status {
        conversion: conv,
        percent,
        rows_per_second: rate,
        eta_seconds: eta,
    })
}

/// Resumes wherever the conversion stopped, up to and including verify.
pub async fn resume(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    opts: &BackfillOptions,
    mut on_batch: impl FnMut(&BatchReport),
) -> Result<Conversion, ConvertError> {
    loop {
        let conv = require(client, spec).await?;
        match conv.phase.as_str() {
            "started" | "backfilling" => {
                let c = backfill(client, spec, opts, &mut on_batch).await?;
                if c.phase == "backfilling" {
                    return Ok(c);
                }
            }
            "backfilled" => {
                build_indexes(client, config, spec, |_| {}).await?;
            }
            "indexed" => {
                verify(client, spec).await?;
            }
            _ => return Ok(conv),
        }
    }
}

/// `json!` of a status line for `--json` progress consumers.
pub fn batch_json(b: &BatchReport) -> serde_json::Value {
    json!(b)
}
