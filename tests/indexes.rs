mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{stderr, stdout, strata, TestDb};

async fn scalar(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

const INVALID_ON_TABLE: &str =
    "SELECT count(*) FROM pg_index i JOIN pg_inherits p ON p.inhrelid = i.indrelid
     WHERE p.inhparent = 'public.audit_logs'::regclass AND NOT i.indisvalid";

/// 1,000,000 rows over 18 partitions; two of strata's indexes are dropped and
/// rebuilt online while writers insert, the first build is killed mid-way
/// (process and connection), and the second run repairs what it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_build_online_and_a_killed_build_leaves_no_invalid_index() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    assert!(strata(&db, &["maintain", "--now", "2025-12-15"])
        .status
        .success());
    c.batch_execute(
        "DROP INDEX idx_audit_logs_user_id_created_at; DROP INDEX idx_audit_logs_action;
         INSERT INTO audit_logs (user_id, action, severity, created_at)
         SELECT 1 + g % 5000, 'action.' || g % 40, 'info', '2025-01-01'::timestamptz + g * interval '45 seconds'
           FROM generate_series(1, 1000000) g;
         ANALYZE audit_logs",
    )
    .await
    .unwrap();
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM audit_logs").await,
        1_000_000
    );
    let plan = strata(&db, &["--json", "indexes", "plan"]);
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    // 2 parent indexes + 19 partitions (18 + default) x (build + attach) each.
    assert_eq!(v["steps"].as_array().unwrap().len(), 2 + 2 * 19 * 2, "{v}");

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let (url, stop) = (db.url.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let c = strata::db::connect(&url).await.unwrap();
            let (mut ok, mut failed, mut worst) = (0i64, 0i64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match c.execute("INSERT INTO audit_logs (user_id, action, created_at) VALUES ($1, 'during', '2025-06-01')", &[&w]).await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        eprintln!("insert failed: {e}");
                    }
                }
                worst = worst.max(t.elapsed());
            }
            (ok, failed, worst)
        }));
    }

    // First run: killed while a CREATE INDEX CONCURRENTLY is building.
    let mut first = common::strata_cmd(&db)
        .args(["indexes", "apply"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let backend: i32 = loop {
        let row = c
            .query_opt(
                "SELECT p.pid FROM pg_stat_progress_create_index p
                  WHERE p.command = 'CREATE INDEX CONCURRENTLY' AND p.phase LIKE 'building index%'
                    AND p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap();
        if let Some(r) = row {
            break r.get(0);
        }
        assert!(Instant::now() < deadline, "no concurrent build was seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    first.kill().unwrap();
    first.wait().unwrap();
    // A crashed client's connection is dropped too.
    c.execute("SELECT pg_terminate_backend($1)", &[&backend])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar(
        &c,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {backend}"),
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        scalar(&c, INVALID_ON_TABLE).await >= 1,
        "the killed build left an INVALID index behind"
    );

    // Second run repairs and completes.
    let second = strata(&db, &["indexes", "apply"]);
    assert!(
        second.status.success(),
        "{}\n{}",
        stdout(&second),
        stderr(&second)
    );
    assert!(
        stdout(&second).contains("drop the INVALID leftover"),
        "{}",
        stdout(&second)
    );
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut worst) = (0, 0, Duration::ZERO);
    for w in writers {
        let (o, f, t) = w.await.unwrap();
        ok += o;
        failed += f;
        worst = worst.max(t);
    }
    eprintln!("inserts during index builds: {ok} ok, {failed} failed, longest {worst:?}");
    assert_eq!(failed, 0);
    assert!(ok > 0);

    assert_eq!(scalar(&c, INVALID_ON_TABLE).await, 0);
    let invalid_parent: i64 =
        scalar(&c, "SELECT count(*) FROM pg_index WHERE indrelid = 'public.audit_logs'::regclass AND NOT indisvalid").await;
    assert_eq!(
        invalid_parent, 0,
        "every parent index is valid: all partitions attached"
    );
    // Every partition carries the whole set: 8 of strata's indexes + the primary key.
    let short: i64 = scalar(
        &c,
        "SELECT count(*) FROM (SELECT p.inhrelid FROM pg_inherits p JOIN pg_index i ON i.indrelid = p.inhrelid
                                WHERE p.inhparent = 'public.audit_logs'::regclass GROUP BY 1 HAVING count(*) <> 9) x",
    )
    .await;
    assert_eq!(short, 0);
    let again = strata(&db, &["--json", "indexes", "plan"]);
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["steps"].as_array().unwrap().len(), 0, "{v}");
}

#[tokio::test]
async fn a_second_index_build_on_the_same_table_exits_3() {
    let db = TestDb::migrated().await;
    let holder = db.client().await;
    let taken: bool = holder
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended('strata:indexes:public.audit_logs', 0))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(taken);
    let out = strata(&db, &["indexes", "apply"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
}
