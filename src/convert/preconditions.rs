//! What must hold before a conversion starts, each failure naming the
//! objects involved, so the user can fix them and nothing is half-done.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::ConvertError;
use crate::config::TableSpec;
use crate::db::{DbError, Ident, QualifiedName};

/// Below this estimate the rows are counted exactly.
const EXACT_COUNT_BELOW: i64 = 1_000_000;

/// A refusal, for the error message.
pub type Problems = Vec<String>;

/// What the checks learned.
#[derive(Debug, Default)]
pub struct Facts {
    pub problems: Problems,
    pub warnings: Vec<String>,
    pub estimated_rows: Option<i64>,
    pub min_time: Option<DateTime<Utc>>,
    pub min_id: Option<i64>,
}

async fn names(client: &Client, sql: &str, table: &str) -> Result<Vec<String>, DbError> {
    Ok(client
        .query(sql, &[&table])
        .await
        .map_err(DbError::query("checking dependencies"))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

/// The old table's unique key for the reverse mirror's ON CONFLICT: `id`,
/// or `id, <time>` when that is its primary key.
pub async fn id_key(
    client: &Client,
    table: &QualifiedName,
    id: &Ident,
    time: &Ident,
) -> Result<String, ConvertError> {
    let keys = unique_keys(client, table).await?;
    if keys.iter().any(|k| k == &[id.as_str().to_string()]) {
        return Ok(id.to_string());
    }
    Ok(format!("{id}, {time}"))
}

/// Column lists of the table's valid, non-partial unique indexes.
async fn unique_keys(client: &Client, table: &QualifiedName) -> Result<Vec<Vec<String>>, DbError> {
    Ok(client
        .query(
            "SELECT array_agg(a.attname::text ORDER BY k.ord)
               FROM pg_catalog.pg_index i
               CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
                AND k.ord <= i.indnkeyatts
              GROUP BY i.indexrelid",
            &[&table.to_string()],
        )
        .await
        .map_err(DbError::query("reading unique keys"))?
        .iter()
        .map(|r| r.get::<_, Vec<String>>(0))
        .collect())
}

pub async fn check(client: &Client, spec: &TableSpec) -> Result<Facts, ConvertError> {
    let table = &spec.name;
    let shown = table.display_unquoted();
    let quoted = table.to_string();
    let mut f = Facts::default();
    let kind: Option<String> = client
        .query_opt(
            "SELECT relkind::text FROM pg_catalog.pg_class WHERE oid = to_regclass($1)",
            &[&quoted],
        )
        .await
        .map_err(DbError::query("looking up the table"))?
        .map(|r| r.get(0));
    match kind.as_deref() {
        None => {
            f.problems.push(format!("{shown} does not exist"));
            return Ok(f);
        }
        Some("p") => {
            f.problems.push(format!(
                "{shown} is already partitioned: there is nothing to convert"
            ));
            return Ok(f);
        }
        Some("r") => {}
        Some(k) => {
            f.problems
                .push(format!("{shown} is not a plain table (relkind {k})"));
            return Ok(f);
        }
    }
    columns(client, spec, &mut f).await?;
    if !f.problems.is_empty() {
        return Ok(f);
    }
    dependencies(client, spec, &mut f).await?;
    sizing(client, spec, &mut f).await?;
    Ok(f)
}

/// The id and time columns: present, of the right types, no NULL times.
async fn columns(client: &Client, spec: &TableSpec, f: &mut Facts) -> Result<(), ConvertError> {
    let table = &spec.name;
    let shown = table.display_unquoted();
    let quoted = table.to_string();
    let time = spec.time_column.as_str();
    let cols = client
        .query(
            "SELECT attname::text, pg_catalog.format_type(atttypid, atttypmod), attnotnull
               FROM pg_catalog.pg_attribute
              WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attname IN ('id', $2)",
            &[&quoted, &time],
        )
        .await
        .map_err(DbError::query("reading columns"))?;
    let col = |name: &str| {
        cols.iter()
            .find(|r| r.get::<_, String>(0) == name)
            .map(|r| (r.get::<_, String>(1), r.get::<_, bool>(2)))
    };
    match col("id") {
        None => f.problems.push(format!("{shown} has no id column")),
        Some((ty, _)) if !["bigint", "integer"].contains(&ty.as_str()) => f.problems.push(format!(
            "{shown}.id is {ty}; a bigint or integer id is needed for keyset batches"
        )),
        _ => {}
    }
    match col(time) {
        None => f.problems.push(format!(
            "{shown} has no {time} column (time_column in strata.toml)"
        )),
        Some((ty, _)) if ty != "timestamp with time zone" => f.problems.push(format!(
            "{shown}.{time} is {ty}; partitions are ranges of timestamptz"
        )),
        Some((_, notnull)) => {
            if !notnull {
                let nulls: i64 = client
                    .query_one(
                        &format!(
                            "SELECT count(*) FROM {table} WHERE {} IS NULL",
                            spec.time_column
                        ),
                        &[],
                    )
                    .await
                    .map_err(DbError::query("counting NULL times"))?
                    .get(0);
                if nulls > 0 {
                    f.problems.push(format!(
                        "{nulls} rows of {shown} have a NULL {time}: a partition key cannot be NULL; set a time \
                         on them (or delete them) first"
                    ));
                } else {
                    f.warnings.push(format!(
                        "{shown}.{time} allows NULL; the partitioned table will not (inserts of NULL will fail)"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A unique id, and nothing that would keep pointing at the old table.
async fn dependencies(
    client: &Client,
    spec: &TableSpec,
    f: &mut Facts,
) -> Result<(), ConvertError> {
    let table = &spec.name;
    let shown = table.display_unquoted();
    let quoted = table.to_string();
    let time = spec.time_column.as_str();
    let keys = unique_keys(client, table).await?;
    let id_unique = keys
        .iter()
        .any(|k| k == &["id".to_string()] || k == &["id".to_string(), time.to_string()]);
    if !id_unique {
        f.problems.push(format!(
            "{shown} has no primary key or unique index on (id) or (id, {time}); the mirror needs one to \
             apply updates and deletes"
        ));
    }
    let views = names(
        client,
        "SELECT DISTINCT v.oid::regclass::text FROM pg_catalog.pg_depend d
           JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid
           JOIN pg_catalog.pg_class v ON v.oid = w.ev_class
          WHERE d.refobjid = to_regclass($1) AND d.classid = 'pg_catalog.pg_rewrite'::regclass
            AND v.oid <> to_regclass($1) ORDER BY 1",
        &quoted,
    )
    .await?;
    if !views.is_empty() {
        f.problems.push(format!(
            "views depend on it (they would keep pointing at the old table): {}",
            views.join(", ")
        ));
    }
    let fks_in = names(
        client,
        "SELECT conname || ' on ' || conrelid::regclass::text FROM pg_catalog.pg_constraint
          WHERE contype = 'f' AND confrelid = to_regclass($1) ORDER BY 1",
        &quoted,
    )
    .await?;
    if !fks_in.is_empty() {
        f.problems
            .push(format!("foreign keys reference it: {}", fks_in.join(", ")));
    }
    let fks_out = names(
        client,
        "SELECT conname || ' -> ' || confrelid::regclass::text FROM pg_catalog.pg_constraint
          WHERE contype = 'f' AND conrelid = to_regclass($1) ORDER BY 1",
        &quoted,
    )
    .await?;
    if !fks_out.is_empty() {
        f.problems.push(format!(
            "it has foreign keys, which strata does not carry over yet: {}",
            fks_out.join(", ")
        ));
    }
    let pubs = names(
        client,
        "SELECT p.pubname::text FROM pg_catalog.pg_publication p
          WHERE p.puballtables
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid = to_regclass($1))
          ORDER BY 1",
        &quoted,
    )
    .await?;
    if !pubs.is_empty() {
        f.problems.push(format!(
            "it is published for logical replication (the new table would need adding and subscribers \
             re-syncing): {}",
            pubs.join(", ")
        ));
    }
    Ok(())
}

/// Row estimate (exact when small), size, first time and id.
async fn sizing(client: &Client, spec: &TableSpec, f: &mut Facts) -> Result<(), ConvertError> {
    let table = &spec.name;
    let shown = table.display_unquoted();
    let quoted = table.to_string();
    let row = client
        .query_one(
            &format!(
                "SELECT greatest(c.reltuples, 0)::int8, pg_catalog.pg_total_relation_size(c.oid),
                        (SELECT min({time}) FROM {table}), (SELECT min(id) FROM {table})
                   FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)",
                time = spec.time_column
            ),
            &[&quoted],
        )
        .await
        .map_err(DbError::query("sizing the table"))?;
    let estimate: i64 = row.get(0);
    // An unanalyzed table's reltuples says nothing (-1, shown as 0); a small
    // table is counted, so progress has a true total.
    f.estimated_rows = Some(if estimate < EXACT_COUNT_BELOW {
        client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(DbError::query("counting the rows"))?
            .get(0)
    } else {
        estimate
    });
    let bytes: i64 = row.get(1);
    f.min_time = row.get(2);
    f.min_id = row.get(3);
    f.warnings.push(format!(
        "the conversion writes a second copy of {shown}: about {} more disk until cleanup",
        crate::format::bytes(bytes.max(0) as u64)
    ));
    Ok(())
}
