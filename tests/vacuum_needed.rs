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

/// A few percent deleted: over the vacuum threshold (1,000 + 1 % of rows)
/// but under autovacuum's analyze threshold (50 + 10 %): the partition is
/// vacuumed and its statistics, still true, are not gathered again.
#[tokio::test]
async fn a_small_delete_is_vacuumed_without_a_new_analyze() {
    let db = seeded(2_000).await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action, created_at)
         SELECT g % 500, 'login', '2025-05-01'::timestamptz + g * interval '30 seconds'
           FROM generate_series(1, 60000) g",
    )
    .await
    .unwrap();
    // The insert's counts reach the shared statistics before the ANALYZE
    // (flushed after it, they would count as changes since it).
    c.batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    wait_until(
        &c,
        "SELECT n_mod_since_analyze >= 60000 FROM pg_stat_all_tables WHERE relid = 'audit_logs_2025_05'::regclass",
        "the inserts are counted",
    )
    .await;
    c.batch_execute("ANALYZE audit_logs_2025_05").await.unwrap();
    wait_until(
        &c,
        "SELECT n_mod_since_analyze = 0 FROM pg_stat_all_tables WHERE relid = 'audit_logs_2025_05'::regclass",
        "the analyze is counted",
    )
    .await;
    let before: chrono::DateTime<chrono::Utc> = c
        .query_one(
            "SELECT last_analyze FROM pg_stat_all_tables WHERE relid = 'audit_logs_2025_05'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    c.batch_execute(
        "DELETE FROM audit_logs WHERE id IN (SELECT id FROM audit_logs_2025_05 ORDER BY id LIMIT 2500);
         SELECT pg_stat_force_next_flush();",
    )
    .await
    .unwrap();
    drop(c);
    let watcher = db.client().await;
    wait_until(
        &watcher,
        "SELECT n_dead_tup >= 2500 FROM pg_stat_all_tables WHERE relid = 'audit_logs_2025_05'::regclass",
        "the dead tuples are counted",
    )
    .await;
    let out = strata(&db, &["schedule", "run", "vacuum", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = watcher
        .query_one(
            "SELECT result FROM strata.jobs WHERE kind = 'vacuum' AND origin = 'scheduler' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mine = result["relations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["relation"] == "public.audit_logs_2025_05")
        .unwrap_or_else(|| panic!("2025-05 was vacuumed: {result}"));
    assert_eq!(mine["analyzed"], false, "{result}");
    assert!(
        mine["reason"].as_str().unwrap().contains("dead tuples"),
        "{result}"
    );
    let (dead, after, vacuumed): (i64, chrono::DateTime<chrono::Utc>, bool) = {
        let r = watcher
            .query_one(
                "SELECT n_dead_tup, last_analyze, last_vacuum IS NOT NULL
                   FROM pg_stat_all_tables WHERE relid = 'audit_logs_2025_05'::regclass",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(dead, 0, "the partition was vacuumed");
    assert!(vacuumed);
    assert_eq!(after, before, "its statistics were not gathered again");
}
