//! Lock-taking DDL that never stalls writers.
//!
//! A DDL statement waiting for an ACCESS EXCLUSIVE (or even SHARE UPDATE
//! EXCLUSIVE) lock sits in the lock queue, and every later INSERT queues behind
//! it: one slow `ALTER TABLE` stalls the application for as long as the longest
//! transaction holding a conflicting lock. So every such statement runs with a
//! short `lock_timeout`, gives up quickly, and tries again after a jittered
//! backoff, letting the queued writers through in between.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;

use super::DbError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockPolicy {
    /// `lock_timeout` for each attempt.
    pub lock_timeout: Duration,
    /// How many attempts in all before the step fails.
    pub attempts: u32,
    /// First backoff; doubles each attempt, capped at [`LockPolicy::MAX_BACKOFF`].
    pub backoff: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            lock_timeout: Duration::from_millis(100),
            attempts: 10,
            backoff: Duration::from_millis(50),
        }
    }
}

impl LockPolicy {
    pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

    /// `SET lock_timeout` for the current session or transaction.
    pub fn set_sql(&self, local: bool) -> String {
        let scope = if local { "LOCAL " } else { "" };
        format!(
            "SET {scope}lock_timeout = '{}ms'",
            self.lock_timeout.as_millis()
        )
    }

    fn delay(&self, attempt: u32) -> Duration {
        let exp = self.backoff.saturating_mul(1 << attempt.min(16));
        let capped = exp.min(Self::MAX_BACKOFF);
        // Full jitter: two processes that collided once should not collide again.
        let ms = capped.as_millis().max(1) as u64;
        Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
    }

    /// Runs `op` until it succeeds, fails with something other than a lock
    /// timeout, or runs out of attempts. `op` must be safe to repeat: it should
    /// run in its own transaction so a timed-out attempt leaves nothing behind.
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        self.run_with(what, is_lock_timeout, op).await
    }

    /// [`LockPolicy::run`] with a caller-supplied test for "this was a lock
    /// timeout", for code (such as extension functions) that re-raises it
    /// under another SQLSTATE.
    pub async fn run_with<T, F, Fut>(
        &self,
        what: &str,
        retryable: fn(&DbError) -> bool,
        mut op: F,
    ) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let mut last = String::new();
        for attempt in 0..self.attempts.max(1) {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) => {
                    last = lock_detail(&e);
                    tracing::info!(what, attempt = attempt + 1, "lock not available, retrying");
                    if attempt + 1 < self.attempts {
                        tokio::time::sleep(self.delay(attempt)).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(DbError::LockTimeout {
            what: what.to_string(),
            attempts: self.attempts.max(1),
            timeout_ms: self.lock_timeout.as_millis() as u64,
            detail: last,
        })
    }
}

pub fn is_lock_timeout(e: &DbError) -> bool {
    matches!(e, DbError::Query { source, .. } if source.code() == Some(&SqlState::LOCK_NOT_AVAILABLE))
}

fn lock_detail(e: &DbError) -> String {
    match e {
        DbError::Query { source, .. } => source
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| source.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = LockPolicy::default();
        for attempt in 0..30 {
            let d = p.delay(attempt);
            assert!(d <= LockPolicy::MAX_BACKOFF, "attempt {attempt}: {d:?}");
            let base = p
                .backoff
                .saturating_mul(1 << attempt.min(16))
                .min(LockPolicy::MAX_BACKOFF);
            assert!(d >= base / 2, "attempt {attempt}: {d:?} < half of {base:?}");
        }
    }

    #[test]
    fn set_sql_uses_milliseconds() {
        let p = LockPolicy {
            lock_timeout: Duration::from_millis(250),
            ..Default::default()
        };
        assert_eq!(p.set_sql(true), "SET LOCAL lock_timeout = '250ms'");
        assert_eq!(p.set_sql(false), "SET lock_timeout = '250ms'");
    }
}
