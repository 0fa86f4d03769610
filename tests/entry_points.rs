//! One operation, three entry points: `maintain` from the CLI, the API and
//! the scheduler on three identical databases leaves the same catalog and
//! the same job result.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use strata::api::{self, tokens, AppState, Role, ServeOptions};
use strata::config::Config;
use tower::ServiceExt;

use common::{stderr, strata, TestDb};

/// Loads the same rows into the default partition only (no partitions yet),
/// so that maintain has creates and moves to do.
async fn prepared() -> TestDb {
    let db = TestDb::migrated().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO audit_logs (user_id, action, created_at)
             SELECT g % 50, 'user.login', timestamptz '2025-03-01 00:00:00+00' + g * interval '37 minutes'
               FROM generate_series(1, 3000) g",
        )
        .await
        .unwrap();
    // The current month exists up front: the API writes its own admin event
    // into it when the request arrives, which would otherwise land in the
    // default partition of that database only.
    db.client()
        .await
        .batch_execute(
            "DO $$ DECLARE m timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'; BEGIN
               EXECUTE format('CREATE TABLE public.%I PARTITION OF public.audit_logs FOR VALUES FROM (%L) TO (%L)',
                              'audit_logs_' || to_char(m AT TIME ZONE 'UTC', 'YYYY_MM'), m, m + interval '1 month');
             END $$",
        )
        .await
        .unwrap();
    db
}

/// Partitions with bounds and row counts, and the job's result without
/// what differs by run (times, ids).
async fn observed(db: &TestDb, job: i64) -> (Vec<(String, String, i64)>, Value) {
    let c = db.client().await;
    let mut parts = Vec::new();
    for r in c
        .query(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'public.audit_logs'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
    {
        let name: String = r.get(0);
        let n: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM public.{name} WHERE action = 'user.login'"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        parts.push((name, r.get(1), n));
    }
    let row = c
        .query_one(
            "SELECT state, result, kind, target FROM strata.jobs WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    let state: String = row.get(0);
    let mut result: Value = row.get(1);
    for r in result["results"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("millis");
    }
    result.as_object_mut().unwrap().remove("now");
    let summary = serde_json::json!({
        "state": state, "kind": row.get::<_, String>(2), "target": row.get::<_, String>(3), "result": result,
    });
    (parts, summary)
}

async fn maintain_job(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT id FROM strata.jobs WHERE kind = 'maintain' AND target = 'public.audit_logs' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn maintain_is_the_same_from_the_cli_the_api_and_the_scheduler() {
    let (cli, http, sched) = (prepared().await, prepared().await, prepared().await);

    let out = strata(&cli, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let client = http.client().await;
    let (_, admin) = tokens::create(&client, Role::Admin, "admin").await.unwrap();
    let state = AppState::new(
        api::pool(&http.url, 4).unwrap(),
        Config::default(),
        ServeOptions::default(),
    );
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/admin/database/partitions/maintain")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:40000".parse::<std::net::SocketAddr>().unwrap(),
    ));
    let resp = api::app(state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: bool = client
            .query_one(
                "SELECT count(*) > 0 FROM strata.jobs WHERE kind = 'maintain' AND state <> 'running'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API's maintain job did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let out = strata(&sched, &["schedule", "run", "maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let a = observed(&cli, maintain_job(&cli).await).await;
    let b = observed(&http, maintain_job(&http).await).await;
    let c = observed(&sched, maintain_job(&sched).await).await;
    assert!(
        a.0.iter()
            .any(|(n, _, rows)| n == "audit_logs_2025_03" && *rows > 0),
        "{:?}",
        a.0
    );
    let differ = |x: &[(String, String, i64)], y: &[(String, String, i64)]| -> Vec<String> {
        let mut d: Vec<String> = x
            .iter()
            .filter(|e| !y.contains(e))
            .map(|e| format!("only first: {e:?}"))
            .collect();
        d.extend(
            y.iter()
                .filter(|e| !x.contains(e))
                .map(|e| format!("only second: {e:?}")),
        );
        d
    };
    assert_eq!(
        differ(&a.0, &b.0),
        Vec::<String>::new(),
        "CLI and API catalogs differ"
    );
    assert_eq!(
        differ(&a.0, &c.0),
        Vec::<String>::new(),
        "CLI and scheduler catalogs differ"
    );
    assert_eq!(a.1["state"], "succeeded");
    assert_eq!(
        paths_differing(&a.1, &b.1, ""),
        Vec::<String>::new(),
        "CLI and API job results differ"
    );
    assert_eq!(
        paths_differing(&a.1, &c.1, ""),
        Vec::<String>::new(),
        "CLI and scheduler job results differ"
    );
    // Each says where it came from.
    assert_eq!(origin(&cli, maintain_job(&cli).await).await, "cli");
    assert_eq!(origin(&http, maintain_job(&http).await).await, "api");
    assert_eq!(
        origin(&sched, maintain_job(&sched).await).await,
        "scheduler"
    );
}

async fn origin(db: &TestDb, job: i64) -> String {
    db.client()
        .await
        .query_one("SELECT origin FROM strata.jobs WHERE id = $1", &[&job])
        .await
        .unwrap()
        .get(0)
}

/// The JSON paths at which two values differ, with both values.
fn paths_differing(a: &Value, b: &Value, at: &str) -> Vec<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| {
                    paths_differing(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        &format!("{at}.{k}"),
                    )
                })
                .collect()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .flat_map(|(i, (p, q))| paths_differing(p, q, &format!("{at}[{i}]")))
            .collect(),
        _ if a == b => Vec::new(),
        _ => vec![format!("{at}: {a} vs {b}")],
    }
}
