//! The pure planner: `(spec, now, what exists) -> Plan`. No database here.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::period;
use crate::config::{RetentionMode, TableSpec};
use crate::db::QualifiedName;

/// What a partition's bound is, as read from the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Bound {
    /// `[from, to)`; `None` stands for MINVALUE / MAXVALUE.
    Range {
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
    Default,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExistingPartition {
    pub name: QualifiedName,
    pub bound: Bound,
    /// Left half-detached by an interrupted `DETACH ... CONCURRENTLY`.
    #[serde(default)]
    pub detach_pending: bool,
}

/// What the planner needs to know about the table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub partitions: Vec<ExistingPartition>,
    /// Rows sitting in the default partition, by the start of their period.
    pub default_rows: Vec<(DateTime<Utc>, i64)>,
}

impl Snapshot {
    pub fn default_partition(&self) -> Option<&QualifiedName> {
        self.partitions
            .iter()
            .find(|p| p.bound == Bound::Default)
            .map(|p| &p.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Create and attach the partition `[from, to)`, first moving into it the
    /// `default_rows` rows of that range that sit in the default partition.
    Create {
        name: QualifiedName,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        default_rows: i64,
    },
    /// Detach a partition past retention (kept as a plain table).
    Detach {
        name: QualifiedName,
        concurrently: bool,
    },
    /// Drop a partition past retention.
    Drop { name: QualifiedName },
    /// Finish a `DETACH ... CONCURRENTLY` that was interrupted.
    FinalizeDetach { name: QualifiedName },
}

impl Step {
    pub fn name(&self) -> &QualifiedName {
        match self {
            Step::Create { name, .. }
            | Step::Detach { name, .. }
            | Step::Drop { name }
            | Step::FinalizeDetach { name } => name,
        }
    }
}

/// Something the planner will not touch, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub wanted: String,
    pub blocking: QualifiedName,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub conflicts: Vec<Conflict>,
    /// Rows in the default partition that retention would remove anyway; they
    /// are left where they are and reported.
    pub stale_default_rows: i64,
}

fn overlaps(bound: &Bound, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    match bound {
        Bound::Default => false,
        Bound::Range { from: f, to: t } => f.is_none_or(|f| f < to) && t.is_none_or(|t| t > from),
    }
}

/// Whether `p` is a partition strata made: the name its period would get and
/// exactly that period's bounds. Anything else is foreign and never dropped.
fn is_owned(spec: &TableSpec, p: &ExistingPartition) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let Bound::Range {
        from: Some(from),
        to: Some(to),
    } = p.bound
    else {
        return None;
    };
    let own = period::is_boundary(spec.interval, from)
        && period::next(spec.interval, from) == to
        && p.name.schema == spec.name.schema
        && p.name.name.as_str()
            == period::render_name(&spec.name_template, spec.name.name.as_str(), from);
    own.then_some((from, to))
}

/// Plans premake, default-partition hygiene and retention for one table.
pub fn plan(spec: &TableSpec, now: DateTime<Utc>, snap: &Snapshot) -> Plan {
    let mut out = Plan::default();
    // A half-detached partition blocks further DETACHes of the parent until
    // it is finalized, so that comes first.
    for p in snap.partitions.iter().filter(|p| p.detach_pending) {
        out.steps.push(Step::FinalizeDetach {
            name: p.name.clone(),
        });
    }
    let cutoff = spec.retention.map(|r| period::retention_cutoff(r, now));
    let expired = |to: DateTime<Utc>| cutoff.is_some_and(|c| to <= c);

    // Periods to exist: from `start` (or the first one retention keeps)
    // through the period holding `now` plus `premake` more.
    let last = period::advance(
        spec.interval,
        period::floor(spec.interval, now),
        spec.premake,
    );
    let mut wanted: Vec<DateTime<Utc>> = Vec::new();
    let mut p = period::floor(spec.interval, period::midnight(spec.start));
    while p <= last {
        if !expired(period::next(spec.interval, p)) {
            wanted.push(p);
        }
        p = period::next(spec.interval, p);
    }
    // Rows stuck in the default partition get their partition too, wherever
    // they fall, unless retention would remove them at once.
    for &(start, rows) in &snap.default_rows {
        let start = period::floor(spec.interval, start);
        if expired(period::next(spec.interval, start)) {
            out.stale_default_rows += rows;
        } else if !wanted.contains(&start) {
            wanted.push(start);
        }
    }
    wanted.sort();

    for from in wanted {
        let to = period::next(spec.interval, from);
        let name_text = period::render_name(&spec.name_template, spec.name.name.as_str(), from);
        let covering: Vec<&ExistingPartition> = snap
            .partitions
            .iter()
            .filter(|e| overlaps(&e.bound, from, to))
            .collect();
        let exact = covering.iter().any(|e| {
            matches!(e.bound, Bound::Range { from: Some(f), to: Some(t) } if f == from && t == to)
        });
        if exact {
            continue;
        }
        if let Some(blocking) = covering.first() {
            // Covered wholly by a wider partition is fine: rows have a home.
            let contains = matches!(blocking.bound, Bound::Range { from: f, to: t }
                if f.is_none_or(|f| f <= from) && t.is_none_or(|t| t >= to));
            if !contains {
                out.conflicts.push(Conflict {
                    from,
                    to,
                    wanted: name_text,
                    blocking: blocking.name.clone(),
                    reason:
                        "an existing partition overlaps this period without matching its bounds"
                            .into(),
                });
            }
            continue;
        }
        let name = match spec.name.sibling(&name_text) {
            Ok(n) => n,
            Err(e) => {
                out.conflicts.push(Conflict {
                    from,
                    to,
                    wanted: name_text,
                    blocking: spec.name.clone(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if let Some(other) = snap.partitions.iter().find(|e| e.name == name) {
            out.conflicts.push(Conflict {
                from,
                to,
                wanted: name_text,
                blocking: other.name.clone(),
                reason: "a partition of that name already exists with other bounds".into(),
            });
            continue;
        }
        let default_rows = snap
            .default_rows
            .iter()
            .filter(|(s, _)| period::floor(spec.interval, *s) == from)
            .map(|(_, n)| n)
            .sum();
        out.steps.push(Step::Create {
            name,
            from,
            to,
            default_rows,
        });
    }

    if cutoff.is_some() {
        let has_default = snap.default_partition().is_some();
        let mut old: Vec<(DateTime<Utc>, &ExistingPartition)> = snap
            .partitions
            .iter()
            .filter(|p| !p.detach_pending)
            .filter_map(|p| {
                is_owned(spec, p)
                    .filter(|(_, to)| expired(*to))
                    .map(|(f, _)| (f, p))
            })
            .collect();
        old.sort_by_key(|(f, _)| *f);
        for (_, p) in old {
            out.steps.push(match spec.retention_mode {
                RetentionMode::Detach => Step::Detach {
                    name: p.name.clone(),
                    // PostgreSQL refuses DETACH CONCURRENTLY when a default
                    // partition exists.
                    concurrently: !has_default,
                },
                RetentionMode::Drop => Step::Drop {
                    name: p.name.clone(),
                },
            });
        }
    }
    out
}
