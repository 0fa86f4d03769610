//! `/admin/database/archives`: the archive tier. `GET` (reader) lists what
//! the store holds; `POST run|verify|restore|attach|detach` (admin) start jobs of the
//! operations runtime (`202 {"job_id"}`, `409` while the table is busy).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Auth, Reader};
use super::error::{ApiResult, AppError, AppJson, Authenticated, ErrorBody};
use super::maintenance::{start, JobAccepted};
use super::AppState;
use crate::archive::{self, ArchiveOp, RunOptions};
use crate::ops::{Op, OpError};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    /// A managed table (default: the first configured one).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 257, pattern = "^[^\\x00]*$")]
    pub table_name: Option<String>,
    /// `run`: only show what would happen.
    #[serde(default)]
    pub dry_run: bool,
    /// `verify` (optional) and `restore` (required): `YYYY-MM` (monthly tables) or
    /// `YYYY-MM-DD` (the first day of a period of a daily or weekly table).
    #[serde(default)]
    #[schema(value_type = Option<super::seals::Period>)]
    pub period: Option<String>,
}

/// `restore`: a period is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// A managed table (default: the first configured one).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 257, pattern = "^[^\\x00]*$")]
    pub table_name: Option<String>,
    /// `YYYY-MM` (monthly tables) or `YYYY-MM-DD` (the first day of a period).
    #[schema(value_type = super::seals::Period)]
    pub period: String,
}

/// Archived periods of every managed table: rows, bytes, ratio, state.
#[utoipa::path(get, path = "/admin/database/archives", tag = "archives",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`table`, `archives[]`", body = Object),
        Authenticated,
    ))]
async fn list(_auth: Auth<Reader>, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let client = state.pool.get().await?;
    let mut all = Vec::new();
    for spec in &state.config.tables {
        let rows = archive::list(&client, spec)
            .await
            .map_err(|e| AppError::internal(OpError::from(e)))?;
        all.push(json!({"table": spec.name.display_unquoted(), "archives": rows}));
    }
    Ok(Json(json!({ "tables": all })))
}

async fn job(
    state: AppState,
    auth: Auth<Admin>,
    req: ArchiveRequest,
    kind: &'static str,
    make: impl FnOnce(&ArchiveRequest) -> ArchiveOp,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    let name = req
        .table_name
        .clone()
        .unwrap_or_else(|| state.config.tables[0].name.display_unquoted());
    let spec = super::seals::spec(&state, Some(&name))?;
    if let Some(p) = &req.period {
        super::seals::check_period(p)?;
        // Well-formed, but no period of this table starts there.
        archive::parse_period(spec, p).map_err(|e| AppError::Missing {
            code: "unknown_period",
            message: e.to_string(),
        })?;
    }
    let op = make(&req);
    start(
        &state,
        &auth.principal,
        &auth.ctx,
        &name,
        true,
        |target| Op::Archive {
            table: Some(target.spec.name.to_string()),
            op,
        },
        kind,
    )
    .await
}

/// A job of one required period (restore, attach, detach), checked like
/// the others' optional one.
async fn period_job(
    state: AppState,
    auth: Auth<Admin>,
    req: RestoreRequest,
    kind: &'static str,
    make: impl FnOnce(String) -> ArchiveOp,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    let period = req.period.clone();
    let req = ArchiveRequest {
        table_name: req.table_name,
        dry_run: false,
        period: Some(req.period),
    };
    job(state, auth, req, kind, |_| make(period)).await
}

/// Archive every period past archive_after (server clock) and, with
/// retention_mode = "archive", drop what a verified manifest covers.
#[utoipa::path(post, path = "/admin/database/archives/run", tag = "archives",
    request_body = ArchiveRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, description = "Malformed JSON, a field the schema refuses, or the table has no archive store", body = ErrorBody),
        (status = 404, description = "Not a managed table, or no period of it starts at `period`", body = ErrorBody),
        (status = 409, description = "The table is busy", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types or unknown fields", body = ErrorBody),
        Authenticated,
    ))]
async fn run(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<ArchiveRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    job(state, auth, req, "archive_run", |r| {
        ArchiveOp::Run(RunOptions { dry_run: r.dry_run })
    })
    .await
}

/// Re-read the store and check every file of one period (or all).
#[utoipa::path(post, path = "/admin/database/archives/verify", tag = "archives",
    request_body = ArchiveRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, description = "Malformed JSON, a field the schema refuses, or the table has no archive store", body = ErrorBody),
        (status = 404, description = "Not a managed table, or no period of it starts at `period`", body = ErrorBody),
        (status = 409, description = "The table is busy", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types or unknown fields", body = ErrorBody),
        Authenticated,
    ))]
async fn verify(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<ArchiveRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    job(state, auth, req, "archive_verify", |r| ArchiveOp::Verify {
        period: r.period.clone(),
    })
    .await
}

/// Re-create one period's partition from the store and attach it.
#[utoipa::path(post, path = "/admin/database/archives/restore", tag = "archives",
    request_body = RestoreRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, description = "Malformed JSON, a field the schema refuses, or the table has no archive store", body = ErrorBody),
        (status = 404, description = "Not a managed table, or no period of it starts at `period`", body = ErrorBody),
        (status = 409, description = "The table is busy", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types, unknown fields or no `period`", body = ErrorBody),
        Authenticated,
    ))]
async fn restore(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<RestoreRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    period_job(state, auth, req, "archive_restore", |period| {
        ArchiveOp::Restore { period }
    })
    .await
}

/// Make one archived period readable in place (`strata archive attach`):
/// a file_fdw foreign table behind `<table>_with_archive`, read by running
/// this strata on the database host.
#[utoipa::path(post, path = "/admin/database/archives/attach", tag = "archives",
    request_body = RestoreRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, description = "Malformed JSON, a field the schema refuses, or the table has no archive store", body = ErrorBody),
        (status = 404, description = "Not a managed table, or no period of it starts at `period`", body = ErrorBody),
        (status = 409, description = "The table is busy", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types, unknown fields or no `period`", body = ErrorBody),
        Authenticated,
    ))]
async fn attach(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<RestoreRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    period_job(state, auth, req, "archive_attach", |period| {
        ArchiveOp::Attach {
            period,
            strata_path: None,
        }
    })
    .await
}

/// Remove what `attach` made for one period.
#[utoipa::path(post, path = "/admin/database/archives/detach", tag = "archives",
    request_body = RestoreRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, description = "Malformed JSON, a field the schema refuses, or the table has no archive store", body = ErrorBody),
        (status = 404, description = "Not a managed table, or no period of it starts at `period`", body = ErrorBody),
        (status = 409, description = "The table is busy", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types, unknown fields or no `period`", body = ErrorBody),
        Authenticated,
    ))]
async fn detach(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<RestoreRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    period_job(state, auth, req, "archive_detach", |period| {
        ArchiveOp::Detach { period }
    })
    .await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(run))
        .routes(routes!(verify))
        .routes(routes!(restore))
        .routes(routes!(attach))
        .routes(routes!(detach))
}
