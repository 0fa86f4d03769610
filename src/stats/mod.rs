//! Statistics of a managed table that treat the partitioned table as one
//! thing: row counts per partition, index sizes summed over partitions.

mod indexes;
mod partitions;
mod queries;
mod tiers;

pub use indexes::{indexes, Bloated, IndexStat, BLOAT_MIN_BYTES, BLOAT_RATIO};
pub use partitions::{partitions, ArchivedPeriod, PartitionStat, PartitionStats};
pub use queries::{
    choose_baseline, prune_snapshots, queries, snapshot, untrack_own_statements, QueryReport,
    QueryStat, Reading, Window,
};
pub use tiers::{tier_of, tiers, TierMark};

use serde::Serialize;
use tokio_postgres::Client;

use crate::db::{DbError, QualifiedName};

/// One index of the parent with its size summed over every partition.
#[derive(Clone, Debug, Serialize)]
pub struct IndexSize {
    pub name: String,
    pub method: String,
    pub definition: String,
    pub partitions: i64,
    pub bytes: i64,
}

/// Indexes of a partitioned parent, each with the total size of its
/// partition indexes.
pub async fn index_sizes(
    client: &Client,
    table: &QualifiedName,
) -> Result<Vec<IndexSize>, DbError> {
    let rows = client
        .query(include_str!("index_sizes.sql"), &[&table.to_string()])
        .await
        .map_err(DbError::query("reading index sizes"))?;
    Ok(rows
        .iter()
        .map(|r| IndexSize {
            name: r.get(0),
            method: r.get(1),
            definition: r.get(2),
            partitions: r.get(3),
            bytes: r.get(4),
        })
        .collect())
}

/// Exact row counts per partition in one scan (`tableoid` of each row).
pub async fn exact_counts(
    client: &Client,
    table: &QualifiedName,
) -> Result<Vec<(String, i64)>, DbError> {
    let sql = format!(
        "SELECT c.relname::text, count(*) FROM {table} t JOIN pg_catalog.pg_class c ON c.oid = t.tableoid \
         GROUP BY 1 ORDER BY 1"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(DbError::query("counting rows per partition"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
