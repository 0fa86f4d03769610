//! The admin HTTP API through the real router (`oneshot`) and, for a few
//! tests, a real TCP listener; every test on a fresh database.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use strata::api::{self, tokens, AppState, Role, ServeOptions};
use strata::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use common::TestDb;

struct Api {
    db: TestDb,
    state: AppState,
    admin: String,
    reader: String,
    writer: String,
}

async fn state_for(db: &TestDb, options: ServeOptions) -> AppState {
    let pool = api::pool(&db.url, 8).unwrap();
    // These tests post rows of 2025 and of 2099 on purpose; the writer's
    // created_at window has its own tests (tests/search.rs).
    let mut config = Config::default();
    config.api.accept_past = Some(Duration::from_secs(100 * 365 * 86_400));
    config.api.accept_future = Duration::from_secs(100 * 365 * 86_400);
    AppState::new(pool, config, options)
}

async fn setup(db: TestDb) -> Api {
    setup_with(db, ServeOptions::default()).await
}

async fn setup_with(db: TestDb, options: ServeOptions) -> Api {
    let client = db.client().await;
    let (_, admin) = tokens::create(&client, Role::Admin, "admin").await.unwrap();
    let (_, reader) = tokens::create(&client, Role::Reader, "reader")
        .await
        .unwrap();
    let (_, writer) = tokens::create(&client, Role::Writer, "writer")
        .await
        .unwrap();
    let state = state_for(&db, options).await;
    Api {
        db,
        state,
        admin,
        reader,
        writer,
    }
}

const PEER: &str = "192.0.2.7:40000";

async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", "api-test/1.0");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let mut req = req.body(body.map(Body::from).unwrap_or_default()).unwrap();
    // What `into_make_service_with_connect_info` adds on a real listener.
    req.extensions_mut()
        .insert(ConnectInfo(PEER.parse::<SocketAddr>().unwrap()));
    let resp = api::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

async fn get(state: &AppState, uri: &str, token: &str) -> (StatusCode, Value) {
    send(state, Method::GET, uri, Some(token), None).await
}

async fn post(state: &AppState, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    send(
        state,
        Method::POST,
        uri,
        Some(token),
        Some(body.to_string()),
    )
    .await
}

/// Polls the job until it is no longer running.
async fn wait_job(state: &AppState, token: &str, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, job) = get(state, &format!("/admin/jobs/{id}"), token).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["state"] != "running" {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} still running: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn reads_answer_in_their_documented_shapes() {
    let a = setup(common::seeded(300).await).await;
    let s = &a.state;
    let (st, v) = get(s, "/admin/database/stats/partitions", &a.reader).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["partition_count"].as_u64().unwrap() > 12, "{v}");
    assert!(v["total_size_bytes"].as_i64().unwrap() > 0);
    assert!(v["total_size_pretty"].is_string());
    assert!(v["partitions"][0]["name"].is_string());
    let (st, v) = get(s, "/admin/database/stats/indexes", &a.reader).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(!v["indexes"].as_array().unwrap().is_empty(), "{v}");
    let (st, v) = get(s, "/admin/database/stats/queries?days=3", &a.reader).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.is_object());
    let (st, v) = get(s, "/admin/database/report?days=2", &a.reader).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["tables"][0]["table"], "public.audit_logs");
    assert!(v["recommendations"].is_array());
    let (st, v) = get(s, "/admin/database/health", &a.reader).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["status"].is_string() && v["checks"].is_array(), "{v}");
    let (st, v) = get(s, "/admin/jobs", &a.reader).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.is_array());
    let (st, v) = send(s, Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v, json!({"status": "ok", "database": "reachable"}));
    let (st, v) = get(s, "/metrics", &a.reader).await;
    assert_eq!(st, StatusCode::OK);
    let text = v.as_str().unwrap();
    for needle in [
        "strata_partitions{table=\"public.audit_logs\"}",
        "strata_table_bytes{table=\"public.audit_logs\"}",
        "strata_db_pool_connections{state=\"open\"}",
        "strata_jobs_running 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // The routed requests above are counted under their templates.
    let (_, v) = get(s, "/metrics", &a.reader).await;
    assert!(
        v.as_str().unwrap().contains(
            "strata_http_requests_total{route=\"/admin/database/stats/partitions\",method=\"GET\",status=\"200\"} 1"
        ),
        "{v}"
    );
    let (st, v) = get(
        s,
        "/audit-logs/summary?from=2025-01-01&to=2025-07-01&bucket=month",
        &a.reader,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 300, "{v}");
    assert_eq!(v["buckets"].as_array().unwrap().len(), 6, "{v}");
}

/// Every protected route with no token, a malformed one, an unknown one, a
/// revoked one and a token of the wrong role.
#[tokio::test]
async fn tokens_and_roles_guard_every_route() {
    let a = setup(TestDb::migrated().await).await;
    let s = &a.state;
    let client = a.db.client().await;
    let (revoked_info, revoked) = tokens::create(&client, Role::Admin, "old").await.unwrap();
    tokens::revoke(&client, revoked_info.id).await.unwrap();
    let unknown = format!("strata_{}", "ab".repeat(32));
    let range = "from=2025-01-01&to=2025-02-01";
    let reads = [
        "/admin/database/stats/partitions".to_string(),
        "/admin/database/stats/indexes".into(),
        "/admin/database/stats/queries?days=1".into(),
        "/admin/database/report".into(),
        "/admin/database/health".into(),
        "/admin/jobs".into(),
        "/admin/jobs/1".into(),
        format!("/audit-logs?{range}"),
        format!("/audit-logs/summary?{range}"),
        "/metrics".into(),
        "/admin/database/seals".into(),
    ];
    let admin_posts = [
        "/admin/database/maintenance/vacuum",
        "/admin/database/maintenance/analyze",
        "/admin/database/maintenance/reindex",
        "/admin/database/partitions/maintain",
        "/admin/database/seals/verify",
    ];
    let body = json!({"table_name": "audit_logs"}).to_string();
    let mut cases: Vec<(Method, String, Option<String>, Role)> = Vec::new();
    for r in &reads {
        cases.push((Method::GET, r.clone(), None, Role::Reader));
    }
    for p in admin_posts {
        cases.push((Method::POST, p.into(), Some(body.clone()), Role::Admin));
    }
    cases.push((
        Method::POST,
        "/audit-logs".into(),
        Some(json!({"user_id": 1, "action": "a"}).to_string()),
        Role::Writer,
    ));
    for (method, uri, body, needed) in &cases {
        for token in [
            None,
            Some("garbage"),
            Some(unknown.as_str()),
            Some(revoked.as_str()),
        ] {
            let (st, v) = send(s, method.clone(), uri, token, body.clone()).await;
            assert_eq!(
                st,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {token:?}: {v}"
            );
            assert_eq!(v["error"]["code"], "unauthorized");
        }
        let wrong: Vec<&str> = match needed {
            Role::Admin => vec![&a.reader, &a.writer],
            Role::Reader => vec![&a.writer],
            Role::Writer => vec![&a.reader],
        };
        for token in wrong {
            let (st, v) = send(s, method.clone(), uri, Some(token), body.clone()).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{method} {uri}: {v}");
            assert_eq!(v["error"]["code"], "forbidden");
        }
    }
    // Admin may do what readers and writers do.
    let (st, _) = get(s, "/admin/database/stats/indexes", &a.admin).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = post(
        s,
        "/audit-logs",
        &a.admin,
        json!({"user_id": 1, "action": "a"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Used tokens show when.
    let list = tokens::list(&client).await.unwrap();
    let old = list.iter().find(|t| t.name == "old").unwrap();
    assert!(old.last_used_at.is_none(), "a revoked token is not used");
    let admin = list.iter().find(|t| t.name == "admin").unwrap();
    assert!(admin.last_used_at.is_some());
}

#[tokio::test]
async fn bad_input_is_a_json_400_or_422_and_unknown_routes_404() {
    let a = setup(common::seeded(0).await).await;
    let s = &a.state;
    let vac = "/admin/database/maintenance/vacuum";
    let cases: Vec<(&str, &str, StatusCode, &str)> = vec![
        (vac, "{not json", StatusCode::BAD_REQUEST, "invalid_json"),
        (
            vac,
            r#"{"table_name": 5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
        ),
        (
            vac,
            r#"{"table_name": "audit_logs", "analyse": true}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
        ),
        (
            vac,
            r#"{}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
        ),
        (
            vac,
            r#"{"table_name": "nope"}"#,
            StatusCode::NOT_FOUND,
            "unknown_table",
        ),
        (
            vac,
            r#"{"table_name": ""}"#,
            StatusCode::BAD_REQUEST,
            "invalid_table_name",
        ),
        (
            vac,
            r#"["audit_logs", false]"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
        ),
        (
            "/admin/database/partitions/maintain",
            r#"{"table_name": "audit_logs_2025_03"}"#,
            StatusCode::NOT_FOUND,
            "unknown_table",
        ),
        (
            "/admin/database/partitions/maintain",
            r#"{"table_name": 1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
        ),
        ("/audit-logs", "[", StatusCode::BAD_REQUEST, "invalid_json"),
        (
            "/audit-logs",
            "[]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_batch",
        ),
    ];
    for (uri, body, status, code) in cases {
        let (st, v) = send(s, Method::POST, uri, Some(&a.admin), Some(body.into())).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{uri} {body}: {v}"
        );
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = "from=2025-01-01&to=2025-02-01";
    for (uri, code) in [
        (
            "/admin/database/stats/queries?days=0".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/admin/database/stats/queries?days=x".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/admin/database/report?days=9999".into(),
            StatusCode::BAD_REQUEST,
        ),
        ("/admin/jobs?limit=0".into(), StatusCode::BAD_REQUEST),
        ("/admin/jobs/abc".into(), StatusCode::BAD_REQUEST),
        ("/admin/jobs/987654".into(), StatusCode::NOT_FOUND),
        ("/audit-logs".into(), StatusCode::BAD_REQUEST),
        (
            "/audit-logs?from=2025-01-01&to=2027-01-01".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/audit-logs?from=2025-02-01&to=2025-01-01".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/audit-logs?{r}&limit=1001"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/audit-logs?{r}&cursor=zz"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/audit-logs?{r}&details=[1]"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/audit-logs/summary?{r}&bucket=week"),
            StatusCode::BAD_REQUEST,
        ),
        ("/no/such/route".into(), StatusCode::NOT_FOUND),
    ] {
        let (st, v) = get(s, &uri, &a.admin).await;
        assert_eq!(st, code, "{uri}: {v}");
        assert!(v["error"]["code"].is_string(), "{uri}: {v}");
    }
    let (st, v) = send(s, Method::DELETE, "/admin/jobs", Some(&a.admin), None).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    assert_eq!(v["error"]["code"], "method_not_allowed");
    // Too large a body: 413 in the same shape.
    let small = setup_with(
        TestDb::migrated().await,
        ServeOptions {
            body_limit: 1024,
            ..ServeOptions::default()
        },
    )
    .await;
    // A request over the time limit: 503 in the same shape.
    let hurried = state_for(
        &small.db,
        ServeOptions {
            request_timeout: Duration::from_millis(1),
            ..ServeOptions::default()
        },
    )
    .await;
    let (st, v) = get(&hurried, "/admin/database/report", &small.reader).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "timeout");
    let big = json!([{"user_id": 1, "action": "x".repeat(2000)}]);
    let (st, v) = post(&small.state, "/audit-logs", &small.writer, big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn hostile_table_names_are_refused_and_nothing_runs() {
    let a = setup(common::seeded(0).await).await;
    let s = &a.state;
    let tables_before = count(
        &a.db,
        "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p')",
    )
    .await;
    let long = "a".repeat(200);
    let hostile = [
        "audit_logs'; DROP TABLE audit_logs; --",
        "audit_logs; DROP TABLE audit_logs",
        "\"audit_logs\"; SELECT 1",
        "audit_logs\"",
        "'audit_logs'",
        "pg_catalog.pg_class",
        "pg_class",
        "information_schema.tables",
        "strata.jobs",
        "strata.api_tokens",
        "public.audit_logs.x",
        long.as_str(),
        "audit_logs_2025_03\u{0000}",
        "аudit_logs",
        "audit_logs\u{200B}",
        "日本語",
        "",
        " ",
        "pg_sleep(10)",
        "audit_logs)",
        "(SELECT 1)",
        "audit_logs--",
        "$1",
    ];
    let jobs_before = count(&a.db, "SELECT count(*) FROM strata.jobs").await;
    for uri in [
        "/admin/database/maintenance/vacuum",
        "/admin/database/maintenance/analyze",
        "/admin/database/maintenance/reindex",
        "/admin/database/partitions/maintain",
    ] {
        for name in hostile {
            let (st, v) = post(s, uri, &a.admin, json!({"table_name": name})).await;
            // What the OpenAPI document refuses is a 400; a well-formed
            // name of no managed table a 404.
            let malformed = name.is_empty() || name.contains('\0');
            let (status, code) = if malformed {
                (StatusCode::BAD_REQUEST, "invalid_table_name")
            } else {
                (StatusCode::NOT_FOUND, "unknown_table")
            };
            assert_eq!(st, status, "{uri} {name:?}: {v}");
            assert_eq!(v["error"]["code"], code, "{name:?}: {v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(!message.to_lowercase().contains("syntax"), "{message}");
        }
    }
    assert_eq!(
        count(&a.db, "SELECT count(*) FROM strata.jobs").await,
        jobs_before,
        "no job ran"
    );
    assert_eq!(
        count(
            &a.db,
            "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p')"
        )
        .await,
        tables_before
    );
    assert_eq!(
        count(
            &a.db,
            "SELECT count(*) FROM pg_class WHERE relname = 'audit_logs'"
        )
        .await,
        1
    );
    // Each refusal is on record as a failed admin action.
    assert_eq!(
        count(
            &a.db,
            "SELECT count(*) FROM audit_logs WHERE action LIKE 'admin.%' AND status = 'failure'"
        )
        .await,
        4 * hostile.len() as i64
    );
}

#[tokio::test]
async fn maintenance_runs_as_jobs_and_a_running_one_is_409_across_servers() {
    let a = setup(common::seeded(500).await).await;
    let s = &a.state;
    let second_server = state_for(&a.db, ServeOptions::default()).await;
    for (uri, body, kind) in [
        (
            "/admin/database/maintenance/vacuum",
            json!({"table_name": "audit_logs", "analyze": true}),
            "vacuum",
        ),
        (
            "/admin/database/maintenance/analyze",
            json!({"table_name": "audit_logs_2025_03"}),
            "analyze",
        ),
        (
            "/admin/database/maintenance/reindex",
            json!({"table_name": "public.audit_logs_2025_02"}),
            "reindex",
        ),
        ("/admin/database/partitions/maintain", json!({}), "maintain"),
    ] {
        let (st, v) = post(s, uri, &a.admin, body).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{uri}: {v}");
        assert_eq!(v["kind"], kind);
        let id = v["job_id"].as_i64().unwrap();
        assert_eq!(v["status_url"], format!("/admin/jobs/{id}"));
        let job = wait_job(s, &a.reader, id).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        assert!(job["result"].is_object(), "{job}");
        if kind != "maintain" {
            // The last progress line is written before the outcome: it
            // names the last relation the job worked on.
            let line = job["progress"].as_str().unwrap_or_default();
            assert!(
                line.starts_with("ok  ") && line.contains("audit_logs"),
                "{job}"
            );
            assert!(job["progress_at"].is_string(), "{job}");
        }
    }
    let (_, list) = get(s, "/admin/jobs?kind=vacuum", &a.reader).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // Hold the lock VACUUM takes, so the job stays running (a weaker lock than
    // ACCESS EXCLUSIVE, which would block resolving the name too).
    let mut blocker = a.db.client().await;
    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE audit_logs_2025_01 IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    let vac = json!({"table_name": "audit_logs"});
    let (st, v) = post(
        s,
        "/admin/database/maintenance/vacuum",
        &a.admin,
        vac.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_i64().unwrap();
    let (st, v) = post(
        s,
        "/admin/database/maintenance/vacuum",
        &a.admin,
        vac.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "already_running");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id.to_string()),
        "{v}"
    );
    // Another serve process on the same database sees the same lock.
    let (st, v) = post(
        &second_server,
        "/admin/database/maintenance/vacuum",
        &a.admin,
        vac.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // Another kind on another partition of the same table waits its turn
    // too: all maintenance of one table takes one lock (two REINDEX
    // CONCURRENTLY runs deadlock; a long ANALYZE starves partition DDL).
    let (st, v) = post(
        s,
        "/admin/database/maintenance/analyze",
        &a.admin,
        json!({"table_name": "audit_logs_2025_04"}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("job {id}")),
        "the refusal names the running job: {v}"
    );
    let (_, job) = get(s, &format!("/admin/jobs/{id}"), &a.reader).await;
    assert_eq!(job["state"], "running");
    tx.rollback().await.unwrap();
    let job = wait_job(s, &a.reader, id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let (st, v) = post(
        &second_server,
        "/admin/database/maintenance/vacuum",
        &a.admin,
        vac,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    wait_job(s, &a.reader, v["job_id"].as_i64().unwrap()).await;
}

#[tokio::test]
async fn admin_actions_and_refusals_are_security_events() {
    let a = setup(common::seeded(0).await).await;
    let s = &a.state;
    for (uri, body) in [
        (
            "/admin/database/maintenance/vacuum",
            json!({"table_name": "audit_logs_2025_05"}),
        ),
        (
            "/admin/database/maintenance/analyze",
            json!({"table_name": "audit_logs_2025_05"}),
        ),
        (
            "/admin/database/maintenance/reindex",
            json!({"table_name": "audit_logs_2025_05"}),
        ),
        (
            "/admin/database/partitions/maintain",
            json!({"table_name": "audit_logs"}),
        ),
    ] {
        let (st, v) = post(s, uri, &a.admin, body).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
        wait_job(s, &a.admin, v["job_id"].as_i64().unwrap()).await;
    }
    let (st, _) = get(s, "/admin/database/report", "strata_nope").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = get(s, "/admin/database/report", &a.writer).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let client = a.db.client().await;
    let rows = client
        .query(
            "SELECT action, abbrev(ip_address), user_agent, severity, status, details, resource_id, user_id
               FROM audit_logs WHERE action LIKE 'admin.%' OR action LIKE 'security.%' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let actions: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        actions,
        [
            "admin.vacuum",
            "admin.analyze",
            "admin.reindex",
            "admin.maintain",
            "security.auth_failed",
            "security.forbidden"
        ]
    );
    for r in &rows {
        assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some("192.0.2.7"));
        assert_eq!(
            r.get::<_, Option<String>>(2).as_deref(),
            Some("api-test/1.0")
        );
        let details: Value = r.get(5);
        assert!(details["path"].is_string(), "{details}");
    }
    let vacuum: Value = rows[0].get(5);
    assert_eq!(vacuum["table_name"], "audit_logs_2025_05");
    assert!(rows[0].get::<_, Option<i64>>(6).is_some(), "the job id");
    assert_eq!(
        rows[4].get::<_, Option<String>>(3).as_deref(),
        Some("warning")
    );
    let forbidden: Value = rows[5].get(5);
    assert!(
        forbidden["reason"].as_str().unwrap().contains("writer"),
        "{forbidden}"
    );
}

#[tokio::test]
async fn a_flood_of_bad_tokens_writes_a_few_rows_that_count_it() {
    let a = setup(TestDb::migrated().await).await;
    let s = &a.state;
    let bad = format!("strata_{}", "cd".repeat(32));
    for i in 0..1000 {
        let token = if i % 2 == 0 {
            bad.as_str()
        } else {
            "not-even-a-token"
        };
        let (st, _) = get(s, "/admin/database/stats/partitions", token).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    s.events.flush(true).await;
    let client = a.db.client().await;
    let rows = client
        .query(
            "SELECT details FROM audit_logs WHERE action = 'security.auth_failed'",
            &[],
        )
        .await
        .unwrap();
    // One row for the first refusal of each minute, one summing the rest:
    // two, or four when the loop crossed a minute boundary.
    assert!(rows.len() <= 4, "{} rows", rows.len());
    let total: i64 = rows
        .iter()
        .map(|r| r.get::<_, Value>(0)["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 1000);
}

fn event(i: usize) -> Value {
    // Ten rows share each timestamp, so the id breaks ties in the cursor.
    let secs = (i / 10) as i64 * 60;
    let at = chrono::DateTime::parse_from_rfc3339("2025-03-01T00:00:00Z").unwrap()
        + chrono::Duration::seconds(secs);
    json!({
        "user_id": 1 + (i % 37) as i64,
        "action": if i.is_multiple_of(3) { "user.login" } else { "document.view" },
        "resource_type": "document",
        "resource_id": i,
        "details": {"n": i, "region": if i.is_multiple_of(2) { "eu" } else { "us" }},
        "ip_address": "2001:db8::1",
        "user_agent": "batch",
        "status": "success",
        "severity": if i.is_multiple_of(5) { "warning" } else { "info" },
        "created_at": at.to_rfc3339(),
    })
}

#[tokio::test]
async fn a_batch_with_one_bad_row_writes_nothing_and_names_it() {
    let a = setup(common::seeded(0).await).await;
    let mut batch: Vec<Value> = (0..500).map(event).collect();
    batch[137]["severity"] = json!("x".repeat(21));
    let (st, v) = post(&a.state, "/audit-logs", &a.writer, Value::Array(batch)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "invalid_rows");
    let rows = v["error"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["index"], 137);
    assert_eq!(rows[0]["field"], "severity");
    assert!(rows[0]["reason"].as_str().unwrap().contains("20"), "{v}");
    assert_eq!(count(&a.db, "SELECT count(*) FROM audit_logs").await, 0);
    // Out of every partition: still stored, in the default partition.
    let (st, v) = post(
        &a.state,
        "/audit-logs",
        &a.writer,
        json!({"user_id": 9, "action": "late", "created_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        count(&a.db, "SELECT count(*) FROM audit_logs_default").await,
        1
    );
    // created_at defaults to now.
    let (st, _) = post(
        &a.state,
        "/audit-logs",
        &a.writer,
        json!({"user_id": 9, "action": "now"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        count(&a.db, "SELECT count(*) FROM audit_logs WHERE action = 'now' AND created_at > now() - interval '1 minute'").await,
        1
    );
}

#[tokio::test]
async fn a_good_batch_of_1000_reads_back_once_each_through_the_cursor() {
    let a = setup(common::seeded(0).await).await;
    let s = &a.state;
    let batch: Vec<Value> = (0..1000).map(event).collect();
    let (st, v) = post(s, "/audit-logs", &a.writer, Value::Array(batch)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["inserted"], 1000);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut uri = "/audit-logs?from=2025-03-01&to=2025-04-01&limit=73".to_string();
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let (st, v) = get(s, &uri, &a.reader).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for item in v["items"].as_array().unwrap() {
            seen.push(item["resource_id"].as_i64().unwrap());
        }
        pages += 1;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 100);
    }
    assert_eq!(pages, 14);
    assert_eq!(seen.len(), 1000);
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), 1000, "each row exactly once");
    // Newest first.
    assert_eq!(seen[0], 999);
    // Filters.
    let (_, v) = get(
        s,
        "/audit-logs?from=2025-03-01&to=2025-04-01&limit=1000&user_id=5&severity=warning",
        &a.reader,
    )
    .await;
    let items = v["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|i| i["user_id"] == 5 && i["severity"] == "warning"),
        "{v}"
    );
    let (_, v) = get(s, "/audit-logs?from=2025-03-01&to=2025-04-01&limit=1000&details=%7B%22region%22%3A%22eu%22%7D&action=user.login", &a.reader).await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        (0..1000).filter(|i| i % 2 == 0 && i % 3 == 0).count()
    );
    let (_, v) = get(
        s,
        "/audit-logs?from=2025-03-01&to=2025-04-01&limit=1000&q=eu",
        &a.reader,
    )
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 500);
    assert_eq!(v["items"][0]["ip_address"], "2001:db8::1");
    let (_, v) = get(
        s,
        "/audit-logs/summary?from=2025-03-01&to=2025-04-01&bucket=day",
        &a.reader,
    )
    .await;
    assert_eq!(v["total"], 1000, "{v}");
    assert_eq!(v["buckets"][0]["by_severity"]["warning"], 200, "{v}");
}

#[tokio::test]
async fn reads_touch_only_the_partitions_in_range() {
    let db = common::seeded(0).await;
    let client = db.client().await;
    let table = strata::db::QualifiedName::new("public", "audit_logs").unwrap();
    let at = |s: &str| strata::cli::parse_when(s).unwrap();
    let filter = api::audit_query::Filter {
        from: at("2025-03-01"),
        to: at("2025-04-01"),
        user_id: Some(3),
        ..Default::default()
    };
    let scanned = api::audit_query::scanned_relations(&client, &table, &filter)
        .await
        .unwrap();
    assert_eq!(scanned, ["audit_logs_2025_03"]);
    let filter = api::audit_query::Filter {
        from: at("2025-03-15"),
        to: at("2025-05-02"),
        ..Default::default()
    };
    let scanned = api::audit_query::scanned_relations(&client, &table, &filter)
        .await
        .unwrap();
    assert_eq!(
        scanned,
        [
            "audit_logs_2025_03",
            "audit_logs_2025_04",
            "audit_logs_2025_05"
        ]
    );
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let a = setup(TestDb::migrated().await).await;
    let (st, doc) = send(&a.state, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut spec = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                spec.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let expected: BTreeSet<String> = [
        "GET /admin/database/stats/partitions",
        "GET /admin/database/stats/indexes",
        "GET /admin/database/stats/queries",
        "GET /admin/database/report",
        "GET /admin/database/health",
        "POST /admin/database/maintenance/vacuum",
        "POST /admin/database/maintenance/analyze",
        "POST /admin/database/maintenance/reindex",
        "POST /admin/database/partitions/maintain",
        "GET /admin/jobs",
        "GET /admin/jobs/{id}",
        "GET /admin/database/seals",
        "POST /admin/database/seals/verify",
        "POST /audit-logs",
        "GET /audit-logs",
        "GET /audit-logs/summary",
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /admin/database/archives",
        "POST /admin/database/archives/run",
        "POST /admin/database/archives/verify",
        "POST /admin/database/archives/restore",
        "POST /admin/database/archives/attach",
        "POST /admin/database/archives/detach",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(spec, expected);
    // Every documented route is served (the router answers neither 404 nor
    // 405), and, as routes enter the router only through `routes!`, which
    // documents them, the router serves no other.
    for route in &spec {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", "1");
        let (st, v) = send(&a.state, method.parse().unwrap(), &path, None, None).await;
        assert!(
            st != StatusCode::NOT_FOUND && st != StatusCode::METHOD_NOT_ALLOWED,
            "{route}: {st} {v}"
        );
    }
    // Each operation documents its errors and the bearer scheme.
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let vacuum = &doc["paths"]["/admin/database/maintenance/vacuum"]["post"];
    for code in [
        "202", "400", "401", "403", "404", "409", "413", "422", "429", "503",
    ] {
        assert!(vacuum["responses"][code].is_object(), "vacuum lacks {code}");
    }
}

/// A minimal HTTP/1.1 client for the TCP tests.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nUser-Agent: tcp-test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let value = serde_json::from_str(body).unwrap_or(Value::String(body.into()));
    (status, head.to_lowercase(), value)
}

#[tokio::test]
async fn over_tcp_requests_carry_ids_and_shutdown_cancels_running_jobs() {
    let a = setup_with(
        common::seeded(0).await,
        ServeOptions {
            job_grace: Duration::from_millis(100),
            ..ServeOptions::default()
        },
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(a.state.clone(), listener, async {
        let _ = stopped.await;
    }));
    let (st, head, v) = http(addr, "GET", "/healthz", None, "").await;
    assert_eq!(st, 200, "{v}");
    assert!(head.contains("x-request-id: "), "{head}");
    let (st, head, v) = http(
        addr,
        "GET",
        "/admin/database/report",
        Some("strata_bad"),
        "",
    )
    .await;
    assert_eq!(st, 401, "{v}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert_eq!(v["error"]["code"], "unauthorized");
    let (st, _, v) = http(
        addr,
        "POST",
        "/audit-logs",
        Some(&a.writer),
        r#"[{"user_id":1,"action":"tcp"}]"#,
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let client = a.db.client().await;
    let ip: String = client
        .query_one(
            "SELECT abbrev(ip_address) FROM audit_logs WHERE action = 'security.auth_failed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ip, "127.0.0.1");

    // A job that cannot finish: VACUUM waits for this lock.
    let mut blocker = a.db.client().await;
    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE audit_logs_2025_01 IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    let (st, _, v) = http(
        addr,
        "POST",
        "/admin/database/maintenance/vacuum",
        Some(&a.admin),
        r#"{"table_name":"audit_logs"}"#,
    )
    .await;
    assert_eq!(st, 202, "{v}");
    let id = v["job_id"].as_i64().unwrap();
    common::wait_until(
        &client,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'VACUUM%')",
        "the vacuum waits for the lock",
    )
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    let row = client
        .query_one("SELECT state, error FROM strata.jobs WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some(api::SHUTDOWN_REASON)
    );
    tx.rollback().await.unwrap();
    // Nobody holds the job's lock any more: a new run may start.
    let other = state_for(&a.db, ServeOptions::default()).await;
    let (st, v) = post(
        &other,
        "/admin/database/maintenance/vacuum",
        &a.admin,
        json!({"table_name": "audit_logs"}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let job = wait_job(&other, &a.admin, v["job_id"].as_i64().unwrap()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn token_commands_create_list_and_revoke() {
    let db = TestDb::migrated().await;
    let out = common::strata(
        &db,
        &["token", "create", "--role", "reader", "--name", "grafana"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let token = common::stdout(&out).trim().to_string();
    assert!(token.starts_with("strata_") && token.len() == 71, "{token}");
    let client = db.client().await;
    let stored: Vec<u8> = client
        .query_one(
            "SELECT token_sha256 FROM strata.api_tokens WHERE name = 'grafana'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, tokens::hash(&token), "only the hash is stored");
    let state = state_for(&db, ServeOptions::default()).await;
    let (st, _) = get(&state, "/admin/jobs", &token).await;
    assert_eq!(st, StatusCode::OK);
    let out = common::strata(&db, &["token", "list"]);
    let text = common::stdout(&out);
    assert!(
        text.contains("grafana") && text.contains("reader"),
        "{text}"
    );
    assert!(!text.contains(&token));
    let out = common::strata(&db, &["--json", "token", "list"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = list[0]["id"].as_i64().unwrap();
    assert!(list[0]["last_used_at"].is_string(), "{list}");
    let out = common::strata(&db, &["token", "revoke", &id.to_string()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let (st, _) = get(&state, "/admin/jobs", &token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let out = common::strata(&db, &["token", "revoke", "999"]);
    assert_eq!(out.status.code(), Some(2));
    let actions: Vec<String> = client
        .query(
            "SELECT action FROM audit_logs WHERE action LIKE 'admin.token%' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["admin.token_create", "admin.token_revoke"]);
}

/// The numbers in the README's "HTTP API" section. Run with
/// `cargo test --release --test api -- --ignored --nocapture measure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check; see its doc comment"]
async fn measure_write_throughput_and_stats_latency() {
    let db = TestDb::migrated().await;
    let cfg = common::config_file(
        "measure.toml",
        "[[table]]\nstart = \"2017-01-01\"\n[api]\naccept_past = \"3650d\"\n",
    );
    let out = common::strata(&db, &["--config", &cfg, "maintain", "--now", "2026-11-25"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = common::strata(
        &db,
        &[
            "--config",
            &cfg,
            "load",
            "--rows",
            "200000",
            "--from",
            "2017-01-01",
            "--to",
            "2026-11-01",
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let config = Config::load(Some(std::path::Path::new(&cfg)), Vec::new()).unwrap();
    let client = db.client().await;
    let (_, admin) = tokens::create(&client, Role::Admin, "m").await.unwrap();
    let (_, writer) = tokens::create(&client, Role::Writer, "w").await.unwrap();
    let state = AppState::new(
        api::pool(&db.url, 8).unwrap(),
        config,
        ServeOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(state, listener, async {
        let _ = stopped.await;
    }));

    const BATCHES: usize = 40;
    let bodies: Vec<String> = (0..BATCHES)
        .map(|b| {
            let rows: Vec<Value> = (0..1000)
                .map(|i| {
                    let mut e = event(b * 1000 + i);
                    e["created_at"] =
                        json!(format!("2026-10-{:02}T{:02}:00:00Z", 1 + i % 28, i % 24));
                    e
                })
                .collect();
            Value::Array(rows).to_string()
        })
        .collect();
    let started = Instant::now();
    for body in &bodies[..BATCHES / 2] {
        let (st, _, v) = http(addr, "POST", "/audit-logs", Some(&writer), body).await;
        assert_eq!(st, 201, "{v}");
    }
    let one = started.elapsed();
    // Two writers at once.
    let started = Instant::now();
    let (left, right) = bodies[BATCHES / 2..].split_at(BATCHES / 4);
    let send_all = |part: &'static [String], token: String| async move {
        for body in part {
            let (st, _, v) = http(addr, "POST", "/audit-logs", Some(&token), body).await;
            assert_eq!(st, 201, "{v}");
        }
    };
    let left: &'static [String] = Vec::leak(left.to_vec());
    let right: &'static [String] = Vec::leak(right.to_vec());
    tokio::join!(
        send_all(left, writer.clone()),
        send_all(right, writer.clone())
    );
    let two = started.elapsed();
    let rows_one = (BATCHES / 2 * 1000) as f64;
    println!(
        "POST /audit-logs, batches of 1000: {:.0} rows/s (1 client, {} batches), {:.0} rows/s (2 clients, {} batches)",
        rows_one / one.as_secs_f64(),
        BATCHES / 2,
        rows_one / two.as_secs_f64(),
        BATCHES / 2
    );

    let (st, _, v) = http(
        addr,
        "GET",
        "/admin/database/stats/partitions",
        Some(&admin),
        "",
    )
    .await;
    assert_eq!(st, 200);
    let partitions = v["partition_count"].as_u64().unwrap();
    assert!(partitions >= 100, "{partitions}");
    let mut times = Vec::new();
    for i in 0..220 {
        let t = Instant::now();
        let (st, _, _) = http(
            addr,
            "GET",
            "/admin/database/stats/partitions",
            Some(&admin),
            "",
        )
        .await;
        assert_eq!(st, 200);
        if i >= 20 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "GET /admin/database/stats/partitions, {partitions} partitions, {} sequential requests: p50 {:?}, p99 {:?}, max {:?}",
        times.len(),
        pct(0.50),
        pct(0.99),
        times[times.len() - 1]
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
