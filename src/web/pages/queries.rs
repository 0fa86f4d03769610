//! Queries: pg_stat_statements over a chosen window (`stats::queries`,
//! which uses the stored snapshots for a real `days` window), slowest and
//! most frequent. Readers see the text without literals.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::api::AppState;
use crate::html;
use crate::web::html::Html;
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

/// Longest window, in days (the API's limit too).
const MAX_DAYS: u32 = 365;
/// Statements per list.
const LIMIT: usize = 20;

#[derive(Deserialize, Default)]
pub struct Params {
    days: Option<String>,
}

pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(p): Query<Params>,
) -> Response {
    let body = build(&viewer, &state, p).await;
    layout::render(&viewer, Nav::Queries, "Queries", body)
}

fn list(out: &mut Html, title: &str, rows: &Value) {
    html!(
        out,
        "<section><h2>{}</h2><div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"{}\"><table class=\"data\"><thead><tr>\
         <th scope=\"col\">Calls</th><th scope=\"col\">Total ms</th><th scope=\"col\">Mean ms</th>\
         <th scope=\"col\">Rows</th><th scope=\"col\">Cache hit</th><th scope=\"col\">Query</th></tr></thead><tbody>",
        title,
        title
    );
    for q in rows.as_array().into_iter().flatten() {
        let hit = q["shared_blks_hit"].as_f64().unwrap_or(0.0);
        let read = q["shared_blks_read"].as_f64().unwrap_or(0.0);
        let ratio = if hit + read > 0.0 {
            format!("{:.1} %", hit / (hit + read) * 100.0)
        } else {
            "—".into()
        };
        html!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td><code>{}</code></td></tr>",
            q["calls"],
            format!("{:.1}", q["total_ms"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", q["mean_ms"].as_f64().unwrap_or(0.0)),
            q["rows"],
            ratio,
            q["query"].as_str().unwrap_or("")
        );
    }
    html!(out, "</tbody></table></div></section>");
}

async fn build(viewer: &Viewer, state: &AppState, p: Params) -> Result<Html, WebError> {
    let days: u32 = match p.days.as_deref() {
        None | Some("") => 7,
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or_else(|| {
                WebError::bad_input(format!(
                    "days must be a whole number from 1 to {MAX_DAYS}, not {d:?}"
                ))
            })?,
    };
    let client = state.pool.get().await?;
    let r = crate::stats::queries(&client, &state.config.tables, days, LIMIT).await?;
    let mut doc = serde_json::to_value(r).map_err(WebError::internal)?;
    if !viewer.is_admin() {
        crate::api::redact::for_reader(&mut doc);
    }
    let mut out = Html::new();
    html!(
        out,
        "<form method=\"get\" action=\"/queries\" class=\"inline\"><label for=\"days\">Window (days)</label>\
         <input id=\"days\" name=\"days\" type=\"number\" min=\"1\" max=\"{}\" value=\"{}\"><button type=\"submit\">Show</button></form>",
        MAX_DAYS,
        days
    );
    if doc["available"] != Value::Bool(true) {
        html!(
            out,
            "<p class=\"empty\">pg_stat_statements is not available: {}</p>",
            doc["hint"]
                .as_str()
                .unwrap_or("install and load the extension")
        );
        return Ok(out);
    }
    let w = &doc["window"];
    html!(
        out,
        "<p class=\"meta\">From {} to {} ({}). {}</p>",
        w["from"].as_str().unwrap_or("the last statistics reset"),
        w["to"].as_str().unwrap_or(""),
        w["basis"].as_str().unwrap_or(""),
        w["note"].as_str().unwrap_or("")
    );
    if !viewer.is_admin() {
        html!(
            out,
            "<p class=\"help\">Shown without literals (reader session).</p>"
        );
    }
    list(&mut out, "Slowest (total time)", &doc["slowest"]);
    list(&mut out, "Most frequent", &doc["most_frequent"]);
    Ok(out)
}
