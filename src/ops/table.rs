//! vacuum / analyze / reindex of a managed table or partition, and the
//! online index build, as operations.

use serde_json::Value;
use tokio_postgres::Client;

use super::{OpError, Progress, ProgressFn};
use crate::config::{Config, TableSpec};
use crate::maintenance::{MaintenanceTarget, Operation, RelationResult};

pub async fn run(
    client: &mut Client,
    target: &MaintenanceTarget,
    op: Operation,
    progress: ProgressFn<'_>,
) -> Result<Value, OpError> {
    let mut each = |r: &RelationResult| progress(&Progress::Relation(r.clone()));
    let outcome = op.run(client, target, &mut each).await?;
    if outcome.failed > 0 {
        let failures: Vec<String> = outcome
            .relations
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{}: {}", r.relation, r.error.as_deref().unwrap_or("failed")))
            .collect();
        return Err(OpError::Failed(format!(
            "{} of {} relation(s) failed: {}",
            outcome.failed,
            outcome.relations.len(),
            failures.join("; ")
        )));
    }
    Ok(serde_json::to_value(&outcome).expect("outcome serializes"))
}

pub async fn indexes_apply(
    client: &mut Client,
    spec: &TableSpec,
    config: &Config,
    progress: ProgressFn<'_>,
) -> Result<Value, OpError> {
    let plan = crate::index::plan_now(client, spec).await?;
    let total = plan.steps.len();
    let results = crate::index::apply(
        client,
        spec,
        &plan.steps,
        &config.maintenance.lock,
        |i, r| {
            let status = if r.ok { "ok" } else { "FAILED" };
            let mut message = format!(
                "{status:>6}  [{}/{total}] {}  ({} ms)",
                i + 1,
                crate::index::describe(&r.step),
                r.millis
            );
            if let Some(e) = &r.error {
                message.push_str(&format!("\n        {e}"));
            }
            progress(&Progress::Line { message });
        },
    )
    .await?;
    let failed = results.iter().filter(|r| !r.ok).count();
    let value = serde_json::json!({
        "table": spec.name.display_unquoted(),
        "steps": total,
        "results": results,
        "conflicts": plan.conflicts,
    });
    if failed > 0 {
        return Err(OpError::Failed(format!(
            "{failed} of {total} index steps failed: {value}"
        )));
    }
    Ok(value)
}
