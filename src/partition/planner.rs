//! The pure planner: `(spec, now, what exists) -> Plan`. No database here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::period;
use crate::config::{RetentionMode, TableSpec};
use crate::db::QualifiedName;

/// What a partition's bound is, as read from the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Bound {
    /// `[from, to)`; `None` stands for MINVALUE / MAXVALUE.
    Range {
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
    Default,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingPartition {
    pub name: QualifiedName,
    pub bound: Bound,
    /// Left half-detached by an interrupted `DETACH ... CONCURRENTLY`.
    #[serde(default)]
    pub detach_pending: bool,
}

/// What the planner needs to know about the table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub partitions: Vec<ExistingPartition>,
    /// Rows sitting in the default partition, by the start of their period.
    pub default_rows: Vec<(DateTime<Utc>, i64)>,
    /// Partitions strata detached earlier and has not dropped yet.
    #[serde(default)]
    pub detached: Vec<DetachedPartition>,
}

/// A partition retention detached: renamed out of the live names and
/// recorded in `strata.detached_partitions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedPartition {
    pub name: QualifiedName,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub detached_at: DateTime<Utc>,
}

/// The two times a plan is made from. `plan` may be pretended (`--now`): it
/// decides what is created. `real` is the clock's: it alone decides what is
/// detached or dropped, so no pretended time ever destroys anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub plan: DateTime<Utc>,
    pub real: DateTime<Utc>,
}

impl Clock {
    pub fn real(now: DateTime<Utc>) -> Clock {
        Clock {
            plan: now,
            real: now,
        }
    }

    pub fn pretended(&self) -> bool {
        self.plan != self.real
    }
}

impl Snapshot {
    pub fn default_partition(&self) -> Option<&QualifiedName> {
        self.partitions
            .iter()
            .find(|p| p.bound == Bound::Default)
            .map(|p| &p.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Drop a partition detached earlier, past `detached_drop_after`.
    DropDetached { name: QualifiedName },
}

impl Step {
    /// Whether the step removes a partition from the table or the database.
    pub fn destructive(&self) -> bool {
        matches!(
            self,
            Step::Detach { .. } | Step::Drop { .. } | Step::DropDetached { .. }
        )
    }
}

impl Step {
    pub fn name(&self) -> &QualifiedName {
        match self {
            Step::Create { name, .. }
            | Step::Detach { name, .. }
            | Step::Drop { name }
            | Step::FinalizeDetach { name }
            | Step::DropDetached { name } => name,
        }
    }
}

/// Something the planner will not touch, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub wanted: String,
    pub blocking: QualifiedName,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub conflicts: Vec<Conflict>,
    /// Rows in the default partition that retention would remove anyway; they
    /// are left where they are and reported.
    pub stale_default_rows: i64,
    /// Rows in the default partition outside `[start, now + premake]`, by
    /// the start of their period: reported, never turned into partitions (a
    /// row stamped in the year 9999 must not create thousands of them).
    #[serde(default)]
    pub out_of_window: Vec<(DateTime<Utc>, i64)>,
    /// Destructive steps the pretended time would take, shown and not run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previewed: Vec<Step>,
}

impl Plan {
    pub fn creates(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Create { .. }))
            .count()
    }

    pub fn out_of_window_rows(&self) -> i64 {
        self.out_of_window.iter().map(|(_, n)| n).sum()
    }
}

/// The periods that should exist as partitions at `now`: from `start`
/// through the period holding `now` plus `premake` more, less those wholly
/// past `cutoff`. The planner, health and the report all ask this.
pub fn wanted_periods(
    spec: &TableSpec,
    now: DateTime<Utc>,
    cutoff: Option<DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    let last = last_wanted(spec, now);
    let mut wanted = Vec::new();
    let mut p = first_wanted(spec);
    while p <= last {
        let to = period::next(spec.interval, p);
        if cutoff.is_none_or(|c| to > c) {
            wanted.push(p);
        }
        p = to;
    }
    wanted
}

fn first_wanted(spec: &TableSpec) -> DateTime<Utc> {
    period::floor(spec.interval, period::midnight(spec.start))
}

fn last_wanted(spec: &TableSpec, now: DateTime<Utc>) -> DateTime<Utc> {
    period::advance(
        spec.interval,
        period::floor(spec.interval, now),
        spec.premake,
    )
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

/// Plans premake, default-partition hygiene and retention for one table at
/// one (real) time.
pub fn plan(spec: &TableSpec, now: DateTime<Utc>, snap: &Snapshot) -> Plan {
    plan_with(spec, Clock::real(now), snap)
}

/// Plans with a possibly pretended time: creation follows `clock.plan`,
/// retention `clock.real` only; what retention would do at the pretended
/// time goes to `previewed`.
pub fn plan_with(spec: &TableSpec, clock: Clock, snap: &Snapshot) -> Plan {
    let mut out = Plan::default();
    // A half-detached partition blocks further DETACHes of the parent until
    // it is finalized, so that comes first.
    for p in snap.partitions.iter().filter(|p| p.detach_pending) {
        out.steps.push(Step::FinalizeDetach {
            name: p.name.clone(),
        });
    }
    let real_cutoff = spec
        .retention
        .map(|r| period::retention_cutoff(r, clock.real));
    let expired = |to: DateTime<Utc>| real_cutoff.is_some_and(|c| to <= c);
    let mut wanted = wanted_periods(spec, clock.plan, real_cutoff);
    let (first, last) = (first_wanted(spec), last_wanted(spec, clock.plan));
    // Rows stuck in the default partition get their partition too, inside
    // the window, unless retention would remove them at once.
    for &(start, rows) in &snap.default_rows {
        let start = period::floor(spec.interval, start);
        if expired(period::next(spec.interval, start)) {
            out.stale_default_rows += rows;
        } else if start < first || start > last {
            match out.out_of_window.iter_mut().find(|(s, _)| *s == start) {
                Some((_, n)) => *n += rows,
                None => out.out_of_window.push((start, rows)),
            }
        } else if !wanted.contains(&start) {
            wanted.push(start);
        }
    }
    out.out_of_window.sort();
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

    out.steps.extend(retention_steps(spec, clock.real, snap));
    if clock.pretended() {
        let real = out.steps.clone();
        out.previewed = retention_steps(spec, clock.plan, snap)
            .into_iter()
            .filter(|s| !real.contains(s))
            .collect();
    }
    out
}

/// What retention removes at `now`: owned partitions wholly past the cutoff
/// (never the current period or a later one, whatever the setting), and
/// detached partitions past `detached_drop_after`.
fn retention_steps(spec: &TableSpec, now: DateTime<Utc>, snap: &Snapshot) -> Vec<Step> {
    let mut steps = Vec::new();
    let current = period::floor(spec.interval, now);
    if let Some(cutoff) = spec.retention.map(|r| period::retention_cutoff(r, now)) {
        let has_default = snap.default_partition().is_some();
        let mut old: Vec<(DateTime<Utc>, &ExistingPartition)> = snap
            .partitions
            .iter()
            .filter(|p| !p.detach_pending)
            .filter_map(|p| {
                is_owned(spec, p)
                    .filter(|(_, to)| *to <= cutoff && *to <= current)
                    .map(|(f, _)| (f, p))
            })
            .collect();
        old.sort_by_key(|(f, _)| *f);
        for (_, p) in old {
            // Archive-then-drop is the archive run's: it drops only what a
            // verified manifest covers.
            if spec.retention_mode == RetentionMode::Archive {
                continue;
            }
            steps.push(match spec.retention_mode {
                RetentionMode::Detach => Step::Detach {
                    name: p.name.clone(),
                    // PostgreSQL refuses DETACH CONCURRENTLY when a default
                    // partition exists.
                    concurrently: !has_default,
                },
                RetentionMode::Drop | RetentionMode::Archive => Step::Drop {
                    name: p.name.clone(),
                },
            });
        }
    }
    if let Some(after) = spec.detached_drop_after {
        let due = period::retention_cutoff(after, now);
        for d in snap.detached.iter().filter(|d| d.detached_at <= due) {
            steps.push(Step::DropDetached {
                name: d.name.clone(),
            });
        }
    }
    steps
}
