//! Pure planning of the index set: what exists (on the parent and on each
//! partition) against what is wanted, into steps.

use serde::Serialize;

use super::set::{child_name, IndexDef};
use crate::db::QualifiedName;

/// An index on the parent (partitioned) table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParentIndex {
    pub name: String,
    pub method: String,
    pub columns: Vec<String>,
    pub valid: bool,
    pub opclasses: Vec<String>,
}

/// An index on one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChildIndex {
    pub name: String,
    pub valid: bool,
    /// The parent index it is attached to, if any.
    pub attached_to: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionIndexes {
    pub partition: QualifiedName,
    pub indexes: Vec<ChildIndex>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IndexSnapshot {
    pub columns: Vec<String>,
    pub parent: Vec<ParentIndex>,
    pub partitions: Vec<PartitionIndexes>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum IndexStep {
    /// `CREATE INDEX … ON ONLY parent`: instant, invalid until every
    /// partition has its index attached.
    CreateOnParent { def: IndexDef },
    /// An INVALID index left by an interrupted `CREATE INDEX CONCURRENTLY`.
    DropInvalid { index: QualifiedName },
    /// `CREATE INDEX CONCURRENTLY` on one partition.
    Build {
        partition: QualifiedName,
        index: String,
        def: IndexDef,
    },
    /// `ALTER INDEX parent_index ATTACH PARTITION index`.
    Attach {
        parent_index: QualifiedName,
        index: QualifiedName,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexConflict {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IndexPlan {
    pub steps: Vec<IndexStep>,
    pub conflicts: Vec<IndexConflict>,
    /// Wanted indexes skipped because the table lacks a column.
    pub skipped: Vec<String>,
}

/// Column names of a key list as `wanted` writes it (`"user_id", "created_at" DESC`).
fn key_columns(def: &IndexDef) -> Vec<String> {
    def.catalog_columns()
}

pub fn plan(table: &QualifiedName, wanted: &[IndexDef], snap: &IndexSnapshot) -> IndexPlan {
    let mut out = IndexPlan::default();
    for def in wanted {
        if def.columns.iter().any(|c| !snap.columns.contains(c)) {
            out.skipped.push(def.name.clone());
            continue;
        }
        match snap.parent.iter().find(|p| p.name == def.name) {
            Some(p)
                if def.opclass.is_some()
                    && p.method == def.method.keyword()
                    && p.opclasses.first() != def.opclass.as_ref() =>
            {
                out.conflicts.push(IndexConflict {
                    name: def.name.clone(),
                    reason: format!(
                        "uses operator class {} but the configuration asks for {}; rebuild it (drop it and run \
                         `strata indexes apply`) or set details_opclass = \"{}\"",
                        p.opclasses.first().map(String::as_str).unwrap_or("?"),
                        def.opclass.as_deref().unwrap_or("?"),
                        p.opclasses.first().map(String::as_str).unwrap_or("?"),
                    ),
                });
                continue;
            }
            Some(p) if p.method != def.method.keyword() || p.columns != key_columns(def) => {
                out.conflicts.push(IndexConflict {
                    name: def.name.clone(),
                    reason: format!(
                        "exists as {} ({}) but strata's set wants {} ({}); drop or rename it to let strata build its own",
                        p.method,
                        p.columns.join(", "),
                        def.method.keyword(),
                        def.columns.join(", ")
                    ),
                });
                continue;
            }
            Some(_) => {}
            None => out
                .steps
                .push(IndexStep::CreateOnParent { def: def.clone() }),
        }
        let parent_index = table
            .sibling(&def.name)
            .expect("index names are checked by wanted()");
        for part in &snap.partitions {
            if part
                .indexes
                .iter()
                .any(|i| i.attached_to.as_deref() == Some(def.name.as_str()))
            {
                continue;
            }
            let child = child_name(part.partition.name.as_str(), &def.name, table.name.as_str());
            let child_q = part
                .partition
                .sibling(&child)
                .expect("child_name fits 63 bytes");
            match part.indexes.iter().find(|i| i.name == child) {
                Some(i) if i.valid => {}
                Some(_) => {
                    out.steps.push(IndexStep::DropInvalid {
                        index: child_q.clone(),
                    });
                    out.steps.push(IndexStep::Build {
                        partition: part.partition.clone(),
                        index: child.clone(),
                        def: def.clone(),
                    });
                }
                None => out.steps.push(IndexStep::Build {
                    partition: part.partition.clone(),
                    index: child.clone(),
                    def: def.clone(),
                }),
            }
            out.steps.push(IndexStep::Attach {
                parent_index: parent_index.clone(),
                index: child_q,
            });
        }
    }
    // Invalid partition indexes that are not strata's are reported, not dropped.
    for part in &snap.partitions {
        for i in part.indexes.iter().filter(|i| !i.valid) {
            let ours = wanted.iter().any(|d| {
                child_name(part.partition.name.as_str(), &d.name, table.name.as_str()) == i.name
            });
            if !ours {
                out.conflicts.push(IndexConflict {
                    name: format!("{}.{}", part.partition.schema.as_str(), i.name),
                    reason: "is INVALID (an interrupted CREATE INDEX CONCURRENTLY?) and not one of strata's; \
                             drop it with DROP INDEX CONCURRENTLY or rebuild it with REINDEX INDEX CONCURRENTLY"
                        .into(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::set::wanted;
    use super::*;
    use crate::config::TableSpec;

    fn q(n: &str) -> QualifiedName {
        QualifiedName::new("public", n).unwrap()
    }

    fn cols() -> Vec<String> {
        [
            "id",
            "user_id",
            "action",
            "resource_type",
            "resource_id",
            "details",
            "ip_address",
            "user_agent",
            "status",
            "severity",
            "created_at",
            "search_vector",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn complete(spec: &TableSpec, parts: &[&str]) -> IndexSnapshot {
        let set = wanted(spec);
        IndexSnapshot {
            columns: cols(),
            parent: set
                .iter()
                .map(|d| ParentIndex {
                    name: d.name.clone(),
                    method: d.method.keyword().into(),
                    columns: d.catalog_columns(),
                    valid: true,
                    opclasses: d.opclass.iter().cloned().collect(),
                })
                .collect(),
            partitions: parts
                .iter()
                .map(|p| PartitionIndexes {
                    partition: q(p),
                    indexes: set
                        .iter()
                        .map(|d| ChildIndex {
                            name: child_name(p, &d.name, "audit_logs"),
                            valid: true,
                            attached_to: Some(d.name.clone()),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_complete_set_plans_nothing() {
        let spec = TableSpec::seed_default();
        let p = plan(
            &spec.name,
            &wanted(&spec),
            &complete(&spec, &["audit_logs_2025_01", "audit_logs_2025_02"]),
        );
        assert_eq!(p, IndexPlan::default());
    }

    #[test]
    fn a_missing_index_is_created_on_only_the_parent_then_built_per_partition() {
        let spec = TableSpec::seed_default();
        let mut snap = complete(&spec, &["audit_logs_2025_01", "audit_logs_2025_02"]);
        snap.parent
            .retain(|p| p.name != "idx_audit_logs_user_id_created_at");
        for part in &mut snap.partitions {
            part.indexes
                .retain(|i| i.attached_to.as_deref() != Some("idx_audit_logs_user_id_created_at"));
        }
        let p = plan(&spec.name, &wanted(&spec), &snap);
        assert_eq!(p.steps.len(), 1 + 2 * 2);
        assert!(
            matches!(&p.steps[0], IndexStep::CreateOnParent { def } if def.name == "idx_audit_logs_user_id_created_at")
        );
        assert!(
            matches!(&p.steps[1], IndexStep::Build { index, .. } if index == "audit_logs_2025_01_user_id_created_at")
        );
        assert!(
            matches!(&p.steps[2], IndexStep::Attach { parent_index, index }
            if parent_index.name.as_str() == "idx_audit_logs_user_id_created_at" && index.name.as_str() == "audit_logs_2025_01_user_id_created_at")
        );
    }

    #[test]
    fn an_invalid_leftover_is_dropped_and_rebuilt_and_a_valid_unattached_one_attached() {
        let spec = TableSpec::seed_default();
        let mut snap = complete(&spec, &["audit_logs_2025_01", "audit_logs_2025_02"]);
        for (k, part) in snap.partitions.iter_mut().enumerate() {
            for i in part
                .indexes
                .iter_mut()
                .filter(|i| i.attached_to.as_deref() == Some("idx_audit_logs_action"))
            {
                i.attached_to = None;
                i.valid = k == 1;
            }
        }
        let p = plan(&spec.name, &wanted(&spec), &snap);
        let kinds: Vec<&str> = p
            .steps
            .iter()
            .map(|s| match s {
                IndexStep::CreateOnParent { .. } => "create",
                IndexStep::DropInvalid { .. } => "drop",
                IndexStep::Build { .. } => "build",
                IndexStep::Attach { .. } => "attach",
            })
            .collect();
        assert_eq!(kinds, vec!["drop", "build", "attach", "attach"]);
    }

    #[test]
    fn a_different_definition_is_a_conflict_and_foreign_invalid_indexes_are_reported() {
        let spec = TableSpec::seed_default();
        let mut snap = complete(&spec, &["audit_logs_2025_01"]);
        snap.parent[1].method = "hash".into();
        snap.partitions[0].indexes.push(ChildIndex {
            name: "somebody_elses".into(),
            valid: false,
            attached_to: None,
        });
        let p = plan(&spec.name, &wanted(&spec), &snap);
        assert!(p.steps.is_empty());
        assert_eq!(p.conflicts.len(), 2);
        assert!(p.conflicts[0].reason.contains("hash"));
        assert!(p.conflicts[1].reason.contains("INVALID"));
    }

    #[test]
    fn indexes_on_missing_columns_are_skipped() {
        let spec = TableSpec::seed_default();
        let mut snap = complete(&spec, &[]);
        snap.columns.retain(|c| c != "search_vector");
        snap.parent.retain(|p| {
            p.name != "idx_audit_logs_search_vector_gin"
                && p.name != "idx_audit_logs_search_words_gin"
        });
        let p = plan(&spec.name, &wanted(&spec), &snap);
        assert_eq!(
            p.skipped,
            vec![
                "idx_audit_logs_search_vector_gin",
                "idx_audit_logs_search_words_gin"
            ]
        );
        assert!(p.steps.is_empty());
    }
}

#[cfg(test)]
mod opclass_tests {
    use super::super::set::wanted;
    use super::*;
    use crate::config::{GinOpclass, TableSpec};

    #[test]
    fn an_operator_class_mismatch_is_a_conflict() {
        let mut spec = TableSpec::seed_default();
        let snap = IndexSnapshot {
            columns: vec!["details".into()],
            parent: vec![ParentIndex {
                name: "idx_audit_logs_details_gin".into(),
                method: "gin".into(),
                columns: vec!["details".into()],
                valid: true,
                opclasses: vec!["jsonb_ops".into()],
            }],
            partitions: vec![],
        };
        let p = plan(&spec.name, &wanted(&spec), &snap);
        assert_eq!(p.conflicts.len(), 1);
        assert!(
            p.conflicts[0].reason.contains("jsonb_ops"),
            "{:?}",
            p.conflicts
        );
        spec.details_opclass = GinOpclass::JsonbOps;
        let p = plan(&spec.name, &wanted(&spec), &snap);
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    }
}
