//! Archives, seals and rollups: what each tier holds, read from strata's
//! own catalog (`strata.archives`, `strata.seals`, `strata.rollups`), with
//! the command that changes it. An empty tier says which command fills it.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::api::AppState;
use crate::html;
use crate::web::html::Html;
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

use super::{badge, bytes, count, empty, when};

/// Rows shown per page; the CLI's `list` commands have all of them.
const LIMIT: i64 = 500;

/// Whether `strata.<table>` exists (`to_regclass`), so a database migrated
/// by an older strata gets the empty state instead of an error.
async fn exists(client: &Client, table: &str) -> Result<bool, WebError> {
    Ok(client
        .query_one("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(WebError::internal)?
        .get(0))
}

fn more(out: &mut Html, shown: usize, command: &str) {
    if shown as i64 >= LIMIT {
        html!(
            out,
            "<p>The newest {} are shown; <code>{}</code> lists every one.</p>",
            LIMIT,
            command
        );
    }
}

async fn archives_body(client: &Client) -> Result<Html, WebError> {
    let mut out = Html::new();
    if !exists(client, "strata.archives").await? {
        empty(&mut out, "No archives yet", "strata archive run");
        return Ok(out);
    }
    let rows = client
        .query(
            "SELECT table_schema || '.' || table_name, period, state, row_count, store_bytes, total_bytes,
                    archived_at, verified_at, verify_ok, verify_error, store_url
               FROM strata.archives ORDER BY period_start DESC, table_schema, table_name LIMIT $1",
            &[&LIMIT],
        )
        .await
        .map_err(WebError::internal)?;
    if rows.is_empty() {
        empty(&mut out, "No archives yet", "strata archive run");
        return Ok(out);
    }
    let store: i64 = rows.iter().map(|r| r.get::<_, i64>(4)).sum();
    let postgres: i64 = rows.iter().map(|r| r.get::<_, i64>(5)).sum();
    let failed = rows
        .iter()
        .filter(|r| r.get::<_, Option<bool>>(8) == Some(false))
        .count();
    html!(
        out,
        "<dl class=\"facts\"><div><dt>Periods</dt><dd data-testid=\"archive-count\">{}</dd></div>\
         <div><dt>In the store</dt><dd>{}</dd></div><div><dt>Took in PostgreSQL</dt><dd>{}</dd></div>\
         <div><dt>Failed verifies</dt><dd>{}</dd></div></dl>",
        rows.len(),
        bytes(store),
        bytes(postgres),
        failed
    );
    html!(
        out,
        "<table><caption>Archived periods, newest first. <code>strata archive verify</code> re-reads the \
         files; <code>strata archive restore PERIOD</code> brings one back as a partition.</caption><thead><tr>\
         <th scope=\"col\">Table</th><th scope=\"col\">Period</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Rows</th><th scope=\"col\">Store</th>\
         <th scope=\"col\">PostgreSQL</th><th scope=\"col\">Ratio</th>\
         <th scope=\"col\">Archived</th><th scope=\"col\">Verified</th><th scope=\"col\">Where</th>\
         </tr></thead><tbody>"
    );
    for r in &rows {
        let (store, pg): (i64, i64) = (r.get(4), r.get(5));
        html!(
            out,
            "<tr><td>{}</td><td>{}</td><td>",
            r.get::<_, String>(0),
            r.get::<_, String>(1)
        );
        badge(&mut out, r.get::<_, &str>(2));
        html!(
            out,
            "</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td>{}</td><td>",
            count(r.get(3)),
            bytes(store),
            bytes(pg),
            if store > 0 {
                format!("{:.1}x", pg as f64 / store as f64)
            } else {
                "—".into()
            },
            when(Some(r.get::<_, DateTime<Utc>>(6)))
        );
        match r.get::<_, Option<bool>>(8) {
            Some(true) => badge(&mut out, "ok"),
            Some(false) => {
                badge(&mut out, "failed");
                html!(
                    out,
                    " {}",
                    r.get::<_, Option<String>>(9).unwrap_or_default()
                );
            }
            None => html!(out, "not yet"),
        }
        html!(
            out,
            " {}</td><td><code>{}</code></td></tr>",
            r.get::<_, Option<DateTime<Utc>>>(7)
                .map(|t| when(Some(t)))
                .unwrap_or_default(),
            r.get::<_, String>(10)
        );
    }
    html!(out, "</tbody></table>");
    more(&mut out, rows.len(), "strata archive list");
    Ok(out)
}

async fn seals_body(client: &Client) -> Result<Html, WebError> {
    let mut out = Html::new();
    if !exists(client, "strata.seals").await? {
        empty(&mut out, "No seals yet", "strata seal run");
        return Ok(out);
    }
    let rows = client
        .query(
            "SELECT table_schema || '.' || table_name, partition_schema || '.' || partition_name,
                    to_char(period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD'), row_count, sealed_at,
                    encode(seal_hash, 'hex'), key_id, signature IS NOT NULL
               FROM strata.seals ORDER BY period_start DESC, table_schema, table_name LIMIT $1",
            &[&LIMIT],
        )
        .await
        .map_err(WebError::internal)?;
    if rows.is_empty() {
        empty(&mut out, "No seals yet", "strata seal run");
        return Ok(out);
    }
    let sealed_rows: i64 = rows.iter().map(|r| r.get::<_, i64>(3)).sum();
    html!(
        out,
        "<dl class=\"facts\"><div><dt>Sealed periods</dt><dd data-testid=\"seal-count\">{}</dd></div>\
         <div><dt>Rows sealed</dt><dd>{}</dd></div></dl>",
        rows.len(),
        count(sealed_rows)
    );
    html!(
        out,
        "<table><caption>Sealed periods, newest first: read-only, each chained to the one before. \
         <code>strata seal verify</code> recomputes every row; <code>strata seal export PERIOD</code> writes \
         the receipt an auditor checks.</caption><thead><tr>\
         <th scope=\"col\">Table</th><th scope=\"col\">Period</th><th scope=\"col\">Partition</th>\
         <th scope=\"col\">Rows</th><th scope=\"col\">Sealed</th>\
         <th scope=\"col\">Seal hash</th><th scope=\"col\">Signed</th></tr></thead><tbody>"
    );
    for r in &rows {
        let hash: String = r.get(5);
        html!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td>\
             <td><code title=\"{}\">{}…</code></td><td>{}</td></tr>",
            r.get::<_, String>(0),
            r.get::<_, String>(2),
            r.get::<_, String>(1),
            count(r.get(3)),
            when(Some(r.get::<_, DateTime<Utc>>(4))),
            hash,
            hash.get(..16).unwrap_or(&hash),
            match (r.get::<_, bool>(7), r.get::<_, Option<String>>(6)) {
                (true, Some(key)) => format!("yes, key {key}"),
                (true, None) => "yes".into(),
                (false, _) => "no (no seal_key_file)".into(),
            }
        );
    }
    html!(out, "</tbody></table>");
    more(&mut out, rows.len(), "strata seal list");
    Ok(out)
}

async fn rollups_body(client: &Client) -> Result<Html, WebError> {
    let mut out = Html::new();
    if !exists(client, "strata.rollups").await? {
        empty(&mut out, "No rollups yet", "strata rollup apply");
        return Ok(out);
    }
    // Pending invalidations are what the next refresh folds in; until then
    // the views add them live, so the figures stay exact either way.
    let rows = client
        .query(
            "SELECT r.schema_name || '.' || r.table_name, r.name, r.spec->>'bucket', r.view_name,
                    CASE WHEN r.watermark = '-infinity' THEN NULL ELSE r.watermark END, r.refreshed_at,
                    (SELECT count(*) FROM strata.rollup_invalidations i
                      WHERE i.schema_name = r.schema_name AND i.table_name = r.table_name)
               FROM strata.rollups r ORDER BY 1, 2 LIMIT $1",
            &[&LIMIT],
        )
        .await
        .map_err(WebError::internal)?;
    if rows.is_empty() {
        empty(&mut out, "No rollups yet", "strata rollup apply");
        return Ok(out);
    }
    html!(
        out,
        "<table><caption>Rollups: query the view; it adds what changed since the last refresh, so it is \
         exact at once. <code>strata rollup refresh</code> folds the pending changes in (the scheduler does \
         every five minutes).</caption><thead><tr>\
         <th scope=\"col\">Table</th><th scope=\"col\">Rollup</th><th scope=\"col\">Bucket</th>\
         <th scope=\"col\">View</th><th scope=\"col\">Materialized up to</th>\
         <th scope=\"col\">Refreshed</th><th scope=\"col\">Pending changes</th>\
         </tr></thead><tbody>"
    );
    for r in &rows {
        html!(
            out,
            "<tr><td>{}</td><td data-testid=\"rollup-name\">{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>\
             <td>{}</td><td class=\"n\">{}</td></tr>",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, Option<String>>(2).unwrap_or_default(),
            r.get::<_, String>(3),
            // -infinity (NULL here) until the first refresh.
            r.get::<_, Option<DateTime<Utc>>>(4)
                .map(|t| when(Some(t)))
                .unwrap_or_else(|| "nothing yet".into()),
            when(r.get(5)),
            count(r.get(6))
        );
    }
    html!(out, "</tbody></table>");
    Ok(out)
}

pub async fn archives(viewer: Viewer, State(state): State<AppState>) -> Response {
    let body = async { archives_body(&*state.pool.get().await?).await }.await;
    layout::render(&viewer, Nav::Archives, "Archives", body)
}

pub async fn seals(viewer: Viewer, State(state): State<AppState>) -> Response {
    let body = async { seals_body(&*state.pool.get().await?).await }.await;
    layout::render(&viewer, Nav::Seals, "Seals", body)
}

pub async fn rollups(viewer: Viewer, State(state): State<AppState>) -> Response {
    let body = async { rollups_body(&*state.pool.get().await?).await }.await;
    layout::render(&viewer, Nav::Rollups, "Rollups", body)
}
