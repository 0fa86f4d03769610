//! One file per page; `router()` lists them.

mod conversion;
mod events;
mod indexes;
mod jobs;
mod live;
mod overview;
mod partitions;
mod queries;
mod tiers;

use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};

use crate::api::AppState;
use crate::html;

use super::html::Html;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/partitions", get(partitions::page))
        .route("/indexes", get(indexes::page))
        .route("/queries", get(queries::page))
        .route("/live", get(live::page))
        .route("/jobs", get(jobs::page))
        .route("/jobs/confirm", get(jobs::confirm))
        .route("/jobs/start", post(jobs::start))
        .route("/conversion", get(conversion::page))
        .route("/events", get(events::page))
        .route("/archives", get(tiers::archives))
        .route("/seals", get(tiers::seals))
        .route("/rollups", get(tiers::rollups))
}

/// A timestamp as the dashboard shows it (UTC, to the second), or a dash.
pub fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "—".into())
}

pub fn bytes(n: i64) -> String {
    crate::format::bytes(n.max(0) as u64)
}

pub fn count(n: i64) -> String {
    crate::format::count(n.max(0) as u64)
}

/// A status badge (`ok`, `warning`, `critical`, a job state…): a class for
/// colour and the word itself, so colour is never the only signal.
pub fn badge(out: &mut Html, status: &str) {
    let class: String = status
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    html!(out, "<span class=\"badge b-{}\">{}</span>", class, status);
}

/// An empty state: what is missing and the command that fills it.
pub fn empty(out: &mut Html, message: &str, command: &str) {
    html!(
        out,
        "<p class=\"empty\">{} — see <code>{}</code></p>",
        message,
        command
    );
}
