//! Installs a table's rollups as its spec declares them: storage tables,
//! views, their rows in `strata.rollups`, and the invalidation triggers.

use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use super::layout::{RESERVED_COLUMNS, USER_COLUMN};
use super::{triggers, view, Layout};
use crate::config::{Measure, TableSpec};
use crate::db::{DbError, Ident, LockPolicy};
use crate::ops::OpError;

#[derive(Clone, Debug, Default, Serialize)]
pub struct ApplyOutcome {
    pub table: String,
    /// Rollups created (or re-created because their definition changed).
    pub created: Vec<String>,
    pub unchanged: Vec<String>,
    pub dropped: Vec<String>,
    pub triggers_created: usize,
}

/// Makes the database hold exactly `spec.rollups`. A rollup whose
/// definition changed is rebuilt empty (watermark at -infinity: its view
/// reads everything live until the next refresh), so it is never wrong.
pub async fn apply(
    client: &mut Client,
    spec: &TableSpec,
    policy: &LockPolicy,
) -> Result<ApplyOutcome, OpError> {
    Ok(apply_layouts(client, spec, policy).await?.0)
}

/// [`apply`], also returning the layouts it installed.
pub(super) async fn apply_layouts(
    client: &mut Client,
    spec: &TableSpec,
    policy: &LockPolicy,
) -> Result<(ApplyOutcome, Vec<Layout>), OpError> {
    let columns = table_columns(client, spec).await?;
    let hll = hll_schema(client, spec).await?;
    let mut layouts = Vec::new();
    for r in &spec.rollups {
        for d in &r.dimensions {
            if !columns.iter().any(|c| c == d.as_str()) {
                return Err(OpError::Usage(format!(
                    "rollup {}: dimension {} is not a column of {} (columns: {})",
                    r.name.as_str(),
                    d.as_str(),
                    spec.name.display_unquoted(),
                    columns.join(", ")
                )));
            }
            if RESERVED_COLUMNS.contains(&d.as_str()) {
                return Err(OpError::Usage(format!(
                    "rollup {}: dimension {} collides with a column of the rollup itself ({})",
                    r.name.as_str(),
                    d.as_str(),
                    RESERVED_COLUMNS.join(", ")
                )));
            }
        }
        if r.has(Measure::DistinctUserId) && !columns.iter().any(|c| c == USER_COLUMN) {
            return Err(OpError::Usage(format!(
                "rollup {}: measure distinct user_id needs a user_id column in {}",
                r.name.as_str(),
                spec.name.display_unquoted()
            )));
        }
        layouts.push(Layout::new(spec, r, hll.clone())?);
    }
    let mut out = install(client, spec, &layouts).await?;
    out.triggers_created = triggers::ensure(client, spec, policy).await?;
    Ok((out, layouts))
}

async fn table_columns(client: &Client, spec: &TableSpec) -> Result<Vec<String>, OpError> {
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&spec.name.to_string()],
        )
        .await
        .map_err(DbError::query("reading the table's columns"))?;
    if rows.is_empty() {
        return Err(OpError::Precondition(format!(
            "{} does not exist; run `strata migrate` first",
            spec.name.display_unquoted()
        )));
    }
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The schema of the hll extension when a rollup needs it, creating the
/// extension if the server has it available; a clear refusal otherwise.
async fn hll_schema(client: &Client, spec: &TableSpec) -> Result<Option<Ident>, OpError> {
    let Some(needs) = spec.rollups.iter().find(|r| r.has(Measure::DistinctUserId)) else {
        return Ok(None);
    };
    let find = "SELECT n.nspname::text FROM pg_catalog.pg_extension e
                  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'hll'";
    if let Some(row) = client
        .query_opt(find, &[])
        .await
        .map_err(DbError::query("looking for the hll extension"))?
    {
        return Ok(Some(
            Ident::new(row.get::<_, String>(0)).map_err(DbError::from)?,
        ));
    }
    let available: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'hll')",
            &[],
        )
        .await
        .map_err(DbError::query("looking for the hll extension"))?
        .get(0);
    if !available {
        return Err(OpError::Precondition(format!(
            "rollup {}: measure distinct user_id needs the hll extension, which this server does not have \
             (Debian/Ubuntu: apt-get install postgresql-15-hll); remove the measure or install it",
            needs.name.as_str()
        )));
    }
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS hll")
        .await
        .map_err(|e| {
            OpError::Precondition(format!(
                "rollup {}: measure distinct user_id needs the hll extension, and creating it failed: {}",
                needs.name.as_str(),
                crate::db::server_message(&e)
            ))
        })?;
    let row = client
        .query_one(find, &[])
        .await
        .map_err(DbError::query("looking for the hll extension"))?;
    Ok(Some(
        Ident::new(row.get::<_, String>(0)).map_err(DbError::from)?,
    ))
}

/// One transaction: storage and views of new or changed rollups, rows of
/// `strata.rollups`, removal of rollups no longer declared. Nothing here
/// locks the base table beyond ACCESS SHARE (reading its definition).
async fn install(
    client: &mut Client,
    spec: &TableSpec,
    layouts: &[Layout],
) -> Result<ApplyOutcome, OpError> {
    let (schema, table) = (spec.name.schema.as_str(), spec.name.name.as_str());
    let q = |what: &'static str| DbError::query(what);
    let tx = client
        .transaction()
        .await
        .map_err(q("starting the rollup transaction"))?;
    tx.execute(
        "INSERT INTO strata.rollup_tables (schema_name, table_name, time_column) VALUES ($1, $2, $3)
         ON CONFLICT (schema_name, table_name) DO UPDATE SET time_column = EXCLUDED.time_column",
        &[&schema, &table, &spec.time_column.as_str()],
    )
    .await
    .map_err(q("registering the table's rollups"))?;
    let stored = tx
        .query(
            "SELECT name, spec, storage_name, view_name FROM strata.rollups
              WHERE schema_name = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await
        .map_err(q("reading the stored rollups"))?;
    let mut out = ApplyOutcome {
        table: spec.name.display_unquoted(),
        ..Default::default()
    };
    for row in &stored {
        let name: String = row.get(0);
        let wanted = layouts.iter().find(|l| l.spec.name.as_str() == name);
        let same = wanted.is_some_and(|l| {
            serde_json::to_value(&l.spec).ok() == Some(row.get::<_, Value>(1))
                && row.get::<_, String>(2) == l.storage.name.as_str()
        });
        if same {
            out.unchanged.push(name);
            continue;
        }
        let view = spec
            .name
            .sibling(&row.get::<_, String>(3))
            .map_err(DbError::from)?;
        let storage = crate::db::QualifiedName::new("strata", &row.get::<_, String>(2))
            .map_err(DbError::from)?;
        let live =
            crate::db::QualifiedName::new("strata", &format!("{}_live", row.get::<_, String>(2)))
                .map_err(DbError::from)?;
        let range =
            crate::db::QualifiedName::new("strata", &format!("{}_range", row.get::<_, String>(2)))
                .map_err(DbError::from)?;
        tx.batch_execute(&format!(
            "DROP FUNCTION IF EXISTS {range}(timestamptz, timestamptz); DROP VIEW IF EXISTS {view};
             DROP FUNCTION IF EXISTS {live}(); DROP TABLE IF EXISTS {storage}"
        ))
        .await
        .map_err(q("dropping a rollup"))?;
        tx.execute(
            "DELETE FROM strata.rollups WHERE schema_name = $1 AND table_name = $2 AND name = $3",
            &[&schema, &table, &name],
        )
        .await
        .map_err(q("forgetting a rollup"))?;
        if wanted.is_none() {
            out.dropped.push(name);
        }
    }
    for l in layouts {
        if out.unchanged.iter().any(|u| u == l.spec.name.as_str()) {
            // Rollups installed before the range function existed get it.
            let range = view::create_range(l).map_err(DbError::from)?;
            tx.batch_execute(&range)
                .await
                .map_err(q("creating a rollup's range function"))?;
            continue;
        }
        create(&tx, l).await?;
        out.created.push(l.spec.name.as_str().to_string());
    }
    if layouts.is_empty() {
        // Nobody would consume the log: stop writing it.
        tx.execute(
            "UPDATE strata.rollup_tables SET threshold = '-infinity' WHERE schema_name = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await
        .map_err(q("lowering the invalidation threshold"))?;
        tx.execute(
            "DELETE FROM strata.rollup_invalidations WHERE schema_name = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await
        .map_err(q("clearing the invalidation log"))?;
    }
    tx.commit().await.map_err(q("committing the rollups"))?;
    Ok(out)
}

async fn create(tx: &tokio_postgres::Transaction<'_>, l: &Layout) -> Result<(), OpError> {
    let ctx = format!("creating rollup {}", l.spec.name.as_str());
    let key = if l.spec.dimensions.is_empty() {
        "bucket".to_string()
    } else {
        format!("bucket, {}", l.dims_bare())
    };
    let live = view::live_function(l).map_err(DbError::from)?;
    let range = view::range_function(l).map_err(DbError::from)?;
    tx.batch_execute(&format!(
        "DROP FUNCTION IF EXISTS {range}(timestamptz, timestamptz); DROP VIEW IF EXISTS {view};
         DROP FUNCTION IF EXISTS {live}(); DROP TABLE IF EXISTS {storage};
         CREATE TABLE {storage} AS {agg} WITH NO DATA;
         CREATE UNIQUE INDEX ON {storage} ({key}) NULLS NOT DISTINCT;",
        view = l.view,
        storage = l.storage,
        agg = l.aggregate(&l.base(), "false"),
    ))
    .await
    .map_err(DbError::query(ctx.clone()))?;
    let spec = serde_json::to_value(&l.spec).expect("rollup spec serializes");
    tx.execute(
        "INSERT INTO strata.rollups (schema_name, table_name, name, spec, storage_name, view_name)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &l.table.schema.as_str(),
            &l.table.name.as_str(),
            &l.spec.name.as_str(),
            &spec,
            &l.storage.name.as_str(),
            &l.view.name.as_str(),
        ],
    )
    .await
    .map_err(DbError::query(ctx.clone()))?;
    let live_sql = view::create_live(l).map_err(DbError::from)?;
    let view_sql = view::create(l).map_err(DbError::from)?;
    let range_sql = view::create_range(l).map_err(DbError::from)?;
    tx.batch_execute(&format!("{live_sql}; {view_sql}; {range_sql}"))
        .await
        .map_err(DbError::query(ctx))?;
    Ok(())
}
