//! `POST /admin/database/maintenance/{vacuum,analyze,reindex}` and
//! `POST /admin/database/partitions/maintain`: the table name is resolved
//! against the catalog (`maintenance::resolve`), never sent as SQL, and the
//! work runs as a job (`202 {"job_id"}`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Auth};
use super::error::{ApiResult, AppError, AppJson, Authenticated, ErrorBody};
use super::events::{Event, RequestContext};
use super::tokens::Principal;
use super::AppState;
use crate::maintenance::{self, AnalyzeScope, MaintenanceTarget};
use crate::ops::{MaintainOptions, Op, Origin};

/// Longest `table_name` looked at: a schema and a name of 63 bytes each,
/// quoted, with a dot. Anything longer cannot name a table.
const MAX_TABLE_NAME: usize = 2 * (63 * 2 + 2) + 1;

/// What the OpenAPI document says of every `table_name` (`minLength`,
/// `maxLength`, `pattern`), refused before anything is looked up. A name
/// that passes and names no managed table or partition is a 404.
pub(crate) fn check_table_name(table_name: &str) -> ApiResult<()> {
    let bad = |m: String| Err(AppError::bad_request("invalid_table_name", m));
    // Characters, as JSON Schema counts them.
    let chars = table_name.chars().count();
    if chars == 0 {
        return bad("table_name is empty".into());
    }
    if chars > MAX_TABLE_NAME {
        return bad(format!(
            "table_name is {chars} characters long; no table name is longer than {MAX_TABLE_NAME}"
        ));
    }
    if table_name.contains('\0') {
        return bad("table_name contains a NUL character".into());
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VacuumRequest {
    /// A managed table or one of its partitions, e.g. `audit_logs` or `audit_logs_2025_03`.
    #[schema(min_length = 1, max_length = 257, pattern = "^[^\\x00]*$")]
    pub table_name: String,
    /// Also refresh planner statistics.
    #[serde(default)]
    pub analyze: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// A managed table or one of its partitions.
    #[schema(min_length = 1, max_length = 257, pattern = "^[^\\x00]*$")]
    pub table_name: String,
    /// Only partitions changed since their last analyze.
    #[serde(default)]
    pub changed_only: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TableRequest {
    /// A managed table or one of its partitions.
    #[schema(min_length = 1, max_length = 257, pattern = "^[^\\x00]*$")]
    pub table_name: String,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct MaintainRequest {
    /// A managed table (default: the first configured one).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 257, pattern = "^[^\\x00]*$")]
    pub table_name: Option<String>,
}

/// A job was started.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAccepted {
    pub job_id: i64,
    pub kind: String,
    pub target: String,
    /// Where to follow it: `/admin/jobs/{job_id}`.
    pub status_url: String,
}

/// Resolves the name, starts the job and records the admin action (also
/// when it is refused). The dashboard starts its jobs here too, so both
/// adapters share one path into `ops`.
pub(crate) async fn start(
    state: &AppState,
    principal: &Principal,
    ctx: &RequestContext,
    table_name: &str,
    parent_only: bool,
    make: impl FnOnce(MaintenanceTarget) -> Op,
    kind: &'static str,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    let result = async {
        check_table_name(table_name)?;
        let mut client = state.pool.get().await?;
        let target = maintenance::resolve(&mut client, &state.config.tables, table_name).await?;
        if parent_only && !target.is_parent {
            return Err(AppError::Missing {
                code: "unknown_table",
                message: format!(
                    "{kind} works on a managed table, and {} is one of its partitions",
                    target.relation.display_unquoted()
                ),
            });
        }
        let op = make(target);
        let origin = Origin::Api {
            token: principal.name.clone(),
        };
        Ok(state.jobs.start(client, &state.config, op, origin).await?)
    }
    .await;
    let shown: String = table_name.chars().take(200).collect();
    let mut event = Event::for_request(
        ctx,
        &format!("admin.{kind}"),
        principal.token_id,
        json!({"table_name": shown, "token_name": principal.name}),
    );
    event.resource_type = Some("job");
    match &result {
        Ok((id, _)) => {
            event.resource_id = Some(*id);
            event.details["job_id"] = json!(id);
        }
        Err(e) => event.refused_by(e),
    }
    state.events.record(event).await;
    let (job_id, target) = result?;
    Ok((
        StatusCode::ACCEPTED,
        Json(JobAccepted {
            job_id,
            kind: kind.into(),
            target,
            status_url: format!("/admin/jobs/{job_id}"),
        }),
    ))
}

/// VACUUM a managed table (partition by partition) or one partition, as a job.
#[utoipa::path(post, path = "/admin/database/maintenance/vacuum", tag = "maintenance",
    request_body = VacuumRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, description = "Malformed JSON, or a `table_name` the schema refuses", body = ErrorBody),
        (status = 404, description = "No managed table or partition has that name", body = ErrorBody),
        (status = 409, description = "The same job is running", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types, unknown or missing fields", body = ErrorBody),
        Authenticated,
    ))]
async fn vacuum(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<VacuumRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    let analyze = req.analyze;
    start(
        &state,
        &auth.principal,
        &auth.ctx,
        &req.table_name,
        false,
        |target| Op::Vacuum {
            target: target.relation.to_string(),
            analyze,
        },
        "vacuum",
    )
    .await
}

/// ANALYZE a managed table or one partition, as a job.
#[utoipa::path(post, path = "/admin/database/maintenance/analyze", tag = "maintenance",
    request_body = AnalyzeRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, description = "Malformed JSON, or a `table_name` the schema refuses", body = ErrorBody),
        (status = 404, description = "No managed table (or, but for maintain, partition) has that name", body = ErrorBody),
        (status = 409, description = "The same job is running", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types, unknown or missing fields", body = ErrorBody),
        Authenticated,
    ))]
async fn analyze(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<AnalyzeRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    let scope = if req.changed_only {
        AnalyzeScope::Changed
    } else {
        AnalyzeScope::All
    };
    start(
        &state,
        &auth.principal,
        &auth.ctx,
        &req.table_name,
        false,
        |target| Op::Analyze {
            target: target.relation.to_string(),
            scope,
        },
        "analyze",
    )
    .await
}

/// REINDEX INDEX CONCURRENTLY every index of a managed table's partitions, as a job.
#[utoipa::path(post, path = "/admin/database/maintenance/reindex", tag = "maintenance",
    request_body = TableRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, description = "Malformed JSON, or a `table_name` the schema refuses", body = ErrorBody),
        (status = 404, description = "No managed table (or, but for maintain, partition) has that name", body = ErrorBody),
        (status = 409, description = "The same job is running", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types, unknown or missing fields", body = ErrorBody),
        Authenticated,
    ))]
async fn reindex(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<TableRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    start(
        &state,
        &auth.principal,
        &auth.ctx,
        &req.table_name,
        false,
        |target| Op::Reindex {
            target: target.relation.to_string(),
        },
        "reindex",
    )
    .await
}

/// Partition maintenance (premake, default-partition moves, retention), as a job.
#[utoipa::path(post, path = "/admin/database/partitions/maintain", tag = "maintenance",
    request_body(content = Option<MaintainRequest>, description = "Optional; an empty body means the first managed table"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, description = "Malformed JSON, or a `table_name` the schema refuses", body = ErrorBody),
        (status = 404, description = "No managed table (or, but for maintain, partition) has that name", body = ErrorBody),
        (status = 409, description = "The same job is running", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types, unknown or missing fields", body = ErrorBody),
        Authenticated,
    ))]
async fn maintain(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    let body = body?;
    let text = body.trim_ascii();
    // No body, or `null` (which the document's optional body allows): the defaults.
    let req: MaintainRequest = if text.is_empty() || text == b"null" {
        MaintainRequest::default()
    } else if !text.starts_with(b"{") {
        // serde would also read a struct from an array of its fields.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
                Ok(_) => AppError::Unprocessable {
                    code: "invalid_json",
                    message: "the body must be a JSON object".into(),
                },
                Err(e) => AppError::bad_request("invalid_json", e.to_string()),
            },
        );
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => AppError::Unprocessable {
                code: "invalid_json",
                message: e.to_string(),
            },
            _ => AppError::bad_request("invalid_json", e.to_string()),
        })?
    };
    let name = req
        .table_name
        .unwrap_or_else(|| state.config.tables[0].name.display_unquoted());
    start(
        &state,
        &auth.principal,
        &auth.ctx,
        &name,
        true,
        |target| {
            Op::Maintain(MaintainOptions {
                table: Some(target.spec.name.to_string()),
                ..Default::default()
            })
        },
        "maintain",
    )
    .await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(vacuum))
        .routes(routes!(analyze))
        .routes(routes!(reindex))
        .routes(routes!(maintain))
}

/// A maintenance action started from outside the JSON handlers (the
/// dashboard's forms), mapped to the same `Op`s they build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Vacuum { analyze: bool },
    Analyze,
    Reindex,
    Maintain,
}

/// Starts `action` on `table_name` through [`start`].
pub(crate) async fn start_action(
    state: &AppState,
    principal: &Principal,
    ctx: &RequestContext,
    table_name: &str,
    action: Action,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    match action {
        Action::Vacuum { analyze } => {
            start(
                state,
                principal,
                ctx,
                table_name,
                false,
                |t| Op::Vacuum {
                    target: t.relation.to_string(),
                    analyze,
                },
                "vacuum",
            )
            .await
        }
        Action::Analyze => {
            start(
                state,
                principal,
                ctx,
                table_name,
                false,
                |t| Op::Analyze {
                    target: t.relation.to_string(),
                    scope: AnalyzeScope::All,
                },
                "analyze",
            )
            .await
        }
        Action::Reindex => {
            start(
                state,
                principal,
                ctx,
                table_name,
                false,
                |t| Op::Reindex {
                    target: t.relation.to_string(),
                },
                "reindex",
            )
            .await
        }
        Action::Maintain => {
            start(
                state,
                principal,
                ctx,
                table_name,
                true,
                |t| {
                    Op::Maintain(MaintainOptions {
                        table: Some(t.spec.name.to_string()),
                        ..Default::default()
                    })
                },
                "maintain",
            )
            .await
        }
    }
}
