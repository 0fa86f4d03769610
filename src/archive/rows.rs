//! An archived period's rows, read back from the store for another check
//! than the archive's own: `seal verify` recomputes a sealed month's Merkle
//! root from its files once the partition is gone.

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio_postgres::Client;

use super::columns::Column;
use super::manifest::{self, sha256_hex};
use super::run::table_dir;
use super::store::Store;
use super::{catalog, ArchiveError};
use crate::config::TableSpec;

/// Where the rows were read from, for the report.
#[derive(Clone, Debug)]
pub struct Source {
    pub manifest_key: String,
    pub store_url: String,
    pub files: usize,
}

/// Calls `visit` with every record batch of the period's files (its error
/// ends the reading), after
/// checking each file's SHA-256 against the manifest; `None` when the
/// period was never archived. The store is the one the period was archived
/// to (`strata.archives.store_url`), whatever `archive_to` says now.
pub async fn visit_period(
    client: &Client,
    spec: &TableSpec,
    period_start: DateTime<Utc>,
    visit: &mut BatchVisitor<'_>,
) -> Result<Option<Source>, ArchiveError> {
    let records = catalog::records(client, spec).await?;
    let Some(r) = records.iter().find(|r| r.period_start == period_start) else {
        return Ok(None);
    };
    let store = Store::open(&r.store_url)?;
    let dir = table_dir(spec);
    let key = manifest::manifest_key(&dir, &r.period);
    let m = manifest::load(&store, &dir, &r.period)
        .await?
        .ok_or_else(|| ArchiveError::Mismatch(format!("{key} is missing from the store")))?;
    visit_files(&store, &m, visit).await?;
    Ok(Some(Source {
        manifest_key: key,
        store_url: r.store_url.clone(),
        files: m.files.len(),
    }))
}

/// Called with each decoded batch and the manifest's columns.
pub type BatchVisitor<'a> =
    dyn FnMut(&RecordBatch, &[Column]) -> Result<(), ArchiveError> + Send + 'a;

/// Every record batch of a manifest's files, in order, each file's SHA-256
/// checked against the manifest before it is decoded.
pub async fn visit_files(
    store: &Store,
    m: &manifest::Manifest,
    visit: &mut BatchVisitor<'_>,
) -> Result<(), ArchiveError> {
    for f in &m.files {
        let data = store.get(&f.key).await?.ok_or_else(|| {
            ArchiveError::Mismatch(format!("{} is missing from the store", f.key))
        })?;
        let sha = sha256_hex(&data);
        if sha != f.sha256 {
            return Err(ArchiveError::Mismatch(format!(
                "{}: SHA-256 {sha} but the manifest says {}",
                f.key, f.sha256
            )));
        }
        let bad = |e: parquet::errors::ParquetError| {
            ArchiveError::Mismatch(format!("{} cannot be decoded: {e}", f.key))
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(data)
            .map_err(bad)?
            .with_batch_size(16 * 1024)
            .build()
            .map_err(bad)?;
        for batch in reader {
            let batch = batch
                .map_err(|e| ArchiveError::Mismatch(format!("{} cannot be decoded: {e}", f.key)))?;
            visit(&batch, &m.schema)?;
        }
    }
    Ok(())
}
