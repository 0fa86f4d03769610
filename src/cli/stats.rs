//! `strata stats partitions|indexes|queries|snapshot`.

use serde_json::json;

use super::{print_json, Target};
use crate::config::Config;
use crate::{format, stats, Error, Result};

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

pub async fn partitions(target: &Target, config: &Config, json: bool) -> Result<()> {
    let mut client = target.connect().await?;
    let mut all = Vec::new();
    for spec in &config.tables {
        all.push(stats::partitions(&mut client, spec).await?);
    }
    if json {
        // One table (the usual case) keeps the seed's flat shape.
        return match all.len() {
            1 => print_json(&all[0]),
            _ => print_json(&json!({ "tables": all })),
        };
    }
    for t in &all {
        println!(
            "{}: {} partitions, {} ({} table, {} indexes, {} toast), ~{} rows, {} dead tuples",
            t.table,
            t.partition_count,
            t.total_size_pretty,
            format::bytes(t.table_bytes.max(0) as u64),
            format::bytes(t.index_bytes.max(0) as u64),
            format::bytes(t.toast_bytes.max(0) as u64),
            format::count(t.estimated_rows.max(0) as u64),
            format::count(t.dead_tuples.max(0) as u64),
        );
        if let Some(n) = t.default_partition_rows {
            println!("default partition: {} rows", format::count(n.max(0) as u64));
        }
        println!(
            "sizes: measured for {} partitions (the default, those written since their last analyze), \
             the others estimated from the catalog (pg_class.relpages)",
            t.partitions.iter().filter(|p| p.size_exact).count()
        );
        let rows: Vec<Vec<String>> = t
            .partitions
            .iter()
            .map(|p| {
                let range = if p.is_default {
                    "DEFAULT".to_string()
                } else {
                    format!(
                        "{} .. {}",
                        p.from
                            .map(|f| f.format("%Y-%m-%d").to_string())
                            .unwrap_or("MIN".into()),
                        p.to.map(|f| f.format("%Y-%m-%d").to_string())
                            .unwrap_or("MAX".into())
                    )
                };
                vec![
                    p.name.clone(),
                    range,
                    p.tier.to_string(),
                    format::count(p.estimated_rows.max(0) as u64),
                    format::bytes(p.table_bytes.max(0) as u64),
                    format::bytes(p.index_bytes.max(0) as u64),
                    p.total_size_pretty.clone(),
                    format::count(p.dead_tuples.max(0) as u64),
                    when(p.last_vacuum.max(p.last_autovacuum)),
                    when(p.last_analyze.max(p.last_autoanalyze)),
                ]
            })
            .collect();
        println!(
            "{}",
            format::table(
                &[
                    "partition",
                    "range (UTC)",
                    "tier",
                    ">rows (est.)",
                    ">table",
                    ">indexes",
                    ">total",
                    ">dead",
                    "last vacuum",
                    "last analyze"
                ],
                &rows
            )
        );
        if let (Some(first), Some(last)) = (t.archived_dropped.first(), t.archived_dropped.last()) {
            println!(
                "archived and dropped: {} period(s), {} .. {}, {} rows, only in the store (strata archive list)",
                t.archived_dropped.len(),
                first.period,
                last.period,
                format::count(t.archived_dropped.iter().map(|a| a.rows.max(0) as u64).sum())
            );
        }
    }
    Ok(())
}

pub async fn indexes(target: &Target, config: &Config, json: bool) -> Result<()> {
    let client = target.connect().await?;
    let mut all = Vec::new();
    for spec in &config.tables {
        all.push((
            spec.name.display_unquoted(),
            stats::indexes(&client, spec).await?,
        ));
    }
    if json {
        let tables: Vec<_> = all
            .iter()
            .map(|(table, indexes)| json!({ "table": table, "indexes": indexes }))
            .collect();
        return match tables.len() {
            1 => print_json(&tables[0]),
            _ => print_json(&json!({ "tables": tables })),
        };
    }
    for (table, list) in &all {
        println!("{table}:");
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|i| {
                let mut flags = Vec::new();
                if !i.valid {
                    flags.push(format!("INVALID ({})", i.invalid.len()));
                }
                if i.unused {
                    flags.push("unused".into());
                }
                if let Some(d) = &i.duplicate_of {
                    flags.push(format!("duplicate of {d}"));
                }
                if !i.bloated.is_empty() {
                    flags.push(format!(
                        "bloated (~{})",
                        format::bytes(i.bloat_bytes.max(0) as u64)
                    ));
                }
                vec![
                    i.name.clone(),
                    i.method.clone(),
                    i.partitions.to_string(),
                    i.size_pretty.clone(),
                    format::count(i.scans.max(0) as u64),
                    format::count(i.tuples_read.max(0) as u64),
                    flags.join(", "),
                ]
            })
            .collect();
        println!(
            "{}",
            format::table(
                &[
                    "index",
                    "type",
                    ">partitions",
                    ">size",
                    ">scans",
                    ">tuples read",
                    "flags"
                ],
                &rows
            )
        );
    }
    Ok(())
}

pub async fn queries(
    target: &Target,
    config: &Config,
    days: u32,
    limit: usize,
    json: bool,
) -> Result<()> {
    if days == 0 {
        return Err(Error::Usage("--days must be at least 1".into()));
    }
    let client = target.connect().await?;
    let report = stats::queries(&client, &config.tables, days, limit).await?;
    if json {
        return print_json(&report);
    }
    if let Some(hint) = &report.hint {
        println!("pg_stat_statements is not available: {hint}");
        return Ok(());
    }
    if let Some(w) = &report.window {
        println!(
            "window: {} .. {} ({})",
            when(w.from),
            when(Some(w.to)),
            w.summary()
        );
        if let Some(note) = &w.note {
            println!("note: {note}");
        }
    }
    let show = |title: &str, list: &[stats::QueryStat]| {
        println!("\n{title}");
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|q| {
                let text: String = q.query.split_whitespace().collect::<Vec<_>>().join(" ");
                let text: String = text.chars().take(80).collect();
                vec![
                    format::count(q.calls.max(0) as u64),
                    format!("{:.1}", q.total_ms),
                    format!("{:.2}", q.mean_ms),
                    format::count(q.rows.max(0) as u64),
                    format::count(q.shared_blks_read.max(0) as u64),
                    text,
                ]
            })
            .collect();
        println!(
            "{}",
            format::table(
                &[
                    ">calls",
                    ">total ms",
                    ">mean ms",
                    ">rows",
                    ">blks read",
                    "query"
                ],
                &rows
            )
        );
    };
    show("slowest (total time)", &report.slowest);
    show("most frequent", &report.most_frequent);
    Ok(())
}

pub async fn snapshot(target: &Target, config: &Config, json: bool) -> Result<()> {
    let client = target.connect().await?;
    let n = stats::snapshot(&client, &config.tables).await?;
    let pruned = stats::prune_snapshots(&client, readings_days(config)).await?;
    if json {
        return print_json(&json!({"statements": n, "pruned": pruned}));
    }
    println!("stored a reading of {n} statement(s); pruned {pruned} old row(s)");
    Ok(())
}

/// Query readings are kept as long as job history, and never less than 35
/// days, so a monthly window always finds its baseline.
fn readings_days(config: &Config) -> u64 {
    config.maintenance.job_history_days.max(35)
}
