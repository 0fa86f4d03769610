//! The safety rules every destructive step passes, whatever planned it:
//! checked again here, at the last moment, against the real clock.

use chrono::{DateTime, Utc};

use crate::config::TableSpec;
use crate::partition::{period, Bound, ExistingPartition, Step};

/// Why a destructive step was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub step: String,
    pub reason: String,
}

/// Checks one destructive step of `spec`'s table at the real time `now`.
/// Detach and drop need a retention, a partition whose whole range is
/// before both the current period and `now - retention`; a detached
/// partition's drop needs `detached_drop_after` to have passed.
pub fn check(
    spec: &TableSpec,
    now: DateTime<Utc>,
    step: &Step,
    partitions: &[ExistingPartition],
    detached_at: Option<DateTime<Utc>>,
) -> Result<(), Refusal> {
    let refuse = |reason: String| {
        Err(Refusal {
            step: crate::partition::describe(step),
            reason,
        })
    };
    match step {
        Step::Detach { name, .. } | Step::Drop { name } => {
            let Some(retention) = spec.retention else {
                return refuse("the table has no retention".into());
            };
            let cutoff = period::retention_cutoff(retention, now);
            let current = period::floor(spec.interval, now);
            let bound = partitions
                .iter()
                .find(|p| &p.name == name)
                .map(|p| &p.bound);
            match bound {
                Some(Bound::Range { to: Some(to), .. }) if *to <= cutoff && *to <= current => Ok(()),
                Some(Bound::Range { to: Some(to), .. }) => refuse(format!(
                    "its range ends at {}, after the retention cutoff {} or the start of the current period {}",
                    period::sql_timestamp(*to),
                    period::sql_timestamp(cutoff),
                    period::sql_timestamp(current)
                )),
                Some(_) => refuse("its range has no upper bound".into()),
                None => refuse("it is not a partition of the table".into()),
            }
        }
        Step::DropDetached { .. } => {
            let Some(after) = spec.detached_drop_after else {
                return refuse("detached_drop_after is not set".into());
            };
            match detached_at {
                Some(at) if at <= period::retention_cutoff(after, now) => Ok(()),
                Some(at) => refuse(format!(
                    "it was detached at {}, less than {after} ago",
                    period::sql_timestamp(at)
                )),
                None => refuse("it is not a recorded detached partition".into()),
            }
        }
        Step::Create { .. } | Step::FinalizeDetach { .. } => Ok(()),
    }
}

/// Archive-then-drop: the rules of [`check`] for a drop at the real time
/// `now`, and a manifest that was re-read from the store and matched the
/// partition just now (`verified_manifest`: its key). Nothing is dropped
/// that is not first copied somewhere verified.
pub fn check_archive_drop(
    spec: &TableSpec,
    now: DateTime<Utc>,
    step: &Step,
    partitions: &[ExistingPartition],
    verified_manifest: Option<&str>,
) -> Result<(), Refusal> {
    check(spec, now, step, partitions, None)?;
    if verified_manifest.is_none() {
        return Err(Refusal {
            step: crate::partition::describe(step),
            reason: "no verified archive manifest covers it".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Retention, RetentionMode};
    use crate::db::QualifiedName;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn part(name: &str, from: &str, to: &str) -> ExistingPartition {
        ExistingPartition {
            name: QualifiedName::new("public", name).unwrap(),
            bound: Bound::Range {
                from: Some(ts(from)),
                to: Some(ts(to)),
            },
            detach_pending: false,
        }
    }

    fn spec(retention: Option<Retention>) -> TableSpec {
        TableSpec {
            retention,
            retention_mode: RetentionMode::Drop,
            ..TableSpec::seed_default()
        }
    }

    #[test]
    fn never_the_current_period_or_a_future_one() {
        let now = ts("2026-12-01T12:00:00Z");
        let parts = [
            part(
                "audit_logs_2026_12",
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            part(
                "audit_logs_2027_03",
                "2027-03-01T00:00:00Z",
                "2027-04-01T00:00:00Z",
            ),
            part(
                "audit_logs_2025_01",
                "2025-01-01T00:00:00Z",
                "2025-02-01T00:00:00Z",
            ),
        ];
        // Even a retention of one day (a setting a typo could make) keeps
        // the current month and every later one.
        let s = spec(Some(Retention::Days(1)));
        for name in ["audit_logs_2026_12", "audit_logs_2027_03"] {
            let step = Step::Drop {
                name: QualifiedName::new("public", name).unwrap(),
            };
            let r = check(&s, now, &step, &parts, None).unwrap_err();
            assert!(r.reason.contains("after the retention cutoff"), "{r:?}");
        }
        let old = Step::Drop {
            name: QualifiedName::new("public", "audit_logs_2025_01").unwrap(),
        };
        assert!(check(&s, now, &old, &parts, None).is_ok());
        // Without a retention nothing goes.
        assert!(check(&spec(None), now, &old, &parts, None).is_err());
    }

    #[test]
    fn rows_newer_than_retention_stay() {
        let now = ts("2026-12-01T12:00:00Z");
        let parts = [part(
            "audit_logs_2026_06",
            "2026-06-01T00:00:00Z",
            "2026-07-01T00:00:00Z",
        )];
        let step = Step::Detach {
            name: QualifiedName::new("public", "audit_logs_2026_06").unwrap(),
            concurrently: false,
        };
        // 6 months back from 2026-12-01 is 2026-06-01: the June partition
        // holds rows newer than that.
        assert!(check(&spec(Some(Retention::Months(6))), now, &step, &parts, None).is_err());
        assert!(check(&spec(Some(Retention::Months(5))), now, &step, &parts, None).is_ok());
    }

    #[test]
    fn detached_partitions_go_only_by_policy() {
        let now = ts("2026-12-01T12:00:00Z");
        let step = Step::DropDetached {
            name: QualifiedName::new("public", "audit_logs_2025_01_detached").unwrap(),
        };
        let mut s = spec(Some(Retention::Months(12)));
        assert!(check(&s, now, &step, &[], Some(ts("2025-01-01T00:00:00Z"))).is_err());
        s.detached_drop_after = Some(Retention::Days(30));
        assert!(check(&s, now, &step, &[], Some(ts("2026-11-20T00:00:00Z"))).is_err());
        assert!(check(&s, now, &step, &[], Some(ts("2026-10-20T00:00:00Z"))).is_ok());
    }

    #[test]
    fn archive_drop_needs_a_verified_manifest_and_retention() {
        let now = ts("2026-12-01T12:00:00Z");
        let parts = [part(
            "audit_logs_2025_01",
            "2025-01-01T00:00:00Z",
            "2025-02-01T00:00:00Z",
        )];
        let step = Step::Drop {
            name: QualifiedName::new("public", "audit_logs_2025_01").unwrap(),
        };
        let mut s = spec(Some(Retention::Months(12)));
        s.retention_mode = RetentionMode::Archive;
        assert!(check_archive_drop(&s, now, &step, &parts, None).is_err());
        assert!(check_archive_drop(&s, now, &step, &parts, Some("m.json")).is_ok());
        // A verified manifest does not lift the retention rules.
        s.retention = Some(Retention::Months(30));
        assert!(check_archive_drop(&s, now, &step, &parts, Some("m.json")).is_err());
    }
}
