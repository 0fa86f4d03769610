//! `strata archive list`: what the store holds for a table (a read, not a
//! job): period, rows, bytes in the store and in PostgreSQL, ratio, state.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::{catalog, ArchiveError};
use crate::config::TableSpec;

#[derive(Clone, Debug, Serialize)]
pub struct ArchiveRow {
    pub period: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub rows: i64,
    pub store_bytes: i64,
    /// Heap + indexes + TOAST of the partition when it was archived.
    pub postgres_bytes: i64,
    pub heap_bytes: i64,
    /// postgres_bytes / store_bytes.
    pub ratio: f64,
    pub heap_ratio: f64,
    /// archived (partition still here) | dropped | restored
    pub state: String,
    pub archived_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    pub verify_ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_error: Option<String>,
    pub store: String,
}

pub async fn list(client: &Client, spec: &TableSpec) -> Result<Vec<ArchiveRow>, ArchiveError> {
    let ratio = |a: i64, b: i64| {
        if b > 0 {
            (a as f64 / b as f64 * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    Ok(catalog::records(client, spec)
        .await?
        .into_iter()
        .map(|r| ArchiveRow {
            ratio: ratio(r.total_bytes, r.store_bytes),
            heap_ratio: ratio(r.heap_bytes, r.store_bytes),
            period: r.period,
            period_start: r.period_start,
            period_end: r.period_end,
            rows: r.row_count,
            store_bytes: r.store_bytes,
            postgres_bytes: r.total_bytes,
            heap_bytes: r.heap_bytes,
            state: r.state,
            archived_at: r.archived_at,
            verified_at: r.verified_at,
            verify_ok: r.verify_ok,
            verify_error: r.verify_error,
            store: r.store_url,
        })
        .collect())
}
