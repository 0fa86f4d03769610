//! The API against hostile clients: bounded metrics, bounded database
//! waits, slowloris, refusal floods from many addresses, request ids,
//! token refusals and other sessions' SQL text. Every test on a fresh
//! database; network traffic on loopback only.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use strata::api::{self, events, tokens, AppState, Role, ServeOptions};
use strata::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use common::TestDb;

async fn token(db: &TestDb, role: Role) -> String {
    tokens::create(&db.client().await, role, "t")
        .await
        .unwrap()
        .1
}

fn state(db: &TestDb, config: Config, options: ServeOptions) -> AppState {
    AppState::new(api::pool_with(&db.url, &options).unwrap(), config, options)
}

fn request(method: &str, uri: &str, token: Option<&str>, peer: &str) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    req
}

async fn body_of(resp: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn metrics_stay_small_under_a_flood_of_odd_methods_and_paths() {
    let db = TestDb::migrated().await;
    let reader = token(&db, Role::Reader).await;
    let s = state(&db, Config::default(), ServeOptions::default());
    let app = api::app(s.clone());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(14);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut methods = Vec::new();
    for i in 0..5_000u32 {
        let method: String = (0..10)
            .map(|_| rng.gen_range(b'A'..=b'Z') as char)
            .collect();
        let path = match i % 3 {
            0 => format!("/admin/jobs/{}", rng.gen::<u32>()),
            1 => format!("/nope/{}", rng.gen::<u64>()),
            _ => format!("/audit-logs/{i}/x"),
        };
        let resp = app
            .clone()
            .oneshot(request(&method, &path, None, "192.0.2.1:1"))
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
        methods.push(method);
        assert!(Instant::now() < deadline, "the flood took too long");
    }
    let resp = app
        .oneshot(request("GET", "/metrics", Some(&reader), "192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = body_of(resp).await;
    assert!(
        text.len() < 32 * 1024,
        "/metrics grew to {} bytes",
        text.len()
    );
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.contains("route=\"unmatched\""), "{text}");
    assert!(!text.contains(&methods[0]), "a raw method became a label");
    assert!(!text.contains("/nope/"), "a raw path became a label");
}

/// A session outside the pool, told apart in pg_stat_activity.
async fn outsider(db: &TestDb, name: &str) -> tokio_postgres::Client {
    common::TestDbUrl::connect(&format!("{} application_name={name}", db.url)).await
}

const WAITING_API_BACKENDS: &str = "SELECT count(*) FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = 'strata' AND wait_event_type = 'Lock'";

#[tokio::test]
async fn requests_on_a_locked_table_end_and_leave_no_backend_waiting() {
    let db = common::seeded(0).await;
    let reader = token(&db, Role::Reader).await;
    let locker = outsider(&db, "sec-locker").await;
    locker
        .batch_execute("BEGIN; LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    // The request timeout comes first: the abandoned statements must be
    // cancelled, as their own limits are far away.
    let s = state(
        &db,
        Config::default(),
        ServeOptions {
            request_timeout: Duration::from_millis(800),
            statement_timeout: Duration::from_secs(120),
            lock_timeout: Duration::from_secs(120),
            pool_size: 4,
            pool_wait: Duration::from_millis(500),
            ..ServeOptions::default()
        },
    );
    let app = api::app(s.clone());
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..6 {
        let (app, reader) = (app.clone(), reader.clone());
        handles.push(tokio::spawn(async move {
            let peer = format!("192.0.2.{}:1", i + 1);
            app.oneshot(request(
                "GET",
                "/audit-logs?from=2025-01-01&to=2025-02-01&limit=5",
                Some(&reader),
                &peer,
            ))
            .await
            .unwrap()
        }));
    }
    for h in handles {
        let resp = h.await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key("retry-after"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let probe = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let waiting: i64 = probe
            .query_one(WAITING_API_BACKENDS, &[])
            .await
            .unwrap()
            .get(0);
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} API backends still wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The lock timeout comes first: a 503 saying so, with Retry-After.
    let s2 = state(
        &db,
        Config::default(),
        ServeOptions {
            request_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_millis(200),
            ..ServeOptions::default()
        },
    );
    let resp = api::app(s2)
        .oneshot(request(
            "GET",
            "/audit-logs?from=2025-01-01&to=2025-02-01&limit=5",
            Some(&reader),
            "192.0.2.9:1",
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let text = body_of(resp).await;
    assert!(text.contains("busy"), "{text}");

    // Released: the same pool serves again.
    locker.batch_execute("ROLLBACK").await.unwrap();
    let resp = app
        .oneshot(request(
            "GET",
            "/audit-logs?from=2025-01-01&to=2025-02-01&limit=5",
            Some(&reader),
            "192.0.2.1:1",
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn half_sent_requests_are_closed_and_healthz_keeps_answering() {
    let db = TestDb::migrated().await;
    let header_timeout = Duration::from_secs(1);
    let s = state(
        &db,
        Config::default(),
        ServeOptions {
            header_timeout,
            max_connections: 16,
            ..ServeOptions::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(s, listener, async {
        let _ = stopped.await;
    }));

    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        // A request head that never ends.
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
            .await;
        slow.push(c);
    }
    // /healthz answers (at once, or as soon as the slow ones are cut off).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = async {
            let mut c = tokio::net::TcpStream::connect(addr).await.ok()?;
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut buf = Vec::new();
            tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut buf))
                .await
                .ok()?
                .ok()?;
            Some(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"))
        }
        .await;
        if answered == Some(true) {
            break;
        }
        assert!(Instant::now() < deadline, "/healthz did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every half-sent connection is closed by the server within the header
    // timeout (plus scheduling slack), not held open.
    for mut c in slow {
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a half-sent connection is still open");
    }
    assert!(
        opened.elapsed() < header_timeout + Duration::from_secs(5),
        "{:?}",
        opened.elapsed()
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_refusal_flood_from_thousands_of_addresses_writes_bounded_rows() {
    let db = TestDb::migrated().await;
    let s = state(&db, Config::default(), ServeOptions::default());
    let app = api::app(s.clone());
    let first_minute = chrono::Utc::now().timestamp() / 60;
    let n = 3_000;
    for i in 0..n {
        let peer = if i % 2 == 0 {
            format!("10.{}.{}.7:4000", (i / 256) % 256, i % 256)
        } else {
            format!("[2001:db8:{:x}:{:x}::9]:4000", i / 7, i)
        };
        let resp = app
            .clone()
            .oneshot(request(
                "GET",
                "/admin/database/report",
                Some("strata_wrong"),
                &peer,
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    s.events.flush(true).await;
    let minutes = chrono::Utc::now().timestamp() / 60 - first_minute + 1;
    let rows = count(
        &db,
        "SELECT count(*) FROM audit_logs WHERE action LIKE 'security.%'",
    )
    .await;
    let bound = minutes * (events::MAX_ROWS_PER_MINUTE as i64 + 1);
    assert!(
        rows <= bound,
        "{rows} rows for {n} refusals (bound {bound})"
    );
    assert!(rows > 0);
    // Nothing is lost: the rows' counts add up to every refusal.
    let counted = count(
        &db,
        "SELECT sum((details->>'count')::bigint)::bigint FROM audit_logs WHERE action LIKE 'security.%'",
    )
    .await;
    assert_eq!(counted, n);
    assert!(
        count(
            &db,
            "SELECT count(*) FROM audit_logs WHERE action = 'security.refusals_overflow'"
        )
        .await
            >= 1
    );
}

#[tokio::test]
async fn request_ids_token_refusals_and_sql_text_give_nothing_away() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let admin = token(&db, Role::Admin).await;
    let reader = token(&db, Role::Reader).await;
    let mut config = Config::default();
    config.health.long_query_warning_seconds = 0.1;
    let s = state(&db, config, ServeOptions::default());
    let app = api::app(s.clone());
    let send = |req: Request<Body>| app.clone().oneshot(req);

    // x-request-id: a short plain one is kept, anything else replaced.
    let with_id = |id: &str| {
        let mut r = request("GET", "/openapi.json", None, "192.0.2.1:1");
        r.headers_mut().insert("x-request-id", id.parse().unwrap());
        r
    };
    let resp = send(with_id("req-1_a.B")).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-1_a.B");
    for hostile in ["a b<script>", &"x".repeat(65), "id\"; DROP"] {
        let resp = send(with_id(hostile)).await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(id, hostile);
        assert!(!id.is_empty() && id.len() <= 64, "{id}");
    }

    // Unknown and revoked tokens: one message.
    let (revoked_info, revoked) = tokens::create(&client, Role::Reader, "gone").await.unwrap();
    tokens::revoke(&client, revoked_info.id).await.unwrap();
    let unknown = format!("strata_{}", "ab".repeat(32));
    let mut messages = Vec::new();
    for t in [&revoked, &unknown] {
        let resp = send(request("GET", "/admin/jobs", Some(t), "192.0.2.1:1"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let v: Value = serde_json::from_str(&body_of(resp).await).unwrap();
        messages.push(v["error"]["message"].as_str().unwrap().to_string());
    }
    assert_eq!(messages[0], messages[1]);
    assert!(!messages[0].contains("revoked"), "{}", messages[0]);

    // A stored role strata does not know gets nothing, not reader.
    client
        .batch_execute("ALTER TABLE strata.api_tokens DROP CONSTRAINT api_tokens_role_check")
        .await
        .unwrap();
    let odd = format!("strata_{}", "cd".repeat(32));
    client
        .execute(
            "INSERT INTO strata.api_tokens (name, role, token_sha256) VALUES ('odd', 'superuser', $1)",
            &[&tokens::hash(&odd)],
        )
        .await
        .unwrap();
    let resp = send(request("GET", "/admin/jobs", Some(&odd), "192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Another session's SQL: readers see it without literals, admins whole.
    let sleeper = outsider(&db, "sec-sleeper").await;
    let cancel = sleeper.cancel_token();
    let running = tokio::spawn(async move {
        let _ = sleeper
            .simple_query("SELECT pg_sleep(60), 'sekrit-literal-42' AS s")
            .await;
    });
    common::wait_until(
        &client,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'sec-sleeper'
           AND state = 'active' AND query_start < now() - interval '300 ms')",
        "the sleeper runs",
    )
    .await;
    let health = |t: &str| {
        let req = request("GET", "/admin/database/health", Some(t), "192.0.2.1:1");
        let app = app.clone();
        async move { body_of(app.oneshot(req).await.unwrap()).await }
    };
    let for_reader = health(&reader).await;
    assert!(for_reader.contains("pg_sleep(?)"), "{for_reader}");
    assert!(!for_reader.contains("sekrit"), "{for_reader}");
    let for_admin = health(&admin).await;
    assert!(for_admin.contains("sekrit-literal-42"), "{for_admin}");
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap();
}

/// NUL characters (raw and as `\u0000` in JSON) and dates before the common
/// era or past year 9999, in every place a client can put them: a 4xx
/// naming the field (or, for a far-away but valid range, an empty page),
/// never a 500.
#[tokio::test]
async fn nul_characters_and_out_of_range_dates_are_client_errors() {
    let db = TestDb::migrated().await;
    let writer = token(&db, Role::Writer).await;
    let reader = token(&db, Role::Reader).await;
    let app = api::app(state(&db, Config::default(), ServeOptions::default()));
    let ok_span = "from=2026-01-01&to=2026-02-01";
    let gets = [
        format!("/audit-logs?{ok_span}&action=%00"),
        format!("/audit-logs?{ok_span}&q=a%00b"),
        format!("/audit-logs?{ok_span}&severity=%00"),
        format!("/audit-logs?{ok_span}&resource_type=x%00"),
        format!("/audit-logs?{ok_span}&details=%7B%22a%22%3A%22%5Cu0000%22%7D"),
        format!("/audit-logs?{ok_span}&details=%7B%22a%5Cu0000%22%3A1%7D"),
        format!("/audit-logs?{ok_span}&cursor=%00"),
        "/audit-logs?from=0000-01-01T00:00:00Z&to=0000-02-01T00:00:00Z".into(),
        "/audit-logs?from=-0044-03-15T00:00:00Z&to=-0044-03-16T00:00:00Z".into(),
        "/audit-logs?from=9999-12-31T00:00:00Z&to=10000-01-01T00:00:00Z".into(),
        "/audit-logs?from=0001-01-01%20BC&to=0001-02-01".into(),
        "/audit-logs/summary?from=0000-01-01&to=0000-02-01".into(),
        "/audit-logs/summary?from=%00&to=2026-01-01".into(),
    ];
    for uri in &gets {
        let resp = app
            .clone()
            .oneshot(request("GET", uri, Some(&reader), "192.0.2.7:1"))
            .await
            .unwrap();
        let status = resp.status();
        let body = body_of(resp).await;
        // A far-away range is a fair question (an empty page); what a
        // PostgreSQL value cannot hold is the client's mistake.
        let fair = uri.contains("from=0000") || uri.contains("from=9999");
        assert!(
            status.is_client_error() || (fair && status == StatusCode::OK),
            "GET {uri}: {status} {body}"
        );
    }
    let bodies = [
        r#"{"user_id":1,"action":"a\u0000b"}"#,
        r#"{"user_id":1,"action":"a","details":{"k":"\u0000"}}"#,
        r#"{"user_id":1,"action":"a","details":{"k\u0000":1}}"#,
        r#"{"user_id":1,"action":"a","user_agent":"x\u0000"}"#,
        r#"{"user_id":1,"action":"a","created_at":"0000-12-31T00:00:00Z"}"#,
        r#"{"user_id":1,"action":"a","created_at":"-0001-01-01T00:00:00Z"}"#,
        r#"{"user_id":1,"action":"a","created_at":"+10000-01-01T00:00:00Z"}"#,
        r#"[{"user_id":1,"action":"ok"},{"user_id":2,"action":"\u0000"}]"#,
    ];
    for body in bodies {
        let mut req = Request::builder()
            .method("POST")
            .uri("/audit-logs")
            .header("authorization", format!("Bearer {writer}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo("192.0.2.7:1".parse::<SocketAddr>().unwrap()));
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let text = body_of(resp).await;
        assert!(status.is_client_error(), "POST {body}: {status} {text}");
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM audit_logs").await,
        0,
        "a batch with one bad row writes nothing"
    );
}
