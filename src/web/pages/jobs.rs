//! Jobs: running ones (refreshed live by `app.js` while any runs), the
//! history with results and errors, and, for admins, starting vacuum,
//! analyze, reindex or maintain: a form, a confirmation page that shows
//! what will run, then a POST that goes through the API's own job path
//! (`api::maintenance::start_action` → `JobRunner::start` → `ops::begin`),
//! so the lock, the job row and the 409 are the API's.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use crate::api::maintenance::{start_action, Action};
use crate::api::AppState;
use crate::html;
use crate::jobs::JobRecord;
use crate::web::csrf;
use crate::web::html::{url_component, Html};
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

use super::{badge, when};

/// History rows shown.
const HISTORY: i64 = 50;

/// The actions a form may name, with what the confirmation says.
const ACTIONS: [(&str, &str); 5] = [
    ("vacuum", "VACUUM"),
    ("vacuum_analyze", "VACUUM (ANALYZE)"),
    ("analyze", "ANALYZE"),
    ("reindex", "REINDEX INDEX CONCURRENTLY, index by index"),
    ("maintain", "partition maintenance"),
];

fn action(name: &str) -> Result<Action, WebError> {
    Ok(match name {
        "vacuum" => Action::Vacuum { analyze: false },
        "vacuum_analyze" => Action::Vacuum { analyze: true },
        "analyze" => Action::Analyze,
        "reindex" => Action::Reindex,
        "maintain" => Action::Maintain,
        other => {
            return Err(WebError::bad_input(format!(
                "unknown action {other:?}; choose one of {}",
                ACTIONS.map(|a| a.0).join(", ")
            )))
        }
    })
}

#[derive(Deserialize, Default)]
pub struct PageParams {
    started: Option<i64>,
}

pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(p): Query<PageParams>,
) -> Response {
    let body = build(&viewer, &state, p.started, None).await;
    layout::render(&viewer, Nav::Jobs, "Jobs", body)
}

fn job_row(out: &mut Html, j: &JobRecord, running: bool) {
    html!(
        out,
        "<tr data-job-id=\"{}\"><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td class=\"state\">",
        j.id,
        j.id,
        j.kind,
        j.target
    );
    badge(out, &j.state);
    html!(
        out,
        "</td><td>{}</td><td>{}</td>",
        j.actor.as_deref().unwrap_or("—"),
        when(j.started_at)
    );
    if running {
        let secs = j
            .started_at
            .map(|s| (Utc::now() - s).num_seconds().max(0))
            .unwrap_or(0);
        html!(
            out,
            "<td><progress aria-label=\"Job {} running\"></progress> {} s so far",
            j.id,
            secs
        );
        if let Some(p) = &j.progress {
            html!(out, "<br><span class=\"progress-line\">{}</span>", p);
        }
        html!(out, "</td></tr>");
        return;
    }
    html!(out, "<td>{}</td><td>", when(j.finished_at));
    if let Some(e) = &j.error {
        html!(out, "<span class=\"err\">{}</span>", e);
    } else if let Some(r) = &j.result {
        let text = r.to_string();
        let short: String = text.chars().take(300).collect();
        html!(
            out,
            "<details><summary>result</summary><code>{}{}</code></details>",
            short,
            if text.len() > short.len() { "…" } else { "" }
        );
    }
    html!(out, "</td></tr>");
}

fn start_form(out: &mut Html, state: &AppState) {
    html!(
        out,
        "<section aria-labelledby=\"start\"><h2 id=\"start\">Start maintenance</h2>\
         <form method=\"get\" action=\"/jobs/confirm\" class=\"inline\">\
         <label for=\"action\">Action</label><select id=\"action\" name=\"action\">"
    );
    for (k, label) in ACTIONS {
        html!(out, "<option value=\"{}\">{}</option>", k, label);
    }
    let first = state.table().display_unquoted();
    html!(
        out,
        "</select><label for=\"table\">Table or partition</label>\
         <input id=\"table\" name=\"table\" value=\"{}\" required>\
         <button type=\"submit\">Review…</button></form>\
         <p class=\"help\">The next page shows what will run; nothing starts before you confirm.</p></section>",
        first
    );
}

async fn build(
    viewer: &Viewer,
    state: &AppState,
    started: Option<i64>,
    problem: Option<&WebError>,
) -> Result<Html, WebError> {
    let client = state.pool.get().await?;
    let jobs = crate::jobs::list(&client, None, HISTORY)
        .await
        .map_err(WebError::internal)?;
    let mut out = Html::new();
    if let Some(p) = problem {
        out.push(&layout::error_box(&p.message));
    }
    if let Some(id) = started {
        html!(
            out,
            "<p class=\"ok\" role=\"status\">Job {} started; it is followed below.</p>",
            id
        );
    }
    if viewer.is_admin() {
        start_form(&mut out, state);
    }
    let running: Vec<&JobRecord> = jobs.iter().filter(|j| j.state == "running").collect();
    // `data-live` makes app.js refresh this block while something runs.
    if running.is_empty() {
        html!(out, "<div id=\"live\">");
    } else {
        html!(
            out,
            "<div id=\"live\" data-live=\"1500\" aria-live=\"polite\">"
        );
    }
    html!(
        out,
        "<section aria-labelledby=\"running\"><h2 id=\"running\">Running ({})</h2>",
        running.len()
    );
    let head =
        "<table class=\"data\"><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Kind</th>\
                <th scope=\"col\">Target</th><th scope=\"col\">State</th><th scope=\"col\">By</th>\
                <th scope=\"col\">Started</th>";
    if running.is_empty() {
        html!(out, "<p>Nothing is running.</p>");
    } else {
        out.write_escaped(format_args!(
            "{head}<th scope=\"col\">Progress</th></tr></thead><tbody>"
        ));
        for j in &running {
            job_row(&mut out, j, true);
        }
        html!(out, "</tbody></table>");
    }
    html!(
        out,
        "</section><section aria-labelledby=\"history\"><h2 id=\"history\">History</h2>"
    );
    out.write_escaped(format_args!(
        "{head}<th scope=\"col\">Finished</th><th scope=\"col\">Result or error</th></tr></thead><tbody>"
    ));
    for j in jobs.iter().filter(|j| j.state != "running") {
        job_row(&mut out, j, false);
    }
    html!(out, "</tbody></table></section></div>");
    Ok(out)
}

#[derive(Deserialize)]
pub struct ConfirmParams {
    action: Option<String>,
    table: Option<String>,
}

pub async fn confirm(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(p): Query<ConfirmParams>,
) -> Response {
    if let Err(refused) = viewer.require_admin(&state).await {
        return refused;
    }
    let body = confirm_body(&viewer, &state, p).await;
    layout::render(&viewer, Nav::Jobs, "Confirm maintenance", body)
}

async fn confirm_body(
    viewer: &Viewer,
    state: &AppState,
    p: ConfirmParams,
) -> Result<Html, WebError> {
    let name = p.action.unwrap_or_default();
    let act = action(&name)?;
    let table = p.table.unwrap_or_default();
    let mut client = state.pool.get().await?;
    // Read-only: the same resolution the job does, to say what it covers.
    let target = crate::maintenance::resolve(&mut client, &state.config.tables, &table)
        .await
        .map_err(|e| match e {
            crate::maintenance::MaintenanceError::UnknownTarget { .. } => {
                WebError::bad_input(e.to_string())
            }
            other => WebError::internal(other),
        })?;
    if act == Action::Maintain && !target.is_parent {
        return Err(WebError::bad_input(format!(
            "maintain works on a managed table, and {} is one of its partitions",
            target.relation.display_unquoted()
        )));
    }
    let label = ACTIONS
        .iter()
        .find(|a| a.0 == name)
        .map(|a| a.1)
        .unwrap_or("");
    let mut out = Html::new();
    let spec = &target.spec;
    if act == Action::Maintain {
        html!(
            out,
            "<p>This runs <strong>partition maintenance</strong> of <strong>{}</strong> as a job: \
             create partitions up to {} periods ahead, move rows out of the default partition into \
             their partitions, and apply retention ({}).</p>",
            spec.name.display_unquoted(),
            spec.premake,
            spec.retention
                .as_ref()
                .map(|r| format!("{r:?} {:?}", spec.retention_mode))
                .unwrap_or_else(|| "none: nothing is detached or dropped".into())
        );
    } else {
        html!(
            out,
            "<p>This runs <strong>{}</strong> on <strong>{}</strong> as a job, one relation at a time \
             ({} in all), each with a bounded lock wait:</p><ul class=\"leaves\">",
            label,
            target.relation.display_unquoted(),
            target.leaves.len()
        );
        for leaf in target.leaves.iter().take(12) {
            html!(out, "<li><code>{}</code></li>", leaf.display_unquoted());
        }
        if target.leaves.len() > 12 {
            html!(out, "<li>… and {} more</li>", target.leaves.len() - 12);
        }
        html!(out, "</ul>");
    }
    html!(
        out,
        "<form method=\"post\" action=\"/jobs/start\">\
         <input type=\"hidden\" name=\"action\" value=\"{}\"><input type=\"hidden\" name=\"table\" value=\"{}\">",
        name,
        table
    );
    out.push(&csrf::input(viewer));
    html!(
        out,
        "<button type=\"submit\" data-testid=\"confirm-start\">Start {}</button> <a href=\"/jobs\">Cancel</a></form>",
        label
    );
    Ok(out)
}

#[derive(Deserialize)]
struct StartForm {
    action: String,
    table: String,
}

pub async fn start(
    viewer: Viewer,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: StartForm = match csrf::form(&state, &viewer, &headers, &body).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    if let Err(refused) = viewer.require_admin(&state).await {
        return refused;
    }
    let problem = match action(&form.action) {
        Ok(act) => {
            let p = &viewer.session.principal;
            match start_action(&state, p, &viewer.ctx, &form.table, act).await {
                Ok((_, accepted)) => {
                    return Redirect::to(&format!(
                        "/jobs?started={}",
                        url_component(&accepted.job_id.to_string())
                    ))
                    .into_response()
                }
                Err(e) => {
                    let mut w = WebError::from(e);
                    if w.status == 409 {
                        w.message = format!(
                            "Not started: the same job is already running (409). {}. Wait for it to finish; it is listed below.",
                            w.message
                        );
                    }
                    w
                }
            }
        }
        Err(e) => e,
    };
    let status = problem.status;
    match build(&viewer, &state, None, Some(&problem)).await {
        Ok(body) => layout::page(&viewer, Nav::Jobs, "Jobs", &body, status),
        Err(e) => layout::render(&viewer, Nav::Jobs, "Jobs", Err(e)),
    }
}
