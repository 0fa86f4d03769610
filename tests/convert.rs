//! Online conversion of a plain audit_logs while writers keep writing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{stderr, strata, strata_cmd, wait_until, TestDb};
use tokio_postgres::Client;

/// The seed's table as users have it: plain, PRIMARY KEY (id).
const PLAIN: &str = "
CREATE TABLE public.audit_logs (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    action VARCHAR(100) NOT NULL,
    resource_type VARCHAR(50),
    resource_id BIGINT,
    details JSONB,
    ip_address INET,
    user_agent TEXT,
    status VARCHAR(20),
    severity VARCHAR(20),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_audit_logs_user_id ON public.audit_logs (user_id);
CREATE INDEX idx_audit_logs_created_at ON public.audit_logs (created_at);
-- Writers record what they did in the same transaction: the expected final state.
CREATE TABLE public.ledger (seq BIGSERIAL PRIMARY KEY, id BIGINT NOT NULL, op TEXT NOT NULL,
                            status TEXT, created_at TIMESTAMPTZ);
";

/// No session of this database holds an advisory lock (strata's locks).
const NO_STRATA_LOCKS: &str = "SELECT NOT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                                    WHERE l.locktype = 'advisory' AND d.datname = current_database())";

async fn plain_db(rows: i64) -> TestDb {
    let db = TestDb::empty().await;
    let c = db.client().await;
    c.batch_execute(PLAIN).await.unwrap();
    c.execute(
        "INSERT INTO audit_logs (user_id, action, status, details, created_at)
         SELECT g % 1000, 'seed.' || (g % 7), 'ok', jsonb_build_object('g', g),
                timestamptz '2025-01-01' + (g * interval '37 minutes')
           FROM generate_series(1, $1::int8) g",
        &[&rows],
    )
    .await
    .unwrap();
    let out = strata(&db, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    db
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A writer: inserts, updates (status, sometimes created_at) and deletes
/// through the name `audit_logs`, recording each change in the ledger in the
/// same transaction.
async fn writer(c: Client, n: i64, seeded: i64, stop: Arc<AtomicBool>) -> u64 {
    let mut done = 0u64;
    let mut i = 0i64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let r = match i % 5 {
            0..=2 => c
                .batch_execute(&format!(
                    "BEGIN;
                     WITH ins AS (INSERT INTO audit_logs (user_id, action, status, created_at)
                                  VALUES ({n}, 'writer.insert', 'new', timestamptz '2025-03-01' + {i} * interval '1 minute')
                                  RETURNING id, status, created_at)
                     INSERT INTO ledger (id, op, status, created_at) SELECT id, 'insert', status, created_at FROM ins;
                     COMMIT;"
                ))
                .await,
            3 => c
                .batch_execute(&format!(
                    "BEGIN;
                     WITH up AS (UPDATE audit_logs SET status = 'upd{i}',
                                        created_at = CASE WHEN {i} % 2 = 0 THEN created_at + interval '40 days' ELSE created_at END
                                  WHERE id = CASE WHEN {i} % 3 = 0
                                                  THEN (SELECT max(id) FROM ledger WHERE op = 'insert')
                                                  ELSE (SELECT (1 + floor(random() * {seeded}))::int8) END
                                  RETURNING id, status, created_at)
                     INSERT INTO ledger (id, op, status, created_at) SELECT id, 'update', status, created_at FROM up;
                     COMMIT;"
                ))
                .await,
            _ => c
                .batch_execute(&format!(
                    "BEGIN;
                     WITH del AS (DELETE FROM audit_logs WHERE id = (SELECT (1 + floor(random() * {seeded}))::int8) RETURNING id)
                     INSERT INTO ledger (id, op) SELECT id, 'delete' FROM del;
                     COMMIT;"
                ))
                .await,
        };
        match r {
            Ok(()) => done += 1,
            // On a partitioned table, an UPDATE that moves a row to another
            // partition makes a concurrent UPDATE/DELETE of the same row fail
            // with 40001 (PostgreSQL's rule, not the conversion's); the
            // application retries, as it would for any serialization failure.
            Err(e)
                if e.code()
                    == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) =>
            {
                let _ = c.batch_execute("ROLLBACK").await;
            }
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                panic!(
                    "a writer noticed the conversion: {}",
                    strata::db::server_message(&e)
                );
            }
        }
    }
    done
}

/// `r` (plain) or `p` (partitioned): which table the name `audit_logs` means now.
async fn relkind(c: &Client) -> String {
    c.query_one(
        "SELECT relkind::text FROM pg_class WHERE oid = 'audit_logs'::regclass",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// The final table must equal what the writers did, row for row.
async fn check_exact(c: &Client, rows_seeded: i64) {
    // Seed rows not touched by writers keep their values; for every id the
    // ledger's last operation decides presence, status and created_at.
    let wrong: i64 = c
        .query_one(
            "WITH last AS (
                 SELECT DISTINCT ON (id) id, op, status, created_at FROM ledger ORDER BY id, seq DESC),
             expected AS (
                 SELECT g AS id, 'ok'::text AS status, timestamptz '2025-01-01' + (g * interval '37 minutes') AS created_at
                   FROM generate_series(1, $1::int8) g WHERE g NOT IN (SELECT id FROM last)
                 UNION ALL
                 SELECT id, status, created_at FROM last WHERE op <> 'delete')
             SELECT count(*) FROM (
                 (SELECT id, status::text, created_at FROM expected
                  EXCEPT ALL SELECT id, status::text, created_at FROM audit_logs)
                 UNION ALL
                 (SELECT id, status::text, created_at FROM audit_logs
                  EXCEPT ALL SELECT id, status::text, created_at FROM expected)) d",
            &[&rows_seeded],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0, "rows differing from what the writers did");
}

// Several worker threads: the writers must keep running while the test
// thread blocks on each strata process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn converts_while_writers_insert_update_and_delete_through_every_phase() {
    let rows = 100_000;
    let db = plain_db(rows).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for n in 0..3 {
        writers.push(tokio::spawn(writer(
            db.client().await,
            9000 + n,
            rows,
            stop.clone(),
        )));
    }
    ok(strata(&db, &["convert", "start", "--batch-rows", "500"]));
    let c = db.client().await;
    let before_backfill: i64 = c
        .query_one("SELECT count(*) FROM ledger", &[])
        .await
        .unwrap()
        .get(0);
    ok(strata(&db, &["convert", "resume", "--batch-rows", "500"]));
    let after_backfill: i64 = c
        .query_one("SELECT count(*) FROM ledger", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "writes during backfill: {}",
        after_backfill - before_backfill
    );
    let status = ok(strata(&db, &["--json", "convert", "status"]));
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["conversion"]["phase"], "verified");
    ok(strata(&db, &["convert", "cutover"]));
    let kind = relkind(&c).await;
    assert_eq!(kind, "p", "audit_logs is the partitioned table now");
    ok(strata(&db, &["convert", "verify"]));
    ok(strata(&db, &["convert", "rollback"]));
    let kind = relkind(&c).await;
    assert_eq!(kind, "r", "rolled back to the plain table");
    ok(strata(&db, &["convert", "verify"]));
    ok(strata(&db, &["convert", "cutover"]));
    // Let the writers run against the partitioned table for a while.
    wait_until(
        &c,
        "SELECT count(*) >= 20 FROM ledger WHERE seq > (SELECT max(seq) - 20 FROM ledger)",
        "writers kept going",
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    assert!(total > 50, "the writers did work ({total} transactions)");
    let ops: Vec<(String, i64)> = c
        .query("SELECT op, count(*) FROM ledger GROUP BY 1 ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    eprintln!("writer transactions: {total}, ledger: {ops:?}");
    assert_eq!(
        ops.len(),
        3,
        "inserts, updates and deletes all happened: {ops:?}"
    );
    ok(strata(&db, &["convert", "verify"]));
    ok(strata(&db, &["convert", "cleanup", "--yes"]));
    check_exact(&c, rows).await;
    let old: bool = c
        .query_one("SELECT to_regclass('audit_logs_old') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(old, "cleanup dropped the old table");
    // New rows continue the sequence.
    let (max_before, new_id): (i64, i64) = {
        let m: i64 = c
            .query_one("SELECT max(id) FROM audit_logs", &[])
            .await
            .unwrap()
            .get(0);
        let n: i64 = c
            .query_one(
                "INSERT INTO audit_logs (user_id, action) VALUES (1, 'after') RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (m, n)
    };
    assert!(new_id > max_before);
    let _ = strata_cmd(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_backfill_and_mid_cutover_then_resume_is_exact() {
    let rows = 60_000;
    let db = plain_db(rows).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for n in 0..2 {
        writers.push(tokio::spawn(writer(
            db.client().await,
            9000 + n,
            rows,
            stop.clone(),
        )));
    }
    let c = db.client().await;
    ok(strata(&db, &["convert", "start"]));
    // Small batches, then kill -9 once some are committed.
    let mut child = strata_cmd(&db)
        .args(["convert", "resume", "--batch-rows", "200"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        &c,
        "SELECT watermark > 3000 FROM strata.conversions WHERE finished_at IS NULL",
        "the backfill is under way",
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let phase: String = c
        .query_one(
            "SELECT phase FROM strata.conversions WHERE finished_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(phase, "backfilling", "killed mid-backfill");
    // The killed process's backend finishes its statement, finds its client
    // gone and exits, releasing the conversion lock.
    wait_until(&c, NO_STRATA_LOCKS, "the killed process's session ended").await;
    ok(strata(&db, &["convert", "resume"]));

    // Cutover waits for a reader's lock; kill it while it retries.
    let config = common::config_file(
        "patient.toml",
        "[maintenance]\nlock_timeout = \"100ms\"\nretries = 1000\n",
    );
    let reader = db.client().await;
    reader
        .batch_execute("BEGIN; LOCK TABLE audit_logs IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let mut child = strata_cmd(&db)
        .args(["--config", &config, "convert", "cutover"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        &c,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                          AND query LIKE 'LOCK TABLE%ACCESS EXCLUSIVE%' AND wait_event_type = 'Lock')",
        "the cutover waits for its lock",
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    reader.batch_execute("COMMIT").await.unwrap();
    wait_until(&c, NO_STRATA_LOCKS, "the killed process's session ended").await;
    let kind = relkind(&c).await;
    assert_eq!(kind, "r", "a killed cutover changed nothing");
    ok(strata(&db, &["convert", "verify"]));
    ok(strata(&db, &["convert", "cutover"]));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    ok(strata(&db, &["convert", "verify"]));
    ok(strata(&db, &["convert", "cleanup", "--yes"]));
    check_exact(&c, rows).await;
}

#[tokio::test]
async fn unmet_preconditions_are_named_and_nothing_changes() {
    let db = plain_db(100).await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE VIEW recent_logs AS SELECT * FROM audit_logs WHERE created_at > now() - interval '1 day';
         CREATE TABLE alerts (id bigserial PRIMARY KEY, log_id bigint REFERENCES audit_logs (id));
         ALTER TABLE audit_logs ALTER COLUMN created_at DROP NOT NULL;
         INSERT INTO audit_logs (user_id, action, created_at) VALUES (1, 'no time', NULL), (2, 'no time', NULL);",
    )
    .await
    .unwrap();
    let out = strata(&db, &["convert", "start"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("2 rows of public.audit_logs have a NULL created_at"),
        "{err}"
    );
    // NULL times are checked first; with them fixed, the dependencies are named.
    c.batch_execute("UPDATE audit_logs SET created_at = now() WHERE created_at IS NULL")
        .await
        .unwrap();
    let out = strata(&db, &["convert", "start"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in ["recent_logs", "alerts_log_id_fkey on alerts"] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
    let state: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM strata.conversions)
                  + (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_logs'::regclass AND NOT tgisinternal)
                  + (SELECT count(*) FROM pg_class WHERE relname LIKE 'audit_logs_strata%' OR relname LIKE 'audit_logs_20%')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        state, 0,
        "no conversion row, trigger or table was left behind"
    );
    let out = strata(&db, &["convert", "status"]);
    assert_eq!(out.status.code(), Some(3));
}
