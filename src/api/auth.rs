//! Bearer-token authentication and role checks, as an extractor: a handler
//! that takes `Auth<Admin>` cannot run without an admin token, and the
//! check is visible in its signature.
//!
//! Parts extractors run before the body is read, so an unauthenticated
//! request is a 401 whatever its body holds.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::AppError;
use super::events::{self, RequestContext};
use super::tokens::{self, Principal, Role};
use super::AppState;

/// What every refused token is told.
pub const INVALID_TOKEN: &str = "the bearer token is not valid";

/// The role a route requires.
pub trait Requirement {
    const ROLE: Role;
}

/// Maintenance and everything else.
pub struct Admin;
/// Stats, report, health, jobs and audit-log reads.
pub struct Reader;
/// `POST /audit-logs`.
pub struct Writer;

impl Requirement for Admin {
    const ROLE: Role = Role::Admin;
}
impl Requirement for Reader {
    const ROLE: Role = Role::Reader;
}
impl Requirement for Writer {
    const ROLE: Role = Role::Writer;
}

/// Refuses a request whose network is over the failed-auth limit: a 429
/// counted in memory, with no database query at all.
pub(crate) fn throttle(state: &AppState, ctx: &RequestContext) -> Result<(), AppError> {
    match state.guard.failed_auth.exhausted(&ctx.source()) {
        None => Ok(()),
        Some(wait) => {
            state.metrics.refused(events::RATE_LIMITED);
            state
                .events
                .rate_limited(ctx, "too many refused requests from this network");
            Err(AppError::TooManyRequests(wait))
        }
    }
}

/// A 401, counted against the caller's network.
async fn unauthorized(
    state: &AppState,
    ctx: &RequestContext,
    reason: &str,
    message: &str,
) -> AppError {
    let _ = state.guard.failed_auth.take(&ctx.source());
    state.metrics.refused(events::AUTH_FAILED);
    state
        .events
        .refused(ctx, events::AUTH_FAILED, reason, 0)
        .await;
    AppError::Unauthorized(message.into())
}

/// Who the bearer token belongs to: from the token cache, else (unless the
/// network is over its failed-auth limit) from the database.
async fn principal(
    parts: &Parts,
    state: &AppState,
    ctx: &RequestContext,
) -> Result<Principal, AppError> {
    let Some(token) = bearer(parts) else {
        throttle(state, ctx)?;
        return Err(unauthorized(
            state,
            ctx,
            "missing bearer token",
            "this route needs an `Authorization: Bearer <token>` header (see `strata token create`)",
        )
        .await);
    };
    let hash = tokens::hash(token);
    if let Some(p) = state.guard.tokens.get(&hash) {
        return Ok(p);
    }
    throttle(state, ctx)?;
    if !tokens::well_formed(token) {
        let reason = tokens::Refused::Malformed.as_str();
        return Err(unauthorized(state, ctx, reason, INVALID_TOKEN).await);
    }
    // Even a checkout costs a round trip (the pool's recycling query).
    let client = state.pool.get().await?;
    let found = tokens::authenticate(&client, token).await?;
    drop(client);
    match found {
        Ok(p) => {
            state.guard.tokens.put(hash, p.clone());
            Ok(p)
        }
        // One message whatever the reason (the event keeps it): a caller
        // must not learn that a token existed and was revoked.
        Err(refused) => Err(unauthorized(state, ctx, refused.as_str(), INVALID_TOKEN).await),
    }
}

/// An authenticated caller whose role allows `R`.
pub struct Auth<R> {
    pub principal: Principal,
    pub ctx: RequestContext,
    _role: PhantomData<R>,
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl<R: Requirement> FromRequestParts<AppState> for Auth<R> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let ctx = RequestContext::from_parts(parts);
        let principal = principal(parts, state, &ctx).await?;
        if !principal.role.allows(R::ROLE) {
            let reason = format!(
                "token {} has role {}; this route needs {}",
                principal.token_id,
                principal.role,
                R::ROLE
            );
            state.metrics.refused(events::FORBIDDEN);
            state
                .events
                .refused(&ctx, events::FORBIDDEN, &reason, principal.token_id)
                .await;
            return Err(AppError::Forbidden(reason));
        }
        Ok(Auth {
            principal,
            ctx,
            _role: PhantomData,
        })
    }
}
