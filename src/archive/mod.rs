//! The archive tier: old partitions as Parquet files on object storage
//! (`file://` or any S3 API), verified row for row before a partition may
//! go, restorable, searchable without PostgreSQL.
//!
//! Layout in the store, under the `archive_to` prefix (Hive-style, so
//! DuckDB, Spark, Trino and Athena read it as one table):
//!
//! ```text
//! table=audit_logs/period=2025-03/part-00000.parquet
//! table=audit_logs/period=2025-03/manifest.json      written last: the proof
//! _strata_tmp/table=audit_logs/...                   uploads not yet verified
//! ```

mod attach;
mod catalog;
mod columns;
mod digest;
mod drop;
mod export;
mod list;
mod manifest;
mod restore;
mod rows;
mod run;
mod search;
mod status;
mod store;
mod verify;

pub use attach::cat;
pub use columns::{Column, Kind};
pub use rows::{visit_period, Source};

pub use list::{list, ArchiveRow};
pub use manifest::Manifest;
pub use restore::parse_period;
pub use run::RunOptions;
pub use search::{search, SearchQuery, SearchSummary};
pub use status::{status, status_of, ArchiveStatus};
pub use store::{validate_url, Store};

use serde_json::Value;
use tokio_postgres::Client;

use crate::config::{Config, TableSpec};
use crate::ops::{OpError, ProgressFn};

/// The archive operations that run as jobs (`ops::Op::Archive`).
#[derive(Clone, Debug)]
pub enum ArchiveOp {
    /// Archive every period past `archive_after`; with
    /// `retention_mode = "archive"`, drop those past retention that a
    /// verified manifest covers.
    Run(RunOptions),
    /// Re-read the files of one period (or all) and check every hash.
    Verify { period: Option<String> },
    /// Re-create one period's partition from its files and attach it.
    Restore { period: String },
    /// Make an archived period readable in place (file_fdw foreign table
    /// behind `<table>_with_archive`); `strata_path` is strata on the
    /// database host.
    Attach {
        period: String,
        strata_path: Option<String>,
    },
    /// Remove what `Attach` made.
    Detach { period: String },
}

impl ArchiveOp {
    pub fn kind(&self) -> &'static str {
        match self {
            ArchiveOp::Run(_) => "archive_run",
            ArchiveOp::Verify { .. } => "archive_verify",
            ArchiveOp::Restore { .. } => "archive_restore",
            ArchiveOp::Attach { .. } => "archive_attach",
            ArchiveOp::Detach { .. } => "archive_detach",
        }
    }
}

/// Why an archive operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Usage(String),
    /// The store could not be reached or refused a request.
    #[error("archive store {url}: {what}: {source}")]
    Store {
        url: String,
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error("archive file {key}: {message}")]
    Parquet { key: String, message: String },
    /// What was read back does not match what was archived.
    #[error("archive mismatch: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Precondition(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("{0}")]
    Failed(String),
}

impl From<ArchiveError> for OpError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Usage(m) => OpError::Usage(m),
            ArchiveError::Db(d) => OpError::Db(d),
            e @ (ArchiveError::Mismatch(_) | ArchiveError::Precondition(_)) => {
                OpError::Precondition(e.to_string())
            }
            e => OpError::Failed(e.to_string()),
        }
    }
}

/// Runs one archive operation (the job and lock are the runtime's).
pub async fn execute(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    op: &ArchiveOp,
    job: i64,
    progress: ProgressFn<'_>,
) -> Result<Value, OpError> {
    let value = match op {
        ArchiveOp::Run(o) => run::run(client, config, spec, o, job, progress).await?,
        ArchiveOp::Verify { period } => {
            verify::run(client, spec, period.as_deref(), progress).await?
        }
        ArchiveOp::Restore { period } => {
            restore::run(client, config, spec, period, progress).await?
        }
        ArchiveOp::Attach {
            period,
            strata_path,
        } => {
            attach::attach(
                client,
                config,
                spec,
                period,
                strata_path.as_deref(),
                progress,
            )
            .await?
        }
        ArchiveOp::Detach { period } => {
            attach::detach(client, config, spec, period, progress).await?
        }
    };
    Ok(value)
}

/// The store a table archives to, or a usage error naming the key.
pub fn store_of(spec: &TableSpec) -> Result<Store, ArchiveError> {
    let url = spec.archive_to.as_deref().ok_or_else(|| {
        ArchiveError::Usage(format!(
            "{} has no archive_to; set it in strata.toml (\"file:///path\" or \"s3://bucket/prefix\") and run `strata config apply`",
            spec.name.display_unquoted()
        ))
    })?;
    Store::open(url)
}
