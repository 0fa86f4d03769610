//! Invalidation by strata's own partition DDL, which fires no DML trigger.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::db::{DbError, QualifiedName};

/// Marks `[from, to)` of `table`'s time column as changed, so every rollup
/// of the table reads that range live until a refresh rematerializes it.
///
/// Call it before (or in the same transaction as) any partition DDL that
/// changes which rows the table holds: DETACH, DROP, ATTACH of a partition,
/// an archive restore. Called before the DDL, the view reads the range live
/// from the rows still there, then from what is left: exact throughout,
/// and a DDL that then fails costs one recomputation. `None` bounds mean
/// open-ended. A table without rollups (or a database without migration 6)
/// is left alone. Returns whether a range was recorded.
pub async fn invalidate_range(
    client: &impl GenericClient,
    table: &QualifiedName,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<bool, DbError> {
    let present: bool = client
        .query_one(
            "SELECT to_regclass('strata.rollup_invalidations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(DbError::query("looking for strata.rollup_invalidations"))?
        .get(0);
    if !present {
        return Ok(false);
    }
    let n = client
        .execute(
            "INSERT INTO strata.rollup_invalidations (schema_name, table_name, lo, hi)
             SELECT t.schema_name, t.table_name,
                    coalesce($3::timestamptz, '-infinity'), coalesce($4::timestamptz, 'infinity')
               FROM strata.rollup_tables t
              WHERE t.schema_name = $1 AND t.table_name = $2",
            &[&table.schema.as_str(), &table.name.as_str(), &from, &to],
        )
        .await
        .map_err(DbError::query(format!(
            "recording a rollup invalidation of {}",
            table.display_unquoted()
        )))?;
    Ok(n > 0)
}
