//! The partition's columns as the archive stores them: standard Parquet
//! types only, so any engine reads the files without strata.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::db::{DbError, Ident, QualifiedName};

/// How one column is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// smallint, integer, bigint: INT64.
    Int64,
    /// timestamptz: INT64 TIMESTAMP(MICROS, UTC).
    Timestamp,
    /// json, jsonb: UTF8 with the JSON logical type.
    Json,
    /// Everything else (text, varchar, inet, ...) as its PostgreSQL text form.
    Text,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub postgres_type: String,
    pub kind: Kind,
}

impl Column {
    fn ident(&self) -> Ident {
        Ident::new(self.name.clone()).expect("a catalog name")
    }

    /// What the export selects.
    pub fn select_expr(&self) -> String {
        let c = self.ident();
        match self.kind {
            Kind::Int64 => format!("{c}::int8"),
            Kind::Timestamp => format!("{c}"),
            Kind::Json | Kind::Text => format!("{c}::text"),
        }
    }

    /// The column's text in the row digest (see `digest.rs`).
    pub fn digest_expr(&self) -> String {
        let c = self.ident();
        let text = match self.kind {
            Kind::Int64 => format!("{c}::int8::text"),
            Kind::Timestamp => format!("((extract(epoch FROM {c}) * 1000000)::int8)::text"),
            Kind::Json | Kind::Text => format!("{c}::text"),
        };
        format!("coalesce('v' || {text}, 'n')")
    }

    pub fn field(&self) -> Field {
        match self.kind {
            Kind::Int64 => Field::new(&self.name, DataType::Int64, true),
            Kind::Timestamp => Field::new(
                &self.name,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Kind::Json => Field::new(&self.name, DataType::Utf8, true)
                .with_extension_type(arrow_schema::extension::Json::default()),
            Kind::Text => Field::new(&self.name, DataType::Utf8, true),
        }
    }
}

pub fn schema(cols: &[Column]) -> Arc<Schema> {
    Arc::new(Schema::new(
        cols.iter().map(Column::field).collect::<Vec<_>>(),
    ))
}

/// The stored (not generated) columns of `table`, in order: what a restore
/// inserts; generated columns are computed again.
pub async fn of(client: &Client, table: &QualifiedName) -> Result<Vec<Column>, DbError> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typname::text
               FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attgenerated = ''
              ORDER BY a.attnum",
            &[&table.to_string()],
        )
        .await
        .map_err(DbError::query("listing the partition's columns"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let typname: String = r.get(2);
            let kind = match typname.as_str() {
                "int2" | "int4" | "int8" => Kind::Int64,
                "timestamptz" => Kind::Timestamp,
                "json" | "jsonb" => Kind::Json,
                _ => Kind::Text,
            };
            Column {
                name: r.get(0),
                postgres_type: r.get(1),
                kind,
            }
        })
        .collect())
}

/// The comma-separated quoted names.
pub fn list(cols: &[Column]) -> String {
    cols.iter()
        .map(|c| c.ident().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A TIMESTAMP(MICROS, UTC) value as text PostgreSQL reads back exactly:
/// `YYYY-MM-DD HH:MM:SS.ffffff+00` (restore's COPY, `cat`'s CSV).
pub struct PgTime(pub i64);

impl std::fmt::Display for PgTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        let t = chrono::DateTime::from_timestamp_micros(self.0).unwrap_or_default();
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.timestamp_subsec_micros()
        )
    }
}
