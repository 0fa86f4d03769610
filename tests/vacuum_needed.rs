//! The scheduled vacuum visits only partitions that need it.

mod common;

use common::{seeded, stderr, strata, wait_until};

#[tokio::test]
async fn the_scheduled_vacuum_visits_only_partitions_with_dead_tuples() {
    let db = seeded(20_000).await;
    let c = db.client().await;
    // 2025-03 gets well over the threshold of dead tuples, 2025-04 a few.
    c.batch_execute(
        "DELETE FROM audit_logs WHERE created_at >= '2025-03-01' AND created_at < '2025-03-25';
         DELETE FROM audit_logs WHERE id IN (SELECT id FROM audit_logs_2025_04 LIMIT 5);
         SELECT pg_stat_force_next_flush();",
    )
    .await
    .unwrap();
    drop(c);
    let watcher = db.client().await;
    wait_until(
        &watcher,
        "SELECT n_dead_tup > 1000 FROM pg_stat_all_tables WHERE relid = 'audit_logs_2025_03'::regclass",
        "the dead tuples are counted",
    )
    .await;
    let out = strata(&db, &["schedule", "run", "vacuum", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let job: i64 = watcher
        .query_one(
            "SELECT id FROM strata.jobs WHERE kind = 'vacuum' AND origin = 'scheduler' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let result: serde_json::Value = watcher
        .query_one("SELECT result FROM strata.jobs WHERE id = $1", &[&job])
        .await
        .unwrap()
        .get(0);
    let visited: Vec<&str> = result["relations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["relation"].as_str().unwrap())
        .collect();
    assert_eq!(visited, vec!["public.audit_logs_2025_03"], "{result}");
    let skipped = result["unchanged"].as_array().unwrap();
    assert!(skipped.len() > 10, "{result}");
    assert!(
        skipped.iter().any(|s| s == "public.audit_logs_2025_04"),
        "{result}"
    );
    let dead: i64 = watcher
        .query_one(
            "SELECT n_dead_tup FROM pg_stat_all_tables WHERE relid = 'audit_logs_2025_03'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 0, "the partition was vacuumed");
}
