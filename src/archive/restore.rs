//! `strata archive restore PERIOD`: the period's partition again, from its
//! files: a staging table (not attached, so no query sees it half-loaded),
//! COPY in batches, count + content hash checked against the manifest, a
//! CHECK constraint so ATTACH does not scan under its lock, then ATTACH
//! (lock_timeout + retry), which builds the table's indexes on it while
//! holding only SHARE UPDATE EXCLUSIVE on the parent: writers go on.

use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::SinkExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::columns::{self, Column, Kind};
use super::export::parquet_err;
use super::run::{owned, table_dir};
use super::{catalog, digest, manifest, ArchiveError};
use crate::config::{Config, Interval, TableSpec};
use crate::db::{literal, DbError, QualifiedName, Statement};
use crate::ops::{Progress, ProgressFn};
use crate::partition::{self, period};

/// Marks a staging table as strata's, so an interrupted restore's leftover
/// is dropped and nobody else's table ever is.
const STAGING_COMMENT: &str = "strata archive restore: staging";
/// Rows per COPY statement.
const COPY_ROWS: usize = 64 * 1024;

/// `2025-03` (monthly tables) or `2025-03-01` (daily, weekly): the period's
/// start, which must be a period boundary of the table.
pub fn parse_period(spec: &TableSpec, s: &str) -> Result<DateTime<Utc>, ArchiveError> {
    let bad = |why: &str| {
        ArchiveError::Usage(format!(
            "{s:?} is not a period of {}: {why}",
            spec.name.display_unquoted()
        ))
    };
    let date = match spec.interval {
        Interval::Month => NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
            .map_err(|_| bad("expected YYYY-MM, e.g. 2025-03"))?,
        _ => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| bad("expected YYYY-MM-DD, the period's first day"))?,
    };
    let start = period::midnight(date);
    if !period::is_boundary(spec.interval, start) {
        return Err(bad("not the start of a period"));
    }
    Ok(start)
}

pub async fn run(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    period_label: &str,
    progress: ProgressFn<'_>,
) -> Result<Value, ArchiveError> {
    let start = parse_period(spec, period_label)?;
    let store = super::store_of(spec)?;
    let dir = table_dir(spec);
    let label = super::run::label(spec.interval, start);
    let snap = partition::snapshot(client, spec)
        .await
        .map_err(|e| ArchiveError::Failed(e.to_string()))?;
    let name = spec
        .name
        .sibling(&period::render_name(
            &spec.name_template,
            spec.name.name.as_str(),
            start,
        ))
        .map_err(|e| ArchiveError::Failed(e.to_string()))?;
    if owned(spec, &snap.partitions)
        .iter()
        .any(|p| p.from == start)
    {
        return Ok(json!({
            "table": spec.name.display_unquoted(),
            "period": label,
            "partition": name.display_unquoted(),
            "already_restored": true,
        }));
    }
    let m = manifest::load(&store, &dir, &label).await?.ok_or_else(|| {
        ArchiveError::Precondition(format!(
            "period {label} of {} has no archive in {}",
            spec.name.display_unquoted(),
            store.url
        ))
    })?;
    if exists(client, &name).await? {
        return Err(ArchiveError::Precondition(format!(
            "{} exists but is not a partition of {}; move it away first",
            name.display_unquoted(),
            spec.name.display_unquoted()
        )));
    }
    let started = Instant::now();
    let staging = spec
        .name
        .sibling(&format!("{}_restore", name.name.as_str()))
        .map_err(|e| ArchiveError::Failed(e.to_string()))?;
    prepare_staging(client, spec, &staging).await?;
    let cols = columns::of(client, &staging).await?;
    if cols != m.schema {
        return Err(ArchiveError::Precondition(format!(
            "the columns of {} differ from the archive's schema ({}); restore by hand",
            spec.name.display_unquoted(),
            manifest::manifest_key(&dir, &label)
        )));
    }
    let mut loaded = 0u64;
    for f in &m.files {
        let data = store.get(&f.key).await?.ok_or_else(|| {
            ArchiveError::Mismatch(format!("{} is missing from the store", f.key))
        })?;
        if manifest::sha256_hex(&data) != f.sha256 {
            return Err(ArchiveError::Mismatch(format!(
                "{}: SHA-256 differs from the manifest",
                f.key
            )));
        }
        loaded += copy_file(client, &staging, &cols, &f.key, data, m.row_count, progress).await?;
    }
    check(client, &staging, &cols, &m).await?;
    let copied = started.elapsed();
    attach(client, config, spec, &staging, &name, &m).await?;
    catalog::set_state(client, spec, start, "restored").await?;
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    progress(&Progress::Line {
        message: format!(
            "restored {} into {}: {loaded} rows, count and content hash match the manifest ({:.0} rows/s with indexes)",
            label,
            name.display_unquoted(),
            loaded as f64 / secs
        ),
    });
    Ok(json!({
        "table": spec.name.display_unquoted(),
        "period": label,
        "partition": name.display_unquoted(),
        "already_restored": false,
        "rows": loaded,
        "content_hash": m.content_hash.value,
        "copy_millis": copied.as_millis() as u64,
        "millis": started.elapsed().as_millis() as u64,
    }))
}

async fn exists(client: &Client, t: &QualifiedName) -> Result<bool, DbError> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t.to_string()])
        .await
        .map_err(DbError::query("looking for the partition"))?
        .get(0))
}

/// A fresh staging table shaped like the parent (defaults, generated
/// columns, NOT NULL); an interrupted restore's own leftover is dropped.
async fn prepare_staging(
    client: &Client,
    spec: &TableSpec,
    staging: &QualifiedName,
) -> Result<(), ArchiveError> {
    if exists(client, staging).await? {
        let comment: Option<String> = client
            .query_one(
                "SELECT obj_description($1::text::regclass, 'pg_class')",
                &[&staging.to_string()],
            )
            .await
            .map_err(DbError::query("reading the staging table's comment"))?
            .get(0);
        if comment.as_deref() != Some(STAGING_COMMENT) {
            return Err(ArchiveError::Precondition(format!(
                "{} exists and is not strata's restore staging table",
                staging.display_unquoted()
            )));
        }
        client
            .batch_execute(&format!("DROP TABLE {staging}"))
            .await
            .map_err(DbError::query(
                "dropping an interrupted restore's staging table",
            ))?;
    }
    client
        .batch_execute(&format!(
            "CREATE TABLE {staging} (LIKE {} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE) WITH (fillfactor = 100);
             COMMENT ON TABLE {staging} IS {}",
            spec.name,
            literal(STAGING_COMMENT)
        ))
        .await
        .map_err(DbError::query("creating the restore staging table"))?;
    Ok(())
}

async fn copy_file(
    client: &Client,
    staging: &QualifiedName,
    cols: &[Column],
    key: &str,
    data: Bytes,
    total: i64,
    progress: ProgressFn<'_>,
) -> Result<u64, ArchiveError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(parquet_err(key))?
        .with_batch_size(COPY_ROWS)
        .build()
        .map_err(parquet_err(key))?;
    let started = Instant::now();
    let mut done = 0u64;
    // One COPY per file, fed batch by batch: the server parses and stores
    // one batch while the next is decoded and encoded here. The staging
    // table is no one else's, so one long statement holds nobody up.
    let sql = format!("COPY {staging} ({}) FROM STDIN", columns::list(cols));
    let sink = client
        .copy_in::<_, Bytes>(&sql)
        .await
        .map_err(DbError::query("copying rows into the staging table"))?;
    futures_util::pin_mut!(sink);
    let mut last_line = Instant::now();
    for batch in reader {
        let batch = batch.map_err(parquet_err(key))?;
        let buf = encode(&batch, cols);
        sink.send(buf.freeze())
            .await
            .map_err(DbError::query("copying rows into the staging table"))?;
        done += batch.num_rows() as u64;
        if last_line.elapsed().as_secs() >= 2 {
            last_line = Instant::now();
            progress(&Progress::Line {
                message: format!(
                    "  {done} of {total} rows copied ({:.0} rows/s)",
                    done as f64 / started.elapsed().as_secs_f64().max(1e-6)
                ),
            });
        }
    }
    sink.finish()
        .await
        .map_err(DbError::query("copying rows into the staging table"))?;
    progress(&Progress::Line {
        message: format!(
            "  {done} of {total} rows copied ({:.0} rows/s)",
            done as f64 / started.elapsed().as_secs_f64().max(1e-6)
        ),
    });
    Ok(done)
}

/// COPY text format: tab-separated, `\N` for NULL, backslash escapes.
fn encode(batch: &RecordBatch, cols: &[Column]) -> BytesMut {
    // BytesMut implements fmt::Write: numbers are written in place.
    let mut buf = BytesMut::with_capacity(batch.num_rows() * 256);
    for row in 0..batch.num_rows() {
        for (i, c) in cols.iter().enumerate() {
            if i > 0 {
                buf.put_u8(b'\t');
            }
            let a = batch.column(i);
            if a.is_null(row) {
                buf.put_slice(b"\\N");
                continue;
            }
            match c.kind {
                Kind::Int64 => {
                    let v = a.as_primitive::<Int64Type>().value(row);
                    let _ = write!(buf, "{v}");
                }
                Kind::Timestamp => {
                    let v = a.as_primitive::<TimestampMicrosecondType>().value(row);
                    let _ = write!(buf, "{}", columns::PgTime(v));
                }
                Kind::Json | Kind::Text => {
                    for b in a.as_string::<i32>().value(row).bytes() {
                        match b {
                            b'\\' => buf.put_slice(b"\\\\"),
                            b'\t' => buf.put_slice(b"\\t"),
                            b'\n' => buf.put_slice(b"\\n"),
                            b'\r' => buf.put_slice(b"\\r"),
                            b => buf.put_u8(b),
                        }
                    }
                }
            }
        }
        buf.put_u8(b'\n');
    }
    buf
}

/// Count and content hash of the staging table against the manifest.
async fn check(
    client: &Client,
    staging: &QualifiedName,
    cols: &[Column],
    m: &manifest::Manifest,
) -> Result<(), ArchiveError> {
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL statement_timeout = '6h'; {}",
            digest::HASH_SETTINGS
        ))
        .await
        .map_err(DbError::query("checking the restored rows"))?;
    let row = client
        .query_one(
            &format!(
                "SELECT count(*)::int8, {} FROM {staging}",
                digest::content_sql(cols)
            ),
            &[],
        )
        .await;
    client.batch_execute("COMMIT").await.ok();
    let row = row.map_err(DbError::query("checking the restored rows"))?;
    let (rows, hash): (i64, String) = (row.get(0), row.get(1));
    if rows != m.row_count || hash != m.content_hash.value {
        return Err(ArchiveError::Mismatch(format!(
            "{}: restored {rows} rows with content hash {hash}; the manifest says {} rows, {}",
            staging.display_unquoted(),
            m.row_count,
            m.content_hash.value
        )));
    }
    Ok(())
}

/// Rename, CHECK constraint (validated here, on a table nobody uses, so
/// ATTACH skips its scan), ATTACH with lock_timeout and retries, then the
/// constraint goes (the partition bound says the same).
async fn attach(
    client: &Client,
    config: &Config,
    spec: &TableSpec,
    staging: &QualifiedName,
    name: &QualifiedName,
    m: &manifest::Manifest,
) -> Result<(), ArchiveError> {
    let (from, to) = (
        literal(&period::sql_timestamp(m.period_start)),
        literal(&period::sql_timestamp(m.period_end)),
    );
    let col = &spec.time_column;
    let check_name = crate::db::Ident::new(format!("{}_bounds", name.name.as_str()))
        .map_err(|e| ArchiveError::Failed(e.to_string()))?;
    client
        .batch_execute(&format!(
            "ALTER TABLE {staging} RENAME TO {}; COMMENT ON TABLE {name} IS NULL;
             ALTER TABLE {name} ADD CONSTRAINT {check_name}
               CHECK ({col} IS NOT NULL AND {col} >= {from}::timestamptz AND {col} < {to}::timestamptz)",
            name.name
        ))
        .await
        .map_err(DbError::query("preparing the restored partition"))?;
    let policy = &config.maintenance.lock;
    let attach_sql: Vec<Statement> = vec![
        Statement::Begin,
        policy.set_sql(true).into(),
        // The index builds run inside ATTACH; bounded, but not by a
        // catalog read's limit.
        "SET LOCAL statement_timeout = '6h'".to_string().into(),
        format!(
            "ALTER TABLE {} ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})",
            spec.name
        )
        .into(),
        Statement::Commit,
    ];
    policy
        .run(&format!("attach {}", name.display_unquoted()), || {
            crate::db::run_statements(client, &attach_sql)
        })
        .await?;
    let drop_check: Vec<Statement> = vec![
        Statement::Begin,
        policy.set_sql(true).into(),
        format!("ALTER TABLE {name} DROP CONSTRAINT {check_name}").into(),
        Statement::Commit,
    ];
    policy
        .run("dropping the restore's CHECK constraint", || {
            crate::db::run_statements(client, &drop_check)
        })
        .await?;
    Ok(())
}
