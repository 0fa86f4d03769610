//! vacuum / analyze / reindex against a real server, recorded as jobs.

mod common;

use common::{config_file, seeded, stderr, strata, wait_until, TestDb};

/// Runs DML on its own session and waits until the server's cumulative
/// statistics show it (backends flush them when idle, at most once a second).
async fn dml_and_flush(db: &TestDb, sql: &str, flushed: &str) -> u64 {
    let c = db.client().await;
    let n = c.execute(sql, &[]).await.unwrap();
    c.batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    drop(c);
    let watcher = db.client().await;
    wait_until(&watcher, flushed, "the statistics are flushed").await;
    n
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(db: &TestDb, sql: &str) -> T {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn hostile_and_unknown_names_are_refused_and_change_nothing() {
    let db = seeded(100).await;
    let c = db.client().await;
    c.batch_execute("CREATE TABLE x (a int); CREATE TABLE not_managed (a int);")
        .await
        .unwrap();
    let hostile = [
        "audit_logs; DROP TABLE x",
        "audit_logs'; DROP TABLE x; --",
        "\"audit_logs\"; DROP TABLE x",
        "x",
        "not_managed",
        "pg_catalog.pg_class",
        "public.audit_logs_2031_01",
        "audit_logs) ; VACUUM FULL (x",
        "",
        "a.b.c",
    ];
    let jobs_before: i64 = one(&db, "SELECT count(*) FROM strata.jobs").await;
    let tables_before: i64 = one(
        &db,
        "SELECT count(*) FROM pg_class WHERE relkind IN ('r','p')",
    )
    .await;
    for name in hostile {
        for cmd in ["vacuum", "analyze", "reindex"] {
            let out = strata(&db, &[cmd, name]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd} {name:?}: {}",
                stderr(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains("is not a managed table or one of its partitions")
                    && err.contains("audit_logs ("),
                "{cmd} {name:?}: {err}"
            );
        }
    }
    let tables_after: i64 = one(
        &db,
        "SELECT count(*) FROM pg_class WHERE relkind IN ('r','p')",
    )
    .await;
    assert_eq!(tables_before, tables_after);
    assert_eq!(
        one::<i64>(&db, "SELECT count(*) FROM strata.jobs").await,
        jobs_before,
        "no job was even started"
    );
    assert!(one::<bool>(&db, "SELECT to_regclass('x') IS NOT NULL").await);
    // Names are read like SQL: case folds unless quoted.
    let out = strata(&db, &["--json", "analyze", "PUBLIC.AUDIT_LOGS_2025_03"]);
    assert_eq!(json(&out)["outcome"]["target"], "public.audit_logs_2025_03");
}

#[tokio::test]
async fn vacuum_reports_dead_tuples_per_partition_and_records_the_job() {
    let db = seeded(6000).await;
    let c = db.client().await;
    let deleted = dml_and_flush(
        &db,
        "DELETE FROM audit_logs WHERE created_at >= '2025-03-01' AND created_at < '2025-03-15'",
        "SELECT n_dead_tup > 0 FROM pg_stat_user_tables WHERE relname = 'audit_logs_2025_03'",
    )
    .await;
    assert!(deleted > 100, "{deleted}");
    let v = json(&strata(&db, &["--json", "vacuum", "audit_logs"]));
    let relations = v["outcome"]["relations"].as_array().unwrap();
    let partitions: i64 = one(
        &db,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass",
    )
    .await;
    assert_eq!(
        relations.len() as i64,
        partitions,
        "one result per partition"
    );
    let march = relations
        .iter()
        .find(|r| r["relation"] == "public.audit_logs_2025_03")
        .unwrap();
    assert_eq!(march["dead_tuples_before"].as_i64(), Some(deleted as i64));
    assert_eq!(march["dead_tuples_after"].as_i64(), Some(0));
    let job_id = v["job_id"].as_i64().unwrap();
    let row = c
        .query_one(
            "SELECT kind, target, state, finished_at >= started_at, jsonb_array_length(result->'relations')
               FROM strata.jobs WHERE id = $1",
            &[&job_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "vacuum");
    assert_eq!(row.get::<_, String>(1), "public.audit_logs");
    assert_eq!(row.get::<_, String>(2), "succeeded");
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, i32>(4) as i64, partitions);

    // VACUUM (ANALYZE) on the parent refreshes the parent's own statistics,
    // which autovacuum never does for a partitioned table.
    assert!(
        !one::<bool>(
            &db,
            "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE tablename = 'audit_logs' AND inherited)"
        )
        .await
    );
    let v = json(&strata(
        &db,
        &["--json", "vacuum", "--analyze", "audit_logs"],
    ));
    assert!(v["outcome"]["relations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["kind"] == "parent"));
    assert!(
        one::<bool>(
            &db,
            "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE tablename = 'audit_logs' AND inherited)"
        )
        .await
    );
}

#[tokio::test]
async fn changed_only_analyze_skips_unchanged_partitions() {
    let db = seeded(3000).await;
    json(&strata(&db, &["--json", "analyze", "audit_logs"]));
    dml_and_flush(
        &db,
        "INSERT INTO audit_logs (user_id, action, created_at) VALUES (1, 'x', '2025-04-10')",
        "SELECT n_mod_since_analyze > 0 FROM pg_stat_user_tables WHERE relname = 'audit_logs_2025_04'",
    )
    .await;
    let v = json(&strata(
        &db,
        &["--json", "analyze", "--changed-only", "audit_logs"],
    ));
    let done: Vec<&str> = v["outcome"]["relations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["relation"].as_str().unwrap())
        .collect();
    assert_eq!(
        done,
        vec!["public.audit_logs_2025_04"],
        "only the changed partition"
    );
    let unchanged = v["outcome"]["unchanged"].as_array().unwrap();
    assert!(unchanged.iter().any(|p| p == "public.audit_logs_2025_03"));
    let version: String = one(&db, "SELECT current_setting('server_version_num')").await;
    if version.parse::<i32>().unwrap() < 180_000 {
        // The parent was analyzed moments ago: no recursive re-analyze.
        assert!(!done.contains(&"public.audit_logs"));
    }
}

#[tokio::test]
async fn reindex_rebuilds_each_partition_index_and_clears_interrupted_leftovers() {
    let db = seeded(2000).await;
    let c = db.client().await;
    // An interrupted REINDEX CONCURRENTLY: a writer's open transaction
    // holds it in its wait phase, after the new index exists, then it is
    // cancelled; an INVALID *_ccnew index is left behind.
    let writer = db.client().await;
    writer
        .batch_execute("BEGIN; LOCK TABLE audit_logs_2025_02 IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let reindexer = db.client().await;
    let pid: i32 = reindexer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let cancel = reindexer.cancel_token();
    let index: String = one(
        &db,
        "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_attribute a \
            ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
          WHERE i.indrelid = 'audit_logs_2025_02'::regclass AND a.attname = 'user_id' AND i.indnatts = 1",
    )
    .await;
    let run = tokio::spawn(async move {
        reindexer
            .batch_execute(&format!("REINDEX INDEX CONCURRENTLY {index}"))
            .await
    });
    wait_until(
        &c,
        &format!("SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = {pid}"),
        "the reindex waits for the writer",
    )
    .await;
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    assert!(run.await.unwrap().is_err());
    writer.batch_execute("COMMIT").await.unwrap();
    let invalid = "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                   WHERE NOT i.indisvalid AND c.relname LIKE 'audit_logs_2025_02%'";
    assert_eq!(
        one::<i64>(&db, invalid).await,
        1,
        "the interrupted run left an INVALID index"
    );

    let v = json(&strata(&db, &["--json", "reindex", "audit_logs_2025_02"]));
    let relations = v["outcome"]["relations"].as_array().unwrap();
    let indexes_of_partition: i64 = one(
        &db,
        "SELECT count(*) FROM pg_index WHERE indrelid = 'audit_logs_2025_02'::regclass",
    )
    .await;
    // Every index was handled, the leftover among them (dropped).
    assert_eq!(relations.len() as i64, indexes_of_partition + 1);
    assert!(relations.iter().all(|r| r["ok"] == true), "{relations:?}");
    assert!(relations
        .iter()
        .any(|r| r["relation"].as_str().unwrap().contains("_ccnew")));
    assert_eq!(
        one::<i64>(&db, invalid).await,
        0,
        "no INVALID index is left"
    );
    // The partition's indexes are still attached to the parent's.
    let attached: i64 = one(
        &db,
        "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid \
          WHERE x.indrelid = 'audit_logs_2025_02'::regclass",
    )
    .await;
    assert_eq!(attached, indexes_of_partition);
}

#[tokio::test]
async fn one_job_at_a_time_abandoned_runs_are_closed_and_history_is_bounded() {
    let db = seeded(500).await;
    let c = db.client().await;
    // Another session runs the same job: refused, exit 3.
    let other = db.client().await;
    other
        .execute(
            "SELECT pg_advisory_lock(hashtextextended('strata:' || 'maintain:public.audit_logs', 0))",
            &[],
        )
        .await
        .unwrap();
    let out = strata(&db, &["analyze", "audit_logs_2025_03"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    other
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();

    // A run whose process died (its row still says running) is closed as
    // failed by the next run.
    c.execute(
        "INSERT INTO strata.jobs (kind, target, state, started_at) VALUES ('analyze', 'public.audit_logs_2025_03', 'running', now())",
        &[],
    )
    .await
    .unwrap();
    let config = config_file("history.toml", "[maintenance]\njob_history = 2\n");
    for _ in 0..4 {
        let out = strata(&db, &["--config", &config, "analyze", "audit_logs_2025_03"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let states: Vec<String> = c
        .query(
            "SELECT state FROM strata.jobs WHERE kind = 'analyze' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        states,
        vec!["succeeded", "succeeded"],
        "two kept, the abandoned one closed and pruned"
    );
    let list: serde_json::Value = json(&strata(
        &db,
        &["--json", "jobs", "list", "--kind", "analyze"],
    ));
    assert_eq!(list.as_array().unwrap().len(), 2);
}
