//! Maintenance as background jobs, and `GET /admin/jobs[/{id}]`.
//!
//! A job keeps the pooled connection it was started on until it ends: its
//! row is guarded by a session advisory lock (see `crate::jobs`), so the
//! lock lives exactly as long as the job, a second start on any `serve`
//! process is a 409, and a process that dies frees the lock with its
//! sessions. The connection then leaves the pool instead of returning to
//! it, so no session state of a job outlives it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use deadpool_postgres::Object;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Reader};
use super::error::{ApiResult, AppError, AppQuery, ErrorBody};
use super::AppState;
use crate::config::{MaintenanceConfig, TableSpec};
use crate::jobs::{self, JobError, JobRecord, Retention};
use crate::maintenance::{self, MaintenanceTarget, Operation, Outcome};
use crate::partition;

/// What a job whose server stopped before it finished records as its error.
pub const SHUTDOWN_REASON: &str =
    "cancelled: the server shut down before the job finished; run it again";
/// How long cancelled jobs get to record that they were cancelled.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// The work of one job.
#[derive(Clone, Debug)]
pub enum Work {
    /// vacuum, analyze or reindex of a managed table or one partition.
    Table {
        target: MaintenanceTarget,
        op: Operation,
    },
    Maintain {
        spec: TableSpec,
        maintenance: MaintenanceConfig,
    },
}

impl Work {
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Table { op, .. } => op.kind(),
            Work::Maintain { .. } => "maintain",
        }
    }

    /// The job's target, named as the CLI names it, so that the CLI and the
    /// API exclude each other.
    pub fn target(&self) -> String {
        match self {
            Work::Table { target, .. } => target.relation.display_unquoted(),
            Work::Maintain { spec, .. } => spec.name.display_unquoted(),
        }
    }

    /// The managed table's maintenance lock, the one the CLI, the
    /// scheduler and the partition engine take: no two maintenance jobs of a
    /// table overlap, whoever started them.
    pub fn lock(&self) -> String {
        match self {
            Work::Table { target, .. } => partition::table_lock(&target.spec.name),
            Work::Maintain { spec, .. } => partition::table_lock(&spec.name),
        }
    }
}

fn outcome_result(o: Outcome) -> Result<Value, String> {
    if o.failed == 0 {
        return Ok(serde_json::to_value(&o).unwrap_or(Value::Null));
    }
    let failures: Vec<String> = o
        .relations
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{}: {}", r.relation, r.error.as_deref().unwrap_or("failed")))
        .collect();
    Err(format!(
        "{} of {} relation(s) failed: {}",
        o.failed,
        o.relations.len(),
        failures.join("; ")
    ))
}

async fn execute(client: &mut Client, work: &Work) -> Result<Value, String> {
    let mut quiet = |_: &maintenance::RelationResult| {};
    match work {
        Work::Table { target, op } => op
            .run(client, target, &mut quiet)
            .await
            .map_err(|e| e.to_string())
            .and_then(outcome_result),
        Work::Maintain { spec, maintenance } => {
            let now = Utc::now();
            let (plan, report) = partition::maintain(client, spec, now, maintenance, |_| {})
                .await
                .map_err(|e| e.to_string())?;
            // As after `strata maintain`: a pg_stat_statements reading for the
            // queries window; its failure does not fail the maintenance.
            if let Err(e) = crate::stats::snapshot(client, std::slice::from_ref(spec)).await {
                tracing::debug!(error = %e, "no pg_stat_statements reading");
            }
            let failed = report.failed();
            let value = json!({
                "table": spec.name.display_unquoted(), "now": now, "plan": plan, "results": report.results,
            });
            if failed > 0 {
                return Err(format!(
                    "{failed} of {} maintenance step(s) failed: {value}",
                    report.results.len()
                ));
            }
            Ok(value)
        }
    }
}

/// The jobs this server runs.
#[derive(Clone, Default)]
pub struct JobRunner {
    tracker: TaskTracker,
    cancel: CancellationToken,
    started: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
}

impl JobRunner {
    pub fn running(&self) -> u64 {
        self.started.load(Ordering::Relaxed) - self.finished.load(Ordering::Relaxed)
    }

    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Records the job and runs `work` in the background on `client`. Fails
    /// with [`JobError::AlreadyRunning`] when any session runs the same
    /// kind on the same target.
    pub async fn start(
        &self,
        client: Object,
        work: Work,
        history: Retention,
    ) -> Result<i64, JobError> {
        let job = jobs::start_locked(&client, work.kind(), &work.target(), &work.lock()).await?;
        let id = job.id;
        self.started.fetch_add(1, Ordering::Relaxed);
        let cancel = self.cancel.clone();
        let finished = self.finished.clone();
        self.tracker.spawn(async move {
            let mut client = client;
            // A job is no request: it outlives its request, and the API
            // sessions' statement and lock limits are not its own (each
            // step sets what it needs).
            super::inflight::release(&client);
            if let Err(e) = client
                .batch_execute(
                    "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0",
                )
                .await
            {
                tracing::warn!(job = id, error = %e, "could not lift the request limits");
            }
            let cancel_query = client.cancel_token();
            let outcome = tokio::select! {
                r = execute(&mut client, &work) => r,
                _ = cancel.cancelled() => {
                    // Stop the statement on the server too, so that the
                    // outcome below is not queued behind it.
                    let _ = cancel_query.cancel_query(NoTls).await;
                    Err(SHUTDOWN_REASON.to_string())
                }
            };
            let recorded = match &outcome {
                Ok(v) => jobs::finish(&client, job, Ok(v)).await,
                Err(e) => jobs::finish(&client, job, Err(e)).await,
            };
            if let Err(e) = recorded {
                tracing::error!(job = id, error = %e, "could not record the job's outcome");
            }
            if let Err(e) = jobs::prune(&client, history).await {
                tracing::warn!(error = %e, "could not prune job history");
            }
            match &outcome {
                Ok(_) => tracing::info!(job = id, kind = work.kind(), "job succeeded"),
                Err(e) => tracing::warn!(job = id, kind = work.kind(), error = %e, "job failed"),
            }
            drop(Object::take(client));
            finished.fetch_add(1, Ordering::Relaxed);
        });
        Ok(id)
    }

    /// Lets running jobs finish for up to `grace`, then cancels the rest,
    /// which record [`SHUTDOWN_REASON`] as their error.
    pub async fn shutdown(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(
            running = self.running(),
            "cancelling jobs still running at shutdown"
        );
        self.cancel.cancel();
        if tokio::time::timeout(CANCEL_WAIT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                "jobs did not end after cancellation; their rows are closed by the next run"
            );
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs of this kind: vacuum, analyze, reindex, maintain, …
    kind: Option<String>,
    /// At most this many, newest first (1..=500, default 50).
    limit: Option<i64>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/admin/jobs", tag = "jobs", params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Jobs, newest first", body = Vec<Object>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ))]
async fn list(
    _auth: Auth<Reader>,
    State(state): State<AppState>,
    AppQuery(p): AppQuery<ListParams>,
) -> ApiResult<Json<Vec<JobRecord>>> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    let client = state.pool.get().await?;
    Ok(Json(jobs::list(&client, p.kind.as_deref(), limit).await?))
}

/// One job: state, times, error and result.
#[utoipa::path(get, path = "/admin/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "Job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
async fn get(
    _auth: Auth<Reader>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobRecord>> {
    let id: i64 = id.parse().map_err(|_| {
        AppError::bad_request("invalid_path", format!("job id {id:?} is not an integer"))
    })?;
    let client = state.pool.get().await?;
    Ok(Json(jobs::get(&client, id).await?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
}
