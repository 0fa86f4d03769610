//! `[alerts] webhook_url`: the health checks evaluated every `interval`,
//! and a signed JSON event posted for each check whose status changed.
//!
//! State is kept in memory, keyed by (check, table). A check first seen ok
//! sends nothing; one first seen warning or critical sends an event with
//! `old_status: null`, so a problem present when the server starts is
//! reported (again, after a restart: receivers deduplicate on check, table
//! and new status if they need to).
//!
//! Deliveries run on their own task, one event after another (so a
//! receiver sees a check's changes in order), with bounded retries and
//! exponential backoff; a receiver that is down delays later events but
//! never the evaluation, and never the API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{AlertsConfig, Config};
use crate::health::{HealthReport, Status};

/// The signature header: `sha256=` and the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "x-strata-signature";

/// Events waiting for delivery at most; more are dropped (and logged)
/// rather than held while a receiver stays down.
const QUEUE: usize = 1000;

/// One status change of one check.
#[derive(Clone, Debug, Serialize)]
pub struct AlertEvent {
    /// Unique per event; retries of one event send the same id.
    pub id: String,
    /// Always `health_check_changed`.
    pub kind: &'static str,
    pub check: String,
    /// The managed table of a per-table check; `null` for server checks.
    pub table: Option<String>,
    /// `null` when the check was not seen before (first evaluation).
    pub old_status: Option<Status>,
    pub new_status: Status,
    pub message: String,
    pub fix: Option<String>,
    /// When the checks ran.
    pub checked_at: DateTime<Utc>,
    /// The host strata serve runs on.
    pub source: String,
}

type Key = (String, Option<String>);

/// The status of each check as last seen.
#[derive(Default)]
pub struct Tracker {
    last: BTreeMap<Key, Status>,
}

impl Tracker {
    /// The events `report` gives rise to, and the state updated. Pure, for
    /// tests without a database.
    pub fn observe(&mut self, report: &HealthReport, source: &str) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for c in &report.checks {
            let key = (c.name.to_string(), c.table.clone());
            let old = self.last.insert(key, c.status);
            let changed = match old {
                Some(old) => old != c.status,
                None => c.status != Status::Ok,
            };
            if changed {
                events.push(AlertEvent {
                    id: event_id(),
                    kind: "health_check_changed",
                    check: c.name.to_string(),
                    table: c.table.clone(),
                    old_status: old,
                    new_status: c.status,
                    message: c.message.clone(),
                    fix: c.fix.clone(),
                    checked_at: report.checked_at,
                    source: source.to_string(),
                });
            }
        }
        events
    }
}

fn event_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2_011::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Evaluates the checks every `interval` until `stop`, posting changes.
/// `cache` is the one `/metrics` reads, so a scrape and an evaluation
/// close together cost one run of the checks.
pub async fn run(
    pool: Pool,
    config: Arc<Config>,
    cache: Arc<crate::api::Metrics>,
    key: Vec<u8>,
    stop: CancellationToken,
) {
    let a = config.alerts.clone();
    let Some(url) = a.webhook_url.clone() else {
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(a.timeout)
        // A redirect would carry the signed event somewhere not configured.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "alerts: cannot build the HTTP client; no webhook");
            return;
        }
    };
    let (tx, rx) = mpsc::channel::<AlertEvent>(QUEUE);
    let deliver = tokio::spawn(deliver_all(
        client,
        url.clone(),
        key,
        a.clone(),
        rx,
        stop.clone(),
    ));
    tracing::info!(url = %url, interval_ms = a.interval.as_millis() as u64, "alerts: webhook on");
    let source = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "?".into());
    let mut tracker = Tracker::default();
    let mut round: u64 = 0;
    let mut tick = tokio::time::interval(a.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        // Reuse a scrape's evaluation only while it is fresh for this interval.
        let max_age = (a.interval / 2).min(crate::api::ALERTING_MAX_AGE);
        let report = tokio::select! {
            _ = stop.cancelled() => break,
            r = cache.health.get(&pool, &config, max_age) => r,
        };
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                // No verdict is not a change: states stay as they were.
                tracing::warn!(error = %e, "alerts: could not evaluate the health checks");
                continue;
            }
        };
        round += 1;
        let events = tracker.observe(&report, &source);
        if round == 1 {
            tracing::info!(
                checks = report.checks.len(),
                not_ok = events.len(),
                "alerts: first evaluation; checks not ok are reported, ok ones are not"
            );
        }
        tracing::debug!(round, changes = events.len(), "alerts: checks evaluated");
        for event in events {
            tracing::info!(check = %event.check, table = ?event.table, old = ?event.old_status,
                new = %event.new_status, id = %event.id, "alerts: status changed");
            if let Err(e) = tx.try_send(event) {
                tracing::error!(error = %e, "alerts: delivery queue full; event dropped");
            }
        }
    }
    drop(tx);
    let _ = deliver.await;
}

async fn deliver_all(
    client: reqwest::Client,
    url: String,
    key: Vec<u8>,
    a: AlertsConfig,
    mut rx: mpsc::Receiver<AlertEvent>,
    stop: CancellationToken,
) {
    while let Some(event) = rx.recv().await {
        let body = serde_json::to_vec(&event).expect("an event serializes");
        let sig = signature(&key, &body);
        tokio::select! {
            _ = stop.cancelled() => {
                tracing::warn!(id = %event.id, "alerts: shutting down; event not delivered");
                return;
            }
            _ = deliver(&client, &url, &body, &sig, &event, &a) => {}
        }
    }
}

/// One event, retried with exponential backoff up to `attempts` times.
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    sig: &str,
    event: &AlertEvent,
    a: &AlertsConfig,
) {
    let mut wait = a.retry_backoff;
    for attempt in 1..=a.attempts {
        let sent = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .header("x-strata-event-id", &event.id)
            .body(body.to_vec())
            .send()
            .await;
        let problem = match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(id = %event.id, attempt, "alerts: event delivered");
                return;
            }
            Ok(r) => format!("the receiver answered {}", r.status()),
            Err(e) => format!("{e}"),
        };
        if attempt == a.attempts {
            tracing::error!(id = %event.id, check = %event.check, attempts = a.attempts, problem = %problem,
                "alerts: event not delivered; giving up");
            return;
        }
        tracing::warn!(id = %event.id, attempt, problem = %problem, retry_in_ms = wait.as_millis() as u64,
            "alerts: delivery failed; will retry");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::CheckResult;

    fn report(statuses: &[(&'static str, Status)]) -> HealthReport {
        let checks = statuses
            .iter()
            .map(|(name, status)| CheckResult {
                name,
                table: Some("public.audit_logs".into()),
                status: *status,
                message: format!("{name} is {status}"),
                evidence: serde_json::Value::Null,
                fix: None,
            })
            .collect();
        HealthReport {
            status: Status::Ok,
            checked_at: Utc::now(),
            checks,
        }
    }

    #[test]
    fn only_changes_fire_and_a_first_ok_is_silent() {
        let mut t = Tracker::default();
        let first = t.observe(&report(&[("a", Status::Ok), ("b", Status::Warning)]), "h");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].check, "b");
        assert_eq!(first[0].old_status, None);
        assert!(t
            .observe(&report(&[("a", Status::Ok), ("b", Status::Warning)]), "h")
            .is_empty());
        let e = t.observe(&report(&[("a", Status::Critical), ("b", Status::Ok)]), "h");
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].old_status, e[0].new_status),
            (Some(Status::Ok), Status::Critical)
        );
        assert_eq!(
            (e[1].old_status, e[1].new_status),
            (Some(Status::Warning), Status::Ok)
        );
        assert_ne!(e[0].id, e[1].id);
    }

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
