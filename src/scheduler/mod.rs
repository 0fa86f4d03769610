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

use crate::config::{Backend, Config, JobCommand, JobSpec};
use crate::db::{self, DbError};
use crate::jobs::{self, Claim, Retention};
use crate::maintenance::{self, AnalyzeScope, Operation};
use crate::{partition, stats};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    outcome: serde_json::Value,
}

/// Runs a job's command now, on this session, for its table or every
/// managed table. Each table's work holds that table's maintenance lock
/// (waiting for it: a scheduled job may wait for a manual one).
pub async fn execute(
    client: &mut Client,
    config: &Config,
    job: &JobSpec,
) -> Result<serde_json::Value, String> {
    let mut runs = Vec::new();
    let mut snapshot = None;
    if matches!(job.command, JobCommand::Maintain | JobCommand::Snapshot) {
        let n = stats::snapshot(client, &config.tables).await;
        let _ = stats::prune_snapshots(client, config.maintenance.job_history_days.max(35)).await;
        snapshot = Some(n.map_err(|e| e.to_string()));
    }
    if job.command != JobCommand::Snapshot {
        let names: Vec<String> = match &job.table {
            Some(t) => vec![t.clone()],
            None => config
                .tables
                .iter()
                .map(|t| t.name.display_unquoted())
                .collect(),
        };
        for name in names {
            let outcome = run_on_table(client, config, job.command, &name).await;
            runs.push(match outcome {
                Ok(outcome) => TableRun {
                    table: name,
                    ok: true,
                    error: None,
                    outcome,
                },
                Err(e) => TableRun {
                    table: name,
                    ok: false,
                    error: Some(e),
                    outcome: serde_json::Value::Null,
                },
            });
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
        return Err(failed.join("; "));
    }
    Ok(json!({ "command": job.command, "tables": runs, "query_snapshot": snapshot_json }))
}

async fn run_on_table(
    client: &mut Client,
    config: &Config,
    command: JobCommand,
    table: &str,
) -> Result<serde_json::Value, String> {
    let target = maintenance::resolve(client, &config.tables, table)
        .await
        .map_err(|e| e.to_string())?;
    let lock = partition::table_lock(&target.spec.name);
    db::advisory_lock(client, &lock)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let mut quiet = |_: &maintenance::RelationResult| {};
        let op = match command {
            JobCommand::Maintain => {
                let (plan, report) = partition::maintain(
                    client,
                    &target.spec,
                    Utc::now(),
                    &config.maintenance,
                    |_| {},
                )
                .await
                .map_err(|e| e.to_string())?;
                // New partitions (and the month that filled up) get statistics
                // now rather than whenever autovacuum gets there.
                let target = maintenance::resolve(client, &config.tables, table)
                    .await
                    .map_err(|e| e.to_string())?;
                let analyzed =
                    maintenance::analyze(client, &target, AnalyzeScope::Changed, &mut quiet)
                        .await
                        .map_err(|e| e.to_string())?;
                if report.failed() > 0 {
                    return Err(format!(
                        "{} of {} partition steps failed",
                        report.failed(),
                        report.results.len()
                    ));
                }
                return Ok(json!({
                    "backend": if target.spec.backend == Backend::Partman { "partman" } else { "native" },
                    "steps": plan.steps.len(),
                    "results": report.results,
                    "analyzed": analyzed.relations.len(),
                }));
            }
            JobCommand::Vacuum => Operation::Vacuum { analyze: true },
            JobCommand::Analyze => Operation::Analyze {
                scope: AnalyzeScope::Changed,
            },
            JobCommand::Reindex => Operation::Reindex,
            JobCommand::Snapshot => return Ok(serde_json::Value::Null),
        };
        op.run(client, &target, &mut quiet)
            .await
            .map(|o| json!(o))
            .map_err(|e| e.to_string())
    }
    .await;
    let _ = db::advisory_unlock(client, &lock).await;
    result
}

/// What became of one occurrence in this process.
enum Occurrence {
    /// Ran here, as this job id.
    Ran(i64),
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
    match &outcome {
        Ok(v) => jobs::finish(client, handle, Ok(v)).await?,
        Err(e) => {
            tracing::warn!(job = %job.spec.name, error = %e, "scheduled job failed");
            jobs::finish(client, handle, Err(e)).await?
        }
    }
    if let Err(e) = jobs::prune(client, Retention::from_config(&config.maintenance)).await {
        tracing::warn!(error = %e, "could not prune job history");
    }
    Ok(Occurrence::Ran(id))
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
        Occurrence::Ran(id) => Ok(jobs::get(client, id).await?),
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
