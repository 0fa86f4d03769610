//! What report, health, metrics and the API show of seals: the seals, the
//! closed periods not sealed yet, and the last verify's outcome.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::store::{self, StoredSeal};
use super::SealError;
use crate::config::{Config, TableSpec};
use crate::db::DbError;
use crate::partition::{self, Bound};

#[derive(Clone, Debug, Serialize)]
pub struct SealStatus {
    pub table: String,
    pub seals: Vec<StoredSeal>,
    /// Closed periods (end + seal_after behind the server clock) with a
    /// partition and no seal.
    pub unsealed_closed: Vec<String>,
    pub last_verify: Option<LastVerify>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastVerify {
    pub job_id: i64,
    pub finished_at: Option<DateTime<Utc>>,
    /// `None` when the job failed before it could decide.
    pub intact: Option<bool>,
    pub error: Option<String>,
}

pub async fn status(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
) -> Result<SealStatus, SealError> {
    let now = crate::ops::real_now(client)
        .await
        .map_err(|e| SealError::Precondition(e.to_string()))?;
    let after = chrono::Duration::from_std(config.seal.after).unwrap_or(chrono::Duration::days(1));
    let seals = store::list(&*client, spec).await?;
    let snap = partition::snapshot(client, spec).await?;
    let mut unsealed_closed: Vec<(DateTime<Utc>, String)> = snap
        .partitions
        .iter()
        .filter_map(|p| match p.bound {
            Bound::Range {
                from: Some(f),
                to: Some(t),
            } if t + after <= now => Some((f, p.name.display_unquoted())),
            _ => None,
        })
        .filter(|(f, _)| !seals.iter().any(|s| s.period_start == *f))
        .collect();
    unsealed_closed.sort();
    Ok(SealStatus {
        table: spec.name.display_unquoted(),
        seals,
        unsealed_closed: unsealed_closed.into_iter().map(|(_, n)| n).collect(),
        last_verify: last_verify(client, spec).await?,
    })
}

pub async fn last_verify(
    client: &Client,
    spec: &TableSpec,
) -> Result<Option<LastVerify>, SealError> {
    let row = client
        .query_opt(
            "SELECT id, finished_at, (result->>'intact')::boolean, error FROM strata.jobs
              WHERE kind = 'seal_verify' AND target = $1 AND state IN ('succeeded', 'failed')
              ORDER BY id DESC LIMIT 1",
            &[&spec.name.display_unquoted()],
        )
        .await
        .map_err(DbError::query("reading the last seal verification"))?;
    Ok(row.map(|r| LastVerify {
        job_id: r.get(0),
        finished_at: r.get(1),
        intact: r.get(2),
        error: r.get(3),
    }))
}
