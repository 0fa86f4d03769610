//! `GET /admin/database/seals` (reader) and `POST
//! /admin/database/seals/verify` (admin, a job; 409 while the table is busy).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Auth, Reader};
use super::error::{ApiResult, AppError, AppJson, AppQuery, ErrorBody};
use super::maintenance::JobAccepted;
use super::AppState;
use crate::ops::{Op, OpError};
use crate::seal::SealOp;

#[derive(Debug, Deserialize, IntoParams)]
pub struct SealsQuery {
    /// A managed table (default: the first).
    pub table_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    #[serde(default)]
    pub table_name: Option<String>,
    /// One period's rows (`2025-03`); the chain is checked whole anyway.
    #[serde(default)]
    pub period: Option<String>,
}

fn spec<'a>(state: &'a AppState, name: Option<&str>) -> ApiResult<&'a crate::config::TableSpec> {
    state
        .config
        .table(name)
        .map_err(|e| AppError::bad_request("unknown_table", e.to_string()))
}

/// The table's seals in chain order, its closed periods not sealed yet and
/// the last verification's outcome.
#[utoipa::path(get, path = "/admin/database/seals", tag = "seals", params(SealsQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Seals"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    _auth: Auth<Reader>,
    State(state): State<AppState>,
    AppQuery(q): AppQuery<SealsQuery>,
) -> ApiResult<Json<crate::seal::SealStatus>> {
    let spec = spec(&state, q.table_name.as_deref())?.clone();
    let mut client = state.pool.get().await?;
    let status = crate::seal::status(&mut client, &state.config, &spec)
        .await
        .map_err(OpError::from)?;
    Ok(Json(status))
}

/// Verify seals, chain, signatures and anchor as a job; its result names
/// changed, deleted and inserted rows.
#[utoipa::path(post, path = "/admin/database/seals/verify", tag = "seals",
    request_body = VerifyRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "Job started", body = JobAccepted),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The table is busy", body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
async fn verify(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<VerifyRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    if let Some(p) = &req.period {
        crate::seal::parse_period(p)
            .map_err(|e| AppError::bad_request("invalid_period", e.to_string()))?;
    }
    // An unknown name is refused inside `start`, which records the refusal.
    let name = match &req.table_name {
        Some(name) => name.clone(),
        None => spec(&state, None)?.name.display_unquoted(),
    };
    let period = req.period.clone();
    super::maintenance::start(
        &state,
        &auth.principal,
        &auth.ctx,
        &name,
        true,
        |target| {
            Op::Seal(SealOp::Verify {
                table: Some(target.spec.name.to_string()),
                period,
            })
        },
        "seal_verify",
    )
    .await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(verify))
}
