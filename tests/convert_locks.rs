//! The conversion never hangs behind a lock: a killed run's lock is waited
//! for (bounded), an ACCESS EXCLUSIVE holder is named within 30 s.

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, strata, strata_cmd, wait_until, TestDb};
use tokio_postgres::Client;

const PLAIN: &str = "
CREATE TABLE public.audit_logs (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    action VARCHAR(100) NOT NULL,
    details JSONB,
    status VARCHAR(20),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_audit_logs_user_id ON public.audit_logs (user_id);
";

const SEED: &str = "INSERT INTO audit_logs (user_id, action, status, details, created_at)
     SELECT g % 1000, 'seed.' || (g % 7), 'ok', jsonb_build_object('g', g),
            timestamptz '2025-01-01' + (g * interval '37 minutes')
       FROM generate_series(1, $1::int8) g";

/// A database with the plain table (`setup` run before the rows go in),
/// `rows` rows and, when `migrate`, strata's schema.
async fn plain(rows: i64, setup: &str, migrate: bool) -> TestDb {
    let db = TestDb::empty().await;
    let c = db.client().await;
    c.batch_execute(PLAIN).await.unwrap();
    c.batch_execute(setup).await.unwrap();
    c.execute(SEED, &[&rows]).await.unwrap();
    if migrate {
        ok(strata(&db, &["migrate"]));
    }
    db
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Runs strata, killing it if it has not ended after 40 s; returns the
/// output and how long it took.
fn bounded(db: &TestDb, args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let mut child = strata_cmd(db)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(40) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), t.elapsed())
}

/// `strata` must fail within 30 s, naming `pid` as the blocker.
fn fails_naming(db: &TestDb, args: &[&str], pid: i32) {
    let (out, took) = bounded(db, args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    assert!(took < Duration::from_secs(30), "{args:?} took {took:?}");
    assert!(err.contains(&format!("pid {pid} ")), "{args:?}: {err}");
}

async fn relkind(c: &Client, table: &str) -> String {
    c.query_one(
        "SELECT relkind::text FROM pg_class WHERE oid = $1::text::regclass",
        &[&table],
    )
    .await
    .unwrap()
    .get(0)
}

/// Rows in one table and not the other, both ways.
async fn differing(c: &Client, a: &str, b: &str) -> i64 {
    c.query_one(
        &format!(
            "SELECT count(*) FROM ((TABLE {a} EXCEPT ALL TABLE {b}) UNION ALL (TABLE {b} EXCEPT ALL TABLE {a})) d"
        ),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_right_after_kill_9_of_run_waits_for_the_lock_and_finishes() {
    let rows = 200_000;
    let db = plain(rows, "", true).await;
    let c = db.client().await;
    let mut child = strata_cmd(&db)
        .args(["convert", "run", "--batch-rows", "20000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while a batch statement runs: its backend keeps the
    // conversion lock until it notices.
    wait_until(
        &c,
        "SELECT EXISTS (SELECT 1 FROM strata.conversions WHERE watermark > 0 AND finished_at IS NULL)
            AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'
                          AND query LIKE 'INSERT INTO%strata_new%')",
        "a backfill batch runs",
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    ok(strata(&db, &["convert", "resume"]));
    ok(strata(&db, &["convert", "cutover"]));
    assert_eq!(relkind(&c, "audit_logs").await, "p");
    assert_eq!(differing(&c, "audit_logs", "audit_logs_old").await, 0);
    let n: i64 = c
        .query_one("SELECT count(*) FROM audit_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_exclusive_holder_makes_each_phase_fail_fast_naming_it() {
    let db = plain(2_000, "", true).await;
    let c = db.client().await;
    let holder = db.client().await;
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let hold = |t: &'static str| format!("BEGIN; LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE");
    holder.batch_execute(&hold("audit_logs")).await.unwrap();
    fails_naming(&db, &["convert", "start"], pid);
    holder.batch_execute("COMMIT").await.unwrap();
    ok(strata(&db, &["convert", "start"]));
    holder.batch_execute(&hold("audit_logs")).await.unwrap();
    fails_naming(&db, &["convert", "resume"], pid);
    holder.batch_execute("COMMIT").await.unwrap();
    ok(strata(&db, &["convert", "resume"]));
    for table in ["audit_logs", "audit_logs_2025_01"] {
        holder.batch_execute(&hold(table)).await.unwrap();
        fails_naming(&db, &["convert", "verify"], pid);
        fails_naming(&db, &["convert", "cutover"], pid);
        holder.batch_execute("COMMIT").await.unwrap();
    }
    assert_eq!(relkind(&c, "audit_logs").await, "r");
    ok(strata(&db, &["convert", "cutover"]));
    assert_eq!(differing(&c, "audit_logs", "audit_logs_old").await, 0);
    holder.batch_execute(&hold("audit_logs")).await.unwrap();
    fails_naming(&db, &["convert", "rollback"], pid);
    fails_naming(&db, &["convert", "cleanup", "--yes"], pid);
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(relkind(&c, "audit_logs").await, "p");
    ok(strata(&db, &["convert", "cleanup", "--yes"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_waits_for_a_held_conversion_lock_saying_for_whom() {
    let db = plain(1_000, "", true).await;
    let c = db.client().await;
    ok(strata(&db, &["convert", "start"]));
    ok(strata(&db, &["convert", "resume"]));
    let other = db.client().await;
    let pid: i32 = other
        .query_one(
            "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock(hashtextextended('strata:convert:public.audit_logs', 0))) l",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let child = strata_cmd(&db)
        .args(["convert", "verify"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its session looks up who holds the lock between tries.
    wait_until(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                          AND pid <> pg_backend_pid() AND query LIKE '%l.objsubid = 1%')",
        "verify waits for the conversion lock",
    )
    .await;
    other
        .execute(
            "SELECT pg_advisory_unlock(hashtextextended('strata:convert:public.audit_logs', 0))",
            &[],
        )
        .await
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "{:?}\nstdout: {}\nstderr: {err}",
        out.status,
        stdout(&out)
    );
    assert!(
        err.contains("waiting") && err.contains(&format!("pid {pid} ")),
        "{err}"
    );
}
