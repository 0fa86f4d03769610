//! Events: the audit-log explorer. Filters (time range, user, action,
//! severity, JSON containment, full text) go into `api::audit_query`'s
//! `Filter`, pages are its keyset cursor, and the chart is its summary per
//! hour or day; no SQL of its own.

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{Duration, Utc};
use serde::Deserialize;

use crate::api::audit_query::{self, Bucket, Cursor, Filter};
use crate::api::AppState;
use crate::html;
use crate::web::charts;
use crate::web::html::{url_component, Html};
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

use super::{badge, when};

/// Rows per page.
const PAGE: i64 = 50;
/// Longest range, in days (the API's too).
const MAX_SPAN_DAYS: i64 = 366;
/// Longest range summarised per hour.
const MAX_HOURLY_DAYS: i64 = 31;

#[derive(Deserialize, Default, Clone)]
pub struct Params {
    from: Option<String>,
    to: Option<String>,
    user_id: Option<String>,
    action: Option<String>,
    severity: Option<String>,
    details: Option<String>,
    q: Option<String>,
    bucket: Option<String>,
    after: Option<String>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn filter(p: &Params) -> Result<(Filter, Bucket), WebError> {
    let now = Utc::now();
    let time = |name: &str, v: &Option<String>, default| match set(v) {
        None => Ok(default),
        Some(s) => {
            crate::cli::parse_when(s).map_err(|e| WebError::bad_input(format!("{name}: {e}")))
        }
    };
    let from = time("from", &p.from, now - Duration::days(7))?;
    let to = time("to", &p.to, now + Duration::hours(1))?;
    if to <= from {
        return Err(WebError::bad_input("to must be after from"));
    }
    if to - from > Duration::days(MAX_SPAN_DAYS) {
        return Err(WebError::bad_input(format!(
            "from..to spans more than {MAX_SPAN_DAYS} days; choose a shorter range"
        )));
    }
    let user_id = set(&p.user_id)
        .map(|u| {
            u.parse::<i64>()
                .map_err(|_| WebError::bad_input(format!("user: {u:?} is not a whole number")))
        })
        .transpose()?;
    let details = set(&p.details)
        .map(|d| match serde_json::from_str::<serde_json::Value>(d) {
            Ok(v @ serde_json::Value::Object(_)) => Ok(v),
            _ => Err(WebError::bad_input(format!(
                "details must be a JSON object such as {{\"region\":\"eu\"}}, not {d:?}"
            ))),
        })
        .transpose()?;
    let bucket = match set(&p.bucket) {
        None | Some("day") => Bucket::Day,
        Some("hour") => {
            if to - from > Duration::days(MAX_HOURLY_DAYS) {
                return Err(WebError::bad_input(format!(
                    "a summary per hour covers at most {MAX_HOURLY_DAYS} days; choose per day"
                )));
            }
            Bucket::Hour
        }
        Some(b) => {
            return Err(WebError::bad_input(format!(
                "bucket must be hour or day, not {b:?}"
            )))
        }
    };
    Ok((
        Filter {
            from,
            to,
            user_id,
            action: set(&p.action).map(String::from),
            severity: set(&p.severity).map(String::from),
            details,
            q: set(&p.q).map(String::from),
            ..Filter::default()
        },
        bucket,
    ))
}

pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(p): Query<Params>,
) -> Response {
    let mut out = Html::new();
    form(&mut out, &p);
    let body = results(&state, &p).await.map(|r| {
        out.push(&r);
        out
    });
    layout::render(&viewer, Nav::Events, "Events", body)
}

fn field(out: &mut Html, id: &str, label: &str, value: &Option<String>, hint: &str) {
    html!(
        out,
        "<div class=\"field\"><label for=\"{}\">{}</label><input id=\"{}\" name=\"{}\" value=\"{}\" placeholder=\"{}\"></div>",
        id,
        label,
        id,
        id,
        value.as_deref().unwrap_or(""),
        hint
    );
}

fn form(out: &mut Html, p: &Params) {
    html!(out, "<form method=\"get\" action=\"/events\" class=\"filters\"><fieldset><legend>Filters</legend>");
    field(
        out,
        "from",
        "From",
        &p.from,
        "YYYY-MM-DD (default: 7 days ago)",
    );
    field(out, "to", "To", &p.to, "YYYY-MM-DD (default: now)");
    field(out, "user_id", "User id", &p.user_id, "e.g. 42");
    field(out, "action", "Action", &p.action, "e.g. user.login");
    field(
        out,
        "severity",
        "Severity",
        &p.severity,
        "info, warning, error, critical",
    );
    field(
        out,
        "details",
        "Details contain (JSON)",
        &p.details,
        "{\"region\":\"eu\"}",
    );
    field(out, "q", "Full text", &p.q, "words");
    let hourly = p.bucket.as_deref() == Some("hour");
    html!(out, "<div class=\"field\"><label for=\"bucket\">Chart per</label><select id=\"bucket\" name=\"bucket\">");
    if hourly {
        html!(
            out,
            "<option value=\"day\">day</option><option value=\"hour\" selected>hour</option>"
        );
    } else {
        html!(
            out,
            "<option value=\"day\" selected>day</option><option value=\"hour\">hour</option>"
        );
    }
    html!(
        out,
        "</select></div><button type=\"submit\">Search</button></fieldset></form>"
    );
}

fn query_string(p: &Params, after: &str) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("from", &p.from),
        ("to", &p.to),
        ("user_id", &p.user_id),
        ("action", &p.action),
        ("severity", &p.severity),
        ("details", &p.details),
        ("q", &p.q),
        ("bucket", &p.bucket),
    ] {
        if let Some(v) = set(v) {
            parts.push(format!("{k}={}", url_component(v)));
        }
    }
    parts.push(format!("after={}", url_component(after)));
    parts.join("&")
}

async fn results(state: &AppState, p: &Params) -> Result<Html, WebError> {
    let (f, bucket) = filter(p)?;
    let after = set(&p.after)
        .map(|a| {
            Cursor::decode(a).ok_or_else(|| {
                WebError::bad_input("the page cursor is not valid; start from the first page")
            })
        })
        .transpose()?;
    let client = state.pool.get().await?;
    let table = state.table();
    let summary = audit_query::summary(&client, table, &f, bucket).await?;
    let (rows, next) = audit_query::list(&client, table, &f, after, PAGE).await?;
    let mut out = Html::new();
    let total: i64 = summary.iter().map(|b| b.total).sum();
    html!(
        out,
        "<section><h2>Summary</h2><p>{} events from {} to {} UTC.</p>",
        super::count(total),
        when(Some(f.from)),
        when(Some(f.to))
    );
    let fmt = if bucket == Bucket::Hour {
        "%Y-%m-%d %H:00"
    } else {
        "%Y-%m-%d"
    };
    let items: Vec<(String, f64)> = summary
        .iter()
        .map(|b| (b.start.format(fmt).to_string(), b.total as f64))
        .collect();
    out.push(&charts::bars("Events per bucket", &items, |v| {
        format!("{v} events")
    }));
    html!(
        out,
        "</section><section><h2>Events</h2><div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Events\"><table class=\"data\"><thead><tr>\
         <th scope=\"col\">Time (UTC)</th><th scope=\"col\">User</th><th scope=\"col\">Action</th><th scope=\"col\">Severity</th>\
         <th scope=\"col\">Status</th><th scope=\"col\">Address</th><th scope=\"col\">Details</th></tr></thead><tbody>"
    );
    for r in &rows {
        html!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>",
            when(Some(r.created_at)),
            r.user_id,
            r.action
        );
        badge(&mut out, r.severity.as_deref().unwrap_or("none"));
        let details = r
            .details
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let short: String = details.chars().take(200).collect();
        html!(
            out,
            "</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            r.status.as_deref().unwrap_or("—"),
            r.ip_address.as_deref().unwrap_or("—"),
            short
        );
    }
    html!(out, "</tbody></table></div>");
    if rows.is_empty() {
        html!(out, "<p class=\"empty\">No events match these filters.</p>");
    }
    if let Some(c) = next {
        html!(
            out,
            "<p><a class=\"button\" rel=\"next\" href=\"/events?{}\">Older events</a></p>",
            query_string(p, &c.encode())
        );
    }
    html!(out, "</section>");
    Ok(out)
}
