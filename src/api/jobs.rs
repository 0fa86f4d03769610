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
use deadpool_postgres::Object;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Reader};
use super::error::{ApiResult, AppError, AppQuery, Authenticated, ErrorBody};
use super::AppState;
use crate::config::Config;
use crate::jobs::{self, JobRecord};
use crate::ops::{self, Op, OpError, Origin};

/// What a job whose server stopped before it finished records as its error.
pub const SHUTDOWN_REASON: &str =
    "cancelled: the server shut down before the job finished; run it again";
/// How long cancelled jobs get to record that they were cancelled.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

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

    /// Begins `op` through the operations runtime (its lock and job row,
    /// taken without waiting) and runs it in the background on `client`.
    /// Fails with [`OpError::Busy`] when any session runs maintenance of the
    /// same table.
    pub async fn start(
        &self,
        mut client: Object,
        config: &Config,
        op: Op,
        origin: Origin,
    ) -> Result<(i64, String), OpError> {
        // The job is the owner's work (DDL, vacuum), not a request's: its
        // session leaves the API role for the login role (`api::privileges`).
        // Whether or not it starts, this connection never returns to the pool.
        let begun = match client.batch_execute("SET ROLE NONE").await {
            Ok(()) => ops::begin(&mut client, config, op, &origin).await,
            Err(e) => Err(OpError::Failed(format!(
                "could not leave the API role: {e}"
            ))),
        };
        let running = match begun {
            Ok(r) => r,
            Err(e) => {
                drop(Object::take(client));
                return Err(e);
            }
        };
        let id = running.job_id();
        let kind = running.kind();
        let target = running.spec().name.display_unquoted();
        self.started.fetch_add(1, Ordering::Relaxed);
        let cancel = self.cancel.clone();
        let finished = self.finished.clone();
        self.tracker.spawn(async move {
            let mut client = client;
            // A job is no request: it outlives its request, and the API
            // sessions' limits are not its own. It gets strata's session
            // defaults, as from the CLI; the runtime lifts the statement
            // limit for long work and each step bounds its lock waits.
            super::inflight::release(&client);
            if let Err(e) = client
                .batch_execute(&format!(
                    "SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = 0",
                    crate::db::SESSION_STATEMENT_TIMEOUT_MS,
                    crate::db::SESSION_LOCK_TIMEOUT_MS
                ))
                .await
            {
                tracing::warn!(job = id, error = %e, "could not lift the request limits");
            }
            let cancel_query = super::inflight::canceller(&client);
            let recorder = Object::pool(&client).map(|p| crate::jobs::progress::recorder(p, id));
            let sink = recorder.as_ref().map(|(s, _)| s);
            let mut report = |p: &ops::Progress| {
                if let Some(s) = sink {
                    s.set(p.text());
                }
            };
            let outcome = tokio::select! {
                r = running.execute(&mut client, &mut report) => r,
                _ = cancel.cancelled() => {
                    // Stop the statement on the server too, so that the
                    // outcome below is not queued behind it.
                    if let Some((token, tls)) = cancel_query {
                        let _ = super::inflight::cancel(&token, tls).await;
                    }
                    Err(OpError::Failed(SHUTDOWN_REASON.to_string()))
                }
            };
            if let Some((sink, task)) = recorder {
                drop(sink);
                let _ = task.await;
            }
            if let Err(e) = running.finish(&client, &outcome).await {
                tracing::error!(job = id, error = %e, "could not record the job's outcome");
            }
            match &outcome {
                Ok(_) => tracing::info!(job = id, kind, "job succeeded"),
                Err(e) => tracing::warn!(job = id, kind, error = %e, "job failed"),
            }
            drop(Object::take(client));
            finished.fetch_add(1, Ordering::Relaxed);
        });
        Ok((id, target))
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
    #[param(pattern = "^[^\\x00]*$")]
    kind: Option<String>,
    /// At most this many, newest first (1..=500, default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/admin/jobs", tag = "jobs", params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Jobs, newest first", body = Vec<Object>),
        (status = 400, description = "`limit` out of range, or `kind` with a NUL", body = ErrorBody),
        Authenticated,
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
    if p.kind.as_deref().is_some_and(|k| k.contains('\0')) {
        return Err(AppError::bad_request(
            "invalid_query",
            "kind contains a NUL character, which PostgreSQL text cannot hold",
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
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        Authenticated,
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

/// The runtime's error mapping, in the API's error shape: the status comes
/// from [`OpError::http_status`], one mapping for every entry point.
impl From<OpError> for AppError {
    fn from(e: OpError) -> Self {
        let message = e.to_string();
        match e.http_status() {
            400 => AppError::bad_request("invalid_request", message),
            409 => AppError::Conflict(message),
            503 => AppError::Unavailable(message),
            _ => AppError::Internal(message),
        }
    }
}
