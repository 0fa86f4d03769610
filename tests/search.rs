//! What the API accepts and finds in audit rows: full-text search of the
//! words inside dotted, slashed, dashed and underscored values (and the
//! online index path for existing tables), the writer's `created_at` window
//! and the namespaces only strata itself writes.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use strata::api::{self, audit_query, tokens, AppState, Role, ServeOptions};
use strata::config::Config;
use strata::db::QualifiedName;
use tower::ServiceExt;

use common::{stderr, strata, TestDb};

struct Api {
    db: TestDb,
    state: AppState,
    reader: String,
    writer: String,
}

async fn setup(db: TestDb, config: Config) -> Api {
    let client = db.client().await;
    let (_, reader) = tokens::create(&client, Role::Reader, "reader")
        .await
        .unwrap();
    let (_, writer) = tokens::create(&client, Role::Writer, "writer")
        .await
        .unwrap();
    let pool = api::pool(&db.url, 4).unwrap();
    let state = AppState::new(pool, config, ServeOptions::default());
    Api {
        db,
        state,
        reader,
        writer,
    }
}

async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let mut req = req
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "192.0.2.9:40000".parse::<SocketAddr>().unwrap(),
    ));
    let resp = api::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

fn today_window() -> (String, String) {
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::days(1)).to_rfc3339();
    let to = (now + chrono::Duration::days(1)).to_rfc3339();
    (
        urlencode(&from), // `+00:00` must not become a space
        urlencode(&to),
    )
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// Searches `q` over today and returns the actions found.
async fn search(a: &Api, q: &str) -> Vec<String> {
    let (from, to) = today_window();
    let uri = format!("/audit-logs?from={from}&to={to}&q={}", urlencode(q));
    let (st, v) = send(&a.state, Method::GET, &uri, &a.reader, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap().to_string())
        .collect()
}

/// Index names in the plan of the API's own `q=` query.
async fn search_plan_indexes(db: &TestDb, q: &str) -> Vec<String> {
    let client = db.client().await;
    let now = chrono::Utc::now();
    let filter = audit_query::Filter {
        from: now - chrono::Duration::days(1),
        to: now + chrono::Duration::days(1),
        q: Some(q.into()),
        ..audit_query::Filter::default()
    };
    let table = QualifiedName::new("public", "audit_logs").unwrap();
    let plan = audit_query::plan(&client, &table, &filter).await.unwrap();
    audit_query::plan_values(&plan, "Index Name")
}

/// A database with partitions around the real now (where writers' rows go).
async fn with_partitions_now() -> TestDb {
    let db = TestDb::migrated().await;
    let out = strata(&db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    db
}

#[tokio::test]
async fn q_finds_words_inside_dotted_slashed_dashed_and_underscored_values() {
    let a = setup(with_partitions_now().await, Config::default()).await;
    let (st, v) = send(
        &a.state,
        Method::POST,
        "/audit-logs",
        &a.writer,
        Some(json!([
            {"user_id": 1, "action": "user.login", "status": "success"},
            {"user_id": 2, "action": "document.view", "details": {"path": "/api/v1/invoices", "ref": "INV-2024_07"}},
            {"user_id": 3, "action": "user.logout"},
        ])),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(search(&a, "login").await, ["user.login"]);
    assert_eq!(search(&a, "user.login").await, ["user.login"]);
    assert_eq!(search(&a, "invoices").await, ["document.view"]);
    assert_eq!(search(&a, "2024").await, ["document.view"]);
    assert_eq!(search(&a, "inv").await, ["document.view"]);
    let mut users = search(&a, "user").await;
    users.sort();
    assert_eq!(users, ["user.login", "user.logout"]);
    assert!(search(&a, "logi").await.is_empty(), "whole words only");

    // Enough other rows today, with statistics, that the planner picks the
    // search index on its own (on a near-empty partition the time index wins).
    a.db.client()
        .await
        .batch_execute(
            "INSERT INTO audit_logs (user_id, action, created_at)
             SELECT g, 'document.view', now() - g * interval '1 second' FROM generate_series(1, 3000) g;
             ANALYZE audit_logs",
        )
        .await
        .unwrap();
    let indexes = search_plan_indexes(&a.db, "login").await;
    let partition = format!("audit_logs_{}", chrono::Utc::now().format("%Y_%m"));
    assert!(
        indexes
            .iter()
            .any(|i| i.starts_with(&partition) && i.contains("search_words")),
        "the query uses the search_words index of {partition}: {indexes:?}"
    );
}

#[tokio::test]
async fn an_existing_table_gets_the_search_index_online_without_a_rewrite() {
    let db = common::seeded(3000).await;
    let c = db.client().await;
    // A table from before migration 4: rows, and no search_words index.
    c.batch_execute("DROP INDEX idx_audit_logs_search_words_gin")
        .await
        .unwrap();
    let files = "SELECT string_agg(c.relname || ':' || c.relfilenode, ',' ORDER BY c.relname)
                   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = 'public.audit_logs'::regclass";
    let before: String = c.query_one(files, &[]).await.unwrap().get(0);
    let plan = strata(&db, &["--json", "indexes", "plan"]);
    let v: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert!(
        v.to_string().contains("idx_audit_logs_search_words_gin"),
        "{v}"
    );
    let out = strata(&db, &["indexes", "apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after: String = c.query_one(files, &[]).await.unwrap().get(0);
    assert_eq!(before, after, "no partition was rewritten");
    let valid: bool = c
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.idx_audit_logs_search_words_gin'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid, "every partition's index is attached");
    // The generator writes `user.login` and `user.login_failed`: both found
    // by the word login, which the stored search_vector alone misses.
    let found = count(
        &db,
        "SELECT count(*) FROM audit_logs
          WHERE strata.search_words(search_vector) @@ strata.search_query('login')",
    )
    .await;
    let logins = count(
        &db,
        "SELECT count(*) FROM audit_logs WHERE action IN ('user.login', 'user.login_failed')",
    )
    .await;
    let old_way = count(
        &db,
        "SELECT count(*) FROM audit_logs WHERE search_vector @@ plainto_tsquery('simple', 'login')",
    )
    .await;
    assert!(logins > 0);
    assert!(found >= logins, "{found} found, {logins} logins");
    assert!(old_way < logins, "{old_way} found the old way");
}

#[tokio::test]
async fn created_at_outside_the_window_is_refused_naming_the_row_and_the_window() {
    let a = setup(with_partitions_now().await, Config::default()).await;
    let now = chrono::Utc::now();
    let old = (now - chrono::Duration::days(31)).to_rfc3339();
    let ahead = (now + chrono::Duration::minutes(10)).to_rfc3339();
    let recent = (now - chrono::Duration::days(29)).to_rfc3339();
    let (st, v) = send(
        &a.state,
        Method::POST,
        "/audit-logs",
        &a.writer,
        Some(json!([
            {"user_id": 1, "action": "a", "created_at": recent},
            {"user_id": 1, "action": "b", "created_at": old},
            {"user_id": 1, "action": "c", "created_at": ahead},
            {"user_id": 1, "action": "d", "created_at": "0001-01-01T00:00:00Z"},
        ])),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let rows = v["error"]["rows"].as_array().unwrap();
    let bad: Vec<i64> = rows.iter().map(|r| r["index"].as_i64().unwrap()).collect();
    assert_eq!(bad, [1, 2, 3], "{v}");
    for r in rows {
        assert_eq!(r["field"], "created_at");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains("outside the accepted window")
                && reason.contains("now - 30 days, now + 5 minutes"),
            "{reason}"
        );
    }
    assert_eq!(count(&a.db, "SELECT count(*) FROM audit_logs").await, 0);

    // The window follows [api] accept_past / accept_future.
    let cfg = common::config_file(
        "strata.toml",
        "[api]\naccept_past = \"40d\"\naccept_future = \"1h\"\n",
    );
    let config = Config::load(Some(std::path::Path::new(&cfg)), Vec::new()).unwrap();
    let wide = AppState::new(
        api::pool(&a.db.url, 2).unwrap(),
        config,
        ServeOptions::default(),
    );
    let (st, v) = send(
        &wide,
        Method::POST,
        "/audit-logs",
        &a.writer,
        Some(json!([
            {"user_id": 1, "action": "b", "created_at": old},
            {"user_id": 1, "action": "c", "created_at": ahead},
        ])),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // A bad duration names its key.
    let cfg = common::config_file("strata.toml", "[api]\naccept_past = \"a while\"\n");
    let err = Config::load(Some(std::path::Path::new(&cfg)), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("api.accept_past"), "{err}");
}

#[tokio::test]
async fn writers_cannot_forge_strata_events_and_strata_still_writes_its_own() {
    let a = setup(with_partitions_now().await, Config::default()).await;
    for (action, details) in [
        ("security.login_failed", json!({})),
        ("admin.vacuum", json!({})),
        ("strata.maintain", json!({})),
        ("SECURITY.auth_failed", json!({})),
        ("user.login", json!({"_strata": "server"})),
    ] {
        let (st, v) = send(
            &a.state,
            Method::POST,
            "/audit-logs",
            &a.writer,
            Some(json!({"user_id": 1, "action": action, "details": details})),
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{action}: {v}");
        let row = &v["error"]["rows"][0];
        assert_eq!(row["index"], 0, "{v}");
        assert!(row["field"] == "action" || row["field"] == "details", "{v}");
    }
    assert_eq!(count(&a.db, "SELECT count(*) FROM audit_logs").await, 0);
    // The server's own events take their own path, and still get written.
    let (st, _) = send(
        &a.state,
        Method::GET,
        "/admin/database/report",
        "strata_nope",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = send(
        &a.state,
        Method::GET,
        "/admin/database/report",
        &a.writer,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        count(
            &a.db,
            "SELECT count(*) FROM audit_logs WHERE action IN ('security.auth_failed', 'security.forbidden')"
        )
        .await,
        2
    );
}
