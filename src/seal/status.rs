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
    let unsealed_closed = unsealed(&snap, &seals, after, now);
    Ok(SealStatus {
        table: spec.name.display_unquoted(),
        seals,
        unsealed_closed,
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

/// What health judges: counts, the closed periods not sealed, the last verify.
#[derive(Clone, Debug, Serialize)]
pub struct HealthFacts {
    pub seals: usize,
    pub unsealed_closed: Vec<String>,
    pub last_verify: Option<LastVerify>,
}

pub async fn health_facts(
    client: &Client,
    spec: &TableSpec,
    snap: &crate::partition::Snapshot,
    after: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<HealthFacts, DbError> {
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::days(1));
    let flat = |e: SealError| match e {
        SealError::Db(d) => d,
        other => DbError::LockTimeout {
            what: "reading seals".into(),
            attempts: 1,
            timeout_ms: 0,
            detail: other.to_string(),
        },
    };
    let migrated: bool = client
        .query_one("SELECT to_regclass('strata.seals') IS NOT NULL", &[])
        .await
        .map_err(DbError::query("looking for strata.seals"))?
        .get(0);
    if !migrated {
        // A database migrated by a strata without seals: nothing to judge.
        return Ok(HealthFacts {
            seals: 0,
            unsealed_closed: Vec::new(),
            last_verify: None,
        });
    }
    let seals = store::list(client, spec).await.map_err(flat)?;
    Ok(HealthFacts {
        seals: seals.len(),
        unsealed_closed: unsealed(snap, &seals, after, now),
        last_verify: last_verify(client, spec).await.map_err(flat)?,
    })
}

/// Closed periods (end + `after` <= `now`) with a partition and no seal, oldest first.
pub fn unsealed(
    snap: &crate::partition::Snapshot,
    seals: &[StoredSeal],
    after: chrono::Duration,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut out: Vec<(DateTime<Utc>, String)> = snap
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
    out.sort();
    out.into_iter().map(|(_, n)| n).collect()
}
