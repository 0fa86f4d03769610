//! Indexes, grouped per parent index (`stats::indexes` sums the partitions'
//! ones): size, scans, and the unused / duplicate / INVALID / bloated flags.

use axum::extract::State;
use axum::response::Response;

use crate::api::AppState;
use crate::html;
use crate::web::html::Html;
use crate::web::layout::{self, Nav, WebError};
use crate::web::session::Viewer;

use super::{badge, bytes, count};

pub async fn page(viewer: Viewer, State(state): State<AppState>) -> Response {
    let body = build(&state).await;
    layout::render(&viewer, Nav::Indexes, "Indexes", body)
}

async fn build(state: &AppState) -> Result<Html, WebError> {
    let client = state.pool.get().await?;
    let mut out = Html::new();
    for spec in &state.config.tables {
        let indexes = crate::stats::indexes(&client, spec).await?;
        let table = spec.name.display_unquoted();
        html!(
            out,
            "<section><h2>{}</h2><p class=\"meta\">Sizes are estimates from the catalog (pages counted \
             by the last VACUUM, ANALYZE or index build), measured only on the default partition and the \
             partitions written since their last analyze.</p><div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Indexes of {}\">\
             <table class=\"data\"><caption class=\"sr-only\">Indexes of {}, one row per parent index</caption><thead><tr>\
             <th scope=\"col\">Index</th><th scope=\"col\">Method</th><th scope=\"col\">Partitions</th>\
             <th scope=\"col\">Size (est.)</th><th scope=\"col\">Scans</th><th scope=\"col\">Tuples read</th>\
             <th scope=\"col\">Flags</th><th scope=\"col\">Definition</th></tr></thead><tbody>",
            table,
            table,
            table
        );
        for i in &indexes {
            html!(
                out,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td>",
                i.name,
                i.method,
                i.partitions,
                i.size_pretty,
                count(i.scans),
                count(i.tuples_read)
            );
            if !i.valid {
                badge(&mut out, "INVALID");
                html!(out, " on {} ", i.invalid.join(", "));
            }
            if i.unused {
                badge(&mut out, "unused");
            }
            if let Some(d) = &i.duplicate_of {
                badge(&mut out, "duplicate");
                html!(out, " of {} ", d);
            }
            if !i.bloated.is_empty() {
                badge(&mut out, "bloated");
                html!(
                    out,
                    " {} reclaimable in {} partitions ",
                    bytes(i.bloat_bytes),
                    i.bloated.len()
                );
            }
            if i.primary {
                html!(out, "primary key ");
            } else if i.unique {
                html!(out, "unique ");
            }
            html!(out, "</td><td><code>{}</code></td></tr>", i.definition);
        }
        html!(out, "</tbody></table></div></section>");
    }
    Ok(out)
}
