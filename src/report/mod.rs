//! `strata report`: partitions, indexes, queries and the partition-strategy
//! check in one document, with recommendations that each carry a severity,
//! the evidence, and the exact command or SQL that fixes them.
//!
//! Rules are plain functions of the collected facts (`rules.rs`), so each
//! can be tested by building its condition in a real database, checking the
//! recommendation and its fix, applying the fix and checking it is gone.

mod rules;
mod strategy;

pub use rules::recommend;
pub use strategy::{check_partition_strategy, StrategyCheck};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::TableSpec;
use crate::db::DbError;
use crate::partition::PartitionError;
use crate::stats::{self, IndexStat, PartitionStats, QueryReport};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
}

impl From<crate::db::IdentError> for ReportError {
    fn from(e: crate::db::IdentError) -> Self {
        ReportError::Partition(e.into())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Clone, Debug, Serialize)]
pub struct Recommendation {
    /// Stable rule id, e.g. `unused_index`.
    pub rule: &'static str,
    pub severity: Severity,
    /// The managed table it concerns (`null` for database-wide ones).
    pub table: Option<String>,
    pub message: String,
    pub evidence: serde_json::Value,
    /// The command (`strata …`) or SQL that fixes it.
    pub fix: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TableReport {
    pub table: String,
    pub partitions: PartitionStats,
    pub indexes: Vec<IndexStat>,
    /// Names of strata's index set that are missing or INVALID on the table.
    pub missing_indexes: Vec<String>,
    pub strategy: StrategyCheck,
    /// The sealed and archived tiers, where the table uses them.
    pub tiers: Tiers,
}

/// What the seal and archive tiers say about a table: `None` where the
/// feature is not in use (no seal yet; no `archive_to`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tiers {
    pub seals: Option<crate::seal::HealthFacts>,
    pub archive: Option<crate::archive::ArchiveStatus>,
    /// Set when a tier's catalog could not be read (the rest still reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub database: String,
    pub server_version: String,
    pub tables: Vec<TableReport>,
    pub queries: QueryReport,
    pub recommendations: Vec<Recommendation>,
}

/// Collects everything and derives the recommendations.
pub async fn build(
    client: &mut Client,
    tables: &[TableSpec],
    now: DateTime<Utc>,
    query_days: u32,
    seal_after: std::time::Duration,
) -> Result<Report, ReportError> {
    let row = client
        .query_one(
            "SELECT current_database()::text, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(DbError::query("reading the server"))?;
    let mut out = Vec::new();
    for spec in tables {
        let partitions = stats::partitions(client, spec).await?;
        let indexes = stats::indexes(client, spec).await?;
        let plan = crate::index::plan_now(client, spec).await?;
        let mut missing_indexes: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                crate::index::IndexStep::CreateOnParent { def }
                | crate::index::IndexStep::Build { def, .. } => Some(def.name.clone()),
                _ => None,
            })
            .collect();
        missing_indexes.sort();
        missing_indexes.dedup();
        let strategy = check_partition_strategy(client, spec, &partitions, now).await?;
        let tiers = tiers(client, spec, now, seal_after).await?;
        out.push(TableReport {
            table: spec.name.display_unquoted(),
            partitions,
            indexes,
            missing_indexes,
            strategy,
            tiers,
        });
    }
    let queries = stats::queries(client, tables, query_days, 10).await?;
    let database: String = row.get(0);
    let recommendations = recommend(&database, tables, &out, &queries);
    Ok(Report {
        generated_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        database,
        server_version: row.get(1),
        tables: out,
        queries,
        recommendations,
    })
}

async fn tiers(
    client: &mut Client,
    spec: &TableSpec,
    now: DateTime<Utc>,
    seal_after: std::time::Duration,
) -> Result<Tiers, ReportError> {
    let snap = crate::partition::snapshot(client, spec).await?;
    let mut t = Tiers::default();
    let seals = crate::seal::health_facts(client, spec, &snap, seal_after, now).await?;
    if seals.seals > 0 || seals.last_verify.is_some() {
        t.seals = Some(seals);
    }
    match crate::archive::status_of(client, spec, &snap).await {
        Ok(a) => t.archive = a,
        Err(e) => t.error = Some(format!("could not read the archive tier: {e}")),
    }
    Ok(t)
}
