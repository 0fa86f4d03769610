//! `maintain`, defined once: what the CLI's `maintain` / `partitions apply`,
//! the API's maintain job and the scheduler's daily job all run.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use super::{safety, OpError, Progress, ProgressFn};
use crate::config::{Backend, Config, TableSpec};
use crate::maintenance::{self, AnalyzeScope};
use crate::partition::{self, period, Clock, Plan, Step, StepResult};

/// How a maintain run goes.
#[derive(Clone, Debug, Default)]
pub struct MaintainOptions {
    /// The managed table (default: the first).
    pub table: Option<String>,
    /// A pretended time: partitions are created as of it; destructive steps
    /// follow the real clock only and are shown as what would happen.
    pub now: Option<DateTime<Utc>>,
    /// Only create partitions (what `load` runs): no retention, no analyze.
    pub create_only: bool,
    /// Allow more than `max_new_partitions` partitions in one run.
    pub yes: bool,
}

/// What a maintain run did: the job's result.
#[derive(Clone, Debug, Serialize)]
pub struct MaintainOutcome {
    pub table: String,
    pub backend: &'static str,
    /// The server's clock: retention followed it.
    pub now: DateTime<Utc>,
    /// The pretended time partitions were created for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretended_now: Option<DateTime<Utc>>,
    pub plan: Plan,
    pub results: Vec<StepResult>,
    /// Creates left for a later run (or `--yes`) by `max_new_partitions`.
    pub held_back: Vec<String>,
    /// Destructive steps refused by the safety rules at the last moment.
    pub refused: Vec<String>,
    pub analyzed: usize,
    pub failed: usize,
    /// With `backend = "partman"`: the extension's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partman_version: Option<String>,
}

impl MaintainOutcome {
    pub fn into_result(self) -> Result<Value, OpError> {
        if self.failed > 0 {
            let errors: Vec<String> = self
                .results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| {
                    format!(
                        "{}: {}",
                        partition::describe(&r.step),
                        r.error.as_deref().unwrap_or("")
                    )
                })
                .collect();
            return Err(OpError::Failed(format!(
                "{} of {} maintenance steps failed: {}",
                self.failed,
                self.results.len(),
                errors.join("; ")
            )));
        }
        if !self.held_back.is_empty() {
            return Err(OpError::Precondition(format!(
                "{} partitions created; {} more held back by max_new_partitions (first {}); \
                 run again, or pass --yes to create them all at once",
                self.plan.creates() - self.held_back.len(),
                self.held_back.len(),
                self.held_back[0]
            )));
        }
        Ok(serde_json::to_value(&self).expect("outcome serializes"))
    }
}

pub async fn run(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    o: &MaintainOptions,
    _job: i64,
    progress: ProgressFn<'_>,
) -> Result<MaintainOutcome, OpError> {
    if spec.backend == Backend::Partman && o.now.is_some() {
        // Refused before anything is registered or changed.
        return Err(partition::PartitionError::PartmanNow.into());
    }
    let real = super::real_now(client).await?;
    partition::register(client, spec).await?;
    let mut out = MaintainOutcome {
        table: spec.name.display_unquoted(),
        backend: "native",
        now: real,
        pretended_now: o.now.filter(|n| *n != real),
        plan: Plan::default(),
        results: Vec::new(),
        held_back: Vec::new(),
        refused: Vec::new(),
        analyzed: 0,
        failed: 0,
        partman_version: None,
    };
    if spec.backend == Backend::Partman {
        // pg_partman decides what to create and retain from the server clock,
        // and drops inside run_maintenance, where no rollup hears of it: what
        // it may drop (all before now - retention) is invalidated first.
        if let Some(r) = spec.retention {
            let horizon: DateTime<Utc> = client
                .query_one("SELECT now() - $1::text::interval", &[&r.to_string()])
                .await
                .map_err(crate::db::DbError::query("computing the retention horizon"))?
                .get(0);
            crate::rollup::invalidate_range(&*client, &spec.name, None, Some(horizon)).await?;
        }
        let pm = partition::partman::maintain(client, spec, &config.maintenance.lock).await?;
        out.backend = "partman";
        out.partman_version = Some(pm.version);
    } else {
        apply_native(client, config, spec, o, real, &mut out, progress).await?;
    }
    crate::rollup::cover_new_partitions(client, spec, &config.maintenance.lock).await?;
    // After failed steps the table is contended: an ANALYZE would only wait
    // for the same locks. The next run does it.
    if !o.create_only && out.failed == 0 {
        after(client, config, spec, &mut out).await?;
    }
    Ok(out)
}

async fn apply_native(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    o: &MaintainOptions,
    real: DateTime<Utc>,
    out: &mut MaintainOutcome,
    progress: ProgressFn<'_>,
) -> Result<(), OpError> {
    let clock = Clock {
        plan: o.now.unwrap_or(real),
        real,
    };
    if !o.create_only {
        let adopted =
            partition::detached::adopt_leftovers(client, spec, real, &config.maintenance.lock)
                .await?;
        for name in adopted {
            progress(&Progress::Line {
                message: format!(
                    "adopted {name}: a detached table under a live name, now {name}_detached and recorded"
                ),
            });
        }
    }
    let snap = partition::snapshot(client, spec).await?;
    let mut plan = partition::plan_with(spec, clock, &snap);
    if o.create_only {
        plan.steps.retain(|s| !s.destructive());
        plan.previewed.clear();
    }
    // The last word on destruction, whatever planned it.
    let detached_at = |name: &crate::db::QualifiedName| {
        snap.detached
            .iter()
            .find(|d| &d.name == name)
            .map(|d| d.detached_at)
    };
    let mut steps = Vec::new();
    for step in &plan.steps {
        if step.destructive() {
            if let Err(r) =
                safety::check(spec, real, step, &snap.partitions, detached_at(step.name()))
            {
                out.refused.push(format!("{}: {}", r.step, r.reason));
                continue;
            }
        }
        steps.push(step.clone());
    }
    let steps = bound_creates(spec, o.yes, real, steps, &mut out.held_back);
    for step in steps.iter().filter(|s| s.destructive()) {
        progress(&Progress::Line {
            message: format!("plan: {}", partition::describe(step)),
        });
    }
    let report = partition::apply(client, spec, &steps, &config.maintenance, |a| {
        let message = match a {
            partition::Applied::Step(r) => step_line(r),
            partition::Applied::Note(m) => m,
        };
        progress(&Progress::Line { message })
    })
    .await?;
    out.failed = report.failed();
    out.results = report.results;
    out.plan = plan;
    Ok(())
}

/// Keeps at most `max_new_partitions` creates unless `yes`: first the
/// current period and those ahead (writers need them), then the most
/// recent past ones. The rest are named in `held_back`.
fn bound_creates(
    spec: &TableSpec,
    yes: bool,
    now: DateTime<Utc>,
    steps: Vec<Step>,
    held_back: &mut Vec<String>,
) -> Vec<Step> {
    let max = spec.max_new_partitions as usize;
    let (mut creates, others): (Vec<Step>, Vec<Step>) = steps
        .into_iter()
        .partition(|s| matches!(s, Step::Create { .. }));
    if yes || creates.len() <= max {
        return others_then(creates, others);
    }
    let current = period::floor(spec.interval, now);
    let key = |s: &Step| match s {
        Step::Create { from, .. } if *from >= current => (0, *from - current),
        Step::Create { from, .. } => (1, current - *from),
        _ => (2, chrono::Duration::zero()),
    };
    creates.sort_by_key(key);
    for s in creates.drain(max..) {
        held_back.push(s.name().display_unquoted());
    }
    creates.sort_by_key(|s| match s {
        Step::Create { from, .. } => *from,
        _ => now,
    });
    others_then(creates, others)
}

fn others_then(creates: Vec<Step>, others: Vec<Step>) -> Vec<Step> {
    // Finishing an interrupted detach comes first (it blocks other DDL), then
    // creates, then retention.
    let (first, rest): (Vec<Step>, Vec<Step>) = others
        .into_iter()
        .partition(|s| matches!(s, Step::FinalizeDetach { .. }));
    first.into_iter().chain(creates).chain(rest).collect()
}

fn step_line(r: &StepResult) -> String {
    let status = if r.ok { "ok" } else { "FAILED" };
    let mut line = format!(
        "{status:>6}  {}  ({} ms)",
        partition::describe(&r.step),
        r.millis
    );
    if let Some(e) = &r.error {
        line.push_str(&format!("\n        {e}"));
    }
    line
}

/// A pg_stat_statements reading (for the queries window) and ANALYZE of the
/// partitions that changed, new ones included: they get statistics now
/// rather than whenever autovacuum gets there. Neither fails the run.
async fn after(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    out: &mut MaintainOutcome,
) -> Result<(), OpError> {
    if let Err(e) = crate::stats::snapshot(client, std::slice::from_ref(spec)).await {
        tracing::debug!(error = %e, "no pg_stat_statements reading");
    }
    let _ =
        crate::stats::prune_snapshots(client, config.maintenance.job_history_days.max(35)).await;
    let target =
        maintenance::resolve(client, std::slice::from_ref(spec), &spec.name.to_string()).await?;
    let mut quiet = |_: &maintenance::RelationResult| {};
    match maintenance::analyze(client, &target, AnalyzeScope::Changed, &mut quiet).await {
        Ok(o) => out.analyzed = o.relations.len(),
        Err(e) => tracing::warn!(error = %e, "analyze after maintain failed"),
    }
    Ok(())
}
