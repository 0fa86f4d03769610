//! The archive tier against a real PostgreSQL, a real S3 API (moto) and
//! `file://`, read back by DuckDB.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::moto::Moto;
use common::{config_file, seeded, stderr, stdout, strata, strata_cmd, TestDb};
use serde_json::Value;

/// The seeded months (2025-01..06) are past any archive_after of 13
/// months by the real clock of these tests (2026-12 or later).
const MONTHS: [&str; 6] = [
    "2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06",
];

fn store_dir(tag: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "archive-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn archive_config(url: &str, mode_archive: bool) -> String {
    let mode = if mode_archive {
        "retention = \"13 months\"\nretention_mode = \"archive\"\n"
    } else {
        ""
    };
    config_file(
        "strata.toml",
        &format!("[[table]]\nname = \"audit_logs\"\n{mode}archive_after = \"13 months\"\narchive_to = \"{url}\"\n"),
    )
}

fn run_ok(db: &TestDb, cfg: &str, env: &[(&str, String)], args: &[&str]) -> Value {
    let mut cmd = strata_cmd(db);
    cmd.args(["--config", cfg, "--json"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "strata {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// `strata --json archive search ARGS`: the NDJSON rows (stdout) and the
/// summary (the last stderr line).
fn search_ok(db: &TestDb, cfg: &str, env: &[(&str, String)], args: &[&str]) -> (Vec<Value>, Value) {
    let mut cmd = strata_cmd(db);
    cmd.args(["--config", cfg, "--json", "archive", "search"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "search {args:?}: {}", stderr(&out));
    let rows = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = serde_json::from_str(stderr(&out).lines().last().unwrap()).unwrap();
    (rows, summary)
}

fn run_raw(db: &TestDb, cfg: &str, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut cmd = strata_cmd(db);
    cmd.args(["--config", cfg]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A seeded database with the configuration applied and the current
/// partitions made (by the real clock), so writers have somewhere to go.
async fn prepared(rows: u64, cfg: &str) -> TestDb {
    let db = seeded(rows).await;
    let out = strata(&db, &["--config", cfg, "config", "apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = strata(&db, &["--config", cfg, "maintain", "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    db
}

async fn partition_exists(db: &TestDb, name: &str) -> bool {
    db.client()
        .await
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// Count and `convert verify`'s content hash of a relation, UTC rendering.
async fn hash_of(db: &TestDb, rel: &str) -> (i64, String) {
    let c = db.client().await;
    c.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    let row = c
        .query_one(
            &format!(
                "SELECT count(*)::int8, coalesce(sum(hashtextextended(ROW(id, user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, severity, created_at)::text, 0)::numeric), 0)::text FROM {rel}"
            ),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Inserts into the current month until stopped; returns how many went in.
fn writer(db: &TestDb, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let url = db.url.clone();
    tokio::spawn(async move {
        let c = strata::db::connect(&url).await.unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            c.execute(
                "INSERT INTO audit_logs (user_id, action, created_at) VALUES (424242, 'concurrent', now())",
                &[],
            )
            .await
            .expect("a writer of the current month must never fail");
            n += 1;
            tokio::task::yield_now().await;
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_archive_drops_only_verified_months_and_restores_every_row() {
    let dir = store_dir("file");
    let url = format!("file://{}", dir.display());
    let cfg = archive_config(&url, true);
    let db = prepared(3_000, &cfg).await;
    let c = db.client().await;
    c.batch_execute("CREATE TABLE before_2025_03 AS SELECT * FROM audit_logs_2025_03")
        .await
        .unwrap();
    let before = hash_of(&db, "before_2025_03").await;
    assert!(before.0 > 100, "the seed put rows in March: {before:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&db, stop.clone());
    let out = run_ok(&db, &cfg, &[], &["archive", "run"]);
    stop.store(true, Ordering::Relaxed);
    let written = w.await.unwrap();
    let concurrent: i64 = c
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE action = 'concurrent'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        concurrent as u64, written,
        "every concurrent insert is there"
    );

    let archived: Vec<&str> = out["archived"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["period"].as_str().unwrap())
        .collect();
    for m in MONTHS {
        assert!(archived.contains(&m), "{m} archived: {out}");
    }
    let dropped: Vec<&str> = out["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["period"].as_str().unwrap())
        .collect();
    for m in MONTHS {
        assert!(dropped.contains(&m), "{m} dropped: {out}");
        let part = format!("audit_logs_{}", m.replace('-', "_"));
        assert!(!partition_exists(&db, &part).await, "{part} dropped");
        let mf = dir.join(format!("table=audit_logs/period={m}/manifest.json"));
        let manifest: Value = serde_json::from_slice(&std::fs::read(&mf).unwrap()).unwrap();
        assert_eq!(
            manifest["seal"],
            Value::Null,
            "no strata.seals table: no seal"
        );
        assert!(dir
            .join(format!("table=audit_logs/period={m}/part-00000.parquet"))
            .exists());
    }
    // The current period and later ones stay, whatever is due.
    let current: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM audit_logs WHERE created_at >= date_trunc('month', now()))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(current);
    assert!(
        files_under(&dir)
            .iter()
            .all(|f| !f.starts_with("_strata_tmp")),
        "no temporary key left: {:?}",
        files_under(&dir)
    );

    // The store's March, back in PostgreSQL, row for row.
    let r = run_ok(&db, &cfg, &[], &["archive", "restore", "2025-03"]);
    assert_eq!(r["already_restored"], false, "{r}");
    let after = hash_of(&db, "audit_logs_2025_03").await;
    assert_eq!(
        after, before,
        "count and content hash of the restored month"
    );
    for (a, b) in [
        ("before_2025_03", "audit_logs_2025_03"),
        ("audit_logs_2025_03", "before_2025_03"),
    ] {
        let n: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) d"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "rows of {a} missing from {b}");
    }
    // Attached, reached through the parent, indexed like its siblings.
    let via_parent: i64 = c
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE created_at >= '2025-03-01' AND created_at < '2025-04-01'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(via_parent, before.0);
    let indexes: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_logs_2025_03'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let sibling: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_logs_2025_12'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(indexes > 0 && indexes == sibling, "{indexes} vs {sibling}");
    let again = run_ok(&db, &cfg, &[], &["archive", "restore", "2025-03"]);
    assert_eq!(again["already_restored"], true, "{again}");
    // A restored month is not dropped again by the next run.
    let next = run_ok(&db, &cfg, &[], &["archive", "run"]);
    assert!(next["dropped"].as_array().unwrap().is_empty(), "{next}");
    assert!(partition_exists(&db, "audit_logs_2025_03").await);

    let list = run_ok(&db, &cfg, &[], &["archive", "list"]);
    let rows = list["archives"].as_array().unwrap();
    let march = rows.iter().find(|r| r["period"] == "2025-03").unwrap();
    assert_eq!(march["state"], "restored");
    assert_eq!(march["rows"], before.0);
    assert!(march["store_bytes"].as_i64().unwrap() > 0);
    assert!(march["ratio"].as_f64().unwrap() > 1.0, "{march}");
}

#[tokio::test]
async fn tampering_with_a_file_makes_verify_exit_3_naming_it() {
    let dir = store_dir("tamper");
    let cfg = archive_config(&format!("file://{}", dir.display()), false);
    let db = prepared(600, &cfg).await;
    // health judges the tier: months due, then archived, then one tampered.
    let archive_check = |db: &TestDb| {
        let out = run_raw(db, &cfg, &[], &["--json", "health"]);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "archive")
            .unwrap_or_else(|| panic!("no archive check: {report:#}"))
            .clone()
    };
    let due = archive_check(&db);
    assert_eq!(due["status"], "warning", "{due:#}");
    assert!(
        due["evidence"]["periods_due"].as_u64().unwrap() >= 6,
        "{due:#}"
    );
    run_ok(&db, &cfg, &[], &["archive", "run"]);
    let done = archive_check(&db);
    assert_eq!(done["status"], "ok", "{done:#}");
    assert_eq!(done["evidence"]["periods_due"], 0, "{done:#}");
    let ok = run_ok(&db, &cfg, &[], &["archive", "verify"]);
    assert!(ok["verified"].as_array().unwrap().len() >= 6, "{ok}");
    // Without retention_mode = "archive" nothing is dropped.
    assert!(partition_exists(&db, "audit_logs_2025_02").await);

    let file = dir.join("table=audit_logs/period=2025-02/part-00000.parquet");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&file, bytes).unwrap();
    let out = run_raw(&db, &cfg, &[], &["archive", "verify", "2025-02"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("table=audit_logs/period=2025-02/part-00000.parquet"),
        "{}",
        stderr(&out)
    );
    // Other months still verify; the failure is recorded.
    run_ok(&db, &cfg, &[], &["archive", "verify", "2025-03"]);
    let list = run_ok(&db, &cfg, &[], &["archive", "list"]);
    let feb = list["archives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["period"] == "2025-02")
        .unwrap()
        .clone();
    assert_eq!(feb["verify_ok"], false, "{feb}");
    let tampered = archive_check(&db);
    assert_eq!(tampered["status"], "critical", "{tampered:#}");
    assert_eq!(tampered["evidence"]["failed_verifies"], 1, "{tampered:#}");
    assert!(
        tampered["fix"]
            .as_str()
            .unwrap()
            .contains("strata archive verify"),
        "{tampered:#}"
    );

    let bad = run_raw(&db, &cfg, &[], &["archive", "verify", "2025-13"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("2025-13"), "{}", stderr(&bad));
}

#[tokio::test]
async fn a_pretended_future_never_archives_then_drops() {
    let dir = store_dir("future");
    let cfg = archive_config(&format!("file://{}", dir.display()), true);
    let db = prepared(300, &cfg).await;
    let out = strata(
        &db,
        &[
            "--config",
            &cfg,
            "--json",
            "maintain",
            "--now",
            "2031-01-01",
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for m in MONTHS {
        let part = format!("audit_logs_{}", m.replace('-', "_"));
        assert!(
            partition_exists(&db, &part).await,
            "{part} kept by maintain --now"
        );
    }
    assert!(files_under(&dir).is_empty(), "maintain archives nothing");
    let out = strata(
        &db,
        &["--config", &cfg, "archive", "run", "--now", "2031-01-01"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "archive run takes no pretended time"
    );
    for m in MONTHS {
        let part = format!("audit_logs_{}", m.replace('-', "_"));
        assert!(partition_exists(&db, &part).await);
    }
}

#[tokio::test]
async fn a_second_archiver_refuses_with_exit_3() {
    let dir = store_dir("busy");
    let cfg = archive_config(&format!("file://{}", dir.display()), true);
    let db = prepared(300, &cfg).await;
    let holder = db.client().await;
    let spec = strata::config::TableSpec::seed_default();
    let lock = strata::partition::table_lock(&spec.name);
    assert!(strata::db::try_advisory_lock(&holder, &lock).await.unwrap());
    let out = run_raw(&db, &cfg, &[], &["archive", "run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(files_under(&dir).is_empty());
    assert!(partition_exists(&db, "audit_logs_2025_01").await);
}

#[tokio::test]
async fn killed_mid_upload_and_mid_drop_the_next_run_ends_consistent() {
    let dir = store_dir("kill");
    let cfg = archive_config(&format!("file://{}", dir.display()), true);
    let db = prepared(1_200, &cfg).await;
    let hook = |point: &str| vec![("STRATA_ARCHIVE_FAIL_AFTER", point.to_string())];

    // Killed after the first upload: an orphan temporary key, no manifest,
    // nothing dropped.
    let out = run_raw(&db, &cfg, &hook("upload"), &["archive", "run"]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    let files = files_under(&dir);
    assert!(
        files.iter().any(|f| f.starts_with("_strata_tmp/")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.ends_with("manifest.json")),
        "{files:?}"
    );
    for m in MONTHS {
        assert!(partition_exists(&db, &format!("audit_logs_{}", m.replace('-', "_"))).await);
    }

    // Killed inside the first drop's transaction (after DETACH): rolled
    // back, the partition is still there; the orphan is gone.
    let out = run_raw(&db, &cfg, &hook("detach"), &["--json", "archive", "run"]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(partition_exists(&db, "audit_logs_2025_01").await);
    assert!(files_under(&dir)
        .iter()
        .all(|f| !f.starts_with("_strata_tmp/")));

    // Killed after the first drop committed, before it was recorded.
    let out = run_raw(&db, &cfg, &hook("drop"), &["archive", "run"]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(!partition_exists(&db, "audit_logs_2025_01").await);

    let done = run_ok(&db, &cfg, &[], &["archive", "run"]);
    let c = db.client().await;
    for m in MONTHS {
        let part = format!("audit_logs_{}", m.replace('-', "_"));
        assert!(
            !partition_exists(&db, &part).await,
            "{part} dropped in the end: {done}"
        );
        let state: String = c
            .query_one("SELECT state FROM strata.archives WHERE period = $1", &[&m])
            .await
            .unwrap()
            .get(0);
        assert_eq!(state, "dropped", "{m}");
    }
    // Every dropped month has a manifest that still verifies, and no
    // temporary key is left.
    run_ok(&db, &cfg, &[], &["archive", "verify"]);
    assert!(files_under(&dir)
        .iter()
        .all(|f| !f.starts_with("_strata_tmp/")));
}

#[tokio::test]
async fn duckdb_reads_the_archive_with_postgres_counts_and_sums() {
    let Some(python) = common::tools::python_with("duckdb") else {
        return;
    };
    let dir = store_dir("duckdb");
    let cfg = archive_config(&format!("file://{}", dir.display()), false);
    let db = prepared(2_000, &cfg).await;
    let c = db.client().await;
    let rows = c
        .query(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM'), count(*)::int8, sum(user_id)::int8,
                    coalesce(sum(resource_id), 0)::int8, sum(length(action))::int8
               FROM audit_logs WHERE created_at < '2025-07-01' GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let pg: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(2),
                r.get::<_, i64>(3),
                r.get::<_, i64>(4)
            )
        })
        .collect();
    assert_eq!(pg.len(), 6);
    run_ok(&db, &cfg, &[], &["archive", "run"]);
    let glob = dir.join("table=*/period=*/*.parquet");
    let code = format!(
        "import duckdb\n\
         rows = duckdb.sql(\"SELECT period, count(*), sum(user_id), coalesce(sum(resource_id), 0), sum(length(action)) \
           FROM read_parquet('{}', hive_partitioning = true) WHERE \\\"table\\\" = 'audit_logs' \
           GROUP BY period HAVING count(*) > 0 ORDER BY period\").fetchall()\n\
         for r in rows: print(*r)\n\
         t = duckdb.sql(\"SELECT typeof(created_at), typeof(details) FROM read_parquet('{}') LIMIT 1\").fetchall()\n\
         print('types', *t[0])",
        glob.display(),
        glob.display()
    );
    let out = std::process::Command::new(python)
        .args(["-c", &code])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..lines.len() - 1],
        pg[..],
        "DuckDB vs PostgreSQL per month"
    );
    let types = lines.last().unwrap();
    assert!(types.contains("TIMESTAMP WITH TIME ZONE"), "{types}");
    assert!(types.contains("JSON"), "details is JSON to DuckDB: {types}");
}

#[tokio::test]
async fn s3_through_moto_archives_searches_and_restores() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.create_bucket("strata-archive");
    let env = moto.env();
    let cfg = archive_config("s3://strata-archive/prod", true);
    let db = prepared(3_000, &cfg).await;
    let c = db.client().await;
    let user: i64 = c
        .query_one(
            "SELECT user_id FROM audit_logs WHERE created_at < '2025-07-01' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let expected: i64 = c
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND created_at < '2025-07-01'",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    let before = hash_of(&db, "audit_logs_2025_04").await;

    // A bucket that does not exist: a clear error, nothing dropped.
    let missing = archive_config("s3://no-such-bucket/x", true);
    let out = strata(&db, &["--config", &missing, "config", "apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_raw(&db, &missing, &env, &["archive", "run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("s3://no-such-bucket/x"),
        "{}",
        stderr(&out)
    );
    assert!(partition_exists(&db, "audit_logs_2025_01").await);
    let out = strata(&db, &["--config", &cfg, "config", "apply"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let run = run_ok(&db, &cfg, &env, &["archive", "run"]);
    assert!(run["dropped"].as_array().unwrap().len() >= 6, "{run}");
    let keys = moto.keys("strata-archive");
    for m in MONTHS {
        assert!(
            keys.contains(&format!("prod/table=audit_logs/period={m}/manifest.json")),
            "{keys:?}"
        );
        assert!(keys.contains(&format!(
            "prod/table=audit_logs/period={m}/part-00000.parquet"
        )));
    }
    assert!(keys.iter().all(|k| !k.contains("_strata_tmp")), "{keys:?}");

    // Search answers from the files: every row of the user, pruned.
    let uid = user.to_string();
    let (found, summary) = search_ok(&db, &cfg, &env, &["--user-id", &uid, "--limit", "100000"]);
    assert_eq!(found.len() as i64, expected);
    assert!(found.iter().all(|r| r["user_id"] == user));
    // Files are decoded side by side but written in period order, each file
    // in its (created_at, id) order: the whole output is in that order.
    let key = |r: &Value| {
        (
            r["created_at"].as_str().unwrap().to_string(),
            r["id"].as_i64().unwrap(),
        )
    };
    assert!(
        found.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "rows out of order across the months"
    );
    assert!(
        summary["summary"]["row_groups"].as_u64().unwrap() >= 6,
        "{summary}"
    );
    // A limit that ends inside the second month: exactly the first rows.
    let first_month = found
        .iter()
        .take_while(|r| {
            r["created_at"].as_str().unwrap()[..7] == found[0]["created_at"].as_str().unwrap()[..7]
        })
        .count();
    assert!(first_month < found.len(), "the user spans several months");
    let limit = first_month + 1;
    let (limited, summary) = search_ok(
        &db,
        &cfg,
        &env,
        &["--user-id", &uid, "--limit", &limit.to_string()],
    );
    assert_eq!(limited, found[..limit].to_vec());
    assert_eq!(summary["summary"]["truncated"], true, "{summary}");
    // One action of that user, only in April: the other months' row groups
    // are never read.
    let (action, in_april): (String, i64) = {
        let r = c
            .query_one(
                "SELECT action::text, count(*) FROM audit_logs_2025_04 WHERE user_id = $1 GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
                &[&user],
            )
            .await;
        match r {
            Ok(r) => (r.get(0), r.get(1)),
            Err(_) => ("login".to_string(), 0),
        }
    };
    // The user is in the row groups (statistics and user_id bloom filter
    // let them through); an action nobody did is refused by the action
    // bloom filters alone.
    let (rows, summary) = search_ok(
        &db,
        &cfg,
        &env,
        &["--user-id", &uid, "--action", "no-such-action"],
    );
    assert!(rows.is_empty());
    assert!(
        summary["summary"]["row_groups_skipped_by_bloom_filter"]
            .as_u64()
            .unwrap()
            >= 1,
        "{summary}"
    );
    let (rows, summary) = search_ok(
        &db,
        &cfg,
        &env,
        &[
            "--user-id",
            &uid,
            "--action",
            &action,
            "--from",
            "2025-04-01",
            "--to",
            "2025-05-01",
        ],
    );
    assert_eq!(summary["summary"]["periods_searched"], 1, "{summary}");
    assert_eq!(rows.len() as i64, in_april);
    for r in &rows {
        assert_eq!(r["action"], action.as_str());
        assert!(r["created_at"].as_str().unwrap().starts_with("2025-04"));
    }

    let r = run_ok(&db, &cfg, &env, &["archive", "restore", "2025-04"]);
    assert_eq!(r["already_restored"], false);
    assert_eq!(hash_of(&db, "audit_logs_2025_04").await, before);
    run_ok(&db, &cfg, &env, &["archive", "verify"]);
}

async fn api_call(
    state: &strata::api::AppState,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let mut req = req
        .body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))
        .unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        "192.0.2.9:40000".parse::<std::net::SocketAddr>().unwrap(),
    ));
    let resp = strata::api::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_api_lists_for_readers_and_runs_jobs_for_admins_409_when_busy() {
    use strata::api::{tokens, Role};
    let dir = store_dir("api");
    let cfg = archive_config(&format!("file://{}", dir.display()), false);
    let db = prepared(300, &cfg).await;
    let c = db.client().await;
    let (_, admin) = tokens::create(&c, Role::Admin, "admin").await.unwrap();
    let (_, reader) = tokens::create(&c, Role::Reader, "reader").await.unwrap();
    let config = strata::config::Config::load(
        Some(Path::new(&cfg)),
        std::iter::empty::<(String, String)>(),
    )
    .unwrap();
    let pool = strata::api::pool(&db.url, 4).unwrap();
    let state = strata::api::AppState::new(pool, config, strata::api::ServeOptions::default());

    let (st, _) = api_call(
        &state,
        "POST",
        "/admin/database/archives/run",
        &reader,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(st, 403);
    let (st, v) = api_call(
        &state,
        "POST",
        "/admin/database/archives/restore",
        &admin,
        Some(serde_json::json!({"period": "2025-13"})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().contains("2025-13"), "{v}");

    let holder = db.client().await;
    let lock = strata::partition::table_lock(&strata::config::TableSpec::seed_default().name);
    assert!(strata::db::try_advisory_lock(&holder, &lock).await.unwrap());
    let (st, v) = api_call(
        &state,
        "POST",
        "/admin/database/archives/run",
        &admin,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    strata::db::advisory_unlock(&holder, &lock).await.unwrap();

    let (st, v) = api_call(
        &state,
        "POST",
        "/admin/database/archives/run",
        &admin,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    let id = v["job_id"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let job = loop {
        let (st, j) = api_call(&state, "GET", &format!("/admin/jobs/{id}"), &admin, None).await;
        assert_eq!(st, 200, "{j}");
        if j["state"] != "running" {
            break j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    let (st, v) = api_call(&state, "GET", "/admin/database/archives", &reader, None).await;
    assert_eq!(st, 200, "{v}");
    let periods: Vec<&str> = v["tables"][0]["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["period"].as_str().unwrap())
        .collect();
    for m in MONTHS {
        assert!(periods.contains(&m), "{m}: {v}");
    }
    let (st, _) = api_call(
        &state,
        "GET",
        "/admin/database/archives/verify",
        &reader,
        None,
    )
    .await;
    assert_eq!(st, 405);
    let resp = {
        use tower::ServiceExt;
        let mut req = axum::http::Request::builder()
            .uri("/metrics")
            .header("authorization", format!("Bearer {reader}"))
            .body(axum::body::Body::empty())
            .unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(
            "192.0.2.9:40000".parse::<std::net::SocketAddr>().unwrap(),
        ));
        strata::api::app(state.clone()).oneshot(req).await.unwrap()
    };
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let bytes_line = text
        .lines()
        .find(|l| l.starts_with("strata_archive_bytes{"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!bytes_line.ends_with(" 0"), "{bytes_line}");
    assert!(
        text.contains("strata_archive_periods_due{table=\"public.audit_logs\"} 0"),
        "{text}"
    );
    assert!(text.contains("strata_archive_failed_verifies{table=\"public.audit_logs\"} 0"));
    assert!(text.contains("strata_archive_last_run_timestamp_seconds{"));
}

#[tokio::test]
async fn a_scheduled_archive_job_runs_archive_run_as_the_scheduler() {
    let dir = store_dir("sched");
    let url = format!("file://{}", dir.display());
    let cfg = config_file(
        "strata.toml",
        &format!(
            "[[table]]\nname = \"audit_logs\"\narchive_after = \"13 months\"\narchive_to = \"{url}\"\n\
             [maintenance]\n[[maintenance.jobs]]\nname = \"nightly-archive\"\nschedule = \"0 4 * * *\"\ncommand = \"archive\"\n"
        ),
    );
    let db = prepared(300, &cfg).await;
    let out = run_ok(&db, &cfg, &[], &["schedule", "run", "nightly-archive"]);
    assert!(out.to_string().contains("2025-03"), "{out}");
    assert!(dir
        .join("table=audit_logs/period=2025-03/manifest.json")
        .exists());
    let origin: String = db
        .client()
        .await
        .query_one(
            "SELECT origin FROM strata.jobs WHERE kind = 'archive_run' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(origin, "scheduler");
}

/// Rewrites one archived file with the `action` of its first row changed,
/// and the manifest's SHA-256 of it to match: what someone with write
/// access to the store (but not the seal) could do. Returns that row's id.
fn forge_first_row(dir: &Path, period: &str) -> i64 {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    let rel = format!("table=audit_logs/period={period}/part-00000.parquet");
    let file = dir.join(&rel);
    let data = bytes::Bytes::from(std::fs::read(&file).unwrap());
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let action = schema.index_of("action").unwrap();
    let id = batches[0]
        .column(schema.index_of("id").unwrap())
        .as_primitive::<Int64Type>()
        .value(0);
    let mut out = Vec::new();
    {
        let mut w = ArrowWriter::try_new(&mut out, schema.clone(), None).unwrap();
        for (n, b) in batches.iter().enumerate() {
            let mut cols: Vec<ArrayRef> = b.columns().to_vec();
            if n == 0 {
                let old = b.column(action).as_string::<i32>();
                let new: StringArray = (0..old.len())
                    .map(|i| Some(if i == 0 { "forged" } else { old.value(i) }))
                    .collect();
                cols[action] = Arc::new(new);
            }
            w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap())
                .unwrap();
        }
        w.close().unwrap();
    }
    std::fs::write(&file, &out).unwrap();
    let mpath = dir.join(format!("table=audit_logs/period={period}/manifest.json"));
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&out))
    };
    for f in m["files"].as_array_mut().unwrap() {
        if f["key"].as_str().unwrap().ends_with(&rel) {
            f["sha256"] = Value::from(sha.clone());
        }
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    id
}

/// A sealed month that was archived and dropped is still verified by `seal
/// verify`: against its files, and a forgery in the store that keeps the
/// manifest consistent is caught and the row named.
#[tokio::test]
async fn seal_verify_checks_archived_months_against_their_files() {
    let dir = store_dir("sealed");
    let cfg = archive_config(&format!("file://{}", dir.display()), true);
    let db = prepared(600, &cfg).await;
    let sealed = run_ok(&db, &cfg, &[], &["seal", "run"]);
    assert!(
        sealed["sealed"].as_array().unwrap().len() >= 6,
        "{sealed:#}"
    );
    run_ok(&db, &cfg, &[], &["archive", "run"]);
    for m in MONTHS {
        let name = format!("audit_logs_{}", m.replace('-', "_"));
        assert!(
            !partition_exists(&db, &name).await,
            "{name} was not dropped"
        );
    }
    let ok = run_ok(&db, &cfg, &[], &["seal", "verify"]);
    assert_eq!(ok["intact"], true, "{ok:#}");
    assert_eq!(ok["rows_checked"], 600, "{ok:#}");
    let from_files: Vec<&Value> = ok["seals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["source"]
                .as_str()
                .is_some_and(|s| s.ends_with("manifest.json"))
        })
        .collect();
    assert!(from_files.len() >= MONTHS.len(), "{ok:#}");

    // stats partitions marks the tier of what is left and lists what is not.
    let stats = run_ok(&db, &cfg, &[], &["stats", "partitions"]);
    let dropped: Vec<&str> = stats["archived_dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["period"].as_str().unwrap())
        .collect();
    for m in MONTHS {
        assert!(dropped.contains(&m), "{m} not in {dropped:?}");
    }
    let tier_of = |name: &str| {
        stats["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["tier"].clone())
    };
    assert_eq!(
        tier_of("public.audit_logs_2025_12"),
        Some(Value::from("sealed")),
        "{stats:#}"
    );
    assert_eq!(tier_of("public.audit_logs_2025_01"), None);
    // The report knows both tiers.
    let report = run_ok(&db, &cfg, &[], &["report"]);
    let tiers = &report["tables"][0]["tiers"];
    assert!(tiers["seals"]["seals"].as_u64().unwrap() >= 6, "{tiers:#}");
    assert_eq!(tiers["seals"]["last_verify"]["intact"], true, "{tiers:#}");
    assert!(
        tiers["archive"]["periods_archived"].as_u64().unwrap() >= 6,
        "{tiers:#}"
    );
    assert_eq!(tiers["archive"]["periods_due"], 0, "{tiers:#}");
    assert!(
        tiers["archive"]["bytes_archived"].as_i64().unwrap() > 0,
        "{tiers:#}"
    );

    let id = forge_first_row(&dir, "2025-03");
    let out = run_raw(&db, &cfg, &[], &["--json", "seal", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["intact"], false);
    let bad: Vec<&Value> = r["seals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "{r:#}");
    assert!(
        bad[0]["period_start"]
            .as_str()
            .unwrap()
            .starts_with("2025-03"),
        "{r:#}"
    );
    assert_eq!(bad[0]["rows"]["changed"], serde_json::json!([id]), "{r:#}");
    let report = run_ok(&db, &cfg, &[], &["report"]);
    let rule = report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "seal_verify_failed")
        .unwrap_or_else(|| panic!("no seal_verify_failed: {report:#}"))
        .clone();
    assert_eq!(rule["severity"], "critical", "{rule:#}");
    assert_eq!(
        rule["fix"], "strata seal verify --table public.audit_logs",
        "{rule:#}"
    );

    // A file gone from the store is a failed check that names it, not an error.
    std::fs::remove_file(dir.join("table=audit_logs/period=2025-04/part-00000.parquet")).unwrap();
    let out = run_raw(&db, &cfg, &[], &["--json", "seal", "verify", "2025-04"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = r["seals"][0]["problems"].to_string();
    assert!(
        problems.contains("period=2025-04/part-00000.parquet") && problems.contains("missing"),
        "{r:#}"
    );
}

/// `archive attach` makes a dropped month readable in place through
/// `audit_logs_with_archive`: the server runs `strata archive cat`, the
/// rows are the archived ones exactly, queries on other months never touch
/// it, and `detach` takes it away again.
#[tokio::test]
async fn an_attached_month_is_read_in_place_through_the_view() {
    use std::os::unix::fs::PermissionsExt;
    // The server runs strata and reads the store as its own OS user: both
    // go where that user can reach them, whatever the checkout's path.
    let tmp = std::env::temp_dir().join(format!(
        "strata-attach-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let store = tmp.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let bin = tmp.join("strata");
    std::fs::copy(env!("CARGO_BIN_EXE_strata"), &bin).unwrap();
    for p in [&tmp, &store, &bin] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = bin.display().to_string();
    let cfg = archive_config(&format!("file://{}", store.display()), true);
    let db = prepared(600, &cfg).await;
    let march = "(SELECT * FROM audit_logs_with_archive WHERE created_at >= '2025-03-01' AND created_at < '2025-04-01') m";
    let before = hash_of(&db, "audit_logs_2025_03").await;
    assert!(before.0 > 50, "{before:?}");
    let c = db.client().await;
    let vectors = |rel: &'static str| {
        let sql = format!("SELECT count(*) FILTER (WHERE search_vector IS NOT NULL) FROM {rel}");
        let c = &c;
        async move { c.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let vectors_before = vectors("audit_logs_2025_03").await;
    run_ok(&db, &cfg, &[], &["archive", "run"]);
    assert!(!partition_exists(&db, "audit_logs_2025_03").await);

    let a = run_ok(
        &db,
        &cfg,
        &[],
        &["archive", "attach", "2025-03", "--strata-path", &bin],
    );
    assert_eq!(a["rows"], before.0, "{a:#}");
    assert_eq!(a["already_attached"], false, "{a:#}");
    assert_eq!(hash_of(&db, march).await, before);
    assert_eq!(
        vectors("(SELECT search_vector FROM audit_logs_with_archive WHERE created_at >= '2025-03-01' AND created_at < '2025-04-01') v").await,
        vectors_before
    );
    let plan = |range: &str| {
        let sql = format!("EXPLAIN SELECT count(*) FROM audit_logs_with_archive WHERE {range}");
        let c = &c;
        async move {
            c.query(&sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let live = plan("created_at >= '2025-11-01' AND created_at < '2025-12-01'").await;
    assert!(!live.contains("Foreign"), "{live}");
    let archived = plan("created_at >= '2025-03-10' AND created_at < '2025-03-11'").await;
    assert!(
        archived.contains("Foreign Scan on audit_logs_2025_03_archive"),
        "{archived}"
    );

    let again = run_ok(
        &db,
        &cfg,
        &[],
        &["archive", "attach", "2025-03", "--strata-path", &bin],
    );
    assert_eq!(again["already_attached"], true, "{again:#}");
    // A month still in the table is refused: attaching it would count it twice.
    let out = run_raw(
        &db,
        &cfg,
        &[],
        &["archive", "attach", "2026-11", "--strata-path", &bin],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // A server that cannot run strata: refused, and nothing is left behind.
    let out = run_raw(
        &db,
        &cfg,
        &[],
        &[
            "archive",
            "attach",
            "2025-04",
            "--strata-path",
            "/nonexistent/strata",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("/nonexistent/strata"),
        "{}",
        stderr(&out)
    );
    let left: i64 = c
        .query_one("SELECT count(*) FROM pg_foreign_table ft JOIN pg_class k ON k.oid = ft.ftrelid WHERE k.relname = 'audit_logs_2025_04_archive'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);

    let d = run_ok(&db, &cfg, &[], &["archive", "detach", "2025-03"]);
    assert_eq!(d["was_attached"], true, "{d:#}");
    assert_eq!(hash_of(&db, march).await.0, 0);
    let d = run_ok(&db, &cfg, &[], &["archive", "detach", "2025-03"]);
    assert_eq!(d["was_attached"], false, "{d:#}");
    std::fs::remove_dir_all(&tmp).ok();
}
