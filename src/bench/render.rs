//! The report as text: a human table for the terminal and Markdown for a README.

use super::paired::PairedResult;
use super::summary::Summary;
use super::upkeep::Compared;
use super::workloads::QueryResult;
use super::{Report, PLAIN_INDEXED, SEED_BEFORE, STRATA};
use crate::format;

const ORDER: [&str; 3] = [SEED_BEFORE, PLAIN_INDEXED, STRATA];

fn label(key: &str) -> &'static str {
    match key {
        SEED_BEFORE => "original-before",
        PLAIN_INDEXED => "plain-indexed",
        _ => "strata",
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn secs_or_ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else {
        format!("{} ms", ms(v))
    }
}

fn x(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 10.0 => format!("{r:.0}x"),
        Some(r) => format!("{r:.2}x"),
        None => "-".into(),
    }
}

fn median_p95(s: &Summary) -> String {
    format!("{} / {}", ms(s.median), ms(s.p95))
}

fn query_rows(r: &Report, server: bool) -> Vec<Vec<String>> {
    r.queries
        .iter()
        .map(|q| {
            let mut row = vec![q.title.to_string()];
            for k in ORDER {
                let l = &q.layouts[k];
                row.push(median_p95(if server { &l.server_ms } else { &l.client_ms }));
            }
            for ratio in &q.ratios {
                row.push(x(if server { ratio.server } else { ratio.client }));
            }
            row.push(claim(q));
            row
        })
        .collect()
}

fn claim(q: &QueryResult) -> String {
    q.seed_claim.map_or("-".into(), |c| {
        format!(
            "{:.0} → {:.0} ms ({})",
            c.before_ms,
            c.after_ms,
            x(Some(c.ratio))
        )
    })
}

const QUERY_HEADERS: [&str; 7] = [
    "workload",
    ">original-before",
    ">plain-indexed",
    ">strata",
    ">before/strata",
    ">indexed/strata",
    "original design's claim",
];

fn plan_rows(r: &Report) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for q in &r.queries {
        for k in ORDER {
            let p = &q.layouts[k].plan;
            let parts = match (
                p.partitions_scanned,
                p.partitions_planned,
                p.partitions_total,
            ) {
                (Some(s), Some(pl), Some(t)) => format!("{s} read, {pl} planned / {t}"),
                _ => "-".into(),
            };
            rows.push(vec![
                if k == SEED_BEFORE {
                    q.title.to_string()
                } else {
                    String::new()
                },
                label(k).into(),
                p.scans.join(", "),
                if p.indexes.is_empty() {
                    "-".into()
                } else {
                    p.indexes.join(", ")
                },
                parts,
                format!(
                    "{} / {}",
                    format::count(p.shared_hit as u64),
                    format::count(p.shared_read as u64)
                ),
                q.layouts[k].rows.to_string(),
            ]);
        }
    }
    rows
}

const PLAN_HEADERS: [&str; 7] = [
    "workload",
    "layout",
    "scans",
    "indexes",
    "partitions",
    ">shared hit / read",
    ">rows",
];

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn paired_rows(r: &Report) -> Vec<Vec<String>> {
    r.paired
        .iter()
        .map(|q: &PairedResult| {
            vec![
                q.title.to_string(),
                median_p95(&q.plain_client_ms),
                median_p95(&q.strata_client_ms),
                median_p95(&q.plain_server_ms),
                q.strata_server_ms.as_ref().map_or("-".into(), median_p95),
                x(q.ratio),
                q.goal.text.to_string(),
                yes_no(q.goal_met),
                yes_no(q.same_answer),
            ]
        })
        .collect()
}

const PAIRED_HEADERS: [&str; 9] = [
    "workload",
    ">plain-indexed client",
    ">strata client",
    ">plain-indexed server",
    ">strata server",
    ">indexed/strata",
    "goal",
    "met",
    "same answer",
];

fn rollup_rows(r: &Report) -> Vec<Vec<String>> {
    let ro = &r.rollups;
    let mut rows: Vec<Vec<String>> = ro
        .sizes
        .iter()
        .map(|s| {
            vec![
                format!(
                    "rollup {} ({}; {})",
                    s.name,
                    s.bucket,
                    if s.dimensions.is_empty() {
                        "no dimension".into()
                    } else {
                        s.dimensions.join(", ")
                    }
                ),
                format!(
                    "{} rows, {}",
                    format::count(s.rows as u64),
                    format::bytes(s.bytes as u64)
                ),
                "-".into(),
                "-".into(),
            ]
        })
        .collect();
    let pct = ro.percent.unwrap_or(f64::NAN);
    rows.push(vec![
        format!(
            "rollup storage / table (heap + indexes of all partitions, {})",
            format::bytes(ro.table_bytes as u64)
        ),
        format!("{} = {pct:.3} %", format::bytes(ro.rollup_bytes as u64)),
        "< 1 %".into(),
        yes_no(pct < 1.0),
    ]);
    rows.push(vec![
        "rollup apply (storage, views, triggers)".into(),
        secs_or_ms(ro.apply_ms),
        "-".into(),
        "-".into(),
    ]);
    rows.push(vec![
        "first rollup refresh (every bucket)".into(),
        secs_or_ms(ro.first_refresh_ms),
        "-".into(),
        "-".into(),
    ]);
    for f in &ro.refreshes {
        rows.push(vec![
            f.what.clone(),
            format!(
                "{} ({} buckets, {} base rows)",
                secs_or_ms(f.ms),
                format::count(f.buckets),
                format::count(f.base_rows)
            ),
            "< 200 ms".into(),
            yes_no(f.ms < 200.0),
        ]);
    }
    rows
}

const ROLLUP_HEADERS: [&str; 4] = ["what (strata layout)", ">figure", "goal", "met"];

fn index_rows(r: &Report) -> Vec<Vec<String>> {
    let i = &r.index_sizes;
    let row = |what: &str, t: &super::layouts::TimedIndex| {
        vec![
            what.to_string(),
            format::bytes(t.bytes as u64),
            secs_or_ms(t.ms),
        ]
    };
    vec![
        row("B-tree on created_at, plain-indexed", &i.btree),
        row(
            "BRIN on created_at, strata (all partitions)",
            &i.brin_strata,
        ),
        row("BRIN on created_at, same plain table", &i.brin_plain),
        vec![
            "B-tree / strata BRIN".into(),
            x(i.size_ratio),
            x(i.build_ratio),
        ],
        vec![
            "original design's claim".into(),
            "5 GB vs 5 MB (1000x)".into(),
            "120 s vs 20 s (6x)".into(),
        ],
    ]
}

fn maintenance_rows(steps: &[Compared]) -> Vec<Vec<String>> {
    steps
        .iter()
        .map(|c| {
            vec![
                c.what.clone(),
                secs_or_ms(c.baseline_ms),
                c.strata_what.clone(),
                secs_or_ms(c.strata_ms),
                x(c.ratio),
                c.seed_claim.map_or("-".into(), |(b, a)| {
                    format!(
                        "{:.0} → {:.0} s ({})",
                        b / 1000.0,
                        a / 1000.0,
                        x(Some(b / a))
                    )
                }),
            ]
        })
        .collect()
}

fn load_rows(r: &Report) -> Vec<Vec<String>> {
    r.load
        .rates
        .iter()
        .map(|l| {
            let ratio = r
                .load
                .ratios
                .iter()
                .find(|(k, _)| *k == l.layout)
                .map_or("-".into(), |(_, v)| x(*v));
            vec![
                label(l.layout).into(),
                format::count(l.rows),
                secs_or_ms(l.ms),
                format::count(l.rows_per_sec as u64),
                ratio,
            ]
        })
        .collect()
}

fn machine_line(r: &Report) -> String {
    let m = &r.machine;
    let mem = m.memory_bytes.map_or("?".into(), format::bytes);
    let load = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.2}"));
    let settings: Vec<String> = m.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} cores, {mem} RAM, load average {} at the start and {} at the end; {}\nsettings: {}",
        m.cores,
        load(m.load_average_start),
        load(m.load_average_end),
        m.server_version,
        settings.join(", ")
    )
}

/// The report for a terminal.
pub fn human(r: &Report) -> String {
    let mut out = format!(
        "strata bench: {} rows ({} .. {}), {} runs per workload, wall time {}\n{}\n",
        format::count(r.rows),
        r.data.from.date_naive(),
        r.data.to.date_naive(),
        r.runs,
        format::duration(std::time::Duration::from_millis(r.wall_ms as u64)),
        machine_line(r)
    );
    out.push_str("\nLayouts:\n");
    for l in &r.layouts {
        out.push_str(&format!(
            "  {:<14} heap {}, indexes {}: {}\n",
            label(l.key),
            format::bytes(l.table_bytes as u64),
            format::bytes(l.index_bytes as u64),
            l.how_built
        ));
    }
    let sections: [(&str, String); 8] = [
        (
            "Queries, client time in ms (median / p95); ratio = layout / strata, above 1 strata is faster",
            format::table(&QUERY_HEADERS, &query_rows(r, false)),
        ),
        (
            "Queries, server execution time in ms (EXPLAIN ANALYZE, median / p95)",
            format::table(&QUERY_HEADERS, &query_rows(r, true)),
        ),
        ("Plans (last EXPLAIN run)", format::table(&PLAN_HEADERS, &plan_rows(r))),
        (
            "Rollup and read-path workloads, ms (median / p95); ratio = plain-indexed / strata, client time",
            format::table(&PAIRED_HEADERS, &paired_rows(r)),
        ),
        (
            "Rollups (strata layout)",
            format::table(&ROLLUP_HEADERS, &rollup_rows(r)),
        ),
        (
            "Index on created_at",
            format::table(&["index", ">size", ">build"], &index_rows(r)),
        ),
        (
            "Maintenance (plain-indexed vs strata, one run each, in this order)",
            format::table(
                &["plain-indexed", ">time", "strata", ">time", ">ratio", "original design's claim"],
                &maintenance_rows(&r.maintenance.steps),
            ),
        ),
        (
            &r.load.what,
            format::table(&["layout", ">rows", ">time", ">rows/s", ">layout/strata"], &load_rows(r)),
        ),
    ];
    for (title, table) in sections {
        out.push_str(&format!("\n{title}:\n{table}\n"));
    }
    for n in r.method.iter().chain(&r.maintenance.notes) {
        out.push_str(&format!("\nnote: {n}"));
    }
    out.push('\n');
    out
}

fn md_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let head: Vec<&str> = headers.iter().map(|h| h.trim_start_matches('>')).collect();
    let align: Vec<&str> = headers
        .iter()
        .map(|h| if h.starts_with('>') { "---:" } else { "---" })
        .collect();
    let mut out = format!("| {} |\n|{}|\n", head.join(" | "), align.join("|"));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// The report as Markdown, ready to paste into a README.
pub fn markdown(r: &Report) -> String {
    let mut out = format!(
        "`strata bench --rows {}` ({} runs per workload, wall time {}). Machine: {}\n\n",
        r.rows,
        r.runs,
        format::duration(std::time::Duration::from_millis(r.wall_ms as u64)),
        machine_line(r).replace('\n', ". ")
    );
    out.push_str("**Queries**, client time in ms, median / p95 (ratio = layout / strata: above 1 strata is faster):\n\n");
    out.push_str(&md_table(&QUERY_HEADERS, &query_rows(r, false)));
    out.push_str("\n**Server execution time** in ms (EXPLAIN ANALYZE), median / p95:\n\n");
    out.push_str(&md_table(&QUERY_HEADERS, &query_rows(r, true)));
    out.push_str("\n**Plans** (last EXPLAIN run):\n\n");
    out.push_str(&md_table(&PLAN_HEADERS, &plan_rows(r)));
    out.push_str("\n**Rollup and read-path workloads**, ms, median / p95 (ratio = plain-indexed / strata, client time):\n\n");
    out.push_str(&md_table(&PAIRED_HEADERS, &paired_rows(r)));
    out.push_str("\n**Rollups** (strata layout):\n\n");
    out.push_str(&md_table(&ROLLUP_HEADERS, &rollup_rows(r)));
    out.push_str("\n**Index on created_at**:\n\n");
    out.push_str(&md_table(&["index", ">size", ">build"], &index_rows(r)));
    out.push_str("\n**Maintenance** (one run each, in this order):\n\n");
    out.push_str(&md_table(
        &[
            "plain-indexed",
            ">time",
            "strata",
            ">time",
            ">ratio",
            "original design's claim",
        ],
        &maintenance_rows(&r.maintenance.steps),
    ));
    out.push_str(&format!("\n**Load**: {}.\n\n", r.load.what));
    out.push_str(&md_table(
        &["layout", ">rows", ">time", ">rows/s", ">layout/strata"],
        &load_rows(r),
    ));
    out.push_str("\n**Layouts**:\n\n");
    for l in &r.layouts {
        out.push_str(&format!(
            "- {} (heap {}, indexes {}): {}\n",
            label(l.key),
            format::bytes(l.table_bytes as u64),
            format::bytes(l.index_bytes as u64),
            l.how_built
        ));
    }
    out
}
