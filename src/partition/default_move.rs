//! Moving rows out of the default partition without holding a lock for the
//! length of the copy.
//!
//! Rows are copied, not moved, in committed batches of heap blocks into a
//! staging table that already carries the parent's indexes; the rows stay
//! visible (in the default partition) throughout. One short transaction then
//! locks the default partition against writes, reconciles whatever changed
//! since the copy (by primary key and full row), deletes the range from the
//! default partition and attaches the staging table. Readers see the rows in
//! one place or the other, never neither or both. A run that stops half-way
//! leaves a staging table marked with a comment; the next run resumes it.

use tokio_postgres::Client;

use super::period::sql_timestamp;
use super::PartitionError;
use crate::config::TableSpec;
use crate::db::{literal, DbError, Ident, LockPolicy, QualifiedName};

/// Table comment that marks a staging table as strata's own.
pub const STAGING_MARK: &str = "strata staging partition";
pub(super) const BOUNDS_CHECK: &str = "strata_bounds";

#[derive(Debug, PartialEq, Eq)]
pub enum Existing {
    None,
    /// A staging table left by an interrupted move: resume it.
    Staging,
    /// Something else already has the name.
    Other,
}

pub async fn existing(client: &Client, name: &QualifiedName) -> Result<Existing, DbError> {
    let row = client
        .query_opt(
            "SELECT c.relispartition, coalesce(obj_description(c.oid, 'pg_class'), '')
               FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)",
            &[&name.to_string()],
        )
        .await
        .map_err(DbError::query("looking for a staging table"))?;
    Ok(match row {
        None => Existing::None,
        Some(r) if !r.get::<_, bool>(0) && r.get::<_, String>(1).starts_with(STAGING_MARK) => {
            Existing::Staging
        }
        Some(_) => Existing::Other,
    })
}

/// The parent's primary-key columns (empty when it has none).
pub async fn primary_key(
    client: &Client,
    table: &QualifiedName,
) -> Result<Vec<Ident>, PartitionError> {
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
              WHERE i.indrelid = to_regclass($1) AND i.indisprimary
              ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table.to_string()],
        )
        .await
        .map_err(DbError::query("reading the primary key"))?;
    rows.iter()
        .map(|r| Ok(Ident::new(r.get::<_, String>(0))?))
        .collect()
}

fn list(cols: &[Ident], prefix: &str) -> String {
    cols.iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub struct Move<'a> {
    pub spec: &'a TableSpec,
    pub name: &'a QualifiedName,
    pub default: &'a QualifiedName,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    pub columns: &'a [Ident],
    pub pk: &'a [Ident],
}

impl Move<'_> {
    fn range(&self) -> String {
        let col = &self.spec.time_column;
        format!(
            "{col} >= {} AND {col} < {}",
            literal(&sql_timestamp(self.from)),
            literal(&sql_timestamp(self.to))
        )
    }

    /// Creates the staging table: the parent's columns, constraints and
    /// indexes, the bounds CHECK, and the marker comment.
    pub fn create_staging_sql(&self, policy: &LockPolicy) -> Vec<String> {
        let (name, parent) = (self.name, &self.spec.name);
        let check = Ident::new(BOUNDS_CHECK).expect("static name");
        let mark = format!(
            "{STAGING_MARK} [{}, {})",
            sql_timestamp(self.from),
            sql_timestamp(self.to)
        );
        vec![
            "BEGIN".into(),
            policy.set_sql(true),
            format!(
                "CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS \
                 INCLUDING STORAGE INCLUDING COMMENTS INCLUDING INDEXES) WITH (fillfactor = 100)"
            ),
            format!("ALTER TABLE {name} ADD CONSTRAINT {check} CHECK ({})", self.range()),
            format!("COMMENT ON TABLE {name} IS {}", literal(&mark)),
            "COMMIT".into(),
        ]
    }

    /// Copies the rows of the range found in heap blocks `[first, last)` of
    /// the default partition (a TID range scan: no sort, no index).
    pub async fn copy_blocks(
        &self,
        client: &Client,
        first: i64,
        last: i64,
    ) -> Result<u64, DbError> {
        let cols = list(self.columns, "");
        let sql = format!(
            "INSERT INTO {name} ({cols}) SELECT {cols} FROM {default}
              WHERE ctid >= $1::text::tid AND ctid < $2::text::tid AND {range}
             ON CONFLICT DO NOTHING",
            name = self.name,
            default = self.default,
            range = self.range(),
        );
        let (a, b) = (format!("({first},0)"), format!("({last},0)"));
        client
            .execute(&sql, &[&a, &b])
            .await
            .map_err(DbError::query(format!(
                "copying rows into {}",
                self.name.display_unquoted()
            )))
    }

    /// The short final transaction.
    pub fn finish_sql(&self, policy: &LockPolicy) -> Vec<String> {
        let (name, default, parent) = (self.name, self.default, &self.spec.name);
        let cols = list(self.columns, "");
        let pk_eq = self
            .pk
            .iter()
            .map(|c| format!("d.{c} = t.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let check = Ident::new(BOUNDS_CHECK).expect("static name");
        let range = self.range();
        vec![
            "BEGIN".into(),
            policy.set_sql(true),
            // Writers wait from here to COMMIT (see hold_writers_at_parent),
            // which is why the bulk of the copy happened before this.
            super::executor::hold_writers_at_parent(parent),
            format!("LOCK TABLE {default} IN SHARE ROW EXCLUSIVE MODE"),
            // Rows deleted or changed in the default partition since they were copied.
            format!(
                "DELETE FROM {name} t WHERE NOT EXISTS (SELECT 1 FROM {default} d WHERE {pk_eq} \
                 AND ROW({dcols}) IS NOT DISTINCT FROM ROW({tcols}))",
                dcols = list(self.columns, "d."),
                tcols = list(self.columns, "t.")
            ),
            // Rows added (or changed) since.
            format!("INSERT INTO {name} ({cols}) SELECT {cols} FROM {default} WHERE {range} ON CONFLICT DO NOTHING"),
            format!("DELETE FROM {default} WHERE {range}"),
            format!(
                "ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM ({}) TO ({})",
                literal(&sql_timestamp(self.from)),
                literal(&sql_timestamp(self.to))
            ),
            format!("ALTER TABLE {name} DROP CONSTRAINT {check}"),
            format!("COMMENT ON TABLE {name} IS NULL"),
            "COMMIT".into(),
        ]
    }
}

/// Heap blocks of the default partition, and roughly how many rows a block holds.
pub async fn default_blocks(
    client: &Client,
    default: &QualifiedName,
) -> Result<(i64, f64), DbError> {
    let row = client
        .query_one(
            "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int8),
                    CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages ELSE 50 END::float8
               FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)",
            &[&default.to_string()],
        )
        .await
        .map_err(DbError::query("sizing the default partition"))?;
    Ok((row.get(0), row.get(1)))
}
