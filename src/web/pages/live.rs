//! Live: running queries, lock waits (waiter and its blockers) and
//! sessions idle in a transaction, from the health checks' own queries run
//! with every threshold at zero. Admins see the full text; readers see it
//! without literals (`api::redact`), as in the API.

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use crate::api::AppState;
use crate::health::{self, HealthThresholds};
use crate::html;
use crate::web::html::Html;
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

pub async fn page(viewer: Viewer, State(state): State<AppState>) -> Response {
    let body = build(&viewer, &state).await;
    layout::render(&viewer, Nav::Live, "Live", body)
}

/// The rows of a check's evidence (its one list) as a table.
pub fn evidence_table(out: &mut Html, caption: &str, evidence: &Value) {
    let rows = evidence
        .as_object()
        .and_then(|o| o.values().find_map(|v| v.as_array()))
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() {
        html!(out, "<p>None right now.</p>");
        return;
    }
    let keys: Vec<String> = rows[0]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    html!(
        out,
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"{}\"><table class=\"data\"><thead><tr>",
        caption
    );
    for k in &keys {
        html!(out, "<th scope=\"col\">{}</th>", k.replace('_', " "));
    }
    html!(out, "</tr></thead><tbody>");
    for r in &rows {
        html!(out, "<tr>");
        for k in &keys {
            let v = &r[k];
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => "—".into(),
                Value::Number(n) => n
                    .as_f64()
                    .filter(|_| n.is_f64())
                    .map(|f| format!("{f:.1}"))
                    .unwrap_or_else(|| n.to_string()),
                other => other.to_string(),
            };
            if k == "query" {
                html!(out, "<td><code>{}</code></td>", text);
            } else {
                html!(out, "<td>{}</td>", text);
            }
        }
        html!(out, "</tr>");
    }
    html!(out, "</tbody></table></div>");
}

async fn build(viewer: &Viewer, state: &AppState) -> Result<Html, WebError> {
    let t = HealthThresholds {
        long_query_warning_seconds: 0.0,
        idle_in_transaction_warning_seconds: 0.0,
        lock_wait_warning_seconds: 0.0,
        ..state.config.health.clone()
    };
    let client = state.pool.get().await?;
    let checks = [
        (
            "Running queries",
            health::long_running_queries(&client, &t).await,
        ),
        (
            "Lock waits (waiter, blocked by)",
            health::lock_waits(&client, &t).await,
        ),
        (
            "Idle in transaction",
            health::idle_in_transaction(&client, &t).await,
        ),
    ];
    let mut out = Html::new();
    html!(
        out,
        "<div id=\"live\" data-live=\"5000\"><p class=\"meta\">Refreshed every 5 s. {}</p>",
        if viewer.is_admin() {
            "Full query text (admin session)."
        } else {
            "Query text without literals (reader session)."
        }
    );
    for (title, result) in checks {
        let check = result.map_err(WebError::internal)?;
        let mut doc = serde_json::to_value(&check).map_err(WebError::internal)?;
        if !viewer.is_admin() {
            crate::api::redact::for_reader(&mut doc);
        }
        html!(out, "<section><h2>{}</h2>", title);
        evidence_table(&mut out, title, &doc["evidence"]);
        html!(out, "</section>");
    }
    html!(out, "</div>");
    Ok(out)
}
