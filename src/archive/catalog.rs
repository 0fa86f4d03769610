//! `strata.archives`: strata's index of what is in the store, and each
//! period's state (archived, dropped, restored).

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::manifest::Manifest;
use crate::config::TableSpec;
use crate::db::DbError;

/// One recorded archive.
#[derive(Clone, Debug)]
pub struct Record {
    pub period: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub state: String,
    pub row_count: i64,
    pub store_bytes: i64,
    pub heap_bytes: i64,
    pub total_bytes: i64,
    pub content_hash: String,
    pub store_url: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub verify_ok: Option<bool>,
    pub verify_error: Option<String>,
    pub archived_at: DateTime<Utc>,
}

pub async fn records(client: &Client, spec: &TableSpec) -> Result<Vec<Record>, DbError> {
    let rows = client
        .query(
            "SELECT period, period_start, period_end, state, row_count, store_bytes, heap_bytes,
                    total_bytes, content_hash, store_url, verified_at, verify_ok, verify_error, archived_at
               FROM strata.archives WHERE table_schema = $1 AND table_name = $2
              ORDER BY period_start",
            &[&spec.name.schema.as_str(), &spec.name.name.as_str()],
        )
        .await
        .map_err(DbError::query("reading strata.archives"))?;
    Ok(rows
        .iter()
        .map(|r| Record {
            period: r.get(0),
            period_start: r.get(1),
            period_end: r.get(2),
            state: r.get(3),
            row_count: r.get(4),
            store_bytes: r.get(5),
            heap_bytes: r.get(6),
            total_bytes: r.get(7),
            content_hash: r.get(8),
            store_url: r.get(9),
            verified_at: r.get(10),
            verify_ok: r.get(11),
            verify_error: r.get(12),
            archived_at: r.get(13),
        })
        .collect())
}

/// Records (or re-records) a period whose manifest was just written.
pub async fn record(
    client: &Client,
    spec: &TableSpec,
    store_url: &str,
    m: &Manifest,
    manifest_key: &str,
    job: i64,
) -> Result<(), DbError> {
    let store_bytes: i64 = m.files.iter().map(|f| f.bytes as i64).sum();
    client
        .execute(
            "INSERT INTO strata.archives (table_schema, table_name, period, period_start, period_end,
                    store_url, manifest_key, row_count, content_hash, store_bytes, heap_bytes,
                    total_bytes, state, archived_at, verified_at, verify_ok, job_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'archived', $13, now(), true, $14)
             ON CONFLICT (table_schema, table_name, period_start) DO UPDATE SET
                    period = EXCLUDED.period, period_end = EXCLUDED.period_end,
                    store_url = EXCLUDED.store_url, manifest_key = EXCLUDED.manifest_key,
                    row_count = EXCLUDED.row_count, content_hash = EXCLUDED.content_hash,
                    store_bytes = EXCLUDED.store_bytes, heap_bytes = EXCLUDED.heap_bytes,
                    total_bytes = EXCLUDED.total_bytes, state = 'archived',
                    archived_at = EXCLUDED.archived_at, verified_at = now(), verify_ok = true,
                    verify_error = NULL, dropped_at = NULL, job_id = EXCLUDED.job_id",
            &[
                &spec.name.schema.as_str(),
                &spec.name.name.as_str(),
                &m.period,
                &m.period_start,
                &m.period_end,
                &store_url,
                &manifest_key,
                &m.row_count,
                &m.content_hash.value,
                &store_bytes,
                &m.heap_bytes,
                &m.total_bytes,
                &m.archived_at,
                &job,
            ],
        )
        .await
        .map_err(DbError::query("recording the archive"))?;
    Ok(())
}

pub async fn set_state(
    client: &Client,
    spec: &TableSpec,
    start: DateTime<Utc>,
    state: &str,
) -> Result<(), DbError> {
    let column = match state {
        "dropped" => "dropped_at",
        "restored" => "restored_at",
        _ => "archived_at",
    };
    client
        .execute(
            &format!(
                "UPDATE strata.archives SET state = $4, {column} = now()
                  WHERE table_schema = $1 AND table_name = $2 AND period_start = $3"
            ),
            &[
                &spec.name.schema.as_str(),
                &spec.name.name.as_str(),
                &start,
                &state,
            ],
        )
        .await
        .map_err(DbError::query("recording the archive's state"))?;
    Ok(())
}

pub async fn set_verified(
    client: &Client,
    spec: &TableSpec,
    start: DateTime<Utc>,
    error: Option<&str>,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE strata.archives SET verified_at = now(), verify_ok = $4, verify_error = $5
              WHERE table_schema = $1 AND table_name = $2 AND period_start = $3",
            &[
                &spec.name.schema.as_str(),
                &spec.name.name.as_str(),
                &start,
                &error.is_none(),
                &error,
            ],
        )
        .await
        .map_err(DbError::query("recording the verification"))?;
    Ok(())
}

/// The period's seal from `strata.seals` (the seal feature), when that
/// table exists and holds one; else `None`.
pub async fn seal(
    client: &Client,
    spec: &TableSpec,
    start: DateTime<Utc>,
) -> Result<Option<serde_json::Value>, DbError> {
    let present: bool = client
        .query_one("SELECT to_regclass('strata.seals') IS NOT NULL", &[])
        .await
        .map_err(DbError::query("looking for strata.seals"))?
        .get(0);
    if !present {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT jsonb_build_object('period_start', period_start, 'period_end', period_end,
                    'row_count', row_count, 'root', encode(root, 'hex'), 'seal_hash', encode(seal_hash, 'hex'))
               FROM strata.seals WHERE table_schema = $1 AND table_name = $2 AND period_start = $3
              LIMIT 1",
            &[&spec.name.schema.as_str(), &spec.name.name.as_str(), &start],
        )
        .await
        .map_err(DbError::query("reading the period's seal"))?;
    Ok(row.map(|r| r.get(0)))
}
