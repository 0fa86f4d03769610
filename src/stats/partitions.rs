//! Per-partition sizes and maintenance statistics of a managed table, in the
//! seed's JSON shape (`partition_count`, `total_size_bytes`,
//! `total_size_pretty`, `partitions[]`), extended.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::TableSpec;
use crate::db::{DbError, QualifiedName};
use crate::format;
use crate::partition::{parse_bound, Bound};

#[derive(Clone, Debug, Serialize)]
pub struct PartitionStat {
    pub name: String,
    /// The same name as an identifier, for SQL and commands built from it.
    #[serde(skip)]
    pub relation: QualifiedName,
    /// Inclusive lower bound (RFC 3339 UTC); `null` for the default partition or MINVALUE.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound; `null` for the default partition or MAXVALUE.
    pub to: Option<DateTime<Utc>>,
    pub is_default: bool,
    pub estimated_rows: i64,
    /// `true`: the sizes below are measured (`pg_relation_size`); `false`:
    /// estimated from `pg_class.relpages` as of the last VACUUM, ANALYZE or
    /// CREATE INDEX. Measured for the default partition and the partitions
    /// written since their last analyze (at most 32; see partitions.sql).
    pub size_exact: bool,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub toast_bytes: i64,
    pub total_bytes: i64,
    pub total_size_pretty: String,
    pub dead_tuples: i64,
    pub last_vacuum: Option<DateTime<Utc>>,
    pub last_autovacuum: Option<DateTime<Utc>>,
    pub last_analyze: Option<DateTime<Utc>>,
    pub last_autoanalyze: Option<DateTime<Utc>>,
    pub fillfactor: i32,
    /// `age(relfrozenxid)`: transactions since the partition was last frozen.
    pub xid_age: i64,
    /// `hot`, `sealed` (strata.seals) or `archived` (in the store, and
    /// still here).
    pub tier: &'static str,
}

/// A period only the archive holds now: its partition was dropped.
#[derive(Clone, Debug, Serialize)]
pub struct ArchivedPeriod {
    pub period: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub rows: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionStats {
    pub table: String,
    pub partition_count: usize,
    pub total_size_bytes: i64,
    pub total_size_pretty: String,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub toast_bytes: i64,
    pub estimated_rows: i64,
    pub dead_tuples: i64,
    /// Exact row count of the default partition (`null` when there is none).
    pub default_partition_rows: Option<i64>,
    pub partitions: Vec<PartitionStat>,
    /// Periods whose partition was dropped after archiving (oldest first).
    pub archived_dropped: Vec<ArchivedPeriod>,
}

pub async fn partitions(client: &mut Client, spec: &TableSpec) -> Result<PartitionStats, DbError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting a transaction"))?;
    tx.batch_execute("SET LOCAL TimeZone = 'UTC'")
        .await
        .map_err(DbError::query("setting TimeZone"))?;
    let rows = tx
        .query(include_str!("partitions.sql"), &[&spec.name.to_string()])
        .await
        .map_err(DbError::query("reading partition statistics"))?;
    let mut parts = Vec::with_capacity(rows.len());
    let mut default = None;
    for r in &rows {
        let name = QualifiedName::new(r.get(0), r.get(1))?;
        let bound = parse_bound(r.get(2));
        let (from, to, is_default) = match bound {
            Some(Bound::Range { from, to }) => (from, to, false),
            Some(Bound::Default) => (None, None, true),
            None => (None, None, false),
        };
        if is_default {
            default = Some(name.clone());
        }
        let total: i64 = r.get(7);
        parts.push(PartitionStat {
            name: name.display_unquoted(),
            relation: name.clone(),
            from,
            to,
            is_default,
            estimated_rows: r.get(3),
            size_exact: r.get(15),
            table_bytes: r.get(4),
            index_bytes: r.get(5),
            toast_bytes: r.get(6),
            total_bytes: total,
            total_size_pretty: format::bytes(total.max(0) as u64),
            dead_tuples: r.get(8),
            last_vacuum: r.get(9),
            last_autovacuum: r.get(10),
            last_analyze: r.get(11),
            last_autoanalyze: r.get(12),
            fillfactor: r.get(13),
            xid_age: r.get(14),
            tier: "hot",
        });
    }
    let default_partition_rows = match &default {
        Some(d) => Some(
            tx.query_one(&format!("SELECT count(*) FROM {d}"), &[])
                .await
                .map_err(DbError::query("counting the default partition"))?
                .get(0),
        ),
        None => None,
    };
    tx.commit()
        .await
        .map_err(DbError::query("ending the transaction"))?;
    parts.sort_by(|a, b| (a.is_default, a.from, &a.name).cmp(&(b.is_default, b.from, &b.name)));
    let marks = super::tiers(&*client, spec).await?;
    for p in parts.iter_mut() {
        p.tier = super::tier_of(&marks, p.from);
    }
    let mut archived_dropped: Vec<ArchivedPeriod> = marks
        .iter()
        .filter(|m| m.tier == "archived" && m.dropped)
        .map(|m| ArchivedPeriod {
            period: m.period.clone(),
            from: m.start,
            to: m.end,
            rows: m.rows,
        })
        .collect();
    archived_dropped.sort_by_key(|a| a.from);
    let sum = |f: fn(&PartitionStat) -> i64| parts.iter().map(f).sum::<i64>();
    let total = sum(|p| p.total_bytes);
    Ok(PartitionStats {
        table: spec.name.display_unquoted(),
        partition_count: parts.len(),
        total_size_bytes: total,
        total_size_pretty: format::bytes(total.max(0) as u64),
        table_bytes: sum(|p| p.table_bytes),
        index_bytes: sum(|p| p.index_bytes),
        toast_bytes: sum(|p| p.toast_bytes),
        estimated_rows: sum(|p| p.estimated_rows),
        dead_tuples: sum(|p| p.dead_tuples),
        default_partition_rows,
        partitions: parts,
        archived_dropped,
    })
}
