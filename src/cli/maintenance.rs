//! `strata vacuum|analyze|reindex TABLE` and `strata jobs`.

use std::time::Duration;

use super::{print_json, Target};
use crate::config::Config;
use crate::jobs;
use crate::maintenance::RelationResult;
use crate::ops::Op;
use crate::{format, Error, Result};

pub(super) fn print_line(r: &RelationResult) {
    println!("{}", r.line());
    if let Some(e) = &r.error {
        println!("        {e}");
    }
}

/// Runs vacuum, analyze or reindex of a managed table or partition, as a job
/// of the operations runtime.
pub async fn run(target: &Target, config: &Config, op: Op, json: bool) -> Result<()> {
    let (job_id, value) = super::ops::run(target, config, op, json).await?;
    if json {
        return print_json(&serde_json::json!({"job_id": job_id, "outcome": value}));
    }
    let unchanged = value["unchanged"].as_array().map(Vec::len).unwrap_or(0);
    if unchanged > 0 {
        println!("skipped {unchanged} partition(s) unchanged since their last analyze");
    }
    println!(
        "job {job_id}: {} {}: {} relation(s) in {}",
        value["operation"].as_str().unwrap_or(""),
        value["target"].as_str().unwrap_or(""),
        value["relations"].as_array().map(Vec::len).unwrap_or(0),
        format::duration(Duration::from_millis(value["millis"].as_u64().unwrap_or(0))),
    );
    Ok(())
}

/// `jobs list --kind K`: an unknown kind is a usage error, not an empty list.
fn check_kind(kind: Option<&str>) -> Result<()> {
    let known: Vec<&str> = Op::KINDS
        .iter()
        .copied()
        .chain(crate::config::JobCommand::ALL.iter().map(|(n, _)| *n))
        .collect();
    match kind {
        Some(k) if !known.contains(&k) && !k.contains(':') => {
            let mut known = known;
            known.sort();
            known.dedup();
            Err(Error::Usage(format!(
                "--kind {k:?} is not a job kind; kinds: {}",
                known.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

pub async fn list(target: &Target, kind: Option<&str>, limit: i64, json: bool) -> Result<()> {
    check_kind(kind)?;
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
