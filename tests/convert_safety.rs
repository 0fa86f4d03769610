//! The conversion's safety rules: bounded waits, honest errors, nothing lost
//! or run that should not be, whatever the names.

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{config_file, stderr, stdout, strata, strata_cmd, TestDb};
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

async fn relkind(c: &Client, table: &str) -> String {
    c.query_one(
        "SELECT relkind::text FROM pg_class WHERE oid = $1::text::regclass",
        &[&table],
    )
    .await
    .unwrap()
    .get(0)
}

async fn exists(c: &Client, table: &str) -> bool {
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
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

#[tokio::test]
async fn run_fails_unless_cut_over_and_progress_never_exceeds_its_total() {
    // Never analyzed: reltuples knows nothing.
    let db = plain(
        30_000,
        "ALTER TABLE audit_logs SET (autovacuum_enabled = off)",
        true,
    )
    .await;
    let out = strata(
        &db,
        &[
            "convert",
            "run",
            "--batch-rows",
            "1000",
            "--max-batches",
            "1",
        ],
    );
    assert!(!out.status.success(), "run stopped early yet exited 0");
    assert!(stderr(&out).contains("not cut over"), "{}", stderr(&out));
    let out = strata(&db, &["convert", "resume", "--batch-rows", "1000"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let lines: Vec<(u64, u64)> = err
        .lines()
        .filter_map(|l| l.strip_prefix("backfill: "))
        .filter_map(|l| l.split(" rows").next())
        .filter_map(|f| f.split_once('/'))
        .map(|(a, b)| {
            (
                a.replace(',', "").parse().unwrap(),
                b.replace(',', "").parse().unwrap(),
            )
        })
        .collect();
    assert!(!lines.is_empty(), "no progress lines in {err}");
    for (done, total) in &lines {
        assert!(done <= total, "progress {done}/{total} in {err}");
    }
    ok(strata(&db, &["convert", "run"]));
    assert_eq!(relkind(&db.client().await, "audit_logs").await, "p");
}

#[tokio::test]
async fn an_interrupted_start_is_named_refused_by_resume_and_replaced_by_start() {
    let db = plain(1_000, "", true).await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE audit_logs_strata_new (LIKE audit_logs) PARTITION BY RANGE (created_at);
         INSERT INTO strata.conversions (schema_name, table_name, phase, new_table)
         VALUES ('public', 'audit_logs', 'starting', 'public.audit_logs_strata_new')",
    )
    .await
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(strata(&db, &["--json", "convert", "status"]))).unwrap();
    assert_eq!(v["conversion"]["phase"], "starting");
    let out = strata(&db, &["convert", "resume"]);
    assert!(
        !out.status.success(),
        "resume of an interrupted start did nothing, exit 0"
    );
    assert!(
        stderr(&out).contains("strata convert start"),
        "{}",
        stderr(&out)
    );
    ok(strata(&db, &["convert", "start"]));
    ok(strata(&db, &["convert", "run"]));
    assert_eq!(relkind(&c, "audit_logs").await, "p");
    assert_eq!(differing(&c, "audit_logs", "audit_logs_old").await, 0);
}

#[tokio::test]
async fn failures_that_are_not_lock_timeouts_say_what_they_are() {
    let db = plain(
        1_000,
        "CREATE TABLE public.audit_logs_2025_01 (x int)",
        true,
    )
    .await;
    let c = db.client().await;
    let (out, took) = bounded(&db, &["convert", "start"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("creating the partitions"), "{err}");
    assert!(err.contains("audit_logs_2025_01"), "{err}");
    assert!(!err.contains("could not get its lock"), "{err}");
    assert!(
        took < Duration::from_secs(20),
        "retried as a lock timeout: {took:?}"
    );
    assert!(
        exists(&c, "audit_logs_2025_01").await,
        "the user's table stays"
    );
    assert!(
        !exists(&c, "audit_logs_strata_new").await,
        "the failed start's table is gone"
    );

    // details as text: the GIN jsonb index cannot be built.
    let db = plain(1_000, "", false).await;
    let c = db.client().await;
    c.batch_execute("ALTER TABLE audit_logs ALTER COLUMN details TYPE text")
        .await
        .unwrap();
    ok(strata(&db, &["migrate"]));
    ok(strata(&db, &["convert", "start"]));
    let out = strata(&db, &["convert", "resume"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("building indexes") && err.contains("not a lock timeout"),
        "{err}"
    );
    assert!(!err.contains("could not get its lock"), "{err}");
}

#[tokio::test]
async fn cutover_and_cleanup_re_verify_rollback_needs_its_record_and_status_forgets_old_errors() {
    let db = plain(2_000, "", true).await;
    let c = db.client().await;
    ok(strata(&db, &["convert", "start"]));
    ok(strata(&db, &["convert", "resume"]));
    // A write the mirror missed after the verification.
    c.batch_execute(
        "ALTER TABLE audit_logs DISABLE TRIGGER strata_convert_mirror;
         INSERT INTO audit_logs (user_id, action) VALUES (1, 'unmirrored');
         ALTER TABLE audit_logs ENABLE ALWAYS TRIGGER strata_convert_mirror;",
    )
    .await
    .unwrap();
    let out = strata(&db, &["convert", "cutover"]);
    assert!(!out.status.success(), "cutover lost a row");
    assert!(
        stderr(&out).contains("verification failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(relkind(&c, "audit_logs").await, "r");
    c.batch_execute("DELETE FROM audit_logs WHERE action = 'unmirrored'")
        .await
        .unwrap();
    ok(strata(&db, &["convert", "cutover"]));

    let timings: serde_json::Value = c
        .query_one(
            "SELECT timings FROM strata.conversions WHERE finished_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    c.execute(
        "UPDATE strata.conversions SET timings = timings || '{\"renames\": \"garbage\"}' WHERE finished_at IS NULL",
        &[],
    )
    .await
    .unwrap();
    let out = strata(&db, &["convert", "rollback"]);
    assert!(!out.status.success(), "rollback without its record");
    assert!(stderr(&out).contains("unreadable"), "{}", stderr(&out));
    assert_eq!(relkind(&c, "audit_logs").await, "p");
    c.execute(
        "UPDATE strata.conversions SET timings = $1 WHERE finished_at IS NULL",
        &[&timings],
    )
    .await
    .unwrap();
    ok(strata(&db, &["convert", "rollback"]));
    assert_eq!(relkind(&c, "audit_logs").await, "r");
    ok(strata(&db, &["convert", "cutover"]));

    // A row only the old table has: dropping it would lose the row.
    c.batch_execute("INSERT INTO audit_logs_old (user_id, action) VALUES (2, 'only old')")
        .await
        .unwrap();
    let out = strata(&db, &["convert", "cleanup", "--yes"]);
    assert!(
        !out.status.success(),
        "cleanup dropped a row the new table lacks"
    );
    assert!(exists(&c, "audit_logs_old").await);
    c.batch_execute("DELETE FROM audit_logs_old WHERE action = 'only old'")
        .await
        .unwrap();
    let out = strata(&db, &["convert", "cleanup"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    ok(strata(&db, &["convert", "cleanup", "--yes"]));
    assert!(!exists(&c, "audit_logs_old").await);
    let status = ok(strata(&db, &["convert", "status"]));
    assert!(!status.contains("last error"), "{status}");
}

#[tokio::test]
async fn writes_with_session_replication_role_replica_are_mirrored() {
    let db = plain(1_000, "", true).await;
    let c = db.client().await;
    ok(strata(&db, &["convert", "start"]));
    c.batch_execute(
        "SET session_replication_role = replica;
         INSERT INTO audit_logs (user_id, action) VALUES (7, 'replica insert');
         UPDATE audit_logs SET status = 'replica' WHERE id = 5;
         DELETE FROM audit_logs WHERE id = 6;
         RESET session_replication_role;",
    )
    .await
    .unwrap();
    ok(strata(&db, &["convert", "resume"]));
    ok(strata(&db, &["convert", "cutover"]));
    assert_eq!(differing(&c, "audit_logs", "audit_logs_old").await, 0);
    // And back, through the reverse mirror.
    c.batch_execute(
        "SET session_replication_role = replica;
         INSERT INTO audit_logs (user_id, action) VALUES (8, 'replica after cutover');
         RESET session_replication_role;",
    )
    .await
    .unwrap();
    assert_eq!(differing(&c, "audit_logs", "audit_logs_old").await, 0);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE action LIKE 'replica%' OR (id = 5 AND status = 'replica')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

#[tokio::test]
async fn hostile_names_convert_completely_and_run_nothing_else() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    c.batch_execute(
        r#"CREATE SCHEMA "Odd""Schema";
           CREATE TABLE "Odd""Schema"."Ev ents" (
               id BIGSERIAL PRIMARY KEY,
               "a$strata$b" TEXT,
               "x;DROP" TEXT,
               "$strata$;CREATE TABLE public.pwned();--" TEXT,
               created_at TIMESTAMPTZ NOT NULL);
           INSERT INTO "Odd""Schema"."Ev ents" ("a$strata$b", "x;DROP", "$strata$;CREATE TABLE public.pwned();--", created_at)
           SELECT 'a' || g, 'x' || g, '$strata$' || g, timestamptz '2025-01-01' + g * interval '1 hour'
             FROM generate_series(1, 500) g;"#,
    )
    .await
    .unwrap();
    let cfg = config_file(
        "odd.toml",
        "[[table]]\nname = 'Odd\"Schema.Ev ents'\nstart = \"2025-01-01\"\n",
    );
    ok(strata(&db, &["--config", &cfg, "convert", "run"]));
    c.batch_execute(
        r#"INSERT INTO "Odd""Schema"."Ev ents" ("a$strata$b", "x;DROP", created_at) VALUES ('late', 'late', now())"#,
    )
    .await
    .unwrap();
    assert_eq!(relkind(&c, r#""Odd""Schema"."Ev ents""#).await, "p");
    let d = differing(
        &c,
        r#""Odd""Schema"."Ev ents""#,
        r#""Odd""Schema"."Ev ents_old""#,
    )
    .await;
    assert_eq!(d, 0, "the reverse mirror copied the late row too");
    let n: i64 = c
        .query_one(
            r#"SELECT count(*) FROM "Odd""Schema"."Ev ents" WHERE "a$strata$b" = 'a' || id AND "x;DROP" = 'x' || id"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500, "every row copied with its values");
    assert!(!exists(&c, "public.pwned").await, "nothing extra ran");
    ok(strata(
        &db,
        &["--config", &cfg, "convert", "cleanup", "--yes"],
    ));
}

#[tokio::test]
async fn an_existing_new_table_is_refused_and_kept_and_an_unmigrated_database_is_named() {
    let db = plain(100, "", true).await;
    let c = db.client().await;
    c.batch_execute("CREATE TABLE audit_logs_strata_new (keep int); INSERT INTO audit_logs_strata_new VALUES (42)")
        .await
        .unwrap();
    let out = strata(&db, &["convert", "start"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("public.audit_logs_strata_new already exists"),
        "{}",
        stderr(&out)
    );
    let kept: i32 = c
        .query_one("SELECT keep FROM audit_logs_strata_new", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 42);

    let db = plain(10, "", false).await;
    let out = strata(&db, &["convert", "start"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("run `strata migrate`"),
        "{}",
        stderr(&out)
    );
}
