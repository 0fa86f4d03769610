//! Archive-then-drop (`retention_mode = "archive"`): a partition past
//! retention goes only after its manifest is re-read from the store, every
//! file checked, and the partition, under a SHARE lock held until the drop
//! commits, still has the manifest's count and content hash.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::manifest::{self, Manifest};
use super::run::{archive_one, fail_point, table_dir, Owned, RunOutcome};
use super::store::Store;
use super::{catalog, columns, digest, ArchiveError};
use crate::config::{Config, TableSpec};
use crate::db::{DbError, LockPolicy, QualifiedName};
use crate::ops::{safety, Progress, ProgressFn};
use crate::partition::{Snapshot, Step};

#[derive(Clone, Debug, Serialize)]
pub struct Dropped {
    pub partition: String,
    pub period: String,
    pub rows: i64,
    pub manifest: String,
}

/// What one locked attempt found.
enum Attempt {
    Dropped,
    /// The partition differs from the manifest (rows changed since).
    Changed(String),
}

#[allow(clippy::too_many_arguments)]
pub async fn due(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    store: &Store,
    now: DateTime<Utc>,
    snap: &Snapshot,
    parts: &[Owned],
    dry_run: bool,
    job: i64,
    out: &mut RunOutcome,
    progress: ProgressFn<'_>,
) -> Result<(), ArchiveError> {
    let dir = table_dir(spec);
    let restored: Vec<DateTime<Utc>> = catalog::records(client, spec)
        .await?
        .into_iter()
        .filter(|r| r.state == "restored")
        .map(|r| r.period_start)
        .collect();
    for p in parts {
        let step = Step::Drop {
            name: p.name.clone(),
        };
        // Restored on demand (a legal request, an audit): kept until
        // someone drops it; retention does not undo a restore.
        if restored.contains(&p.from) {
            continue;
        }
        // The retention rules first (real clock): most partitions stop here.
        if safety::check(spec, now, &step, &snap.partitions, None).is_err() {
            continue;
        }
        if dry_run {
            out.refused.push(format!(
                "{}: dry run (would drop once its manifest is re-read and checked)",
                p.name.display_unquoted()
            ));
            continue;
        }
        let mut verified = None;
        let mut reported = false;
        let m = match manifest::load(store, &dir, &p.period).await? {
            Some(m) => match manifest::check_files(store, &m).await {
                Ok(_) => {
                    verified = Some(manifest::manifest_key(&dir, &p.period));
                    Some(m)
                }
                Err(e) => {
                    out.refused
                        .push(format!("{}: {e}", p.name.display_unquoted()));
                    reported = true;
                    None
                }
            },
            None => None,
        };
        if let Err(r) =
            safety::check_archive_drop(spec, now, &step, &snap.partitions, verified.as_deref())
        {
            if !reported {
                out.refused.push(format!("{}: {}", r.step, r.reason));
            }
            continue;
        }
        let m = m.expect("verified");
        let key = verified.expect("verified");
        let policy = &config.maintenance.lock;
        let attempt = drop_checked(client, spec, &p.name, &m, policy).await?;
        let attempt = match attempt {
            Attempt::Changed(why) => {
                // Rows changed after archiving: archive again, then drop
                // against the new manifest.
                progress(&Progress::Line {
                    message: format!("{}: {why}; archiving it again", p.period),
                });
                archive_one(client, spec, store, p, job, progress).await?;
                let m = manifest::load(store, &dir, &p.period)
                    .await?
                    .ok_or_else(|| ArchiveError::Failed("manifest vanished".into()))?;
                manifest::check_files(store, &m).await?;
                drop_checked(client, spec, &p.name, &m, policy).await?
            }
            a => a,
        };
        match attempt {
            Attempt::Dropped => {
                fail_point("drop");
                catalog::set_state(client, spec, p.from, "dropped").await?;
                progress(&Progress::Line {
                    message: format!(
                        "dropped {} ({} rows, archived in {key})",
                        p.name.display_unquoted(),
                        m.row_count
                    ),
                });
                out.dropped.push(Dropped {
                    partition: p.name.display_unquoted(),
                    period: p.period.clone(),
                    rows: m.row_count,
                    manifest: key,
                });
            }
            Attempt::Changed(why) => out
                .refused
                .push(format!("{}: {why}", p.name.display_unquoted())),
        }
    }
    Ok(())
}

async fn drop_checked(
    client: &Client,
    spec: &TableSpec,
    partition: &QualifiedName,
    m: &Manifest,
    policy: &LockPolicy,
) -> Result<Attempt, ArchiveError> {
    let cols = columns::of(client, partition).await?;
    let what = format!("drop {}", partition.display_unquoted());
    Ok(policy
        .run(&what, || attempt(client, spec, partition, &cols, m, policy))
        .await?)
}

/// One transaction: SHARE lock on the partition (writers of other periods
/// never notice), count and hash, then DETACH and DROP (both under the
/// policy's lock_timeout) before the lock is let go.
async fn attempt(
    client: &Client,
    spec: &TableSpec,
    partition: &QualifiedName,
    cols: &[columns::Column],
    m: &Manifest,
    policy: &LockPolicy,
) -> Result<Attempt, DbError> {
    let result = async {
        client
            .batch_execute(&format!(
                "BEGIN; {}; SET LOCAL statement_timeout = '6h'; {}; LOCK TABLE {partition} IN SHARE MODE",
                policy.set_sql(true),
                digest::HASH_SETTINGS
            ))
            .await
            .map_err(DbError::query(format!("locking {}", partition.display_unquoted())))?;
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*)::int8, {} FROM {partition}",
                    digest::content_sql(cols)
                ),
                &[],
            )
            .await
            .map_err(DbError::query(format!("hashing {}", partition.display_unquoted())))?;
        let (rows, hash): (i64, String) = (row.get(0), row.get(1));
        if rows != m.row_count || hash != m.content_hash.value {
            client.batch_execute("ROLLBACK").await.ok();
            return Ok(Attempt::Changed(format!(
                "{rows} rows (hash {hash}) now, {} (hash {}) in the manifest",
                m.row_count, m.content_hash.value
            )));
        }
        client
            .batch_execute(&format!(
                "ALTER TABLE {} DETACH PARTITION {partition}",
                spec.name
            ))
            .await
            .map_err(DbError::query(format!("detaching {}", partition.display_unquoted())))?;
        fail_point("detach");
        client
            .batch_execute(&format!("DROP TABLE {partition}; COMMIT"))
            .await
            .map_err(DbError::query(format!("dropping {}", partition.display_unquoted())))?;
        Ok(Attempt::Dropped)
    }
    .await;
    if result.is_err() {
        client.batch_execute("ROLLBACK").await.ok();
    }
    result
}
