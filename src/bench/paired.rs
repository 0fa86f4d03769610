//! Workloads where strata answers differently from the plain table: reports
//! through a rollup view, a user's latest rows through strata's read path
//! (`api::user_walk`, what `GET /audit-logs?user_id=N` and `strata events`
//! call). Each is measured against plain-indexed running the base-table
//! query, in the same rotating-order rounds as the other workloads, and each
//! answer is checked against the plain table's.

use std::time::Instant;

use serde::Serialize;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

use super::layouts::{Built, DataShape};
use super::plan::{self, Names};
use super::workloads::{client_run, explain, params, set_layout, Params};
use super::{phase, ratio, BenchError, Options, Summary, PLAIN_INDEXED, STRATA};
use crate::db::DbError;

/// How strata answers a workload.
enum StrataSide {
    /// A query (on the rollup view), chosen by search_path like the others.
    Sql(&'static str),
    /// `api::user_walk::newest_for_user` for this user, page size
    /// [`PAGE`].
    Walk(fn(&DataShape) -> i64),
}

/// What each workload must reach (`plain / strata` of the client medians).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Goal {
    pub min_ratio: f64,
    pub text: &'static str,
}

const REPORT_GOAL: Goal = Goal {
    min_ratio: 50.0,
    text: "≥ 50x",
};
/// strata at most 1.1x plain's time.
const READ_GOAL: Goal = Goal {
    min_ratio: 1.0 / 1.1,
    text: "≥ 0.91x (≤ 1.1x plain's time)",
};

struct Paired {
    key: &'static str,
    title: &'static str,
    plain: &'static str,
    strata: StrataSide,
    params: Params,
    goal: Goal,
    /// Rounds per `--runs` (sub-millisecond workloads get more).
    rounds_per_run: u32,
}

/// Page size of the read-path workloads.
const PAGE: i64 = 100;

const PAIRED: &[Paired] = &[
    Paired {
        key: "rollup_daily_report",
        title: "daily report (severity, status) via rollup",
        plain: include_str!("queries/rollup/daily_report_base.sql"),
        strata: StrataSide::Sql(include_str!("queries/rollup/daily_report_view.sql")),
        params: Params::Day,
        goal: REPORT_GOAL,
        rounds_per_run: 1,
    },
    Paired {
        key: "rollup_month_day_counts",
        title: "monthly summary (events per day) via rollup",
        plain: include_str!("queries/rollup/day_counts_base.sql"),
        strata: StrataSide::Sql(include_str!("queries/rollup/day_counts_view.sql")),
        params: Params::Month,
        goal: REPORT_GOAL,
        rounds_per_run: 1,
    },
    Paired {
        key: "rollup_severity_all",
        title: "whole-table aggregate (GROUP BY severity) via rollup",
        plain: include_str!("queries/rollup/severity_base.sql"),
        strata: StrataSide::Sql(include_str!("queries/rollup/severity_view.sql")),
        params: Params::None,
        goal: REPORT_GOAL,
        rounds_per_run: 1,
    },
    Paired {
        key: "read_path_heavy",
        title: "latest 100 of the heaviest user, strata's read path",
        plain: include_str!("queries/rollup/user_latest_base.sql"),
        strata: StrataSide::Walk(|s| s.heavy_user),
        params: Params::None,
        goal: READ_GOAL,
        rounds_per_run: 4,
    },
    Paired {
        key: "read_path_typical",
        title: "latest 100 of a typical user, strata's read path",
        plain: include_str!("queries/rollup/user_latest_base.sql"),
        strata: StrataSide::Walk(|s| s.typical_user),
        params: Params::None,
        goal: READ_GOAL,
        rounds_per_run: 4,
    },
];

#[derive(Clone, Debug, Serialize)]
pub struct PairedResult {
    pub key: &'static str,
    pub title: &'static str,
    pub plain_sql: String,
    /// The view query, or the read path's description.
    pub strata_how: String,
    pub params: Vec<String>,
    pub plain_client_ms: Summary,
    pub strata_client_ms: Summary,
    /// EXPLAIN ANALYZE execution time; `None` for the read path (several
    /// statements).
    pub plain_server_ms: Summary,
    pub strata_server_ms: Option<Summary>,
    /// plain median / strata median, client time.
    pub ratio: Option<f64>,
    pub goal: Goal,
    pub goal_met: bool,
    /// Both answers were the same rows (checked once, before the rounds).
    pub same_answer: bool,
    pub rows: usize,
}

fn strip(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One run of a side; the row identity (text of each row) when `keep`.
async fn run_side(
    client: &Client,
    built: &Built,
    q: &Paired,
    strata: bool,
    p: &[&(dyn ToSql + Sync)],
) -> Result<(f64, Vec<String>), BenchError> {
    let user = match q.strata {
        StrataSide::Walk(f) => Some(f(&built.shape)),
        StrataSide::Sql(_) => None,
    };
    let t = Instant::now();
    let ids: Vec<String> = match (&q.strata, strata, user) {
        (StrataSide::Walk(_), true, Some(u)) => {
            let table = &built.layout(STRATA).table;
            let (rows, _) =
                crate::api::user_walk::newest_for_user(client, table, u, None, PAGE).await?;
            rows.iter().map(|r| r.id.to_string()).collect()
        }
        (StrataSide::Walk(_), false, Some(u)) => {
            // One round trip, as the read path's statements: parse, bind
            // and run an unnamed statement.
            let rows = client
                .query_typed(q.plain, &[(&u, Type::INT8), (&PAGE, Type::INT8)])
                .await
                .map_err(DbError::query("running a workload"))?;
            rows.iter()
                .map(|r| r.get::<_, i64>(0).to_string())
                .collect()
        }
        (StrataSide::Sql(view), _, _) => {
            let sql = if strata { view } else { &q.plain };
            let (_, n) = client_run(client, sql, p).await?;
            return Ok((t.elapsed().as_secs_f64() * 1000.0, vec![n.to_string()]));
        }
        _ => unreachable!("a walk always has a user"),
    };
    Ok((t.elapsed().as_secs_f64() * 1000.0, ids))
}

/// The answer of one side as text, to compare exactly.
async fn answer(
    client: &Client,
    built: &Built,
    q: &Paired,
    strata: bool,
    p: &[&(dyn ToSql + Sync)],
) -> Result<Vec<String>, BenchError> {
    match &q.strata {
        StrataSide::Walk(_) => Ok(run_side(client, built, q, strata, p).await?.1),
        StrataSide::Sql(view) => {
            let sql = if strata { view } else { &q.plain };
            let sql = format!("SELECT t::text FROM ({}) t", strip(sql));
            Ok(client
                .query(&sql, p)
                .await
                .map_err(DbError::query("reading a workload's answer"))?
                .iter()
                .map(|r| r.get(0))
                .collect())
        }
    }
}

/// Runs every paired workload (in a session set up by `workloads::session`,
/// after the rollups were refreshed once).
pub async fn run_all(
    client: &Client,
    built: &Built,
    opts: &Options,
    started: Instant,
) -> Result<Vec<PairedResult>, BenchError> {
    let mut out = Vec::new();
    for q in PAIRED {
        phase(opts.progress, started, &format!("query: {}", q.title));
        out.push(run_one(client, built, q, opts.runs * q.rounds_per_run).await?);
    }
    set_layout(client, built.layout(STRATA)).await?;
    Ok(out)
}

async fn run_one(
    client: &Client,
    built: &Built,
    q: &Paired,
    runs: u32,
) -> Result<PairedResult, BenchError> {
    let (owned, shown) = params(&q.params, &built.shape);
    let p: Vec<&(dyn ToSql + Sync)> = owned
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let sides = [
        (built.layout(PLAIN_INDEXED), false),
        (built.layout(STRATA), true),
    ];
    let mut answers = Vec::new();
    for (l, s) in sides {
        set_layout(client, l).await?;
        answers.push(answer(client, built, q, s, &p).await?);
        run_side(client, built, q, s, &p).await?; // warm-up
    }
    let mut client_ms = [Vec::new(), Vec::new()];
    let mut server_ms = [Vec::new(), Vec::new()];
    for r in 0..runs as usize {
        for i in 0..2 {
            let at = (r + i) % 2;
            let (l, s) = sides[at];
            set_layout(client, l).await?;
            client_ms[at].push(run_side(client, built, q, s, &p).await?.0);
            let sql = match (&q.strata, s) {
                (StrataSide::Sql(view), true) => Some(*view),
                (StrataSide::Walk(_), true) => None,
                (_, false) => Some(q.plain),
            };
            if let Some(sql) = sql {
                let shown_user = match q.strata {
                    StrataSide::Walk(f) => Some(f(&built.shape)),
                    StrataSide::Sql(_) => None,
                };
                let names = Names {
                    partitions: s.then_some(built.partitions.as_slice()),
                    parent_index: &built.parent_index,
                };
                let plan = match shown_user {
                    Some(u) => explain(client, sql, &[&u, &PAGE]).await?,
                    None => explain(client, sql, &p).await?,
                };
                server_ms[at].push(plan::shape(&plan, &names).execution_ms);
            }
        }
    }
    let [pc, sc] = client_ms.map(Summary::of);
    let [ps, ss] = server_ms.map(Summary::of);
    let r = ratio(pc.median, sc.median);
    let mut params = shown;
    if let StrataSide::Walk(f) = q.strata {
        params = vec![f(&built.shape).to_string(), PAGE.to_string()];
    }
    Ok(PairedResult {
        key: q.key,
        title: q.title,
        plain_sql: strip(q.plain),
        strata_how: match q.strata {
            StrataSide::Sql(view) => strip(view),
            StrataSide::Walk(_) => format!(
                "strata::api::user_walk::newest_for_user(table, user, no cursor, limit {PAGE}): the \
                 kept partition list's catalog check pipelined with the newest partition's query, then \
                 one bounded query per further non-empty partition, newest first, until the page is \
                 full"
            ),
        },
        params,
        plain_client_ms: pc,
        strata_client_ms: sc,
        plain_server_ms: ps,
        strata_server_ms: matches!(q.strata, StrataSide::Sql(_)).then_some(ss),
        ratio: r,
        goal: q.goal,
        goal_met: r.is_some_and(|r| r >= q.goal.min_ratio),
        same_answer: answers[0] == answers[1],
        rows: answers[1].len(),
    })
}
