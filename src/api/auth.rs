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
        let Some(token) = bearer(parts) else {
            state.metrics.refused(events::AUTH_FAILED);
            state
                .events
                .refused(&ctx, events::AUTH_FAILED, "missing bearer token", 0)
                .await;
            return Err(AppError::Unauthorized(
                "this route needs an `Authorization: Bearer <token>` header (see `strata token create`)".into(),
            ));
        };
        let client = state.pool.get().await?;
        let principal = match tokens::authenticate(&client, token).await? {
            Ok(p) => p,
            Err(refused) => {
                drop(client);
                state.metrics.refused(events::AUTH_FAILED);
                state
                    .events
                    .refused(&ctx, events::AUTH_FAILED, refused.as_str(), 0)
                    .await;
                // One message whatever the reason (the event keeps it): a
                // caller must not learn that a token existed and was revoked.
                return Err(AppError::Unauthorized(INVALID_TOKEN.into()));
            }
        };
        drop(client);
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
