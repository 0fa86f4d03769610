//! The manifest beside a period's files: written last, it is what allows a
//! partition to be dropped. It says what the files hold and how to check it.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::columns::Column;
use super::digest::RowDigest;
use super::export::parquet_err;
use super::store::Store;
use super::ArchiveError;

pub const FORMAT: &str = "strata-archive/1";
pub const FILE_NAME: &str = "manifest.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub table: String,
    pub period: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub row_count: i64,
    /// `convert verify`'s formula over the partition when it was archived.
    pub content_hash: Hash,
    /// Computable from the files alone (see `digest.rs`).
    pub row_digest: Hash,
    pub files: Vec<FileEntry>,
    pub schema: Vec<Column>,
    pub sort: Vec<String>,
    pub strata_version: String,
    pub archived_at: DateTime<Utc>,
    /// The period's seal (`strata.seals`), if it had one.
    pub seal: Option<serde_json::Value>,
    /// What the partition took in PostgreSQL (heap; heap + indexes + TOAST).
    pub heap_bytes: i64,
    pub total_bytes: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hash {
    pub algorithm: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the archive prefix.
    pub key: String,
    pub bytes: u64,
    pub rows: i64,
    pub sha256: String,
}

pub const CONTENT_HASH_ALGORITHM: &str = "sum(hashtextextended(ROW(cols)::text, 0)::numeric)";
pub const ROW_DIGEST_ALGORITHM: &str =
    "sum(int8(sha256(concat_ws(U+001F, per column 'v'||text or 'n'))[0:8]))";

/// `table=<name>/period=<label>`.
pub fn period_dir(table: &str, period: &str) -> String {
    format!("table={table}/period={period}")
}

pub fn manifest_key(table: &str, period: &str) -> String {
    format!("{}/{FILE_NAME}", period_dir(table, period))
}

pub fn part_key(table: &str, period: &str, n: usize) -> String {
    format!("{}/part-{n:05}.parquet", period_dir(table, period))
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// What one file holds, as read back.
#[derive(Clone, Debug)]
pub struct ReadBack {
    pub rows: u64,
    pub row_digest: String,
    pub sha256: String,
}

/// Decodes a Parquet file and computes its count and row digest.
pub fn read_back(key: &str, data: Bytes, cols: &[Column]) -> Result<ReadBack, ArchiveError> {
    let sha256 = sha256_hex(&data);
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(parquet_err(key))?
        .with_batch_size(16 * 1024)
        .build()
        .map_err(parquet_err(key))?;
    let mut d = RowDigest::default();
    for batch in reader {
        let batch = batch.map_err(parquet_err(key))?;
        if batch.num_columns() != cols.len() {
            return Err(ArchiveError::Mismatch(format!(
                "{key} has {} columns, the manifest {}",
                batch.num_columns(),
                cols.len()
            )));
        }
        d.add(&batch, cols);
    }
    Ok(ReadBack {
        rows: d.rows,
        row_digest: d.value(),
        sha256,
    })
}

/// Reads a period's manifest; `None` when there is none.
pub async fn load(
    store: &Store,
    table: &str,
    period: &str,
) -> Result<Option<Manifest>, ArchiveError> {
    let key = manifest_key(table, period);
    let Some(data) = store.get(&key).await? else {
        return Ok(None);
    };
    let m: Manifest = serde_json::from_slice(&data)
        .map_err(|e| ArchiveError::Mismatch(format!("{key} cannot be read: {e}")))?;
    if m.format != FORMAT {
        return Err(ArchiveError::Mismatch(format!(
            "{key} has format {:?}, expected {FORMAT:?}",
            m.format
        )));
    }
    Ok(Some(m))
}

/// Re-reads every file of `m` from the store and checks SHA-256, count and
/// row digest; the error names the first file that differs.
pub async fn check_files(store: &Store, m: &Manifest) -> Result<u64, ArchiveError> {
    let mut total = 0u64;
    let mut digest = 0i128;
    for f in &m.files {
        let data = store.get(&f.key).await?.ok_or_else(|| {
            ArchiveError::Mismatch(format!("{} is missing from the store", f.key))
        })?;
        let rb = read_back(&f.key, data, &m.schema)?;
        if rb.sha256 != f.sha256 {
            return Err(ArchiveError::Mismatch(format!(
                "{}: SHA-256 {} but the manifest says {}",
                f.key, rb.sha256, f.sha256
            )));
        }
        if rb.rows as i64 != f.rows {
            return Err(ArchiveError::Mismatch(format!(
                "{}: {} rows but the manifest says {}",
                f.key, rb.rows, f.rows
            )));
        }
        total += rb.rows;
        digest += rb.row_digest.parse::<i128>().unwrap_or_default();
    }
    if digest.to_string() != m.row_digest.value {
        let files: Vec<&str> = m.files.iter().map(|f| f.key.as_str()).collect();
        return Err(ArchiveError::Mismatch(format!(
            "{}: row digest {digest} but the manifest says {}",
            files.join(", "),
            m.row_digest.value
        )));
    }
    if total as i64 != m.row_count {
        return Err(ArchiveError::Mismatch(format!(
            "period {}: files hold {total} rows, the manifest says {}",
            m.period, m.row_count
        )));
    }
    Ok(total)
}
