//! The operations runtime: one [`Op`] type for everything strata does to a
//! database and one way to run it, whoever asks (the CLI, the API, the
//! scheduler).
//!
//! [`begin`] resolves the table against the stored spec (the source of
//! truth), takes the table's maintenance lock without waiting (so two
//! operations refuse each other, and none waits inside a statement where a
//! `REINDEX CONCURRENTLY` could wait for it: that was a deadlock), and
//! writes the job row with who asked and from where. [`Running::execute`]
//! does the work under the safety rules, and [`Running::finish`] records
//! the result. [`OpError`] maps every failure once: to an exit code for the
//! CLI and to an HTTP status for the API.

mod error;
mod maintain;
pub mod safety;
pub mod spec;
mod table;

pub use error::OpError;
pub use maintain::{MaintainOptions, MaintainOutcome};
pub use spec::{effective_specs, SpecDiff};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use crate::config::{Config, TableSpec};
use crate::jobs::{self, Job, Retention};
use crate::maintenance::{AnalyzeScope, Operation as TableOperation, RelationResult};

/// Something strata does to a database.
#[derive(Clone, Debug)]
pub enum Op {
    /// Partitions ahead, rows out of the default partition, retention (real
    /// clock only), a pg_stat_statements reading, ANALYZE of changed
    /// partitions.
    Maintain(MaintainOptions),
    Vacuum {
        target: String,
        analyze: bool,
    },
    /// VACUUM (ANALYZE) of only the partitions that need it (the scheduled
    /// vacuum).
    VacuumNeeded {
        target: String,
    },
    Analyze {
        target: String,
        scope: AnalyzeScope,
    },
    Reindex {
        target: String,
    },
    /// strata's index set, built online.
    IndexesApply {
        table: Option<String>,
    },
    /// Store the configuration's table spec as the new source of truth.
    ConfigApply {
        table: Option<String>,
    },
    /// Install the table's declared rollups (storage, views, triggers).
    RollupApply {
        table: Option<String>,
    },
    /// Fold invalidated ranges and finished buckets into the rollups
    /// (installing them first when needed).
    RollupRefresh {
        table: Option<String>,
    },
    /// Sealed months: seal, verify, export a receipt, prove a row.
    Seal(crate::seal::SealOp),
    /// The archive tier (src/archive/): run, verify, restore.
    Archive {
        table: Option<String>,
        op: crate::archive::ArchiveOp,
    },
}

impl Op {
    /// The job kind in `strata.jobs`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Maintain(o) if o.create_only => "partitions_create",
            Op::Maintain(_) => "maintain",
            Op::Vacuum { .. } | Op::VacuumNeeded { .. } => "vacuum",
            Op::Analyze { .. } => "analyze",
            Op::Reindex { .. } => "reindex",
            Op::IndexesApply { .. } => "indexes_apply",
            Op::ConfigApply { .. } => "config_apply",
            Op::RollupApply { .. } => "rollup_apply",
            Op::RollupRefresh { .. } => "rollup_refresh",
            Op::Seal(s) => s.kind(),
            Op::Archive { op, .. } => op.kind(),
        }
    }

    /// The job kinds an operator can filter on.
    pub const KINDS: &'static [&'static str] = &[
        "maintain",
        "partitions_create",
        "vacuum",
        "analyze",
        "reindex",
        "indexes_apply",
        "config_apply",
        "rollup_apply",
        "rollup_refresh",
        "archive_run",
        "archive_verify",
        "archive_restore",
        "archive_attach",
        "archive_detach",
        "seal_run",
        "seal_verify",
        "seal_export",
        "seal_prove",
    ];
}

/// Who asked, recorded with the job.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "origin", rename_all = "lowercase")]
pub enum Origin {
    Cli { user: String },
    Api { token: String },
    Scheduler { job: String },
}

impl Origin {
    pub fn cli() -> Origin {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| format!("uid {}", nix::unistd::getuid()));
        Origin::Cli { user }
    }

    fn parts(&self) -> (&'static str, String) {
        match self {
            Origin::Cli { user } => ("cli", format!("{user}@{}", jobs::owner())),
            Origin::Api { token } => ("api", token.clone()),
            Origin::Scheduler { job } => ("scheduler", job.clone()),
        }
    }
}

/// What one step of an operation reports while it runs.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Progress {
    Relation(RelationResult),
    Line { message: String },
}

impl Progress {
    /// The line as shown to a person (the CLI prints the same).
    pub fn text(&self) -> String {
        match self {
            Progress::Line { message } => message.clone(),
            Progress::Relation(r) => match &r.error {
                Some(e) => format!("{}: {e}", r.line().trim_start()),
                None => r.line().trim_start().to_string(),
            },
        }
    }
}

pub type ProgressFn<'a> = &'a mut (dyn FnMut(&Progress) + Send);

/// An operation whose lock and job row are held by this session.
pub struct Running {
    op: Op,
    spec: TableSpec,
    target: Target,
    job: Job,
    config: Config,
}

/// What the operation works on, resolved.
#[derive(Clone, Debug)]
enum Target {
    Table,
    Relation(Box<crate::maintenance::MaintenanceTarget>),
}

impl Running {
    pub fn job_id(&self) -> i64 {
        self.job.id
    }

    pub fn kind(&self) -> &'static str {
        self.op.kind()
    }

    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    /// Does the work. The job stays open: call [`Running::finish`].
    pub async fn execute(
        &self,
        client: &mut Client,
        progress: ProgressFn<'_>,
    ) -> Result<Value, OpError> {
        if matches!(self.op, Op::Maintain(_) | Op::IndexesApply { .. }) {
            // Copies out of the default partition and index builds may take
            // longer than a catalog read; their lock waits stay bounded (each
            // step sets its own lock_timeout, reads keep the session's).
            client
                .batch_execute("SET statement_timeout = 0")
                .await
                .map_err(crate::db::DbError::query("lifting the statement limit"))?;
        }
        match (&self.op, &self.target) {
            (Op::Maintain(o), _) => {
                let out = maintain::run(client, &self.config, &self.spec, o, self.job.id, progress)
                    .await?;
                out.into_result()
            }
            (Op::Vacuum { analyze, .. }, Target::Relation(t)) => {
                table::run(
                    client,
                    t,
                    TableOperation::Vacuum { analyze: *analyze },
                    progress,
                )
                .await
            }
            (Op::Analyze { scope, .. }, Target::Relation(t)) => {
                table::run(
                    client,
                    t,
                    TableOperation::Analyze { scope: *scope },
                    progress,
                )
                .await
            }
            (Op::Reindex { .. }, Target::Relation(t)) => {
                table::run(client, t, TableOperation::Reindex, progress).await
            }
            (Op::VacuumNeeded { .. }, Target::Relation(t)) => {
                table::run(client, t, TableOperation::VacuumNeeded, progress).await
            }
            (Op::IndexesApply { .. }, _) => {
                table::indexes_apply(client, &self.spec, &self.config, progress).await
            }
            (Op::ConfigApply { .. }, _) => spec::apply(client, &self.config, &self.spec).await,
            (Op::RollupApply { .. }, _) => {
                let out =
                    crate::rollup::apply(client, &self.spec, &self.config.maintenance.lock).await?;
                Ok(serde_json::to_value(out).expect("outcome serializes"))
            }
            (Op::RollupRefresh { .. }, _) => {
                let out = crate::rollup::refresh(client, &self.spec, &self.config.maintenance.lock)
                    .await?;
                Ok(serde_json::to_value(out).expect("outcome serializes"))
            }
            (Op::Archive { op, .. }, _) => {
                crate::archive::execute(client, &self.config, &self.spec, op, self.job.id, progress)
                    .await
            }
            (Op::Seal(s), _) => {
                crate::seal::execute(client, &self.config, &self.spec, s, progress).await
            }
            _ => Err(OpError::Failed("operation and target do not match".into())),
        }
    }

    /// Records the outcome (the job's result or error) and releases the
    /// lock; prunes the history.
    pub async fn finish(
        self,
        client: &Client,
        outcome: &Result<Value, OpError>,
    ) -> Result<i64, OpError> {
        let id = self.job.id;
        let recorded = match outcome {
            Ok(v) => jobs::finish(client, self.job, Ok(v)).await,
            Err(e) => jobs::finish(client, self.job, Err(&e.to_string())).await,
        };
        recorded.map_err(OpError::from)?;
        if let Err(e) = jobs::prune(client, Retention::from_config(&self.config.maintenance)).await
        {
            tracing::warn!(error = %e, "could not prune job history");
        }
        Ok(id)
    }
}

/// Resolves the operation's table against the stored spec, takes the
/// table's maintenance lock (never waiting) and records the job.
pub async fn begin(
    client: &mut Client,
    config: &Config,
    op: Op,
    origin: &Origin,
) -> Result<Running, OpError> {
    let mut config = config.clone();
    // Applying a configuration is how a differing one becomes the truth, so
    // it alone is not refused for differing.
    if !matches!(op, Op::ConfigApply { .. }) {
        config.tables = spec::effective_specs(client, &config).await?;
    }
    let (spec, target, shown) = match &op {
        Op::Vacuum { target, .. }
        | Op::VacuumNeeded { target }
        | Op::Analyze { target, .. }
        | Op::Reindex { target } => {
            let t = crate::maintenance::resolve(client, &config.tables, target).await?;
            let shown = t.relation.display_unquoted();
            (t.spec.clone(), Target::Relation(Box::new(t)), shown)
        }
        Op::Maintain(MaintainOptions { table, .. })
        | Op::IndexesApply { table }
        | Op::ConfigApply { table }
        | Op::RollupApply { table }
        | Op::RollupRefresh { table }
        | Op::Archive { table, .. }
        | Op::Seal(
            crate::seal::SealOp::Run { table, .. }
            | crate::seal::SealOp::Verify { table, .. }
            | crate::seal::SealOp::Export { table, .. }
            | crate::seal::SealOp::Prove { table, .. },
        ) => {
            // The quoted form (what adapters pass after resolving a name)
            // matches exactly; anything else is read as the user typed it.
            let spec = match config
                .tables
                .iter()
                .find(|t| Some(t.name.to_string()) == *table)
            {
                Some(t) => t.clone(),
                None => config.table(table.as_deref())?.clone(),
            };
            let shown = spec.name.display_unquoted();
            (spec, Target::Table, shown)
        }
    };
    let kind = op.kind();
    let lock = crate::partition::table_lock(&spec.name);
    let job = jobs::start_locked(client, kind, &shown, &lock).await?;
    let (origin_kind, actor) = origin.parts();
    if let Err(e) = jobs::describe(client, job.id, origin_kind, &actor).await {
        let _ = jobs::finish(client, job, Err(&e.to_string())).await;
        return Err(e.into());
    }
    Ok(Running {
        op,
        spec,
        target,
        job,
        config,
    })
}

/// The whole life of an operation: begin, execute, finish. Returns the job
/// id and the result (the job row holds the same).
pub async fn run(
    client: &mut Client,
    config: &Config,
    op: Op,
    origin: &Origin,
    progress: ProgressFn<'_>,
) -> Result<(i64, Value), OpError> {
    let running = begin(client, config, op, origin).await?;
    let outcome = running.execute(client, progress).await;
    let id = running.finish(client, &outcome).await?;
    outcome.map(|v| (id, v))
}

/// The real clock, read from the database server: the one clock every
/// destructive decision follows (a client with a wrong clock must not drop
/// a partition early).
pub async fn real_now(client: &Client) -> Result<DateTime<Utc>, OpError> {
    Ok(client
        .query_one("SELECT now()", &[])
        .await
        .map_err(crate::db::DbError::query("reading the server clock"))?
        .get(0))
}
