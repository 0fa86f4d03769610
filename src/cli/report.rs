//! `strata report`: the whole picture, and what to fix first.

use super::{print_json, Target};
use crate::config::Config;
use crate::report::{self, Severity};
use crate::{format, Result};

pub async fn run(target: &Target, config: &Config, days: u32, json: bool) -> Result<()> {
    let mut client = target.connect().await?;
    let r = report::build(
        &mut client,
        &config.tables,
        chrono::Utc::now(),
        days,
        config.seal.after,
    )
    .await?;
    if json {
        return print_json(&r);
    }
    println!(
        "strata report — {} (PostgreSQL {}) — {}",
        r.database, r.server_version, r.generated_at
    );
    for t in &r.tables {
        let p = &t.partitions;
        let s = &t.strategy;
        println!("\n== {} ==", t.table);
        println!(
            "size        ≈ {} in {} partitions ({} table, {} indexes, {} toast; estimated), ~{} rows",
            p.total_size_pretty,
            p.partition_count,
            format::bytes(p.table_bytes.max(0) as u64),
            format::bytes(p.index_bytes.max(0) as u64),
            format::bytes(p.toast_bytes.max(0) as u64),
            format::count(p.estimated_rows.max(0) as u64)
        );
        println!(
            "pruning     {} (one-period query scans {} of {} partitions expected)",
            if s.pruning_ok { "ok" } else { "NOT WORKING" },
            s.partitions_scanned,
            s.partitions_expected
        );
        println!(
            "ahead       {} of the {} periods after the current one have a partition{}",
            s.partitions_ahead,
            s.premake,
            if s.current_period_exists {
                ""
            } else {
                "; NO partition for the current period"
            }
        );
        if s.rows_median > 0 {
            println!(
                "balance     rows per past partition: min {}, median {}, max {} (max/median {:.1})",
                format::count(s.rows_min.max(0) as u64),
                format::count(s.rows_median.max(0) as u64),
                format::count(s.rows_max.max(0) as u64),
                s.balance_ratio
            );
        } else {
            println!("balance     no complete past partition holds rows yet (or none is analyzed)");
        }
        println!(
            "default     {} rows",
            format::count(s.default_rows.max(0) as u64)
        );
        if let Some(f) = &t.tiers.seals {
            let verify = match f.last_verify.as_ref().map(|v| v.intact) {
                None => "never verified".to_string(),
                Some(Some(true)) => "last verify intact".into(),
                Some(Some(false)) => "LAST VERIFY FOUND CHANGES".into(),
                Some(None) => "last verify failed to finish".into(),
            };
            println!(
                "sealed      {} periods; {} closed but unsealed; {verify}",
                f.seals,
                f.unsealed_closed.len()
            );
        }
        if let Some(a) = &t.tiers.archive {
            println!(
                "archived    {} periods, {} in the store; {} due; {} failed verifies; last run {}",
                a.periods_archived,
                format::bytes(a.bytes_archived.max(0) as u64),
                a.periods_due,
                a.failed_verifies,
                a.last_run
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "never".into())
            );
        }
        if let Some(e) = &t.tiers.error {
            println!("tiers       {e}");
        }
        let rows: Vec<Vec<String>> = t
            .indexes
            .iter()
            .map(|i| {
                let mut flags = Vec::new();
                if !i.valid {
                    flags.push("INVALID".to_string());
                }
                if i.unused {
                    flags.push("unused".into());
                }
                if let Some(d) = &i.duplicate_of {
                    flags.push(format!("duplicate of {d}"));
                }
                if !i.bloated.is_empty() {
                    flags.push("bloated".into());
                }
                vec![
                    i.name.clone(),
                    i.method.clone(),
                    i.size_pretty.clone(),
                    format::count(i.scans.max(0) as u64),
                    flags.join(", "),
                ]
            })
            .collect();
        println!(
            "\n{}",
            format::table(&["index", "type", ">size", ">scans", "flags"], &rows)
        );
    }
    println!();
    match (&r.queries.window, r.queries.available) {
        (Some(w), true) => {
            let from = w
                .from
                .map(|f| f.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "the statistics reset".into());
            println!(
                "queries     window {} .. {} UTC (asked: {} day(s))",
                from,
                w.to.format("%Y-%m-%d %H:%M"),
                w.requested_days
            );
            if let Some(note) = &w.note {
                println!("            {note}");
            }
            if let Some(hint) = &r.queries.hint {
                println!("            {hint}");
            }
            for q in r.queries.slowest.iter().take(5) {
                let text: String = q.query.split_whitespace().collect::<Vec<_>>().join(" ");
                println!(
                    "  {:>10.1} ms total  {:>8} calls  {}",
                    q.total_ms,
                    format::count(q.calls.max(0) as u64),
                    text.chars().take(70).collect::<String>()
                );
            }
        }
        _ => println!("queries     pg_stat_statements not available"),
    }
    println!("\n== recommendations ({}) ==", r.recommendations.len());
    if r.recommendations.is_empty() {
        println!("nothing to fix");
    }
    for rec in &r.recommendations {
        let sev = match rec.severity {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        println!("\n[{sev}] {}: {}", rec.rule, rec.message);
        for line in rec.fix.lines() {
            println!("    fix: {line}");
        }
    }
    Ok(())
}
