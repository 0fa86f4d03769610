//! Partitions retention detached: renamed out of the live names and
//! recorded, so nothing collides with a re-created period and nothing is
//! forgotten. They are dropped only by `detached_drop_after` or by hand.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::planner::DetachedPartition;
use super::PartitionError;
use crate::config::TableSpec;
use crate::db::{DbError, LockPolicy, QualifiedName, MAX_IDENT_BYTES};

const SUFFIX: &str = "_detached";

/// Renames the just-detached `name` (bounds `[from, to)`, as the snapshot
/// before the detach had them) out of the live names and records it, in one
/// transaction.
pub async fn record(
    client: &Client,
    spec: &TableSpec,
    name: &QualifiedName,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    policy: &LockPolicy,
) -> Result<(), PartitionError> {
    policy
        .run("renaming a detached partition", || async {
            rename_and_record(client, spec, name, from, to, policy, None).await
        })
        .await?;
    Ok(())
}

/// Detaches `name` (with a short ACCESS EXCLUSIVE lock: a default partition
/// exists, so not CONCURRENTLY), renames it and records it, all in one
/// transaction: no moment exists where it is detached but still under its
/// live name, or renamed but unrecorded.
pub async fn detach(
    client: &Client,
    spec: &TableSpec,
    name: &QualifiedName,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    policy: &LockPolicy,
) -> Result<(), PartitionError> {
    let detach = format!("ALTER TABLE {} DETACH PARTITION {name}", spec.name);
    policy
        .run(&format!("detach {}", name.display_unquoted()), || async {
            rename_and_record(client, spec, name, from, to, policy, Some(&detach)).await
        })
        .await?;
    Ok(())
}

async fn rename_and_record(
    client: &Client,
    spec: &TableSpec,
    name: &QualifiedName,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    policy: &LockPolicy,
    detach: Option<&str>,
) -> Result<(), DbError> {
    let q = |what: &'static str| DbError::query(what);
    client
        .batch_execute(&format!("BEGIN; {}", policy.set_sql(true)))
        .await
        .map_err(q("starting the rename"))?;
    let result = async {
        if let Some(sql) = detach {
            client.batch_execute(sql).await.map_err(q("detaching the partition"))?;
        }
        let new = free_name(client, name).await?;
        client
            .batch_execute(&format!(
                "ALTER TABLE {name} RENAME TO {}",
                new.name
            ))
            .await
            .map_err(q("renaming the detached partition"))?;
        client
            .execute(
                "INSERT INTO strata.detached_partitions
                   (parent_schema, parent_table, schema_name, table_name, original_name, range_from, range_to)
                 VALUES ($1, $2, $3, $4, $5, coalesce($6::timestamptz, '-infinity'::timestamptz),
                         coalesce($7::timestamptz, 'infinity'::timestamptz))",
                &[
                    &spec.name.schema.as_str(),
                    &spec.name.name.as_str(),
                    &new.schema.as_str(),
                    &new.name.as_str(),
                    &name.name.as_str(),
                    &from,
                    &to,
                ],
            )
            .await
            .map_err(q("recording the detached partition"))?;
        client.batch_execute("COMMIT").await.map_err(q("committing the rename"))
    }
    .await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

/// `<name>_detached`, or `<name>_detached_2`, … whichever is free; the base
/// is shortened to keep the whole within PostgreSQL's 63 bytes.
async fn free_name(client: &Client, name: &QualifiedName) -> Result<QualifiedName, DbError> {
    for n in 1..1000 {
        let suffix = if n == 1 {
            SUFFIX.to_string()
        } else {
            format!("{SUFFIX}_{n}")
        };
        let mut base = name.name.as_str().to_string();
        while base.len() + suffix.len() > MAX_IDENT_BYTES {
            base.pop();
        }
        let candidate = name.sibling(&format!("{base}{suffix}"))?;
        let taken: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&candidate.to_string()],
            )
            .await
            .map_err(DbError::query("looking for a free name"))?
            .get(0);
        if !taken {
            return Ok(candidate);
        }
    }
    Err(DbError::Ident(crate::db::IdentError::Empty))
}

pub async fn mark_dropped(client: &Client, name: &QualifiedName) -> Result<(), PartitionError> {
    client
        .execute(
            "UPDATE strata.detached_partitions SET dropped_at = now()
              WHERE schema_name = $1 AND table_name = $2 AND dropped_at IS NULL",
            &[&name.schema.as_str(), &name.name.as_str()],
        )
        .await
        .map_err(DbError::query("recording the dropped partition"))?;
    Ok(())
}

/// A row of `strata.detached_partitions`, for `partitions list --detached`.
#[derive(Clone, Debug, Serialize)]
pub struct DetachedRecord {
    pub name: String,
    #[serde(skip)]
    pub qualified: Option<QualifiedName>,
    pub original_name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub detached_at: DateTime<Utc>,
    pub dropped_at: Option<DateTime<Utc>>,
    /// Whether the table still exists.
    pub exists: bool,
}

/// Detached partitions of `spec`'s table, live ones (not dropped) unless `all`.
pub async fn list(
    client: &Client,
    spec: &TableSpec,
    all: bool,
) -> Result<Vec<DetachedRecord>, PartitionError> {
    let rows = client
        .query(
            "SELECT d.schema_name, d.table_name, d.original_name, d.range_from, d.range_to,
                    d.detached_at, d.dropped_at,
                    to_regclass(quote_ident(d.schema_name) || '.' || quote_ident(d.table_name)) IS NOT NULL
               FROM strata.detached_partitions d
              WHERE d.parent_schema = $1 AND d.parent_table = $2 AND ($3 OR d.dropped_at IS NULL)
              ORDER BY d.range_from, d.id",
            &[&spec.name.schema.as_str(), &spec.name.name.as_str(), &all],
        )
        .await
        .map_err(DbError::query("listing detached partitions"))?;
    Ok(rows
        .iter()
        .map(|r| DetachedRecord {
            name: format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)),
            qualified: QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1)).ok(),
            original_name: r.get(2),
            from: r.get(3),
            to: r.get(4),
            detached_at: r.get(5),
            dropped_at: r.get(6),
            exists: r.get(7),
        })
        .collect())
}

/// The live detached partitions that still exist, for the planner.
pub async fn for_planner(
    client: &Client,
    spec: &TableSpec,
) -> Result<Vec<DetachedPartition>, PartitionError> {
    let present: bool = client
        .query_one(
            "SELECT to_regclass('strata.detached_partitions') IS NOT NULL",
            &[],
        )
        .await
        .map_err(DbError::query("looking for strata.detached_partitions"))?
        .get(0);
    if !present {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for d in list(client, spec, false).await? {
        if !d.exists {
            continue;
        }
        let Some(name) = d.qualified else { continue };
        out.push(DetachedPartition {
            name,
            from: d.from,
            to: d.to,
            detached_at: d.detached_at,
        });
    }
    Ok(out)
}

/// Plain tables under the live name of a period past retention, with the
/// parent's columns, that are no partition and not recorded: what an
/// interrupted `DETACH ... CONCURRENTLY` (or a strata before detached
/// partitions were renamed) left. They are renamed and recorded like any
/// detached partition. Periods retention keeps are left alone: a table of
/// such a name is someone's, and the create step reports it as a conflict.
pub async fn adopt_leftovers(
    client: &Client,
    spec: &TableSpec,
    now: DateTime<Utc>,
    policy: &LockPolicy,
) -> Result<Vec<String>, PartitionError> {
    let rows = client
        .query(
            "SELECT c.relname::text
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT c.relispartition
                -- a staging table of a move out of the default partition is not a leftover
                AND coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '') NOT LIKE 'strata staging%'
                AND NOT EXISTS (SELECT 1 FROM strata.detached_partitions d
                                 WHERE d.schema_name = n.nspname AND d.table_name = c.relname AND d.dropped_at IS NULL)
                AND ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
                  = ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                           WHERE a.attrelid = to_regclass($2) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)",
            &[&spec.name.schema.as_str(), &spec.name.to_string()],
        )
        .await
        .map_err(DbError::query("looking for detached leftovers"))?;
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut adopted = Vec::new();
    let Some(retention) = spec.retention else {
        return Ok(adopted);
    };
    let cutoff = super::period::retention_cutoff(retention, now)
        .min(super::period::floor(spec.interval, now));
    let mut p = super::period::floor(spec.interval, super::period::midnight(spec.start));
    while p < cutoff {
        let next = super::period::next(spec.interval, p);
        let live = super::period::render_name(&spec.name_template, spec.name.name.as_str(), p);
        if next <= cutoff && names.contains(&live) {
            let name = spec.name.sibling(&live)?;
            record(client, spec, &name, (Some(p), Some(next)), policy).await?;
            adopted.push(name.display_unquoted());
        }
        p = next;
    }
    Ok(adopted)
}
