//! The query workloads: each runs warm, K times, alternating layouts, in one
//! session; client time and server time are kept apart.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::layouts::{Built, DataShape, Layout};
use super::plan::{self, Names, PlanShape};
use super::{phase, ratio, BenchError, Options, Summary, STRATA};
use crate::db::DbError;

/// The seed's claim for a workload: its before and after, in ms.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SeedClaim {
    pub before_ms: f64,
    pub after_ms: f64,
    pub ratio: f64,
}

impl SeedClaim {
    const fn new(before_ms: f64, after_ms: f64) -> SeedClaim {
        SeedClaim {
            before_ms,
            after_ms,
            ratio: before_ms / after_ms,
        }
    }
}

pub(super) enum Params {
    None,
    Month,
    Day,
    User(fn(&DataShape) -> i64),
    MonthAnd(&'static str, bool),
}

struct Query {
    key: &'static str,
    title: &'static str,
    sql: &'static str,
    params: Params,
    claim: Option<SeedClaim>,
}

/// The JSONB document and tsquery of the two search workloads: ~2.8 % and
/// ~1 % of a month's rows.
const JSONB_DOC: &str = r#"{"method": "DELETE", "region": "eu-west-1"}"#;
const TSQUERY: &str = "failure & delete";

const QUERIES: &[Query] = &[
    Query {
        key: "one_month",
        title: "the original design's one-month query (LIMIT 10000)",
        sql: include_str!("queries/one_month.sql"),
        params: Params::Month,
        claim: Some(SeedClaim::new(2400.0, 35.0)),
    },
    Query {
        key: "one_month_aggregate",
        title: "one-month aggregate (GROUP BY action)",
        sql: include_str!("queries/one_month_aggregate.sql"),
        params: Params::Month,
        claim: None,
    },
    Query {
        key: "daily_report",
        title: "daily report (severity, status)",
        sql: include_str!("queries/daily_report.sql"),
        params: Params::Day,
        claim: Some(SeedClaim::new(5000.0, 150.0)),
    },
    Query {
        key: "monthly_summary",
        title: "monthly summary (per day, distinct users)",
        sql: include_str!("queries/monthly_summary.sql"),
        params: Params::Month,
        claim: Some(SeedClaim::new(8000.0, 200.0)),
    },
    Query {
        key: "user_last_100_heavy",
        title: "last 100 events of the heaviest user",
        sql: include_str!("queries/user_last_100.sql"),
        params: Params::User(|s| s.heavy_user),
        claim: None,
    },
    Query {
        key: "user_last_100_typical",
        title: "last 100 events of a typical user",
        sql: include_str!("queries/user_last_100.sql"),
        params: Params::User(|s| s.typical_user),
        claim: None,
    },
    Query {
        key: "jsonb_month",
        title: "JSONB containment within a month",
        sql: include_str!("queries/jsonb_month.sql"),
        params: Params::MonthAnd(JSONB_DOC, true),
        claim: None,
    },
    Query {
        key: "fulltext_month",
        title: "full-text search within a month",
        sql: include_str!("queries/fulltext_month.sql"),
        params: Params::MonthAnd(TSQUERY, false),
        claim: None,
    },
    Query {
        key: "full_table_aggregate",
        title: "whole-table aggregate (GROUP BY severity)",
        sql: include_str!("queries/full_table_aggregate.sql"),
        params: Params::None,
        claim: None,
    },
];

#[derive(Clone, Debug, Serialize)]
pub struct LayoutRun {
    pub client_ms: Summary,
    pub server_ms: Summary,
    pub rows: usize,
    /// From the last EXPLAIN run.
    pub plan: PlanShape,
}

/// `baseline / strata` of the client and server medians.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub baseline: &'static str,
    pub client: Option<f64>,
    pub server: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueryResult {
    pub key: &'static str,
    pub title: &'static str,
    pub sql: String,
    pub params: Vec<String>,
    pub seed_claim: Option<SeedClaim>,
    pub layouts: BTreeMap<&'static str, LayoutRun>,
    pub ratios: Vec<Ratio>,
}

pub(super) type Param = Box<dyn ToSql + Sync + Send>;

pub(super) fn params(p: &Params, s: &DataShape) -> (Vec<Param>, Vec<String>) {
    let ts = |t: DateTime<Utc>| (Box::new(t) as Param, t.to_rfc3339());
    let month = || vec![ts(s.query_month.0), ts(s.query_month.1)];
    let pairs: Vec<(Param, String)> = match p {
        Params::None => vec![],
        Params::Month => month(),
        Params::Day => vec![ts(s.query_day.0), ts(s.query_day.1)],
        Params::User(f) => vec![(Box::new(f(s)), f(s).to_string())],
        Params::MonthAnd(text, json) => {
            let mut v = month();
            let extra: Param = if *json {
                Box::new(serde_json::from_str::<Value>(text).expect("static JSON"))
            } else {
                Box::new(text.to_string())
            };
            v.push((extra, text.to_string()));
            v
        }
    };
    pairs.into_iter().unzip()
}

pub(super) async fn set_layout(client: &Client, l: &Layout) -> Result<(), BenchError> {
    client
        .batch_execute(&format!("SET search_path = {}", l.schema()))
        .await
        .map_err(DbError::query("choosing the layout"))?;
    Ok(())
}

pub(super) async fn client_run(
    client: &Client,
    sql: &str,
    p: &[&(dyn ToSql + Sync)],
) -> Result<(f64, usize), BenchError> {
    let t = Instant::now();
    let rows = client
        .query(sql, p)
        .await
        .map_err(DbError::query("running a workload"))?;
    Ok((t.elapsed().as_secs_f64() * 1000.0, rows.len()))
}

pub(super) async fn explain(
    client: &Client,
    sql: &str,
    p: &[&(dyn ToSql + Sync)],
) -> Result<Value, BenchError> {
    let sql = format!("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) {sql}");
    let row = client
        .query_one(&sql, p)
        .await
        .map_err(DbError::query("explaining a workload"))?;
    Ok(row.get(0))
}

/// The settings of the measuring session, the same for every layout.
pub async fn session(client: &Client) -> Result<(), BenchError> {
    // Repeated LIMIT seq scans on a table bigger than shared_buffers/4 would
    // otherwise start where the previous one stopped and look many times faster.
    client
        .batch_execute("SET synchronize_seqscans = off; SET TimeZone = 'UTC'")
        .await
        .map_err(DbError::query("setting up the session"))?;
    Ok(())
}

/// Runs every workload on every layout (in a session set up by [`session`]).
pub async fn run_all(
    client: &Client,
    built: &Built,
    opts: &Options,
    started: Instant,
) -> Result<Vec<QueryResult>, BenchError> {
    let mut out = Vec::new();
    for q in QUERIES {
        phase(opts.progress, started, &format!("query: {}", q.title));
        out.push(run_one(client, built, q, opts.runs).await?);
    }
    set_layout(client, built.layout(STRATA)).await?;
    Ok(out)
}

async fn run_one(
    client: &Client,
    built: &Built,
    q: &Query,
    runs: u32,
) -> Result<QueryResult, BenchError> {
    let (owned, shown) = params(&q.params, &built.shape);
    let p: Vec<&(dyn ToSql + Sync)> = owned
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let n = built.layouts.len();
    for l in &built.layouts {
        set_layout(client, l).await?;
        client_run(client, q.sql, &p).await?;
    }
    let mut client_ms = vec![Vec::new(); n];
    let mut server_ms = vec![Vec::new(); n];
    let mut rows = vec![0; n];
    let mut plans = vec![PlanShape::default(); n];
    for r in 0..runs as usize {
        // A different layout goes first each round, so none always runs
        // right after another's cache-warming.
        for i in 0..n {
            let at = (r + i) % n;
            let l = &built.layouts[at];
            set_layout(client, l).await?;
            let (ms, count) = client_run(client, q.sql, &p).await?;
            client_ms[at].push(ms);
            rows[at] = count;
            let names = Names {
                partitions: (l.key == STRATA).then_some(built.partitions.as_slice()),
                parent_index: &built.parent_index,
            };
            let shape = plan::shape(&explain(client, q.sql, &p).await?, &names);
            server_ms[at].push(shape.execution_ms);
            plans[at] = shape;
        }
    }
    let mut layouts = BTreeMap::new();
    for (i, l) in built.layouts.iter().enumerate() {
        layouts.insert(
            l.key,
            LayoutRun {
                client_ms: Summary::of(std::mem::take(&mut client_ms[i])),
                server_ms: Summary::of(std::mem::take(&mut server_ms[i])),
                rows: rows[i],
                plan: std::mem::take(&mut plans[i]),
            },
        );
    }
    let strata = &layouts[STRATA];
    let ratios = built
        .layouts
        .iter()
        .filter(|l| l.key != STRATA)
        .map(|l| {
            let b = &layouts[l.key];
            Ratio {
                baseline: l.key,
                client: ratio(b.client_ms.median, strata.client_ms.median),
                server: ratio(b.server_ms.median, strata.server_ms.median),
            }
        })
        .collect();
    Ok(QueryResult {
        key: q.key,
        title: q.title,
        sql: q
            .sql
            .lines()
            .filter(|l| !l.starts_with("--"))
            .collect::<Vec<_>>()
            .join(" "),
        params: shown,
        seed_claim: q.claim,
        layouts,
        ratios,
    })
}
