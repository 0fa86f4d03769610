mod common;

use common::{stderr, stdout, strata, TestDb};

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn generated_rows_land_in_their_partitions_and_the_rate_is_reported() {
    let db = TestDb::migrated().await;
    let out = strata(
        &db,
        &[
            "load",
            "--rows",
            "5000",
            "--from",
            "2025-01-01",
            "--to",
            "2025-04-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("loaded 5,000 rows"), "{text}");
    assert!(text.contains("rows/s"), "{text}");
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 5000);
    assert_eq!(
        count(&db, "SELECT count(*) FROM audit_logs_default").await,
        0,
        "nothing fell into the default partition"
    );
    let per_month: Vec<(String, i64)> = db
        .client()
        .await
        .query(
            "SELECT tableoid::regclass::text, count(*) FROM audit_logs GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let names: Vec<&str> = per_month.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "audit_logs_2025_01",
            "audit_logs_2025_02",
            "audit_logs_2025_03"
        ]
    );
    // Spread evenly over time: February (28 days) holds 28/90 of the rows.
    let feb = per_month[1].1 as f64 / 5000.0;
    assert!((feb - 28.0 / 90.0).abs() < 0.01, "{per_month:?}");
}

#[tokio::test]
async fn json_output_is_parseable() {
    let db = TestDb::migrated().await;
    let out = strata(
        &db,
        &[
            "--json",
            "load",
            "--rows",
            "300",
            "--from",
            "2025-01-01",
            "--to",
            "2025-01-02",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["rows"], 300);
    assert!(v["rows_per_sec"].as_f64().unwrap() > 0.0);
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("load-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn ndjson_line(i: usize) -> String {
    format!(
        r#"{{"user_id":{i},"action":"user.login","details":{{"n":{i}}},"ip_address":"10.0.0.{i}","status":"success","severity":"info","created_at":"2025-02-0{}T10:00:00Z"}}"#,
        1 + i % 9
    )
}

#[tokio::test]
async fn a_bad_line_stops_the_load_and_nothing_of_its_batch_is_written() {
    let db = TestDb::migrated().await;
    let mut lines: Vec<String> = (1..=9).map(ndjson_line).collect();
    lines[4] = r#"{"user_id":5,"action":"user.login","ip_address":"not-an-ip","created_at":"2025-02-01T00:00:00Z"}"#.into();
    let path = write("bad.ndjson", &lines.join("\n"));
    let out = strata(
        &db,
        &[
            "load",
            "--file",
            path.to_str().unwrap(),
            "--batch-rows",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("ip_address"), "{err}");
    // Batch 1 (lines 1-3) committed; batch 2 (lines 4-6) held the bad line.
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 3);
    assert_eq!(
        count(&db, "SELECT count(*) FROM audit_logs WHERE user_id = 4").await,
        0
    );
}

#[tokio::test]
async fn skip_bad_skips_and_counts() {
    let db = TestDb::migrated().await;
    let mut lines: Vec<String> = (1..=6).map(ndjson_line).collect();
    lines[1] = "{not json".into();
    lines[3] =
        r#"{"user_id":1,"action":"x","created_at":"2025-02-01T00:00:00Z","mystery":1}"#.into();
    let path = write("skip.ndjson", &lines.join("\n"));
    let out = strata(
        &db,
        &["load", "--file", path.to_str().unwrap(), "--skip-bad"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 bad lines skipped"),
        "{}",
        stdout(&out)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 4);
}

#[tokio::test]
async fn csv_with_json_details_and_nulls_loads() {
    let db = TestDb::migrated().await;
    let csv = "user_id,action,resource_type,resource_id,details,ip_address,user_agent,status,severity,created_at\n\
               1,document.read,document,42,\"{\"\"method\"\": \"\"GET\"\"}\",2001:db8::1,curl/8,success,info,2025-03-05 10:00:00+00\n\
               2,user.login,,,,,,,,2025-03-06T10:00:00Z\n";
    let path = write("rows.csv", csv);
    let out = strata(&db, &["load", "--file", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = db.client().await;
    let row = c
        .query_one("SELECT details->>'method', host(ip_address), resource_id FROM audit_logs WHERE user_id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("GET"));
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(row.get::<_, Option<i64>>(2), Some(42));
    let nulls: i64 = c
        .query_one("SELECT count(*) FROM audit_logs WHERE user_id = 2 AND details IS NULL AND status IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 1);
}

#[tokio::test]
async fn a_bad_config_value_is_a_usage_error_naming_the_key() {
    let db = TestDb::migrated().await;
    let path = write("strata.toml", "[[table]]\ninterval = \"3 fortnights\"\n");
    let out = strata(
        &db,
        &["--config", path.to_str().unwrap(), "load", "--rows", "10"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("table[0].interval") && err.contains("1 month"),
        "{err}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 0);
}

#[tokio::test]
async fn an_unknown_table_is_refused_without_sql() {
    let db = TestDb::migrated().await;
    for hostile in [
        "audit_logs; DROP TABLE strata.jobs",
        "pg_catalog.pg_class",
        "\"audit_logs\"",
        "x.y.z",
        "",
    ] {
        let out = strata(&db, &["load", "--rows", "10", "--table", hostile]);
        assert_eq!(out.status.code(), Some(2), "{hostile:?}: {}", stderr(&out));
    }
    assert_eq!(count(&db, "SELECT count(*) FROM strata.jobs").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 0);
}

#[tokio::test]
async fn the_demo_counts_add_up_and_a_second_run_reuses_the_data() {
    let db = TestDb::migrated().await;
    let first = strata(&db, &["--json", "demo", "--rows", "3000"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let sum: i64 = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rows"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 3000);
    assert_eq!(v["rows"], 3000);
    assert!(!v["loaded"].is_null());
    let plan = v["one_month_query"]["plan"].as_array().unwrap();
    let scanned = plan
        .iter()
        .filter(|l| l.as_str().unwrap().contains(" on audit_logs_"))
        .count();
    assert_eq!(
        scanned, 1,
        "the one-month query scans one partition: {plan:?}"
    );

    let second = strata(&db, &["--json", "demo", "--rows", "3000"]);
    assert!(second.status.success(), "{}", stderr(&second));
    let v2: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert!(v2["loaded"].is_null(), "the second run reuses the rows");
    assert_eq!(v2["rows"], 3000);
}

#[tokio::test]
async fn the_demo_never_truncates_a_users_table_unasked() {
    let db = TestDb::migrated().await;
    let first = strata(&db, &["--json", "demo", "--rows", "2000"]);
    assert!(first.status.success(), "{}", stderr(&first));
    // A different row count would mean reloading: on a database given by
    // URL that needs --reload.
    let refused = strata(&db, &["demo", "--rows", "1000"]);
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--reload"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 2000);
    let reloaded = strata(&db, &["--json", "demo", "--rows", "1000", "--reload"]);
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 1000);
}

#[tokio::test]
async fn bad_bytes_and_multi_line_csv_records_are_reported_at_their_line() {
    let db = TestDb::migrated().await;
    let mut bytes = [ndjson_line(1), ndjson_line(2)].join("\n").into_bytes();
    bytes.extend_from_slice(b"\n{\"user_id\":3,\"action\":\"\xff\xfe\"}\n");
    bytes.extend_from_slice(ndjson_line(4).as_bytes());
    let path = write("latin1.ndjson", "");
    std::fs::write(&path, bytes).unwrap();
    let out = strata(&db, &["load", "--file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 3") && stderr(&out).contains("UTF-8"),
        "{}",
        stderr(&out)
    );
    let skipped = strata(
        &db,
        &["load", "--file", path.to_str().unwrap(), "--skip-bad"],
    );
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 3);

    // Record 2 spans lines 3-4 (a quoted newline); record 3 on line 5 is bad.
    let csv = "user_id,action,user_agent,created_at\n\
               1,user.login,curl,2025-03-05T10:00:00Z\n\
               2,user.login,\"two\nlines\",2025-03-05T10:00:00Z\n\
               3,user.login,curl,not-a-time\n";
    let path = write("multi.csv", csv);
    let out = strata(&db, &["load", "--file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 5"), "{}", stderr(&out));
}

#[tokio::test]
async fn the_loader_refuses_what_the_api_refuses_and_rejects_go_to_a_file() {
    let db = TestDb::migrated().await;
    let mut lines: Vec<String> = (1..=6).map(ndjson_line).collect();
    lines[1] = r#"{"user_id":2,"action":"user.login","severity":"bogus","created_at":"2025-02-01T00:00:00Z"}"#.into();
    lines[4] = r#"{"user_id":5,"action":"user.login","status":"weird","created_at":"2025-02-01T00:00:00Z"}"#.into();
    let path = write("rejects-in.ndjson", &lines.join("\n"));

    // Without --rejects the first bad line stops the load, naming the field.
    let out = strata(&db, &["load", "--file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("line 2") && err.contains("severity \"bogus\" is not one of"),
        "{err}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 0);

    let rejects = path.with_file_name("rejects-out.jsonl");
    let out = strata(
        &db,
        &[
            "load",
            "--file",
            path.to_str().unwrap(),
            "--rejects",
            rejects.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 bad lines skipped"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("written to"), "{}", stderr(&out));
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(written.len(), 2, "{written:?}");
    assert_eq!(written[0]["line"], 2);
    assert_eq!(written[0]["field"], "severity");
    assert!(written[0]["reason"].as_str().unwrap().contains("bogus"));
    assert_eq!(
        written[0]["text"],
        lines[1].as_str(),
        "the line itself, to fix and load again"
    );
    assert_eq!(written[1]["line"], 5);
    assert_eq!(written[1]["field"], "status");
    assert!(written[1]["reason"].as_str().unwrap().contains("weird"));
    assert_eq!(count(&db, "SELECT count(*) FROM audit_logs").await, 4);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_logs WHERE user_id IN (2, 5)"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_missing_created_at_defaults_to_now_as_in_the_api() {
    let db = TestDb::migrated().await;
    let out = strata(&db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = write(
        "no-time.ndjson",
        r#"{"user_id":77,"action":"user.login","severity":"info"}"#,
    );
    let out = strata(&db, &["load", "--file", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_logs WHERE user_id = 77 AND created_at > now() - interval '5 minutes'"
        )
        .await,
        1
    );
}
