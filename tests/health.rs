mod common;

use std::time::{Duration, Instant};

use common::{stderr, stdout, strata, TestDb};
use serde_json::Value;

/// Checks every report has, in order.
const CHECKS: [&str; 13] = [
    "connections",
    "long_running_queries",
    "idle_in_transaction",
    "lock_waits",
    "xid_wraparound",
    "cache_hit_ratio",
    "replication_slots",
    "future_partitions",
    "default_partition_rows",
    "seals",
    "invalid_indexes",
    "sequence_headroom",
    "table_xid_age",
];

fn write_config(name: &str, text: &str) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs `strata [--config C] health --json`; returns the exit code and the report.
fn health_json(db: &TestDb, config: Option<&str>) -> (i32, Value) {
    let mut args = Vec::new();
    if let Some(c) = config {
        args.extend(["--config", c]);
    }
    args.extend(["health", "--json"]);
    let out = strata(db, &args);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "health --json is not JSON ({e}): {}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out.status.code().unwrap(), report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn maintain(db: &TestDb) {
    let out = strata(db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits (polling, bounded) until `sql` with `pid` returns true.
async fn wait_until(c: &tokio_postgres::Client, sql: &str, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done: bool = c.query_one(sql, &[&pid]).await.unwrap().get(0);
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {sql}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_maintained_database_is_healthy_and_the_json_is_complete() {
    let db = TestDb::migrated().await;
    maintain(&db);
    let (code, report) = health_json(&db, None);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["status"], "ok", "{report:#}");
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, CHECKS);
    for c in checks {
        assert_eq!(c["status"], "ok", "{c:#}");
        assert!(!c["message"].as_str().unwrap().is_empty(), "{c:#}");
        assert!(c["evidence"].is_object(), "{c:#}");
        assert!(c.get("fix").is_some() && c.get("table").is_some(), "{c:#}");
    }
    assert_eq!(
        check(&report, "future_partitions")["table"],
        "public.audit_logs"
    );
    assert_eq!(
        check(&report, "future_partitions")["evidence"]["partitions_from_current_period"],
        7
    );
    // The sequence is found through pg_depend, whatever its name.
    assert_eq!(
        check(&report, "sequence_headroom")["evidence"]["sequences"][0]["sequence"],
        "audit_logs_id_seq"
    );
    assert!(check(&report, "cache_hit_ratio")["message"]
        .as_str()
        .unwrap()
        .contains("not enough data"));
    assert_eq!(
        check(&report, "default_partition_rows")["evidence"]["rows"],
        0
    );

    let out = strata(&db, &["health"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("status"), "{text}");
    assert!(
        text.contains("future_partitions") && text.contains("overall: ok"),
        "{text}"
    );
}

#[tokio::test]
async fn rows_in_the_default_partition_are_a_warning_with_the_count() {
    let db = TestDb::migrated().await;
    maintain(&db);
    // Three years ahead is past premake (6 months): no partition takes it.
    db.client()
        .await
        .batch_execute(
            "INSERT INTO audit_logs (user_id, action, created_at)
             SELECT 7, 'login', now() + interval '3 years' FROM generate_series(1, 3)",
        )
        .await
        .unwrap();
    let (code, report) = health_json(&db, None);
    assert_eq!(code, 0, "warnings exit 0: {report:#}");
    assert_eq!(report["status"], "warning");
    let c = check(&report, "default_partition_rows");
    assert_eq!(c["status"], "warning", "{c:#}");
    assert_eq!(c["evidence"]["rows"], 3);
    assert!(c["message"].as_str().unwrap().contains("3 rows"), "{c:#}");
    // Past now + premake: maintain makes no partition for them (a stray
    // far-future time must not create partitions), so the fix shows them.
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("outside [start, now + premake]"),
        "{c:#}"
    );
    assert_eq!(c["evidence"]["outside_window_rows"], 3);
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .starts_with("look at them: SELECT * FROM"),
        "{c:#}"
    );
    assert_eq!(check(&report, "future_partitions")["status"], "ok");
}

#[tokio::test]
async fn no_partition_for_the_current_period_is_critical_and_exits_3() {
    let db = TestDb::migrated().await;
    let config = write_config("premake0.toml", "[[table]]\npremake = 0\n");
    // Partitions for January 2025 only.
    let out = strata(
        &db,
        &["--config", &config, "maintain", "--now", "2025-01-15"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, report) = health_json(&db, Some(&config));
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["status"], "critical");
    let c = check(&report, "future_partitions");
    assert_eq!(c["status"], "critical", "{c:#}");
    assert_eq!(c["evidence"]["current_period_covered"], false);
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("audit_logs_default"),
        "{c:#}"
    );
    let out = strata(&db, &["--config", &config, "health"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("future_partitions"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("CRITICAL"), "{}", stdout(&out));
    // Judged as of January, the same partitions are enough.
    let out = strata(
        &db,
        &[
            "--config",
            &config,
            "health",
            "--json",
            "--now",
            "2025-01-20",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(check(&report, "future_partitions")["status"], "ok");
}

#[tokio::test]
async fn an_idle_transaction_is_named_by_pid() {
    let db = TestDb::migrated().await;
    maintain(&db);
    let idle = db.client().await;
    let pid = backend_pid(&idle).await;
    idle.batch_execute("BEGIN; SELECT count(*) FROM audit_logs")
        .await
        .unwrap();
    let probe = db.client().await;
    wait_until(
        &probe,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'idle in transaction')",
        pid,
    )
    .await;

    let warn = write_config(
        "idle-warn.toml",
        "[health]\nidle_in_transaction_warning_seconds = 0\nidle_in_transaction_critical_seconds = 3600\n",
    );
    let (code, report) = health_json(&db, Some(&warn));
    assert_eq!(code, 0, "{report:#}");
    let c = check(&report, "idle_in_transaction");
    assert_eq!(c["status"], "warning", "{c:#}");
    assert!(
        c["message"].as_str().unwrap().contains(&pid.to_string()),
        "{c:#}"
    );
    let sessions = c["evidence"]["sessions"].as_array().unwrap();
    assert!(sessions.iter().any(|s| s["pid"] == pid), "{c:#}");
    assert_eq!(
        c["fix"].as_str().unwrap().split(';').next().unwrap(),
        format!("SELECT pg_terminate_backend({pid})")
    );

    let crit = write_config(
        "idle-crit.toml",
        "[health]\nidle_in_transaction_warning_seconds = 0\nidle_in_transaction_critical_seconds = 0\n",
    );
    let (code, report) = health_json(&db, Some(&crit));
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(check(&report, "idle_in_transaction")["status"], "critical");

    // Shown, never run: the session is still there.
    idle.batch_execute("COMMIT").await.unwrap();
    let (code, report) = health_json(&db, Some(&crit));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(check(&report, "idle_in_transaction")["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_lock_wait_names_the_waiter_and_the_blocker() {
    let db = TestDb::migrated().await;
    maintain(&db);
    let holder = db.client().await;
    let waiter = db.client().await;
    let (holder_pid, waiter_pid) = (backend_pid(&holder).await, backend_pid(&waiter).await);
    holder
        .batch_execute("BEGIN; LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // An application session: it waits as long as it takes (strata's own
    // sessions would give up after their lock_timeout).
    waiter.batch_execute("SET lock_timeout = 0").await.unwrap();
    let blocked = tokio::spawn(async move {
        waiter
            .query_one("SELECT count(*) FROM audit_logs", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    let probe = db.client().await;
    wait_until(
        &probe,
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)
            AND cardinality(pg_blocking_pids($1)) > 0",
        waiter_pid,
    )
    .await;

    let config = write_config("locks.toml", "[health]\nlock_wait_warning_seconds = 0\n");
    let (code, report) = health_json(&db, Some(&config));
    let c = check(&report, "lock_waits");
    assert_eq!(c["status"], "warning", "{c:#}");
    let waiters = c["evidence"]["waiters"].as_array().unwrap();
    let w = waiters
        .iter()
        .find(|w| w["pid"] == waiter_pid)
        .unwrap_or_else(|| panic!("waiter {waiter_pid} not listed: {c:#}"));
    assert_eq!(w["blocked_by"], serde_json::json!([holder_pid]), "{c:#}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains(&waiter_pid.to_string()) && message.contains(&holder_pid.to_string()),
        "{message}"
    );
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .starts_with(&format!("SELECT pg_terminate_backend({holder_pid})")),
        "{c:#}"
    );
    // Health itself did not queue behind the lock: the partition checks say
    // the table is locked, as warnings, and nothing is critical.
    assert_eq!(code, 0, "{report:#}");
    let f = check(&report, "future_partitions");
    assert_eq!(f["status"], "warning", "{f:#}");
    assert_eq!(f["evidence"]["locked"], true);

    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(blocked.await.unwrap().unwrap(), 0);
}

#[tokio::test]
async fn an_invalid_index_left_by_a_failed_concurrent_build_is_reported() {
    let db = TestDb::migrated().await;
    maintain(&db);
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action) VALUES (42, 'login'), (42, 'logout')",
    )
    .await
    .unwrap();
    let partition: String = c
        .query_one(
            "SELECT tableoid::regclass::text FROM audit_logs LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let err = c
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX CONCURRENTLY audit_dup_user ON {partition} (user_id)"
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    let (code, report) = health_json(&db, None);
    assert_eq!(code, 0, "{report:#}");
    let i = check(&report, "invalid_indexes");
    assert_eq!(i["status"], "warning", "{i:#}");
    assert_eq!(i["evidence"]["count"], 1);
    assert_eq!(i["evidence"]["indexes"][0]["index"], "audit_dup_user");
    assert_eq!(i["evidence"]["indexes"][0]["table"], partition.as_str());
    assert!(i["message"].as_str().unwrap().contains("audit_dup_user"));
    assert!(i["fix"]
        .as_str()
        .unwrap()
        .contains("DROP INDEX CONCURRENTLY audit_dup_user"));
}

#[tokio::test]
async fn bad_health_configuration_is_a_usage_error_naming_the_key() {
    let db = TestDb::migrated().await;
    let typo = write_config("typo.toml", "[health]\nlock_wait_warn_seconds = 5\n");
    let out = strata(&db, &["--config", &typo, "health"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lock_wait_warn_seconds"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());

    let range = write_config("range.toml", "[health]\nconnections_warning = 2\n");
    let out = strata(&db, &["--config", &range, "health"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("health.connections_warning"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn quoted_names_are_checked_and_a_missing_table_is_critical() {
    let db = TestDb::migrated().await;
    db.client()
        .await
        .batch_execute(
            r#"CREATE SCHEMA "Odd""Schema";
               CREATE TABLE "Odd""Schema"."Ev ents" (id serial, at timestamptz NOT NULL, PRIMARY KEY (id, at))
                 PARTITION BY RANGE (at);"#,
        )
        .await
        .unwrap();
    let config = write_config(
        "odd.toml",
        "[[table]]\nname = \"Odd\\\"Schema.Ev ents\"\ntime_column = \"at\"\npremake = 1\n",
    );
    let out = strata(&db, &["--config", &config, "maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, report) = health_json(&db, Some(&config));
    assert_eq!(code, 0, "{report:#}");
    let f = check(&report, "future_partitions");
    assert_eq!(f["table"], "Odd\"Schema.Ev ents");
    assert_eq!(f["status"], "ok", "{f:#}");
    // serial is int4: the column, not the sequence's bigint range, is the limit.
    let s = check(&report, "sequence_headroom");
    assert_eq!(
        s["evidence"]["sequences"][0]["max_value"], 2147483647,
        "{s:#}"
    );

    let missing = write_config("missing.toml", "[[table]]\nname = \"nowhere.audit\"\n");
    let (code, report) = health_json(&db, Some(&missing));
    assert_eq!(code, 3, "{report:#}");
    let f = check(&report, "future_partitions");
    assert_eq!(f["status"], "critical");
    assert!(
        f["message"].as_str().unwrap().contains("does not exist"),
        "{f:#}"
    );
}
