//! Reading a partitioned table's state from the catalog.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::planner::{Bound, ExistingPartition, Snapshot};
use super::PartitionError;
use crate::config::{Interval, TableSpec};
use crate::db::{DbError, Ident, QualifiedName};

/// The parent's OID, checked to be a partitioned table.
pub async fn resolve_parent(client: &Client, table: &QualifiedName) -> Result<u32, PartitionError> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.relkind::text FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)",
            &[&table.to_string()],
        )
        .await
        .map_err(DbError::query("resolving the table"))?;
    let Some(row) = row else {
        return Err(PartitionError::NotFound(table.display_unquoted()));
    };
    let kind: String = row.get(1);
    if kind != "p" {
        return Err(PartitionError::NotPartitioned(table.display_unquoted()));
    }
    Ok(row.get(0))
}

/// The planner computes UTC bounds for a `timestamptz` range key on the
/// configured column; any other key would get bounds that mean something
/// else (or fail as SQL), so it is refused up front.
async fn check_key(client: &Client, parent: u32, spec: &TableSpec) -> Result<(), PartitionError> {
    let rows = client
        .query(
            "SELECT pt.partstrat::text, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
               FROM pg_catalog.pg_partitioned_table pt
               LEFT JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = pt.partrelid AND a.attnum = ANY (pt.partattrs::int2[])
              WHERE pt.partrelid = $1",
            &[&parent],
        )
        .await
        .map_err(DbError::query("reading the partition key"))?;
    let key: Vec<(String, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let ok = matches!(key.as_slice(), [(strat, Some(col), Some(ty))]
        if strat == "r" && col == spec.time_column.as_str() && ty == "timestamp with time zone");
    if ok {
        return Ok(());
    }
    let found = key
        .iter()
        .map(|(s, c, t)| {
            format!(
                "{} {} ({})",
                match s.as_str() {
                    "r" => "RANGE",
                    "l" => "LIST",
                    "h" => "HASH",
                    _ => "?",
                },
                c.as_deref().unwrap_or("an expression"),
                t.as_deref().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(PartitionError::BadKey {
        table: spec.name.display_unquoted(),
        column: spec.time_column.as_str().to_string(),
        found,
    })
}

/// Parses `pg_get_expr(relpartbound)` output rendered with `TimeZone = UTC`.
pub fn parse_bound(expr: &str) -> Option<Bound> {
    if expr.trim() == "DEFAULT" {
        return Some(Bound::Default);
    }
    let rest = expr.trim().strip_prefix("FOR VALUES FROM (")?;
    let (from, rest) = rest.split_once(") TO (")?;
    let to = rest.strip_suffix(')')?;
    Some(Bound::Range {
        from: parse_value(from)?,
        to: parse_value(to)?,
    })
}

fn parse_value(v: &str) -> Option<Option<DateTime<Utc>>> {
    match v.trim() {
        "MINVALUE" | "MAXVALUE" => Some(None),
        quoted => {
            let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
            let (text, offset_ok) = match inner.strip_suffix("+00") {
                Some(t) => (t, true),
                None => (inner, false),
            };
            if !offset_ok {
                return None;
            }
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|n| Some(n.and_utc()))
        }
    }
}

fn trunc_unit(interval: Interval) -> &'static str {
    match interval {
        Interval::Day => "day",
        Interval::Week => "week",
        Interval::Month => "month",
    }
}

/// Partitions and default-partition contents of the managed table.
/// Each attempt of a catalog read waits this long for a lock (bounds need
/// ACCESS SHARE on each partition, which an ALTER TABLE holder blocks)...
const READ_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1000);
/// ...and this many attempts are made, with a growing pause between them,
/// before the read fails naming the sessions in the way.
const READ_ATTEMPTS: u32 = 5;

/// The partitions, the default partition's rows per period and the
/// detached partitions, read in UTC. Never waits on a lock for long: each
/// attempt has a short `lock_timeout`, and after a few attempts the error
/// names the sessions holding the table.
pub async fn snapshot(client: &mut Client, spec: &TableSpec) -> Result<Snapshot, PartitionError> {
    let parent = resolve_parent(client, &spec.name).await?;
    check_key(client, parent, spec).await?;
    let started = std::time::Instant::now();
    let mut attempt = 0;
    let mut snap = loop {
        match read_snapshot(client, spec, parent).await {
            Ok(snap) => break snap,
            Err(PartitionError::Db(e))
                if crate::db::is_lock_timeout(&e) && attempt + 1 < READ_ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            }
            Err(PartitionError::Db(e)) if crate::db::is_lock_timeout(&e) => {
                return Err(PartitionError::Db(DbError::Blocked {
                    what: format!("reading the partitions of {}", spec.name.display_unquoted()),
                    waited_ms: started.elapsed().as_millis() as u64,
                    holders: crate::db::blockers(client, &spec.name).await,
                }));
            }
            Err(e) => return Err(e),
        }
    };
    snap.detached = super::detached::for_planner(client, spec).await?;
    Ok(snap)
}

async fn read_snapshot(
    client: &mut Client,
    spec: &TableSpec,
    parent: u32,
) -> Result<Snapshot, PartitionError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting a snapshot"))?;
    // Bounds are printed in the session time zone; read them in UTC.
    tx.batch_execute(&format!(
        "SET LOCAL TimeZone = 'UTC'; SET LOCAL lock_timeout = '{}ms'",
        READ_LOCK_TIMEOUT.as_millis()
    ))
    .await
    .map_err(DbError::query("setting TimeZone"))?;
    let rows = tx
        .query(
            // relid 0: bounds hold only constants, and with the partition's
            // OID pg_get_expr opens (and locks) each partition.
            "SELECT n.nspname::text, c.relname::text, pg_catalog.pg_get_expr(c.relpartbound, 0),
                    i.inhdetachpending
               FROM pg_catalog.pg_inherits i
               JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE i.inhparent = $1
              ORDER BY c.relname",
            &[&parent],
        )
        .await
        .map_err(DbError::query("listing partitions"))?;
    let mut partitions = Vec::with_capacity(rows.len());
    for r in rows {
        let name = QualifiedName::new(r.get(0), r.get(1))?;
        let expr: String = r.get(2);
        let bound = parse_bound(&expr).ok_or_else(|| PartitionError::UnknownBound {
            partition: name.display_unquoted(),
            bound: expr.clone(),
        })?;
        partitions.push(ExistingPartition {
            name,
            bound,
            detach_pending: r.get(3),
        });
    }
    let mut default_rows = Vec::new();
    if let Some(default) = partitions.iter().find(|p| p.bound == Bound::Default) {
        let sql = format!(
            "SELECT (date_trunc('{unit}', {col} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), count(*)
               FROM {table} GROUP BY 1 ORDER BY 1",
            unit = trunc_unit(spec.interval),
            col = spec.time_column,
            table = default.name,
        );
        for r in tx
            .query(&sql, &[])
            .await
            .map_err(DbError::query("counting rows in the default partition"))?
        {
            default_rows.push((r.get::<_, DateTime<Utc>>(0), r.get::<_, i64>(1)));
        }
    }
    tx.commit()
        .await
        .map_err(DbError::query("ending the snapshot"))?;
    Ok(Snapshot {
        partitions,
        default_rows,
        detached: Vec::new(),
    })
}

/// Columns a row copy must name: every column that is not generated.
pub async fn insertable_columns(
    client: &Client,
    table: &QualifiedName,
) -> Result<Vec<Ident>, PartitionError> {
    let rows = client
        .query(
            "SELECT attname::text FROM pg_catalog.pg_attribute
              WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
              ORDER BY attnum",
            &[&table.to_string()],
        )
        .await
        .map_err(DbError::query("listing columns"))?;
    rows.iter()
        .map(|r| Ok(Ident::new(r.get::<_, String>(0))?))
        .collect()
}

/// One partition as `strata partitions list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionInfo {
    pub name: String,
    pub bound: Bound,
    pub estimated_rows: i64,
    pub exact_rows: Option<i64>,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub total_bytes: i64,
}

pub async fn list(
    client: &mut Client,
    spec: &TableSpec,
    exact: bool,
) -> Result<Vec<PartitionInfo>, PartitionError> {
    let snap = snapshot(client, spec).await?;
    // One query for every partition's sizes: a round trip per partition is
    // seconds at a thousand partitions.
    let names: Vec<String> = snap.partitions.iter().map(|p| p.name.to_string()).collect();
    let sizes = client
        .query(
            "SELECT n.ord::int8, greatest(c.reltuples, 0)::int8, pg_catalog.pg_table_size(c.oid),
                    pg_catalog.pg_indexes_size(c.oid), pg_catalog.pg_total_relation_size(c.oid)
               FROM unnest($1::text[]) WITH ORDINALITY AS n(name, ord)
               JOIN pg_catalog.pg_class c ON c.oid = to_regclass(n.name)",
            &[&names],
        )
        .await
        .map_err(DbError::query("reading partition sizes"))?;
    let mut by_position = std::collections::HashMap::with_capacity(sizes.len());
    for r in sizes {
        let ord: i64 = r.get(0);
        by_position.insert(ord as usize - 1, (r.get(1), r.get(2), r.get(3), r.get(4)));
    }
    let mut out = Vec::with_capacity(snap.partitions.len());
    for (i, p) in snap.partitions.into_iter().enumerate() {
        // A partition dropped since the snapshot has no sizes: leave it out.
        let Some((estimated_rows, table_bytes, index_bytes, total_bytes)) = by_position.remove(&i)
        else {
            continue;
        };
        let exact_rows = if exact {
            let sql = format!("SELECT count(*) FROM {}", p.name);
            Some(
                client
                    .query_one(&sql, &[])
                    .await
                    .map_err(DbError::query("counting rows"))?
                    .get(0),
            )
        } else {
            None
        };
        out.push(PartitionInfo {
            name: p.name.display_unquoted(),
            bound: p.bound,
            estimated_rows,
            exact_rows,
            table_bytes,
            index_bytes,
            total_bytes,
        });
    }
    out.sort_by(|a, b| match (&a.bound, &b.bound) {
        (Bound::Default, Bound::Default) => a.name.cmp(&b.name),
        (Bound::Default, _) => std::cmp::Ordering::Greater,
        (_, Bound::Default) => std::cmp::Ordering::Less,
        (Bound::Range { from: fa, .. }, Bound::Range { from: fb, .. }) => {
            fa.cmp(fb).then(a.name.cmp(&b.name))
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse() {
        let b =
            parse_bound("FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2025-02-01 00:00:00+00')")
                .unwrap();
        assert_eq!(
            b,
            Bound::Range {
                from: Some("2025-01-01T00:00:00Z".parse().unwrap()),
                to: Some("2025-02-01T00:00:00Z".parse().unwrap()),
            }
        );
        assert_eq!(parse_bound("DEFAULT"), Some(Bound::Default));
        assert_eq!(
            parse_bound("FOR VALUES FROM (MINVALUE) TO ('2025-02-01 00:00:00.5+00')"),
            Some(Bound::Range {
                from: None,
                to: Some("2025-02-01T00:00:00.5Z".parse().unwrap())
            })
        );
        // A bound printed in another zone is refused rather than misread.
        assert_eq!(
            parse_bound("FOR VALUES FROM ('2025-01-01 00:00:00-05') TO ('2025-02-01 00:00:00-05')"),
            None
        );
    }
}
