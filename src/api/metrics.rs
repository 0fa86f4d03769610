//! Prometheus metrics, written out by hand in the text exposition format:
//! a handful of counters, one latency histogram, and gauges read at scrape
//! time (pool, jobs, partitions and bytes per managed table). A metrics
//! crate would add more to the build than this file does.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    /// (route, method, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (route, method) → latency.
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    /// Security action → refused requests.
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

/// Methods that get their own series; any other (a client may send any
/// token as a method) is counted as `other`, so labels stay a fixed set.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

impl Metrics {
    /// Counts a request. `route` is a route template or `unmatched`, never a
    /// raw path; the method is folded into a fixed set.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        *self
            .requests
            .lock()
            .expect("metrics poisoned")
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let mut latency = self.latency.lock().expect("metrics poisoned");
        let h = latency
            .entry((route.to_string(), method.to_string()))
            .or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.counts[i] += 1;
            }
        }
    }

    pub fn refused(&self, action: &'static str) {
        *self
            .refusals
            .lock()
            .expect("metrics poisoned")
            .entry(action)
            .or_default() += 1;
    }

    fn render_requests(&self, out: &mut String) {
        out.push_str(
            "# HELP strata_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE strata_http_requests_total counter\n");
        for ((route, method, status), n) in self.requests.lock().expect("metrics poisoned").iter() {
            let _ = writeln!(
                out,
                "strata_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        out.push_str("# HELP strata_http_request_duration_seconds HTTP request latency by route and method.\n");
        out.push_str("# TYPE strata_http_request_duration_seconds histogram\n");
        for ((route, method), h) in self.latency.lock().expect("metrics poisoned").iter() {
            let labels = format!("route=\"{}\",method=\"{}\"", escape(route), escape(method));
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "strata_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "strata_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "strata_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "strata_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str("# HELP strata_security_refusals_total Requests refused with 401 or 403.\n");
        out.push_str("# TYPE strata_security_refusals_total counter\n");
        for (action, n) in self.refusals.lock().expect("metrics poisoned").iter() {
            let _ = writeln!(
                out,
                "strata_security_refusals_total{{action=\"{action}\"}} {n}"
            );
        }
    }
}

/// Label values are route templates and table names; escape them anyway.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counts and times every routed request under its route template (not the
/// raw path, whose ids would make a series per job).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    state.metrics.observe(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The exposition: counters from memory, gauges read now.
pub async fn render(state: &AppState) -> String {
    let mut out = String::new();
    state.metrics.render_requests(&mut out);
    let pool = state.pool.status();
    out.push_str("# HELP strata_db_pool_connections Database pool connections by state.\n");
    out.push_str("# TYPE strata_db_pool_connections gauge\n");
    let _ = writeln!(
        out,
        "strata_db_pool_connections{{state=\"open\"}} {}",
        pool.size
    );
    let _ = writeln!(
        out,
        "strata_db_pool_connections{{state=\"idle\"}} {}",
        pool.available
    );
    let _ = writeln!(
        out,
        "strata_db_pool_connections{{state=\"max\"}} {}",
        pool.max_size
    );
    let _ = writeln!(out, "strata_db_pool_waiting {}", pool.waiting);
    out.push_str("# HELP strata_jobs_running Jobs this server is running.\n");
    out.push_str("# TYPE strata_jobs_running gauge\n");
    let _ = writeln!(out, "strata_jobs_running {}", state.jobs.running());
    out.push_str("# HELP strata_jobs_started_total Jobs this server has started.\n");
    out.push_str("# TYPE strata_jobs_started_total counter\n");
    let _ = writeln!(out, "strata_jobs_started_total {}", state.jobs.started());
    if let Err(e) = render_tables(state, &mut out).await {
        tracing::warn!(error = %e, "metrics: could not read table sizes");
        let _ = writeln!(out, "strata_database_up 0");
    } else {
        let _ = writeln!(out, "strata_database_up 1");
        if let Err(e) = crate::seal::render_metrics(&state.pool, &state.config, &mut out).await {
            tracing::warn!(error = %e, "metrics: could not read seals");
        }
    }
    out
}

async fn render_tables(state: &AppState, out: &mut String) -> Result<(), String> {
    let mut client = state.pool.get().await.map_err(|e| e.to_string())?;
    out.push_str("# HELP strata_partitions Partitions of each managed table.\n");
    out.push_str("# TYPE strata_partitions gauge\n");
    let mut bytes = String::new();
    for spec in &state.config.tables {
        // to_regclass: a configured table that does not exist yet is skipped, not an error.
        let row = client
            .query_opt(
                "SELECT count(i.inhrelid), coalesce(sum(pg_catalog.pg_total_relation_size(i.inhrelid)), 0)::bigint
                   FROM pg_catalog.pg_inherits i
                  WHERE i.inhparent = pg_catalog.to_regclass($1)
                 HAVING pg_catalog.to_regclass($1) IS NOT NULL",
                &[&spec.name.to_string()],
            )
            .await
            .map_err(|e| e.to_string())?;
        if let Some(row) = row {
            let table = escape(&spec.name.display_unquoted());
            let _ = writeln!(
                out,
                "strata_partitions{{table=\"{table}\"}} {}",
                row.get::<_, i64>(0)
            );
            let _ = writeln!(
                bytes,
                "strata_table_bytes{{table=\"{table}\"}} {}",
                row.get::<_, i64>(1)
            );
        }
    }
    render_archives(state, &mut client, out).await;
    out.push_str("# HELP strata_table_bytes Total bytes of each managed table (partitions, indexes, toast).\n");
    out.push_str("# TYPE strata_table_bytes gauge\n");
    out.push_str(&bytes);
    Ok(())
}

/// The archive tier of each table with `archive_to` (src/archive/status.rs).
async fn render_archives(state: &AppState, client: &mut tokio_postgres::Client, out: &mut String) {
    const METRICS: [(&str, &str); 5] = [
        (
            "strata_archive_bytes",
            "Bytes of Parquet files in the archive store.",
        ),
        (
            "strata_archive_periods",
            "Periods recorded in strata.archives.",
        ),
        (
            "strata_archive_periods_due",
            "Partitions past archive_after with no archive yet.",
        ),
        (
            "strata_archive_failed_verifies",
            "Archived periods whose last verify failed.",
        ),
        (
            "strata_archive_last_run_timestamp_seconds",
            "End of the last successful archive run.",
        ),
    ];
    let mut lines: [String; 5] = Default::default();
    for spec in &state.config.tables {
        match crate::archive::status(client, spec).await {
            Ok(Some(s)) => {
                let t = escape(&spec.name.display_unquoted());
                let values = [
                    Some(s.bytes_archived),
                    Some(s.periods_archived as i64),
                    Some(s.periods_due as i64),
                    Some(s.failed_verifies as i64),
                    s.last_run.map(|at| at.timestamp()),
                ];
                for (i, v) in values.iter().enumerate() {
                    if let Some(v) = v {
                        let _ = writeln!(lines[i], "{}{{table=\"{t}\"}} {v}", METRICS[i].0);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "metrics: could not read the archive tier"),
        }
    }
    for (i, (name, help)) in METRICS.iter().enumerate() {
        if !lines[i].is_empty() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            out.push_str(&lines[i]);
        }
    }
}
