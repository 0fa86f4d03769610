//! `vacuum`, `analyze` and `reindex` of a managed table, partition by
//! partition, each run recorded as a job.
//!
//! The target is resolved by name against the catalog's list of managed
//! tables and their partitions; the user's text never reaches SQL. Nothing
//! here takes a lock that blocks the table's writers: VACUUM and ANALYZE take
//! SHARE UPDATE EXCLUSIVE on one partition at a time, REINDEX runs
//! CONCURRENTLY, and `VACUUM FULL` is never used.

mod resolve;
mod vacuum_needed;

pub use resolve::{resolve, MaintenanceTarget};

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::db::{DbError, QualifiedName};
use crate::partition::PartitionError;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("{input:?} is not a managed table or one of its partitions; managed: {known}")]
    UnknownTarget { input: String, known: String },
}

/// What happened to one relation.
#[derive(Clone, Debug, Serialize)]
pub struct RelationResult {
    pub relation: String,
    /// `partition`, `parent` or `index`.
    pub kind: &'static str,
    pub ok: bool,
    pub millis: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_tuples_before: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_tuples_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_before: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_after: Option<i64>,
    /// Why the scheduled vacuum chose this partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the scheduled vacuum also analyzed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analyzed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RelationResult {
    /// `    ok  partition public.audit_logs_2025_03  120 ms  dead tuples 5 -> 0`
    pub fn line(&self) -> String {
        let status = if self.ok { "ok" } else { "FAILED" };
        let mut extra = String::new();
        if let (Some(b), Some(a)) = (self.dead_tuples_before, self.dead_tuples_after) {
            extra = format!(
                "  dead tuples {} -> {}",
                crate::format::count(b.max(0) as u64),
                crate::format::count(a.max(0) as u64)
            );
        }
        if let (Some(b), Some(a)) = (self.bytes_before, self.bytes_after) {
            extra = format!(
                "  {} -> {}",
                crate::format::bytes(b.max(0) as u64),
                crate::format::bytes(a.max(0) as u64)
            );
        }
        format!(
            "{status:>6}  {:<9} {}  {}{extra}",
            self.kind,
            self.relation,
            crate::format::duration(std::time::Duration::from_millis(self.millis))
        )
    }
}

impl RelationResult {
    fn new(relation: &QualifiedName, kind: &'static str) -> RelationResult {
        RelationResult {
            relation: relation.display_unquoted(),
            kind,
            ok: true,
            millis: 0,
            dead_tuples_before: None,
            dead_tuples_after: None,
            bytes_before: None,
            bytes_after: None,
            reason: None,
            analyzed: None,
            error: None,
        }
    }
}

/// The result of one vacuum / analyze / reindex run (a job's `result`).
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub operation: &'static str,
    pub target: String,
    pub started_at: DateTime<Utc>,
    pub millis: u64,
    pub relations: Vec<RelationResult>,
    /// Partitions left alone by `--changed-only`: unchanged since their last analyze.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unchanged: Vec<String>,
    pub failed: usize,
}

impl Outcome {
    fn new(operation: &'static str, target: &MaintenanceTarget) -> Outcome {
        Outcome {
            operation,
            target: target.relation.display_unquoted(),
            started_at: Utc::now(),
            millis: 0,
            relations: Vec::new(),
            unchanged: Vec::new(),
            failed: 0,
        }
    }

    fn push(&mut self, r: RelationResult, progress: &mut (dyn FnMut(&RelationResult) + Send)) {
        progress(&r);
        if !r.ok {
            self.failed += 1;
        }
        self.relations.push(r);
    }

    fn done(mut self, started: Instant) -> Outcome {
        self.millis = started.elapsed().as_millis() as u64;
        self
    }
}

async fn server_version(client: &Client) -> Result<i32, DbError> {
    let v: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .map_err(DbError::query("reading the server version"))?
        .get(0);
    Ok(v.parse().unwrap_or(0))
}

/// `n_dead_tup` and the last analyze time of a relation, fresh (not from the
/// session's cached statistics snapshot). `None` when the relation is gone
/// (retention may have dropped a partition since the job started).
async fn table_stats(
    client: &Client,
    rel: &QualifiedName,
) -> Result<Option<(Option<i64>, Option<DateTime<Utc>>)>, DbError> {
    client
        .batch_execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
        .await
        .map_err(DbError::query("refreshing statistics"))?;
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL,
                    (SELECT n_dead_tup FROM pg_catalog.pg_stat_all_tables WHERE relid = to_regclass($1)),
                    (SELECT greatest(last_analyze, last_autoanalyze)
                       FROM pg_catalog.pg_stat_all_tables WHERE relid = to_regclass($1))",
            &[&rel.to_string()],
        )
        .await
        .map_err(DbError::query("reading table statistics"))?;
    Ok(row.get::<_, bool>(0).then(|| (row.get(1), row.get(2))))
}

/// How long one maintenance statement waits for its lock. VACUUM, ANALYZE
/// and the CONCURRENTLY forms take SHARE UPDATE EXCLUSIVE, which no INSERT,
/// UPDATE or DELETE conflicts with, so waiting stalls no writer; but behind
/// an ACCESS EXCLUSIVE holder (an ALTER TABLE, a LOCK TABLE left open) it
/// would wait forever. So it waits this long, then the run stops and names
/// the holder. (A REINDEX CONCURRENTLY stopped this way leaves an INVALID
/// `_ccnew` index, which the next run drops.)
pub const MAINTENANCE_LOCK_WAIT_MS: u64 = 10_000;

/// A job's session: no `statement_timeout` (it would cancel a long VACUUM
/// or leave a REINDEX CONCURRENTLY half done) and a bounded lock wait.
pub async fn prepare_session(client: &Client) -> Result<(), DbError> {
    client
        .batch_execute(&format!(
            "SELECT set_config('statement_timeout', '0', false), set_config('lock_timeout', '{MAINTENANCE_LOCK_WAIT_MS}', false)"
        ))
        .await
        .map_err(DbError::query("preparing the session"))
}

/// Runs one maintenance statement on `rel` (a relation of `table`). A lock
/// wait that runs out becomes [`DbError::Blocked`], naming the sessions in
/// the way; callers stop there rather than wait again on the next relation.
async fn run_one(client: &Client, sql: &str, table: &QualifiedName) -> Result<(), DbError> {
    match client.batch_execute(sql).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            Err(DbError::Blocked {
                what: format!("`{sql}`"),
                waited_ms: MAINTENANCE_LOCK_WAIT_MS,
                holders: crate::db::blockers(client, table).await,
            })
        }
        Err(e) => Err(DbError::query(format!("running `{sql}`"))(e)),
    }
}

fn blocked(e: &DbError) -> bool {
    matches!(e, DbError::Blocked { .. })
}

/// VACUUM each partition (with ANALYZE when asked), one at a time.
pub async fn vacuum(
    client: &Client,
    target: &MaintenanceTarget,
    analyze: bool,
    progress: &mut (dyn FnMut(&RelationResult) + Send),
) -> Result<Outcome, MaintenanceError> {
    let started = Instant::now();
    let mut out = Outcome::new(if analyze { "vacuum_analyze" } else { "vacuum" }, target);
    prepare_session(client).await?;
    for part in &target.leaves {
        let mut r = RelationResult::new(part, "partition");
        let Some((dead, _)) = table_stats(client, part).await? else {
            r.error = Some("gone: dropped or detached since the job started".into());
            out.push(r, progress);
            continue;
        };
        r.dead_tuples_before = dead;
        let t = Instant::now();
        // On the parent, statistics come from one ANALYZE below (a
        // partitioned table's ANALYZE samples every partition anyway).
        // TRUNCATE false: giving trailing empty pages back to the OS takes
        // ACCESS EXCLUSIVE on the partition, which would stall its writers
        // (and, WAL-logged, cancel queries on standbys).
        let options = if analyze && !target.is_parent {
            "(TRUNCATE false, ANALYZE) "
        } else {
            "(TRUNCATE false) "
        };
        let sql = format!("VACUUM {options}{part}");
        let mut stop = false;
        if let Err(e) = run_one(client, &sql, &target.spec.name).await {
            stop = blocked(&e);
            r.ok = false;
            r.error = Some(e.to_string());
        }
        r.millis = t.elapsed().as_millis() as u64;
        r.dead_tuples_after = table_stats(client, part).await?.and_then(|s| s.0);
        out.push(r, progress);
        if stop {
            return Ok(out.done(started));
        }
    }
    if analyze && target.is_parent {
        analyze_parent(client, target, &mut out, progress).await?;
    }
    Ok(out.done(started))
}

/// How much `analyze` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnalyzeScope {
    /// Every partition, and the parent's own statistics.
    All,
    /// The scheduled path: only partitions changed since their last analyze,
    /// and the parent when its statistics are older than [`PARENT_STATS_MAX_AGE_DAYS`].
    Changed,
}

/// Before PostgreSQL 18 there is no `ANALYZE ONLY`: analyzing a partitioned
/// parent also analyzes every partition (~12x a plain table's ANALYZE at 5M
/// rows). The scheduled path therefore refreshes the parent's own statistics
/// (used for estimates of queries that span partitions) at most this often.
pub const PARENT_STATS_MAX_AGE_DAYS: i64 = 7;

pub async fn analyze(
    client: &Client,
    target: &MaintenanceTarget,
    scope: AnalyzeScope,
    progress: &mut (dyn FnMut(&RelationResult) + Send),
) -> Result<Outcome, MaintenanceError> {
    let started = Instant::now();
    let mut out = Outcome::new("analyze", target);
    prepare_session(client).await?;
    if !target.is_parent {
        analyze_each(
            client,
            &target.spec.name,
            &target.leaves,
            &mut out,
            progress,
        )
        .await?;
        return Ok(out.done(started));
    }
    let only = server_version(client).await? >= 180_000;
    let parent_age = table_stats(client, &target.relation)
        .await?
        .and_then(|s| s.1);
    let parent_stale = parent_age
        .is_none_or(|t| Utc::now() - t > chrono::Duration::days(PARENT_STATS_MAX_AGE_DAYS));
    if scope == AnalyzeScope::All || (!only && parent_stale) {
        if only {
            analyze_each(
                client,
                &target.spec.name,
                &target.leaves,
                &mut out,
                progress,
            )
            .await?;
        }
        analyze_parent(client, target, &mut out, progress).await?;
        return Ok(out.done(started));
    }
    let changed = changed_partitions(client, target).await?;
    out.unchanged = target
        .leaves
        .iter()
        .filter(|p| !changed.contains(p))
        .map(|p| p.display_unquoted())
        .collect();
    analyze_each(client, &target.spec.name, &changed, &mut out, progress).await?;
    if only {
        analyze_parent(client, target, &mut out, progress).await?;
    }
    Ok(out.done(started))
}

async fn analyze_each(
    client: &Client,
    table: &QualifiedName,
    parts: &[QualifiedName],
    out: &mut Outcome,
    progress: &mut (dyn FnMut(&RelationResult) + Send),
) -> Result<(), MaintenanceError> {
    for part in parts {
        let mut r = RelationResult::new(part, "partition");
        let t = Instant::now();
        let sql = format!("ANALYZE {part}");
        let mut stop = false;
        if let Err(e) = run_one(client, &sql, table).await {
            stop = blocked(&e);
            r.ok = false;
            r.error = Some(e.to_string());
        }
        r.millis = t.elapsed().as_millis() as u64;
        out.push(r, progress);
        if stop {
            break;
        }
    }
    Ok(())
}

/// Partitions with changes since their last analyze, or never analyzed.
async fn changed_partitions(
    client: &Client,
    target: &MaintenanceTarget,
) -> Result<Vec<QualifiedName>, DbError> {
    client
        .batch_execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
        .await
        .map_err(DbError::query("refreshing statistics"))?;
    let mut changed = Vec::new();
    for part in &target.leaves {
        let row = client
            .query_opt(
                "SELECT n_mod_since_analyze > 0
                        OR (last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup > 0)
                   FROM pg_catalog.pg_stat_all_tables WHERE relid = $1::text::regclass",
                &[&part.to_string()],
            )
            .await
            .map_err(DbError::query("reading partition statistics"))?;
        if row.is_some_and(|r| r.get::<_, bool>(0)) {
            changed.push(part.clone());
        }
    }
    Ok(changed)
}

/// The parent's own statistics. On PostgreSQL 18+ `ANALYZE ONLY`; before,
/// one `ANALYZE parent` that also does every partition, whose durations are
/// read back from the per-partition `last_analyze` times (the server
/// analyzes the parent first, then the partitions in order).
async fn analyze_parent(
    client: &Client,
    target: &MaintenanceTarget,
    out: &mut Outcome,
    progress: &mut (dyn FnMut(&RelationResult) + Send),
) -> Result<(), MaintenanceError> {
    let parent = &target.relation;
    let only = server_version(client).await? >= 180_000;
    // The server's clock: the times compared below are the server's.
    let began: DateTime<Utc> = client
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .map_err(DbError::query("reading the clock"))?
        .get(0);
    let t = Instant::now();
    let sql = if only {
        format!("ANALYZE ONLY {parent}")
    } else {
        format!("ANALYZE {parent}")
    };
    let result = run_one(client, &sql, parent).await;
    let mut r = RelationResult::new(parent, "parent");
    r.millis = t.elapsed().as_millis() as u64;
    if let Err(e) = result {
        r.ok = false;
        r.error = Some(e.to_string());
        out.push(r, progress);
        return Ok(());
    }
    if only {
        out.push(r, progress);
        return Ok(());
    }
    // The server analyzes the parent, then the partitions one by one (in
    // its own order): each one's duration is the gap to the previous finish.
    let mut finished = Vec::new();
    for rel in std::iter::once(parent).chain(target.leaves.iter()) {
        let kind = if rel == parent { "parent" } else { "partition" };
        let at = table_stats(client, rel).await?.and_then(|s| s.1);
        finished.push((rel, kind, at.filter(|at| *at >= began)));
    }
    finished.sort_by_key(|(_, _, at)| *at);
    let mut prev = began;
    let mut timed = Vec::new();
    for (rel, kind, at) in finished {
        let mut rr = RelationResult::new(rel, kind);
        match at {
            Some(at) => {
                rr.millis = (at - prev).num_milliseconds().max(0) as u64;
                prev = at;
            }
            None => {
                rr.ok = false;
                rr.error = Some("not analyzed (gone, or skipped by the server)".into());
            }
        }
        timed.push(rr);
    }
    for rr in timed {
        out.push(rr, progress);
    }
    Ok(())
}

/// One maintenance operation on a resolved target, as the CLI, the API and
/// the scheduler run it.
#[derive(Clone, Copy, Debug)]
pub enum Operation {
    Vacuum {
        analyze: bool,
    },
    /// The scheduled vacuum: only partitions with dead tuples or an old
    /// relfrozenxid.
    VacuumNeeded,
    Analyze {
        scope: AnalyzeScope,
    },
    Reindex,
}

impl Operation {
    /// The job kind recorded in `strata.jobs`.
    pub fn kind(self) -> &'static str {
        match self {
            Operation::Vacuum { .. } | Operation::VacuumNeeded => "vacuum",
            Operation::Analyze { .. } => "analyze",
            Operation::Reindex => "reindex",
        }
    }

    pub async fn run(
        self,
        client: &Client,
        target: &MaintenanceTarget,
        progress: &mut (dyn FnMut(&RelationResult) + Send),
    ) -> Result<Outcome, MaintenanceError> {
        match self {
            Operation::Vacuum { analyze } => vacuum(client, target, analyze, progress).await,
            Operation::VacuumNeeded => vacuum_needed::vacuum_needed(client, target, progress).await,
            Operation::Analyze { scope } => analyze(client, target, scope, progress).await,
            Operation::Reindex => reindex(client, target, progress).await,
        }
    }
}

/// `REINDEX INDEX CONCURRENTLY` of every index of each partition, after
/// dropping leftovers (`*_ccnew`, `*_ccold`) of an interrupted earlier run.
pub async fn reindex(
    client: &Client,
    target: &MaintenanceTarget,
    progress: &mut (dyn FnMut(&RelationResult) + Send),
) -> Result<Outcome, MaintenanceError> {
    let started = Instant::now();
    let mut out = Outcome::new("reindex", target);
    prepare_session(client).await?;
    for part in &target.leaves {
        // A leftover of an interrupted REINDEX CONCURRENTLY: INVALID, named
        // `<index>_ccnew[N]`/`_ccold[N]`, attached to nothing, and no build
        // in progress on the partition (a DBA's own REINDEX is left alone).
        let rows = client
            .query(
                "SELECT n.nspname::text, c.relname::text,
                        NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$'
                          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhrelid = c.oid)
                          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p
                                           WHERE p.relid = i.indrelid),
                        pg_catalog.pg_relation_size(c.oid)
                   FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE i.indrelid = to_regclass($1)
                  ORDER BY c.relname",
                &[&part.to_string()],
            )
            .await
            .map_err(DbError::query("listing partition indexes"))?;
        for row in rows {
            let index = QualifiedName::new(row.get(0), row.get(1))
                .map_err(|e| MaintenanceError::Partition(e.into()))?;
            let leftover: bool = row.get(2);
            let mut r = RelationResult::new(&index, "index");
            r.bytes_before = Some(row.get(3));
            let t = Instant::now();
            let sql = if leftover {
                format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")
            } else {
                format!("REINDEX INDEX CONCURRENTLY {index}")
            };
            if let Err(e) = run_one(client, &sql, &target.spec.name).await {
                if blocked(&e) {
                    r.ok = false;
                    r.error = Some(e.to_string());
                    out.push(r, progress);
                    return Ok(out.done(started));
                }
                r.ok = false;
                r.error = Some(e.to_string());
            }
            r.millis = t.elapsed().as_millis() as u64;
            if !leftover {
                r.bytes_after = client
                    .query_opt(
                        "SELECT pg_catalog.pg_relation_size(to_regclass($1))",
                        &[&index.to_string()],
                    )
                    .await
                    .ok()
                    .flatten()
                    .and_then(|r| r.get(0));
            }
            out.push(r, progress);
        }
    }
    Ok(out.done(started))
}
