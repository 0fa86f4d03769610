//! Phase 2: copies ids up to `backfill_until` in keyset batches, each one
//! committed with its watermark.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;

use super::session::{locked, DATA_STATEMENT_TIMEOUT};
use super::sql::Columns;
use super::state::{lock_key, require, set_phase, wrong, Conversion, Names, Phase, BUCKET_ROWS};
use super::ConvertError;
use crate::config::TableSpec;
use crate::db::DbError;
use crate::partition;

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

/// `json!` of a status line for `--json` progress consumers.
pub fn batch_json(b: &BatchReport) -> serde_json::Value {
    json!(b)
}

struct Queries {
    insert: String,
    next_id: String,
    nth: String,
}

impl Queries {
    fn new(names: &Names, cols: &Columns) -> Queries {
        let (table, id) = (&names.table, &names.id);
        Queries {
            insert: format!(
                "INSERT INTO {new} ({list}) SELECT {list} FROM {table} WHERE {id} > $1 AND {id} <= $2
                 ON CONFLICT DO NOTHING",
                new = names.new,
                list = cols.list(),
            ),
            next_id: format!("SELECT min({id}) FROM {table} WHERE {id} > $1 AND {id} <= $2"),
            nth: format!(
                "SELECT max({id}) FROM (SELECT {id} FROM {table} WHERE {id} > $1 AND {id} <= $2 ORDER BY {id} LIMIT $3) s"
            ),
        }
    }
}

/// Copies the batch after `watermark` (at most `batch` ids, within one id
/// bucket, whose advisory lock it holds) and commits it with the new
/// watermark. `None` when no id is left up to `until`.
async fn one_batch(
    client: &mut Client,
    q: &Queries,
    conv: &Conversion,
    watermark: i64,
    until: i64,
    batch: i64,
) -> Result<Option<(i64, u64)>, ConvertError> {
    // Skip id gaps without a batch per empty bucket.
    let first: Option<i64> = client
        .query_one(&q.next_id, &[&watermark, &until])
        .await
        .map_err(DbError::query("finding the next id"))?
        .get(0);
    let Some(first) = first else {
        return Ok(None);
    };
    let from = first - 1;
    let bucket = first / BUCKET_ROWS;
    let bucket_end = ((bucket + 1) * BUCKET_ROWS - 1).min(until);
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting a batch"))?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{DATA_STATEMENT_TIMEOUT}'"
    ))
    .await
    .map_err(DbError::query("starting a batch"))?;
    tx.execute(
        "SELECT pg_catalog.pg_advisory_xact_lock($1, $2)",
        &[&lock_key(conv.id), &(bucket as i32)],
    )
    .await
    .map_err(DbError::query("locking the id bucket"))?;
    let hi: Option<i64> = tx
        .query_one(&q.nth, &[&from, &bucket_end, &batch])
        .await
        .map_err(DbError::query("finding the batch end"))?
        .get(0);
    let hi = hi.unwrap_or(bucket_end);
    let n = tx
        .execute(&q.insert, &[&from, &hi])
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
    Ok(Some((hi, n)))
}

/// Phase 2. Returns the conversion in phase `backfilled`, or still
/// `backfilling` when `max_batches` stopped it early.
pub async fn backfill(
    client: &mut Client,
    spec: &TableSpec,
    opts: &BackfillOptions,
    mut progress: impl FnMut(&BatchReport),
) -> Result<Conversion, ConvertError> {
    locked(client, spec, async |client| {
        let conv = require(client, spec).await?;
        if !matches!(conv.phase, Phase::Started | Phase::Backfilling) {
            return Err(wrong(&conv, "backfill", "phase started or backfilling"));
        }
        set_phase(client, conv.id, Phase::Backfilling).await?;
        let names = Names::new(spec, conv.id)?;
        let cols = Columns(partition::insertable_columns(client, &names.table).await?);
        let q = Queries::new(&names, &cols);
        let until = conv.backfill_until.unwrap_or(0);
        let mut watermark = conv.watermark.unwrap_or(0);
        let mut batch = conv.batch_rows.clamp(100, BUCKET_ROWS);
        let mut copied = conv.rows_copied;
        let started = Instant::now();
        let (mut rows_this_run, mut batches) = (0u64, 0u64);
        while watermark < until {
            if opts.max_batches > 0 && batches >= opts.max_batches {
                break;
            }
            let t = Instant::now();
            let Some((hi, n)) = one_batch(client, &q, &conv, watermark, until, batch).await? else {
                watermark = until;
                break;
            };
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
            set_phase(client, conv.id, Phase::Backfilled).await?;
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
