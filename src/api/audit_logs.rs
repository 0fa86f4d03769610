//! `POST /audit-logs` (writer), `GET /audit-logs` and
//! `GET /audit-logs/summary` (reader).
//!
//! A batch is validated whole before anything is sent, then written with
//! one COPY: one statement, so all of it or nothing.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_postgres::error::SqlState;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit_query::{self, Bucket, BucketCount, Cursor, Filter, LogRow};
use super::auth::{Auth, Reader, Writer};
use super::error::{ApiResult, AppError, AppQuery, Authenticated, ErrorBody, RowError};
use super::AppState;
use crate::db::{server_message, DbError};
use crate::load::{self, AuditRow, Invalid, Origin, Rules, Window, COPY_COLUMNS};
pub use crate::load::{MAX_DETAILS_BYTES, SEVERITIES, STATUSES};

/// Rows per `POST /audit-logs` at most.
pub const MAX_BATCH: usize = 1000;
/// Rows per `GET /audit-logs` page at most.
pub const MAX_PAGE: i64 = 1000;
/// Longest `from`..`to` span a read may ask for: bounds the partitions one
/// request can scan.
pub const MAX_SPAN_DAYS: i64 = 366;

/// One audit event as posted. `created_at` defaults to now; a time with no
/// partition is still stored (in the default partition, which `strata
/// health` reports). The schema states what `load::InputRow::validate`
/// checks; what JSON Schema cannot state (details' size, the time window)
/// is in the descriptions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AuditEventIn {
    user_id: i64,
    /// 1 to 100 characters, no NUL; not in strata's own namespaces `security.`, `admin.`,
    /// `strata.` (in any case, after leading blanks).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^(?![\\s]*([sS][eE][cC][uU][rR][iI][tT][yY]|[aA][dD][mM][iI][nN]|[sS][tT][rR][aA][tT][aA])[.])[^\\x00]*$"
    )]
    action: String,
    /// At most 50 characters, no NUL.
    #[schema(max_length = 50, pattern = "^[^\\x00]*$")]
    resource_type: Option<String>,
    resource_id: Option<i64>,
    /// A JSON object, at most 16 KiB, no NUL (`\\u0000`) anywhere in it, without the key
    /// `_strata` (the marker of strata's own events).
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
    /// IPv4 or IPv6, optionally with a prefix length (`10.0.0.0/8`).
    #[schema(value_type = Option<String>, pattern = "^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(/(3[0-2]|[12]?[0-9]))?|(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:)|([0-9a-fA-F]{1,4}:){6}((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|::([fF]{4}(:0{1,4})?:)?((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|([0-9a-fA-F]{1,4}:){1,4}:((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$")]
    ip_address: Option<String>,
    /// No NUL.
    #[schema(pattern = "^[^\\x00]*$")]
    user_agent: Option<String>,
    #[schema(value_type = Option<StatusIn>)]
    status: Option<String>,
    #[schema(value_type = Option<SeverityIn>)]
    severity: Option<String>,
    /// RFC 3339; default now. Within `[api] accept_past` before now (default: the table's
    /// retention, else 30 days) and `accept_future` after it (default 5 minutes): outside, 422.
    #[schema(value_type = Option<String>, format = DateTime)]
    created_at: Option<String>,
}

/// An audit row's status.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StatusIn {
    Success,
    Failure,
    Error,
    Pending,
    Denied,
}

/// An audit row's severity (syslog's names).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum SeverityIn {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
}

/// A `POST /audit-logs` body: one event, or an array of 1 to 1000.
pub struct AuditBatch;

impl utoipa::PartialSchema for AuditBatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Ref};
        let event = || Ref::from_schema_name("AuditEventIn");
        OneOfBuilder::new()
            .item(event())
            .item(
                ArrayBuilder::new()
                    .items(event())
                    .min_items(Some(1))
                    .max_items(Some(MAX_BATCH)),
            )
            .into()
    }
}

impl ToSchema for AuditBatch {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "AuditEventIn".into(),
            <AuditEventIn as utoipa::PartialSchema>::schema(),
        ));
        <AuditEventIn as ToSchema>::schemas(schemas);
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Inserted {
    pub inserted: usize,
}

fn check_row(raw: &RawValue, rules: &Rules) -> Result<AuditRow, Invalid> {
    load::parse_row(raw.get())?.validate(rules)
}

/// The writer's `created_at` window for `state`'s table: `[api]
/// accept_past` (default: the table's retention, else 30 days) and
/// `accept_future` (default 5 minutes).
pub fn window(state: &AppState) -> Window {
    let api = &state.config.api;
    // Durations past chrono's range (~292 billion years) mean "no bound".
    let chrono = |d| Duration::from_std(d).unwrap_or(Duration::MAX);
    Window {
        past: chrono(api.accept_past(&state.config.tables[0])),
        future: chrono(api.accept_future),
    }
}

/// Parses and validates a batch (one object or an array of them): every
/// row, so that the error lists every bad one.
pub fn validate_batch(body: &[u8], rules: &Rules) -> ApiResult<Vec<AuditRow>> {
    let text = std::str::from_utf8(body)
        .map_err(|_| AppError::bad_request("invalid_json", "the body is not UTF-8"))?;
    let raws: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
    } else {
        serde_json::from_str(text).map(|one| vec![one])
    }
    .map_err(|e| {
        AppError::bad_request(
            "invalid_json",
            format!("the body is not a JSON object or array: {e}"),
        )
    })?;
    if raws.is_empty() {
        return Err(AppError::Unprocessable {
            code: "empty_batch",
            message: "the batch has no rows".into(),
        });
    }
    if raws.len() > MAX_BATCH {
        return Err(AppError::Unprocessable {
            code: "batch_too_large",
            message: format!(
                "the batch has {} rows; at most {MAX_BATCH} are allowed",
                raws.len()
            ),
        });
    }
    let mut rows = Vec::with_capacity(raws.len());
    let mut bad = Vec::new();
    for (index, raw) in raws.into_iter().enumerate() {
        match check_row(raw, rules) {
            Ok(r) => rows.push(r),
            Err(Invalid { field, reason }) => bad.push(RowError {
                index,
                field,
                reason,
            }),
        }
    }
    if !bad.is_empty() {
        return Err(AppError::InvalidRows(bad.len(), bad));
    }
    Ok(rows)
}

async fn copy(
    client: &tokio_postgres::Client,
    state: &AppState,
    rows: &[AuditRow],
) -> Result<(), DbError> {
    let mut data = String::with_capacity(rows.len() * 256);
    for r in rows {
        r.encode(&mut data);
    }
    let sql = format!("COPY {} ({COPY_COLUMNS}) FROM STDIN", state.table());
    let sink = client
        .copy_in(&sql)
        .await
        .map_err(DbError::query("starting COPY"))?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data))
        .await
        .map_err(DbError::query("sending rows"))?;
    sink.finish()
        .await
        .map_err(DbError::query("writing rows"))?;
    Ok(())
}

/// Store one audit event or a batch of up to 1000, all or nothing.
#[utoipa::path(post, path = "/audit-logs", tag = "audit-logs",
    request_body(content = AuditBatch, description = "One event object, or an array of 1 to 1000"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = Inserted),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Bad rows (`error.rows` names each one's index, field and reason); nothing was written", body = ErrorBody),
        Authenticated,
    ))]
async fn post(
    _auth: Auth<Writer>,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Inserted>)> {
    let rules = Rules {
        origin: Origin::Writer(window(&state)),
        now: Utc::now(),
    };
    let rows = validate_batch(&body?, &rules)?;
    let client = state.pool.get().await?;
    match copy(&client, &state, &rows).await {
        Ok(()) => Ok((
            StatusCode::CREATED,
            Json(Inserted {
                inserted: rows.len(),
            }),
        )),
        // What validation did not catch but the column types did: the
        // caller's data, so say why.
        Err(DbError::Query { source, .. })
            if source.code().is_some_and(|c| {
                c.code().starts_with("22")
                    || c.code().starts_with("23")
                    || *c == SqlState::BAD_COPY_FILE_FORMAT
            }) =>
        {
            Err(AppError::Unprocessable {
                code: "rejected_by_database",
                message: server_message(&source),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// PostgreSQL text cannot hold NUL: refused here by name, instead of
/// failing in the database as an internal error.
fn no_nul(params: &[(&str, &Option<String>)]) -> ApiResult<()> {
    for (name, value) in params {
        if value.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(AppError::bad_request(
                "invalid_query",
                format!("{name} contains a NUL character, which PostgreSQL text cannot hold"),
            ));
        }
    }
    Ok(())
}

/// Whether a NUL is in any key or string of `v` (jsonb cannot hold one).
fn has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn time(name: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    crate::cli::parse_when(value)
        .map_err(|e| AppError::bad_request("invalid_query", format!("{name}: {e}")))
}

fn span(from: &str, to: &str) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    let (from, to) = (time("from", from)?, time("to", to)?);
    if to <= from {
        return Err(AppError::bad_request(
            "invalid_query",
            "to must be after from",
        ));
    }
    if to - from > Duration::days(MAX_SPAN_DAYS) {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("from..to spans more than {MAX_SPAN_DAYS} days; ask for a shorter range"),
        ));
    }
    Ok((from, to))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Start, inclusive (RFC 3339 or YYYY-MM-DD). Required, except with `user_id` alone.
    #[param(value_type = Option<When>)]
    from: Option<String>,
    /// End, exclusive. Required (except with `user_id` alone); after `from`, at most 366 days
    /// after it.
    #[param(value_type = Option<When>)]
    to: Option<String>,
    user_id: Option<i64>,
    #[param(pattern = "^[^\\x00]*$")]
    action: Option<String>,
    #[param(pattern = "^[^\\x00]*$")]
    severity: Option<String>,
    #[param(pattern = "^[^\\x00]*$")]
    resource_type: Option<String>,
    resource_id: Option<i64>,
    /// JSON object the row's details must contain, e.g. `{"region":"eu"}`.
    details: Option<String>,
    /// Full-text words in action, resource type, status and details' string values, also inside
    /// dotted, slashed, dashed and underscored values (`login` finds `user.login`).
    #[param(pattern = "^[^\\x00]*$")]
    q: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(
        pattern = "^76313[aA]((3[0-9]){1,18}|2[dD](3[0-9]){1,16})3[aA](2[dD])?(3[0-9]){1,18}$"
    )]
    cursor: Option<String>,
    /// Rows per page (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// A time in a query: RFC 3339, or a date (its midnight, UTC).
pub struct When;

impl utoipa::PartialSchema for When {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type,
        };
        let string = |f| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(f)))
        };
        AnyOfBuilder::new()
            .item(string(KnownFormat::DateTime))
            .item(string(KnownFormat::Date))
            .into()
    }
}

impl ToSchema for When {}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page {
    pub items: Vec<LogRow>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Audit rows in a time range, newest first, with keyset pagination.
#[utoipa::path(get, path = "/audit-logs", tag = "audit-logs", params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page", body = Page),
        (status = 400, description = "A parameter the schema refuses, a missing or inverted range, or a cursor this server did not give out", body = ErrorBody),
        Authenticated,
    ))]
async fn list(
    _auth: Auth<Reader>,
    State(state): State<AppState>,
    AppQuery(p): AppQuery<ListParams>,
) -> ApiResult<Json<Page>> {
    no_nul(&[
        ("action", &p.action),
        ("severity", &p.severity),
        ("resource_type", &p.resource_type),
        ("details", &p.details),
        ("q", &p.q),
        ("cursor", &p.cursor),
    ])?;
    let limit = p.limit.unwrap_or(100);
    if let (None, None) = (&p.from, &p.to) {
        return newest_for_user(&state, &p, limit).await;
    }
    let (from, to) = match (&p.from, &p.to) {
        (Some(f), Some(t)) => span(f, t)?,
        _ => {
            return Err(AppError::bad_request(
                "invalid_query",
                "from and to are required (or neither, with user_id alone)",
            ))
        }
    };
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let details = match &p.details {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v @ serde_json::Value::Object(_)) if !has_nul(&v) => Some(v),
            _ => {
                return Err(AppError::bad_request(
                    "invalid_query",
                    "details must be a JSON object, with no NUL in it",
                ))
            }
        },
    };
    let after = match &p.cursor {
        None => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            AppError::bad_request("invalid_query", "cursor is not one this server gave out")
        })?),
    };
    let filter = Filter {
        from,
        to,
        user_id: p.user_id,
        action: p.action,
        severity: p.severity,
        resource_type: p.resource_type,
        resource_id: p.resource_id,
        details,
        q: p.q,
    };
    let client = state.pool.get().await?;
    let (items, next) = audit_query::list(&client, state.table(), &filter, after, limit).await?;
    Ok(Json(Page {
        items,
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// `user_id` alone, no time range: partitions walked newest to oldest
/// (`user_walk`), the cursor carrying on across them.
async fn newest_for_user(state: &AppState, p: &ListParams, limit: i64) -> ApiResult<Json<Page>> {
    let only_user = p.action.is_none()
        && p.severity.is_none()
        && p.resource_type.is_none()
        && p.resource_id.is_none()
        && p.details.is_none()
        && p.q.is_none();
    let user_id = match (p.user_id, only_user) {
        (Some(u), true) => u,
        _ => {
            return Err(AppError::bad_request(
                "invalid_query",
                "from and to are required, except with user_id and no other filter",
            ))
        }
    };
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let after = match &p.cursor {
        None => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            AppError::bad_request("invalid_query", "cursor is not one this server gave out")
        })?),
    };
    let client = state.pool.get().await?;
    let (items, next) =
        super::user_walk::newest_for_user(&client, state.table(), user_id, after, limit).await?;
    Ok(Json(Page {
        items,
        next_cursor: next.map(|c| c.encode()),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// Start, inclusive (RFC 3339 or YYYY-MM-DD).
    #[param(value_type = When)]
    from: String,
    /// End, exclusive; after `from`, at most 366 days after it.
    #[param(value_type = When)]
    to: String,
    /// hour, day (default) or month; buckets are in UTC.
    bucket: Option<Bucket>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: Bucket,
    pub total: i64,
    pub buckets: Vec<BucketCount>,
}

/// Row counts per time bucket and severity.
#[utoipa::path(get, path = "/audit-logs/summary", tag = "audit-logs", params(SummaryParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Counts", body = Summary),
        (status = 400, description = "A missing, malformed or inverted range, or one over 366 days", body = ErrorBody),
        Authenticated,
    ))]
async fn summary(
    _auth: Auth<Reader>,
    State(state): State<AppState>,
    AppQuery(p): AppQuery<SummaryParams>,
) -> ApiResult<Json<Summary>> {
    let (from, to) = span(&p.from, &p.to)?;
    let bucket = p.bucket.unwrap_or(Bucket::Day);
    let filter = Filter {
        from,
        to,
        ..Filter::default()
    };
    let client = state.pool.get().await?;
    let buckets = audit_query::summary(&client, state.table(), &filter, bucket).await?;
    let total = buckets.iter().map(|b| b.total).sum();
    Ok(Json(Summary {
        from,
        to,
        bucket,
        total,
        buckets,
    }))
}

/// What utoipa cannot derive, added to the served document: `details` as
/// JSON (an object with no NUL anywhere, as jsonb holds; a posted one
/// without strata's marker key), and the query's `details` as a JSON-encoded
/// parameter (`content`, not `schema`).
pub(super) fn refine_openapi(doc: &mut serde_json::Value) {
    use serde_json::json;
    let no_nul = json!({"type": "string", "pattern": "^[^\\x00]*$"});
    let schemas = &mut doc["components"]["schemas"];
    schemas["JsonValue"] = json!({"anyOf": [
        no_nul, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"$ref": "#/components/schemas/JsonObject"},
    ]});
    schemas["JsonObject"] = json!({
        "type": "object",
        "propertyNames": {"pattern": "^[^\\x00]*$"},
        "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
    });
    schemas["DetailsIn"] = json!({
        "type": "object",
        "description": "At most 16 KiB of JSON; the key `_strata` is strata's own.",
        "propertyNames": {"pattern": "^[^\\x00]*$", "not": {"const": crate::load::SERVER_MARKER}},
        "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
    });
    let details = &mut schemas["AuditEventIn"]["properties"]["details"];
    let description = details["description"].take();
    *details = json!({
        "description": description,
        "anyOf": [{"$ref": "#/components/schemas/DetailsIn"}, {"type": "null"}],
    });
    if let Some(params) = doc["paths"]["/audit-logs"]["get"]["parameters"].as_array_mut() {
        for p in params.iter_mut().filter(|p| p["name"] == "details") {
            let obj = p.as_object_mut().expect("a parameter is an object");
            obj.remove("schema");
            obj.insert(
                "content".into(),
                json!({"application/json": {"schema": {"$ref": "#/components/schemas/JsonObject"}}}),
            );
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post, list))
        .routes(routes!(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            origin: Origin::Writer(Window {
                past: Duration::days(30),
                future: Duration::minutes(5),
            }),
            now: Utc::now(),
        }
    }

    fn errors(body: &str) -> Vec<RowError> {
        match validate_batch(body.as_bytes(), &rules()) {
            Err(AppError::InvalidRows(_, rows)) => rows,
            other => panic!("expected invalid rows, got {other:?}"),
        }
    }

    #[test]
    fn a_single_object_or_an_array() {
        let one = validate_batch(br#"{"user_id":1,"action":"login"}"#, &rules()).unwrap();
        assert_eq!(one.len(), 1);
        let two = validate_batch(
            br#"[{"user_id":1,"action":"a","details":{"n":1}},{"user_id":2,"action":"b"}]"#,
            &rules(),
        )
        .unwrap();
        assert_eq!(two[0].details.as_deref(), Some(r#"{"n":1}"#));
    }

    #[test]
    fn bad_rows_are_named_by_index_and_field() {
        let e = errors(
            r#"[{"user_id":1,"action":"ok"},{"user_id":"x","action":"a"},{"user_id":1,"action":"a","colour":1},
                {"user_id":1,"action":"a","severity":"loud"},{"user_id":1,"action":"a","ip_address":"1.2.3"},
                {"user_id":1},{"user_id":1,"action":"a","details":[1]},{"id":5,"user_id":1,"action":"a"}]"#,
        );
        let got: Vec<(usize, Option<&str>)> =
            e.iter().map(|r| (r.index, r.field.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                (1, Some("user_id")),
                (2, Some("colour")),
                (3, Some("severity")),
                (4, Some("ip_address")),
                (5, Some("action")),
                (6, Some("details")),
                (7, Some("id")),
            ],
            "{e:?}"
        );
        let long = "a".repeat(101);
        let e = errors(&format!(r#"{{"user_id":1,"action":"{long}"}}"#));
        assert_eq!(e[0].field.as_deref(), Some("action"));
        assert!(e[0].reason.contains("101"), "{e:?}");
    }

    #[test]
    fn batches_have_bounds() {
        assert!(matches!(
            validate_batch(b"[]", &rules()),
            Err(AppError::Unprocessable {
                code: "empty_batch",
                ..
            })
        ));
        let many = format!(
            "[{}]",
            vec![r#"{"user_id":1,"action":"a"}"#; MAX_BATCH + 1].join(",")
        );
        assert!(matches!(
            validate_batch(many.as_bytes(), &rules()),
            Err(AppError::Unprocessable {
                code: "batch_too_large",
                ..
            })
        ));
        assert!(matches!(
            validate_batch(b"{not json", &rules()),
            Err(AppError::BadRequest { .. })
        ));
        let big = format!(
            r#"{{"user_id":1,"action":"a","details":{{"x":"{}"}}}}"#,
            "y".repeat(MAX_DETAILS_BYTES)
        );
        assert_eq!(errors(&big)[0].field.as_deref(), Some("details"));
    }
}
