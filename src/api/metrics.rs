//! Prometheus metrics, written out by hand in the text exposition format:
//! a handful of counters, one latency histogram, and gauges read at scrape
//! time (pool, jobs, partitions and bytes per managed table), and the
//! gauges alerts are written on (docs/alerts.yml): the health checks of
//! `strata health` and the last state of each kind of job, cached for
//! [`ALERTING_MAX_AGE`]. A metrics crate would add more to the build than
//! this file does.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// The health checks behind the alerting gauges, shared with the webhook.
    pub health: crate::alerts::HealthCache,
    /// The alerting gauges as last rendered, and when.
    alerting: tokio::sync::Mutex<Option<(Instant, String)>>,
}

/// How long the alerting gauges (health checks and job states) are served
/// from memory: a scrape flood costs one evaluation per this at most.
pub const ALERTING_MAX_AGE: Duration = Duration::from_secs(5);

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
    out.push_str(&alerting(state).await);
    out
}

/// The alerting gauges, from memory when rendered less than
/// [`ALERTING_MAX_AGE`] ago. Label values are check names (a fixed set),
/// job kinds (`Op::KINDS`) and the configured managed tables only.
async fn alerting(state: &AppState) -> String {
    let mut cached = state.metrics.alerting.lock().await;
    if let Some((at, text)) = cached.as_ref() {
        if at.elapsed() < ALERTING_MAX_AGE {
            return text.clone();
        }
    }
    let mut out = String::new();
    match state
        .metrics
        .health
        .get(&state.pool, &state.config, ALERTING_MAX_AGE)
        .await
    {
        Ok(report) => {
            gauge(
                &mut out,
                "strata_health_up",
                "Whether the health checks could be evaluated.",
                "",
                1,
            );
            render_health(&report, &mut out);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: could not evaluate the health checks");
            gauge(
                &mut out,
                "strata_health_up",
                "Whether the health checks could be evaluated.",
                "",
                0,
            );
        }
    }
    if let Err(e) = render_jobs(state, &mut out).await {
        tracing::warn!(error = %e, "metrics: could not read the job states");
    }
    *cached = Some((Instant::now(), out.clone()));
    out
}

/// One unlabeled (or singly labeled) gauge with its HELP and TYPE lines.
fn gauge(out: &mut String, name: &str, help: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A gauge family: (name, help) and its sample lines, written only when it
/// has samples.
struct Family {
    name: &'static str,
    help: &'static str,
    lines: String,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            lines: String::new(),
        }
    }

    fn add(&mut self, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.lines, "{}{{{labels}}} {value}", self.name);
    }

    fn write(&self, out: &mut String) {
        if !self.lines.is_empty() {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} gauge",
                self.name, self.help, self.name
            );
            out.push_str(&self.lines);
        }
    }
}

/// Gauges read off the health report: every check's status, and the
/// numbers behind the per-table ones (from their evidence, so `/metrics`
/// and `strata health` never disagree).
fn render_health(report: &crate::health::HealthReport, out: &mut String) {
    use crate::health::Status;
    let mut status = Family::new(
        "strata_health_check_status",
        "Status of each strata health check: 0 ok, 1 warning, 2 critical.",
    );
    let mut default_rows = Family::new(
        "strata_default_partition_rows",
        "Rows in the default partition of each managed table.",
    );
    let mut ahead = Family::new(
        "strata_partitions_ahead",
        "Partitions made ahead of the current period.",
    );
    let mut premake = Family::new(
        "strata_partitions_premake",
        "Partitions the configuration asks to keep ahead (premake).",
    );
    let mut missing = Family::new(
        "strata_partitions_missing_ahead",
        "Periods within premake that have no partition yet.",
    );
    let mut current = Family::new(
        "strata_partition_current_covered",
        "Whether a partition takes rows of the current period (0: they go to the default partition or fail).",
    );
    let mut invalid = Family::new(
        "strata_invalid_indexes",
        "INVALID indexes on each managed table and its partitions.",
    );
    let mut table_xid = Family::new(
        "strata_table_xid_age",
        "Transaction ID age of the oldest partition of each managed table.",
    );
    let mut database_xid = None;
    for c in &report.checks {
        let table = c.table.as_deref().map(escape).unwrap_or_default();
        let labels = format!("table=\"{table}\"");
        let code = match c.status {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
        };
        status.add(&format!("check=\"{}\",{labels}", c.name), code);
        let e = &c.evidence;
        match c.name {
            "default_partition_rows" => {
                if let Some(n) = e["rows"].as_i64() {
                    default_rows.add(&labels, n);
                }
            }
            "future_partitions" => {
                if let Some(n) = e["partitions_ahead"].as_u64() {
                    ahead.add(&labels, n);
                }
                if let Some(n) = e["premake"].as_u64() {
                    premake.add(&labels, n);
                }
                if let Some(m) = e["missing_periods_ahead"].as_array() {
                    missing.add(&labels, m.len());
                }
                if let Some(b) = e["current_period_covered"].as_bool() {
                    current.add(&labels, u8::from(b));
                }
            }
            "invalid_indexes" => {
                if let Some(n) = e["count"].as_u64() {
                    invalid.add(&labels, n);
                }
            }
            "table_xid_age" => {
                let age = e["oldest_partitions"][0]["xid_age"].as_i64();
                table_xid.add(&labels, age.unwrap_or(0));
            }
            "xid_wraparound" => {
                database_xid = e["databases"][0]["xid_age"].as_i64();
            }
            _ => {}
        }
    }
    for f in [
        &status,
        &default_rows,
        &ahead,
        &premake,
        &missing,
        &current,
        &invalid,
        &table_xid,
    ] {
        f.write(out);
    }
    if let Some(age) = database_xid {
        gauge(
            out,
            "strata_database_xid_age",
            "Transaction ID age of the oldest database of the cluster (wraparound at 2^31).",
            "",
            age,
        );
    }
    gauge(
        out,
        "strata_health_checked_timestamp_seconds",
        "When the health checks behind these gauges ran.",
        "",
        report.checked_at.timestamp(),
    );
}

/// The last finished run of each job kind and the last successful
/// `maintain` of each managed table: one query on `strata.jobs`, which its
/// retention keeps short.
async fn render_jobs(state: &AppState, out: &mut String) -> Result<(), String> {
    let client = state.pool.get().await.map_err(|e| e.to_string())?;
    let kinds: Vec<&str> = crate::ops::Op::KINDS.to_vec();
    let tables: Vec<String> = state
        .config
        .tables
        .iter()
        .map(|t| t.name.display_unquoted())
        .collect();
    // Cancelled runs (a server shutting down) and missed occurrences are
    // neither success nor failure of the job itself.
    let rows = client
        .query(
            "SELECT 'kind' AS scope, kind AS key,
                    (pg_catalog.array_agg(state ORDER BY finished_at DESC, id DESC)
                        FILTER (WHERE state IN ('succeeded', 'failed')))[1] AS last_state,
                    max(finished_at) FILTER (WHERE state IN ('succeeded', 'failed')) AS last_finished,
                    max(finished_at) FILTER (WHERE state = 'succeeded') AS last_success
               FROM strata.jobs
              WHERE kind = ANY($1)
              GROUP BY kind
             UNION ALL
             SELECT 'table', target, NULL, NULL, max(finished_at)
               FROM strata.jobs
              WHERE kind = 'maintain' AND state = 'succeeded' AND target = ANY($2)
              GROUP BY target",
            &[&kinds, &tables],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut success = Family::new(
        "strata_job_last_success",
        "Whether the last finished job of each kind succeeded (1) or failed (0).",
    );
    let mut finished = Family::new(
        "strata_job_last_finished_timestamp_seconds",
        "When the last job of each kind finished (succeeded or failed).",
    );
    let mut succeeded = Family::new(
        "strata_job_last_success_timestamp_seconds",
        "When the last successful job of each kind finished.",
    );
    let mut maintained = Family::new(
        "strata_maintain_last_success_timestamp_seconds",
        "When the last successful maintain of each managed table finished.",
    );
    let mut since = Family::new(
        "strata_maintain_last_success_age_seconds",
        "Seconds since the last successful maintain of each managed table (+Inf: never).",
    );
    let now = chrono::Utc::now();
    let mut seen_tables = std::collections::BTreeMap::new();
    type At = Option<chrono::DateTime<chrono::Utc>>;
    for r in &rows {
        let (scope, key): (&str, &str) = (r.get(0), r.get(1));
        let key = escape(key);
        let last_success: At = r.get(4);
        if scope == "table" {
            seen_tables.insert(key, last_success);
            continue;
        }
        let labels = format!("kind=\"{key}\"");
        if let Some(state) = r.get::<_, Option<&str>>(2) {
            success.add(&labels, u8::from(state == "succeeded"));
        }
        if let Some(at) = r.get::<_, At>(3) {
            finished.add(&labels, at.timestamp());
        }
        if let Some(at) = last_success {
            succeeded.add(&labels, at.timestamp());
        }
    }
    for t in &tables {
        let t = escape(t);
        let labels = format!("table=\"{t}\"");
        match seen_tables.get(&t).copied().flatten() {
            Some(at) => {
                maintained.add(&labels, at.timestamp());
                since.add(&labels, (now - at).num_seconds().max(0));
            }
            None => since.add(&labels, "+Inf"),
        }
    }
    for f in [&success, &finished, &succeeded, &maintained, &since] {
        f.write(out);
    }
    Ok(())
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
