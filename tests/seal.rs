//! Sealed months against a real server: sealing, read-only partitions, and
//! verification that names exactly what a superuser changed behind strata's
//! back (triggers disabled), including a forgery re-hashed without the key.

mod common;

use common::{config_file, seeded, stderr, stdout, strata, strata_cmd, TestDb};
use serde_json::Value;
use tokio_postgres::Client;

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

fn run_ok(db: &TestDb, args: &[&str]) -> Value {
    let out = strata(db, args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    json(&out)
}

async fn ids(c: &Client, partition: &str) -> Vec<i64> {
    c.query(
        &format!("SELECT id FROM {partition} ORDER BY created_at, id"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn seal_of<'a>(report: &'a Value, period: &str) -> &'a Value {
    report["seals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["period_start"].as_str().unwrap().starts_with(period))
        .unwrap_or_else(|| panic!("no check of {period} in {report:#}"))
}

/// Seals every closed month, then tampers four months in four ways as a
/// superuser with the guard disabled; verify fails and names each row.
#[tokio::test]
async fn verify_names_changed_deleted_inserted_and_swapped_rows() {
    let db = seeded(3_000).await;
    let c = db.client().await;
    let sealed = run_ok(&db, &["--json", "seal", "run"]);
    let months: Vec<&str> = sealed["sealed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["partition"].as_str().unwrap())
        .collect();
    assert!(
        months.contains(&"public.audit_logs_2025_01")
            && months.contains(&"public.audit_logs_2025_06"),
        "{sealed:#}"
    );
    let rows: i64 = sealed["sealed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["row_count"].as_i64().unwrap())
        .sum();
    assert_eq!(rows, 3_000);
    // Sealing again finds nothing to do; verify passes.
    let again = run_ok(&db, &["--json", "seal", "run"]);
    assert_eq!(again["sealed"].as_array().unwrap().len(), 0);
    let ok = run_ok(&db, &["--json", "seal", "verify"]);
    assert_eq!(ok["intact"], true, "{ok:#}");
    assert_eq!(ok["rows_checked"], 3_000);

    let feb = ids(&c, "audit_logs_2025_02").await;
    let mar = ids(&c, "audit_logs_2025_03").await;
    let may = ids(&c, "audit_logs_2025_05").await;
    let tamper = format!(
        "ALTER TABLE audit_logs_2025_02 DISABLE TRIGGER ALL;
         UPDATE audit_logs_2025_02 SET user_agent = 'curl/8' WHERE id = {changed};
         ALTER TABLE audit_logs_2025_03 DISABLE TRIGGER ALL;
         DELETE FROM audit_logs_2025_03 WHERE id = {deleted};
         ALTER TABLE audit_logs_2025_04 DISABLE TRIGGER ALL;
         INSERT INTO audit_logs_2025_04 (id, user_id, action, created_at)
              VALUES (999999, 1, 'login', '2025-04-10T00:00:00Z');
         ALTER TABLE audit_logs_2025_05 DISABLE TRIGGER ALL;
         UPDATE audit_logs_2025_05 SET id = CASE id WHEN {a} THEN {b} ELSE {a} END WHERE id IN ({a}, {b});",
        changed = feb[7],
        deleted = mar[100],
        a = may[3],
        b = may[200],
    );
    c.batch_execute(&tamper).await.unwrap();

    let out = strata(&db, &["--json", "seal", "verify"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(r["intact"], false);
    let d = &seal_of(&r, "2025-02")["rows"];
    assert_eq!(d["changed"], serde_json::json!([feb[7]]), "{d:#}");
    assert_eq!(d["deleted"], serde_json::json!([]));
    assert_eq!(d["inserted"], serde_json::json!([]));
    let d = &seal_of(&r, "2025-03")["rows"];
    assert_eq!(
        d["deleted"],
        serde_json::json!([{"id": mar[100], "position": 100}]),
        "{d:#}"
    );
    assert_eq!(d["changed"], serde_json::json!([]));
    assert_eq!(
        d["found_rows"].as_u64().unwrap() + 1,
        d["sealed_rows"].as_u64().unwrap()
    );
    let d = &seal_of(&r, "2025-04")["rows"];
    assert_eq!(d["inserted"].as_array().unwrap().len(), 1, "{d:#}");
    assert_eq!(d["inserted"][0]["id"], 999999);
    assert_eq!(d["changed"], serde_json::json!([]));
    let d = &seal_of(&r, "2025-05")["rows"];
    let mut swapped: Vec<i64> = d["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    swapped.sort();
    let mut want = vec![may[3], may[200]];
    want.sort();
    assert_eq!(swapped, want, "{d:#}");
    // Untouched months stay intact, and a single period can be checked.
    assert_eq!(seal_of(&r, "2025-01")["ok"], true);
    assert_eq!(seal_of(&r, "2025-06")["ok"], true);
    let one = strata(&db, &["--json", "seal", "verify", "2025-06"]);
    assert!(one.status.success(), "{}", stderr(&one));
    assert_eq!(json(&one)["seals_checked"], 1);
    // Human output names the rows too.
    let human = strata(&db, &["seal", "verify", "2025-03"]);
    assert_eq!(human.status.code(), Some(3));
    assert!(
        stdout(&human).contains(&format!("{} at 100", mar[100])),
        "{}",
        stdout(&human)
    );
    // Health judges the last verification: critical, with the command to see why.
    let h = strata(&db, &["--json", "health"]);
    let report = json(&h);
    let seals = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "seals")
        .unwrap();
    assert_eq!(seals["status"], "critical", "{seals:#}");
    assert_eq!(h.status.code(), Some(3));
}

/// The guard: UPDATE, DELETE, TRUNCATE and INSERT through the parent are
/// refused, also with session_replication_role = replica; other months and
/// the parent stay writable; write privileges are gone.
#[tokio::test]
async fn a_sealed_partition_is_read_only() {
    let db = seeded(600).await;
    let c = db.client().await;
    c.batch_execute("CREATE ROLE strata_app_writer; GRANT INSERT, UPDATE, DELETE ON audit_logs_2025_02 TO strata_app_writer")
        .await
        .ok();
    run_ok(&db, &["--json", "seal", "run"]);
    let before: i64 = c
        .query_one("SELECT count(*) FROM audit_logs_2025_01", &[])
        .await
        .unwrap()
        .get(0);
    for sql in [
        "UPDATE audit_logs SET action = 'x' WHERE created_at < '2025-02-01'",
        "DELETE FROM audit_logs WHERE created_at < '2025-02-01'",
        "TRUNCATE audit_logs_2025_01",
        "INSERT INTO audit_logs (user_id, action, created_at) VALUES (1, 'late', '2025-01-15')",
        "SET session_replication_role = replica; DELETE FROM audit_logs_2025_01",
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("sealed") && msg.contains("audit_logs_2025_01"),
            "{sql}: {msg}"
        );
        c.batch_execute("SET session_replication_role = origin")
            .await
            .unwrap();
    }
    // A TRUNCATE of the parent fires each partition's TRUNCATE trigger.
    let e = c.batch_execute("TRUNCATE audit_logs").await.unwrap_err();
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("TRUNCATE") && msg.contains("sealed"), "{msg}");
    let rows: i64 = c
        .query_one("SELECT count(*) FROM audit_logs_2025_01", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, before);
    // The current months and the parent stay writable.
    c.batch_execute("INSERT INTO audit_logs (user_id, action) VALUES (1, 'now')")
        .await
        .unwrap();
    let privileged: bool = c
        .query_one(
            "SELECT has_table_privilege('strata_app_writer', 'audit_logs_2025_02', 'INSERT')
                 OR has_table_privilege('strata_app_writer', 'audit_logs_2025_02', 'DELETE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!privileged, "the application role kept write privileges");
    c.batch_execute("DROP OWNED BY strata_app_writer; DROP ROLE strata_app_writer")
        .await
        .ok();
}

/// Sealing follows the server clock only: there is no --now, and a
/// period within seal_after of its end is left open.
#[tokio::test]
async fn a_pretended_time_cannot_seal_an_open_period() {
    let db = seeded(0).await;
    // Partitions for the real current month and the last one.
    run_ok(&db, &["--json", "maintain"]);
    let out = strata(&db, &["seal", "run", "--now", "2030-01-01"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let cfg = config_file("strata.toml", "seal_after = \"40d\"\n");
    let out = strata(
        &db,
        &["--config", &cfg, "--json", "seal", "run", "--dry-run"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = json(&out);
    let now: chrono::DateTime<chrono::Utc> = serde_json::from_value(plan["now"].clone()).unwrap();
    for s in plan["sealed"].as_array().unwrap() {
        let end: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(s["period_end"].clone()).unwrap();
        assert!(end + chrono::Duration::days(40) <= now, "{s} sealed early");
    }
    // Nothing was written by the dry run.
    let c = db.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM strata.seals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // A bad period is a usage error naming it; a period without a seal is exit 3.
    let out = strata(&db, &["seal", "verify", "March"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"March\" is not a period"),
        "{}",
        stderr(&out)
    );
    let out = strata(&db, &["seal", "export", "2024-01"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no seal for 2024-01"),
        "{}",
        stderr(&out)
    );
    // Another session maintaining the table: refused at once, exit 3.
    let holder = db.client().await;
    assert!(
        strata::db::try_advisory_lock(&holder, "maintain:public.audit_logs")
            .await
            .unwrap()
    );
    let out = strata(&db, &["seal", "run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    strata::db::advisory_unlock(&holder, "maintain:public.audit_logs")
        .await
        .unwrap();
    let bad = config_file("strata.toml", "seal_after = \"soon\"\n");
    let out = strata(&db, &["--config", &bad, "seal", "run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("seal_after"), "{}", stderr(&out));
}

/// A forger with superuser but without the signing key rewrites a month
/// and re-hashes it (root, chunks, seal hash): the signature gives it away.
/// Unsigned, the next seal's chain link does. Deleting a seal breaks the chain.
#[tokio::test]
async fn a_rehashed_forgery_and_a_deleted_seal_are_caught() {
    let db = seeded(1_200).await;
    let dir = std::path::PathBuf::from(config_file("x", ""));
    let key = dir.with_file_name("seal.key");
    let out = strata(&db, &["seal", "keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let anchor = dir.with_file_name("anchor.log");
    let cfg = config_file(
        "strata.toml",
        &format!(
            "seal_key_file = {:?}\nseal_anchor_to = \"file://{}\"\n",
            key.to_str().unwrap(),
            anchor.display()
        ),
    );
    let sealed = run_ok(&db, &["--config", &cfg, "--json", "seal", "run"]);
    assert!(sealed["sealed"][0]["key_id"].is_string(), "{sealed:#}");
    let anchored = std::fs::read_to_string(&anchor).unwrap();
    assert_eq!(
        anchored.lines().count(),
        sealed["sealed"].as_array().unwrap().len()
    );
    assert_eq!(
        run_ok(&db, &["--config", &cfg, "--json", "seal", "verify"])["intact"],
        true
    );

    let c = db.client().await;
    forge(&c, "audit_logs_2025_02", "2025-02-01T00:00:00Z").await;

    let out = strata(&db, &["--config", &cfg, "--json", "seal", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    let r = json(&out);
    let feb = seal_of(&r, "2025-02");
    let problems = feb["problems"].to_string();
    assert!(problems.contains("signature invalid"), "{feb:#}");
    assert!(problems.contains("anchor file holds"), "{feb:#}");
    assert!(
        feb["rows"].is_null(),
        "the forged rows match the forged root: {feb:#}"
    );
    // Without the key or the anchor, the chain catches it at the next month.
    let out = strata(&db, &["--json", "seal", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    let r = json(&out);
    assert!(
        seal_of(&r, "2025-03")["problems"]
            .to_string()
            .contains("chain broken"),
        "{r:#}"
    );
    assert_eq!(seal_of(&r, "2025-01")["ok"], true);

    // A deleted seal record: the next one's link points at nothing.
    c.batch_execute("DELETE FROM strata.seals WHERE period_start = '2025-05-01T00:00:00Z'")
        .await
        .unwrap();
    let r = json(&strata(&db, &["--json", "seal", "verify"]));
    let jun = seal_of(&r, "2025-06");
    assert!(
        jun["problems"].to_string().contains("chain broken"),
        "{jun:#}"
    );
    assert!(jun["problems"].to_string().contains("2025-04"), "{jun:#}");
    // A wrong key is named as such.
    let other = dir.with_file_name("other.key");
    assert!(
        strata(&db, &["seal", "keygen", "--out", other.to_str().unwrap()])
            .status
            .success()
    );
    let cfg2 = config_file(
        "strata.toml",
        &format!("seal_key_file = {:?}\n", other.to_str().unwrap()),
    );
    let r = json(&strata(
        &db,
        &["--config", &cfg2, "--json", "seal", "verify", "2025-01"],
    ));
    assert!(
        seal_of(&r, "2025-01")["problems"]
            .to_string()
            .contains("not by the configured key"),
        "{r:#}"
    );
    // A missing key file is a usage error that names it, and nothing is sealed.
    let cfg3 = config_file("strata.toml", "seal_key_file = \"/nonexistent/seal.key\"\n");
    let out = strata_cmd(&db)
        .args(["--config", &cfg3, "seal", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/seal.key"),
        "{}",
        stderr(&out)
    );
}

/// Rewrites every row of `partition` and updates its seal the way strata
/// would have computed it, without the signing key.
async fn forge(c: &Client, partition: &str, period: &str) {
    c.batch_execute(&format!(
        "ALTER TABLE {partition} DISABLE TRIGGER ALL; UPDATE {partition} SET severity = 'info'; \
         ALTER TABLE {partition} ENABLE ALWAYS TRIGGER strata_sealed"
    ))
    .await
    .unwrap();
    let name = strata::db::QualifiedName::new("public", partition).unwrap();
    let mut quiet = |_: u64| {};
    let computed = strata::seal::compute(c, &name, &mut quiet).await.unwrap();
    let row = c
        .query_one(
            "SELECT id, period_start, period_end, prev_hash, sealed_at FROM strata.seals WHERE period_start = $1::text::timestamptz",
            &[&period],
        )
        .await
        .unwrap();
    let rec = strata::seal::record::SealRecord {
        table: "public.audit_logs".into(),
        period_start: row.get(1),
        period_end: row.get(2),
        row_count: computed.count as i64,
        root: computed.root,
        prev_hash: row
            .get::<_, Option<Vec<u8>>>(3)
            .map(|h| h.try_into().unwrap()),
        sealed_at: row.get(4),
    };
    let id: i64 = row.get(0);
    c.execute(
        "UPDATE strata.seals SET root = $2, row_count = $3, seal_hash = $4 WHERE id = $1",
        &[
            &id,
            &computed.root.to_vec(),
            &rec.row_count,
            &rec.hash().to_vec(),
        ],
    )
    .await
    .unwrap();
    c.execute("DELETE FROM strata.seal_chunks WHERE seal_id = $1", &[&id])
        .await
        .unwrap();
    for (i, ch) in computed.chunks.iter().enumerate() {
        c.execute(
            "INSERT INTO strata.seal_chunks (seal_id, chunk, root, ids, leaves) VALUES ($1, $2, $3, '', '')",
            &[&id, &(i as i32), &ch.root.to_vec()],
        )
        .await
        .unwrap();
    }
}

/// A receipt and a proof checked by tests/seal_offline.py: hashlib and the
/// `cryptography` package only, from docs/seal-format.md, no strata code.
#[tokio::test]
async fn a_receipt_and_a_proof_check_offline_in_python() {
    let Some(python) = common::tools::python_with("cryptography") else {
        return;
    };
    let db = seeded(2_500).await;
    let dir = std::path::PathBuf::from(config_file("x", ""));
    let key = dir.with_file_name("seal.key");
    assert!(
        strata(&db, &["seal", "keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let public = dir.with_file_name("seal.key.pub");
    let cfg = config_file(
        "strata.toml",
        &format!("seal_key_file = {:?}\n", key.to_str().unwrap()),
    );
    run_ok(&db, &["--config", &cfg, "--json", "seal", "run"]);
    let c = db.client().await;
    // A row with NULLs, JSON and an address, in the middle of March.
    let row = c
        .query_one(
            "SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
               FROM audit_logs_2025_03 ORDER BY created_at, id OFFSET 200 LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (id, at): (i64, String) = (row.get(0), row.get(1));
    let receipt = dir.with_file_name("receipt.json");
    let proof = dir.with_file_name("proof.json");
    let out = strata(
        &db,
        &[
            "--config",
            &cfg,
            "seal",
            "export",
            "2025-03",
            "--out",
            receipt.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = strata(
        &db,
        &[
            "--config",
            &cfg,
            "seal",
            "prove",
            "--id",
            &id.to_string(),
            "--created-at",
            &at,
            "--out",
            proof.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The proof's row is the row as PostgreSQL prints it (jsonb arrives in
    // binary; its text must be jsonb::text exactly, inet is text(inet)).
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    let db_row = c
        .query_one(
            "SELECT details::text, text(ip_address), user_agent FROM audit_logs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        p["row"]["details"].as_str(),
        db_row.get::<_, Option<&str>>(0)
    );
    assert_eq!(
        p["row"]["ip_address"].as_str(),
        db_row.get::<_, Option<&str>>(1)
    );
    assert_eq!(
        p["row"]["user_agent"].as_str(),
        db_row.get::<_, Option<&str>>(2)
    );
    let size = std::fs::metadata(&proof).unwrap().len();
    assert!(size < 4096, "proof is {size} bytes");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seal_offline.py");
    let check = |r: &std::path::Path, p: &std::path::Path| {
        std::process::Command::new(&python)
            .arg(script)
            .arg(r)
            .arg(p)
            .arg(&public)
            .output()
            .unwrap()
    };
    let ok = check(&receipt, &proof);
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    assert!(
        stdout(&ok).contains(&format!("row {id} is leaf 200")),
        "{}",
        stdout(&ok)
    );

    // Each lie is refused: a changed row, a changed count, a wrong path.
    let mut p: Value = serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    p["row"]["action"] = Value::String("logout".into());
    let bad_proof = dir.with_file_name("bad-proof.json");
    std::fs::write(&bad_proof, p.to_string()).unwrap();
    let out = check(&receipt, &bad_proof);
    assert!(
        !out.status.success() && stdout(&out).contains("leaf hash"),
        "{}",
        stdout(&out)
    );
    let mut p: Value = serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    p["leaf_index"] = Value::from(201);
    std::fs::write(&bad_proof, p.to_string()).unwrap();
    let out = check(&receipt, &bad_proof);
    assert!(
        !out.status.success() && stdout(&out).contains("inclusion path"),
        "{}",
        stdout(&out)
    );
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    r["row_count"] = Value::from(r["row_count"].as_i64().unwrap() - 1);
    let bad_receipt = dir.with_file_name("bad-receipt.json");
    std::fs::write(&bad_receipt, r.to_string()).unwrap();
    let out = check(&bad_receipt, &proof);
    assert!(
        !out.status.success() && stdout(&out).contains("seal hash"),
        "{}",
        stdout(&out)
    );
}

/// PostgreSQL's jsonb text is canonical (docs/seal-format.md relies on it):
/// keys sorted by length then bytes, duplicates dropped (last wins), fixed
/// spacing, whatever the input's order and spacing.
#[tokio::test]
async fn jsonb_text_is_canonical() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    let rows = c
        .query(
            "SELECT ($1::text)::jsonb::text",
            &[&r#"{"bb":1,  "a":{"z":[1,2 ,3],"y":null},"b":"x","a":{"z":[1,2,3],"y":null}}"#],
        )
        .await
        .unwrap();
    let text: String = rows[0].get(0);
    assert_eq!(
        text,
        r#"{"a": {"y": null, "z": [1, 2, 3]}, "b": "x", "bb": 1}"#
    );
    let same: String = c
        .query_one(
            "SELECT ($1::text)::jsonb::text",
            &[&r#"{ "b" : "x", "bb":1,"a":{"y":null,"z":[1,2,3]}}"#],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(same, text);
}

/// Sealing a big month while writers insert into the current one: no
/// writer fails, and no writer statement takes 200 ms or more (each one
/// timed), though the seal's hashing overlaps them.
#[tokio::test]
async fn sealing_never_stalls_writers_of_the_current_month() {
    let db = seeded(0).await;
    run_ok(&db, &["--json", "maintain"]);
    let out = strata(
        &db,
        &[
            "load",
            "--rows",
            "150000",
            "--from",
            "2025-01-01",
            "--to",
            "2025-02-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let c = db.client().await;
        let stop = stop.clone();
        // A lock wait longer than the issue's 200 ms fails the insert, so
        // "no writer waited more than 200 ms on sealing" is checked by the
        // server, not by a wall clock that CI's load stretches.
        c.batch_execute("SET lock_timeout = '200ms'").await.unwrap();
        writers.push(tokio::spawn(async move {
            let stmt = c
                .prepare("INSERT INTO audit_logs (user_id, action) VALUES ($1, 'writer')")
                .await
                .unwrap();
            let (mut n, mut worst, mut errors) = (0u64, std::time::Duration::ZERO, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = std::time::Instant::now();
                if let Err(e) = c.execute(&stmt, &[&(w as i64)]).await {
                    errors.push(e.to_string());
                }
                worst = worst.max(t.elapsed());
                n += 1;
            }
            (n, worst, errors)
        }));
    }
    let url = db.url.clone();
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--database-url", &url, "--json", "seal", "run"])
            .env_remove("STRATA_CONFIG")
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let sealing = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        out.status.success(),
        "seal run failed after {sealing:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let r = json(&out);
    let jan = r["sealed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["partition"] == "public.audit_logs_2025_01")
        .unwrap();
    assert_eq!(jan["row_count"], 150_000);
    let mut total = 0;
    for w in writers {
        let (n, worst, errors) = w.await.unwrap();
        assert!(errors.is_empty(), "writer errors: {errors:?}");
        // Not a latency goal (that is the lock_timeout above and the
        // benchmark): an insert stuck behind the sealer for its whole
        // transaction would take about as long as the seal itself.
        assert!(
            worst < sealing / 2,
            "a writer waited {worst:?} (seal took {sealing:?})"
        );
        total += n;
    }
    eprintln!(
        "seal run {sealing:?}, January hashed in {} ms, {total} writer inserts meanwhile",
        jan["millis"]
    );
    assert!(
        total > 40,
        "writers made only {total} inserts while sealing took {sealing:?}"
    );
}

/// The scheduler seals and verifies through the same operations.
#[tokio::test]
async fn the_scheduler_seals_and_verifies() {
    let db = seeded(300).await;
    let cfg = config_file(
        "strata.toml",
        "[maintenance]\n[[maintenance.jobs]]\nname = \"nightly-seal\"\nschedule = \"30 2 * * *\"\ncommand = \"seal\"\n\
         [[maintenance.jobs]]\nname = \"weekly-verify\"\nschedule = \"0 5 * * 0\"\ncommand = \"seal_verify\"\n",
    );
    let out = strata(
        &db,
        &[
            "--config",
            &cfg,
            "--json",
            "schedule",
            "run",
            "nightly-seal",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = strata(
        &db,
        &[
            "--config",
            &cfg,
            "--json",
            "schedule",
            "run",
            "weekly-verify",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let c = db.client().await;
    let rows = c
        .query(
            "SELECT kind, origin, (result->>'intact') FROM strata.jobs WHERE kind LIKE 'seal%' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "seal_run");
    assert_eq!(got[0].1.as_deref(), Some("scheduler"));
    assert_eq!(got[1].0, "seal_verify");
    assert_eq!(got[1].2.as_deref(), Some("true"));
    let n: i64 = c
        .query_one("SELECT count(*) FROM strata.seals", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n >= 6);
}

/// A sealed month that retention detached (renamed `<name>_detached` and
/// recorded) is still verified, and a change to it is still named.
#[tokio::test]
async fn a_detached_sealed_month_is_still_verified() {
    let db = seeded(600).await;
    run_ok(&db, &["--json", "seal", "run"]);
    let cfg = config_file(
        "strata.toml",
        "[[table]]\nname = \"audit_logs\"\nstart = \"2025-01-01\"\nretention = \"20 months\"\nretention_mode = \"detach\"\n",
    );
    run_ok(&db, &["--config", &cfg, "--json", "config", "apply"]);
    run_ok(&db, &["--config", &cfg, "--json", "maintain"]);
    let c = db.client().await;
    let detached: i64 = c
        .query_one(
            "SELECT count(*) FROM strata.detached_partitions WHERE table_name = 'audit_logs_2025_01_detached'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(detached, 1, "retention did not detach January");
    let r = run_ok(
        &db,
        &["--config", &cfg, "--json", "seal", "verify", "2025-01"],
    );
    assert_eq!(r["intact"], true, "{r:#}");
    assert_eq!(seal_of(&r, "2025-01")["ok"], true);
    let id: i64 = c
        .query_one("SELECT min(id) FROM audit_logs_2025_01_detached", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute(&format!(
        "ALTER TABLE audit_logs_2025_01_detached DISABLE TRIGGER ALL;
         UPDATE audit_logs_2025_01_detached SET status = 'forged' WHERE id = {id}"
    ))
    .await
    .unwrap();
    let out = strata(
        &db,
        &["--config", &cfg, "--json", "seal", "verify", "2025-01"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        seal_of(&json(&out), "2025-01")["rows"]["changed"],
        serde_json::json!([id])
    );
}
