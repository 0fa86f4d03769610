//! What keeps callers without a valid token off the database: a short-lived
//! cache of accepted tokens, token buckets per source network for refused
//! requests and for the routes anyone may call, and a shared `/healthz`
//! check.
//!
//! Everything here is in memory and bounded, so a flood costs at most a map
//! of [`MAX_BUCKETS`] small entries and never a query per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::tokens::Principal;

/// A token bucket's shape: `burst` requests at once, refilled at
/// `per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub burst: f64,
    pub per_second: f64,
}

impl RateLimit {
    /// Refused requests (401) per source network: a client with a stale
    /// token retries a few times, a guesser gets one try a second.
    pub const FAILED_AUTH: RateLimit = RateLimit {
        burst: 20.0,
        per_second: 1.0,
    };
    /// `/healthz` and `/openapi.json` per source network: a few probes a
    /// second fit many times over.
    pub const OPEN_ROUTES: RateLimit = RateLimit {
        burst: 100.0,
        per_second: 20.0,
    };
}

/// How long `strata serve` uses an accepted token without a new lookup:
/// the longest a revoked token still works.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// Source networks tracked at most. Past it, networks whose buckets are
/// full again are forgotten; if none is, newcomers share one bucket, so
/// rotating through addresses buys nothing.
pub const MAX_BUCKETS: usize = 10_000;
/// The shared bucket of networks beyond [`MAX_BUCKETS`].
const OVERFLOW: &str = "overflow";

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per source network (see `RequestContext::source`).
pub struct Limiter {
    /// `None`: every request is served.
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(limit: Option<RateLimit>) -> Limiter {
        Limiter {
            limit,
            buckets: Mutex::default(),
        }
    }

    /// Seconds `source` must wait before it is served again; `None` when it
    /// may be served now. `consume` takes a token when there is one.
    fn check(&self, source: &str, consume: bool) -> Option<u64> {
        let limit = self.limit?;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter poisoned");
        let refill = |b: &mut Bucket| {
            let gained = now.duration_since(b.at).as_secs_f64() * limit.per_second;
            b.tokens = (b.tokens + gained).min(limit.burst);
            b.at = now;
        };
        let mut key = source;
        if !buckets.contains_key(source) && buckets.len() >= MAX_BUCKETS {
            buckets.retain(|k, b| {
                refill(b);
                k == OVERFLOW || b.tokens < limit.burst
            });
            if buckets.len() >= MAX_BUCKETS {
                key = OVERFLOW;
            }
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        refill(bucket);
        if bucket.tokens >= 1.0 {
            if consume {
                bucket.tokens -= 1.0;
            }
            return None;
        }
        let wait = (1.0 - bucket.tokens) / limit.per_second.max(f64::MIN_POSITIVE);
        Some(wait.ceil().max(1.0) as u64)
    }

    /// Whether `source` is over its limit, without counting a request.
    pub fn exhausted(&self, source: &str) -> Option<u64> {
        self.check(source, false)
    }

    /// Counts one request of `source`; `Some(seconds)` when it is over the
    /// limit (and was not counted).
    pub fn take(&self, source: &str) -> Option<u64> {
        self.check(source, true)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

/// Accepted tokens kept at most; a full cache drops its expired entries,
/// and everything if none has expired.
pub const MAX_CACHED_TOKENS: usize = 1_000;

/// Accepted tokens for `ttl`, keyed by their SHA-256 (the secret itself is
/// never kept). A revoked token is thus still accepted for at most `ttl`.
/// Refused tokens are not cached: the failed-auth limit bounds their
/// lookups instead.
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<Vec<u8>, (Instant, Principal)>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    pub fn get(&self, hash: &[u8]) -> Option<Principal> {
        let mut entries = self.entries.lock().expect("token cache poisoned");
        match entries.get(hash) {
            Some((at, p)) if at.elapsed() < self.ttl => Some(p.clone()),
            Some(_) => {
                entries.remove(hash);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, hash: Vec<u8>, principal: Principal) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().expect("token cache poisoned");
        if entries.len() >= MAX_CACHED_TOKENS && !entries.contains_key(&hash) {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_CACHED_TOKENS {
                entries.clear();
            }
        }
        entries.insert(hash, (Instant::now(), principal));
    }
}

/// The last `/healthz` database check, shared: callers within `every` of
/// it get its answer, and one caller at a time runs a new one while the
/// others wait for it, so the database sees at most one check per `every`.
pub struct HealthCheck {
    every: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl HealthCheck {
    pub fn new(every: Duration) -> HealthCheck {
        HealthCheck {
            every,
            last: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn check<F>(&self, run: F) -> Result<(), String>
    where
        F: std::future::Future<Output = Result<(), String>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = &*last {
            if at.elapsed() < self.every {
                return outcome.clone();
            }
        }
        let outcome = run.await;
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

/// The three, as one part of the server's state.
pub struct Guard {
    pub tokens: TokenCache,
    pub failed_auth: Limiter,
    pub open_routes: Limiter,
    pub health: HealthCheck,
}

impl Guard {
    pub fn new(options: &super::ServeOptions) -> Guard {
        Guard {
            tokens: TokenCache::new(options.token_cache_ttl),
            failed_auth: Limiter::new(options.failed_auth_limit),
            open_routes: Limiter::new(options.open_route_limit),
            health: HealthCheck::new(options.health_check_every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Role;

    #[test]
    fn a_bucket_empties_and_stays_per_network() {
        let l = Limiter::new(Some(RateLimit {
            burst: 3.0,
            per_second: 0.001,
        }));
        for _ in 0..3 {
            assert_eq!(l.take("10.0.0.0/24"), None);
        }
        let wait = l.take("10.0.0.0/24").expect("the fourth is over the limit");
        assert!(wait >= 1);
        assert!(l.exhausted("10.0.0.0/24").is_some());
        assert_eq!(l.exhausted("10.0.1.0/24"), None, "another network");
        let open = Limiter::new(None);
        assert!((0..1000).all(|_| open.take("10.0.0.0/24").is_none()));
    }

    #[test]
    fn rotating_networks_share_one_bucket_past_the_bound() {
        let l = Limiter::new(Some(RateLimit {
            burst: 1.0,
            per_second: 0.001,
        }));
        for i in 0..MAX_BUCKETS + 50 {
            let _ = l.take(&format!("net-{i}"));
        }
        assert!(l.tracked() <= MAX_BUCKETS + 1, "{}", l.tracked());
        // Newcomers now share the overflow bucket, which is empty.
        assert!(l.take("yet-another").is_some());
    }

    #[test]
    fn cached_tokens_expire_and_the_cache_stays_bounded() {
        let p = Principal {
            token_id: 1,
            name: "t".into(),
            role: Role::Reader,
        };
        let c = TokenCache::new(Duration::from_secs(3600));
        c.put(vec![1], p.clone());
        assert_eq!(c.get(&[1]).map(|p| p.token_id), Some(1));
        for i in 0..MAX_CACHED_TOKENS * 2 {
            c.put(i.to_be_bytes().to_vec(), p.clone());
        }
        assert!(c.entries.lock().unwrap().len() <= MAX_CACHED_TOKENS);
        let none = TokenCache::new(Duration::ZERO);
        none.put(vec![1], p);
        assert!(none.get(&[1]).is_none());
    }
}
