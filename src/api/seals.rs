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
use super::error::{ApiResult, AppError, AppJson, AppQuery, Authenticated, ErrorBody};
use super::maintenance::JobAccepted;
use super::AppState;
use crate::ops::{Op, OpError};
use crate::seal::SealOp;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SealsQuery {
    /// A managed table (default: the first).
    #[param(min_length = 1, max_length = 257, pattern = "^[^\\x00]*$")]
    pub table_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A managed table (default: the first).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 257, pattern = "^[^\\x00]*$")]
    pub table_name: Option<String>,
    /// One period's rows (`2025-03`, or a day `2025-03-01`); the chain is checked whole anyway.
    #[serde(default)]
    #[schema(value_type = Option<Period>)]
    pub period: Option<String>,
}

/// The managed table `name` (the schema's rules first: 400), else 404.
pub(super) fn spec<'a>(
    state: &'a AppState,
    name: Option<&str>,
) -> ApiResult<&'a crate::config::TableSpec> {
    if let Some(n) = name {
        super::maintenance::check_table_name(n)?;
    }
    state.config.table(name).map_err(|e| AppError::Missing {
        code: "unknown_table",
        message: e.to_string(),
    })
}

/// A period as the OpenAPI document states it: `YYYY-MM` or a date.
pub struct Period;

impl utoipa::PartialSchema for Period {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type,
        };
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]{4}-(0[1-9]|1[0-2])$")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))),
            )
            .into()
    }
}

impl ToSchema for Period {}

/// Whether `p` has the shape [`Period`] states (400 if not; whether the
/// table has such a period is the caller's to say).
pub(super) fn check_period(p: &str) -> ApiResult<()> {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = match p.len() {
        7 => {
            p.as_bytes()[4] == b'-'
                && digits(&p[..4])
                && digits(&p[5..])
                && (1..=12).contains(&p[5..].parse::<u32>().unwrap_or(0))
        }
        10 => {
            digits(&p[..4])
                && chrono::NaiveDate::parse_from_str(p, "%Y-%m-%d").is_ok()
                && p.as_bytes()[4] == b'-'
                && p.as_bytes()[7] == b'-'
                && digits(&p[5..7])
                && digits(&p[8..])
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "invalid_period",
            format!("period {p:?} is neither YYYY-MM nor a date YYYY-MM-DD"),
        ))
    }
}

/// The table's seals in chain order, its closed periods not sealed yet and
/// the last verification's outcome.
#[utoipa::path(get, path = "/admin/database/seals", tag = "seals", params(SealsQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Seals", body = Object),
        (status = 400, description = "A `table_name` the schema refuses", body = ErrorBody),
        (status = 404, description = "Not a managed table", body = ErrorBody),
        Authenticated))]
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
        (status = 400, description = "Malformed JSON, or a field the schema refuses", body = ErrorBody),
        (status = 404, description = "Not a managed table", body = ErrorBody),
        (status = 409, description = "The table is busy", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Wrong field types or unknown fields", body = ErrorBody),
        Authenticated,
    ))]
async fn verify(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    AppJson(req): AppJson<VerifyRequest>,
) -> ApiResult<(StatusCode, Json<JobAccepted>)> {
    if let Some(p) = &req.period {
        check_period(p)?;
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
