//! strata keeps a large, append-mostly PostgreSQL table — first of all an
//! application's `audit_logs` — partitioned, indexed and maintained.
//!
//! One module per capability; data flows one way:
//! `cli` → capability modules (`cluster`, `schema`, `partition`, `load`,
//! `demo`, `health`) → `db` (connections, lock-safe retries, identifiers) → PostgreSQL.

pub mod alerts;
pub mod api;
pub mod archive;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod convert;
pub mod db;
pub mod demo;
pub mod format;
pub mod health;
pub mod index;
pub mod jobs;
pub mod load;
pub mod maintenance;
pub mod ops;
pub mod partition;
pub mod progress;
pub mod report;
pub mod rollup;
pub mod scheduler;
pub mod schema;
pub mod seal;
pub mod stats;
pub mod web;

/// Every failure a command can end with, and the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
    #[error(transparent)]
    Partition(#[from] partition::PartitionError),
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error(transparent)]
    Maintenance(#[from] maintenance::MaintenanceError),
    #[error(transparent)]
    Job(#[from] jobs::JobError),
    #[error(transparent)]
    Report(#[from] report::ReportError),
    #[error(transparent)]
    Health(#[from] health::HealthError),
    #[error(transparent)]
    Scheduler(#[from] scheduler::SchedulerError),
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
    #[error(transparent)]
    Bench(#[from] bench::BenchError),
    #[error(transparent)]
    Op(#[from] ops::OpError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Failed(String),
}

impl From<db::IdentError> for Error {
    fn from(e: db::IdentError) -> Self {
        Error::Usage(e.to_string())
    }
}

/// Exit codes: 0 done, 1 failed, 2 usage, 3 precondition not met.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PRECONDITION: i32 = 3;

impl Error {
    pub fn exit_code(&self) -> i32 {
        use partition::PartitionError as P;
        match self {
            Error::Config(_) | Error::Usage(_) | Error::Db(db::DbError::Tls(_)) => EXIT_USAGE,
            Error::Load(load::LoadError::Usage(_)) => EXIT_USAGE,
            Error::Precondition(_) => EXIT_PRECONDITION,
            Error::Op(e) => e.exit_code(),
            Error::Partition(
                P::AlreadyRunning(_)
                | P::NotFound(_)
                | P::NotPartitioned(_)
                | P::NameTaken(_)
                | P::BadKey { .. }
                | P::PartmanMissing
                | P::PartmanVersion(_)
                | P::PartmanExisting { .. }
                | P::PartmanDefaultRows { .. },
            ) => EXIT_PRECONDITION,
            Error::Partition(P::PartmanNow) => EXIT_USAGE,
            Error::Maintenance(maintenance::MaintenanceError::UnknownTarget { .. }) => EXIT_USAGE,
            Error::Maintenance(maintenance::MaintenanceError::Partition(
                P::NotFound(_) | P::NotPartitioned(_) | P::BadKey { .. },
            )) => EXIT_PRECONDITION,
            Error::Job(jobs::JobError::AlreadyRunning { .. }) => EXIT_PRECONDITION,
            Error::Bench(bench::BenchError::NotOurs(_)) => EXIT_PRECONDITION,
            Error::Bench(bench::BenchError::Usage(_)) => EXIT_USAGE,
            Error::Job(jobs::JobError::NotFound(_)) => EXIT_USAGE,
            Error::Scheduler(scheduler::SchedulerError::UnknownJob { .. }) => EXIT_USAGE,
            Error::Convert(convert::ConvertError::Unconfirmed(_)) => EXIT_USAGE,
            Error::Convert(
                convert::ConvertError::Precondition { .. }
                | convert::ConvertError::NotStarted(_)
                | convert::ConvertError::AlreadyStarted(..)
                | convert::ConvertError::WrongPhase { .. }
                | convert::ConvertError::Busy(_),
            ) => EXIT_PRECONDITION,
            Error::Scheduler(
                scheduler::SchedulerError::Busy(_) | scheduler::SchedulerError::PgCron(_),
            ) => EXIT_PRECONDITION,
            Error::Schema(
                schema::SchemaError::Edited { .. } | schema::SchemaError::Unknown { .. },
            ) => EXIT_PRECONDITION,
            _ => EXIT_FAILED,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
