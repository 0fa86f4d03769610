//! The built-in scheduler: runs the jobs of `[maintenance]` exactly once per
//! occurrence across any number of strata processes on one database.
//!
//! Exactly once is the database's doing, not timing's: an occurrence is run
//! by whoever inserts its row in `strata.jobs` (unique per job and
//! occurrence), and that insert happens only under the job's session
//! advisory lock. A process that dies mid-job loses its session, the lock
//! goes with it, and the next claim marks the abandoned row failed.

pub mod cron;
pub mod pgcron;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;

use crate::config::{Config, JobCommand, JobSpec};
use crate::db::{self, DbError};
use crate::jobs::{self, Claim, Retention};
use crate::maintenance::{self, AnalyzeScope};
use crate::ops;
use crate::stats;

use self::cron::Schedule;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Job(#[from] jobs::JobError),
    #[error("there is no scheduled job {name:?}; jobs: {known}")]
    UnknownJob { name: String, known: String },
    #[error("job {0} is running in another session; try again when it is done")]
    Busy(String),
    #[error("{0}")]
    PgCron(String),
}

/// A job with its parsed schedule.
#[derive(Clone, Debug)]
pub struct ScheduledJob {
    pub spec: JobSpec,
    pub schedule: Schedule,
}

impl ScheduledJob {
    /// The `strata.jobs` target of its runs: the named table, or "" for all.
    pub fn target(&self) -> String {
        self.spec.table.clone().unwrap_or_default()
    }

    fn lock(&self) -> String {
        format!("schedule:{}", self.spec.name)
    }
}

/// The built-in `maintain` and `vacuum` jobs and the configured extras.
pub fn jobs(config: &Config) -> Vec<ScheduledJob> {
    let m = &config.maintenance;
    let builtin = [
        ("maintain", &m.schedule, JobCommand::Maintain),
        ("vacuum", &m.vacuum_schedule, JobCommand::Vacuum),
        (
            "rollup_refresh",
            &m.rollup_schedule,
            JobCommand::RollupRefresh,
        ),
    ]
    .into_iter()
    .map(|(name, schedule, command)| JobSpec {
        name: name.into(),
        schedule: schedule.clone(),
        timezone: m.timezone.clone(),
        command,
        table: None,
    });
    builtin
        .chain(m.jobs.iter().cloned())
        .map(|spec| ScheduledJob {
            // Validated when the configuration was loaded.
            schedule: Schedule::parse(&spec.schedule, &spec.timezone).expect("validated schedule"),
            spec,
        })
        .collect()
}

pub fn find<'a>(jobs: &'a [ScheduledJob], name: &str) -> Result<&'a ScheduledJob, SchedulerError> {
    jobs.iter()
        .find(|j| j.spec.name == name)
        .ok_or_else(|| SchedulerError::UnknownJob {
            name: name.into(),
            known: jobs
                .iter()
                .map(|j| j.spec.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// What one table's part of a run did.
#[derive(Debug, Serialize)]
struct TableRun {
    table: String,
    ok: bool,
    /// The table's own job (the operation's record).
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    outcome: serde_json::Value,
}

/// Why a scheduled run failed.
#[derive(Debug)]
pub struct ExecError {
    pub message: String,
    /// Every table's part was refused because another run holds its lock.
    pub busy: bool,
}

/// Runs a job's command now, on this session, for its table or every
/// managed table, each through the operations runtime: it takes the table's
/// lock without waiting (a scheduled job never waits inside a statement,
/// where a `REINDEX CONCURRENTLY` of the same table would wait for it: a
/// deadlock), so a table that is busy is reported, not waited for.
pub async fn execute(
    client: &mut Client,
    config: &Config,
    job: &JobSpec,
) -> Result<serde_json::Value, ExecError> {
    let mut runs = Vec::new();
    let mut snapshot = None;
    let specs = ops::effective_specs(client, config)
        .await
        .map_err(|e| ExecError {
            message: e.to_string(),
            busy: false,
        })?;
    if matches!(job.command, JobCommand::Snapshot) {
        let n = stats::snapshot(client, &specs).await;
        let _ = stats::prune_snapshots(client, config.maintenance.job_history_days.max(35)).await;
        snapshot = Some(n.map_err(|e| e.to_string()));
    }
    let mut busy = 0;
    if job.command != JobCommand::Snapshot {
        let names: Vec<String> = match &job.table {
            Some(t) => vec![t.clone()],
            // Only tables that archive somewhere have anything to archive.
            None => specs
                .iter()
                .filter(|t| job.command != JobCommand::Archive || t.archive_to.is_some())
                .map(|t| t.name.display_unquoted())
                .collect(),
        };
        let origin = ops::Origin::Scheduler {
            job: job.name.clone(),
        };
        for name in names {
            let op = op_for(job.command, &name);
            let mut quiet = |_: &ops::Progress| {};
            runs.push(
                match ops::run(client, config, op, &origin, &mut quiet).await {
                    Ok((id, outcome)) => TableRun {
                        table: name,
                        ok: true,
                        job: Some(id),
                        error: None,
                        outcome,
                    },
                    Err(e) => {
                        busy += usize::from(matches!(e, ops::OpError::Busy(_)));
                        TableRun {
                            table: name,
                            ok: false,
                            job: None,
                            error: Some(e.to_string()),
                            outcome: serde_json::Value::Null,
                        }
                    }
                },
            );
        }
    }
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{}: {}", r.table, r.error.as_deref().unwrap_or("")))
        .collect();
    let snapshot_json = match &snapshot {
        Some(Ok(n)) => json!(n),
        Some(Err(e)) => json!({ "error": e }),
        None => serde_json::Value::Null,
    };
    if !failed.is_empty() {
        return Err(ExecError {
            message: failed.join("; "),
            busy: busy == runs.len(),
        });
    }
    Ok(json!({ "command": job.command, "tables": runs, "query_snapshot": snapshot_json }))
}

/// The operation a scheduled command runs on one table.
fn op_for(command: JobCommand, table: &str) -> ops::Op {
    let target = table.to_string();
    match command {
        JobCommand::Maintain | JobCommand::Snapshot => ops::Op::Maintain(ops::MaintainOptions {
            table: Some(target),
            ..Default::default()
        }),
        // Partitions with nothing to clean are not visited (closed months
        // of an append-mostly table, most of them).
        JobCommand::Vacuum => ops::Op::VacuumNeeded { target },
        JobCommand::Analyze => ops::Op::Analyze {
            target,
            scope: AnalyzeScope::Changed,
        },
        JobCommand::Reindex => ops::Op::Reindex { target },
        JobCommand::Seal => ops::Op::Seal(crate::seal::SealOp::Run {
            table: Some(target),
            dry_run: false,
        }),
        JobCommand::SealVerify => ops::Op::Seal(crate::seal::SealOp::Verify {
            table: Some(target),
            period: None,
        }),
        JobCommand::RollupRefresh => ops::Op::RollupRefresh {
            table: Some(target),
        },
        JobCommand::Archive => ops::Op::Archive {
            table: Some(target),
            op: crate::archive::ArchiveOp::Run(Default::default()),
        },
    }
}

/// What became of one occurrence in this process.
enum Occurrence {
    /// Ran here, as this job id; `busy` when every table was refused
    /// because another run held its lock.
    Ran(i64, bool),
    Done,
    Busy,
}

/// Claims and, if ours, runs one occurrence.
async fn run_occurrence(
    client: &mut Client,
    config: &Config,
    job: &ScheduledJob,
    occurrence: DateTime<Utc>,
) -> Result<Occurrence, SchedulerError> {
    let claim = jobs::claim(
        client,
        &job.spec.name,
        &job.target(),
        &job.lock(),
        occurrence,
    )
    .await?;
    let handle = match claim {
        Claim::Claimed(h) => h,
        Claim::Done => return Ok(Occurrence::Done),
        Claim::Busy => return Ok(Occurrence::Busy),
    };
    tracing::info!(job = %job.spec.name, %occurrence, id = handle.id, "running scheduled job");
    let id = handle.id;
    let outcome = execute(client, config, &job.spec).await;
    let busy = matches!(&outcome, Err(e) if e.busy);
    match &outcome {
        Ok(v) => jobs::finish(client, handle, Ok(v)).await?,
        Err(e) => {
            tracing::warn!(job = %job.spec.name, error = %e.message, "scheduled job failed");
            jobs::finish(client, handle, Err(&e.message)).await?
        }
    }
    if let Err(e) = jobs::prune(client, Retention::from_config(&config.maintenance)).await {
        tracing::warn!(error = %e, "could not prune job history");
    }
    Ok(Occurrence::Ran(id, busy))
}

/// `strata schedule run JOB`: the job now, under the same exactly-once
/// guard (its occurrence is the current second).
pub async fn run_now(
    client: &mut Client,
    config: &Config,
    name: &str,
) -> Result<jobs::JobRecord, SchedulerError> {
    let all = jobs(config);
    let job = find(&all, name)?.clone();
    prepare(client).await?;
    let now = db_now(client).await?;
    let occurrence = DateTime::from_timestamp(now.timestamp(), 0).expect("valid second");
    match run_occurrence(client, config, &job, occurrence).await? {
        Occurrence::Ran(id, true) => Err(SchedulerError::Busy(format!(
            "{name}: the table's maintenance is already running in another session (job {id} records it)"
        ))),
        Occurrence::Ran(id, false) => Ok(jobs::get(client, id).await?),
        Occurrence::Busy => Err(SchedulerError::Busy(name.into())),
        Occurrence::Done => Err(SchedulerError::Busy(format!(
            "{name} (this second's run was already claimed)"
        ))),
    }
}

async fn db_now(client: &Client) -> Result<DateTime<Utc>, DbError> {
    Ok(client
        .query_one("SELECT now()", &[])
        .await
        .map_err(DbError::query("reading the clock"))?
        .get(0))
}

/// Session settings of a scheduler connection: no inherited timeouts, and
/// (PostgreSQL 14+) a backend that notices its client is gone even while it
/// waits, so a killed scheduler's locks go with it.
async fn prepare(client: &Client) -> Result<(), DbError> {
    maintenance::prepare_session(client).await?;
    let _ = client
        .batch_execute("SET client_connection_check_interval = '1s'")
        .await;
    Ok(())
}

/// The next occurrence of each job, and when the soonest is.
#[derive(Debug, Serialize)]
pub struct Upcoming {
    pub name: String,
    pub command: JobCommand,
    pub schedule: String,
    pub timezone: String,
    pub table: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<jobs::JobRecord>,
}

pub async fn list(
    client: &Client,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<Upcoming>, SchedulerError> {
    let mut out = Vec::new();
    for job in jobs(config) {
        out.push(Upcoming {
            next_run: job.schedule.next_after(now),
            last_run: jobs::last_scheduled(client, &job.spec.name).await?,
            name: job.spec.name.clone(),
            command: job.spec.command,
            schedule: job.spec.schedule.clone(),
            timezone: job.spec.timezone.clone(),
            table: job.spec.table.clone(),
        });
    }
    Ok(out)
}

/// Runs the scheduler until `shutdown` resolves (or, with `once`, until the
/// startup catch-up and anything due now are handled).
pub async fn run(
    url: &str,
    config: &Config,
    once: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SchedulerError> {
    tokio::pin!(shutdown);
    let all = jobs(config);
    let catch_up =
        chrono::Duration::from_std(config.maintenance.catch_up).unwrap_or(chrono::Duration::MAX);
    let mut client = connect(url).await?;
    let started = Utc::now();
    // Startup: the latest occurrence of each job before now runs if it is
    // recent enough and nobody ran it; otherwise it is recorded as missed.
    let mut pending: Vec<(usize, DateTime<Utc>)> = Vec::new();
    for (i, job) in all.iter().enumerate() {
        if let Some(prev) = job.schedule.last_at_or_before(started) {
            if started - prev <= catch_up {
                pending.push((i, prev));
            } else {
                jobs::record_missed(
                    &client,
                    &job.spec.name,
                    &job.target(),
                    prev,
                    "no strata scheduler was running within the catch-up window",
                )
                .await?;
            }
        }
    }
    let mut next: Vec<Option<DateTime<Utc>>> =
        all.iter().map(|j| j.schedule.next_after(started)).collect();
    loop {
        let now = Utc::now();
        for (i, job) in all.iter().enumerate() {
            while let Some(t) = next[i].filter(|t| *t <= now) {
                pending.push((i, t));
                next[i] = job.schedule.next_after(t);
            }
        }
        pending.sort_by_key(|(_, t)| *t);
        let mut retry = Vec::new();
        for (i, occurrence) in std::mem::take(&mut pending) {
            let job = &all[i];
            match run_occurrence(&mut client, config, job, occurrence).await {
                Ok(Occurrence::Busy) if Utc::now() - occurrence <= catch_up && !once => {
                    retry.push((i, occurrence))
                }
                Ok(Occurrence::Busy) => {
                    jobs::record_missed(
                        &client,
                        &job.spec.name,
                        &job.target(),
                        occurrence,
                        "an earlier run was still going when the catch-up window closed",
                    )
                    .await?;
                }
                Ok(_) => {}
                Err(e) => {
                    // The connection may be gone: keep the occurrence, reconnect.
                    tracing::warn!(job = %job.spec.name, error = %e, "scheduler error; reconnecting");
                    retry.push((i, occurrence));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Ok(c) = connect(url).await {
                        client = c;
                    }
                }
            }
        }
        pending = retry;
        if once {
            return Ok(());
        }
        let now = Utc::now();
        let soonest = next.iter().flatten().min().copied();
        let mut wait = soonest
            .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(60));
        if !pending.is_empty() {
            wait = wait.min(Duration::from_millis(500));
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn connect(url: &str) -> Result<Client, SchedulerError> {
    let client = db::connect(url).await?;
    prepare(&client).await?;
    Ok(client)
}
