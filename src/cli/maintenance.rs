//! `strata vacuum|analyze|reindex TABLE` and `strata jobs`.

use std::time::Duration;

use super::{print_json, Target};
use crate::config::Config;
use crate::jobs::{self, Retention};
use crate::maintenance::{self, Operation, Outcome, RelationResult};
use crate::{format, Error, Result};

fn print_line(r: &RelationResult) {
    let status = if r.ok { "ok" } else { "FAILED" };
    let mut extra = String::new();
    if let (Some(b), Some(a)) = (r.dead_tuples_before, r.dead_tuples_after) {
        extra = format!(
            "  dead tuples {} -> {}",
            format::count(b.max(0) as u64),
            format::count(a.max(0) as u64)
        );
    }
    if let (Some(b), Some(a)) = (r.bytes_before, r.bytes_after) {
        extra = format!(
            "  {} -> {}",
            format::bytes(b.max(0) as u64),
            format::bytes(a.max(0) as u64)
        );
    }
    println!(
        "{status:>6}  {:<9} {}  {}{extra}",
        r.kind,
        r.relation,
        format::duration(Duration::from_millis(r.millis))
    );
    if let Some(e) = &r.error {
        println!("        {e}");
    }
}

/// Runs one operation on a managed table or partition, as a job.
pub async fn run(
    target: &Target,
    config: &Config,
    table: &str,
    op: Operation,
    json: bool,
) -> Result<()> {
    let mut client = target.connect().await?;
    let resolved = maintenance::resolve(&mut client, &config.tables, table).await?;
    let shown = resolved.relation.display_unquoted();
    if !json {
        println!(
            "{} {} ({} partition{})",
            op.kind(),
            shown,
            resolved.leaves.len(),
            if resolved.leaves.len() == 1 { "" } else { "s" }
        );
    }
    let mut progress = |r: &RelationResult| {
        if !json {
            print_line(r);
        }
    };
    let client_ref = &client;
    let resolved_ref = &resolved;
    // One lock per managed table, shared with `maintain`: maintenance of a
    // table never overlaps itself (two REINDEX CONCURRENTLY runs deadlock,
    // and a long ANALYZE would starve the partition DDL of its lock).
    let lock = crate::partition::table_lock(&resolved.spec.name);
    let (job_id, outcome) = jobs::run(
        client_ref,
        op.kind(),
        &shown,
        &lock,
        Retention::from_config(&config.maintenance),
        |_| async move { op.run(client_ref, resolved_ref, &mut progress).await },
    )
    .await?;
    let outcome: Outcome = outcome?;
    if json {
        print_json(&serde_json::json!({"job_id": job_id, "outcome": outcome}))?;
    } else {
        if !outcome.unchanged.is_empty() {
            println!(
                "skipped {} partition(s) unchanged since their last analyze",
                outcome.unchanged.len()
            );
        }
        println!(
            "job {job_id}: {} relation(s) in {}, {} failed",
            outcome.relations.len(),
            format::duration(Duration::from_millis(outcome.millis)),
            outcome.failed
        );
    }
    if outcome.failed > 0 {
        return Err(Error::Failed(format!(
            "{} of {} relation(s) failed; see job {job_id}",
            outcome.failed,
            outcome.relations.len()
        )));
    }
    Ok(())
}

pub async fn list(target: &Target, kind: Option<&str>, limit: i64, json: bool) -> Result<()> {
    let client = target.connect().await?;
    let rows = jobs::list(&client, kind, limit).await?;
    if json {
        return print_json(&rows);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|j| {
            let took = match (j.started_at, j.finished_at) {
                (Some(s), Some(f)) => format::duration((f - s).to_std().unwrap_or_default()),
                _ => "-".into(),
            };
            vec![
                j.id.to_string(),
                j.kind.clone(),
                j.target.clone(),
                j.state.clone(),
                j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                took,
                j.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!(
        "{}",
        format::table(
            &[
                "id",
                "kind",
                "target",
                "state",
                "created (UTC)",
                ">took",
                "error"
            ],
            &table
        )
    );
    Ok(())
}

pub async fn show(target: &Target, id: i64, json: bool) -> Result<()> {
    let client = target.connect().await?;
    let job = jobs::get(&client, id).await?;
    if json {
        return print_json(&job);
    }
    let text = serde_json::to_string_pretty(&job).map_err(|e| Error::Failed(e.to_string()))?;
    println!("{text}");
    Ok(())
}
