//! `GET /admin/database/stats/{partitions,indexes,queries}`, `/report` and
//! `/health`: the library's reports as JSON, in the seed's shapes (one
//! managed table keeps the flat shape; several are listed under `tables`).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Reader};
use super::error::{ApiResult, AppError, AppQuery, Authenticated, ErrorBody};
use super::tokens::{Principal, Role};
use super::AppState;
use crate::{health, report, stats};

/// Other sessions' SQL text, whole for admins and without literals for
/// everyone else (it can hold any value an application sent).
fn shown_to(principal: &Principal, mut doc: Value) -> Value {
    if principal.role != Role::Admin {
        super::redact::for_reader(&mut doc);
    }
    doc
}

/// Longest query-statistics window, in days.
const MAX_DAYS: u32 = 365;

fn one_or_all(mut all: Vec<Value>) -> Value {
    match all.len() {
        1 => all.remove(0),
        _ => json!({ "tables": all }),
    }
}

/// Per partition: bounds, rows (estimate), sizes, dead tuples, last vacuum/analyze.
#[utoipa::path(get, path = "/admin/database/stats/partitions", tag = "stats",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`table`, `partition_count`, `total_size_bytes`, `total_size_pretty`, `partitions[]`, …", body = Object),
        Authenticated,
    ))]
async fn partitions(_auth: Auth<Reader>, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let mut client = state.pool.get().await?;
    let mut all = Vec::new();
    for spec in &state.config.tables {
        let s = stats::partitions(&mut client, spec).await?;
        all.push(serde_json::to_value(s).map_err(AppError::internal)?);
    }
    Ok(Json(one_or_all(all)))
}

/// Per index, summed over partitions: size, scans, validity, unused/duplicate/bloated flags.
#[utoipa::path(get, path = "/admin/database/stats/indexes", tag = "stats",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`table`, `indexes[]`", body = Object),
        Authenticated,
    ))]
async fn indexes(_auth: Auth<Reader>, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let client = state.pool.get().await?;
    let mut all = Vec::new();
    for spec in &state.config.tables {
        all.push(json!({
            "table": spec.name.display_unquoted(),
            "indexes": stats::indexes(&client, spec).await?,
        }));
    }
    Ok(Json(one_or_all(all)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueriesParams {
    /// Window in days (1..=365, default 7).
    #[param(minimum = 1, maximum = 365)]
    days: Option<u32>,
    /// Statements per list (1..=100, default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

fn days(days: Option<u32>) -> ApiResult<u32> {
    let d = days.unwrap_or(7);
    if !(1..=MAX_DAYS).contains(&d) {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("days must be between 1 and {MAX_DAYS}"),
        ));
    }
    Ok(d)
}

/// Slowest and most frequent statements on the managed tables (pg_stat_statements).
#[utoipa::path(get, path = "/admin/database/stats/queries", tag = "stats", params(QueriesParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`window`, `slowest[]`, `most_frequent[]`, or a `hint` when pg_stat_statements is missing", body = Object),
        (status = 400, description = "A parameter out of range or not a number", body = ErrorBody),
        Authenticated,
    ))]
async fn queries(
    auth: Auth<Reader>,
    State(state): State<AppState>,
    AppQuery(p): AppQuery<QueriesParams>,
) -> ApiResult<Json<Value>> {
    let days = days(p.days)?;
    let limit = p.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_query",
            "limit must be between 1 and 100",
        ));
    }
    let client = state.pool.get().await?;
    let r = stats::queries(&client, &state.config.tables, days, limit).await?;
    let doc = serde_json::to_value(r).map_err(AppError::internal)?;
    Ok(Json(shown_to(&auth.principal, doc)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// Query statistics window in days (1..=365, default 7).
    #[param(minimum = 1, maximum = 365)]
    days: Option<u32>,
}

/// Partitions, indexes, queries, strategy check and recommendations in one document.
#[utoipa::path(get, path = "/admin/database/report", tag = "stats", params(ReportParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report (docs/report-json.md)", body = Object),
        (status = 400, description = "A parameter out of range or not a number", body = ErrorBody),
        Authenticated,
    ))]
async fn report(
    auth: Auth<Reader>,
    State(state): State<AppState>,
    AppQuery(p): AppQuery<ReportParams>,
) -> ApiResult<Json<Value>> {
    let days = days(p.days)?;
    let mut client = state.pool.get().await?;
    let r = report::build(
        &mut client,
        &state.config.tables,
        chrono::Utc::now(),
        days,
        state.config.seal.after,
    )
    .await
    .map_err(AppError::internal)?;
    let doc = serde_json::to_value(r).map_err(AppError::internal)?;
    Ok(Json(shown_to(&auth.principal, doc)))
}

/// Health checks graded against `[health]`; `status` is the worst of them.
#[utoipa::path(get, path = "/admin/database/health", tag = "stats",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`status`, `checked_at`, `checks[]`", body = Object),
        Authenticated,
    ))]
async fn health(auth: Auth<Reader>, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let mut client = state.pool.get().await?;
    let r = health::check(
        &mut client,
        &state.config.tables,
        &state.config.health,
        chrono::Utc::now(),
    )
    .await
    .map_err(AppError::internal)?;
    let doc = serde_json::to_value(r).map_err(AppError::internal)?;
    Ok(Json(shown_to(&auth.principal, doc)))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(partitions))
        .routes(routes!(indexes))
        .routes(routes!(queries))
        .routes(routes!(report))
        .routes(routes!(health))
}
