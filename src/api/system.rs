//! `GET /healthz` (no auth), `GET /metrics` (reader) and `GET /openapi.json` (no auth).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Reader};
use super::error::{ApiResult, AppError, Authenticated, ErrorBody, Open};
use super::events::{self, RequestContext};
use super::AppState;

/// How long `/healthz` waits for the database before saying it is down.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// `ok`
    pub status: String,
    /// `reachable`
    pub database: String,
}

/// Liveness, and whether the database answers.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses(
        (status = 200, description = "Up, database reachable", body = Liveness),
        (status = 503, description = "Database unreachable", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait"))),
        Open,
    ))]
async fn healthz(State(state): State<AppState>, ctx: RequestContext) -> ApiResult<Json<Liveness>> {
    open_route(&state, &ctx)?;
    let check = async {
        let client = state.pool.get().await.map_err(|e| e.to_string())?;
        client
            .simple_query("SELECT 1 AS strata_healthz")
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let timed = async {
        tokio::time::timeout(DB_CHECK_TIMEOUT, check)
            .await
            .unwrap_or_else(|_| Err(TIMED_OUT.to_string()))
    };
    // Shared: a flood of probes costs one database check a second.
    match state.guard.health.check(timed).await {
        Ok(()) => Ok(Json(Liveness {
            status: "ok".into(),
            database: "reachable".into(),
        })),
        Err(e) if e == TIMED_OUT => Err(AppError::Unavailable(
            "the database did not answer in time".into(),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "healthz: database unreachable");
            Err(AppError::Unavailable("the database is unreachable".into()))
        }
    }
}

/// What a timed-out check records (a database error never reads like this).
const TIMED_OUT: &str = "timeout: no answer within the check's limit";

/// Routes anyone may call are limited per source network, in memory.
fn open_route(state: &AppState, ctx: &RequestContext) -> Result<(), AppError> {
    match state.guard.open_routes.take(&ctx.source()) {
        None => Ok(()),
        Some(wait) => {
            state.metrics.refused(events::RATE_LIMITED);
            state
                .events
                .rate_limited(ctx, "too many unauthenticated requests from this network");
            Err(AppError::TooManyRequests(wait))
        }
    }
}

/// Prometheus text exposition: requests by route and status, latencies,
/// pool, jobs, partitions and bytes per managed table.
#[utoipa::path(get, path = "/metrics", tag = "system",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        Authenticated,
    ))]
async fn metrics(_auth: Auth<Reader>, State(state): State<AppState>) -> Response {
    let text = super::metrics::render(&state).await;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3.1 description of every route", body = Object), Open))]
async fn openapi(State(state): State<AppState>, ctx: RequestContext) -> Response {
    if let Err(e) = open_route(&state, &ctx) {
        return e.into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi_json(),
    )
        .into_response()
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}
