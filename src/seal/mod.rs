//! Sealed months: tamper evidence for closed periods. A seal is an RFC 6962
//! Merkle root over every row of a period (canonical encoding in
//! `encoding.rs`, docs/seal-format.md), chained to the previous period's seal
//! hash, optionally signed with Ed25519 and appended to an anchor file; the
//! partition becomes read-only. `verify` recomputes everything and names the
//! rows that differ.

mod anchor;
mod archived;
mod chunks;
pub mod encoding;
pub mod merkle;
mod metrics;
mod proof;
pub mod record;
mod rows;
mod run;
pub mod sign;
mod status;
mod store;
mod verify;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use metrics::render_metrics;
pub use proof::{export, prove};
pub use run::{compute, run, Computed, SealOutcome};
pub use status::{health_facts, last_verify, status, HealthFacts, LastVerify, SealStatus};
pub use store::{list, StoredSeal};
pub use verify::{verify, VerifyReport};

use crate::db::DbError;
use crate::partition::PartitionError;

/// What a seal operation does (one [`crate::ops::Op::Seal`]).
#[derive(Clone, Debug)]
pub enum SealOp {
    /// Seal every closed, unsealed period (real clock only).
    Run {
        table: Option<String>,
        dry_run: bool,
    },
    /// Recompute and check seals, the chain, signatures and the anchor.
    Verify {
        table: Option<String>,
        period: Option<String>,
    },
    /// The receipt of one period.
    Export {
        table: Option<String>,
        period: String,
    },
    /// An inclusion proof of one row.
    Prove {
        table: Option<String>,
        id: i64,
        created_at: DateTime<Utc>,
    },
}

impl SealOp {
    pub fn table(&self) -> &Option<String> {
        match self {
            SealOp::Run { table, .. }
            | SealOp::Verify { table, .. }
            | SealOp::Export { table, .. }
            | SealOp::Prove { table, .. } => table,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SealOp::Run { .. } => "seal_run",
            SealOp::Verify { .. } => "seal_verify",
            SealOp::Export { .. } => "seal_export",
            SealOp::Prove { .. } => "seal_prove",
        }
    }

    pub const KINDS: &'static [&'static str] =
        &["seal_run", "seal_verify", "seal_export", "seal_prove"];
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("seal key file {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("seal anchor {path}: {why}")]
    Anchor { path: PathBuf, why: String },
    #[error("{0}")]
    Period(String),
    #[error("{0}")]
    NotSealed(String),
    #[error("{0}")]
    Precondition(String),
    #[error("unexpected data while reading rows: {0}")]
    Format(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
}

impl SealError {
    /// 2 for bad input (a key file, a period), 3 for a precondition.
    pub fn exit_code(&self) -> i32 {
        match self {
            SealError::Key { .. } | SealError::Period(_) => 2,
            SealError::NotSealed(_) | SealError::Precondition(_) => 3,
            _ => 1,
        }
    }
}

impl From<crate::db::IdentError> for SealError {
    fn from(e: crate::db::IdentError) -> Self {
        SealError::Db(e.into())
    }
}

/// `2025-03` or `2025-03-01` (a period's first day, UTC).
pub fn parse_period(s: &str) -> Result<DateTime<Utc>, SealError> {
    let day = if s.len() == 7 {
        format!("{s}-01")
    } else {
        s.to_string()
    };
    chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d")
        .map(crate::partition::period::midnight)
        .map_err(|_| {
            SealError::Period(format!(
                "{s:?} is not a period; expected its first day as YYYY-MM (a month) or YYYY-MM-DD"
            ))
        })
}

/// A period as shown: `2025-03-01T00:00:00Z`.
pub fn show_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[derive(Clone, Debug, Serialize)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Runs one seal operation for the runtime (`Running::execute`).
pub async fn execute(
    client: &mut tokio_postgres::Client,
    config: &crate::config::Config,
    spec: &crate::config::TableSpec,
    op: &SealOp,
    progress: crate::ops::ProgressFn<'_>,
) -> Result<serde_json::Value, crate::ops::OpError> {
    // Hashing a month takes longer than a catalog read: each scan runs
    // with its own bounded statement_timeout.
    client
        .batch_execute("SET statement_timeout = '1h'")
        .await
        .map_err(DbError::query("setting the statement limit"))?;
    let value = match op {
        SealOp::Run { dry_run, .. } => {
            serde_json::to_value(run(client, config, spec, *dry_run, progress).await?)
        }
        SealOp::Verify { period, .. } => {
            let p = period.as_deref().map(parse_period).transpose()?;
            serde_json::to_value(verify(client, config, spec, p, progress).await?)
        }
        SealOp::Export { period, .. } => Ok(export(client, config, spec, period).await?),
        SealOp::Prove { id, created_at, .. } => {
            let mut quiet = |_: u64| {};
            Ok(prove(client, config, spec, *id, *created_at, &mut quiet).await?)
        }
    };
    Ok(value.expect("outcomes serialize"))
}
