//! Moving rows out of the default partition (partition/default_move.rs): the
//! rows that arrive are the rows that were there, readers see each row once
//! throughout, concurrent writers lose nothing, and a killed run resumes.
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{config_file, stderr, strata_cmd, wait_until, TestDb};
use strata::config::Config;
use strata::partition;
use tokio_postgres::Client;

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// March and April 2025 only, and a batch size that makes every move batched.
const SPRING: &str =
    "[[table]]\nstart = \"2025-03-01\"\npremake = 0\n[maintenance]\nmove_batch_rows = 400\n";
const NOW: &str = "2025-04-15T00:00:00Z";

/// `n` rows spread over March and April 2025 with every column filled in
/// (some NULLs), all in the default partition.
async fn fill(c: &Client, n: i64) {
    c.execute(
        "INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address,
                                 user_agent, status, severity, created_at)
         SELECT g, 'act' || (g % 7), CASE WHEN g % 5 = 0 THEN NULL ELSE 'doc' END, g * 3,
                jsonb_build_object('g', g, 'tags', jsonb_build_array(g % 3, 'x')),
                ('10.0.' || (g % 250) || '.1')::inet, 'agent ' || g, 'ok', 'info',
                '2025-03-01'::timestamptz + ((g - 1)::float8 / $1::int8) * interval '61 days'
           FROM generate_series(1, $1::int8) g",
        &[&n],
    )
    .await
    .unwrap();
}

/// Every row, whole (generated column included), by id.
async fn whole_rows(c: &Client) -> Vec<(i64, String)> {
    c.query("SELECT id, a::text FROM audit_logs a ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

async fn maintain(db: &TestDb, config: &str) {
    let config = Config::from_toml(config).unwrap();
    let mut c = db.client().await;
    let (plan, report) = partition::maintain(
        &mut c,
        &config.tables[0],
        ts(NOW),
        &config.maintenance,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.failed(), 0, "{:?}", report.results);
    assert!(
        plan.steps.iter().any(
            |s| matches!(s, partition::Step::Create { default_rows, .. } if *default_rows > 400)
        ),
        "the move is batched: {:?}",
        plan.steps
    );
}

/// Nothing of the move is left behind: no change log, trigger or function,
/// no staging mark, and the default partition holds nothing of the range.
async fn assert_clean(c: &Client) {
    assert_eq!(count(c, "SELECT count(*) FROM audit_logs_default").await, 0);
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'strata_move_%'"
        )
        .await,
        0,
        "change logs dropped"
    );
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'strata_move_%'"
        )
        .await,
        0,
        "triggers dropped"
    );
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'strata_move_%'"
        )
        .await,
        0,
        "functions dropped"
    );
    for month in ["audit_logs_2025_03", "audit_logs_2025_04"] {
        let (attached, comment): (bool, Option<String>) = c
            .query_one(
                "SELECT relispartition, obj_description(oid, 'pg_class') FROM pg_class WHERE relname = $1",
                &[&month],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert!(attached, "{month} is a partition");
        assert_eq!(comment, None, "{month} lost its staging mark");
    }
}

#[tokio::test]
async fn moved_rows_are_the_rows_that_were_there_ids_and_contents() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    fill(&c, 3000).await;
    let before = whole_rows(&c).await;
    maintain(&db, SPRING).await;
    let after = whole_rows(&c).await;
    assert_eq!(after.len(), 3000);
    assert_eq!(after, before, "every row, whole, exactly once");
    let (march, april) = (
        count(&c, "SELECT count(*) FROM ONLY audit_logs_2025_03").await,
        count(&c, "SELECT count(*) FROM ONLY audit_logs_2025_04").await,
    );
    assert_eq!(march + april, 3000, "all of them in their partitions");
    assert!(march > 1000 && april > 1000, "{march} / {april}");
    assert_clean(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_reader_sees_every_row_exactly_once_during_the_move() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    fill(&c, 6000).await;
    let expected: (i64, i64, i64) = c
        .query_one(
            "SELECT count(*), count(DISTINCT id), sum(id)::int8 FROM audit_logs",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (url, stop) = (db.url.clone(), stop.clone());
        tokio::spawn(async move {
            let c = strata::db::connect(&url).await.unwrap();
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // One statement, one snapshot: the whole table and each month.
                let r = c
                    .query_one(
                        "SELECT count(*), count(DISTINCT id), sum(id)::int8,
                                count(*) FILTER (WHERE created_at < '2025-04-01'),
                                (SELECT count(*) FROM pg_class WHERE relname = 'audit_logs_2025_03' AND relispartition)
                           FROM audit_logs",
                        &[],
                    )
                    .await
                    .unwrap();
                seen.push((
                    (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
                    r.get::<_, i64>(4),
                ));
            }
            seen
        })
    };
    maintain(&db, SPRING).await;
    stop.store(true, Ordering::Relaxed);
    let seen = reader.await.unwrap();
    let wrong: Vec<_> = seen.iter().filter(|(r, _)| *r != expected).collect();
    assert!(wrong.is_empty(), "expected {expected:?}, saw {wrong:?}");
    assert!(
        seen.iter().any(|(_, attached)| *attached == 0),
        "reads before the attach"
    );
    assert!(
        seen.iter().any(|(_, attached)| *attached == 1),
        "reads after the attach"
    );
    assert!(seen.len() > 20, "only {} reads", seen.len());
    assert_clean(&c).await;
}

/// What each writer did, for the expected end state.
#[derive(Default)]
struct Done {
    inserted: Vec<i64>,
    /// id -> (details, created_at) as last written.
    updated: BTreeMap<i64, (String, DateTime<Utc>)>,
    deleted: Vec<i64>,
}

async fn write_while(url: String, kind: u8, stop: Arc<AtomicBool>) -> Done {
    let c = strata::db::connect(&url).await.unwrap();
    let mut done = Done::default();
    let mut k: i64 = 0;
    while !stop.load(Ordering::Relaxed) && (kind != 2 || k < 2000) {
        k += 1;
        match kind {
            0 => {
                let id: i64 = c
                    .query_one(
                        "INSERT INTO audit_logs (user_id, action, created_at)
                         VALUES ($1::int8, 'during', '2025-03-01'::timestamptz + $1::int8 * interval '17 minutes')
                         RETURNING id",
                        &[&(k % 3000)],
                    )
                    .await
                    .unwrap()
                    .get(0);
                done.inserted.push(id);
            }
            1 => {
                // Odd ids of the first 2000 are never deleted; every third
                // update also moves the row within March (its key changes).
                let id = 2 * (k % 1000) + 1;
                let details = format!("{{\"u\": {k}}}");
                let row = c
                    .query_opt(
                        "UPDATE audit_logs SET details = $2::text::jsonb,
                                created_at = CASE WHEN $3::bool THEN '2025-03-02'::timestamptz + $1::int8 * interval '1 minute'
                                                  ELSE created_at END
                          WHERE id = $1::int8 RETURNING details::text, created_at",
                        &[&id, &details, &(k % 3 == 0)],
                    )
                    .await
                    .unwrap()
                    .expect("an update found its row");
                done.updated.insert(id, (row.get(0), row.get(1)));
            }
            _ => {
                let id = 2 * k;
                let n = c
                    .execute("DELETE FROM audit_logs WHERE id = $1", &[&id])
                    .await
                    .unwrap();
                assert_eq!(n, 1, "a delete found its row {id}");
                done.deleted.push(id);
            }
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_inserting_updating_and_deleting_in_the_moved_range_lose_nothing() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    fill(&c, 6000).await;
    let initial: BTreeMap<i64, (String, DateTime<Utc>)> = c
        .query("SELECT id, details::text, created_at FROM audit_logs", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u8)
        .map(|kind| tokio::spawn(write_while(db.url.clone(), kind, stop.clone())))
        .collect();
    wait_until(
        &c,
        "SELECT count(*) > 20 FROM audit_logs WHERE action = 'during'",
        "the writers have started",
    )
    .await;
    let started = Instant::now();
    maintain(&db, SPRING).await;
    eprintln!("maintain under writes took {:?}", started.elapsed());
    let last = count(&c, "SELECT max(id) FROM audit_logs").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after: i64 = c
            .query_one(
                "SELECT count(*) FROM audit_logs WHERE action = 'during' AND id > $1",
                &[&last],
            )
            .await
            .unwrap()
            .get(0);
        if after > 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writers went on after the attach"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut expected = initial;
    let mut inserted = 0;
    for w in writers {
        let done = w.await.unwrap();
        for id in &done.deleted {
            assert!(expected.remove(id).is_some(), "deleted {id} twice?");
        }
        for (id, v) in done.updated {
            expected.insert(id, v);
        }
        inserted += done.inserted.len();
        for id in done.inserted {
            let (details, at): (Option<String>, DateTime<Utc>) = c
                .query_one(
                    "SELECT details::text, created_at FROM audit_logs WHERE id = $1",
                    &[&id],
                )
                .await
                .map(|r| (r.get(0), r.get(1)))
                .unwrap();
            assert!(details.is_none());
            expected.insert(id, ("null".into(), at));
        }
    }
    assert!(inserted > 20, "the inserter ran ({inserted})");
    let got: BTreeMap<i64, (String, DateTime<Utc>)> = c
        .query(
            "SELECT id, coalesce(details::text, 'null'), created_at FROM audit_logs",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(got.len(), expected.len(), "no row lost or duplicated");
    assert_eq!(
        count(&c, "SELECT count(DISTINCT id) FROM audit_logs").await,
        count(&c, "SELECT count(*) FROM audit_logs").await
    );
    let differing: Vec<_> = expected
        .iter()
        .filter(|(id, v)| got.get(id) != Some(v))
        .take(5)
        .collect();
    assert!(differing.is_empty(), "rows differ: {differing:?}");
    assert_clean(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_from_the_staging_table() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    fill(&c, 3000).await;
    // A reader's open transaction blocks only the final step (the exclusive
    // lock on the default partition), which then retries until killed.
    let reader = db.client().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM audit_logs_default")
        .await
        .unwrap();
    let config = config_file(
        "spring.toml",
        &format!("{SPRING}lock_timeout = \"20ms\"\nretries = 1000\n"),
    );
    let mut child = strata_cmd(&db)
        .args(["--config", &config, "maintain", "--now", "2025-04-15"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        &c,
        "SELECT count(*) >= 3 FROM pg_trigger WHERE tgname LIKE 'strata_move_%'",
        "the change log is in place",
    )
    .await;
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", stderr(&out));
    assert_eq!(
        count(&c, "SELECT count(*) FROM audit_logs").await,
        3000,
        "readers see every row exactly once (still in the default partition)"
    );
    let comment: Option<String> = c
        .query_one(
            "SELECT obj_description('audit_logs_2025_03'::regclass, 'pg_class')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(comment.unwrap().starts_with("strata staging partition"));
    // While nobody moves anything, the application changes the range.
    c.batch_execute(
        "DELETE FROM audit_logs WHERE user_id <= 10;
         UPDATE audit_logs SET details = '{\"changed\": true}' WHERE user_id BETWEEN 11 AND 20;
         UPDATE audit_logs SET created_at = created_at + interval '1 second' WHERE user_id BETWEEN 21 AND 25;
         UPDATE audit_logs SET created_at = '2025-07-01' WHERE user_id = 26;
         INSERT INTO audit_logs (user_id, action, details, created_at)
         SELECT g, 'late', '{}', '2025-03-31 23:59:59+00' FROM generate_series(5001, 5005) g",
    )
    .await
    .unwrap();
    reader.batch_execute("COMMIT").await.unwrap();
    let expected = whole_rows(&c).await;
    assert_eq!(expected.len(), 3000 - 10 + 5);

    let out = strata_cmd(&db)
        .args(["--config", &config, "maintain", "--now", "2025-04-15"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        whole_rows(&c).await,
        expected,
        "every change made meanwhile is in the result"
    );
    // July is past now + premake (April, premake 0): that row stays in the
    // default partition, reported, and gets no partition.
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM ONLY audit_logs_default WHERE user_id = 26"
        )
        .await,
        1,
        "the row moved to July stays in the default partition"
    );
    assert!(
        stderr(&out).contains("outside the window"),
        "{}",
        stderr(&out)
    );
    c.batch_execute("DELETE FROM audit_logs_default WHERE user_id = 26")
        .await
        .unwrap();
    assert_clean(&c).await;
}

async fn oid(c: &Client, name: &str) -> u32 {
    c.query_one("SELECT to_regclass($1)::oid", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// Indexes of the parent that have no attached index on `partition`.
async fn unattached_parent_indexes(c: &Client, partition: &str) -> i64 {
    count(
        c,
        &format!(
            "SELECT count(*) FROM pg_index pi WHERE pi.indrelid = 'audit_logs'::regclass
               AND NOT EXISTS (SELECT 1 FROM pg_inherits h JOIN pg_index ci ON ci.indexrelid = h.inhrelid
                                WHERE h.inhparent = pi.indexrelid AND ci.indrelid = '{partition}'::regclass)"
        ),
    )
    .await
}

/// Many rows moving and few staying: the default partition is swapped for a
/// rebuilt one in one transaction (no DELETE, no scan of the old default
/// under the lock), which keeps the rows outside the window, every parent
/// index, and leaves no staging table behind.
#[tokio::test]
async fn a_large_move_swaps_the_default_partition_keeping_the_rows_outside_the_window() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    fill(&c, 3000).await;
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action, details, created_at)
         SELECT g, 'far', '{}', '2031-06-01'::timestamptz + g * interval '1 day' FROM generate_series(1, 7) g",
    )
    .await
    .unwrap();
    let before = whole_rows(&c).await;
    let old_default = oid(&c, "audit_logs_default").await;
    maintain(&db, SPRING).await;
    assert_eq!(
        whole_rows(&c).await,
        before,
        "every row, whole, exactly once"
    );
    assert_ne!(
        oid(&c, "audit_logs_default").await,
        old_default,
        "the default partition was swapped"
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM ONLY audit_logs_default WHERE action = 'far'"
        )
        .await,
        7,
        "the rows outside the window stay in the (new) default partition"
    );
    assert_eq!(
        count(&c, "SELECT count(*) FROM ONLY audit_logs_default").await,
        7
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass
               AND inhrelid = 'audit_logs_default'::regclass"
        )
        .await,
        1,
        "attached"
    );
    let is_default: bool = c
        .query_one(
            "SELECT pg_get_expr(relpartbound, oid) = 'DEFAULT' FROM pg_class WHERE oid = 'audit_logs_default'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(is_default, "attached as the default partition");
    assert_eq!(unattached_parent_indexes(&c, "audit_logs_default").await, 0);
    assert_eq!(unattached_parent_indexes(&c, "audit_logs_2025_03").await, 0);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM pg_class WHERE obj_description(oid, 'pg_class') LIKE 'strata staging%'
                OR relname LIKE 'strata\\_default\\_%' OR relname LIKE 'strata\\_retired\\_%'"
        )
        .await,
        0,
        "no staging table, retired default or staging-named index left"
    );
    assert!(
        count(
            &c,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_logs_default'
               AND indexname = 'audit_logs_default_pkey'"
        )
        .await
            == 1,
        "the new default's indexes carry the default partition's names"
    );
    for sql in [
        "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'strata_move_%'",
        "SELECT count(*) FROM pg_proc WHERE proname LIKE 'strata_move_%'",
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'strata_move_%'",
    ] {
        assert_eq!(count(&c, sql).await, 0, "{sql}");
    }
    // A new row far outside the window still lands in the default partition.
    c.batch_execute("INSERT INTO audit_logs (user_id, action, details, created_at) VALUES (1, 'far', '{}', '2040-01-01')")
        .await
        .unwrap();
    assert_eq!(
        count(&c, "SELECT count(*) FROM ONLY audit_logs_default").await,
        8
    );
}

/// Many rows staying behind (more than one batch) would make the new default
/// partition's ATTACH scan large: no swap, the ranges move one by one.
#[tokio::test]
async fn no_swap_when_many_rows_would_stay_in_the_default_partition() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    fill(&c, 3000).await;
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action, details, created_at)
         SELECT g, 'far', '{}', '2031-06-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 500) g",
    )
    .await
    .unwrap();
    let before = whole_rows(&c).await;
    let old_default = oid(&c, "audit_logs_default").await;
    maintain(&db, SPRING).await;
    assert_eq!(
        whole_rows(&c).await,
        before,
        "every row, whole, exactly once"
    );
    assert_eq!(
        oid(&c, "audit_logs_default").await,
        old_default,
        "the default partition is the same table"
    );
    assert_eq!(
        count(&c, "SELECT count(*) FROM ONLY audit_logs_default").await,
        500
    );
}

/// A swap killed before its final transaction, then a run that will not swap
/// (many rows now stay behind): the unfinished swap's staging table and its
/// triggers on the default partition are dropped, and every row is in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_swap_leaves_no_trigger_behind() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    fill(&c, 3000).await;
    let reader = db.client().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM audit_logs_default")
        .await
        .unwrap();
    let config = config_file(
        "spring.toml",
        &format!("{SPRING}lock_timeout = \"20ms\"\nretries = 1000\n"),
    );
    let mut child = strata_cmd(&db)
        .args(["--config", &config, "maintain", "--now", "2025-04-15"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        &c,
        "SELECT count(*) = 1 FROM pg_class WHERE relkind = 'r' AND relname LIKE 'strata\\_default\\_%'
            AND obj_description(oid, 'pg_class') LIKE 'strata staging%'",
        "the swap's rest staging table exists",
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    reader.batch_execute("COMMIT").await.unwrap();
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action, details, created_at)
         SELECT g, 'far', '{}', '2031-06-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 500) g",
    )
    .await
    .unwrap();
    let before = whole_rows(&c).await;
    let out = strata_cmd(&db)
        .args(["--config", &config, "maintain", "--now", "2025-04-15"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        whole_rows(&c).await,
        before,
        "every row, whole, exactly once"
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'strata\\_default\\_%'"
        )
        .await,
        0,
        "the unfinished swap is gone"
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'strata_move_%'"
        )
        .await,
        0,
        "no change-log trigger keeps logging"
    );
    assert_eq!(
        count(&c, "SELECT count(*) FROM ONLY audit_logs_default").await,
        500
    );
}

/// A grant on the default partition itself would not carry over to a
/// rebuilt table: no swap then, and the grant is still there afterwards.
#[tokio::test]
async fn a_default_partition_with_grants_of_its_own_is_not_swapped() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    fill(&c, 3000).await;
    c.batch_execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'strata_test_auditor') THEN
             CREATE ROLE strata_test_auditor; END IF; END $$;
         GRANT SELECT ON audit_logs_default TO strata_test_auditor",
    )
    .await
    .unwrap();
    let old_default = oid(&c, "audit_logs_default").await;
    maintain(&db, SPRING).await;
    assert_eq!(oid(&c, "audit_logs_default").await, old_default);
    let granted: bool = c
        .query_one(
            "SELECT has_table_privilege('strata_test_auditor', 'audit_logs_default', 'SELECT')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(granted);
    assert_clean(&c).await;
}

/// Issue 15, finding 8: a long move says how far it got, a line per batch
/// with the rate and an ETA, and `--json` output stays one JSON document.
#[tokio::test]
async fn a_batched_move_prints_a_line_per_batch_and_json_stays_clean() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    fill(&c, 3000).await;
    let config = config_file("spring-progress.toml", SPRING);
    let out = strata_cmd(&db)
        .args(["--config", &config, "maintain", "--now", "2025-04-15"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    let march: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.starts_with(
                "copying into public.audit_logs_2025_03 out of public.audit_logs_default: block ",
            )
        })
        .collect();
    assert!(
        march.len() >= 3,
        "a line per batch of 400 rows out of ~1,500:\n{stdout}"
    );
    // block done/total: rising, ending at the total with 100%.
    let blocks: Vec<(u64, u64)> = march
        .iter()
        .map(|l| {
            let b = l.split("block ").nth(1).unwrap().split(' ').next().unwrap();
            let (done, total) = b.split_once('/').unwrap();
            (
                done.replace(',', "").parse().unwrap(),
                total.replace(',', "").parse().unwrap(),
            )
        })
        .collect();
    assert!(blocks.windows(2).all(|w| w[0].0 < w[1].0), "{blocks:?}");
    let (last_done, total) = *blocks.last().unwrap();
    assert_eq!(last_done, total, "{stdout}");
    assert!(march.last().unwrap().contains("(100%)"), "{stdout}");
    assert!(
        march.iter().all(|l| l.contains(" rows/s, ETA ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("reconciling 3 staging table(s) with writes to public.audit_logs_default"),
        "the phases are said too (two months and the rest):\n{stdout}"
    );
    assert_eq!(
        count(&c, "SELECT count(*) FROM ONLY audit_logs_default").await,
        0
    );

    // The same with --json on a fresh copy: nothing but the document.
    let db = TestDb::migrated().await;
    fill(&db.client().await, 3000).await;
    let out = strata_cmd(&db)
        .args([
            "--config",
            &config,
            "--json",
            "maintain",
            "--now",
            "2025-04-15",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert!(
        v["results"].as_array().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
}
