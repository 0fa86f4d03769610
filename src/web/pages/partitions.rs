//! Partitions: bounds, rows, table/index/TOAST bytes, dead tuples, last
//! (auto)vacuum and analyze per partition, sortable by any column (links,
//! so sorting works without script); growth per period as a chart.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::api::AppState;
use crate::html;
use crate::stats::PartitionStat;
use crate::web::charts;
use crate::web::html::Html;
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

use super::{bytes, count, when};

#[derive(Deserialize, Default)]
pub struct Params {
    sort: Option<String>,
    dir: Option<String>,
}

/// Sortable columns: key, header.
const COLUMNS: [(&str, &str); 11] = [
    ("name", "Partition"),
    ("from", "From"),
    ("to", "To"),
    ("rows", "Rows (est.)"),
    ("table", "Table"),
    ("index", "Indexes"),
    ("toast", "TOAST"),
    ("total", "Total"),
    ("dead", "Dead tuples"),
    ("vacuum", "Last (auto)vacuum"),
    ("analyze", "Last (auto)analyze"),
];

/// A size, marked ≈ when it is the catalog's estimate.
fn approx(p: &PartitionStat, n: i64) -> String {
    if p.size_exact {
        bytes(n)
    } else {
        format!("≈ {}", bytes(n))
    }
}

fn last(
    a: Option<chrono::DateTime<chrono::Utc>>,
    b: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    a.max(b)
}

fn sort(parts: &mut [&PartitionStat], key: &str) -> Result<(), WebError> {
    match key {
        "name" => parts.sort_by(|a, b| a.name.cmp(&b.name)),
        "from" => parts.sort_by_key(|p| p.from),
        "to" => parts.sort_by_key(|p| p.to),
        "rows" => parts.sort_by_key(|p| p.estimated_rows),
        "table" => parts.sort_by_key(|p| p.table_bytes),
        "index" => parts.sort_by_key(|p| p.index_bytes),
        "toast" => parts.sort_by_key(|p| p.toast_bytes),
        "total" => parts.sort_by_key(|p| p.total_bytes),
        "dead" => parts.sort_by_key(|p| p.dead_tuples),
        "vacuum" => parts.sort_by_key(|p| last(p.last_vacuum, p.last_autovacuum)),
        "analyze" => parts.sort_by_key(|p| last(p.last_analyze, p.last_autoanalyze)),
        other => {
            return Err(WebError::bad_input(format!(
                "cannot sort by {other:?}; choose one of {}",
                COLUMNS.map(|c| c.0).join(", ")
            )))
        }
    }
    Ok(())
}

pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(p): Query<Params>,
) -> Response {
    let body = build(&state, p).await;
    layout::render(&viewer, Nav::Partitions, "Partitions", body)
}

fn header(out: &mut Html, key: &str, label: &str, sorted: &str, desc: bool) {
    let (aria, next) = if key == sorted {
        (
            if desc { "descending" } else { "ascending" },
            if desc { "asc" } else { "desc" },
        )
    } else {
        ("none", "asc")
    };
    html!(
        out,
        "<th scope=\"col\" aria-sort=\"{}\"><a href=\"?sort={}&amp;dir={}\">{}</a></th>",
        aria,
        key,
        next,
        label
    );
}

async fn build(state: &AppState, p: Params) -> Result<Html, WebError> {
    let key = p.sort.unwrap_or_else(|| "from".into());
    let desc = match p.dir.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(WebError::bad_input(format!(
                "dir must be asc or desc, not {other:?}"
            )))
        }
    };
    let mut client = state.pool.get().await?;
    let mut out = Html::new();
    for spec in &state.config.tables {
        let s = crate::stats::partitions(&mut client, spec).await?;
        let mut in_time: Vec<&PartitionStat> =
            s.partitions.iter().filter(|p| !p.is_default).collect();
        in_time.sort_by_key(|p| p.from);
        let growth: Vec<(String, f64)> = in_time
            .iter()
            .map(|p| (p.name.clone(), p.total_bytes as f64))
            .collect();
        let measured = s.partitions.iter().filter(|p| p.size_exact).count();
        html!(
            out,
            "<section><h2>{}</h2><p>{} partitions, {} in all, {} dead tuples.</p>\
             <p class=\"meta\">Sizes marked ≈ are estimates from the catalog (pages counted by the last \
             VACUUM, ANALYZE or index build); the {} measured ones are the default partition and those \
             written since their last analyze.</p><h3>Growth per period</h3>",
            s.table,
            s.partition_count,
            s.total_size_pretty,
            count(s.dead_tuples),
            measured
        );
        out.push(&charts::bars(
            &format!("Bytes per partition of {}, in time order", s.table),
            &growth,
            |v| bytes(v as i64),
        ));
        let mut rows: Vec<&PartitionStat> = s.partitions.iter().collect();
        sort(&mut rows, &key)?;
        if desc {
            rows.reverse();
        }
        html!(
            out,
            "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Partitions of {}\"><table class=\"data\">\
             <caption class=\"sr-only\">Partitions of {}</caption><thead><tr>",
            s.table,
            s.table
        );
        for (k, label) in COLUMNS {
            header(&mut out, k, label, &key, desc);
        }
        html!(out, "</tr></thead><tbody>");
        for p in rows {
            html!(
                out,
                "<tr><th scope=\"row\">{}{}</th><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                p.name,
                if p.is_default { " (default)" } else { "" },
                when(p.from),
                when(p.to),
                count(p.estimated_rows),
                approx(p, p.table_bytes),
                approx(p, p.index_bytes),
                approx(p, p.toast_bytes),
                approx(p, p.total_bytes),
                count(p.dead_tuples),
                when(last(p.last_vacuum, p.last_autovacuum)),
                when(last(p.last_analyze, p.last_autoanalyze))
            );
        }
        html!(out, "</tbody></table></div></section>");
    }
    Ok(out)
}
