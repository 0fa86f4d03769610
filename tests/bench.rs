mod common;

use common::{stderr, strata, TestDb};
use serde_json::Value;

const LAYOUTS: [&str; 3] = ["seed_before", "plain_indexed", "strata"];

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// `ratio` was computed from `baseline` and `strata`, and all are measured (non-zero).
fn assert_ratio(ratio: &Value, baseline: &Value, strata: &Value, what: &str) {
    let (b, s) = (num(baseline, what), num(strata, what));
    assert!(b > 0.0 && s > 0.0, "{what}: unmeasured figures {b} / {s}");
    let r = num(ratio, what);
    assert!(
        ((b / s) - r).abs() <= 1e-9 * r.abs().max(1.0),
        "{what}: ratio {r} is not {b} / {s}"
    );
}

async fn database_exists(db: &TestDb, name: &str) -> bool {
    db.client()
        .await
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_small_bench_reports_every_ratio_from_its_medians() {
    let db = TestDb::empty().await;
    let scratch = format!("{}_bench", db.name);
    let out = strata(
        &db,
        &[
            "--json",
            "bench",
            "--rows",
            "200000",
            "--runs",
            "3",
            "--bench-database",
            &scratch,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["rows"], 200000);
    assert_eq!(v["runs"], 3);
    assert!(v["machine"]["server_version"]
        .as_str()
        .unwrap()
        .contains("PostgreSQL"));
    assert_eq!(v["machine"]["settings"]["synchronize_seqscans"], "off");
    assert_eq!(v["layouts"].as_array().unwrap().len(), 3);
    for l in v["layouts"].as_array().unwrap() {
        assert!(l["how_built"].as_str().unwrap().len() > 20, "{l}");
        assert!(num(&l["table_bytes"], "table bytes") > 0.0, "{l}");
    }

    let queries = v["queries"].as_array().unwrap();
    assert!(queries.len() >= 7, "{queries:?}");
    for q in queries {
        let key = q["key"].as_str().unwrap();
        let mut rows = Vec::new();
        for l in LAYOUTS {
            let r = &q["layouts"][l];
            for t in ["client_ms", "server_ms"] {
                assert_eq!(r[t]["runs"].as_array().unwrap().len(), 3, "{key} {l} {t}");
                assert!(num(&r[t]["median"], t) > 0.0, "{key} {l} {t}");
                assert!(
                    num(&r[t]["p95"], t) >= num(&r[t]["median"], t),
                    "{key} {l} {t}"
                );
            }
            let plan = &r["plan"];
            for field in [
                "scans",
                "indexes",
                "partitions_planned",
                "partitions_scanned",
                "partitions_total",
                "shared_hit",
                "shared_read",
            ] {
                assert!(plan.get(field).is_some(), "{key} {l}: no {field} in {plan}");
            }
            assert!(!plan["scans"].as_array().unwrap().is_empty(), "{key} {l}");
            let partitioned = plan["partitions_total"].is_u64();
            assert_eq!(partitioned, l == "strata", "{key} {l}: {plan}");
            rows.push(r["rows"].as_u64().unwrap());
        }
        // The same rows in every layout give the same answers.
        assert!(rows.iter().all(|n| *n == rows[0]), "{key}: {rows:?}");
        let ratios = q["ratios"].as_array().unwrap();
        assert_eq!(ratios.len(), 2, "{key}");
        for r in ratios {
            let b = &q["layouts"][r["baseline"].as_str().unwrap()];
            let s = &q["layouts"]["strata"];
            let what = format!("{key} vs {}", r["baseline"]);
            assert_ratio(
                &r["client"],
                &b["client_ms"]["median"],
                &s["client_ms"]["median"],
                &what,
            );
            assert_ratio(
                &r["server"],
                &b["server_ms"]["median"],
                &s["server_ms"]["median"],
                &what,
            );
        }
    }
    let one_month = queries.iter().find(|q| q["key"] == "one_month").unwrap();
    assert_eq!(
        one_month["layouts"]["strata"]["plan"]["partitions_planned"],
        1
    );
    assert_eq!(one_month["seed_claim"]["before_ms"], 2400.0);

    // Rollup and read-path workloads: plain-indexed / strata from the
    // client medians, and the same answer on both.
    let paired = v["paired"].as_array().unwrap();
    assert_eq!(paired.len(), 5, "{paired:?}");
    for q in paired {
        let key = q["key"].as_str().unwrap();
        assert_ratio(
            &q["ratio"],
            &q["plain_client_ms"]["median"],
            &q["strata_client_ms"]["median"],
            key,
        );
        assert_eq!(q["same_answer"], true, "{key}");
        assert!(q["rows"].as_u64().unwrap() > 0, "{key}");
    }
    let rollups = &v["rollups"];
    assert!(num(&rollups["rollup_bytes"], "rollup bytes") > 0.0);
    assert_eq!(rollups["refreshes"].as_array().unwrap().len(), 2);

    let i = &v["index_sizes"];
    assert_ratio(
        &i["size_ratio"],
        &i["btree"]["bytes"],
        &i["brin_strata"]["bytes"],
        "index size",
    );
    assert_ratio(
        &i["build_ratio"],
        &i["btree"]["ms"],
        &i["brin_strata"]["ms"],
        "index build",
    );

    let steps = v["maintenance"]["steps"].as_array().unwrap();
    assert!(steps.len() >= 5, "{steps:?}");
    for s in steps {
        assert_ratio(
            &s["ratio"],
            &s["baseline_ms"],
            &s["strata_ms"],
            s["what"].as_str().unwrap(),
        );
    }
    let rates = v["load"]["rates"].as_array().unwrap();
    assert_eq!(rates.len(), 3);
    let strata_rate = rates.iter().find(|r| r["layout"] == "strata").unwrap();
    for pair in v["load"]["ratios"].as_array().unwrap() {
        let rate = rates.iter().find(|r| r["layout"] == pair[0]).unwrap();
        assert_ratio(&pair[1], &rate["ms"], &strata_rate["ms"], "load");
    }

    assert!(
        !database_exists(&db, &scratch).await,
        "the scratch database is dropped without --keep"
    );
}

#[tokio::test]
async fn a_database_that_is_not_strata_bench_is_refused() {
    let db = TestDb::empty().await;
    // The target database itself: never to be dropped and recreated.
    let out = strata(
        &db,
        &["bench", "--rows", "10000", "--bench-database", &db.name],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not strata's bench database"),
        "{}",
        stderr(&out)
    );
    assert!(database_exists(&db, &db.name).await);
}
