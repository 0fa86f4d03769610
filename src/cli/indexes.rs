//! `strata indexes plan|apply`.

use serde_json::json;

use super::{print_json, Target};
use crate::config::Config;
use crate::index;
use crate::{format, stats, Error, Result};

pub async fn plan(target: &Target, config: &Config, table: Option<&str>, json: bool) -> Result<()> {
    let spec = config.table(table)?;
    let mut client = target.connect().await?;
    let plan = index::plan_now(&mut client, spec).await?;
    if json {
        return print_json(&plan);
    }
    if plan.steps.is_empty() {
        println!(
            "{}: the index set is complete",
            spec.name.display_unquoted()
        );
    }
    for step in &plan.steps {
        println!("{}", index::describe(step));
    }
    report_conflicts(&plan);
    Ok(())
}

fn report_conflicts(plan: &index::IndexPlan) {
    for c in &plan.conflicts {
        eprintln!("conflict: {} {}", c.name, c.reason);
    }
    for s in &plan.skipped {
        eprintln!("skipped: {s} (the table lacks one of its columns)");
    }
}

/// `strata indexes apply`: the online index build, as a job of the
/// operations runtime (under the table's maintenance lock).
pub async fn apply(
    target: &Target,
    config: &Config,
    table: Option<&str>,
    json: bool,
) -> Result<()> {
    let spec = config.table(table)?;
    let op = crate::ops::Op::IndexesApply {
        table: Some(spec.name.to_string()),
    };
    let (id, value) = super::ops::run(target, config, op, json)
        .await
        .map_err(|e| match e {
            Error::Op(crate::ops::OpError::Failed(m)) => {
                Error::Failed(format!("{m}; run `strata indexes apply` again to continue"))
            }
            e => e,
        })?;
    let client = target.connect().await?;
    let sizes = stats::index_sizes(&client, &spec.name).await?;
    if json {
        let mut out = value.clone();
        out["job_id"] = json!(id);
        out["indexes"] = json!(sizes);
        return print_json(&out);
    }
    if value["steps"].as_u64() == Some(0) {
        println!(
            "{}: the index set is complete",
            spec.name.display_unquoted()
        );
    }
    let rows: Vec<Vec<String>> = sizes
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.method.clone(),
                format::bytes(i.bytes as u64),
            ]
        })
        .collect();
    println!("\n{}", format::table(&["index", "type", ">size"], &rows));
    for c in value["conflicts"].as_array().into_iter().flatten() {
        eprintln!(
            "conflict: {} {}",
            c["name"].as_str().unwrap_or(""),
            c["reason"].as_str().unwrap_or("")
        );
    }
    println!("job {id}: indexes of {}", spec.name.display_unquoted());
    Ok(())
}
