//! The API's one error type. Every failure leaves as
//! `{"error":{"code","message"}}` with its status; a 5xx says only that
//! something failed and logs the detail, because server error text can name
//! tables, hosts or SQL that callers have no business seeing.

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::db::DbError;
use crate::jobs::JobError;
use crate::maintenance::MaintenanceError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `unauthorized`, `unknown_table`, `invalid_rows`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// For `invalid_rows`: each bad row's index (0-based), field and reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<RowError>>)]
    pub rows: Option<Vec<RowError>>,
}

/// One refused row of a `POST /audit-logs` batch.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct RowError {
    pub index: usize,
    /// The column at fault, when one is.
    pub field: Option<String>,
    pub reason: String,
}

/// What every route with a bearer token can answer besides its own
/// responses (`responses(..., Authenticated)` in `utoipa::path`).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Authenticated {
    /// No, a malformed, an unknown or a revoked token (one message for all).
    #[response(status = 401, headers(("WWW-Authenticate" = String, description = "`Bearer`")))]
    Unauthorized(ErrorBody),
    /// The token's role does not allow this route.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Too many refused requests from the caller's network.
    #[response(status = 429, headers(("Retry-After" = String, description = "Seconds to wait")))]
    TooManyRequests(ErrorBody),
    /// The database is busy or unreachable, or the request took too long.
    #[response(status = 503, headers(("Retry-After" = String, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
}

/// What the routes anyone may call can answer besides their own.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Open {
    /// Too many requests from the caller's network.
    #[response(status = 429, headers(("Retry-After" = String, description = "Seconds to wait")))]
    TooManyRequests(ErrorBody),
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{0} of the batch's rows are invalid; nothing was written")]
    InvalidRows(usize, Vec<RowError>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A well-formed request naming something that does not exist (a
    /// table, an archive): 404 with a code saying what was not found.
    #[error("{message}")]
    Missing { code: &'static str, message: String },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the request took longer than {0} ms")]
    Timeout(u128),
    #[error("{0}")]
    Unavailable(String),
    /// Too many refused requests from the caller's network: come back after
    /// this many seconds (answered without touching the database).
    #[error("too many refused requests from this network; retry in {0} s")]
    TooManyRequests(u64),
    /// Logged whole, answered as a bare 500.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal(e.to_string())
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            AppError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            AppError::InvalidRows(..) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_rows"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Missing { code, .. } => (StatusCode::NOT_FOUND, code),
            AppError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "already_running"),
            AppError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl AppError {
    /// The code and message a caller is told: an internal error's detail is
    /// for the server log only. Events that readers can read store this too.
    pub fn public(&self) -> (&'static str, String) {
        let (_, code) = self.parts();
        let message = match self {
            AppError::Internal(_) => INTERNAL_MESSAGE.to_string(),
            other => other.to_string(),
        };
        (code, message)
    }
}

/// What a 500 says.
pub const INTERNAL_MESSAGE: &str = "internal error; the server log has the details";

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, _) = self.parts();
        if let AppError::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let (code, message) = self.public();
        let unauthorized = matches!(self, AppError::Unauthorized(_));
        let retry = matches!(self, AppError::Unavailable(_) | AppError::Timeout(_));
        let limited = match &self {
            AppError::TooManyRequests(secs) => Some(*secs),
            _ => None,
        };
        let rows = match self {
            AppError::InvalidRows(_, rows) => Some(rows),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                rows,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = limited {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs.max(1)),
            );
        }
        if retry {
            // Busy, not broken: tell well-behaved clients when to come back.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if unauthorized {
            // RFC 6750: say which scheme would have worked.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECONDS: &str = "2";

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        use tokio_postgres::error::SqlState;
        // The session limits (lock_timeout, statement_timeout, a cancelled
        // statement) mean the database is busy, not that the request is bad.
        match e.code() {
            Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::QUERY_CANCELED => {
                tracing::warn!(error = %e, "a request hit its database time limit");
                AppError::Unavailable(
                    "the database is busy (a lock or statement time limit was reached); try again"
                        .into(),
                )
            }
            _ => AppError::Internal(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for AppError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        // tokio-postgres's Display leaves out why (a refused certificate).
        let detail = match &e {
            deadpool_postgres::PoolError::Backend(pg) => crate::db::server_message(pg),
            other => other.to_string(),
        };
        tracing::warn!(error = %detail, "no database connection");
        AppError::Unavailable("no database connection is available; try again".into())
    }
}

impl From<JobError> for AppError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::AlreadyRunning { .. } => AppError::Conflict(e.to_string()),
            JobError::NotFound(_) => AppError::NotFound(e.to_string()),
            JobError::Db(e) => e.into(),
        }
    }
}

impl From<MaintenanceError> for AppError {
    fn from(e: MaintenanceError) -> Self {
        match e {
            // Well-formed (the OpenAPI document says what a name may be),
            // naming no managed table or partition.
            MaintenanceError::UnknownTarget { .. } => AppError::Missing {
                code: "unknown_table",
                message: e.to_string(),
            },
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<BytesRejection> for AppError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge(r.body_text())
        } else {
            AppError::bad_request("bad_body", r.body_text())
        }
    }
}

/// `Json` whose refusals (malformed JSON, wrong types, too large) keep the
/// API's error shape.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(JsonRejection::BytesRejection(e)) => return Err(e.into()),
            Err(e) => return Err(AppError::bad_request("invalid_json", e.body_text())),
        };
        // serde would also read a struct from an array of its fields.
        if !value.is_object() {
            return Err(AppError::Unprocessable {
                code: "invalid_json",
                message: "the body must be a JSON object".into(),
            });
        }
        serde_json::from_value(value)
            .map(AppJson)
            .map_err(|e| AppError::Unprocessable {
                code: "invalid_json",
                message: e.to_string(),
            })
    }
}

/// `Query` whose refusals keep the API's error shape.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| AppQuery(q.0))
            .map_err(|e: QueryRejection| AppError::bad_request("invalid_query", e.body_text()))
    }
}

pub type ApiResult<T> = Result<T, AppError>;
