use chrono::{DateTime, NaiveDate, Utc};

use super::planner::*;
use crate::config::{Interval, Retention, RetentionMode, TableSpec};
use crate::db::QualifiedName;

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn q(name: &str) -> QualifiedName {
    QualifiedName::new("public", name).unwrap()
}

fn range(name: &str, from: &str, to: &str) -> ExistingPartition {
    ExistingPartition {
        name: q(name),
        bound: Bound::Range {
            from: Some(ts(from)),
            to: Some(ts(to)),
        },
        detach_pending: false,
    }
}

fn created(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Create { name, .. } => Some(name.name.as_str().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_seed_config_in_december_2025_makes_the_seeds_18_partitions() {
    let plan = plan(
        &TableSpec::seed_default(),
        ts("2025-12-15T12:00:00Z"),
        &Snapshot::default(),
    );
    let names = created(&plan);
    assert_eq!(names.len(), 18);
    assert_eq!(names.first().unwrap(), "audit_logs_2025_01");
    assert_eq!(names.last().unwrap(), "audit_logs_2026_06");
    match &plan.steps[2] {
        Step::Create { from, to, .. } => {
            assert_eq!(*from, ts("2025-03-01T00:00:00Z"));
            assert_eq!(*to, ts("2025-04-01T00:00:00Z"));
        }
        other => panic!("{other:?}"),
    }
    assert!(plan.conflicts.is_empty());
}

#[test]
fn premake_needs_no_data_and_zero_premake_stops_at_now() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 11, 1).unwrap();
    spec.premake = 0;
    let plan = plan(&spec, ts("2025-12-31T23:59:59Z"), &Snapshot::default());
    assert_eq!(
        created(&plan),
        vec!["audit_logs_2025_11", "audit_logs_2025_12"]
    );
}

#[test]
fn existing_partitions_are_kept_and_gaps_filled() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.premake = 1;
    let snap = Snapshot {
        detached: vec![],
        partitions: vec![
            range(
                "audit_logs_2025_01",
                "2025-01-01T00:00:00Z",
                "2025-02-01T00:00:00Z",
            ),
            range(
                "audit_logs_2025_03",
                "2025-03-01T00:00:00Z",
                "2025-04-01T00:00:00Z",
            ),
        ],
        default_rows: vec![],
    };
    let plan = plan(&spec, ts("2025-03-10T00:00:00Z"), &snap);
    assert_eq!(
        created(&plan),
        vec!["audit_logs_2025_02", "audit_logs_2025_04"]
    );
}

#[test]
fn a_foreign_partition_is_neither_overlapped_nor_dropped() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.premake = 0;
    spec.retention = Some(Retention::Months(1));
    spec.retention_mode = RetentionMode::Drop;
    let snap = Snapshot {
        detached: vec![],
        partitions: vec![
            // Half of February and half of March: overlaps two periods.
            range(
                "legacy_chunk",
                "2025-02-15T00:00:00Z",
                "2025-03-15T00:00:00Z",
            ),
            // A whole old quarter under another name: contains its periods.
            range("archive_q4", "2024-10-01T00:00:00Z", "2025-01-01T00:00:00Z"),
        ],
        default_rows: vec![],
    };
    let plan = plan(&spec, ts("2025-06-10T00:00:00Z"), &snap);
    assert!(plan
        .steps
        .iter()
        .all(|s| !matches!(s, Step::Drop { name } if name.name.as_str() != "audit_logs_2025_01")));
    assert!(!plan.steps.iter().any(
        |s| s.name().name.as_str() == "legacy_chunk" || s.name().name.as_str() == "archive_q4"
    ));
    // Feb and Mar are past retention (cutoff 2025-05-10) so they are not wanted;
    // with a longer retention they would conflict.
    spec.retention = None;
    let plan2 = super::planner::plan(&spec, ts("2025-06-10T00:00:00Z"), &snap);
    let conflicts: Vec<&str> = plan2.conflicts.iter().map(|c| c.wanted.as_str()).collect();
    assert_eq!(conflicts, vec!["audit_logs_2025_02", "audit_logs_2025_03"]);
    assert!(plan2
        .conflicts
        .iter()
        .all(|c| c.blocking.name.as_str() == "legacy_chunk"));
    assert_eq!(
        created(&plan2),
        vec![
            "audit_logs_2025_01",
            "audit_logs_2025_04",
            "audit_logs_2025_05",
            "audit_logs_2025_06"
        ]
    );
}

#[test]
fn a_same_named_partition_with_other_bounds_is_a_conflict() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 5, 1).unwrap();
    spec.premake = 0;
    let snap = Snapshot {
        detached: vec![],
        partitions: vec![range(
            "audit_logs_2025_05",
            "2024-01-01T00:00:00Z",
            "2024-02-01T00:00:00Z",
        )],
        default_rows: vec![],
    };
    let plan = plan(&spec, ts("2025-05-02T00:00:00Z"), &snap);
    assert!(plan.steps.is_empty());
    assert_eq!(plan.conflicts.len(), 1);
    assert!(plan.conflicts[0].reason.contains("already exists"));
}

#[test]
fn retention_edges_detach_only_whole_periods_past_the_cutoff() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.premake = 0;
    spec.retention = Some(Retention::Months(3));
    let snap = Snapshot {
        detached: vec![],
        partitions: vec![
            range(
                "audit_logs_2025_01",
                "2025-01-01T00:00:00Z",
                "2025-02-01T00:00:00Z",
            ),
            range(
                "audit_logs_2025_02",
                "2025-02-01T00:00:00Z",
                "2025-03-01T00:00:00Z",
            ),
            range(
                "audit_logs_2025_03",
                "2025-03-01T00:00:00Z",
                "2025-04-01T00:00:00Z",
            ),
        ],
        default_rows: vec![],
    };
    // Cutoff 2025-03-01T00:00: February ends exactly at it, so it goes; March stays.
    let plan = plan(&spec, ts("2025-06-01T00:00:00Z"), &snap);
    let detached: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Detach { name, concurrently } => {
                assert!(*concurrently, "no default partition: CONCURRENTLY");
                Some(name.name.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(detached, vec!["audit_logs_2025_01", "audit_logs_2025_02"]);
    assert_eq!(
        created(&plan),
        vec![
            "audit_logs_2025_04",
            "audit_logs_2025_05",
            "audit_logs_2025_06"
        ]
    );
    // One second earlier, February is still inside retention.
    let plan = super::planner::plan(&spec, ts("2025-05-31T23:59:59Z"), &snap);
    assert_eq!(
        plan.steps
            .iter()
            .filter(|s| matches!(s, Step::Detach { .. }))
            .count(),
        1
    );
}

#[test]
fn with_a_default_partition_detach_is_not_concurrent_and_drop_mode_drops() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.premake = 0;
    spec.retention = Some(Retention::Days(1));
    let mut snap = Snapshot {
        detached: vec![],
        partitions: vec![
            range(
                "audit_logs_2025_01",
                "2025-01-01T00:00:00Z",
                "2025-02-01T00:00:00Z",
            ),
            ExistingPartition {
                name: q("audit_logs_default"),
                bound: Bound::Default,
                detach_pending: false,
            },
        ],
        default_rows: vec![],
    };
    let p = plan(&spec, ts("2025-02-10T00:00:00Z"), &snap);
    assert!(p.steps.contains(&Step::Detach {
        name: q("audit_logs_2025_01"),
        concurrently: false
    }));
    spec.retention_mode = RetentionMode::Drop;
    snap.partitions.pop();
    let p = plan(&spec, ts("2025-02-10T00:00:00Z"), &snap);
    assert!(p.steps.contains(&Step::Drop {
        name: q("audit_logs_2025_01")
    }));
}

#[test]
fn rows_outside_the_window_are_reported_not_turned_into_partitions() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.premake = 0;
    let snap = Snapshot {
        detached: vec![],
        partitions: vec![ExistingPartition {
            name: q("audit_logs_default"),
            bound: Bound::Default,
            detach_pending: false,
        }],
        default_rows: vec![
            (ts("2024-07-01T00:00:00Z"), 5),
            (ts("2025-01-01T00:00:00Z"), 7),
            (ts("2030-01-01T00:00:00Z"), 2),
            (ts("9999-01-01T00:00:00Z"), 1),
        ],
    };
    let p = plan(&spec, ts("2025-01-15T00:00:00Z"), &snap);
    let moves: Vec<(String, i64)> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Create {
                name, default_rows, ..
            } => Some((name.name.as_str().to_string(), *default_rows)),
            _ => None,
        })
        .collect();
    // Only the period inside [start, now + premake] gets its partition; a
    // row before `start` or years ahead (one POST of rows stamped 9999 made
    // a partition per period before) is reported instead.
    assert_eq!(moves, vec![("audit_logs_2025_01".into(), 7)]);
    assert_eq!(
        p.out_of_window,
        vec![
            (ts("2024-07-01T00:00:00Z"), 5),
            (ts("2030-01-01T00:00:00Z"), 2),
            (ts("9999-01-01T00:00:00Z"), 1)
        ]
    );
    assert_eq!(p.out_of_window_rows(), 8);
}

#[test]
fn a_pretended_time_creates_but_never_destroys() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.premake = 1;
    spec.retention = Some(Retention::Months(3));
    spec.retention_mode = RetentionMode::Drop;
    let real = ts("2025-06-15T00:00:00Z");
    let mut partitions: Vec<ExistingPartition> = (1..=7)
        .map(|m| ExistingPartition {
            name: q(&format!("audit_logs_2025_{m:02}")),
            bound: Bound::Range {
                from: Some(ts(&format!("2025-{m:02}-01T00:00:00Z"))),
                to: Some(ts(&if m == 12 {
                    "2026-01-01T00:00:00Z".to_string()
                } else {
                    format!("2025-{:02}-01T00:00:00Z", m + 1)
                })),
            },
            detach_pending: false,
        })
        .collect();
    partitions.push(ExistingPartition {
        name: q("audit_logs_default"),
        bound: Bound::Default,
        detach_pending: false,
    });
    let snap = Snapshot {
        detached: vec![],
        partitions,
        default_rows: vec![],
    };
    // Three years ahead: everything that exists would be past retention then.
    let clock = Clock {
        plan: ts("2028-06-15T00:00:00Z"),
        real,
    };
    let p = plan_with(&spec, clock, &snap);
    let drops: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.destructive())
        .map(|s| s.name().name.as_str())
        .collect();
    // By the real clock (2025-06-15, cutoff 2025-03-15) only January and
    // February are past retention.
    assert_eq!(drops, ["audit_logs_2025_01", "audit_logs_2025_02"]);
    // The pretended time's drops are shown, not run: the current month and
    // those ahead among them.
    let previewed: Vec<&str> = p.previewed.iter().map(|s| s.name().name.as_str()).collect();
    assert!(previewed.contains(&"audit_logs_2025_06"), "{previewed:?}");
    assert!(previewed.contains(&"audit_logs_2025_07"), "{previewed:?}");
    assert!(!previewed.contains(&"audit_logs_2025_01"));
    // Creation follows the pretended time: partitions through 2028-07.
    assert!(p.steps.iter().any(
        |s| matches!(s, Step::Create { name, .. } if name.name.as_str() == "audit_logs_2028_07")
    ));
}

#[test]
fn retention_never_takes_the_current_period() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.retention = Some(Retention::Days(1));
    spec.retention_mode = RetentionMode::Drop;
    let snap = Snapshot {
        detached: vec![],
        partitions: vec![ExistingPartition {
            name: q("audit_logs_2025_06"),
            bound: Bound::Range {
                from: Some(ts("2025-06-01T00:00:00Z")),
                to: Some(ts("2025-07-01T00:00:00Z")),
            },
            detach_pending: false,
        }],
        default_rows: vec![],
    };
    // The 1st of July, 00:30: June's partition ended 30 minutes ago, so a
    // 1-day retention does not reach it; on the 2nd it does.
    let p = plan(&spec, ts("2025-07-01T00:30:00Z"), &snap);
    assert!(!p.steps.iter().any(|s| s.destructive()));
    let p = plan(&spec, ts("2025-07-02T00:30:00Z"), &snap);
    assert!(p.steps.iter().any(|s| s.destructive()));
}

#[test]
fn default_rows_past_retention_are_reported_not_moved() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.premake = 0;
    spec.retention = Some(Retention::Months(6));
    let snap = Snapshot {
        detached: vec![],
        partitions: vec![],
        default_rows: vec![(ts("2020-01-01T00:00:00Z"), 9)],
    };
    let p = plan(&spec, ts("2025-01-15T00:00:00Z"), &snap);
    assert_eq!(p.stale_default_rows, 9);
    assert_eq!(created(&p), vec!["audit_logs_2025_01"]);
}

#[test]
fn daily_and_weekly_intervals() {
    let mut spec = TableSpec::seed_default();
    spec.interval = Interval::Day;
    spec.name_template = Interval::Day.default_template().into();
    spec.start = NaiveDate::from_ymd_opt(2024, 2, 27).unwrap();
    spec.premake = 2;
    let p = plan(&spec, ts("2024-02-28T08:00:00Z"), &Snapshot::default());
    assert_eq!(
        created(&p),
        vec![
            "audit_logs_2024_02_27",
            "audit_logs_2024_02_28",
            "audit_logs_2024_02_29",
            "audit_logs_2024_03_01"
        ]
    );

    spec.interval = Interval::Week;
    spec.name_template = Interval::Week.default_template().into();
    spec.start = NaiveDate::from_ymd_opt(2025, 12, 24).unwrap();
    spec.premake = 1;
    let p = plan(&spec, ts("2025-12-31T08:00:00Z"), &Snapshot::default());
    // Weeks of Mon 2025-12-22, Mon 2025-12-29 (ISO 2026-W01), and one ahead.
    assert_eq!(
        created(&p),
        vec![
            "audit_logs_2025_w52",
            "audit_logs_2026_w01",
            "audit_logs_2026_w02"
        ]
    );
    match &p.steps[1] {
        Step::Create { from, to, .. } => {
            assert_eq!(*from, ts("2025-12-29T00:00:00Z"));
            assert_eq!(*to, ts("2026-01-05T00:00:00Z"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn planning_twice_over_the_result_is_empty() {
    let spec = TableSpec::seed_default();
    let now = ts("2025-12-15T00:00:00Z");
    let first = plan(&spec, now, &Snapshot::default());
    let snap = Snapshot {
        detached: vec![],
        partitions: first
            .steps
            .iter()
            .map(|s| match s {
                Step::Create { name, from, to, .. } => ExistingPartition {
                    name: name.clone(),
                    bound: Bound::Range {
                        from: Some(*from),
                        to: Some(*to),
                    },
                    detach_pending: false,
                },
                other => panic!("{other:?}"),
            })
            .collect(),
        default_rows: vec![],
    };
    assert_eq!(plan(&spec, now, &snap), Plan::default());
}

#[test]
fn minvalue_and_maxvalue_partitions_contain_everything_they_cover() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.premake = 1;
    let snap = Snapshot {
        detached: vec![],
        partitions: vec![ExistingPartition {
            name: q("everything_before_march"),
            bound: Bound::Range {
                from: None,
                to: Some(ts("2025-03-01T00:00:00Z")),
            },
            detach_pending: false,
        }],
        default_rows: vec![],
    };
    let p = plan(&spec, ts("2025-03-05T00:00:00Z"), &snap);
    assert!(p.conflicts.is_empty());
    assert_eq!(
        created(&p),
        vec!["audit_logs_2025_03", "audit_logs_2025_04"]
    );
}

#[test]
fn an_interrupted_concurrent_detach_is_finalized_first() {
    let mut spec = TableSpec::seed_default();
    spec.start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    spec.premake = 0;
    spec.retention = Some(Retention::Months(1));
    let mut jan = range(
        "audit_logs_2025_01",
        "2025-01-01T00:00:00Z",
        "2025-02-01T00:00:00Z",
    );
    jan.detach_pending = true;
    let snap = Snapshot {
        detached: vec![],
        partitions: vec![
            jan,
            range(
                "audit_logs_2025_02",
                "2025-02-01T00:00:00Z",
                "2025-03-01T00:00:00Z",
            ),
        ],
        default_rows: vec![],
    };
    let p = plan(&spec, ts("2025-04-10T00:00:00Z"), &snap);
    assert_eq!(
        p.steps[0],
        Step::FinalizeDetach {
            name: q("audit_logs_2025_01")
        }
    );
    assert_eq!(
        p.steps
            .iter()
            .filter(|s| s.name().name.as_str() == "audit_logs_2025_01")
            .count(),
        1
    );
    assert!(p.steps.contains(&Step::Detach {
        name: q("audit_logs_2025_02"),
        concurrently: true
    }));
}
