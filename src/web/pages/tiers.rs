//! Archives, seals and rollups: empty states until those capabilities'
//! tables exist (`to_regclass`, so no query touches a missing table), then
//! how many rows they hold and the command to see them.

use axum::extract::State;
use axum::response::Response;

use crate::api::AppState;
use crate::html;
use crate::web::html::Html;
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

use super::empty;

/// One tier page: its table and its command.
struct Tier {
    nav: Nav,
    title: &'static str,
    /// `strata.<table>`, checked with `to_regclass` before it is counted.
    exists_sql: &'static str,
    count_sql: &'static str,
    none: &'static str,
    command: &'static str,
}

const ARCHIVES: Tier = Tier {
    nav: Nav::Archives,
    title: "Archives",
    exists_sql: "SELECT pg_catalog.to_regclass('strata.archives') IS NOT NULL",
    count_sql: "SELECT count(*) FROM strata.archives",
    none: "No archives yet",
    command: "strata archive run",
};

const SEALS: Tier = Tier {
    nav: Nav::Seals,
    title: "Seals",
    exists_sql: "SELECT pg_catalog.to_regclass('strata.seals') IS NOT NULL",
    count_sql: "SELECT count(*) FROM strata.seals",
    none: "No seals yet",
    command: "strata seal run",
};

const ROLLUPS: Tier = Tier {
    nav: Nav::Rollups,
    title: "Rollups",
    exists_sql: "SELECT pg_catalog.to_regclass('strata.rollups') IS NOT NULL",
    count_sql: "SELECT count(*) FROM strata.rollups",
    none: "No rollups yet",
    command: "strata rollup refresh",
};

async fn build(state: &AppState, t: &Tier) -> Result<Html, WebError> {
    let client = state.pool.get().await?;
    let exists: bool = client
        .query_one(t.exists_sql, &[])
        .await
        .map_err(WebError::internal)?
        .get(0);
    let mut out = Html::new();
    if !exists {
        empty(&mut out, t.none, t.command);
        return Ok(out);
    }
    let n: i64 = client
        .query_one(t.count_sql, &[])
        .await
        .map_err(WebError::internal)?
        .get(0);
    if n == 0 {
        empty(&mut out, t.none, t.command);
    } else {
        html!(
            out,
            "<p>{} recorded. Details: <code>{}</code> and its <code>list</code> command.</p>",
            super::count(n),
            t.command
        );
    }
    Ok(out)
}

async fn show(viewer: Viewer, state: AppState, t: &Tier) -> Response {
    let body = build(&state, t).await;
    layout::render(&viewer, t.nav, t.title, body)
}

pub async fn archives(viewer: Viewer, State(state): State<AppState>) -> Response {
    show(viewer, state, &ARCHIVES).await
}

pub async fn seals(viewer: Viewer, State(state): State<AppState>) -> Response {
    show(viewer, state, &SEALS).await
}

pub async fn rollups(viewer: Viewer, State(state): State<AppState>) -> Response {
    show(viewer, state, &ROLLUPS).await
}
