//! The seals' Prometheus series (rendered into `/metrics`).

use std::fmt::Write;

use crate::config::Config;

/// `strata_seals`, `strata_seal_unsealed_closed_periods` and, once a
/// verification ran, `strata_seal_last_verify_intact` (1 or 0) and its time.
pub async fn render_metrics(
    pool: &deadpool_postgres::Pool,
    config: &Config,
    out: &mut String,
) -> Result<(), String> {
    let mut client = pool.get().await.map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    for spec in &config.tables {
        let s = super::status(&mut client, config, spec)
            .await
            .map_err(|e| e.to_string())?;
        let table = s.table.replace('\\', "\\\\").replace('"', "\\\"");
        lines.push(format!(
            "strata_seals{{table=\"{table}\"}} {}",
            s.seals.len()
        ));
        lines.push(format!(
            "strata_seal_unsealed_closed_periods{{table=\"{table}\"}} {}",
            s.unsealed_closed.len()
        ));
        if let Some(v) = s.last_verify {
            let intact = u8::from(v.intact == Some(true));
            lines.push(format!(
                "strata_seal_last_verify_intact{{table=\"{table}\"}} {intact}"
            ));
            if let Some(at) = v.finished_at {
                lines.push(format!(
                    "strata_seal_last_verify_timestamp_seconds{{table=\"{table}\"}} {}",
                    at.timestamp()
                ));
            }
        }
    }
    out.push_str(
        "# HELP strata_seals Sealed periods of each managed table.\n# TYPE strata_seals gauge\n",
    );
    out.push_str("# HELP strata_seal_unsealed_closed_periods Closed periods (end + seal_after passed) not sealed yet.\n");
    out.push_str("# TYPE strata_seal_unsealed_closed_periods gauge\n");
    out.push_str("# HELP strata_seal_last_verify_intact 1 when the last seal verification found everything intact.\n");
    out.push_str("# TYPE strata_seal_last_verify_intact gauge\n");
    out.push_str("# HELP strata_seal_last_verify_timestamp_seconds When the last seal verification finished.\n");
    out.push_str("# TYPE strata_seal_last_verify_timestamp_seconds gauge\n");
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    Ok(())
}
