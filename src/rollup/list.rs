//! What rollups a table has and how current they are.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::TableSpec;
use crate::db::{DbError, QualifiedName};
use crate::ops::OpError;

#[derive(Clone, Debug, Serialize)]
pub struct RollupStatus {
    pub table: String,
    pub name: String,
    pub view: String,
    pub bucket: String,
    pub dimensions: Vec<String>,
    pub measures: Vec<String>,
    /// `None`: nothing materialized yet (the view reads everything live).
    pub watermark: Option<DateTime<Utc>>,
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Rows of partial state and their size on disk (with indexes).
    pub rows: i64,
    pub bytes: i64,
    /// Invalidated ranges waiting for a refresh (shared by the table's rollups).
    pub pending_invalidations: i64,
    /// Declared in the spec but not installed yet (`strata rollup apply`).
    pub installed: bool,
}

/// Every declared rollup of `specs`, installed or not.
pub async fn list(client: &Client, specs: &[TableSpec]) -> Result<Vec<RollupStatus>, OpError> {
    let mut out = Vec::new();
    for spec in specs {
        for r in &spec.rollups {
            let row = client
                .query_opt(
                    "SELECT CASE WHEN isfinite(r.watermark) THEN r.watermark END, r.refreshed_at, r.storage_name,
                            (SELECT count(*) FROM strata.rollup_invalidations i
                              WHERE i.schema_name = r.schema_name AND i.table_name = r.table_name)
                       FROM strata.rollups r
                      WHERE r.schema_name = $1 AND r.table_name = $2 AND r.name = $3",
                    &[&spec.name.schema.as_str(), &spec.name.name.as_str(), &r.name.as_str()],
                )
                .await
                .map_err(DbError::query("reading strata.rollups"))?;
            let layout = super::Layout::new(spec, r, None)?;
            let mut status = RollupStatus {
                table: spec.name.display_unquoted(),
                name: r.name.as_str().to_string(),
                view: layout.view.display_unquoted(),
                bucket: r.bucket.keyword().to_string(),
                dimensions: r
                    .dimensions
                    .iter()
                    .map(|d| d.as_str().to_string())
                    .collect(),
                measures: r
                    .measures
                    .iter()
                    .map(|m| match m {
                        crate::config::Measure::Count => "count".to_string(),
                        crate::config::Measure::DistinctUserId => "distinct user_id".to_string(),
                    })
                    .collect(),
                watermark: None,
                refreshed_at: None,
                rows: 0,
                bytes: 0,
                pending_invalidations: 0,
                installed: row.is_some(),
            };
            if let Some(row) = row {
                status.watermark = row.get(0);
                status.refreshed_at = row.get(1);
                status.pending_invalidations = row.get(3);
                let storage =
                    QualifiedName::new("strata", row.get::<_, &str>(2)).map_err(DbError::from)?;
                let size = client
                    .query_one(
                        &format!(
                            "SELECT count(*), pg_catalog.pg_total_relation_size($1::text::regclass) FROM {storage}"
                        ),
                        &[&storage.to_string()],
                    )
                    .await
                    .map_err(DbError::query("sizing a rollup"))?;
                status.rows = size.get(0);
                status.bytes = size.get(1);
            }
            out.push(status);
        }
    }
    Ok(out)
}
