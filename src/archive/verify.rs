//! `strata archive verify [PERIOD]`: re-reads every file from the store and
//! checks SHA-256, count and row digest against the manifest (bit rot,
//! edits, a lost file). The result of each period is recorded.

use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use super::run::table_dir;
use super::{catalog, manifest, ArchiveError};
use crate::config::TableSpec;
use crate::ops::{Progress, ProgressFn};

#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    pub period: String,
    pub ok: bool,
    pub rows: Option<u64>,
    pub files: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub async fn run(
    client: &mut Client,
    spec: &TableSpec,
    period: Option<&str>,
    progress: ProgressFn<'_>,
) -> Result<Value, ArchiveError> {
    let store = super::store_of(spec)?;
    if let Some(p) = period {
        super::restore::parse_period(spec, p)?;
    }
    let dir = table_dir(spec);
    let records = catalog::records(client, spec).await?;
    let chosen: Vec<_> = records
        .iter()
        .filter(|r| period.is_none_or(|p| p == r.period))
        .collect();
    if chosen.is_empty() {
        return Err(ArchiveError::Precondition(match period {
            Some(p) => format!(
                "period {p} of {} is not archived",
                spec.name.display_unquoted()
            ),
            None => format!("{} has no archived periods", spec.name.display_unquoted()),
        }));
    }
    let mut out = Vec::new();
    for r in chosen {
        let checked = match manifest::load(&store, &dir, &r.period).await {
            Ok(Some(m)) => match manifest::check_files(&store, &m).await {
                Ok(rows) if m.content_hash.value == r.content_hash => Ok((rows, m.files.len())),
                Ok(_) => Err(format!(
                    "{}: content hash {} differs from strata.archives' {}",
                    manifest::manifest_key(&dir, &r.period),
                    m.content_hash.value,
                    r.content_hash
                )),
                Err(e) => Err(e.to_string()),
            },
            Ok(None) => Err(format!(
                "{} is missing from the store",
                manifest::manifest_key(&dir, &r.period)
            )),
            Err(e) => Err(e.to_string()),
        };
        let error = checked.as_ref().err().cloned();
        catalog::set_verified(client, spec, r.period_start, error.as_deref()).await?;
        let c = match checked {
            Ok((rows, files)) => Checked {
                period: r.period.clone(),
                ok: true,
                rows: Some(rows),
                files,
                error: None,
            },
            Err(e) => Checked {
                period: r.period.clone(),
                ok: false,
                rows: None,
                files: 0,
                error: Some(e),
            },
        };
        progress(&Progress::Line {
            message: match &c.error {
                None => format!("ok      {}: {} rows", c.period, c.rows.unwrap_or(0)),
                Some(e) => format!("FAILED  {}: {e}", c.period),
            },
        });
        out.push(c);
    }
    let bad: Vec<String> = out
        .iter()
        .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.period)))
        .collect();
    if !bad.is_empty() {
        return Err(ArchiveError::Mismatch(format!(
            "{} of {} archived periods failed verification: {}",
            bad.len(),
            out.len(),
            bad.join("; ")
        )));
    }
    Ok(serde_json::json!({
        "table": spec.name.display_unquoted(),
        "store": store.url,
        "verified": out,
    }))
}
