//! `status` (phase, progress, rate, ETA, last error) and `resume` (continue
//! wherever the conversion stopped, up to and including verify).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::backfill::{backfill, BackfillOptions, BatchReport};
use super::indexes::build_indexes;
use super::session;
use super::state::{latest, require, wrong, Conversion, Phase};
use super::verify::verify;
use super::ConvertError;
use crate::config::{Config, TableSpec};

/// Status with rate and ETA of the backfill.
#[derive(Debug, Serialize)]
pub struct Status {
    pub conversion: Conversion,
    pub percent: f64,
    pub rows_per_second: Option<f64>,
    pub eta_seconds: Option<f64>,
}

pub async fn status(client: &Client, spec: &TableSpec) -> Result<Status, ConvertError> {
    session::bound(client).await?;
    let conv = latest(client, &spec.name)
        .await?
        .ok_or_else(|| ConvertError::NotStarted(spec.name.display_unquoted()))?;
    let until = conv.backfill_until.unwrap_or(0).max(1) as f64;
    let done = conv.watermark.unwrap_or(0) as f64;
    let percent = if conv.phase.backfill_done() {
        100.0
    } else {
        (done / until * 100.0).clamp(0.0, 100.0)
    };
    let began = conv.timings["backfilling"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    let rate = began.map(|b| {
        let secs = (conv.updated_at - b.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0;
        conv.rows_copied as f64 / secs.max(1e-3)
    });
    let remaining = conv
        .rows_total_estimate
        .map(|t| (t - conv.rows_copied).max(0) as f64);
    let eta = match (rate, remaining) {
        (Some(r), Some(rem)) if r > 0.0 && percent < 100.0 => Some(rem / r),
        _ => None,
    };
    Ok(Status {
        conversion: conv,
        percent,
        rows_per_second: rate,
        eta_seconds: eta,
    })
}

/// Rows the backfill still has to copy, for a progress total: the larger of
/// the row estimate and the id range left (ids are unique, so the range
/// bounds the rows), so the fraction done never exceeds one.
pub fn rows_left(c: &Conversion) -> u64 {
    let estimate = c.rows_total_estimate.unwrap_or(0) - c.rows_copied;
    let ids = c.backfill_until.unwrap_or(0) - c.watermark.unwrap_or(0);
    estimate.max(ids).max(0) as u64
}

/// Resumes wherever the conversion stopped, up to and including verify.
/// Returns early (phase backfilling) only when `max_batches` stopped the
/// backfill.
pub async fn resume(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    opts: &BackfillOptions,
    mut on_batch: impl FnMut(&BatchReport),
) -> Result<Conversion, ConvertError> {
    loop {
        let conv = require(client, spec).await?;
        match conv.phase {
            Phase::Starting => {
                return Err(wrong(
                    &conv,
                    "resume",
                    "a finished start: the start was interrupted; run `strata convert start` again",
                ))
            }
            Phase::Started | Phase::Backfilling => {
                let c = backfill(client, spec, opts, &mut on_batch).await?;
                if c.phase == Phase::Backfilling {
                    return Ok(c);
                }
            }
            Phase::Backfilled => {
                build_indexes(client, config, spec, |_| {}).await?;
            }
            Phase::Indexed => {
                verify(client, spec).await?;
            }
            Phase::Verified | Phase::CutOver | Phase::RolledBack | Phase::Cleaned => {
                return Ok(conv)
            }
        }
    }
}
