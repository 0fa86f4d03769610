mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{stderr, stdout, strata, TestDb};
use strata::config::{Config, TableSpec};
use strata::partition;

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// (name, from, to) of every range partition, bounds read as instants.
async fn ranges(c: &tokio_postgres::Client) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    c.query(
        "SELECT c.relname::text,
                (regexp_match(pg_get_expr(c.relpartbound, c.oid), $$FROM \\('([^']+)'\\)$$))[1]::timestamptz,
                (regexp_match(pg_get_expr(c.relpartbound, c.oid), $$TO \\('([^']+)'\\)$$))[1]::timestamptz
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'public.audit_logs'::regclass AND c.relname <> 'audit_logs_default'
          ORDER BY 2",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

fn write_config(name: &str, text: &str) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("part-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_seed_config_makes_18_utc_partitions_whatever_the_time_zone() {
    for tz in ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"] {
        let db = TestDb::migrated().await;
        // Every session of this database, strata's included, starts in `tz`.
        db.client()
            .await
            .batch_execute(&format!("ALTER DATABASE {} SET TimeZone = '{tz}'", db.name))
            .await
            .unwrap();
        let out = strata(&db, &["maintain", "--now", "2025-12-15"]);
        assert!(out.status.success(), "{tz}: {}", stderr(&out));
        let c = db.client().await;
        c.batch_execute(&format!("SET TimeZone = '{tz}'"))
            .await
            .unwrap();
        let got = ranges(&c).await;
        assert_eq!(got.len(), 18, "{tz}: {got:?}");
        assert_eq!(got[0].0, "audit_logs_2025_01");
        assert_eq!(got[17].0, "audit_logs_2026_06");
        let mut month = ts("2025-01-01T00:00:00Z");
        for (name, from, to) in &got {
            let next = month.checked_add_months(chrono::Months::new(1)).unwrap();
            assert_eq!((*from, *to), (month, next), "{tz}: {name}");
            month = next;
        }
        // The bound text itself is UTC midnight when read in UTC.
        c.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
        let text: String = c
            .query_one("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'audit_logs_2025_03'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            text, "FOR VALUES FROM ('2025-03-01 00:00:00+00') TO ('2025-04-01 00:00:00+00')",
            "{tz}"
        );
    }
}

#[tokio::test]
async fn maintain_is_idempotent_and_premake_needs_no_data() {
    let db = TestDb::migrated().await;
    let first = strata(&db, &["--json", "maintain", "--now", "2025-12-15"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(v["plan"]["steps"].as_array().unwrap().len(), 18);
    let second = strata(&db, &["--json", "maintain", "--now", "2025-12-15"]);
    let v: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(v["plan"]["steps"].as_array().unwrap().len(), 0, "{v}");
    let human = strata(&db, &["maintain", "--now", "2025-12-15"]);
    assert!(
        stdout(&human).contains("nothing to do"),
        "{}",
        stdout(&human)
    );
    // Each new partition got the parent's indexes and fillfactor 100.
    let c = db.client().await;
    let indexes: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_logs_2026_06'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 9, "strata's 8 and the primary key");
    let opts: Vec<String> = c
        .query_one(
            "SELECT reloptions FROM pg_class WHERE relname = 'audit_logs_2026_06'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(opts, vec!["fillfactor=100"]);
    let checks: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'strata_bounds'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(checks, 0, "the temporary CHECK constraints are gone");
}

#[tokio::test]
async fn rows_in_the_default_partition_end_up_in_their_partition_exactly_once() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    // Only the default partition exists: every row lands there.
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action, created_at)
         SELECT g, 'a', t FROM generate_series(1, 300) g,
              LATERAL (SELECT (ARRAY['2025-03-10', '2024-06-01', '2031-01-31 23:59:59+00', '2025-11-30 23:30:00-05'])
                       [1 + g % 4]::timestamptz AS t) x",
    )
    .await
    .unwrap();
    let before: Vec<(i64, DateTime<Utc>)> = c
        .query("SELECT id, created_at FROM audit_logs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let out = strata(&db, &["maintain", "--now", "2025-12-15"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after: Vec<(i64, DateTime<Utc>, String)> = c
        .query(
            "SELECT id, created_at, tableoid::regclass::text FROM audit_logs ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        after.len(),
        before.len(),
        "nothing lost, nothing duplicated"
    );
    for ((id, t), (id2, t2, part)) in before.iter().zip(&after) {
        assert_eq!((id, t), (id2, t2));
        // Rows before `start` (2025-01) or past now + premake stay in the
        // default partition: no partition is made outside that window.
        let in_window = *t >= ts("2025-01-01T00:00:00Z") && *t < ts("2026-07-01T00:00:00Z");
        let expected = if in_window {
            format!("audit_logs_{}", t.format("%Y_%m"))
        } else {
            "audit_logs_default".to_string()
        };
        assert_eq!(part, &expected, "row {id} at {t}");
    }
    // 23:30 on 30 November in New York is already December in UTC.
    assert!(after.iter().any(|(_, _, p)| p == "audit_logs_2025_12"));
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM audit_logs_default", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        in_default, 150,
        "2024-06 and 2031-01 are outside the window"
    );
    assert!(
        stderr(&out).contains("outside the window"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_held_lock_makes_maintenance_retry_then_fail_naming_the_holder_and_leave_nothing_half_made(
) {
    let db = TestDb::migrated().await;
    let holder = db.client().await;
    holder.batch_execute("SET application_name = 'the_lock_holder'; BEGIN; LOCK TABLE audit_logs IN SHARE UPDATE EXCLUSIVE MODE").await.unwrap();
    let config = write_config(
        "tight.toml",
        "[maintenance]\nlock_timeout = \"50ms\"\nretries = 3\n",
    );
    let started = Instant::now();
    let out = strata(
        &db,
        &["--config", &config, "maintain", "--now", "2025-02-15"],
    );
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("within 3 attempts of 50 ms"), "{text}");
    assert!(
        text.contains("ShareUpdateExclusiveLock") && text.contains("the_lock_holder"),
        "{text}"
    );
    // 8 steps x 3 attempts with backoff: it gave up instead of queueing.
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    let c = db.client().await;
    assert!(ranges(&c).await.is_empty());
    let stray: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'audit_logs_20%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stray, 0, "no standalone half-made partition is left");
    holder.batch_execute("COMMIT").await.unwrap();
    let out = strata(&db, &["maintain", "--now", "2025-02-15"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ranges(&c).await.len(), 8);
}

#[tokio::test]
async fn a_second_maintain_exits_3_while_the_first_runs() {
    let db = TestDb::migrated().await;
    // Hold the parent so the first run sits in its lock retries.
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE audit_logs IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    let config = write_config(
        "patient.toml",
        "[maintenance]\nlock_timeout = \"100ms\"\nretries = 1000\n",
    );
    let mut first = common::strata_cmd(&db)
        .args(["--config", &config, "maintain", "--now", "2025-12-15"])
        .spawn()
        .unwrap();
    // Wait until the first run holds its advisory lock.
    let c = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if held > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first maintain never took its lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = strata(&db, &["maintain", "--now", "2025-12-15"]);
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let status = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(ranges(&c).await.len(), 18);
}

#[tokio::test]
async fn retention_detaches_or_drops_only_what_is_past_it() {
    // Retention follows the real clock only (a pretended time never
    // destroys), so the rows are placed relative to the server's now.
    for mode in ["detach", "drop"] {
        let db = TestDb::migrated().await;
        let c = db.client().await;
        assert!(strata(&db, &["maintain"]).status.success());
        c.batch_execute(
            "INSERT INTO audit_logs (user_id, action, created_at)
             VALUES (1, 'a', now() - interval '20 months'), (2, 'b', now() - interval '1 month')",
        )
        .await
        .unwrap();
        let config = write_config(
            &format!("retention-{mode}.toml"),
            &format!("[[table]]\nretention = \"12 months\"\nretention_mode = \"{mode}\"\n"),
        );
        assert!(strata(&db, &["--config", &config, "config", "apply"])
            .status
            .success());
        let out = strata(&db, &["--config", &config, "maintain"]);
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let cutoff: DateTime<Utc> = c
            .query_one("SELECT now() - interval '12 months'", &[])
            .await
            .unwrap()
            .get(0);
        let left = ranges(&c).await;
        assert!(!left.is_empty());
        for (name, _, to) in &left {
            assert!(
                *to > cutoff,
                "{mode}: {name} ends before the cutoff and was kept"
            );
        }
        let old: String = c
            .query_one(
                "SELECT 'audit_logs_' || to_char((now() - interval '20 months') AT TIME ZONE 'UTC', 'YYYY_MM')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let exists = |name: String| {
            let c = &c;
            async move {
                c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                    .await
                    .unwrap()
                    .get::<_, bool>(0)
            }
        };
        assert!(!exists(old.clone()).await, "{mode}: the live name is free");
        assert_eq!(
            exists(format!("{old}_detached")).await,
            mode == "detach",
            "{mode}: a detached partition stays as a table, renamed out of the live names"
        );
        let kept: i64 = c
            .query_one("SELECT count(*) FROM audit_logs", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, 1, "{mode}: the recent row stays");
        let again = strata(&db, &["--json", "--config", &config, "maintain"]);
        let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(
            v["plan"]["steps"].as_array().unwrap().len(),
            0,
            "{mode}: idempotent"
        );
    }
}

#[tokio::test]
async fn without_a_default_partition_retention_detaches_concurrently() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    c.batch_execute("DROP TABLE audit_logs_default")
        .await
        .unwrap();
    assert!(strata(&db, &["maintain"]).status.success());
    let config = write_config(
        "retention-conc.toml",
        "[[table]]\nretention = \"12 months\"\n",
    );
    assert!(strata(&db, &["--config", &config, "config", "apply"])
        .status
        .success());
    let out = strata(&db, &["--json", "--config", &config, "maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let detaches: Vec<&serde_json::Value> = v["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "detach")
        .collect();
    assert!(!detaches.is_empty());
    assert!(detaches.iter().all(|s| s["concurrently"] == true));
    let first: bool = c
        .query_one(
            "SELECT to_regclass('public.audit_logs_2025_01_detached') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(first, "the oldest month was detached and renamed");
}

/// Writers insert continuously while maintenance creates partitions and
/// moves default-partition rows: none may fail, none may wait long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_never_stalls_concurrent_inserts() {
    let db = TestDb::migrated().await;
    let spec = TableSpec::seed_default();
    let config = Config::default();
    {
        // The month the writers use exists up front.
        let mut c = db.client().await;
        partition::maintain(
            &mut c,
            &spec,
            ts("2025-01-15T00:00:00Z"),
            &config.maintenance,
            |_| {},
        )
        .await
        .unwrap();
        c.batch_execute("INSERT INTO audit_logs (user_id, action, created_at) SELECT g, 'early', '2025-09-09' FROM generate_series(1, 500) g")
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (url, stop) = (db.url.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let c = strata::db::connect(&url).await.unwrap();
            let stmt = c
                .prepare(
                    "INSERT INTO audit_logs (user_id, action, created_at) VALUES ($1, 'w', $2)",
                )
                .await
                .unwrap();
            let (mut ok, mut failed, mut worst) = (0u64, 0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let at = ts("2025-01-20T00:00:00Z") + chrono::Duration::seconds((ok % 1000) as i64);
                match c.execute(&stmt, &[&(w as i64), &at]).await {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
                worst = worst.max(t.elapsed());
            }
            (ok, failed, worst)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = db.client().await;
    for now in [
        "2025-06-15T00:00:00Z",
        "2025-12-15T00:00:00Z",
        "2026-06-15T00:00:00Z",
    ] {
        let (_, report) = partition::maintain(&mut c, &spec, ts(now), &config.maintenance, |_| {})
            .await
            .unwrap();
        assert_eq!(report.failed(), 0, "{:?}", report.results);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut worst) = (0, 0, Duration::ZERO);
    for w in writers {
        let (o, f, t) = w.await.unwrap();
        ok += o;
        failed += f;
        worst = worst.max(t);
    }
    eprintln!("inserts during maintenance: {ok} ok, {failed} failed, longest {worst:?}");
    assert_eq!(failed, 0);
    assert!(ok > 100, "the writers actually ran ({ok})");
    assert!(
        worst < Duration::from_millis(200),
        "longest insert took {worst:?}"
    );
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM audit_logs_default", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_default, 0, "the early rows were moved out");
}

async fn rows_of(c: &tokio_postgres::Client, sql: &str) -> Vec<(i64, String, Option<String>)> {
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

const MARCH_ONLY: &str = "[[table]]\nstart = \"2025-03-01\"\npremake = 0\n[maintenance]\nmove_batch_rows = 500\nlock_timeout = \"50ms\"\nretries = 2\n";

#[tokio::test]
async fn an_interrupted_batched_move_resumes_and_reconciles_changes_made_meanwhile() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action, details, created_at)
         SELECT g, 'a', jsonb_build_object('g', g), '2025-03-01'::timestamptz + g * interval '10 minutes'
           FROM generate_series(1, 3000) g",
    )
    .await
    .unwrap();
    let config = write_config("march.toml", MARCH_ONLY);
    // An open writer on the default partition blocks only the final step.
    let writer = db.client().await;
    writer
        .batch_execute("BEGIN; LOCK TABLE audit_logs_default IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let out = strata(
        &db,
        &["--config", &config, "maintain", "--now", "2025-03-15"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let staged: i64 = c
        .query_one("SELECT count(*) FROM audit_logs_2025_03", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(staged, 3000, "the batches were copied and committed");
    let visible: i64 = c
        .query_one("SELECT count(*) FROM audit_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        visible, 3000,
        "readers still see every row exactly once (in the default partition)"
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
    writer.batch_execute("COMMIT").await.unwrap();

    // Meanwhile the application deletes, updates and adds rows of that month.
    c.batch_execute(
        "DELETE FROM audit_logs WHERE user_id <= 10;
         UPDATE audit_logs SET details = '{\"changed\": true}' WHERE user_id BETWEEN 11 AND 20;
         UPDATE audit_logs SET created_at = '2025-07-01' WHERE user_id = 21;
         INSERT INTO audit_logs (user_id, action, details, created_at)
         SELECT g, 'late', '{}', '2025-03-31 23:59:59+00' FROM generate_series(5001, 5005) g",
    )
    .await
    .unwrap();
    let expected = rows_of(
        &c,
        "SELECT id, action, details::text FROM audit_logs ORDER BY id",
    )
    .await;

    let out = strata(
        &db,
        &["--config", &config, "maintain", "--now", "2025-03-15"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let got = rows_of(
        &c,
        "SELECT id, action, details::text FROM audit_logs ORDER BY id",
    )
    .await;
    assert_eq!(got.len(), 3000 - 10 + 5);
    assert_eq!(
        got, expected,
        "every change made during the move is in the result"
    );
    let march: i64 = c
        .query_one("SELECT count(*) FROM ONLY audit_logs_2025_03", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(march, 2995 - 1, "all of March moved");
    let july: Vec<(i64, String, Option<String>)> = rows_of(
        &c,
        "SELECT user_id, action, details::text FROM ONLY audit_logs_default",
    )
    .await;
    // July is past now + premake (March, premake 0): the row moved there
    // stays in the default partition, reported, with no partition made.
    assert_eq!(
        july.len(),
        1,
        "the row moved to July is in the default partition"
    );
    assert_eq!(july[0].0, 21);
    assert!(
        stderr(&out).contains("outside the window"),
        "{}",
        stderr(&out)
    );
    let attached: bool = c
        .query_one(
            "SELECT relispartition FROM pg_class WHERE relname = 'audit_logs_2025_03'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(attached);
    let comment: Option<String> = c
        .query_one(
            "SELECT obj_description('audit_logs_2025_03'::regclass, 'pg_class')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment, None, "the staging mark is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_into_the_moving_range_lose_nothing_during_a_batched_move() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO audit_logs (user_id, action, created_at)
         SELECT g, 'before', '2025-03-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 6000) g",
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let (url, stop) = (db.url.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let c = strata::db::connect(&url).await.unwrap();
            let (mut ok, mut failed, mut worst) = (0i64, 0i64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = c
                    .execute(
                        "INSERT INTO audit_logs (user_id, action, created_at) VALUES ($1, 'during', '2025-03-20')",
                        &[&(100_000 + w)],
                    )
                    .await;
                match r { Ok(_) => ok += 1, Err(e) => { failed += 1; eprintln!("insert failed: {e:?}"); } }
                worst = worst.max(t.elapsed());
            }
            (ok, failed, worst)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let config = Config::from_toml(
        "[[table]]\nstart = \"2025-03-01\"\npremake = 0\n[maintenance]\nmove_batch_rows = 300\n",
    )
    .unwrap();
    let mut mc = db.client().await;
    let (plan, report) = partition::maintain(
        &mut mc,
        &config.tables[0],
        ts("2025-03-15T00:00:00Z"),
        &config.maintenance,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.failed(), 0, "{:?}", report.results);
    assert!(
        matches!(plan.steps[0], partition::Step::Create { default_rows, .. } if default_rows >= 6000)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut worst) = (0, 0, Duration::ZERO);
    for w in writers {
        let (o, f, t) = w.await.unwrap();
        ok += o;
        failed += f;
        worst = worst.max(t);
    }
    eprintln!("inserts into the moving range: {ok} ok, {failed} failed, longest {worst:?}");
    assert_eq!(failed, 0);
    let total: i64 = c
        .query_one("SELECT count(*) FROM audit_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        total,
        6000 + ok,
        "every row, before and during, exactly once"
    );
    let distinct: i64 = c
        .query_one("SELECT count(DISTINCT id) FROM audit_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, total);
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM audit_logs_default", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_default, 0);
}

#[tokio::test]
async fn a_key_strata_cannot_plan_for_is_refused_with_the_key_named() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE naive_logs (id bigint, created_at timestamp NOT NULL) PARTITION BY RANGE (created_at);
         CREATE TABLE by_id (id bigint, created_at timestamptz NOT NULL) PARTITION BY RANGE (id);",
    )
    .await
    .unwrap();
    for (table, found) in [
        (
            "naive_logs",
            "RANGE created_at (timestamp without time zone)",
        ),
        ("by_id", "RANGE id (bigint)"),
    ] {
        let config = write_config(
            &format!("{table}.toml"),
            &format!("[[table]]\nname = \"{table}\"\n"),
        );
        let out = common::strata(&db, &["--config", &config, "maintain"]);
        assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
        let err = common::stderr(&out);
        assert!(err.contains(found), "{err}");
        let made: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1)",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(made, 0, "nothing was created for {table}");
    }
}
