//! What operators alert on: a short-lived cache of the health checks that
//! `/metrics` and the webhook both read, and the webhook itself
//! ([`webhook`]), which `strata serve` runs in the background.
//!
//! One evaluation of the checks is a dozen catalog queries (and a count of
//! the default partition); the cache makes a flood of scrapes, and the
//! webhook's own evaluations, cost one of those every few seconds at most.

pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::config::Config;
use crate::health::{self, HealthReport};

/// The last health evaluation and when it was made.
#[derive(Default)]
pub struct HealthCache {
    // A tokio mutex held across the evaluation: concurrent callers wait for
    // the one running instead of each starting their own.
    slot: tokio::sync::Mutex<Option<(Instant, Arc<HealthReport>)>>,
}

impl HealthCache {
    /// The health report, evaluated again when the cached one is older
    /// than `max_age`.
    pub async fn get(
        &self,
        pool: &Pool,
        config: &Config,
        max_age: Duration,
    ) -> Result<Arc<HealthReport>, String> {
        let mut slot = self.slot.lock().await;
        if let Some((at, report)) = slot.as_ref() {
            if at.elapsed() < max_age {
                return Ok(report.clone());
            }
        }
        let mut client = pool.get().await.map_err(|e| e.to_string())?;
        let report = health::check(
            &mut client,
            &config.tables,
            &config.health,
            chrono::Utc::now(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let report = Arc::new(report);
        *slot = Some((Instant::now(), report.clone()));
        Ok(report)
    }
}
