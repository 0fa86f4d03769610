//! Conversion: the online conversion's phase, rows copied, rate, ETA,
//! verify result and the next command, from `convert::status`.

use axum::extract::State;
use axum::response::Response;

use crate::api::AppState;
use crate::convert::{ConvertError, Phase};
use crate::html;
use crate::web::html::Html;
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

use super::{count, empty, when};

pub async fn page(viewer: Viewer, State(state): State<AppState>) -> Response {
    let body = build(&state).await;
    layout::render(&viewer, Nav::Conversion, "Conversion", body)
}

/// The command that moves a conversion in `phase` on.
pub fn next_command(phase: Phase, table: &str) -> Option<String> {
    let verb = match phase {
        Phase::Starting
        | Phase::Started
        | Phase::Backfilling
        | Phase::Backfilled
        | Phase::Indexed => "resume",
        Phase::Verified => "cutover",
        Phase::CutOver => "cleanup",
        Phase::RolledBack | Phase::Cleaned => return None,
    };
    Some(format!("strata convert {verb} --table {table}"))
}

async fn build(state: &AppState) -> Result<Html, WebError> {
    let client = state.pool.get().await?;
    let mut out = Html::new();
    for spec in &state.config.tables {
        let table = spec.name.display_unquoted();
        html!(out, "<section><h2>{}</h2>", table);
        match crate::convert::status(&client, spec).await {
            Err(ConvertError::NotStarted(_)) => empty(
                &mut out,
                "No conversion of this table",
                &format!("strata convert start --table {table}"),
            ),
            Err(e) => return Err(WebError::internal(e)),
            Ok(s) => {
                let c = &s.conversion;
                html!(
                    out,
                    "<dl class=\"facts\"><div><dt>Phase</dt><dd data-testid=\"phase\">{}</dd></div>\
                     <div><dt>Rows copied</dt><dd>{}</dd></div><div><dt>Of about</dt><dd>{}</dd></div>\
                     <div><dt>Progress</dt><dd><progress max=\"100\" value=\"{}\" aria-label=\"Backfill progress\"></progress> {} %</dd></div>\
                     <div><dt>Rate</dt><dd>{}</dd></div><div><dt>ETA</dt><dd>{}</dd></div>\
                     <div><dt>Verified</dt><dd>{}</dd></div><div><dt>Started</dt><dd>{}</dd></div></dl>",
                    c.phase.as_str(),
                    count(c.rows_copied),
                    c.rows_total_estimate.map(count).unwrap_or_else(|| "—".into()),
                    format!("{:.0}", s.percent),
                    format!("{:.1}", s.percent),
                    s.rows_per_second
                        .map(|r| format!("{} rows/s", count(r as i64)))
                        .unwrap_or_else(|| "—".into()),
                    s.eta_seconds
                        .map(|e| crate::format::duration(std::time::Duration::from_secs_f64(e.max(0.0))))
                        .unwrap_or_else(|| "—".into()),
                    c.verified_at
                        .map(|t| format!("counts and per-range hashes matched at {}", when(Some(t))))
                        .unwrap_or_else(|| "not yet".into()),
                    when(Some(c.started_at))
                );
                if let Some(e) = &c.last_error {
                    html!(
                        out,
                        "<div class=\"error\" role=\"alert\"><p>Last error: {}</p></div>",
                        e
                    );
                }
                match next_command(c.phase, &table) {
                    Some(cmd) => html!(out, "<p>Next: <code>{}</code></p>", cmd),
                    None => html!(out, "<p>Nothing left to do.</p>"),
                }
            }
        }
        html!(out, "</section>");
    }
    Ok(out)
}
