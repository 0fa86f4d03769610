//! Index sizes, maintenance (VACUUM after deletes, retention) and load rates:
//! single measurements, since each changes the data.

use std::time::Instant;

use chrono::{DateTime, Months, Utc};
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::layouts::{Built, TimedIndex};
use super::{phase, ratio, BenchError, PLAIN_INDEXED, SEED_BEFORE, STRATA};
use crate::db::DbError;
use crate::load;
use crate::partition::period;

/// The seed's claims about the time index and VACUUM.
#[derive(Clone, Debug, Serialize)]
pub struct IndexClaim {
    pub btree_bytes: f64,
    pub brin_bytes: f64,
    pub size_ratio: f64,
    pub btree_build_ms: f64,
    pub brin_build_ms: f64,
    pub build_ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct IndexSizes {
    /// B-tree on created_at of the plain-indexed table.
    pub btree: TimedIndex,
    /// strata's BRIN, summed over the partitions.
    pub brin_strata: TimedIndex,
    /// The same BRIN on the plain table (built for this comparison, then dropped).
    pub brin_plain: TimedIndex,
    /// btree / brin_strata.
    pub size_ratio: Option<f64>,
    pub build_ratio: Option<f64>,
    pub seed_claim: IndexClaim,
}

pub async fn index_sizes(_client: &Client, built: &Built) -> Result<IndexSizes, BenchError> {
    let (b, s) = (&built.btree_created_at, &built.brin_strata);
    Ok(IndexSizes {
        size_ratio: ratio(b.bytes as f64, s.bytes as f64),
        build_ratio: ratio(b.ms, s.ms),
        btree: b.clone(),
        brin_strata: s.clone(),
        brin_plain: built.brin_plain.clone(),
        seed_claim: IndexClaim {
            btree_bytes: 5e9,
            brin_bytes: 5e6,
            size_ratio: 1000.0,
            btree_build_ms: 120_000.0,
            brin_build_ms: 20_000.0,
            build_ratio: 6.0,
        },
    })
}

/// One step measured on a baseline and on strata.
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    pub what: String,
    pub baseline: &'static str,
    pub baseline_ms: f64,
    pub strata_what: String,
    pub strata_ms: f64,
    /// baseline_ms / strata_ms.
    pub ratio: Option<f64>,
    pub seed_claim: Option<(f64, f64)>,
}

fn compared(what: &str, baseline_ms: f64, strata_what: &str, strata_ms: f64) -> Compared {
    Compared {
        what: what.into(),
        baseline: PLAIN_INDEXED,
        baseline_ms,
        strata_what: strata_what.into(),
        strata_ms,
        ratio: ratio(baseline_ms, strata_ms),
        seed_claim: None,
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Maintenance {
    pub deleted_rows: u64,
    pub steps: Vec<Compared>,
    pub notes: Vec<String>,
}

async fn timed(
    client: &Client,
    sql: &str,
    p: &[&(dyn ToSql + Sync)],
    what: &str,
) -> Result<(f64, u64), BenchError> {
    let t = Instant::now();
    let n = client
        .execute(sql, p)
        .await
        .map_err(DbError::query(what.to_string()))?;
    Ok((t.elapsed().as_secs_f64() * 1000.0, n))
}

/// A checkpoint first, so each VACUUM starts without the previous step's
/// dirty pages to write. Needs superuser (or pg_checkpoint); without it the
/// figures still compare, with a note.
async fn checkpoint(client: &Client, notes: &mut Vec<String>) {
    if client.batch_execute("CHECKPOINT").await.is_err() && notes.is_empty() {
        notes.push(
            "CHECKPOINT was not allowed: VACUUM figures include writing earlier dirty pages".into(),
        );
    }
}

pub async fn maintenance(
    client: &Client,
    built: &Built,
    started: Instant,
    p: bool,
) -> Result<Maintenance, BenchError> {
    let plain = &built.layout(PLAIN_INDEXED).table;
    let strata = &built.layout(STRATA).table;
    let (m0, m1) = built.shape.query_month;
    let month_name = period::render_name(&built.spec.name_template, strata.name.as_str(), m0);
    let partition = strata.sibling(&month_name)?;
    let mut notes = Vec::new();
    let mut steps = Vec::new();

    phase(p, started, "maintenance: deleting 1% of all rows");
    // The same ids on both: every 100th by id.
    let delete_all = |t| format!("DELETE FROM {t} WHERE id % 100 = 7");
    let (dp, n) = timed(client, &delete_all(plain), &[], "deleting 1% (plain)").await?;
    let (ds, _) = timed(client, &delete_all(strata), &[], "deleting 1% (strata)").await?;
    steps.push(compared(
        "DELETE 1% of all rows",
        dp,
        "same on the partitioned table",
        ds,
    ));
    phase(
        p,
        started,
        "maintenance: VACUUM (ANALYZE) of the whole tables",
    );
    checkpoint(client, &mut notes).await;
    let (vp, _) = timed(
        client,
        &format!("VACUUM (ANALYZE) {plain}"),
        &[],
        "vacuuming plain",
    )
    .await?;
    checkpoint(client, &mut notes).await;
    let (vs, _) = timed(
        client,
        &format!("VACUUM (ANALYZE) {strata}"),
        &[],
        "vacuuming strata",
    )
    .await?;
    steps.push(compared(
        "VACUUM (ANALYZE) whole table, 1% dead everywhere",
        vp,
        "VACUUM (ANALYZE) whole partitioned table",
        vs,
    ));

    phase(
        p,
        started,
        "maintenance: 1% of one month, VACUUM (ANALYZE) of the plain table vs one partition",
    );
    let delete_month =
        |t| format!("DELETE FROM {t} WHERE id % 100 = 13 AND created_at >= $1 AND created_at < $2");
    let month: [&(dyn ToSql + Sync); 2] = [&m0, &m1];
    let (dp2, n2) = timed(
        client,
        &delete_month(plain),
        &month,
        "deleting in one month (plain)",
    )
    .await?;
    let (ds2, _) = timed(
        client,
        &delete_month(strata),
        &month,
        "deleting in one month (strata)",
    )
    .await?;
    steps.push(compared(
        "DELETE 1% of one month",
        dp2,
        "same on the partitioned table",
        ds2,
    ));
    checkpoint(client, &mut notes).await;
    let (vp2, _) = timed(
        client,
        &format!("VACUUM (ANALYZE) {plain}"),
        &[],
        "vacuuming plain",
    )
    .await?;
    checkpoint(client, &mut notes).await;
    let (vs2, _) = timed(
        client,
        &format!("VACUUM (ANALYZE) {partition}"),
        &[],
        "vacuuming a partition",
    )
    .await?;
    let mut one = compared(
        "VACUUM (ANALYZE) whole table after dead rows in one month",
        vp2,
        &format!("VACUUM (ANALYZE) of the one partition {month_name}"),
        vs2,
    );
    one.seed_claim = Some((300_000.0, 50_000.0));
    steps.push(one);

    phase(
        p,
        started,
        "maintenance: 2% of one month, whole plain VACUUM vs strata's scheduled vacuum",
    );
    steps.push(scheduled_vacuum(client, built, &month, &mut notes).await?);

    phase(p, started, "maintenance: retention of one month");
    let (r0, r1) = built.shape.retention_month;
    let old_name = period::render_name(&built.spec.name_template, strata.name.as_str(), r0);
    let old = strata.sibling(&old_name)?;
    let range: [&(dyn ToSql + Sync); 2] = [&r0, &r1];
    let (del, removed) = timed(
        client,
        &format!("DELETE FROM {plain} WHERE created_at >= $1 AND created_at < $2"),
        &range,
        "deleting a month (plain)",
    )
    .await?;
    checkpoint(client, &mut notes).await;
    let (vac, _) = timed(
        client,
        &format!("VACUUM {plain}"),
        &[],
        "vacuuming after the retention delete",
    )
    .await?;
    // Not CONCURRENTLY: PostgreSQL refuses that while a default partition
    // exists, and strata's engine detaches the same way then.
    let (det, _) = timed(
        client,
        &format!("ALTER TABLE {strata} DETACH PARTITION {old}"),
        &[],
        "detaching a partition",
    )
    .await?;
    let (drop, _) = timed(
        client,
        &format!("DROP TABLE {old}"),
        &[],
        "dropping a partition",
    )
    .await?;
    let detach_drop =
        format!("DETACH PARTITION ({det:.0} ms) + DROP TABLE ({drop:.0} ms) of {old_name}");
    steps.push(compared(
        "retention: DELETE one month",
        del,
        &detach_drop,
        det + drop,
    ));
    steps.push(compared(
        "retention: DELETE one month + the VACUUM it needs",
        del + vac,
        &detach_drop,
        det + drop,
    ));
    notes.push(format!(
        "retention removed {removed} rows ({} .. {}) from the plain table",
        r0.date_naive(),
        r1.date_naive()
    ));
    Ok(Maintenance {
        deleted_rows: n + n2,
        steps,
        notes,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadRate {
    pub layout: &'static str,
    pub rows: u64,
    pub ms: f64,
    pub rows_per_sec: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadRates {
    pub what: String,
    pub rates: Vec<LoadRate>,
    /// baseline ms / strata ms for the same rows, per baseline.
    pub ratios: Vec<(&'static str, Option<f64>)>,
}

/// Rows per COPY-rate sample: enough to outlast caches and batching, small
/// enough to keep the run short.
fn sample_rows(rows: u64) -> u64 {
    (rows / 50).clamp(10_000, 200_000)
}

pub async fn load_rates(
    client: &Client,
    built: &Built,
    rows: u64,
) -> Result<LoadRates, BenchError> {
    let n = sample_rows(rows);
    let from: DateTime<Utc> = built.shape.to;
    let to = from + Months::new(1);
    let mut rates = Vec::new();
    for key in [PLAIN_INDEXED, STRATA, SEED_BEFORE] {
        let what = load::Generate {
            rows: n,
            from,
            to,
            seed: super::SEED + 1,
            batch_rows: load::DEFAULT_BATCH_ROWS,
        };
        let r = load::load_generated(client, &built.layout(key).table, what, false).await?;
        rates.push(LoadRate {
            layout: key,
            rows: r.rows,
            ms: r.elapsed_ms as f64,
            rows_per_sec: r.rows_per_sec,
        });
    }
    let strata_ms = rates
        .iter()
        .find(|r| r.layout == STRATA)
        .map_or(0.0, |r| r.ms);
    let ratios = rates
        .iter()
        .filter(|r| r.layout != STRATA)
        .map(|r| (r.layout, ratio(r.ms, strata_ms)))
        .collect();
    Ok(LoadRates {
        what: format!(
            "strata's COPY loader, {n} new rows of the month after the data ({}), {} rows per COPY, into each \
             layout with all its indexes",
            from.date_naive(),
            load::DEFAULT_BATCH_ROWS
        ),
        rates,
        ratios,
    })
}

/// Longest wait for the cumulative statistics to show the deletes (the
/// scheduled vacuum decides from them, as it does when the scheduler runs it).
const STATS_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Waits until `n_dead_tup` of `rel` is positive; false after [`STATS_WAIT`].
async fn dead_tuples_visible(client: &Client, rel: &str) -> Result<bool, BenchError> {
    let t = Instant::now();
    loop {
        let dead: i64 = client
            .query_one(
                "SELECT pg_catalog.pg_stat_clear_snapshot()::text IS NULL,
                        coalesce((SELECT n_dead_tup FROM pg_catalog.pg_stat_all_tables
                                   WHERE relid = to_regclass($1)), 0)",
                &[&rel],
            )
            .await
            .map_err(DbError::query("reading dead tuples"))?
            .get(1);
        if dead > 0 {
            return Ok(true);
        }
        if t.elapsed() >= STATS_WAIT {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The same new dead rows (2% of one month: more than the scheduled
/// vacuum's threshold of 1,000 + 1% of live tuples) in both tables; the plain
/// table's whole-table `VACUUM (ANALYZE)` against strata's scheduled vacuum
/// (`Op::VacuumNeeded`: only partitions with dead tuples or an old
/// relfrozenxid), which is what the weekly schedule runs.
async fn scheduled_vacuum(
    client: &Client,
    built: &Built,
    month: &[&(dyn ToSql + Sync); 2],
    notes: &mut Vec<String>,
) -> Result<Compared, BenchError> {
    let plain = &built.layout(PLAIN_INDEXED).table;
    let strata = &built.layout(STRATA).table;
    let delete =
        |t| format!("DELETE FROM {t} WHERE id % 50 = 17 AND created_at >= $1 AND created_at < $2");
    timed(
        client,
        &delete(plain),
        month,
        "deleting in one month (plain)",
    )
    .await?;
    timed(
        client,
        &delete(strata),
        month,
        "deleting in one month (strata)",
    )
    .await?;
    // Counters reach the shared statistics when a session goes idle, at
    // most once a second; ask for this session's to go now.
    let _ = client
        .batch_execute("SELECT pg_catalog.pg_stat_force_next_flush()")
        .await;
    let part = period::render_name(
        &built.spec.name_template,
        strata.name.as_str(),
        built.shape.query_month.0,
    );
    if !dead_tuples_visible(client, &strata.sibling(&part)?.to_string()).await? {
        notes.push(format!(
            "the statistics did not show the dead tuples of {part} within {} s: the scheduled vacuum \
             may have skipped it",
            STATS_WAIT.as_secs()
        ));
    }
    checkpoint(client, notes).await;
    let (vp, _) = timed(
        client,
        &format!("VACUUM (ANALYZE) {plain}"),
        &[],
        "vacuuming plain",
    )
    .await?;
    checkpoint(client, notes).await;
    let target = crate::maintenance::MaintenanceTarget {
        spec: built.spec.clone(),
        relation: strata.clone(),
        is_parent: true,
        leaves: built
            .partitions
            .iter()
            .map(|n| strata.sibling(n))
            .collect::<Result<_, _>>()?,
    };
    let t = Instant::now();
    let out = crate::maintenance::Operation::VacuumNeeded
        .run(client, &target, &mut |_| {})
        .await?;
    let vs = t.elapsed().as_secs_f64() * 1000.0;
    // The scheduled vacuum leaves a lock_timeout on the session.
    client
        .batch_execute("RESET lock_timeout; RESET statement_timeout")
        .await
        .map_err(DbError::query("resetting the session"))?;
    let done: Vec<String> = out
        .relations
        .iter()
        .map(|r| {
            r.relation
                .rsplit('.')
                .next()
                .unwrap_or(&r.relation)
                .to_string()
        })
        .collect();
    Ok(compared(
        "VACUUM (ANALYZE) whole table after 2% of one month deleted",
        vp,
        &format!(
            "scheduled vacuum (Op::VacuumNeeded): vacuumed {} ({}), skipped {}",
            done.len(),
            if done.is_empty() {
                "none".into()
            } else {
                done.join(", ")
            },
            out.unchanged.len()
        ),
        vs,
    ))
}
