//! Recommendation rules: facts in, recommendations (with their fix) out.

use serde_json::json;

use super::{Recommendation, Severity, TableReport};
use crate::config::{Backend, TableSpec};
use crate::db::{Ident, QualifiedName};
use crate::format;
use crate::stats::QueryReport;

/// A dead-tuple share above this (with at least [`DEAD_MIN`] dead tuples)
/// asks for a vacuum.
pub const DEAD_RATIO: f64 = 0.2;
pub const DEAD_MIN: i64 = 1000;

/// A name as one shell word: strata's commands in a fix must run as printed
/// whatever the name holds (quotes, spaces, `;`).
fn shell_word(name: &QualifiedName) -> String {
    let plain = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if plain(name.schema.as_str()) && plain(name.name.as_str()) {
        return name.display_unquoted();
    }
    crate::format::shell_word(&name.to_string())
}

/// How to drop an index without stalling writers: CONCURRENTLY where the
/// server allows it (an index of one partition), else (an index of the
/// partitioned parent, which takes ACCESS EXCLUSIVE on the parent and every
/// partition) with a short lock_timeout, to be retried rather than queued.
fn drop_fix(index: &QualifiedName, on_parent: bool) -> String {
    if on_parent {
        format!(
            "SET lock_timeout = '100ms'; DROP INDEX IF EXISTS {index}; RESET lock_timeout; -- retry if the lock times out"
        )
    } else {
        format!("DROP INDEX CONCURRENTLY IF EXISTS {index};")
    }
}

pub fn recommend(
    database: &str,
    specs: &[TableSpec],
    tables: &[TableReport],
    queries: &QueryReport,
) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for (spec, t) in specs.iter().zip(tables) {
        table_rules(database, spec, t, &mut out);
    }
    if !queries.available {
        out.push(Recommendation {
            rule: "pg_stat_statements_missing",
            severity: Severity::Info,
            table: None,
            message: "pg_stat_statements is not available, so slow queries on the managed tables cannot be shown"
                .into(),
            evidence: json!({ "available": false }),
            fix: queries.hint.clone().unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.rule.cmp(b.rule)));
    out
}

fn table_rules(database: &str, spec: &TableSpec, t: &TableReport, out: &mut Vec<Recommendation>) {
    let table = t.table.clone();
    let flag = format!("--table {}", spec.name.display_unquoted());
    let mut push = |rule, severity, message: String, evidence, fix: String| {
        out.push(Recommendation {
            rule,
            severity,
            table: Some(table.clone()),
            message,
            evidence,
            fix,
        })
    };
    let s = &t.strategy;
    let wanted: Vec<String> = crate::index::wanted(spec)
        .into_iter()
        .map(|d| d.name)
        .collect();

    if !t.missing_indexes.is_empty() {
        let brin = t.missing_indexes.iter().any(|n| n.ends_with("_brin"));
        push(
            "missing_index",
            Severity::Warning,
            format!(
                "{} of strata's index set {} missing or incomplete{}",
                t.missing_indexes.len(),
                if t.missing_indexes.len() == 1 {
                    "is"
                } else {
                    "are"
                },
                if brin {
                    " (including the BRIN on the time column, which keeps time-range scans cheap)"
                } else {
                    ""
                }
            ),
            json!({ "indexes": t.missing_indexes }),
            format!("strata indexes apply {flag}"),
        );
    }
    for ix in &t.indexes {
        let Some((schema, _)) = ix.table.split_once('.') else {
            continue;
        };
        // Names from the catalog always fit; anything else gets no SQL.
        let Ok(name) = QualifiedName::new(schema, &ix.name) else {
            continue;
        };
        let on_parent = ix.table == t.table;
        let ours = wanted.contains(&ix.name);
        if !ix.valid && !ours {
            // An INVALID parent index is dropped with its parts; a partition's
            // own index CONCURRENTLY.
            let fix = if on_parent {
                drop_fix(&name, true)
            } else {
                ix.invalid
                    .iter()
                    .filter_map(|i| QualifiedName::new(schema, i).ok())
                    .map(|q| drop_fix(&q, false))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            push(
                "invalid_index",
                Severity::Warning,
                format!(
                    "index {} is INVALID (an interrupted CREATE/REINDEX CONCURRENTLY): it costs every write and serves no read",
                    ix.name
                ),
                json!({ "index": ix.name, "invalid": ix.invalid, "bytes": ix.bytes }),
                fix,
            );
            continue;
        }
        if ix.backs_constraint || ix.primary {
            // Dropping it would drop a constraint: never proposed.
            continue;
        }
        if let Some(keep) = &ix.duplicate_of {
            push(
                "duplicate_index",
                Severity::Warning,
                format!(
                    "index {} duplicates {keep} (same columns, order, operator classes and predicate); {} to save",
                    ix.name, ix.size_pretty
                ),
                json!({ "index": ix.name, "duplicate_of": keep, "bytes": ix.bytes, "definition": ix.definition }),
                drop_fix(&name, on_parent),
            );
            continue;
        }
        if ix.unused && !ours && ix.valid {
            push(
                "unused_index",
                Severity::Info,
                format!(
                    "index {} has not been used since statistics were reset; it costs {} and slows every insert",
                    ix.name, ix.size_pretty
                ),
                json!({ "index": ix.name, "scans": ix.scans, "bytes": ix.bytes, "definition": ix.definition }),
                drop_fix(&name, on_parent),
            );
        }
        if !ix.bloated.is_empty() {
            let waste: i64 = ix.bloated.iter().map(|b| b.waste_bytes).sum();
            let fix: Vec<String> = ix
                .bloated
                .iter()
                .filter_map(|b| {
                    let schema = b.table.split_once('.')?.0;
                    QualifiedName::new(schema, &b.index).ok()
                })
                .map(|q| format!("REINDEX INDEX CONCURRENTLY {q};"))
                .collect();
            push(
                "bloated_index",
                Severity::Warning,
                format!(
                    "index {} wastes about {} in {} partition(s)",
                    ix.name,
                    format::bytes(waste.max(0) as u64),
                    ix.bloated.len()
                ),
                json!({ "index": ix.name, "bloated": ix.bloated }),
                fix.join("\n"),
            );
        }
    }
    if s.outside_window_rows > 0 {
        push(
            "default_rows_outside_window",
            Severity::Warning,
            format!(
                "{} rows in the default partition are stamped outside [{}, {}) (start to now + premake): \
                 maintain makes no partitions for them, so a stray far-future or far-past time cannot create \
                 hundreds of partitions; they stay in the default partition until corrected",
                format::count(s.outside_window_rows as u64),
                s.window.0.format("%Y-%m-%d"),
                s.window.1.format("%Y-%m-%d")
            ),
            json!({ "rows": s.outside_window_rows, "from": s.window.0, "to": s.window.1 }),
            format!(
                "SELECT * FROM {parent} WHERE {col} < '{from}' OR {col} >= '{to}'; -- then correct their {col}, delete them, or set an earlier start",
                parent = spec.name,
                col = spec.time_column,
                from = s.window.0.format("%Y-%m-%d"),
                to = s.window.1.format("%Y-%m-%d"),
            ),
        );
    }
    let in_window = s.default_rows - s.outside_window_rows;
    if in_window > 0 {
        push(
            "default_partition_rows",
            Severity::Warning,
            format!(
                "{} rows sit in the default partition, outside any range partition: they are scanned by every \
                 query and block creating the partitions they belong to",
                format::count(in_window as u64)
            ),
            json!({ "rows": in_window }),
            format!("strata maintain {flag}"),
        );
    }
    if spec.backend == Backend::Native
        && (!s.current_period_exists || s.partitions_ahead < s.premake as usize)
    {
        push(
            "missing_future_partitions",
            if s.current_period_exists {
                Severity::Warning
            } else {
                Severity::Critical
            },
            if s.current_period_exists {
                format!(
                    "only {} of the {} periods after the current one have a partition (premake)",
                    s.partitions_ahead, s.premake
                )
            } else {
                "there is no partition for the current period: new rows go to the default partition (or fail)"
                    .to_string()
            },
            json!({ "partitions_ahead": s.partitions_ahead, "premake": s.premake,
                    "current_period_exists": s.current_period_exists }),
            format!("strata maintain {flag}"),
        );
    }
    if let Some(f) = &t.tiers.seals {
        let v = f.last_verify.as_ref();
        if v.is_some_and(|v| v.intact == Some(false)) {
            push(
                "seal_verify_failed",
                Severity::Critical,
                "the last seal verification found sealed rows, seals or their chain changed".into(),
                json!({ "last_verify": v }),
                format!("strata seal verify {flag}"),
            );
        }
        if f.seals > 0 && !f.unsealed_closed.is_empty() {
            push(
                "unsealed_periods",
                Severity::Warning,
                format!(
                    "{} closed period(s) are not sealed yet: their rows can still be changed unnoticed",
                    f.unsealed_closed.len()
                ),
                json!({ "unsealed_closed": f.unsealed_closed }),
                format!("strata seal run {flag}"),
            );
        }
    }
    if let Some(a) = &t.tiers.archive {
        if a.failed_verifies > 0 {
            push(
                "archive_verify_failed",
                Severity::Critical,
                format!(
                    "{} archived period(s) failed verification: files in the store differ from what was archived",
                    a.failed_verifies
                ),
                json!({ "failed_verifies": a.failed_verifies }),
                format!("strata archive verify {flag}"),
            );
        }
        if a.periods_due > 0 {
            push(
                "archive_due",
                Severity::Warning,
                format!(
                    "{} partition(s) are past archive_after and not archived yet",
                    a.periods_due
                ),
                json!({ "periods_due": a.periods_due, "last_run": a.last_run }),
                format!("strata archive run {flag}"),
            );
        }
    }
    if !s.low_fillfactor.is_empty() {
        push(
            "fillfactor",
            Severity::Warning,
            format!(
                "{} partition(s) have a fillfactor below 100; audit rows are never updated, so the free space \
                 reserved on every page is wasted (new pages only: existing ones keep their layout)",
                s.low_fillfactor.len()
            ),
            json!({ "partitions": s.low_fillfactor }),
            s.low_fillfactor_relations
                .iter()
                .map(|p| format!("ALTER TABLE {p} RESET (fillfactor);"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    if !s.pruning_ok {
        let fix = if s.enable_partition_pruning {
            "check the query's time predicate; see `strata report --json` .tables[].strategy"
                .to_string()
        } else {
            match Ident::new(database) {
                // SET on beats postgresql.conf and ALTER SYSTEM for this
                // database; a role-level setting still wins (hence the note).
                Ok(db) => format!(
                    "ALTER DATABASE {db} SET enable_partition_pruning = on; -- and remove any ALTER ROLE … SET \
                     enable_partition_pruning = off"
                ),
                Err(_) => String::new(),
            }
        };
        push(
            "partition_pruning",
            Severity::Critical,
            format!(
                "a one-period query scans {} partitions instead of {}: partitioning is not pruning{}",
                s.partitions_scanned,
                s.partitions_expected,
                if s.enable_partition_pruning { "" } else { " (enable_partition_pruning is off)" }
            ),
            json!({ "query": s.pruning_query, "scanned": s.partitions_scanned,
                    "expected": s.partitions_expected, "enable_partition_pruning": s.enable_partition_pruning }),
            fix,
        );
    }
    if s.parent_analyzed_at.is_none() && t.partitions.estimated_rows > 0 {
        push(
            "parent_statistics",
            Severity::Info,
            "the partitioned table itself has never been analyzed (autovacuum never does it): estimates for \
             queries spanning partitions are guesses"
                .into(),
            json!({ "parent_analyzed_at": null, "estimated_rows": t.partitions.estimated_rows }),
            format!("strata analyze {}", spec.name.display_unquoted()),
        );
    }
    let dead: Vec<(&str, i64, &QualifiedName)> = t
        .partitions
        .partitions
        .iter()
        .filter(|p| {
            p.dead_tuples >= DEAD_MIN
                && p.dead_tuples as f64 > DEAD_RATIO * (p.estimated_rows + p.dead_tuples) as f64
        })
        .map(|p| (p.name.as_str(), p.dead_tuples, &p.relation))
        .collect();
    if !dead.is_empty() {
        push(
            "dead_tuples",
            Severity::Warning,
            format!(
                "{} partition(s) are more than {:.0}% dead tuples",
                dead.len(),
                DEAD_RATIO * 100.0
            ),
            json!({ "partitions": dead.iter().map(|(n, d, _)| json!({"partition": n, "dead_tuples": d})).collect::<Vec<_>>() }),
            dead.iter()
                .map(|(_, _, q)| format!("strata vacuum {}", shell_word(q)))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}
