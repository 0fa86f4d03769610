//! Online conversion of a plain table into the partitioned layout, while the
//! application keeps writing: start (new table + mirror trigger) → backfill
//! (keyset batches, resumable) → indexes (online) → verify (per-range counts
//! and hashes) → cutover (one short locked transaction of renames) →
//! rollback possible until cleanup.
//!
//! Every phase's state is a row of `strata.conversions`, committed with the
//! work it describes, so a crash or `kill -9` at any point resumes exactly.
//! Each phase is one public async function with a typed result and
//! [`ConvertError`], so a runner can wrap it as one operation.

mod backfill;
mod cleanup;
mod cutover;
mod indexes;
mod preconditions;
mod rollback;
mod session;
mod sql;
mod start;
mod state;
mod status;
mod verify;

pub use backfill::{backfill, batch_json, BackfillOptions, BatchReport};
pub use cleanup::cleanup;
pub use cutover::cutover;
pub use indexes::build_indexes;
pub use preconditions::{check, Problems};
pub use rollback::rollback;
pub use session::bound as bound_session;
pub use start::start;
pub use state::{active, latest, Conversion, Names, Phase, BUCKET_ROWS};
pub use status::{resume, rows_left, status, Status};
pub use verify::{verify, RangeCheck, VERIFY_RANGE};

use crate::db::DbError;
use crate::partition::PartitionError;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("{table} cannot be converted:\n{problems}")]
    Precondition { table: String, problems: String },
    #[error("strata's metadata schema is not installed in this database (no strata.conversions); run `strata migrate` first")]
    NotMigrated,
    #[error("no conversion of {0} is in progress; start one with `strata convert start`")]
    NotStarted(String),
    #[error("a conversion of {0} is already in progress (phase {1}); use `strata convert resume` or `status`")]
    AlreadyStarted(String, Phase),
    #[error("conversion of {table} is in phase {phase}; {what} needs {needs}")]
    WrongPhase {
        table: String,
        phase: Phase,
        what: &'static str,
        needs: &'static str,
    },
    #[error("another strata process is working on the conversion of {0}; wait for it to finish, or stop it")]
    Busy(String),
    #[error("{what} is blocked by a lock another session holds: {blockers}; let that session finish (or end it), then run the command again")]
    Locked { what: String, blockers: String },
    #[error("creating the partitions of {table} failed (not a lock timeout): {detail}; fix the cause, then run `strata convert start` again")]
    PartitionsFailed { table: String, detail: String },
    #[error("building indexes of {table} failed at `{step}` (not a lock timeout): {detail}; fix the cause, then run `strata convert resume`")]
    IndexBuildFailed {
        table: String,
        step: String,
        detail: String,
    },
    #[error("{0} already exists and was not made by this conversion; strata will not touch it: rename or drop it yourself, then run `strata convert start` again")]
    NewTableExists(String),
    #[error("the conversion record of {table} is unreadable ({detail}); refusing to {what} without it: inspect strata.conversions (timings->'renames') and fix the indexes by hand")]
    UnreadableRecord {
        table: String,
        what: &'static str,
        detail: String,
    },
    #[error(
        "strata.conversions holds phase {0:?}, which this strata does not know; upgrade strata"
    )]
    UnknownPhase(String),
    #[error("verification failed: {0}")]
    Mismatch(String),
    #[error("cleanup drops {0} for good; pass --yes to confirm")]
    Unconfirmed(String),
    #[error("the conversion of {table} stopped at phase {phase}, not cut over; {hint}")]
    Stopped {
        table: String,
        phase: Phase,
        hint: &'static str,
    },
}

impl From<crate::db::IdentError> for ConvertError {
    fn from(e: crate::db::IdentError) -> Self {
        ConvertError::Partition(e.into())
    }
}

impl ConvertError {
    /// Whether this is a real lock timeout (SQLSTATE 55P03, possibly after
    /// the lock policy's retries): the only kind worth retrying later as is.
    pub fn is_lock_timeout(&self) -> bool {
        match self {
            ConvertError::Locked { .. } => true,
            ConvertError::Db(e) | ConvertError::Partition(PartitionError::Db(e)) => {
                session::is_lock_error(e)
            }
            _ => false,
        }
    }
}
