//! The scheduled vacuum: only partitions with something to do.
//!
//! A whole-table VACUUM of a partitioned table visits every partition, and
//! closed months of an append-mostly table have nothing to clean: no dead
//! tuples, and a relfrozenxid far from the freeze limits. Visiting them
//! costs a scan of their visibility maps and indexes each week for nothing.

use std::time::Instant;

use tokio_postgres::Client;

use super::{
    blocked, prepare_session, run_one, MaintenanceError, MaintenanceTarget, Outcome, RelationResult,
};
use crate::db::{DbError, QualifiedName};

/// Dead tuples that make a partition worth vacuuming: this many, plus
/// [`DEAD_FRACTION`] of its live tuples (autovacuum's own shape, lower).
pub const DEAD_MIN: i64 = 1_000;
pub const DEAD_FRACTION: f64 = 0.01;
/// A partition whose relfrozenxid age passed this fraction of the freeze
/// limit (the lesser of vacuum_freeze_table_age and
/// autovacuum_freeze_max_age) is vacuumed so freezing never becomes an
/// anti-wraparound emergency.
pub const FREEZE_FRACTION: f64 = 0.8;

/// What the scheduled vacuum does with one partition.
struct Need {
    /// Why it is vacuumed.
    why: String,
    /// Whether its statistics are due too.
    analyze: bool,
}

/// Whether a partition needs a vacuum (and why), and whether an ANALYZE
/// too: only when it was never analyzed or its rows changed by more than
/// autovacuum's analyze threshold (`autovacuum_analyze_threshold` +
/// `autovacuum_analyze_scale_factor` × rows). A 2 % delete leaves the
/// statistics as true as they were, and sampling 30,000 rows of a month
/// (tsvector and JSONB statistics included) costs about as much as the
/// vacuum itself.
async fn need(client: &Client, part: &QualifiedName) -> Result<Option<Need>, DbError> {
    let row = client
        .query_opt(
            "SELECT s.n_dead_tup, s.n_live_tup, pg_catalog.age(c.relfrozenxid)::bigint,
                    least(current_setting('vacuum_freeze_table_age')::bigint,
                          current_setting('autovacuum_freeze_max_age')::bigint),
                    coalesce(s.last_analyze, s.last_autoanalyze) IS NULL
                      OR s.n_mod_since_analyze >
                         current_setting('autovacuum_analyze_threshold')::float8
                         + current_setting('autovacuum_analyze_scale_factor')::float8
                           * greatest(c.reltuples, 0)
               FROM pg_catalog.pg_class c
               LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
              WHERE c.oid = to_regclass($1)",
            &[&part.to_string()],
        )
        .await
        .map_err(DbError::query("reading partition statistics"))?;
    let Some(r) = row else { return Ok(None) };
    let (dead, live): (Option<i64>, Option<i64>) = (r.get(0), r.get(1));
    let (age, limit): (i64, i64) = (r.get(2), r.get(3));
    let analyze: bool = r.get::<_, Option<bool>>(4).unwrap_or(true);
    let (dead, live) = (dead.unwrap_or(0), live.unwrap_or(0));
    let why = if dead > DEAD_MIN + (DEAD_FRACTION * live as f64) as i64 {
        format!("{dead} dead tuples")
    } else if age as f64 > FREEZE_FRACTION * limit as f64 {
        format!("relfrozenxid age {age} of limit {limit}")
    } else {
        return Ok(None);
    };
    Ok(Some(Need { why, analyze }))
}

/// `VACUUM` of the partitions that need it (with `ANALYZE` where their
/// statistics are due); the others are listed as `unchanged` in the outcome. The parent's own statistics are left to
/// the scheduled analyze (`PARENT_STATS_MAX_AGE_DAYS`).
pub async fn vacuum_needed(
    client: &Client,
    target: &MaintenanceTarget,
    progress: &mut (dyn FnMut(&RelationResult) + Send),
) -> Result<Outcome, MaintenanceError> {
    let started = Instant::now();
    let mut out = Outcome::new("vacuum_needed", target);
    prepare_session(client).await?;
    client
        .batch_execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
        .await
        .map_err(DbError::query("refreshing statistics"))?;
    for part in &target.leaves {
        let Some(need) = need(client, part).await? else {
            out.unchanged.push(part.display_unquoted());
            continue;
        };
        let mut r = RelationResult::new(part, "partition");
        tracing::info!(partition = %part.display_unquoted(), why = need.why, analyze = need.analyze, "vacuuming");
        let t = Instant::now();
        let sql = if need.analyze {
            format!("VACUUM (TRUNCATE false, ANALYZE) {part}")
        } else {
            format!("VACUUM (TRUNCATE false) {part}")
        };
        r.reason = Some(need.why);
        r.analyzed = Some(need.analyze);
        let mut stop = false;
        if let Err(e) = run_one(client, &sql, &target.spec.name).await {
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
    Ok(out.done(started))
}
