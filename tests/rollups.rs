//! Rollups against a real server: the views equal the base aggregate after
//! every write, refresh or partition change; refresh touches only what
//! changed; bad declarations are refused by name.

mod common;

use std::path::Path;

use common::{config_file, seeded, stderr, strata, TestDb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use strata::config::Config;
use strata::db::QualifiedName;
use strata::ops::{self, Op, Origin};
use tokio_postgres::Client;

const WITH_HLL: &str = r#"[[table]]
name = "audit_logs"
start = "2025-01-01"

[[table.rollups]]
name = "hourly"
bucket = "hour"
dimensions = ["severity"]

[[table.rollups]]
name = "daily"
bucket = "day"
dimensions = ["severity", "status"]

[[table.rollups]]
name = "users_daily"
bucket = "day"
measures = ["count", "distinct user_id"]
"#;

/// (view, bucket keyword, dimensions, has hll)
type ViewDef = (&'static str, &'static str, &'static [&'static str], bool);

const DEFAULT_VIEWS: &[ViewDef] = &[
    ("audit_logs_hourly", "hour", &["severity"], false),
    ("audit_logs_daily", "day", &["severity", "status"], false),
];
const HLL_VIEW: ViewDef = ("audit_logs_users_daily", "day", &[], true);

fn config(text: Option<&str>) -> Config {
    match text {
        None => Config::load(None, std::iter::empty()).unwrap(),
        Some(t) => {
            let path = config_file("strata.toml", t);
            Config::load(Some(Path::new(&path)), std::iter::empty()).unwrap()
        }
    }
}

async fn run(client: &mut Client, config: &Config, op: Op) -> Value {
    let mut quiet = |_: &ops::Progress| {};
    match ops::run(client, config, op, &Origin::cli(), &mut quiet).await {
        Ok((_, v)) => v,
        Err(e) => panic!("operation failed: {e}"),
    }
}

async fn refresh(client: &mut Client, config: &Config) -> Value {
    run(client, config, Op::RollupRefresh { table: None }).await
}

/// Rows by which the view and the base aggregate differ (0 = equal,
/// duplicates included).
async fn mismatches(client: &Client, v: &ViewDef) -> i64 {
    differ(client, v, &format!("public.{}", v.0), "true").await
}

/// The same for the rollup's range function over `[from, to)`, against the
/// base aggregate of those buckets.
async fn range_mismatches(client: &Client, v: &ViewDef, from: &str, to: &str) -> i64 {
    let (view, bucket, ..) = *v;
    differ(
        client,
        v,
        &format!("strata.{view}_range('{from}', '{to}')"),
        &format!(
            "date_trunc('{bucket}', created_at, 'UTC') >= '{from}' AND date_trunc('{bucket}', created_at, 'UTC') < '{to}'"
        ),
    )
    .await
}

async fn differ(client: &Client, v: &ViewDef, source: &str, base_filter: &str) -> i64 {
    let (_, bucket, dims, hll) = *v;
    let dims_list: String = dims.iter().map(|d| format!(", {d}")).collect();
    let (vm, bm) = if hll {
        (
            ", round(hll_cardinality(distinct_user_id))",
            ", round(hll_cardinality(hll_add_agg(hll_hash_bigint(user_id))))",
        )
    } else {
        ("", "")
    };
    let groups: String = (2..=dims.len() + 1).map(|i| format!(", {i}")).collect();
    let sql = format!(
        "WITH v AS (SELECT bucket{dims_list}, count{vm} FROM {source}),
              b AS (SELECT date_trunc('{bucket}', created_at, 'UTC'){dims_list}, count(*){bm}
                      FROM public.audit_logs WHERE {base_filter} GROUP BY 1{groups})
         SELECT (SELECT count(*) FROM (SELECT * FROM v EXCEPT ALL SELECT * FROM b) x)
              + (SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM v) y)"
    );
    client.query_one(&sql, &[]).await.unwrap().get(0)
}

/// Ranges the range functions are checked over: everything, one month of
/// late rows, and one ending in the future (live part included).
const RANGES: &[(&str, &str)] = &[
    ("-infinity", "infinity"),
    ("2025-05-01 00:00+00", "2025-06-01 00:00+00"),
    ("2025-06-15 00:00+00", "2099-01-01 00:00+00"),
];

async fn assert_exact(client: &Client, views: &[ViewDef], step: &str) {
    for v in views {
        let n = mismatches(client, v).await;
        assert_eq!(
            n, 0,
            "{}: {n} group(s) differ from the base table after {step}",
            v.0
        );
        for (from, to) in RANGES {
            let n = range_mismatches(client, v, from, to).await;
            assert_eq!(
                n, 0,
                "{}_range({from}, {to}): {n} group(s) differ from the base table after {step}",
                v.0
            );
        }
    }
}

const SEVERITIES: &[&str] = &["info", "warning", "error", "critical"];
const STATUSES: &[&str] = &["success", "failure"];

/// A random time: mostly late rows into the loaded months, some now.
fn random_time(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.2) {
        format!("now() - interval '{} minutes'", rng.gen_range(0..180))
    } else {
        format!(
            "timestamptz '2025-01-01 00:00+00' + interval '{} seconds'",
            rng.gen_range(0..181 * 86_400)
        )
    }
}

async fn random_step(client: &Client, rng: &mut StdRng) -> String {
    match rng.gen_range(0..6) {
        0 | 1 => {
            let n = rng.gen_range(1..40);
            let mut values = Vec::new();
            for _ in 0..n {
                values.push(format!(
                    "({}, 'action_{}', '{}', '{}', {})",
                    rng.gen_range(1..50),
                    rng.gen_range(0..5),
                    SEVERITIES[rng.gen_range(0..SEVERITIES.len())],
                    STATUSES[rng.gen_range(0..STATUSES.len())],
                    random_time(rng)
                ));
            }
            client
                .batch_execute(&format!(
                    "INSERT INTO audit_logs (user_id, action, severity, status, created_at) VALUES {}",
                    values.join(", ")
                ))
                .await
                .unwrap();
            format!("inserting {n} rows")
        }
        2 => {
            // Moves rows across partitions (and changes a dimension).
            let days = rng.gen_range(-60..60);
            let sev = SEVERITIES[rng.gen_range(0..SEVERITIES.len())];
            let n = client
                .execute(
                    &format!(
                        "UPDATE audit_logs SET created_at = greatest(created_at + interval '{days} days', '2025-01-01'),
                                severity = '{sev}'
                          WHERE id IN (SELECT id FROM audit_logs ORDER BY md5(id::text || $1) LIMIT 15)"
                    ),
                    &[&rng.gen::<u32>().to_string()],
                )
                .await
                .unwrap();
            format!("moving {n} rows by {days} days")
        }
        3 => {
            let n = client
                .execute(
                    "DELETE FROM audit_logs WHERE id IN (SELECT id FROM audit_logs ORDER BY md5(id::text || $1) LIMIT 10)",
                    &[&rng.gen::<u32>().to_string()],
                )
                .await
                .unwrap();
            format!("deleting {n} rows")
        }
        4 => {
            // Straight into a partition: only the partition's trigger fires.
            let day = rng.gen_range(0..28);
            client
                .batch_execute(&format!(
                    "INSERT INTO audit_logs_2025_03 (user_id, action, severity, status, created_at)
                     VALUES (7, 'direct', 'error', 'failure', timestamptz '2025-03-01 00:00+00' + interval '{day} days')"
                ))
                .await
                .unwrap();
            "inserting into a partition directly".into()
        }
        _ => {
            let n = client
                .execute(
                    "UPDATE audit_logs SET status = 'failure' WHERE id IN (SELECT id FROM audit_logs ORDER BY md5(id::text || $1) LIMIT 5)",
                    &[&rng.gen::<u32>().to_string()],
                )
                .await
                .unwrap();
            format!("changing the status of {n} rows")
        }
    }
}

async fn has_hll(db: &TestDb) -> bool {
    common::require_extension(db, "hll").await
}

async fn partition_bounds(
    client: &Client,
    name: &str,
) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let month: chrono::NaiveDate = chrono::NaiveDate::parse_from_str(
        &format!("{}_01", name.trim_start_matches("audit_logs_")),
        "%Y_%m_%d",
    )
    .unwrap();
    let _ = client;
    let from = month.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let to = (month + chrono::Months::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    (from, to)
}

#[tokio::test]
async fn views_equal_the_base_aggregate_after_every_step() {
    let db = seeded(2_000).await;
    let hll = has_hll(&db).await;
    let (cfg, views): (Config, Vec<ViewDef>) = if hll {
        let c = config(Some(WITH_HLL));
        let mut client = db.client().await;
        run(&mut client, &c, Op::ConfigApply { table: None }).await;
        (c, DEFAULT_VIEWS.iter().copied().chain([HLL_VIEW]).collect())
    } else {
        (config(None), DEFAULT_VIEWS.to_vec())
    };
    let mut client = db.client().await;
    run(&mut client, &cfg, Op::RollupApply { table: None }).await;
    assert_exact(&client, &views, "apply (nothing materialized)").await;
    let table = QualifiedName::new("public", "audit_logs").unwrap();
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        refresh(&mut client, &cfg).await;
        assert_exact(&client, &views, "a refresh").await;
        for i in 0..40 {
            let what = if rng.gen_bool(0.2) {
                refresh(&mut client, &cfg).await;
                "a refresh".to_string()
            } else {
                random_step(&client, &mut rng).await
            };
            assert_exact(&client, &views, &format!("seed {seed} step {i}: {what}")).await;
            if i == 20 {
                // A partition leaves and comes back (as an archive restore
                // re-attaches it), each announced through invalidate_range.
                let name = ["audit_logs_2025_02", "audit_logs_2025_04"][seed as usize % 2];
                let (from, to) = partition_bounds(&client, name).await;
                strata::rollup::invalidate_range(&client, &table, Some(from), Some(to))
                    .await
                    .unwrap();
                client
                    .batch_execute(&format!("ALTER TABLE audit_logs DETACH PARTITION {name}"))
                    .await
                    .unwrap();
                assert_exact(&client, &views, &format!("seed {seed}: detaching {name}")).await;
                refresh(&mut client, &cfg).await;
                assert_exact(
                    &client,
                    &views,
                    &format!("seed {seed}: refresh after detach"),
                )
                .await;
                strata::rollup::invalidate_range(&client, &table, Some(from), Some(to))
                    .await
                    .unwrap();
                client
                    .batch_execute(&format!(
                        "ALTER TABLE audit_logs ATTACH PARTITION {name}
                         FOR VALUES FROM ('{from}') TO ('{to}')"
                    ))
                    .await
                    .unwrap();
                assert_exact(
                    &client,
                    &views,
                    &format!("seed {seed}: re-attaching {name}"),
                )
                .await;
            }
        }
    }
    // A drop of a partition, announced the same way.
    let (from, to) = partition_bounds(&client, "audit_logs_2025_05").await;
    refresh(&mut client, &cfg).await;
    strata::rollup::invalidate_range(&client, &table, Some(from), Some(to))
        .await
        .unwrap();
    client
        .batch_execute("DROP TABLE audit_logs_2025_05")
        .await
        .unwrap();
    assert_exact(&client, &views, "dropping audit_logs_2025_05").await;
    refresh(&mut client, &cfg).await;
    assert_exact(&client, &views, "a refresh after the drop").await;
    // TRUNCATE of the whole table fires the parent's statement trigger.
    client.batch_execute("TRUNCATE audit_logs").await.unwrap();
    assert_exact(&client, &views, "TRUNCATE").await;
    refresh(&mut client, &cfg).await;
    assert_exact(&client, &views, "a refresh after TRUNCATE").await;
}

async fn count_in(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_row_counts_at_once_and_a_refresh_touches_only_its_buckets() {
    let db = seeded(2_000).await;
    let cfg = config(None);
    let mut client = db.client().await;
    let first = refresh(&mut client, &cfg).await;
    let hourly = &first["rollups"][0];
    assert_eq!(hourly["name"], "hourly");
    assert!(hourly["watermark_after"].is_string(), "{first}");
    assert_eq!(
        hourly["base_rows"], 2_000,
        "the first refresh reads every row once"
    );
    let stored = count_in(&client, "SELECT count(*) FROM strata.audit_logs_hourly").await;
    assert!(stored > 0, "buckets are materialized");

    // Counted by the view before any refresh: a late row below the watermark.
    let q = "SELECT coalesce(sum(count), 0)::bigint FROM audit_logs_hourly
              WHERE bucket = '2025-03-10 10:00+00' AND severity = 'critical'";
    assert_eq!(count_in(&client, q).await, 0);
    client
        .batch_execute(
            "INSERT INTO audit_logs (user_id, action, severity, created_at)
             VALUES (1, 'probe', 'critical', '2025-03-10 10:30+00')",
        )
        .await
        .unwrap();
    assert_eq!(count_in(&client, q).await, 1);
    let live = count_in(&client, "SELECT count(*) FROM audit_logs").await;
    let view = count_in(&client, "SELECT sum(count)::bigint FROM audit_logs_daily").await;
    assert_eq!(view, live);

    // 10,000 rows in three hours: the refresh rewrites those buckets only.
    client
        .batch_execute(
            "INSERT INTO audit_logs (user_id, action, severity, status, created_at)
             SELECT 1 + g % 97, 'bulk_' || (g % 7), (ARRAY['info','warning','error'])[1 + g % 3], 'success',
                    timestamptz '2025-03-10 10:00+00' + (g % 10800) * interval '1 second'
               FROM generate_series(1, 10000) g",
        )
        .await
        .unwrap();
    let in_window = count_in(
        &client,
        "SELECT count(*) FROM audit_logs WHERE created_at >= '2025-03-10 10:00+00' AND created_at < '2025-03-10 13:00+00'",
    )
    .await;
    let day = count_in(
        &client,
        "SELECT count(*) FROM audit_logs WHERE created_at >= '2025-03-10' AND created_at < '2025-03-11'",
    )
    .await;
    let out = refresh(&mut client, &cfg).await;
    let (hourly, daily) = (&out["rollups"][0], &out["rollups"][1]);
    eprintln!(
        "refresh after 10,000 rows: hourly {} ms, daily {} ms",
        hourly["millis"], daily["millis"]
    );
    assert_eq!(hourly["ranges"], 1, "{out}");
    assert_eq!(hourly["buckets"], 3, "{out}");
    assert_eq!(hourly["base_rows"], in_window, "{out}");
    assert_eq!(daily["buckets"], 1, "{out}");
    assert_eq!(daily["base_rows"], day, "{out}");
    assert_eq!(
        out["invalidations_consumed"], 2,
        "one range per statement: {out}"
    );
    assert_exact(&client, DEFAULT_VIEWS, "the refresh").await;
    let pending = count_in(&client, "SELECT count(*) FROM strata.rollup_invalidations").await;
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn bad_declarations_are_refused_by_name() {
    let db = seeded(0).await;
    let unknown = config_file(
        "strata.toml",
        "[[table]]\nname = \"audit_logs\"\nstart = \"2025-01-01\"\n[[table.rollups]]\nname = \"h\"\nbucket = \"hour\"\ndimensions = [\"colour\"]\n",
    );
    let out = strata(&db, &["--config", &unknown, "config", "apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = strata(&db, &["--config", &unknown, "rollup", "apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dimension colour is not a column of public.audit_logs"),
        "{}",
        stderr(&out)
    );
    let views = count_in(&db.client().await, "SELECT count(*) FROM strata.rollups").await;
    assert_eq!(views, 0, "nothing installed");

    let bucket = config_file(
        "strata.toml",
        "[[table]]\nname = \"audit_logs\"\n[[table.rollups]]\nname = \"w\"\nbucket = \"week\"\n",
    );
    let out = strata(&db, &["--config", &bucket, "rollup", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("table[0].rollups[0].bucket"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("\"week\" is not a bucket"),
        "{}",
        stderr(&out)
    );

    let measure = config_file(
        "strata.toml",
        "[[table]]\nname = \"audit_logs\"\n[[table.rollups]]\nname = \"m\"\nbucket = \"day\"\nmeasures = [\"sum details\"]\n",
    );
    let out = strata(&db, &["--config", &measure, "rollup", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("table[0].rollups[0].measures"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn refresh_and_list_from_the_command_line_are_jobs() {
    let db = seeded(500).await;
    let out = strata(&db, &["rollup", "refresh", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["job_id"].as_i64().is_some(), "{v}");
    assert_eq!(v["rollups"].as_array().map(Vec::len), Some(2), "{v}");
    let out = strata(&db, &["rollup", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|r| r["installed"] == true && r["rows"].as_i64() > Some(0)),
        "{v}"
    );
    let origin: String = db
        .client()
        .await
        .query_one(
            "SELECT origin FROM strata.jobs WHERE kind = 'rollup_refresh' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(origin, "cli");
}

#[tokio::test]
async fn retention_drops_keep_the_views_exact() {
    let db = seeded(1_000).await;
    let mut client = db.client().await;
    refresh(&mut client, &config(None)).await;
    let before = count_in(&client, "SELECT sum(count)::bigint FROM audit_logs_daily").await;
    assert_eq!(before, 1_000);
    let text = "[[table]]\nname = \"audit_logs\"\nstart = \"2025-01-01\"\nretention = \"12 months\"\nretention_mode = \"drop\"\n";
    let cfg = config(Some(text));
    run(&mut client, &cfg, Op::ConfigApply { table: None }).await;
    run(
        &mut client,
        &cfg,
        Op::Maintain(ops::MaintainOptions {
            yes: true,
            ..Default::default()
        }),
    )
    .await;
    let left = count_in(&client, "SELECT count(*) FROM audit_logs").await;
    assert!(
        left < 1_000,
        "retention dropped the loaded months ({left} rows left)"
    );
    assert_exact(&client, DEFAULT_VIEWS, "retention drops, before a refresh").await;
    refresh(&mut client, &cfg).await;
    assert_exact(&client, DEFAULT_VIEWS, "retention drops, after a refresh").await;
    let stale = count_in(
        &client,
        "SELECT count(*) FROM strata.audit_logs_daily WHERE bucket < '2025-07-01'",
    )
    .await;
    assert_eq!(
        stale, 0,
        "the dropped months' buckets are gone from storage"
    );
}

#[tokio::test]
async fn summary_reads_the_rollup_and_agrees_with_the_table() {
    let db = seeded(3_000).await;
    let client = db.client().await;
    let table = QualifiedName::new("public", "audit_logs").unwrap();
    let from = "2025-02-01T00:00:00Z".parse().unwrap();
    let to = "2025-05-01T00:00:00Z".parse().unwrap();
    // Before any rollup exists the table answers.
    let (base, source) = strata::rollup::severity_counts(&client, &table, from, to, "day")
        .await
        .unwrap();
    assert_eq!(source, strata::rollup::Source::Base);
    let out = strata(&db, &["rollup", "refresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A late row, not yet refreshed, is in the rollup's answer too.
    client
        .batch_execute("INSERT INTO audit_logs (user_id, action, severity, created_at) VALUES (3, 'late', 'error', '2025-03-03 03:03+00')")
        .await
        .unwrap();
    let (_, base_total) = {
        let r: i64 = client
            .query_one("SELECT count(*) FROM audit_logs WHERE created_at >= '2025-02-01' AND created_at < '2025-05-01'", &[])
            .await
            .unwrap()
            .get(0);
        ((), r)
    };
    assert_eq!(base.iter().map(|r| r.count).sum::<i64>() + 1, base_total);
    for unit in ["day", "month", "hour"] {
        let (rolled, source) = strata::rollup::severity_counts(&client, &table, from, to, unit)
            .await
            .unwrap();
        let expected = if unit == "hour" {
            "public.audit_logs_hourly"
        } else {
            "public.audit_logs_daily"
        };
        assert_eq!(
            source,
            strata::rollup::Source::Rollup(expected.into()),
            "{unit}"
        );
        let raw: Vec<(chrono::DateTime<chrono::Utc>, String, i64)> = client
            .query(
                "SELECT date_trunc($1, created_at, 'UTC'), coalesce(severity, 'none'), count(*) FROM audit_logs
                  WHERE created_at >= '2025-02-01' AND created_at < '2025-05-01' GROUP BY 1, 2 ORDER BY 1, 2",
                &[&unit],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let got: Vec<_> = rolled
            .iter()
            .map(|r| (r.start, r.severity.clone(), r.count))
            .collect();
        assert_eq!(got, raw, "{unit}");
    }
    // A range off the day boundaries is served by the hourly rollup.
    let odd = "2025-02-01T05:00:00Z".parse().unwrap();
    let (_, source) = strata::rollup::severity_counts(&client, &table, odd, to, "day")
        .await
        .unwrap();
    assert_eq!(
        source,
        strata::rollup::Source::Rollup("public.audit_logs_hourly".into())
    );
    let out = strata(
        &db,
        &[
            "summary",
            "--from",
            "2025-02-01",
            "--to",
            "2025-05-01",
            "--bucket",
            "month",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"], base_total, "{v}");
    assert_eq!(v["read_from"]["source"], "rollup", "{v}");
}

/// Partitions that maintain makes get the invalidation triggers in the same
/// run, so a write straight into one of them is heard (before, they waited
/// for the next apply or refresh).
#[tokio::test]
async fn partitions_made_by_maintain_get_the_triggers_at_once() {
    let db = seeded(200).await;
    let mut client = db.client().await;
    refresh(&mut client, &config(None)).await;
    let before = count_in(
        &client,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass",
    )
    .await;
    let text = "[[table]]\nname = \"audit_logs\"\nstart = \"2025-01-01\"\npremake = 10\n";
    let cfg = config(Some(text));
    run(&mut client, &cfg, Op::ConfigApply { table: None }).await;
    run(
        &mut client,
        &cfg,
        Op::Maintain(ops::MaintainOptions {
            yes: true,
            ..Default::default()
        }),
    )
    .await;
    let after = count_in(
        &client,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass",
    )
    .await;
    assert!(
        after > before,
        "premake 10 made partitions ({before} -> {after})"
    );
    let bare = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'audit_logs'::regclass AND c.relkind = 'r'
                AND (SELECT count(*) FROM pg_trigger t
                      WHERE t.tgrelid = c.oid AND t.tgname LIKE 'strata_rollup_%') <> 4
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>();
    assert!(
        bare.is_empty(),
        "partitions without the four triggers: {bare:?}"
    );
    assert_exact(&client, DEFAULT_VIEWS, "after maintain made partitions").await;
}

/// pg_partman's retention drops inside run_maintenance, where no rollup is
/// told; strata's maintain invalidates what it may drop first, so the views
/// stay exact before any refresh (before, the dropped months' buckets
/// stayed materialized).
#[tokio::test]
async fn partman_retention_keeps_the_views_exact() {
    let db = TestDb::migrated().await;
    if !common::require_extension(&db, "pg_partman").await {
        return;
    }
    let mut client = db.client().await;
    let cfg = config(Some(
        "[[table]]\nname = \"audit_logs\"\nbackend = \"partman\"\n",
    ));
    run(
        &mut client,
        &cfg,
        Op::Maintain(ops::MaintainOptions::default()),
    )
    .await;
    client
        .batch_execute(
            "INSERT INTO audit_logs (user_id, action, severity, status, created_at)
             SELECT g, 'act' || (g % 5), 'info', 'success',
                    '2025-01-01'::timestamptz + (g * interval '7 hours')
               FROM generate_series(1, 600) g",
        )
        .await
        .unwrap();
    refresh(&mut client, &cfg).await;
    assert_eq!(
        count_in(&client, "SELECT sum(count)::bigint FROM audit_logs_daily").await,
        600
    );
    let retained = config(Some(
        "[[table]]\nname = \"audit_logs\"\nbackend = \"partman\"\nretention = \"12 months\"\nretention_mode = \"drop\"\n",
    ));
    run(&mut client, &retained, Op::ConfigApply { table: None }).await;
    run(
        &mut client,
        &retained,
        Op::Maintain(ops::MaintainOptions::default()),
    )
    .await;
    let left = count_in(&client, "SELECT count(*) FROM audit_logs").await;
    assert!(
        left < 600,
        "pg_partman dropped the old months ({left} rows left)"
    );
    assert_exact(
        &client,
        DEFAULT_VIEWS,
        "pg_partman retention, before a refresh",
    )
    .await;
    refresh(&mut client, &retained).await;
    assert_exact(
        &client,
        DEFAULT_VIEWS,
        "pg_partman retention, after a refresh",
    )
    .await;
}
