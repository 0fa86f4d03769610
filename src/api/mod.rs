//! The admin HTTP API behind `strata serve`: axum on tokio, a
//! deadpool-postgres pool in the state, bearer tokens with roles,
//! maintenance as background jobs, audit-log writes and reads, metrics and
//! an OpenAPI document generated from the handlers.
//!
//! Routes sit beside their handlers in one file per resource; each file's
//! `router()` registers them through `utoipa_axum::routes!`, which adds a
//! route to the router and to the OpenAPI document at once, so the two
//! cannot disagree.

mod archives;
mod audit_logs;
pub mod audit_query;
mod auth;
mod error;
pub mod events;
pub mod guard;
mod inflight;
mod jobs;
pub(crate) mod maintenance;
mod metrics;
pub mod privileges;
pub(crate) mod redact;

mod seals;
mod server;
mod stats;
mod system;
pub mod tokens;
pub mod user_walk;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::net::TcpListener;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use audit_logs::{validate_batch, MAX_BATCH, MAX_DETAILS_BYTES, SEVERITIES, STATUSES};
pub(crate) use auth::throttle;
pub use error::{AppError, ErrorBody, RowError};
pub use events::{Event, RequestContext, SecurityEvents};
pub use jobs::{JobRunner, SHUTDOWN_REASON};
pub use metrics::{Metrics, ALERTING_MAX_AGE};
pub use server::tls_config;
pub use tokens::{Principal, Role, TokenInfo};

use crate::config::Config;
use crate::db::QualifiedName;

/// Limits and timeouts of one server.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// A request still running after this is answered 503 (jobs are not
    /// requests: they run on after their 202).
    pub request_timeout: Duration,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// At shutdown, how long running jobs may go on before they are cancelled.
    pub job_grace: Duration,
    /// Database connections at most; running jobs hold one each.
    pub pool_size: usize,
    /// `statement_timeout` of API sessions: a statement whose cancel request
    /// got lost still ends on its own (by default with its request).
    pub statement_timeout: Duration,
    /// `lock_timeout` of API sessions: a request never waits longer than
    /// this in a lock queue (it is answered 503 with Retry-After instead).
    pub lock_timeout: Duration,
    /// How long a request waits for a free pooled connection before a 503.
    pub pool_wait: Duration,
    /// A client must send a request's head within this (slowloris).
    pub header_timeout: Duration,
    /// Open connections at most; more are closed as they arrive.
    pub max_connections: usize,
    /// A kept-alive connection is closed (gracefully) after this long.
    pub max_connection_age: Duration,
    /// HTTPS with this certificate (`serve --tls-cert/--tls-key`); plain
    /// HTTP when `None`. See [`ServeOptions::tls_on`].
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The role every request session runs as (`-c role=…` at connect, so
    /// RESET ALL keeps it); `None`: the login role. See [`privileges`].
    pub role: Option<String>,
    /// How long an accepted token is used without looking it up again (a
    /// revocation takes effect within this). Zero: no cache.
    pub token_cache_ttl: Duration,
    /// Refused requests per source network before they get 429; `None`:
    /// no limit.
    pub failed_auth_limit: Option<guard::RateLimit>,
    /// `/healthz` and `/openapi.json` requests per source network.
    pub open_route_limit: Option<guard::RateLimit>,
    /// `/healthz` asks the database at most this often.
    pub health_check_every: Duration,
}

impl ServeOptions {
    /// Whether clients reach this server over TLS: a cookie it sets must
    /// then be `Secure`.
    pub fn tls_on(&self) -> bool {
        self.tls.is_some()
    }

    /// Startup options of every pooled session. RESET ALL (the pool's
    /// recycling) returns to these, so a handler cannot leave them lifted.
    /// `client_connection_check_interval` makes a backend notice a closed
    /// connection while it waits.
    fn session_options(&self) -> String {
        let mut options = format!(
            "-c statement_timeout={} -c lock_timeout={} -c client_connection_check_interval=1000 \
             -c idle_in_transaction_session_timeout={}",
            self.statement_timeout.as_millis().max(1),
            self.lock_timeout.as_millis().max(1),
            self.request_timeout.as_millis().max(1),
        );
        // A plain name (checked by `privileges::role_name`), so it needs no
        // escaping in the options string.
        if let Some(role) = &self.role {
            options.push_str(&format!(" -c role={role}"));
        }
        options
    }
}

impl ServeOptions {
    /// What `strata serve` runs with: a 5 s token cache and the rate limits
    /// of [`guard::RateLimit`].
    pub fn guarded() -> ServeOptions {
        ServeOptions {
            token_cache_ttl: guard::TOKEN_CACHE_TTL,
            failed_auth_limit: Some(guard::RateLimit::FAILED_AUTH),
            open_route_limit: Some(guard::RateLimit::OPEN_ROUTES),
            ..ServeOptions::default()
        }
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            request_timeout: Duration::from_secs(30),
            // A full batch of 1000 rows with details near their limit fits.
            body_limit: 16 * 1024 * 1024,
            job_grace: Duration::from_secs(30),
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(5),
            pool_wait: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            // Below the usual 1024-descriptor limit, leaving room for the
            // pool, the log and jobs.
            max_connections: 512,
            max_connection_age: Duration::from_secs(300),
            tls: None,
            role: None,
            // The library's default has no token cache and no rate limits
            // (a revocation is seen at once, a test may flood); `strata
            // serve` turns them on (`ServeOptions::guarded`).
            token_cache_ttl: Duration::ZERO,
            failed_auth_limit: None,
            open_route_limit: None,
            health_check_every: Duration::from_secs(1),
        }
    }
}

/// Everything a handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub config: Arc<Config>,
    pub jobs: JobRunner,
    pub events: Arc<SecurityEvents>,
    pub metrics: Arc<Metrics>,
    pub options: Arc<ServeOptions>,
    pub guard: Arc<guard::Guard>,
}

impl AppState {
    pub fn new(pool: Pool, config: Config, options: ServeOptions) -> AppState {
        let table = config.tables[0].name.clone();
        AppState {
            events: Arc::new(SecurityEvents::new(pool.clone(), table)),
            pool,
            config: Arc::new(config),
            jobs: JobRunner::default(),
            metrics: Arc::new(Metrics::default()),
            guard: Arc::new(guard::Guard::new(&options)),
            options: Arc::new(options),
        }
    }

    /// The audit table: the first managed table, where `POST /audit-logs`
    /// writes and security events go.
    pub fn table(&self) -> &QualifiedName {
        &self.config.tables[0].name
    }
}

/// A connection pool for `url` with the default [`ServeOptions`] limits.
pub fn pool(url: &str, size: usize) -> Result<Pool, crate::db::DbError> {
    pool_with(
        url,
        &ServeOptions {
            pool_size: size,
            ..ServeOptions::default()
        },
    )
}

/// A connection pool for `url`. Connections are tagged
/// `application_name=strata`, like every other strata session, and carry
/// the request limits of `options` as session defaults.
pub fn pool_with(url: &str, options: &ServeOptions) -> Result<Pool, crate::db::DbError> {
    let size = options.pool_size;
    let (mut config, tls) = crate::db::tls::parse(url)?;
    if config.get_application_name().is_none() {
        config.application_name("strata");
    }
    let session = match config.get_options() {
        Some(theirs) => format!("{theirs} {}", options.session_options()),
        None => options.session_options(),
    };
    config.options(&session);
    // Clean, not Fast: a handler cut off by the request timeout may leave a
    // session setting behind (health sets lock_timeout); RESET ALL and
    // pg_advisory_unlock_all on the way back into the pool undo it.
    let cancel_tls = tls.clone();
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Clean,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size.max(2))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.pool_wait))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .post_create(deadpool_postgres::Hook::sync_fn({
            let tls = cancel_tls.clone();
            move |w, _| inflight::checkout(w, &tls)
        }))
        .pre_recycle(deadpool_postgres::Hook::sync_fn(|w, _| {
            inflight::before_recycle(w)
        }))
        .post_recycle(deadpool_postgres::Hook::sync_fn(move |w, _| {
            inflight::checkout(w, &cancel_tls)
        }))
        .build()
        .expect("the runtime is set, so building the pool cannot fail"))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "strata admin API", description = "Partition maintenance, statistics and audit logs of a PostgreSQL audit_logs table. Authenticate with `Authorization: Bearer <token>` (`strata token create`)."),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody, RowError, audit_logs::When)),
    tags(
        (name = "stats", description = "Reader: statistics, report, health"),
        (name = "maintenance", description = "Admin: vacuum, analyze, reindex, partition maintenance, as jobs"),
        (name = "jobs", description = "Reader: job state and results"),
        (name = "audit-logs", description = "Writer: POST; reader: GET"),
        (name = "system", description = "Liveness, metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(stats::router())
        .merge(maintenance::router())
        .merge(jobs::router())
        .merge(audit_logs::router())
        .merge(system::router())
        .merge(seals::router())
        .merge(archives::router())
}

/// The OpenAPI document of every route [`app`] serves, as utoipa derives
/// it (`/openapi.json` serves [`document`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// The document `/openapi.json` serves: [`openapi`] with the schemas
/// utoipa cannot express (`audit_logs::refine_openapi`).
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi()).expect("the OpenAPI document serializes");
    audit_logs::refine_openapi(&mut doc);
    doc
}

fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        serde_json::to_string_pretty(&document()).expect("the OpenAPI document serializes")
    })
}

/// Request ids: a per-process random prefix and a counter, cheap and
/// unique enough to find one request's log lines.
#[derive(Clone)]
struct NextRequestId {
    prefix: Arc<str>,
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl MakeRequestId for NextRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// A request's work, which cancels its statements when it is dropped
/// unfinished (timed out, or its client went away). The scope is abandoned
/// in `drop` before the work itself is dropped, so its connections are
/// marked before they return to the pool.
struct RequestWork<F> {
    scope: inflight::Scope,
    done: bool,
    future: std::pin::Pin<Box<F>>,
}

impl<F> Drop for RequestWork<F> {
    fn drop(&mut self) {
        if !self.done {
            self.scope.abandon();
        }
    }
}

async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.options.request_timeout;
    let scope = inflight::Scope::new();
    let mut work = RequestWork {
        scope: scope.clone(),
        done: false,
        future: Box::pin(scope.run(next.run(req))),
    };
    match tokio::time::timeout(limit, &mut work.future).await {
        Ok(r) => {
            work.done = true;
            r
        }
        Err(_) => {
            drop(work);
            AppError::Timeout(limit.as_millis()).into_response()
        }
    }
}

/// Longest client-supplied `x-request-id` kept.
const MAX_REQUEST_ID: usize = 64;

/// A client's `x-request-id` is echoed and stored in security events, so
/// only a short, plain one is kept; anything else is dropped and replaced
/// by the server's own.
async fn plain_request_id(mut req: Request) -> Request {
    let plain = req.headers().get("x-request-id").is_none_or(|v| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    });
    if !plain {
        req.headers_mut().remove("x-request-id");
    }
    req
}

async fn not_found(State(state): State<AppState>, req: Request) -> AppError {
    state
        .metrics
        .observe("unmatched", req.method().as_str(), 404, 0.0);
    AppError::NotFound(format!("no route {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> AppError {
    AppError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.uri().path()
    ))
}

/// The whole API as one router (STYLE: tests drive it with `oneshot`).
pub fn app(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    // The dashboard (`crate::web`) at `/`, beside the API's own routes.
    let router = router.merge(crate::web::router());
    let prefix: String = {
        use rand::Rng;
        let n: u32 = rand::thread_rng().gen();
        format!("{n:08x}")
    };
    let ids = NextRequestId {
        prefix: prefix.into(),
        counter: Default::default(),
    };
    router
        // Route layers run after routing, so metrics see the route template.
        .route_layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.options.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        // Outermost last: the id is set first, then seen by the trace span,
        // then copied to the response.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                // One line per request (status, latency) at the server's default level.
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(ids))
        .layer(middleware::map_request(plain_request_id))
        .with_state(state)
}

/// How often aggregated refusals of past minutes are written.
const FLUSH_EVERY: Duration = Duration::from_secs(15);

/// Serves until `shutdown` resolves: then stops accepting, finishes
/// in-flight requests, gives running jobs `job_grace` to end (cancelling
/// the rest, which record why), and writes pending security events.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let events = state.events.clone();
    let flusher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tick.tick().await;
            events.flush(false).await;
        }
    });
    let served = server::run(app(state.clone()), listener, &state.options, shutdown).await;
    tracing::info!("no longer accepting requests; waiting for running jobs");
    state.jobs.shutdown(state.options.job_grace).await;
    flusher.abort();
    state.events.flush(true).await;
    served
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
