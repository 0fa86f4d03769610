//! `strata report` recommendation rules, each built for real: the condition
//! is created, the recommendation appears with its fix, the fix is applied,
//! and the recommendation is gone. Plus `stats` and the report's JSON shape.

mod common;

use common::{config_file, require_extension, seeded, stderr, strata, wait_until, TestDb};
use serde_json::Value;

fn report(db: &TestDb) -> Value {
    let out = strata(db, &["--json", "report"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

fn recs(v: &Value, rule: &str) -> Vec<Value> {
    v["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rule"] == rule)
        .cloned()
        .collect()
}

/// The one recommendation of `rule`, and its fix.
fn only(v: &Value, rule: &str) -> (Value, String) {
    let found = recs(v, rule);
    assert_eq!(found.len(), 1, "{rule}: {:#}", v["recommendations"]);
    let fix = found[0]["fix"].as_str().unwrap().to_string();
    assert!(!fix.is_empty(), "{rule} has a fix");
    (found[0].clone(), fix)
}

/// Applies a fix: `strata …` lines run the binary, other lines are SQL.
async fn apply_fix(db: &TestDb, fix: &str) {
    let c = db.client().await;
    for line in fix.lines() {
        if let Some(args) = line.strip_prefix("strata ") {
            let args: Vec<&str> = args.split_whitespace().collect();
            let out = strata(db, &args);
            assert!(out.status.success(), "{line}: {}", stderr(&out));
        } else {
            let sql = line.split(" -- ").next().unwrap();
            c.batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}

/// A seeded table maintained as of today, so only the condition under test
/// produces recommendations of its rule.
async fn current_db(rows: u64) -> TestDb {
    let db = seeded(rows).await;
    let out = strata(&db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    db
}

#[tokio::test]
async fn unused_and_duplicate_indexes_are_found_and_dropped() {
    let db = current_db(500).await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE INDEX extra_status ON audit_logs (status);
         CREATE INDEX dup_user ON audit_logs (user_id);
         CREATE INDEX other_order ON audit_logs (user_id, created_at);",
    )
    .await
    .unwrap();
    let v = report(&db);
    let unused: Vec<Value> = recs(&v, "unused_index");
    assert!(
        unused
            .iter()
            .any(|r| r["evidence"]["index"] == "extra_status"),
        "{unused:?}"
    );
    assert!(
        !unused.iter().any(|r| r["evidence"]["index"]
            .as_str()
            .unwrap()
            .starts_with("idx_audit_logs")),
        "strata's own set is never proposed for dropping"
    );
    // (user_id, created_at) serves other orderings than strata's
    // (user_id, created_at DESC): not a duplicate.
    let (dup, fix) = only(&v, "duplicate_index");
    assert_eq!(dup["evidence"]["index"], "dup_user");
    assert_eq!(dup["evidence"]["duplicate_of"], "idx_audit_logs_user_id");
    apply_fix(&db, &fix).await;
    c.batch_execute("DROP INDEX other_order").await.unwrap();
    let fix = unused
        .iter()
        .find(|r| r["evidence"]["index"] == "extra_status")
        .unwrap()["fix"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        fix.contains("DROP INDEX IF EXISTS \"public\".\"extra_status\"")
            && fix.contains("lock_timeout"),
        "a parent index is dropped under a short lock_timeout: {fix}"
    );
    apply_fix(&db, &fix).await;
    let v = report(&db);
    assert!(recs(&v, "duplicate_index").is_empty());
    assert!(!recs(&v, "unused_index")
        .iter()
        .any(|r| r["evidence"]["index"] == "extra_status"));
    // A used index is not "unused".
    c.batch_execute("CREATE INDEX used_status ON audit_logs (status)")
        .await
        .unwrap();
    c.batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .await
        .unwrap();
    c.query("SELECT id FROM audit_logs WHERE status = 'failure'", &[])
        .await
        .unwrap();
    c.batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    drop(c);
    let w = db.client().await;
    wait_until(
        &w,
        "SELECT coalesce(sum(idx_scan), 0) > 0 FROM pg_stat_user_indexes WHERE indexrelname LIKE '%status%'",
        "the index scan is counted",
    )
    .await;
    let v = report(&db);
    assert!(!recs(&v, "unused_index")
        .iter()
        .any(|r| r["evidence"]["index"] == "used_status"));
}

#[tokio::test]
async fn an_invalid_index_is_found_and_dropped() {
    let db = current_db(500).await;
    let c = db.client().await;
    // A unique index over duplicate values fails after its catalog entry
    // exists: CONCURRENTLY leaves it INVALID.
    let e = c
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY one_action ON audit_logs_2025_03 (action)")
        .await;
    assert!(e.is_err());
    let v = report(&db);
    let (rec, fix) = only(&v, "invalid_index");
    assert_eq!(rec["evidence"]["index"], "one_action");
    assert_eq!(
        fix,
        "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"one_action\";"
    );
    apply_fix(&db, &fix).await;
    assert!(recs(&report(&db), "invalid_index").is_empty());
}

#[tokio::test]
async fn rows_in_the_default_partition_are_moved_by_the_fix() {
    let db = current_db(200).await;
    let c = db.client().await;
    // A month inside the window whose partition is gone: its row lands in
    // the default partition, and `maintain` gives it its partition back.
    c.batch_execute(
        "DO $$ DECLARE p text := 'audit_logs_' || to_char((now() + interval '3 months') AT TIME ZONE 'UTC', 'YYYY_MM');
         BEGIN EXECUTE format('DROP TABLE public.%I', p); END $$;
         INSERT INTO audit_logs (user_id, action, created_at) VALUES (1, 'x', now() + interval '3 months')",
    )
    .await
    .unwrap();
    let v = report(&db);
    let (rec, fix) = only(&v, "default_partition_rows");
    assert_eq!(rec["evidence"]["rows"], 1);
    assert_eq!(fix, "strata maintain --table public.audit_logs");
    assert!(recs(&v, "default_rows_outside_window").is_empty());
    apply_fix(&db, &fix).await;
    assert!(recs(&report(&db), "default_partition_rows").is_empty());
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM audit_logs_default", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_default, 0, "the row is in its own partition again");
}

#[tokio::test]
async fn rows_outside_the_window_are_shown_not_partitioned() {
    let db = current_db(200).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action, created_at) VALUES (1, 'x', '2031-05-05'), (1, 'y', '9999-01-01')",
    )
    .await
    .unwrap();
    let v = report(&db);
    let (rec, fix) = only(&v, "default_rows_outside_window");
    assert_eq!(rec["evidence"]["rows"], 2);
    assert!(
        recs(&v, "default_partition_rows").is_empty(),
        "maintain would not fix these"
    );
    // The fix is a SELECT that shows exactly those rows.
    let select = fix.split(';').next().unwrap();
    let n = c.query(select, &[]).await.unwrap().len();
    assert_eq!(n, 2, "{select}");
}

#[tokio::test]
async fn missing_future_partitions_are_critical_until_maintained() {
    // Today's partition and those ahead are gone.
    let db = current_db(100).await;
    db.client()
        .await
        .batch_execute(
            "DO $$ DECLARE r record; BEGIN
               FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                         WHERE i.inhparent = 'audit_logs'::regclass AND c.relname <> 'audit_logs_default'
                           AND c.relname >= 'audit_logs_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')
               LOOP EXECUTE format('DROP TABLE %I', r.relname); END LOOP;
             END $$",
        )
        .await
        .unwrap();
    let v = report(&db);
    let (rec, fix) = only(&v, "missing_future_partitions");
    assert_eq!(rec["severity"], "critical");
    assert_eq!(rec["evidence"]["current_period_exists"], false);
    apply_fix(&db, &fix).await;
    let v = report(&db);
    assert!(recs(&v, "missing_future_partitions").is_empty());
    assert_eq!(
        v["tables"][0]["strategy"]["partitions_ahead"], 6,
        "the premake 6 periods after the current month"
    );
}

#[tokio::test]
async fn the_seeds_fillfactor_70_is_flagged_and_reset() {
    let db = current_db(100).await;
    let c = db.client().await;
    c.batch_execute(
        "ALTER TABLE audit_logs_2025_03 SET (fillfactor = 70); ALTER TABLE audit_logs_2025_04 SET (fillfactor = 70)",
    )
    .await
    .unwrap();
    let v = report(&db);
    let (rec, fix) = only(&v, "fillfactor");
    assert_eq!(rec["evidence"]["partitions"].as_array().unwrap().len(), 2);
    assert!(
        fix.contains("ALTER TABLE \"public\".\"audit_logs_2025_03\" RESET (fillfactor);"),
        "{fix}"
    );
    apply_fix(&db, &fix).await;
    assert!(recs(&report(&db), "fillfactor").is_empty());
}

#[tokio::test]
async fn a_missing_brin_is_rebuilt_by_indexes_apply() {
    let db = current_db(300).await;
    db.client()
        .await
        .batch_execute("DROP INDEX idx_audit_logs_created_at_brin")
        .await
        .unwrap();
    let v = report(&db);
    let (rec, fix) = only(&v, "missing_index");
    assert!(rec["message"].as_str().unwrap().contains("BRIN"), "{rec}");
    assert_eq!(fix, "strata indexes apply --table public.audit_logs");
    apply_fix(&db, &fix).await;
    assert!(recs(&report(&db), "missing_index").is_empty());
}

#[tokio::test]
async fn disabled_partition_pruning_is_critical_and_reset() {
    let db = current_db(300).await;
    let c = db.client().await;
    let name = db.name.clone();
    c.batch_execute(&format!(
        "ALTER DATABASE \"{name}\" SET enable_partition_pruning = off"
    ))
    .await
    .unwrap();
    let v = report(&db);
    let (rec, fix) = only(&v, "partition_pruning");
    assert_eq!(rec["severity"], "critical");
    assert!(rec["evidence"]["scanned"].as_i64().unwrap() > 1, "{rec}");
    apply_fix(&db, &fix).await;
    let v = report(&db);
    assert!(recs(&v, "partition_pruning").is_empty());
    assert_eq!(v["tables"][0]["strategy"]["partitions_scanned"], 1);
}

#[tokio::test]
async fn the_parent_is_analyzed_by_the_fix() {
    let db = current_db(300).await;
    // `maintain` analyzes a never-analyzed parent itself; forget that it did.
    db.client()
        .await
        .batch_execute(
            "SELECT pg_stat_reset_single_table_counters('public.audit_logs'::regclass); SELECT pg_stat_force_next_flush()",
        )
        .await
        .unwrap();
    let v = report(&db);
    let (_, fix) = only(&v, "parent_statistics");
    assert_eq!(fix, "strata analyze public.audit_logs");
    apply_fix(&db, &fix).await;
    assert!(recs(&report(&db), "parent_statistics").is_empty());
}

#[tokio::test]
async fn dead_tuples_ask_for_a_vacuum_of_that_partition() {
    let db = current_db(12_000).await;
    let c = db.client().await;
    c.batch_execute(
        "DELETE FROM audit_logs WHERE created_at >= '2025-03-01' AND created_at < '2025-04-01';
         SELECT pg_stat_force_next_flush();",
    )
    .await
    .unwrap();
    drop(c);
    let w = db.client().await;
    wait_until(
        &w,
        "SELECT n_dead_tup >= 1000 FROM pg_stat_user_tables WHERE relname = 'audit_logs_2025_03'",
        "the deletes are counted",
    )
    .await;
    let v = report(&db);
    let (rec, fix) = only(&v, "dead_tuples");
    assert_eq!(
        rec["evidence"]["partitions"][0]["partition"],
        "public.audit_logs_2025_03"
    );
    assert_eq!(fix, "strata vacuum public.audit_logs_2025_03");
    apply_fix(&db, &fix).await;
    assert!(recs(&report(&db), "dead_tuples").is_empty());
}

#[tokio::test]
async fn a_bloated_btree_is_flagged_and_reindexed_but_a_fresh_one_is_not() {
    let db = TestDb::migrated().await;
    let out = strata(&db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = strata(
        &db,
        &[
            "load",
            "--rows",
            "100000",
            "--from",
            "2025-03-01",
            "--to",
            "2025-04-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = strata(&db, &["vacuum", "--analyze", "audit_logs_2025_03"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        recs(&report(&db), "bloated_index").is_empty(),
        "freshly built indexes are not bloated"
    );
    db.client()
        .await
        .batch_execute("DELETE FROM audit_logs WHERE id % 10 <> 0")
        .await
        .unwrap();
    let out = strata(&db, &["vacuum", "--analyze", "audit_logs_2025_03"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = report(&db);
    let found = recs(&v, "bloated_index");
    assert!(!found.is_empty(), "{:#}", v["recommendations"]);
    // Column widths from the partition's own statistics above; once the
    // parent is analyzed they come from its statistics over all partitions,
    // and the same waste is found.
    db.client()
        .await
        .batch_execute("ANALYZE audit_logs")
        .await
        .unwrap();
    let parts = |r: &[Value]| -> Vec<String> {
        let mut names: Vec<String> = r
            .iter()
            .flat_map(|r| r["evidence"]["bloated"].as_array().unwrap().clone())
            .map(|b| b["index"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    let again = recs(&report(&db), "bloated_index");
    assert_eq!(parts(&again), parts(&found), "{again:#?}");
    let fix = found[0]["fix"].as_str().unwrap().to_string();
    assert!(
        fix.starts_with("REINDEX INDEX CONCURRENTLY \"public\".\"audit_logs_2025_03_"),
        "{fix}"
    );
    apply_fix(&db, &fix).await;
    assert!(recs(&report(&db), "bloated_index").is_empty());
}

#[tokio::test]
async fn missing_pg_stat_statements_is_explained_and_the_fix_works() {
    let db = current_db(100).await;
    if !require_extension(&db, "pg_stat_statements").await {
        return;
    }
    let v = report(&db);
    let (_, fix) = only(&v, "pg_stat_statements_missing");
    assert!(fix.contains("CREATE EXTENSION pg_stat_statements"), "{fix}");
    db.client()
        .await
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    let v = report(&db);
    assert!(recs(&v, "pg_stat_statements_missing").is_empty());
    assert_eq!(v["queries"]["available"], true);
}

#[tokio::test]
async fn stats_queries_counts_calls_in_the_window_only() {
    let db = current_db(1000).await;
    if !require_extension(&db, "pg_stat_statements").await {
        return;
    }
    // The application's own session: strata's sessions are not counted.
    let c = common::TestDbUrl::connect(&format!("{} application_name=app", db.url)).await;
    c.batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    let probe = "SELECT count(*) AS strata_probe FROM audit_logs WHERE severity = $1";
    for _ in 0..3 {
        c.query_one(probe, &[&"critical"]).await.unwrap();
    }
    // A reading, then made to look 25 hours old: the 1-day window starts there.
    let out = strata(&db, &["stats", "snapshot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.batch_execute(
        "UPDATE strata.query_snapshots SET captured_at = captured_at - interval '25 hours'",
    )
    .await
    .unwrap();
    for _ in 0..5 {
        c.query_one(probe, &[&"error"]).await.unwrap();
    }
    let out = strata(&db, &["--json", "stats", "queries", "--days", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["window"]["basis"], "snapshot");
    let q = v["most_frequent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["query"].as_str().unwrap().contains("strata_probe"))
        .unwrap_or_else(|| panic!("probe missing: {v:#}"));
    assert_eq!(q["calls"], 5, "3 calls before the window are not counted");
    // With a 3-day window only the (younger) reading exists: said so.
    let out = strata(&db, &["--json", "stats", "queries", "--days", "3"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["window"]["basis"], "short_snapshot");
    assert!(
        v["window"]["note"]
            .as_str()
            .unwrap()
            .contains("the last 25h 00m"),
        "{v:#}"
    );
}

#[tokio::test]
async fn stats_partitions_keeps_the_seed_shape_and_adds_up() {
    let db = current_db(2000).await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO audit_logs (user_id, action, created_at) VALUES (1, 'x', '2031-01-01')",
        )
        .await
        .unwrap();
    let out = strata(&db, &["--json", "stats", "partitions"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = v["partitions"].as_array().unwrap();
    assert_eq!(v["partition_count"].as_u64().unwrap() as usize, parts.len());
    let sum: i64 = parts
        .iter()
        .map(|p| p["total_bytes"].as_i64().unwrap())
        .sum();
    assert_eq!(v["total_size_bytes"].as_i64().unwrap(), sum);
    assert!(v["total_size_pretty"].as_str().unwrap().ends_with('B'));
    assert_eq!(v["default_partition_rows"], 1);
    let march = parts
        .iter()
        .find(|p| p["name"] == "public.audit_logs_2025_03")
        .unwrap();
    assert_eq!(march["from"], "2025-03-01T00:00:00Z");
    assert_eq!(march["to"], "2025-04-01T00:00:00Z");
    // The default partition, just written, is measured; a partition
    // vacuumed since its last write is estimated from relpages, which the
    // VACUUM has just brought to the file's size.
    let c = db.client().await;
    let size = |name: &str| {
        let name = name.to_string();
        let c = &c;
        async move {
            let r = c
                .query_one("SELECT pg_relation_size($1::text::regclass)", &[&name])
                .await
                .unwrap();
            r.get::<_, i64>(0)
        }
    };
    let default = parts.last().unwrap();
    assert_eq!(default["size_exact"], true, "{default}");
    assert_eq!(
        default["table_bytes"].as_i64().unwrap(),
        size(default["name"].as_str().unwrap()).await
    );
    c.batch_execute("VACUUM ANALYZE audit_logs_2025_03")
        .await
        .unwrap();
    let out = strata(&db, &["--json", "stats", "partitions"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let march = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "public.audit_logs_2025_03")
        .unwrap();
    assert_eq!(march["size_exact"], false, "{march}");
    let exact = size("public.audit_logs_2025_03").await;
    assert!(exact > 0);
    assert_eq!(march["table_bytes"].as_i64().unwrap(), exact);
    assert_eq!(
        parts.last().unwrap()["is_default"],
        true,
        "default listed last"
    );
    let out = strata(&db, &["--json", "stats", "indexes"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let brin = v["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "idx_audit_logs_created_at_brin")
        .unwrap();
    assert_eq!(brin["method"], "brin");
    assert_eq!(
        brin["partitions"].as_u64().unwrap() as usize,
        parts.len(),
        "one per partition"
    );
}

/// Every key of the documented report shape (docs/report-json.md), with its type.
#[tokio::test]
async fn report_json_has_the_documented_shape() {
    let db = current_db(500).await;
    let v = report(&db);
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/report-json.md"))
        .unwrap();
    let mut checked = 0;
    for line in doc.lines().take_while(|l| !l.starts_with("## Rules")) {
        // Lines like: | `tables[].strategy.pruning_ok` | boolean | ... |
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((path, rest)) = rest.split_once("` | ") else {
            continue;
        };
        let ty = rest.split(" |").next().unwrap().trim();
        let values = select(&v, path);
        // Paths under an array may be absent when the array is empty (no
        // query statistics in a fresh database); the others must exist.
        assert!(
            !values.is_empty() || path.contains("[]"),
            "{path} is documented but missing"
        );
        if !values.is_empty() {
            checked += 1;
        }
        for value in values {
            let ok = match ty {
                "string" => value.is_string(),
                "string?" => value.is_string() || value.is_null(),
                "integer" => value.is_i64() || value.is_u64(),
                "integer?" => value.is_i64() || value.is_u64() || value.is_null(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                "object?" => value.is_object() || value.is_null(),
                "any" => true,
                other => panic!("unknown type {other} for {path}"),
            };
            assert!(ok, "{path}: expected {ty}, got {value}");
        }
    }
    assert!(
        checked > 30,
        "the doc lists the shape ({checked} keys checked)"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(v["generated_at"].as_str().unwrap()).is_ok());
    assert!(v["generated_at"].as_str().unwrap().ends_with('Z'));
}

/// Values at `a.b[].c`; arrays marked `[]` are walked (empty arrays yield
/// nothing below them, so documented paths under them are not required).
fn select<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![v];
    for part in path.split('.') {
        let (key, each) = match part.strip_suffix("[]") {
            Some(k) => (k, true),
            None => (part, false),
        };
        let mut next = Vec::new();
        for c in current {
            let Some(x) = c.get(key) else { continue };
            if each {
                next.extend(x.as_array().into_iter().flatten());
            } else {
                next.push(x);
            }
        }
        current = next;
    }
    current
}

#[tokio::test]
async fn report_human_output_is_readable() {
    let db = current_db(500).await;
    let config = config_file("r.toml", "[[table]]\npremake = 6\n");
    let out = strata(&db, &["--config", &config, "report"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "== public.audit_logs ==",
        "pruning     ok",
        "recommendations",
        "idx_audit_logs_created_at_brin",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}
