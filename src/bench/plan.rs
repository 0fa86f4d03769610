//! The shape of a plan from `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`: what
//! was scanned, through which index, how many partitions, how many buffers.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PlanShape {
    /// Scan node types, e.g. `Parallel Seq Scan`, `Bitmap Index Scan`.
    pub scans: Vec<String>,
    /// Indexes used; partition indexes are named by their parent index.
    pub indexes: Vec<String>,
    /// Partitions in the plan after plan-time pruning (`None` on a plain table).
    pub partitions_planned: Option<usize>,
    /// Partitions the executor actually read (a LIMIT can stop early).
    pub partitions_scanned: Option<usize>,
    pub partitions_total: Option<usize>,
    pub shared_hit: i64,
    pub shared_read: i64,
    pub planning_ms: f64,
    pub execution_ms: f64,
    pub jit: bool,
}

/// What the walk needs to know about the layout.
pub struct Names<'a> {
    /// Partitions of the table, when it is partitioned.
    pub partitions: Option<&'a [String]>,
    pub parent_index: &'a HashMap<String, String>,
}

#[derive(Default)]
struct Walk {
    scans: BTreeSet<String>,
    indexes: BTreeSet<String>,
    planned: BTreeSet<String>,
    scanned: BTreeSet<String>,
}

fn walk(node: &Value, names: &Names, out: &mut Walk) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str();
    let index = node["Index Name"].as_str();
    if relation.is_some() || index.is_some() {
        let parallel = if node["Parallel Aware"].as_bool() == Some(true) {
            "Parallel "
        } else {
            ""
        };
        out.scans.insert(format!("{parallel}{kind}"));
    }
    if let Some(i) = index {
        let name = names.parent_index.get(i).map_or(i, |p| p.as_str());
        out.indexes.insert(name.to_string());
    }
    if let (Some(r), Some(parts)) = (relation, names.partitions) {
        if parts.iter().any(|p| p == r) {
            out.planned.insert(r.to_string());
            if node["Actual Loops"].as_f64().unwrap_or(0.0) > 0.0 {
                out.scanned.insert(r.to_string());
            }
        }
    }
    if let Some(children) = node["Plans"].as_array() {
        for c in children {
            walk(c, names, out);
        }
    }
}

/// Reads one `EXPLAIN … FORMAT JSON` result (an array of one object).
pub fn shape(explain: &Value, names: &Names) -> PlanShape {
    let root = explain.get(0).unwrap_or(explain);
    let plan = &root["Plan"];
    let mut w = Walk::default();
    walk(plan, names, &mut w);
    let partitioned = names.partitions.is_some();
    PlanShape {
        scans: w.scans.into_iter().collect(),
        indexes: w.indexes.into_iter().collect(),
        partitions_planned: partitioned.then_some(w.planned.len()),
        partitions_scanned: partitioned.then_some(w.scanned.len()),
        partitions_total: names.partitions.map(|p| p.len()),
        shared_hit: plan["Shared Hit Blocks"].as_i64().unwrap_or(0),
        shared_read: plan["Shared Read Blocks"].as_i64().unwrap_or(0),
        planning_ms: root["Planning Time"].as_f64().unwrap_or(0.0),
        execution_ms: root["Execution Time"].as_f64().unwrap_or(0.0),
        jit: root.get("JIT").is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partitions_indexes_and_buffers() {
        let explain = json!([{
            "Plan": {
                "Node Type": "Limit", "Shared Hit Blocks": 40, "Shared Read Blocks": 2, "Actual Loops": 1,
                "Plans": [{
                    "Node Type": "Append", "Actual Loops": 1,
                    "Plans": [
                        {"Node Type": "Index Scan", "Parallel Aware": false, "Relation Name": "t_2025_12",
                         "Index Name": "t_2025_12_user_idx", "Actual Loops": 1},
                        {"Node Type": "Index Scan", "Parallel Aware": false, "Relation Name": "t_2025_11",
                         "Index Name": "t_2025_11_user_idx", "Actual Loops": 0}
                    ]
                }]
            },
            "Planning Time": 0.5,
            "Execution Time": 1.25
        }]);
        let parts = vec![
            "t_2025_11".to_string(),
            "t_2025_12".to_string(),
            "t_2026_01".to_string(),
        ];
        let parents: HashMap<String, String> = [
            ("t_2025_12_user_idx".to_string(), "idx_t_user".to_string()),
            ("t_2025_11_user_idx".to_string(), "idx_t_user".to_string()),
        ]
        .into();
        let s = shape(
            &explain,
            &Names {
                partitions: Some(&parts),
                parent_index: &parents,
            },
        );
        assert_eq!(s.scans, vec!["Index Scan"]);
        assert_eq!(s.indexes, vec!["idx_t_user"]);
        assert_eq!(s.partitions_planned, Some(2));
        assert_eq!(s.partitions_scanned, Some(1));
        assert_eq!(s.partitions_total, Some(3));
        assert_eq!((s.shared_hit, s.shared_read), (40, 2));
        assert_eq!(s.execution_ms, 1.25);
        assert!(!s.jit);
    }

    #[test]
    fn a_plain_table_has_no_partition_counts() {
        let explain = json!([{"Plan": {"Node Type": "Seq Scan", "Parallel Aware": true,
                                       "Relation Name": "t", "Actual Loops": 3}, "JIT": {}}]);
        let none = HashMap::new();
        let s = shape(
            &explain,
            &Names {
                partitions: None,
                parent_index: &none,
            },
        );
        assert_eq!(s.scans, vec!["Parallel Seq Scan"]);
        assert_eq!(s.partitions_total, None);
        assert!(s.jit);
    }
}
