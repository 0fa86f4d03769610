//! What keeps callers without a valid token off the database: the token
//! cache (and how soon a revocation bites), the failed-auth and open-route
//! rate limits, the shared `/healthz` check, and admin events that keep
//! internal error text out of the audit table. Query counts come from
//! pg_stat_statements, per test database.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use strata::api::{self, guard::RateLimit, tokens, AppState, Role, ServeOptions};
use strata::config::Config;
use tower::ServiceExt;

use common::TestDb;

async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    token: Option<&str>,
    peer: &str,
) -> (StatusCode, Option<String>, Value) {
    let body = (method == Method::POST).then_some("{}");
    send_body(state, method, uri, token, peer, body).await
}

async fn send_body(
    state: &AppState,
    method: Method,
    uri: &str,
    token: Option<&str>,
    peer: &str,
    body: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let mut req = req.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    let resp = api::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, retry, v)
}

fn state(db: &TestDb, options: ServeOptions) -> AppState {
    AppState::new(
        api::pool_with(&db.url, &options).unwrap(),
        Config::default(),
        options,
    )
}

/// A database whose statements pg_stat_statements counts; `None` (test
/// skipped, or failed under STRATA_REQUIRE_EXTENSIONS=1) without it.
async fn counted_db() -> Option<TestDb> {
    let db = TestDb::migrated().await;
    if !common::require_extension(&db, "pg_stat_statements").await {
        return None;
    }
    db.client()
        .await
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    Some(db)
}

/// Calls of statements of this database whose text contains `needle`.
async fn calls(db: &TestDb, needle: &str) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT coalesce(sum(s.calls), 0)::bigint FROM pg_stat_statements s
               JOIN pg_database d ON d.oid = s.dbid
              WHERE d.datname = current_database() AND strpos(s.query, $1) > 0",
            &[&needle],
        )
        .await
        .unwrap()
        .get(0)
}

const LOOKUP: &str = "FROM strata.api_tokens WHERE token_sha256";

#[tokio::test]
async fn accepted_tokens_are_cached_and_a_revocation_bites_within_the_ttl() {
    let Some(db) = counted_db().await else { return };
    let client = db.client().await;
    let (info, reader) = tokens::create(&client, Role::Reader, "r").await.unwrap();
    let cached = state(
        &db,
        ServeOptions {
            token_cache_ttl: Duration::from_secs(3600),
            ..ServeOptions::default()
        },
    );
    let before = calls(&db, LOOKUP).await;
    for _ in 0..30 {
        let (st, _, v) = send(
            &cached,
            Method::GET,
            "/admin/jobs",
            Some(&reader),
            "192.0.2.1:1",
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    assert_eq!(
        calls(&db, LOOKUP).await - before,
        1,
        "30 requests, one lookup"
    );

    // A short TTL: the revoked token is refused once its entry expires.
    let short = state(
        &db,
        ServeOptions {
            token_cache_ttl: Duration::from_millis(200),
            ..ServeOptions::default()
        },
    );
    let (st, _, _) = send(
        &short,
        Method::GET,
        "/admin/jobs",
        Some(&reader),
        "192.0.2.1:1",
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    tokens::revoke(&client, info.id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _, v) = send(
            &short,
            Method::GET,
            "/admin/jobs",
            Some(&reader),
            "192.0.2.1:1",
        )
        .await;
        if st == StatusCode::UNAUTHORIZED {
            assert_eq!(v["error"]["message"], "the bearer token is not valid");
            break;
        }
        assert_eq!(st, StatusCode::OK, "{v}");
        assert!(
            Instant::now() < deadline,
            "the revoked token is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_flood_of_bad_tokens_gets_429_without_database_lookups() {
    let Some(db) = counted_db().await else { return };
    let client = db.client().await;
    let (_, reader) = tokens::create(&client, Role::Reader, "r").await.unwrap();
    let s = state(
        &db,
        ServeOptions {
            token_cache_ttl: Duration::from_secs(3600),
            // No refill to speak of within the test: exact counts.
            failed_auth_limit: Some(RateLimit {
                burst: 10.0,
                per_second: 0.001,
            }),
            ..ServeOptions::default()
        },
    );
    let flooder = "198.51.100.7:4000";
    // A client of the same network that authenticated before the flood.
    let (st, _, _) = send(
        &s,
        Method::GET,
        "/admin/jobs",
        Some(&reader),
        "198.51.100.9:1",
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let before = calls(&db, LOOKUP).await;
    let (mut refused, mut limited) = (0, 0);
    for i in 0..300u32 {
        let bad = format!("strata_{:064x}", i + 1);
        let (st, retry, v) = send(&s, Method::GET, "/admin/jobs", Some(&bad), flooder).await;
        match st {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert_eq!(v["error"]["code"], "rate_limited", "{v}");
                let secs: u64 = retry.expect("429 carries Retry-After").parse().unwrap();
                assert!(secs >= 1);
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!((refused, limited), (10, 290));
    assert!(
        calls(&db, LOOKUP).await - before <= 10,
        "a lookup per refused request past the limit"
    );
    // Missing tokens count against the same budget.
    let (st, _, _) = send(&s, Method::GET, "/admin/jobs", None, flooder).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    // The cached client is served; another network is not held back.
    let (st, _, _) = send(
        &s,
        Method::GET,
        "/admin/jobs",
        Some(&reader),
        "198.51.100.9:1",
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = send(
        &s,
        Method::GET,
        "/admin/jobs",
        Some("strata_x"),
        "203.0.113.5:1",
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    s.events.flush(true).await;
    let rows = client
        .query(
            "SELECT action, (details->>'count')::bigint FROM audit_logs WHERE action LIKE 'security.%'",
            &[],
        )
        .await
        .unwrap();
    let sum = |action: &str| -> i64 {
        rows.iter()
            .filter(|r| r.get::<_, String>(0) == action)
            .map(|r| r.get::<_, i64>(1))
            .sum()
    };
    assert_eq!(sum("security.rate_limited"), 291, "every 429 is counted");
    assert_eq!(sum("security.auth_failed"), 11);
    // First refusal and the minute's sum, per network and kind (twice that
    // if the loop crossed a minute).
    assert!(rows.len() <= 8, "{} rows", rows.len());
}

#[tokio::test]
async fn healthz_floods_share_one_check_a_second_and_are_limited() {
    let Some(db) = counted_db().await else { return };
    let s = state(&db, ServeOptions::default());
    let started = Instant::now();
    for i in 0..200u32 {
        // Many networks, so the open-route limit does not apply here.
        let peer = format!("10.{}.{}.1:1", i / 256, i % 256);
        let (st, _, v) = send(&s, Method::GET, "/healthz", None, &peer).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let checks = calls(&db, "strata_healthz").await;
    assert!(checks >= 1);
    assert!(
        checks as f64 <= elapsed.ceil() + 1.0,
        "{checks} database checks for 200 probes in {elapsed:.1} s"
    );

    let limited = state(
        &db,
        ServeOptions {
            open_route_limit: Some(RateLimit {
                burst: 5.0,
                per_second: 0.001,
            }),
            ..ServeOptions::default()
        },
    );
    let mut statuses = Vec::new();
    for uri in ["/healthz", "/openapi.json"].repeat(10) {
        let (st, _, _) = send(&limited, Method::GET, uri, None, "192.0.2.50:1").await;
        statuses.push(st.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        15,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn admin_events_keep_internal_error_text_out_of_the_audit_table() {
    let db = common::seeded(0).await;
    let client = db.client().await;
    let (_, admin) = tokens::create(&client, Role::Admin, "ops").await.unwrap();
    let s = state(&db, ServeOptions::default());
    // Break the job table, so that starting a job fails inside the server.
    client
        .batch_execute("ALTER TABLE strata.jobs RENAME TO jobs_moved_away")
        .await
        .unwrap();
    let (st, _, v) = send(
        &s,
        Method::POST,
        "/admin/database/partitions/maintain",
        Some(&admin),
        "192.0.2.1:1",
    )
    .await;
    client
        .batch_execute("ALTER TABLE strata.jobs_moved_away RENAME TO jobs")
        .await
        .unwrap();
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    let details: Value = client
        .query_one(
            "SELECT details FROM audit_logs WHERE action = 'admin.maintain'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(details["error_code"], "internal", "{details}");
    assert_eq!(details["refused"], v["error"]["message"], "{details}");
    let text = details.to_string();
    assert!(
        !text.contains("strata.jobs") && !text.contains("does not exist"),
        "internal error text reached the event: {text}"
    );
    // A refusal the caller was told about keeps its message.
    let body = json!({"table_name": "no_such_table"}).to_string();
    let (st, _, v) = send_body(
        &s,
        Method::POST,
        "/admin/database/maintenance/vacuum",
        Some(&admin),
        "192.0.2.1:1",
        Some(&body),
    )
    .await;
    assert!(st.is_client_error(), "{st}: {v}");
    let details: Value = client
        .query_one(
            "SELECT details FROM audit_logs WHERE action = 'admin.vacuum'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(details["refused"], v["error"]["message"], "{details}");
    assert_eq!(details["error_code"], v["error"]["code"], "{details}");
}

/// The dashboard's login form is an unauthenticated route like the API's:
/// refused logins count against the network's failed-auth budget, and past
/// it the form answers 429 without looking the token up.
#[tokio::test]
async fn dashboard_login_floods_are_limited_without_lookups() {
    let Some(db) = counted_db().await else { return };
    let s = state(
        &db,
        ServeOptions {
            failed_auth_limit: Some(RateLimit {
                burst: 10.0,
                per_second: 0.001,
            }),
            ..ServeOptions::default()
        },
    );
    let before = calls(&db, LOOKUP).await;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..50u32 {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token=strata_{:064x}", i + 1)))
            .unwrap();
        let mut req = req;
        req.extensions_mut().insert(ConnectInfo(
            "198.51.100.7:4000".parse::<SocketAddr>().unwrap(),
        ));
        let resp = api::app(s.clone()).oneshot(req).await.unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(resp.headers().contains_key("retry-after"));
        }
        *statuses.entry(resp.status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        std::collections::BTreeMap::from([(401, 10), (429, 40)])
    );
    assert!(
        calls(&db, LOOKUP).await - before <= 10,
        "no lookup past the limit"
    );
}
