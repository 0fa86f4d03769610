//! Dashboard sessions: opened by logging in with an API token, kept in
//! memory (only the SHA-256 of the random session id is stored), ended by
//! logout, by idling past [`IDLE`], at [`ABSOLUTE`] after login, or when
//! the token is revoked.
//!
//! In memory rather than in a table: a session is worth less than the
//! token that opened it (log in again after a restart), the store needs no
//! migration, and nothing of it can leak through a backup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api::events::{self, RequestContext};
use crate::api::tokens::{self, Principal, Role};
use crate::api::AppState;

use super::layout;

/// The cookie's name.
pub const COOKIE: &str = "strata_session";
/// A session unused this long is over.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session is over this long after login, however busy.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first when a login finds it full.
const MAX_SESSIONS: usize = 10_000;
/// Random bytes of a session id and of a CSRF token.
const SECRET_BYTES: usize = 32;

/// One logged-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub principal: Principal,
    /// Sent in every form and checked on every POST (`csrf.rs`).
    pub csrf: String,
    created: Instant,
    seen: Instant,
}

impl Session {
    fn live_at(&self, now: Instant) -> bool {
        now.duration_since(self.seen) < IDLE && now.duration_since(self.created) < ABSOLUTE
    }
}

/// The server's sessions, keyed by the SHA-256 of their id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

pub fn secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A new session for `principal`; returns the id for the cookie (kept
    /// nowhere else).
    pub fn open(&self, principal: Principal) -> (String, Session) {
        self.open_at(principal, Instant::now())
    }

    fn open_at(&self, principal: Principal, now: Instant) -> (String, Session) {
        let id = secret();
        let session = Session {
            principal,
            csrf: secret(),
            created: now,
            seen: now,
        };
        let mut map = self.map.lock().expect("session store poisoned");
        map.retain(|_, s| s.live_at(now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(key(&id), session.clone());
        (id, session)
    }

    /// The live session of `id`, marked as used now.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.map.lock().expect("session store poisoned");
        let k = key(id);
        let s = map.get_mut(&k)?;
        if !s.live_at(now) {
            map.remove(&k);
            return None;
        }
        s.seen = now;
        Some(s.clone())
    }

    pub fn close(&self, id: &str) {
        self.map
            .lock()
            .expect("session store poisoned")
            .remove(&key(id));
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("session store poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session cookie's value in a request, if any.
pub fn cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == SECRET_BYTES * 2 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Set-Cookie` for a new session: HttpOnly, SameSite=Strict, Path=/, and
/// Secure when the dashboard is served over TLS (`secure`). No Max-Age: the
/// browser forgets it when closed; the server enforces the expiries.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

/// The store, reached through the router's extension.
pub fn store(parts: &Parts) -> Arc<Sessions> {
    parts
        .extensions
        .get::<Arc<Sessions>>()
        .cloned()
        .expect("the dashboard router adds the session store")
}

/// A request from a logged-in browser. Without a live session a GET is
/// sent to the login page and anything else is refused (403, recorded).
pub struct Viewer {
    pub session: Session,
    pub ctx: RequestContext,
    /// The cookie's session id (for logout).
    pub id: String,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.session.principal.role == Role::Admin
    }

    /// Refuses (403, a `security.forbidden` event) unless the viewer is an admin.
    pub async fn require_admin(&self, state: &AppState) -> Result<(), Response> {
        if self.is_admin() {
            return Ok(());
        }
        let p = &self.session.principal;
        let reason = format!(
            "dashboard session of token {} has role {}; this needs admin",
            p.token_id, p.role
        );
        state.metrics.refused(events::FORBIDDEN);
        state
            .events
            .refused(&self.ctx, events::FORBIDDEN, &reason, p.token_id)
            .await;
        Err(layout::refusal(403, "Only an admin can do this."))
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let ctx = RequestContext::from_parts(parts);
        let sessions = store(parts);
        let found = cookie(parts).and_then(|id| sessions.get(&id).map(|s| (id, s)));
        let live = match found {
            Some((id, s)) => {
                // A revoked token ends its sessions at their next request.
                let active = match state.pool.get().await {
                    Ok(client) => tokens::active(&client, s.principal.token_id).await,
                    Err(e) => {
                        tracing::error!(error = %e, "no connection to check a session");
                        return Err(layout::refusal(503, "The database is not reachable."));
                    }
                };
                match active {
                    Ok(true) => Some((id, s)),
                    Ok(false) => {
                        sessions.close(&id);
                        None
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not check a session's token");
                        return Err(layout::refusal(503, "The database is not reachable."));
                    }
                }
            }
            None => None,
        };
        if let Some((id, session)) = live {
            return Ok(Viewer { session, ctx, id });
        }
        if parts.method == Method::GET || parts.method == Method::HEAD {
            return Err(Redirect::to("/login").into_response());
        }
        state.metrics.refused(events::AUTH_FAILED);
        state
            .events
            .refused(&ctx, events::AUTH_FAILED, "no live dashboard session", 0)
            .await;
        Err(layout::refusal(
            403,
            "Your session has expired or you are not logged in. Log in again.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            token_id: 1,
            name: "ops".into(),
            role: Role::Reader,
        }
    }

    #[test]
    fn sessions_expire_when_idle_and_absolutely() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, _) = s.open_at(principal(), t0);
        assert!(s.get_at(&id, t0 + IDLE / 2).is_some());
        // Used at IDLE/2, so still live at IDLE/2 + IDLE - 1s.
        assert!(s
            .get_at(&id, t0 + IDLE / 2 + IDLE - Duration::from_secs(1))
            .is_some());
        assert!(s.get_at(&id, t0 + 3 * IDLE).is_none(), "idle too long");
        assert!(s.is_empty(), "an expired session is removed");

        let (id, _) = s.open_at(principal(), t0);
        let mut t = t0;
        while t < t0 + ABSOLUTE - IDLE {
            t += IDLE / 2;
            assert!(s.get_at(&id, t).is_some());
        }
        assert!(s.get_at(&id, t0 + ABSOLUTE).is_none(), "absolute expiry");
    }

    #[test]
    fn ids_are_random_and_only_their_hash_is_kept() {
        let s = Sessions::default();
        let (a, sa) = s.open(principal());
        let (b, sb) = s.open(principal());
        assert_ne!(a, b);
        assert_ne!(sa.csrf, sb.csrf);
        let map = s.map.lock().unwrap();
        assert!(map.contains_key(&key(&a)));
        assert!(!map.keys().any(|k| hex::encode(k) == a));
        drop(map);
        s.close(&a);
        assert!(s.get(&a).is_none());
        assert!(s.get(&b).is_some());
    }

    #[test]
    fn cookies_are_strict_and_http_only() {
        let c = set_cookie("ab", false);
        assert_eq!(c, "strata_session=ab; HttpOnly; SameSite=Strict; Path=/");
        assert!(set_cookie("ab", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
