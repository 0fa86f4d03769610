//! Security events, written into the audit table itself: admin actions
//! (`admin.vacuum`, `admin.token_create`, …) and refused requests
//! (`security.auth_failed`, `security.forbidden`).
//!
//! Refusals are aggregated per source network (/24 for IPv4, /64 for IPv6:
//! one host easily holds a whole /64, and rotating through it must not buy
//! a row per address), action and minute: the first one of each is written
//! at once, so it is visible while the attack goes on, and the rest are
//! counted in memory and written as one row with a `count` when the minute
//! is over (or the server stops). At most [`MAX_SOURCES_PER_MINUTE`]
//! sources get their own entry in a minute; refusals from any further one
//! go into a single overflow row for that minute. A flood thus writes at
//! most [`MAX_ROWS_PER_MINUTE`] + 1 rows a minute however many addresses
//! it comes from, and its requests rarely wait on the database.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use chrono::Utc;
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::db::{DbError, QualifiedName};

pub const AUTH_FAILED: &str = "security.auth_failed";
pub const FORBIDDEN: &str = "security.forbidden";
/// Requests answered 429 because their network was over a rate limit.
pub const RATE_LIMITED: &str = "security.rate_limited";
/// The row that counts the refusals of sources beyond the minute's budget.
pub const OVERFLOW: &str = "security.refusals_overflow";

/// Sources (network, action) with an entry of their own per minute.
pub const MAX_SOURCES_PER_MINUTE: usize = 50;
/// Each such source writes at most two rows a minute (its first refusal,
/// then the sum of the rest); the overflow row comes on top.
pub const MAX_ROWS_PER_MINUTE: usize = 2 * MAX_SOURCES_PER_MINUTE;
/// Distinct entries kept in memory at most (a stalled flusher cannot let
/// it grow past this either).
const MAX_PENDING: usize = 10_000;
/// Paths remembered per aggregated entry, as examples.
const MAX_PATHS: usize = 5;
/// A client's User-Agent is stored up to this many characters.
const MAX_USER_AGENT: usize = 256;

/// Who sent a request, for the event's `ip_address` and `user_agent`.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub method: String,
    pub path: String,
    pub request_id: Option<String>,
}

impl RequestContext {
    pub fn from_parts(parts: &Parts) -> RequestContext {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(MAX_USER_AGENT).collect::<String>())
        };
        RequestContext {
            // The peer address: X-Forwarded-For is not trusted, as nothing
            // says a proxy in front of strata sets it honestly.
            ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
            user_agent: header("user-agent"),
            method: parts.method.to_string(),
            path: parts.uri.path().chars().take(200).collect(),
            request_id: header("x-request-id"),
        }
    }

    /// The source network: the /24 of an IPv4 address, the /64 of an IPv6 one.
    pub(crate) fn source(&self) -> String {
        match self.ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0/24")
            }
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
            None => "unknown".into(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestContext::from_parts(parts))
    }
}

/// One row for the audit table.
#[derive(Clone, Debug)]
pub struct Event {
    pub action: String,
    /// The token's id for an authenticated caller, 0 otherwise (the column is NOT NULL).
    pub user_id: i64,
    pub resource_type: Option<&'static str>,
    pub resource_id: Option<i64>,
    pub status: &'static str,
    pub severity: &'static str,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub details: Value,
}

impl Event {
    /// An event about a request, with its address, agent, method and path.
    pub fn for_request(
        ctx: &RequestContext,
        action: &str,
        user_id: i64,
        mut details: Value,
    ) -> Event {
        if let Value::Object(map) = &mut details {
            map.insert("method".into(), json!(ctx.method));
            map.insert("path".into(), json!(ctx.path));
            if let Some(id) = &ctx.request_id {
                map.insert("request_id".into(), json!(id));
            }
        }
        Event {
            action: action.to_string(),
            user_id,
            resource_type: None,
            resource_id: None,
            status: "success",
            severity: "info",
            ip: ctx.ip,
            user_agent: ctx.user_agent.clone(),
            details,
        }
    }
}

impl Event {
    /// Marks this admin action refused by `e`. The event is stored in the
    /// audit table, which readers can read, so it keeps what the caller was
    /// told (the error code and its public message): an internal error's
    /// detail goes to the server log only.
    pub fn refused_by(&mut self, e: &super::AppError) {
        let (code, message) = e.public();
        if let super::AppError::Internal(detail) = e {
            tracing::error!(action = %self.action, error = %detail, "admin action failed");
        }
        self.status = "failure";
        self.severity = "warning";
        self.details["refused"] = json!(message);
        self.details["error_code"] = json!(code);
    }
}

/// jsonb cannot store U+0000, which a hostile `table_name` may well hold:
/// the event must still be written, so it becomes U+FFFD.
fn storable(details: &Value) -> Value {
    let text = details.to_string();
    if !text.contains("\\u0000") {
        return details.clone();
    }
    serde_json::from_str(&text.replace("\\u0000", "\\ufffd")).unwrap_or(Value::Null)
}

/// Writes one event into `table`.
pub async fn write(client: &Client, table: &QualifiedName, e: &Event) -> Result<(), DbError> {
    let mut details = storable(&e.details);
    // The mark of strata's own events: writers are refused when they set it
    // (and when they use the reserved action namespaces), so an event that
    // carries it was written here.
    if let Value::Object(m) = &mut details {
        m.insert(crate::load::SERVER_MARKER.into(), json!("server"));
    }
    let sql = format!(
        "INSERT INTO {table} (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, severity)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    );
    client
        .execute(
            &sql,
            &[
                &e.user_id,
                &e.action,
                &e.resource_type,
                &e.resource_id,
                &details,
                &e.ip,
                &e.user_agent,
                &e.status,
                &e.severity,
            ],
        )
        .await
        .map_err(DbError::query("writing a security event"))?;
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    source: String,
    action: &'static str,
    /// Minutes since the Unix epoch.
    minute: i64,
}

#[derive(Debug, Default)]
struct Pending {
    /// Refusals after the first (which was written at once).
    count: u64,
    reasons: BTreeMap<String, u64>,
    paths: Vec<String>,
    ip: Option<IpAddr>,
    user_agent: Option<String>,
}

/// The in-memory side of refusal aggregation.
#[derive(Debug, Default)]
pub struct Refusals {
    pending: Mutex<HashMap<Key, Pending>>,
    /// Entries made per minute (only recent minutes are kept).
    made: Mutex<BTreeMap<i64, usize>>,
}

fn minute_now() -> i64 {
    Utc::now().timestamp().div_euclid(60)
}

impl Refusals {
    /// Counts a refusal; true when it is the first of its source, action
    /// and minute, which the caller then writes at once. With `!at_once`
    /// even the first is only counted (written when the minute is over).
    fn note(
        &self,
        ctx: &RequestContext,
        action: &'static str,
        reason: &str,
        minute: i64,
        at_once: bool,
    ) -> bool {
        let mut pending = self.pending.lock().expect("refusal counter poisoned");
        let key = Key {
            source: ctx.source(),
            action,
            minute,
        };
        if !pending.contains_key(&key) {
            let mut made = self.made.lock().expect("refusal counter poisoned");
            made.retain(|m, _| *m >= minute - 2);
            let n = made.entry(minute).or_default();
            if *n >= MAX_SOURCES_PER_MINUTE || pending.len() >= MAX_PENDING {
                // Over budget: counted in the minute's one overflow row,
                // which is only written when the minute is over.
                let over = pending
                    .entry(Key {
                        source: "overflow".into(),
                        action: OVERFLOW,
                        minute,
                    })
                    .or_default();
                over.count += 1;
                *over
                    .reasons
                    .entry(format!("{action}: {reason}"))
                    .or_default() += 1;
                if over.paths.len() < MAX_PATHS && !over.paths.contains(&key.source) {
                    // For the overflow row, examples of sources rather than paths.
                    over.paths.push(key.source);
                }
                return false;
            }
            *n += 1;
        }
        match pending.get_mut(&key) {
            None => {
                let mut first = Pending {
                    ip: ctx.ip,
                    user_agent: ctx.user_agent.clone(),
                    ..Pending::default()
                };
                if !at_once {
                    first.count = 1;
                    first.reasons.insert(reason.to_string(), 1);
                    first.paths.push(ctx.path.clone());
                }
                pending.insert(key, first);
                at_once
            }
            Some(p) => {
                p.count += 1;
                *p.reasons.entry(reason.to_string()).or_default() += 1;
                if p.paths.len() < MAX_PATHS && !p.paths.contains(&ctx.path) {
                    p.paths.push(ctx.path.clone());
                }
                false
            }
        }
    }

    /// Takes what is due: entries of minutes that are over, or all of them.
    fn take(&self, all: bool, minute: i64) -> Vec<(Key, Pending)> {
        let mut pending = self.pending.lock().expect("refusal counter poisoned");
        let due: Vec<Key> = pending
            .keys()
            .filter(|k| all || k.minute < minute)
            .cloned()
            .collect();
        due.into_iter()
            .filter_map(|k| pending.remove_entry(&k))
            .filter(|(_, p)| p.count > 0)
            .collect()
    }
}

/// Security events of one server: where they go, and the refusal counter.
pub struct SecurityEvents {
    pool: deadpool_postgres::Pool,
    table: QualifiedName,
    refusals: Refusals,
}

impl SecurityEvents {
    pub fn new(pool: deadpool_postgres::Pool, table: QualifiedName) -> SecurityEvents {
        SecurityEvents {
            pool,
            table,
            refusals: Refusals::default(),
        }
    }

    /// Writes an event; a failure is logged, not returned: the action it
    /// records has already happened or been refused.
    pub async fn record(&self, event: Event) {
        let result = async {
            let client = self.pool.get().await.map_err(|e| e.to_string())?;
            write(&client, &self.table, &event)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(action = %event.action, error = %e, "could not write a security event");
        }
    }

    /// Records a refused request (401 or 403), aggregated.
    pub async fn refused(
        &self,
        ctx: &RequestContext,
        action: &'static str,
        reason: &str,
        user_id: i64,
    ) {
        if !self.refusals.note(ctx, action, reason, minute_now(), true) {
            return;
        }
        let details = json!({
            "reason": reason,
            "count": 1,
            "aggregation": "first refusal of this source this minute; later ones are summed into one row",
        });
        let mut e = Event::for_request(ctx, action, user_id, details);
        e.status = "failure";
        e.severity = "warning";
        e.resource_type = Some("api");
        self.record(e).await;
    }

    /// Counts a request refused for its network's rate limit. Unlike other
    /// refusals not even the first is written at once: a 429 never waits
    /// on the database. The minute's row comes with the next flush.
    pub fn rate_limited(&self, ctx: &RequestContext, reason: &str) {
        self.refusals
            .note(ctx, RATE_LIMITED, reason, minute_now(), false);
    }

    /// Writes the aggregated refusals of minutes that are over (`all`:
    /// every pending one, at shutdown). Returns how many rows it wrote.
    pub async fn flush(&self, all: bool) -> usize {
        let due = self.refusals.take(all, minute_now());
        let n = due.len();
        for (key, p) in due {
            let from = chrono::DateTime::from_timestamp(key.minute * 60, 0).unwrap_or_default();
            let examples = if key.action == OVERFLOW {
                "sources"
            } else {
                "paths"
            };
            let details = json!({
                "count": p.count,
                "aggregated": true,
                "source": key.source,
                "minute": from,
                "reasons": p.reasons,
                examples: p.paths,
            });
            self.record(Event {
                action: key.action.to_string(),
                user_id: 0,
                resource_type: Some("api"),
                resource_id: None,
                status: "failure",
                severity: "warning",
                ip: p.ip,
                user_agent: p.user_agent,
                details,
            })
            .await;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(ip: &str) -> RequestContext {
        RequestContext {
            ip: Some(ip.parse().unwrap()),
            path: "/admin/database/report".into(),
            ..RequestContext::default()
        }
    }

    #[test]
    fn refusals_aggregate_per_source_action_and_minute() {
        let r = Refusals::default();
        assert!(r.note(&ctx("10.0.0.1"), AUTH_FAILED, "unknown token", 100, true));
        for _ in 0..999 {
            assert!(!r.note(&ctx("10.0.0.1"), AUTH_FAILED, "unknown token", 100, true));
        }
        // Same /24: the same source.
        assert!(!r.note(&ctx("10.0.0.2"), AUTH_FAILED, "unknown token", 100, true));
        assert!(r.note(&ctx("10.0.1.2"), AUTH_FAILED, "unknown token", 100, true));
        assert!(r.note(&ctx("10.0.0.1"), FORBIDDEN, "role", 100, true));
        assert!(r.note(&ctx("10.0.0.1"), AUTH_FAILED, "unknown token", 101, true));
        // Minute 100 is over at 101: only entries with more than the first are written.
        let due = r.take(false, 101);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.count, 1000);
        assert_eq!(due[0].1.reasons["unknown token"], 1000);
        assert!(r.take(false, 101).is_empty());
        // Minute 101's entry stays until it is over or everything is flushed.
        assert!(!r.note(&ctx("10.0.0.1"), AUTH_FAILED, "unknown token", 101, true));
        assert_eq!(r.take(true, 101).len(), 1);
    }

    #[test]
    fn nul_characters_become_storable() {
        let v = storable(&json!({"table_name": "a\u{0}b", "n": 1}));
        assert_eq!(v, json!({"table_name": "a\u{fffd}b", "n": 1}));
    }

    /// Rows a flood would write in one minute: each first refusal at once,
    /// then one per entry with more.
    fn rows_for(addresses: impl Iterator<Item = String>) -> (usize, u64) {
        let r = Refusals::default();
        let mut rows = 0;
        let mut refusals = 0;
        for ip in addresses {
            refusals += 1;
            if r.note(&ctx(&ip), AUTH_FAILED, "unknown token", 9, true) {
                rows += 1;
            }
        }
        let due = r.take(true, 9);
        let counted: u64 = due.iter().map(|(_, p)| p.count).sum::<u64>() + rows as u64;
        assert_eq!(counted, refusals, "every refusal is counted once");
        (rows + due.len(), refusals)
    }

    #[test]
    fn thousands_of_addresses_write_a_bounded_number_of_rows() {
        // 3,000 addresses in 3,000 different /24s.
        let v4 = (0..3000).map(|i| format!("10.{}.{}.9", i / 256, i % 256));
        let (rows, n) = rows_for(v4);
        assert_eq!(n, 3000);
        assert!(rows <= MAX_ROWS_PER_MINUTE + 1, "{rows} rows");
        // IPv6 rotation inside one /64 is one source...
        let one_net = (0..5000).map(|i| format!("2001:db8:1:2::{i:x}"));
        assert_eq!(rows_for(one_net).0, 2);
        // ... and across /64s it meets the same budget.
        let many_nets = (0..10_000).map(|i| format!("2001:db8:{i:x}::1"));
        let (rows, _) = rows_for(many_nets);
        assert!(rows <= MAX_ROWS_PER_MINUTE + 1, "{rows} rows");
        // An IPv4-mapped IPv6 address is its IPv4 network.
        let mapped = ["::ffff:192.0.2.1", "192.0.2.200"].map(String::from);
        assert_eq!(rows_for(mapped.into_iter()).0, 2);
    }

    #[test]
    fn memory_is_bounded() {
        let r = Refusals::default();
        for i in 0..(MAX_PENDING + 50) {
            let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
            r.note(&ctx(&ip), AUTH_FAILED, "x", 7, true);
        }
        assert!(r.pending.lock().unwrap().len() <= MAX_PENDING + 1);
    }
}
