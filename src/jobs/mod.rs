//! Jobs: every maintenance run (vacuum, analyze, reindex, maintain, …) is a
//! row in `strata.jobs` with its state, times, error and result.
//!
//! "Only one at a time" is a session advisory lock, not the row: a process
//! that dies mid-job loses its session and with it the lock, so the next
//! run can take over at once and marks the dead run's row failed. A row
//! alone would stay `running` forever after a `kill -9`.

pub mod progress;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, Row};

use crate::db::{self, DbError};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "cannot start {kind} of {target}: maintenance of this table is already running in another session \
         (it holds the lock {lock}: {running}); try again when it is done"
    )]
    AlreadyRunning {
        kind: String,
        target: String,
        lock: String,
        /// The running jobs of that lock, as far as their rows show.
        running: String,
    },
    #[error("there is no job {0}")]
    NotFound(i64),
}

/// A job this session holds.
#[derive(Debug)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub target: String,
    lock: String,
}

/// A row of `strata.jobs`.
#[derive(Clone, Debug, Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub target: String,
    pub state: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub owner: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    /// `cli`, `api` or `scheduler`.
    pub origin: Option<String>,
    /// Who: `user@host:pid`, the API token's name, the scheduled job.
    pub actor: Option<String>,
    /// The latest progress line of a job run by `strata serve` (kept after
    /// it ends), and when it was written.
    pub progress: Option<String>,
    pub progress_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, kind, target, state, scheduled_for, owner, created_at, started_at, finished_at, error, result, origin, actor, progress, progress_at";

fn record(r: &Row) -> JobRecord {
    JobRecord {
        id: r.get(0),
        kind: r.get(1),
        target: r.get(2),
        state: r.get(3),
        scheduled_for: r.get(4),
        owner: r.get(5),
        created_at: r.get(6),
        started_at: r.get(7),
        finished_at: r.get(8),
        error: r.get(9),
        result: r.get(10),
        origin: r.get(11),
        actor: r.get(12),
        progress: r.get(13),
        progress_at: r.get(14),
    }
}

/// Who runs a job, for the `owner` column: host and PID.
pub fn owner() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "?".into());
    format!("{host}:{}", std::process::id())
}

/// Starts `kind` on `target` in this session, or says who is running it.
/// The lock is `job:KIND:TARGET`; see [`start_locked`] for a shared key.
pub async fn start(client: &Client, kind: &str, target: &str) -> Result<Job, JobError> {
    start_locked(client, kind, target, &format!("job:{kind}:{target}")).await
}

/// Starts a job under the session advisory lock `lock`, which several kinds
/// of job may share: all maintenance of one managed table (vacuum, analyze,
/// reindex, maintain) takes `maintain:TABLE`, so none of it overlaps. Session
/// advisory locks are re-entrant, so one connection runs one job at a time.
pub async fn start_locked(
    client: &Client,
    kind: &str,
    target: &str,
    lock: &str,
) -> Result<Job, JobError> {
    let lock = lock.to_string();
    if !db::try_advisory_lock(client, &lock).await? {
        let running: Vec<String> = client
            .query(
                "SELECT id, kind, target FROM strata.jobs WHERE state = 'running' ORDER BY id DESC LIMIT 3",
                &[],
            )
            .await
            .map_err(DbError::query("looking up the running job"))?
            .iter()
            .map(|r| format!("job {} {} {}", r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, String>(2)))
            .collect();
        return Err(JobError::AlreadyRunning {
            kind: kind.into(),
            target: target.into(),
            lock,
            running: if running.is_empty() {
                "no job row: a `strata maintain` or index build".into()
            } else {
                running.join(", ")
            },
        });
    }
    let started = async {
        // We hold the lock, so a row still `running` belongs to a session
        // that ended without finishing it.
        client
            .execute(
                "UPDATE strata.jobs SET state = 'failed', finished_at = now(),
                        error = 'the process running it ended before it finished'
                  WHERE kind = $1 AND target = $2 AND state = 'running'",
                &[&kind, &target],
            )
            .await
            .map_err(DbError::query("closing an abandoned job"))?;
        let id: i64 = client
            .query_one(
                "INSERT INTO strata.jobs (kind, target, state, owner, started_at)
                 VALUES ($1, $2, 'running', $3, now()) RETURNING id",
                &[&kind, &target, &owner()],
            )
            .await
            .map_err(DbError::query("recording the job"))?
            .get(0);
        Ok::<_, JobError>(id)
    }
    .await;
    match started {
        Ok(id) => Ok(Job {
            id,
            kind: kind.into(),
            target: target.into(),
            lock,
        }),
        Err(e) => {
            let _ = db::advisory_unlock(client, &lock).await;
            Err(e)
        }
    }
}

/// Records who started the job and from where (`cli`, `api`, `scheduler`).
pub async fn describe(client: &Client, id: i64, origin: &str, actor: &str) -> Result<(), JobError> {
    client
        .execute(
            "UPDATE strata.jobs SET origin = $2, actor = $3 WHERE id = $1",
            &[&id, &origin, &actor],
        )
        .await
        .map_err(DbError::query("recording who started the job"))?;
    Ok(())
}

/// Records the outcome and releases the job.
pub async fn finish(
    client: &Client,
    job: Job,
    outcome: Result<&serde_json::Value, &str>,
) -> Result<(), JobError> {
    let (state, result, error) = match outcome {
        Ok(v) => ("succeeded", Some(v), None),
        Err(e) => ("failed", None, Some(e)),
    };
    let updated = client
        .execute(
            "UPDATE strata.jobs SET state = $2, finished_at = now(), result = $3, error = $4 WHERE id = $1",
            &[&job.id, &state, &result, &error],
        )
        .await
        .map_err(DbError::query("recording the job's outcome"));
    let unlocked = db::advisory_unlock(client, &job.lock).await;
    updated?;
    unlocked?;
    Ok(())
}

/// Runs `work` as job `kind` on `target`: started, finished with its result
/// or error, history pruned. The work's own error is returned after it is
/// recorded.
pub async fn run<T, E, F, Fut>(
    client: &Client,
    kind: &str,
    target: &str,
    lock: &str,
    history: Retention,
    work: F,
) -> Result<(i64, Result<T, E>), JobError>
where
    T: Serialize,
    E: std::fmt::Display,
    F: FnOnce(i64) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let job = start_locked(client, kind, target, lock).await?;
    let id = job.id;
    let outcome = work(id).await;
    match &outcome {
        Ok(v) => {
            let value = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
            finish(client, job, Ok(&value)).await?;
        }
        Err(e) => finish(client, job, Err(&e.to_string())).await?,
    }
    // The job is recorded; failing to trim history must not turn its
    // success into an error.
    if let Err(e) = prune(client, history).await {
        tracing::warn!(error = %e, "could not prune job history");
    }
    Ok((id, outcome))
}

/// How much finished history to keep.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// At most this many finished jobs per kind.
    pub per_kind: u64,
    pub days: u64,
}

impl Retention {
    pub fn from_config(m: &crate::config::MaintenanceConfig) -> Retention {
        Retention {
            per_kind: m.job_history,
            days: m.job_history_days,
        }
    }
}

/// Deletes finished jobs beyond the retention; running ones are never
/// touched. Returns how many rows went.
pub async fn prune(client: &Client, keep: Retention) -> Result<u64, JobError> {
    let per_kind = keep.per_kind as i64;
    let days = keep.days.min(i32::MAX as u64) as i32;
    let n = client
        .execute(
            "DELETE FROM strata.jobs j
              WHERE j.state NOT IN ('running', 'queued')
                AND (coalesce(j.finished_at, j.created_at) < now() - make_interval(days => $2)
                     OR j.id IN (SELECT id FROM (
                                   SELECT id, row_number() OVER (PARTITION BY kind ORDER BY created_at DESC, id DESC) AS n
                                     FROM strata.jobs WHERE state NOT IN ('running', 'queued')) ranked
                                  WHERE ranked.n > $1))",
            &[&per_kind, &days],
        )
        .await
        .map_err(DbError::query("pruning job history"))?;
    Ok(n)
}

pub async fn get(client: &Client, id: i64) -> Result<JobRecord, JobError> {
    let sql = format!("SELECT {COLUMNS} FROM strata.jobs WHERE id = $1");
    let row = client
        .query_opt(&sql, &[&id])
        .await
        .map_err(DbError::query("reading the job"))?
        .ok_or(JobError::NotFound(id))?;
    Ok(record(&row))
}

/// The newest jobs first, optionally of one kind.
pub async fn list(
    client: &Client,
    kind: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRecord>, JobError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM strata.jobs WHERE ($1::text IS NULL OR kind = $1) ORDER BY created_at DESC, id DESC LIMIT $2"
    );
    let rows = client
        .query(&sql, &[&kind, &limit])
        .await
        .map_err(DbError::query("listing jobs"))?;
    Ok(rows.iter().map(record).collect())
}

/// The outcome of trying to claim one scheduled occurrence.
#[derive(Debug)]
pub enum Claim {
    /// This session runs it.
    Claimed(Job),
    /// Someone already ran it (or recorded it missed).
    Done,
    /// Another session holds the job's lock (running this occurrence or an
    /// earlier one): try again later.
    Busy,
}

/// Claims occurrence `scheduled_for` of `kind` on `target` under `lock`.
/// Exactly once across processes: the claim row is unique per occurrence
/// (`jobs_one_per_occurrence`) and is only written under the lock.
pub async fn claim(
    client: &Client,
    kind: &str,
    target: &str,
    lock: &str,
    scheduled_for: DateTime<Utc>,
) -> Result<Claim, JobError> {
    if !db::try_advisory_lock(client, lock).await? {
        return Ok(Claim::Busy);
    }
    let claimed = async {
        client
            .execute(
                "UPDATE strata.jobs SET state = 'failed', finished_at = now(),
                        error = 'the process running it ended before it finished'
                  WHERE kind = $1 AND target = $2 AND state = 'running'",
                &[&kind, &target],
            )
            .await
            .map_err(DbError::query("closing an abandoned job"))?;
        let row = client
            .query_opt(
                "INSERT INTO strata.jobs (kind, target, state, owner, started_at, scheduled_for)
                 VALUES ($1, $2, 'running', $3, now(), $4)
                 ON CONFLICT (kind, target, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING
                 RETURNING id",
                &[&kind, &target, &owner(), &scheduled_for],
            )
            .await
            .map_err(DbError::query("claiming the occurrence"))?;
        Ok::<_, JobError>(row.map(|r| r.get::<_, i64>(0)))
    }
    .await;
    match claimed {
        Ok(Some(id)) => Ok(Claim::Claimed(Job {
            id,
            kind: kind.into(),
            target: target.into(),
            lock: lock.into(),
        })),
        Ok(None) => {
            db::advisory_unlock(client, lock).await?;
            Ok(Claim::Done)
        }
        Err(e) => {
            let _ = db::advisory_unlock(client, lock).await;
            Err(e)
        }
    }
}

/// Records an occurrence nobody ran in time (no-op if one did).
pub async fn record_missed(
    client: &Client,
    kind: &str,
    target: &str,
    scheduled_for: DateTime<Utc>,
    why: &str,
) -> Result<bool, JobError> {
    let n = client
        .execute(
            "INSERT INTO strata.jobs (kind, target, state, scheduled_for, error, finished_at)
             VALUES ($1, $2, 'missed', $3, $4, now())
             ON CONFLICT (kind, target, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING",
            &[&kind, &target, &scheduled_for, &why],
        )
        .await
        .map_err(DbError::query("recording a missed occurrence"))?;
    Ok(n == 1)
}

/// The newest scheduled run of `kind` (any state).
pub async fn last_scheduled(client: &Client, kind: &str) -> Result<Option<JobRecord>, JobError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM strata.jobs WHERE kind = $1 AND scheduled_for IS NOT NULL
          ORDER BY scheduled_for DESC LIMIT 1"
    );
    let row = client
        .query_opt(&sql, &[&kind])
        .await
        .map_err(DbError::query("reading the last run"))?;
    Ok(row.as_ref().map(record))
}
