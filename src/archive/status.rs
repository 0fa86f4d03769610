//! The archive tier in one reading, for `/metrics` and the `archive` health
//! check: bytes archived, periods due, the last run, failed verifies.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::run::owned;
use super::{catalog, ArchiveError};
use crate::config::{RetentionMode, TableSpec};
use crate::partition::{self, period, Snapshot};

#[derive(Clone, Debug, Default, Serialize)]
pub struct ArchiveStatus {
    pub periods_archived: usize,
    pub bytes_archived: i64,
    /// Partitions past archive_after (server clock) with no archive yet.
    pub periods_due: usize,
    pub failed_verifies: usize,
    pub last_run: Option<DateTime<Utc>>,
}

/// `None` for a table without archive_to.
pub async fn status(
    client: &mut Client,
    spec: &TableSpec,
) -> Result<Option<ArchiveStatus>, ArchiveError> {
    if spec.archive_to.is_none() {
        return Ok(None);
    }
    let snap = partition::snapshot(client, spec)
        .await
        .map_err(|e| ArchiveError::Failed(e.to_string()))?;
    status_of(client, spec, &snap).await
}

/// [`status`] against a partition snapshot the caller already read (health
/// has one for its other checks).
pub async fn status_of(
    client: &mut Client,
    spec: &TableSpec,
    snap: &Snapshot,
) -> Result<Option<ArchiveStatus>, ArchiveError> {
    if spec.archive_to.is_none() {
        return Ok(None);
    }
    let records = catalog::records(client, spec).await?;
    let mut s = ArchiveStatus {
        periods_archived: records.len(),
        bytes_archived: records.iter().map(|r| r.store_bytes).sum(),
        failed_verifies: records
            .iter()
            .filter(|r| r.verify_ok == Some(false))
            .count(),
        ..Default::default()
    };
    s.last_run = client
        .query_one(
            "SELECT max(finished_at) FROM strata.jobs WHERE kind = 'archive_run' AND state = 'succeeded' AND target = $1",
            &[&spec.name.display_unquoted()],
        )
        .await
        .map_err(crate::db::DbError::query("reading the last archive run"))?
        .get(0);
    let after = spec.archive_after.or(match spec.retention_mode {
        RetentionMode::Archive => spec.retention,
        _ => None,
    });
    if let Some(after) = after {
        let now = crate::ops::real_now(client)
            .await
            .map_err(|e| ArchiveError::Failed(e.to_string()))?;
        let cutoff = period::retention_cutoff(after, now);
        let current = period::floor(spec.interval, now);
        s.periods_due = owned(spec, &snap.partitions)
            .iter()
            .filter(|p| p.to <= cutoff && p.to <= current)
            .filter(|p| {
                !records
                    .iter()
                    .any(|r| r.period_start == p.from && r.state != "dropped")
            })
            .count();
    }
    Ok(Some(s))
}
