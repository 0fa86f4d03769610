//! `strata seal run`: seal every closed, unsealed period, oldest first.
//! "Closed" follows the server's clock only: end + `seal_after` <= now.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::chunks::{Builder, Chunk};
use super::merkle::Hash;
use super::record::SealRecord;
use super::{anchor, rows, show_time, sign, store, SealError};
use crate::config::{Config, TableSpec};
use crate::db::{literal, DbError, Ident, QualifiedName};
use crate::ops::{Progress, ProgressFn};
use crate::partition::{self, Bound};

/// What one run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SealOutcome {
    pub table: String,
    pub now: Option<DateTime<Utc>>,
    pub dry_run: bool,
    pub sealed: Vec<SealedPeriod>,
    /// Closed periods that were not sealed, with why.
    pub skipped: Vec<Skipped>,
    pub signed: bool,
    pub anchored: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SealedPeriod {
    pub partition: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub row_count: i64,
    pub root: String,
    pub seal_hash: String,
    pub key_id: Option<String>,
    pub millis: u128,
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub partition: String,
    pub reason: String,
}

/// A partition's rows hashed: count, root and the chunk summaries.
pub struct Computed {
    pub count: u64,
    pub root: Hash,
    pub chunks: Vec<Chunk>,
}

/// Hashes every row of `partition` in seal order.
pub async fn compute(
    client: &Client,
    partition: &QualifiedName,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Computed, SealError> {
    let scanned = rows::scan(client, partition, None, progress).await?;
    let mut b = Builder::default();
    for e in &scanned.entries {
        b.push(e.id, e.leaf);
    }
    let count = scanned.entries.len() as u64;
    let (chunks, root) = b.finish();
    Ok(Computed {
        count,
        root,
        chunks,
    })
}

pub async fn run(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    dry_run: bool,
    progress: ProgressFn<'_>,
) -> Result<SealOutcome, SealError> {
    // The key is read first: a bad key file loses nothing.
    let key = config
        .seal
        .key_file
        .as_deref()
        .map(sign::load)
        .transpose()?;
    if let Some(k) = &key {
        if !matches!(k, sign::Key::Signing(_)) && !dry_run {
            return Err(SealError::Key {
                path: config.seal.key_file.clone().unwrap_or_default(),
                why: "holds a public key; sealing needs the secret key (strata seal keygen)".into(),
            });
        }
    }
    let now = crate::ops::real_now(client)
        .await
        .map_err(|e| SealError::Precondition(e.to_string()))?;
    let after = chrono::Duration::from_std(config.seal.after).unwrap_or(chrono::Duration::days(1));
    let snap = partition::snapshot(client, spec).await?;
    let existing = store::list(&*client, spec).await?;
    let mut out = SealOutcome {
        table: spec.name.display_unquoted(),
        now: Some(now),
        dry_run,
        signed: key.is_some(),
        anchored: config.seal.anchor_to.is_some(),
        ..Default::default()
    };
    let mut closed: Vec<(QualifiedName, DateTime<Utc>, DateTime<Utc>)> = snap
        .partitions
        .iter()
        .filter_map(|p| match p.bound {
            Bound::Range {
                from: Some(f),
                to: Some(t),
            } if t + after <= now => Some((p.name.clone(), f, t)),
            _ => None,
        })
        .filter(|(_, f, _)| !existing.iter().any(|s| s.period_start == *f))
        .collect();
    closed.sort_by_key(|(_, f, _)| *f);
    let mut last = existing.last().cloned();
    for (name, from, to) in closed {
        let shown = name.display_unquoted();
        let skip = |reason: String| Skipped {
            partition: shown.clone(),
            reason,
        };
        if let Some(l) = last.as_ref().filter(|l| from < l.period_end) {
            out.skipped.push(skip(format!(
                "older than the latest seal ({}): the chain only runs forward",
                show_time(l.period_start)
            )));
            continue;
        }
        let in_default: i64 = snap
            .default_rows
            .iter()
            .filter(|(p, _)| *p >= from && *p < to)
            .map(|(_, n)| n)
            .sum();
        if in_default > 0 {
            out.skipped.push(skip(format!(
                "{in_default} rows of the period wait in the default partition; run strata maintain first"
            )));
            continue;
        }
        if dry_run {
            progress(&Progress::Line {
                message: format!(
                    "would seal {shown} [{}, {})",
                    show_time(from),
                    show_time(to)
                ),
            });
            out.sealed.push(SealedPeriod {
                partition: shown,
                period_start: from,
                period_end: to,
                row_count: 0,
                root: String::new(),
                seal_hash: String::new(),
                key_id: key.as_ref().map(|k| k.id()),
                millis: 0,
            });
            continue;
        }
        let prev = last.as_ref().map(|l| l.seal_hash.clone());
        let started = std::time::Instant::now();
        let sealed = seal_one(
            client,
            config,
            spec,
            &name,
            (from, to),
            prev,
            key.as_ref(),
            progress,
        )
        .await?;
        let millis = started.elapsed().as_millis();
        progress(&Progress::Line {
            message: format!(
                "sealed {shown}: {} rows, root {}, {} ms",
                sealed.row_count,
                &hex::encode(&sealed.root)[..16],
                millis
            ),
        });
        if let Some(path) = &config.seal.anchor_to {
            anchor::append(
                path,
                &anchor::line(&sealed.table, &show_time(from), &sealed.seal_hash),
            )?;
        }
        out.sealed.push(SealedPeriod {
            partition: shown,
            period_start: from,
            period_end: to,
            row_count: sealed.row_count,
            root: hex::encode(&sealed.root),
            seal_hash: hex::encode(&sealed.seal_hash),
            key_id: sealed.key_id.clone(),
            millis,
        });
        last = Some(sealed);
    }
    Ok(out)
}

/// The guard, the hash and the record in one transaction. The guard comes
/// first: `CREATE TRIGGER` takes SHARE ROW EXCLUSIVE on the partition, which
/// waits for its in-flight writers and holds off new ones until commit, so
/// the rows hashed are exactly the rows sealed. Only the sealed partition is
/// locked; writers of the current month use another partition and the
/// parent is not locked beyond what any query takes.
#[allow(clippy::too_many_arguments)]
async fn seal_one(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    partition: &QualifiedName,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    prev: Option<Vec<u8>>,
    key: Option<&sign::Key>,
    progress: ProgressFn<'_>,
) -> Result<store::StoredSeal, SealError> {
    let label = format!(
        "seal of {} for [{}, {})",
        spec.name.display_unquoted(),
        show_time(from),
        show_time(to)
    );
    let guard = guard_sql(client, partition, &label).await?;
    let policy = &config.maintenance.lock;
    let mut attempt = 0;
    loop {
        attempt += 1;
        // BEGIN by hand rather than a `Transaction`: the rows stream through
        // `copy_out`, which only `Client` offers, in the same transaction.
        let ddl = format!("BEGIN; {}; {guard}", policy.set_sql(true));
        match client.batch_execute(&ddl).await {
            Ok(()) => {}
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
                    && attempt < policy.attempts =>
            {
                rollback(client).await;
                tokio::time::sleep(policy.backoff.saturating_mul(attempt)).await;
                continue;
            }
            Err(e) => {
                rollback(client).await;
                return Err(DbError::query(format!(
                    "making {} read-only",
                    partition.display_unquoted()
                ))(e)
                .into());
            }
        }
        let result =
            hash_and_record(client, spec, partition, (from, to), &prev, key, progress).await;
        match result {
            Ok(sealed) => {
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(DbError::query("committing the seal"))?;
                return Ok(sealed);
            }
            Err(e) => {
                rollback(client).await;
                return Err(e);
            }
        }
    }
}

async fn rollback(client: &Client) {
    if let Err(e) = client.batch_execute("ROLLBACK").await {
        tracing::warn!(error = %e, "rolling back a failed seal");
    }
}

async fn hash_and_record(
    client: &Client,
    spec: &TableSpec,
    partition: &QualifiedName,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    prev: &Option<Vec<u8>>,
    key: Option<&sign::Key>,
    progress: ProgressFn<'_>,
) -> Result<store::StoredSeal, SealError> {
    // The guard holds its lock now; reads wait as long as any session's.
    client
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '{}ms'",
            crate::db::SESSION_LOCK_TIMEOUT_MS
        ))
        .await
        .map_err(DbError::query("setting the seal's limits"))?;
    let shown = partition.display_unquoted();
    let mut report = |n: u64| {
        progress(&Progress::Line {
            message: format!("  {shown}: {n} rows hashed"),
        });
    };
    let c = compute(client, partition, &mut report).await?;
    let sealed_at: DateTime<Utc> = client
        .query_one("SELECT now()", &[])
        .await
        .map_err(DbError::query("reading the server clock"))?
        .get(0);
    let rec = SealRecord {
        table: spec.name.display_unquoted(),
        period_start: from,
        period_end: to,
        row_count: c.count as i64,
        root: c.root,
        prev_hash: prev.as_deref().and_then(|p| p.try_into().ok()),
        sealed_at,
    };
    let hash = rec.hash();
    let sig = key.and_then(|k| k.sign(&hash).map(|s| (s, k.id())));
    let id = store::insert(
        client,
        spec,
        partition,
        &rec,
        &hash,
        sig.as_ref().map(|(s, k)| (&s[..], k.clone())),
        &c.chunks,
    )
    .await?;
    Ok(store::StoredSeal {
        id,
        table: rec.table.clone(),
        partition: partition.display_unquoted(),
        partition_name: Some(partition.clone()),
        period_start: from,
        period_end: to,
        row_count: rec.row_count,
        root: rec.root.to_vec(),
        prev_hash: prev.clone(),
        seal_hash: hash.to_vec(),
        signature: sig.as_ref().map(|(s, _)| s.to_vec()),
        key_id: sig.map(|(_, k)| k),
        sealed_at,
    })
}

/// The read-only guard of a partition: row triggers for INSERT (routed
/// through the parent too), UPDATE and DELETE, a statement trigger for
/// TRUNCATE, both `ENABLE ALWAYS` so `session_replication_role = replica`
/// does not skip them; and no write privilege for anyone but the owner.
async fn guard_sql(
    client: &Client,
    partition: &QualifiedName,
    label: &str,
) -> Result<String, SealError> {
    let grantees = client
        .query(
            "SELECT DISTINCT r.rolname::text
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
               JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
              WHERE c.oid = $1::text::regclass AND a.grantee <> c.relowner
                AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')",
            &[&partition.to_string()],
        )
        .await
        .map_err(DbError::query("reading the partition's privileges"))?;
    let mut from = vec!["PUBLIC".to_string()];
    for r in grantees {
        from.push(Ident::new(r.get::<_, String>(0))?.to_string());
    }
    let arg = literal(label);
    Ok(format!(
        "CREATE OR REPLACE TRIGGER strata_sealed BEFORE INSERT OR UPDATE OR DELETE ON {p} \
           FOR EACH ROW EXECUTE FUNCTION strata.seal_refuse({arg});
         CREATE OR REPLACE TRIGGER strata_sealed_truncate BEFORE TRUNCATE ON {p} \
           FOR EACH STATEMENT EXECUTE FUNCTION strata.seal_refuse({arg});
         ALTER TABLE {p} ENABLE ALWAYS TRIGGER strata_sealed, ENABLE ALWAYS TRIGGER strata_sealed_truncate;
         REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {p} FROM {roles}",
        p = partition,
        roles = from.join(", ")
    ))
}
