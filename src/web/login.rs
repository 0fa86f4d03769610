//! `GET/POST /login` and `POST /logout`. A token is verified by
//! `api::tokens::authenticate`, exactly as a bearer token is; failures are
//! `security.auth_failed` events aggregated like the API's (per source
//! network and minute), successes and logouts are events of their own.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::json;

use crate::api::events::{self, Event, RequestContext};
use crate::api::tokens::{self, Role};
use crate::api::AppState;

use super::csrf;
use super::layout;
use super::session::{self, Sessions, Viewer};

pub const LOGIN: &str = "security.dashboard_login";
pub const LOGOUT: &str = "security.dashboard_logout";

/// What every refused login is told, whatever the reason (the event keeps it).
const REFUSED: &str = "That token is not valid.";

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// Whether cookies get `Secure`: when `strata serve` speaks TLS itself
/// (`--tls-cert`), or a request says it came over TLS (an `https` URI).
fn over_tls(state: &AppState, uri: &axum::http::Uri) -> bool {
    state.options.tls_on() || uri.scheme_str() == Some("https")
}

pub async fn form() -> Response {
    layout::login(None, 200)
}

async fn refuse(state: &AppState, ctx: &RequestContext, reason: &str) -> Response {
    // Counted against the network like a refused bearer token.
    let _ = state.guard.failed_auth.take(&ctx.source());
    state.metrics.refused(events::AUTH_FAILED);
    state
        .events
        .refused(ctx, events::AUTH_FAILED, reason, 0)
        .await;
    layout::login(Some(REFUSED), 401)
}

pub async fn submit(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    ctx: RequestContext,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    // A network over the failed-auth limit gets no token lookup at all.
    if let Err(crate::api::AppError::TooManyRequests(wait)) = crate::api::throttle(&state, &ctx) {
        let mut page = layout::login(
            Some("Too many refused logins from your network; wait and try again."),
            429,
        );
        if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
            page.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return page;
    }
    if !csrf::same_origin(&headers) {
        return refuse(&state, &ctx, "dashboard login from another origin").await;
    }
    let Ok(f) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return refuse(&state, &ctx, "dashboard login without a token").await;
    };
    let client = match state.pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no connection for a login");
            return layout::login(Some("The database is not reachable; try again."), 503);
        }
    };
    let principal = match tokens::authenticate(&client, f.token.trim()).await {
        Ok(Ok(p)) => p,
        Ok(Err(refused)) => {
            drop(client);
            return refuse(&state, &ctx, refused.as_str()).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not check a login token");
            return layout::login(Some("The database is not reachable; try again."), 503);
        }
    };
    drop(client);
    if principal.role == Role::Writer {
        let reason = format!(
            "token {} has role writer; the dashboard needs reader or admin",
            principal.token_id
        );
        state.metrics.refused(events::FORBIDDEN);
        state
            .events
            .refused(&ctx, events::FORBIDDEN, &reason, principal.token_id)
            .await;
        return layout::login(
            Some("Writer tokens cannot open the dashboard; use a reader or admin token."),
            403,
        );
    }
    let (id, s) = sessions.open(principal);
    let mut e = Event::for_request(
        &ctx,
        LOGIN,
        s.principal.token_id,
        json!({"token_name": s.principal.name, "role": s.principal.role}),
    );
    e.resource_type = Some("dashboard");
    state.events.record(e).await;
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(&id, over_tls(&state, &uri)),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

pub async fn logout(
    viewer: Viewer,
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    #[derive(Deserialize)]
    struct Empty {}
    if let Err(refused) = csrf::form::<Empty>(&state, &viewer, &headers, &body).await {
        return refused;
    }
    sessions.close(&viewer.id);
    let p = &viewer.session.principal;
    let mut e = Event::for_request(
        &viewer.ctx,
        LOGOUT,
        p.token_id,
        json!({"token_name": p.name}),
    );
    e.resource_type = Some("dashboard");
    state.events.record(e).await;
    (
        [(
            header::SET_COOKIE,
            session::clear_cookie(over_tls(&state, &uri)),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}
