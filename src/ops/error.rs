//! Every failure of an operation, mapped once: to an exit code for the CLI
//! and to an HTTP status for the API.

use crate::config::ConfigError;
use crate::db::DbError;
use crate::jobs::JobError;
use crate::maintenance::MaintenanceError;
use crate::partition::PartitionError;

use super::spec::SpecDiff;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Another session runs maintenance of the same table.
    #[error(transparent)]
    Busy(JobError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}", SpecDiff::message(.0))]
    SpecDiffers(Vec<SpecDiff>),
    /// The operation refused to do something unsafe, or something it needs
    /// does not hold.
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Db(DbError),
    #[error(transparent)]
    Partition(PartitionError),
    #[error(transparent)]
    Maintenance(MaintenanceError),
    #[error(transparent)]
    Job(JobError),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Seal(crate::seal::SealError),
}

impl OpError {
    /// 0 done, 1 failed, 2 usage or configuration, 3 precondition not met
    /// (another run holds the lock, a check refused).
    pub fn exit_code(&self) -> i32 {
        match self {
            OpError::Config(_) | OpError::SpecDiffers(_) | OpError::Usage(_) => 2,
            OpError::Maintenance(MaintenanceError::UnknownTarget { .. }) => 2,
            OpError::Partition(PartitionError::PartmanNow) => 2,
            OpError::Busy(_) | OpError::Precondition(_) => 3,
            OpError::Seal(e) => e.exit_code(),
            OpError::Partition(
                PartitionError::AlreadyRunning(_)
                | PartitionError::NotFound(_)
                | PartitionError::NotPartitioned(_)
                | PartitionError::NameTaken(_)
                | PartitionError::BadKey { .. }
                | PartitionError::PartmanMissing
                | PartitionError::PartmanVersion(_)
                | PartitionError::PartmanExisting { .. }
                | PartitionError::PartmanDefaultRows { .. },
            ) => 3,
            _ => 1,
        }
    }

    /// The HTTP status the API answers with.
    pub fn http_status(&self) -> u16 {
        match self.exit_code() {
            2 => 400,
            3 => 409,
            _ if self.is_lock_wait() => 503,
            _ => 500,
        }
    }

    /// A bounded lock wait ran out (the operation can be retried later).
    pub fn is_lock_wait(&self) -> bool {
        let db = match self {
            OpError::Db(e) => Some(e),
            OpError::Partition(PartitionError::Db(e)) => Some(e),
            OpError::Maintenance(MaintenanceError::Db(e)) => Some(e),
            OpError::Maintenance(MaintenanceError::Partition(PartitionError::Db(e))) => Some(e),
            _ => None,
        };
        db.is_some_and(|e| e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE))
    }
}

impl From<JobError> for OpError {
    fn from(e: JobError) -> Self {
        match e {
            e @ JobError::AlreadyRunning { .. } => OpError::Busy(e),
            e => OpError::Job(e),
        }
    }
}

impl From<DbError> for OpError {
    fn from(e: DbError) -> Self {
        OpError::Db(e)
    }
}

impl From<PartitionError> for OpError {
    fn from(e: PartitionError) -> Self {
        OpError::Partition(e)
    }
}

impl From<MaintenanceError> for OpError {
    fn from(e: MaintenanceError) -> Self {
        match e {
            MaintenanceError::Partition(p) => OpError::Partition(p),
            MaintenanceError::Db(d) => OpError::Db(d),
            e => OpError::Maintenance(e),
        }
    }
}

impl From<crate::seal::SealError> for OpError {
    fn from(e: crate::seal::SealError) -> Self {
        match e {
            crate::seal::SealError::Db(d) => OpError::Db(d),
            crate::seal::SealError::Partition(p) => OpError::Partition(p),
            e => OpError::Seal(e),
        }
    }
}
