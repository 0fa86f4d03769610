//! `check_partition_strategy`: does the layout do what partitioning is for?
//! Pruning works, partitions are balanced, future partitions exist, the
//! default partition is empty, per-partition settings are sane.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::ReportError;
use crate::config::TableSpec;
use crate::db::DbError;
use crate::partition::period;
use crate::stats::PartitionStats;

#[derive(Clone, Debug, Serialize)]
pub struct StrategyCheck {
    /// The one-period query the pruning check explained.
    pub pruning_query: String,
    pub pruning_ok: bool,
    /// Partitions in the plan of that query, and how many it should touch.
    pub partitions_scanned: usize,
    pub partitions_expected: usize,
    pub enable_partition_pruning: bool,
    /// Estimated rows of complete past partitions: smallest, median, largest.
    pub rows_min: i64,
    pub rows_median: i64,
    pub rows_max: i64,
    /// Largest past partition over the median (1.0 = perfectly even).
    pub balance_ratio: f64,
    /// Partitions starting at or after the start of the current period.
    pub partitions_ahead: usize,
    pub premake: u32,
    pub current_period_exists: bool,
    pub default_rows: i64,
    /// Of those, rows outside `[start, now + premake]`: `maintain` makes no
    /// partition for them, so they need a person.
    pub outside_window_rows: i64,
    /// The window, for the fix.
    pub window: (DateTime<Utc>, DateTime<Utc>),
    /// Partitions with a fillfactor below 100 (wasted space on append-only data).
    pub low_fillfactor: Vec<String>,
    /// The same partitions as identifiers, for the fix.
    #[serde(skip)]
    pub low_fillfactor_relations: Vec<crate::db::QualifiedName>,
    /// When the parent's own statistics were last gathered (autovacuum never does).
    pub parent_analyzed_at: Option<DateTime<Utc>>,
}

fn count_relations(plan: &serde_json::Value, out: &mut usize) {
    match plan {
        serde_json::Value::Object(m) => {
            if m.contains_key("Relation Name") {
                *out += 1;
            }
            for v in m.values() {
                count_relations(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| count_relations(v, out)),
        _ => {}
    }
}

pub async fn check_partition_strategy(
    client: &Client,
    spec: &TableSpec,
    parts: &PartitionStats,
    now: DateTime<Utc>,
) -> Result<StrategyCheck, ReportError> {
    let current = period::floor(spec.interval, now);
    // The last complete period: the one users query most ("last month").
    let from = period::floor(spec.interval, current - chrono::Duration::seconds(1));
    let to = current;
    let query = format!(
        "SELECT * FROM {} WHERE {col} >= {} AND {col} < {}",
        spec.name,
        crate::db::literal(&period::sql_timestamp(from)),
        crate::db::literal(&period::sql_timestamp(to)),
        col = spec.time_column
    );
    let explain: serde_json::Value = client
        .query_one(&format!("EXPLAIN (FORMAT JSON) {query}"), &[])
        .await
        .map_err(DbError::query("explaining the one-period query"))?
        .get(0);
    let mut scanned = 0;
    count_relations(&explain, &mut scanned);
    let overlapping = parts
        .partitions
        .iter()
        .filter(|p| !p.is_default)
        .filter(|p| p.from.is_none_or(|f| f < to) && p.to.is_none_or(|t| t > from))
        .count();
    let covered = parts.partitions.iter().any(|p| {
        !p.is_default && p.from.is_some_and(|f| f <= from) && p.to.is_some_and(|t| t >= to)
    });
    let has_default = parts.partitions.iter().any(|p| p.is_default);
    let expected = overlapping + usize::from(!covered && has_default);
    let pruning_on: String = client
        .query_one("SELECT current_setting('enable_partition_pruning')", &[])
        .await
        .map_err(DbError::query("reading enable_partition_pruning"))?
        .get(0);

    let mut past: Vec<i64> = parts
        .partitions
        .iter()
        .filter(|p| !p.is_default && p.to.is_some_and(|t| t <= current))
        .map(|p| p.estimated_rows)
        .collect();
    past.sort_unstable();
    let (min, median, max) = match past.as_slice() {
        [] => (0, 0, 0),
        s => (s[0], s[s.len() / 2], s[s.len() - 1]),
    };
    // Periods after the current one that should exist and do: the same
    // definition the planner creates from and health judges with.
    let covers = |t: DateTime<Utc>| {
        parts
            .partitions
            .iter()
            .any(|p| !p.is_default && p.from.is_none_or(|f| f <= t) && p.to.is_none_or(|e| e > t))
    };
    let ahead = crate::partition::wanted_periods(spec, now, None)
        .into_iter()
        .filter(|p| *p > current && covers(*p))
        .count();
    let current_exists = parts.partitions.iter().any(|p| {
        !p.is_default && p.from.is_some_and(|f| f <= now) && p.to.is_some_and(|t| t > now)
    });
    let parent_analyzed_at: Option<DateTime<Utc>> = client
        .query_opt(
            "SELECT greatest(last_analyze, last_autoanalyze) FROM pg_catalog.pg_stat_all_tables
              WHERE relid = $1::text::regclass",
            &[&spec.name.to_string()],
        )
        .await
        .map_err(DbError::query("reading the parent's statistics"))?
        .and_then(|r| r.get(0));
    let window = (
        period::floor(spec.interval, period::midnight(spec.start)),
        period::advance(spec.interval, current, spec.premake + 1),
    );
    let outside_window_rows = match parts.partitions.iter().find(|p| p.is_default) {
        Some(d) if parts.default_partition_rows.unwrap_or(0) > 0 => {
            let default = &d.relation;
            client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {default} WHERE {col} < $1 OR {col} >= $2",
                        col = spec.time_column
                    ),
                    &[&window.0, &window.1],
                )
                .await
                .map_err(DbError::query(
                    "counting default-partition rows outside the window",
                ))?
                .get(0)
        }
        _ => 0,
    };
    Ok(StrategyCheck {
        outside_window_rows,
        window,
        parent_analyzed_at,
        pruning_query: query,
        pruning_ok: scanned <= expected.max(1),
        partitions_scanned: scanned,
        partitions_expected: expected.max(1),
        enable_partition_pruning: pruning_on == "on",
        rows_min: min,
        rows_median: median,
        rows_max: max,
        balance_ratio: if median > 0 {
            max as f64 / median as f64
        } else {
            1.0
        },
        partitions_ahead: ahead,
        premake: spec.premake,
        current_period_exists: current_exists,
        default_rows: parts.default_partition_rows.unwrap_or(0),
        low_fillfactor: parts
            .partitions
            .iter()
            .filter(|p| p.fillfactor < 100)
            .map(|p| p.name.clone())
            .collect(),
        low_fillfactor_relations: parts
            .partitions
            .iter()
            .filter(|p| p.fillfactor < 100)
            .map(|p| p.relation.clone())
            .collect(),
    })
}
