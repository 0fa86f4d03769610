//! The strata layout's default rollups: installed and first refreshed after
//! the build, their storage against the table's, and the refresh after
//! 10,000 new rows.

use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::layouts::Built;
use super::{BenchError, PLAIN_INDEXED, SEED, STRATA};
use crate::config::MaintenanceConfig;
use crate::db::DbError;
use crate::{load, rollup};

/// New rows per refresh measurement (the figure).
pub const NEW_ROWS: u64 = 10_000;

#[derive(Clone, Debug, Serialize)]
pub struct RollupSize {
    pub name: String,
    pub bucket: String,
    pub dimensions: Vec<String>,
    pub rows: i64,
    pub bytes: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Refresh {
    pub what: String,
    pub rows: u64,
    /// Client time of `rollup::refresh` (what `strata rollup refresh` runs).
    pub ms: f64,
    /// Buckets rewritten and base rows read, per rollup.
    pub buckets: u64,
    pub base_rows: u64,
    pub invalidations: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Rollups {
    /// `rollup apply` (storage, views, triggers) then the first refresh.
    pub apply_ms: f64,
    pub first_refresh_ms: f64,
    pub sizes: Vec<RollupSize>,
    pub rollup_bytes: i64,
    /// Heap (with TOAST) and indexes over all partitions.
    pub table_bytes: i64,
    pub percent: Option<f64>,
    pub refreshes: Vec<Refresh>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Installs the spec's rollups on the strata layout and refreshes them once.
pub async fn install(client: &mut Client, built: &Built) -> Result<(f64, f64), BenchError> {
    let lock = MaintenanceConfig::default().lock;
    let t = Instant::now();
    rollup::apply(client, &built.spec, &lock).await?;
    let apply_ms = ms(t);
    let t = Instant::now();
    rollup::refresh(client, &built.spec, &lock).await?;
    Ok((apply_ms, ms(t)))
}

/// Sizes of the rollups (storage with its index) and of the table.
pub async fn sizes(client: &Client, built: &Built) -> Result<(Vec<RollupSize>, i64), BenchError> {
    let listed = rollup::list(client, std::slice::from_ref(&built.spec)).await?;
    let sizes = listed
        .into_iter()
        .map(|r| RollupSize {
            name: r.name,
            bucket: r.bucket,
            dimensions: r.dimensions,
            rows: r.rows,
            bytes: r.bytes,
        })
        .collect();
    let row = client
        .query_one(
            include_str!("sizes.sql"),
            &[&built.layout(STRATA).table.to_string()],
        )
        .await
        .map_err(DbError::query("reading table sizes"))?;
    let (heap, indexes): (i64, i64) = (row.get(0), row.get(1));
    Ok((sizes, heap + indexes))
}

/// Loads `NEW_ROWS` generated rows in `[from, to)` into both plain-indexed
/// and strata (so they keep the same rows), then times the refresh.
async fn refresh_after(
    client: &mut Client,
    built: &Built,
    what: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    seed: u64,
) -> Result<Refresh, BenchError> {
    for key in [PLAIN_INDEXED, STRATA] {
        let g = load::Generate {
            rows: NEW_ROWS,
            from,
            to,
            seed,
            batch_rows: load::DEFAULT_BATCH_ROWS,
        };
        load::load_generated(client, &built.layout(key).table, g, false).await?;
    }
    let lock = MaintenanceConfig::default().lock;
    let t = Instant::now();
    let out = rollup::refresh(client, &built.spec, &lock).await?;
    let ms = ms(t);
    Ok(Refresh {
        what,
        rows: NEW_ROWS,
        ms,
        buckets: out.rollups.iter().map(|r| r.buckets).sum(),
        base_rows: out.rollups.iter().map(|r| r.base_rows).sum(),
        invalidations: out.invalidations_consumed,
    })
}

/// Everything of this module after the query workloads ran.
pub async fn measure(
    client: &mut Client,
    built: &Built,
    apply_ms: f64,
    first_refresh_ms: f64,
) -> Result<Rollups, BenchError> {
    let (sizes, table_bytes) = sizes(client, built).await?;
    let rollup_bytes = sizes.iter().map(|s| s.bytes).sum();
    let (d0, d1) = built.shape.query_day;
    let mut refreshes = vec![
        refresh_after(
            client,
            built,
            format!(
                "{NEW_ROWS} late rows into one day of an old month ({}), then rollup refresh",
                d0.date_naive()
            ),
            d0,
            d1,
            SEED + 2,
        )
        .await?,
    ];
    // Rows of the last minutes: the current partition, above the watermark
    // (the view reads them live; the refresh only finishes buckets).
    let now: DateTime<Utc> = client
        .query_one("SELECT now()", &[])
        .await
        .map_err(DbError::query("reading the server clock"))?
        .get(0);
    refreshes.push(
        refresh_after(
            client,
            built,
            format!(
                "{NEW_ROWS} rows of the last 10 minutes (current partition), then rollup refresh"
            ),
            now - TimeDelta::minutes(10),
            now,
            SEED + 3,
        )
        .await?,
    );
    Ok(Rollups {
        apply_ms,
        first_refresh_ms,
        percent: super::ratio(rollup_bytes as f64 * 100.0, table_bytes as f64),
        sizes,
        rollup_bytes,
        table_bytes,
        refreshes,
    })
}
