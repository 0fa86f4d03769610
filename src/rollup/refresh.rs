//! Refresh: fold invalidated ranges and finished buckets into the
//! materialized state, in short transactions.
//!
//! 1. Raise the table's invalidation threshold to the start of the current
//!    bucket (committed at once): from then on, writes below it are logged.
//! 2. Wait (bounded) for transactions that began before that commit: they
//!    may have written below the new threshold without logging it. If one
//!    outlives the wait, the watermarks stay where they are this time.
//! 3. One transaction: rematerialize the logged ranges below each
//!    watermark and delete exactly the log rows read (a range logged
//!    meanwhile survives for the next refresh).
//! 4. Move each watermark up to the threshold a chunk at a time, one
//!    transaction per chunk.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::Layout;
use crate::config::TableSpec;
use crate::db::{DbError, LockPolicy};
use crate::ops::OpError;

/// Longest wait for transactions older than the threshold move.
const WRITER_WAIT: Duration = Duration::from_secs(5);
const WRITER_POLL: Duration = Duration::from_millis(20);
/// Base-table time covered by one transaction when a watermark moves.
const CHUNK: chrono::TimeDelta = chrono::TimeDelta::days(7);

#[derive(Clone, Debug, Default, Serialize)]
pub struct RollupRefreshed {
    pub name: String,
    pub view: String,
    /// `None` is -infinity (nothing materialized yet).
    pub watermark_before: Option<DateTime<Utc>>,
    pub watermark_after: Option<DateTime<Utc>>,
    /// Merged invalidated ranges rematerialized below the watermark.
    pub ranges: u64,
    /// Distinct buckets written (invalidated ones and new ones).
    pub buckets: u64,
    /// Rows of the rollup's storage written.
    pub rows_written: u64,
    /// Base-table rows aggregated to write them.
    pub base_rows: u64,
    pub millis: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RefreshOutcome {
    pub table: String,
    pub threshold: Option<DateTime<Utc>>,
    pub invalidations_consumed: u64,
    /// Why the watermarks did not move, when a transaction older than the
    /// threshold move outlived the wait.
    pub held_back: Option<String>,
    pub rollups: Vec<RollupRefreshed>,
    pub triggers_created: usize,
    pub rollups_created: Vec<String>,
}

/// Refreshes every rollup of `spec`'s table (installing what the spec
/// declares first, so a scheduled refresh is all a database needs).
pub async fn refresh(
    client: &mut Client,
    spec: &TableSpec,
    policy: &LockPolicy,
) -> Result<RefreshOutcome, OpError> {
    let (applied, layouts) = super::apply::apply_layouts(client, spec, policy).await?;
    let mut out = RefreshOutcome {
        table: spec.name.display_unquoted(),
        triggers_created: applied.triggers_created,
        rollups_created: applied.created,
        ..Default::default()
    };
    if layouts.is_empty() {
        return Ok(out);
    }
    let mut targets = Vec::new();
    for l in &layouts {
        let t: DateTime<Utc> = client
            .query_one(&format!("SELECT {}", l.bucket_of("now()")), &[])
            .await
            .map_err(DbError::query("reading the server clock"))?
            .get(0);
        targets.push(t);
    }
    let threshold = *targets.iter().max().expect("at least one rollup");
    let moved_at: DateTime<Utc> = client
        .query_one(
            "UPDATE strata.rollup_tables SET threshold = greatest(threshold, $3)
              WHERE schema_name = $1 AND table_name = $2 RETURNING clock_timestamp()",
            &[
                &spec.name.schema.as_str(),
                &spec.name.name.as_str(),
                &threshold,
            ],
        )
        .await
        .map_err(DbError::query("raising the invalidation threshold"))?
        .get(0);
    out.threshold = Some(threshold);
    out.held_back = wait_for_writers(client, moved_at).await?;
    let mut reports: Vec<RollupRefreshed> = Vec::new();
    for l in &layouts {
        reports.push(RollupRefreshed {
            name: l.spec.name.as_str().to_string(),
            view: l.view.display_unquoted(),
            watermark_before: watermark(client, l).await?,
            ..Default::default()
        });
    }
    out.invalidations_consumed =
        consume_invalidations(client, spec, &layouts, &mut reports).await?;
    if out.held_back.is_none() {
        for ((l, target), r) in layouts.iter().zip(&targets).zip(reports.iter_mut()) {
            let started = Instant::now();
            advance(client, l, *target, r).await?;
            r.millis += started.elapsed().as_millis() as u64;
        }
    }
    for (l, r) in layouts.iter().zip(reports.iter_mut()) {
        r.watermark_after = watermark(client, l).await?;
    }
    out.rollups = reports;
    Ok(out)
}

async fn watermark(
    client: &impl GenericClient,
    l: &Layout,
) -> Result<Option<DateTime<Utc>>, OpError> {
    Ok(client
        .query_one(
            "SELECT CASE WHEN isfinite(watermark) THEN watermark END FROM strata.rollups
              WHERE schema_name = $1 AND table_name = $2 AND name = $3",
            &[
                &l.table.schema.as_str(),
                &l.table.name.as_str(),
                &l.spec.name.as_str(),
            ],
        )
        .await
        .map_err(DbError::query("reading a rollup's watermark"))?
        .get(0))
}

/// `None` once no transaction that began before `moved_at` is left (other
/// than this session's); else, after [`WRITER_WAIT`], who is still there.
async fn wait_for_writers(
    client: &Client,
    moved_at: DateTime<Utc>,
) -> Result<Option<String>, OpError> {
    let started = Instant::now();
    loop {
        let holders: Option<String> = client
            .query_one(
                "SELECT string_agg(format('pid %s (in a transaction since %s)', pid, xact_start), ', ')
                   FROM pg_catalog.pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()
                    AND backend_type = 'client backend' AND xact_start < $1
                    AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)",
                &[&moved_at],
            )
            .await
            .map_err(DbError::query("looking for transactions older than the threshold"))?
            .get(0);
        match holders {
            None => return Ok(None),
            Some(h) if started.elapsed() >= WRITER_WAIT => {
                return Ok(Some(format!(
                    "transactions older than the threshold move are still running: {h}; \
                     invalidated ranges were refreshed, new buckets will be at the next refresh"
                )))
            }
            Some(_) => tokio::time::sleep(WRITER_POLL).await,
        }
    }
}

/// Rewrites the buckets in `[lo, hi)` of `l` from the base table.
/// Returns (rows written, distinct buckets, base rows).
async fn rematerialize(
    tx: &impl GenericClient,
    l: &Layout,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> Result<(u64, u64, u64), OpError> {
    let ctx = format!("rematerializing rollup {}", l.spec.name.as_str());
    tx.execute(
        &format!(
            "DELETE FROM {} WHERE bucket >= $1 AND bucket < $2",
            l.storage
        ),
        &[&lo, &hi],
    )
    .await
    .map_err(DbError::query(ctx.clone()))?;
    let time = l.time();
    let sql = format!(
        "WITH ins AS (INSERT INTO {storage} ({cols}) {agg} RETURNING bucket, count)
         SELECT count(*), count(DISTINCT bucket), coalesce(sum(count), 0)::bigint FROM ins",
        storage = l.storage,
        cols = l.columns(),
        agg = l.aggregate(&l.base(), &format!("{time} >= $1 AND {time} < $2")),
    );
    let row = tx
        .query_one(&sql, &[&lo, &hi])
        .await
        .map_err(DbError::query(ctx))?;
    Ok((
        row.get::<_, i64>(0) as u64,
        row.get::<_, i64>(1) as u64,
        row.get::<_, i64>(2) as u64,
    ))
}

/// Step 3: one transaction for all rollups of the table, since they share
/// the log.
async fn consume_invalidations(
    client: &mut Client,
    spec: &TableSpec,
    layouts: &[Layout],
    reports: &mut [RollupRefreshed],
) -> Result<u64, OpError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting the invalidation transaction"))?;
    let ids: Vec<i64> = tx
        .query(
            "SELECT id FROM strata.rollup_invalidations WHERE schema_name = $1 AND table_name = $2",
            &[&spec.name.schema.as_str(), &spec.name.name.as_str()],
        )
        .await
        .map_err(DbError::query("reading the invalidation log"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    for (l, r) in layouts.iter().zip(reports.iter_mut()) {
        let started = Instant::now();
        let sql = format!(
            "WITH w AS (SELECT watermark FROM strata.rollups
                         WHERE schema_name = $2 AND table_name = $3 AND name = $4),
             inv AS (SELECT {lo} AS lo, least({hi}, (SELECT watermark FROM w)) AS hi
                       FROM strata.rollup_invalidations i WHERE i.id = ANY($1)),
             marked AS (SELECT lo, hi, CASE WHEN lo <= max(hi) OVER (ORDER BY lo, hi
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) THEN 0 ELSE 1 END AS s
                          FROM inv WHERE lo < hi),
             grouped AS (SELECT lo, hi, sum(s) OVER (ORDER BY lo, hi) AS g FROM marked)
             SELECT CASE WHEN isfinite(min(lo)) THEN min(lo) END, max(hi)
               FROM grouped GROUP BY g ORDER BY 2",
            lo = l.bucket_of("i.lo"),
            hi = l.bucket_end("i.hi"),
        );
        let ranges = tx
            .query(
                &sql,
                &[
                    &ids,
                    &l.table.schema.as_str(),
                    &l.table.name.as_str(),
                    &l.spec.name.as_str(),
                ],
            )
            .await
            .map_err(DbError::query("merging invalidated ranges"))?;
        for range in ranges {
            // -infinity (a TRUNCATE): from year 1, before any audit row.
            let lo: Option<DateTime<Utc>> = range.get(0);
            let lo =
                lo.unwrap_or(DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).expect("year 1"));
            let hi: DateTime<Utc> = range.get(1);
            let (rows, buckets, base) = rematerialize(&tx, l, lo, hi).await?;
            r.ranges += 1;
            r.rows_written += rows;
            r.buckets += buckets;
            r.base_rows += base;
        }
        r.millis += started.elapsed().as_millis() as u64;
    }
    let n = tx
        .execute(
            "DELETE FROM strata.rollup_invalidations WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(DbError::query("clearing the consumed invalidations"))?;
    tx.commit()
        .await
        .map_err(DbError::query("committing the invalidated ranges"))?;
    Ok(n)
}

/// Step 4 for one rollup: new buckets up to `target`, a chunk per
/// transaction, each moving the watermark with the rows it wrote.
async fn advance(
    client: &mut Client,
    l: &Layout,
    target: DateTime<Utc>,
    r: &mut RollupRefreshed,
) -> Result<(), OpError> {
    let mut wm = match watermark(client, l).await? {
        Some(w) => w,
        None => {
            // First refresh: start at the oldest row's bucket. Older rows
            // written later are below the threshold, so they are logged.
            let sql = format!(
                "SELECT {} FROM {} WHERE {} < $1",
                l.bucket_of(&format!("min({})", l.time())),
                l.base(),
                l.time()
            );
            let oldest: Option<DateTime<Utc>> = client
                .query_one(&sql, &[&target])
                .await
                .map_err(DbError::query("finding the oldest row"))?
                .get(0);
            oldest.unwrap_or(target)
        }
    };
    loop {
        let next = if wm >= target {
            target
        } else {
            (wm + CHUNK).min(target)
        };
        let tx = client
            .transaction()
            .await
            .map_err(DbError::query("starting a refresh chunk"))?;
        if wm < next {
            let (rows, buckets, base) = rematerialize(&tx, l, wm, next).await?;
            r.rows_written += rows;
            r.buckets += buckets;
            r.base_rows += base;
        }
        tx.execute(
            "UPDATE strata.rollups SET watermark = greatest(watermark, $4), refreshed_at = now()
              WHERE schema_name = $1 AND table_name = $2 AND name = $3",
            &[
                &l.table.schema.as_str(),
                &l.table.name.as_str(),
                &l.spec.name.as_str(),
                &next,
            ],
        )
        .await
        .map_err(DbError::query("moving a rollup's watermark"))?;
        tx.commit()
            .await
            .map_err(DbError::query("committing a refresh chunk"))?;
        if next >= target {
            return Ok(());
        }
        wm = next;
    }
}
