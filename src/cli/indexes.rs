//! `strata indexes plan|apply`.

use serde_json::json;

use super::{print_json, Target};
use crate::config::Config;
use crate::index::{self, IndexStep};
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

pub async fn apply(
    target: &Target,
    config: &Config,
    table: Option<&str>,
    json: bool,
) -> Result<()> {
    let spec = config.table(table)?;
    let mut client = target.connect().await?;
    let plan = index::plan_now(&mut client, spec).await?;
    let builds = plan
        .steps
        .iter()
        .filter(|s| matches!(s, IndexStep::Build { .. }))
        .count();
    let mut built = 0;
    let results = index::apply(
        &mut client,
        spec,
        &plan.steps,
        &config.maintenance.lock,
        |_, r| {
            if matches!(r.step, IndexStep::Build { .. }) {
                built += 1;
            }
            if json {
                return;
            }
            let status = if r.ok { "ok" } else { "FAILED" };
            let size = r
                .bytes
                .map(|b| format!(", {}", format::bytes(b as u64)))
                .unwrap_or_default();
            let count = if matches!(r.step, IndexStep::Build { .. }) {
                format!(" [{built}/{builds}]")
            } else {
                String::new()
            };
            println!(
                "{status:>6}  {}{count}  ({}{size})",
                index::describe(&r.step),
                format::duration(std::time::Duration::from_millis(r.millis as u64))
            );
            if let Some(e) = &r.error {
                println!("        {e}");
            }
        },
    )
    .await?;
    let sizes = stats::index_sizes(&client, &spec.name).await?;
    let failed = results.iter().filter(|r| !r.ok).count();
    if json {
        print_json(&json!({"plan": plan, "results": results, "indexes": sizes}))?;
    } else {
        if plan.steps.is_empty() {
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
        report_conflicts(&plan);
    }
    if failed > 0 {
        return Err(Error::Failed(
            "an index step failed; run `strata indexes apply` again to continue".into(),
        ));
    }
    Ok(())
}
