//! Least privilege: API request sessions run as `strata_api`, which can do
//! what requests need (write and read events, stats pages, health) and
//! nothing more (no DDL, no DELETE, no pg_authid); jobs still run as the
//! login role that owns the tables. Every test on a fresh database.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use strata::api::{self, privileges, tokens, AppState, Role, ServeOptions};
use strata::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::error::SqlState;
use tower::ServiceExt;

use common::TestDb;

const ROLE: &str = privileges::DEFAULT_ROLE;

async fn token(db: &TestDb, role: Role) -> String {
    tokens::create(&db.client().await, role, "t")
        .await
        .unwrap()
        .1
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
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
    let mut req = req.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("192.0.2.7:1".parse::<SocketAddr>().unwrap()));
    let resp = api::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

/// A pooled session's current role, and whether it is a superuser.
async fn session_role(state: &AppState) -> (String, bool) {
    let c = state.pool.get().await.unwrap();
    let row = c
        .query_one(
            "SELECT current_user::text, r.rolsuper FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn request_sessions_cannot_do_ddl_but_every_route_still_works() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let db = common::seeded(0).await;
    let config = Config::default();
    let prepared = privileges::prepare(&db.client().await, &config, ROLE)
        .await
        .unwrap();
    assert_eq!(prepared.role.as_deref(), Some(ROLE), "{:?}", prepared.notes);
    assert!(
        !prepared.notes.iter().any(|n| n.contains("could not grant")),
        "{:?}",
        prepared.notes
    );
    let options = ServeOptions {
        role: prepared.role.clone(),
        ..ServeOptions::default()
    };
    let state = AppState::new(api::pool_with(&db.url, &options).unwrap(), config, options);

    // What the old pool ran as: the login role, a superuser here.
    let login_is_super: bool = db
        .client()
        .await
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(login_is_super, "the test server's login is a superuser");
    assert_eq!(session_role(&state).await, (ROLE.to_string(), false));
    let c = state.pool.get().await.unwrap();
    for sql in [
        "DROP TABLE public.audit_logs",
        "SELECT count(*) FROM pg_catalog.pg_authid",
        "TRUNCATE public.audit_logs",
        "DELETE FROM public.audit_logs",
        "UPDATE public.audit_logs SET action = 'x'",
        "ALTER TABLE public.audit_logs DETACH PARTITION public.audit_logs_default",
        "CREATE TABLE public.planted (i int)",
        "DELETE FROM strata.api_tokens",
        "UPDATE strata.api_tokens SET role = 'admin'",
        "INSERT INTO strata.api_tokens (name, role, token_sha256) VALUES ('x', 'admin', '\\x00')",
    ] {
        let err = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    drop(c);

    let (writer, reader, admin) = (
        token(&db, Role::Writer).await,
        token(&db, Role::Reader).await,
        token(&db, Role::Admin).await,
    );
    let (st, v) = send(
        &state,
        Method::POST,
        "/audit-logs",
        &writer,
        Some(json!([{"user_id": 42, "action": "user.login", "severity": "info"}])),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let today = chrono::Utc::now().date_naive();
    let uri = format!(
        "/audit-logs?from={today}&to={}&user_id=42",
        today + chrono::Days::new(1)
    );
    let (st, v) = send(&state, Method::GET, &uri, &reader, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["items"][0]["action"], "user.login", "{v}");
    for uri in [
        "/admin/database/stats/partitions",
        "/admin/database/stats/indexes",
        "/admin/database/health",
        "/admin/database/report?days=7",
        "/admin/database/stats/queries?days=7",
        "/admin/database/seals",
        "/admin/database/archives",
        "/admin/jobs",
        "/metrics",
        &format!(
            "/audit-logs/summary?from={today}&to={}&bucket=day",
            today + chrono::Days::new(1)
        ),
    ] {
        let (st, v) = send(&state, Method::GET, uri, &reader, None).await;
        assert_eq!(st, StatusCode::OK, "{uri}: {v}");
    }

    // The dashboard's pages read through the same pool (one app: its
    // session store lives in the router).
    let dashboard = api::app(state.clone());
    let body = format!("token={admin}");
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("192.0.2.7:1".parse::<SocketAddr>().unwrap()));
    let resp = dashboard.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie: Vec<&str> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap())
        .collect();
    let cookie = cookie.join("; ");
    for path in [
        "/",
        "/partitions",
        "/indexes",
        "/queries",
        "/live",
        "/jobs",
        "/conversion",
        "/events",
        "/archives",
        "/seals",
        "/rollups",
    ] {
        let mut req = Request::builder()
            .uri(path)
            .header("cookie", &cookie)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo("192.0.2.7:1".parse::<SocketAddr>().unwrap()));
        let resp = dashboard.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "dashboard {path}");
    }

    // A maintenance job runs as the login role, which owns the table.
    let (st, v) = send(
        &state,
        Method::POST,
        "/admin/database/partitions/maintain",
        &admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let (st, job) = send(
            &state,
            Method::GET,
            &format!("/admin/jobs/{id}"),
            &reader,
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{job}");
        if job["state"] != "running" {
            break job;
        }
        assert!(Instant::now() < deadline, "job still running: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    // The job's session left the API role; none of the pool's did.
    assert_eq!(session_role(&state).await, (ROLE.to_string(), false));
    let stored: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE action = 'admin.maintain' AND details->>'job_id' IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "the admin event was written by the API role");
}

/// `strata serve` on the test database, with its stderr up to "listening".
struct Serving {
    child: std::process::Child,
    addr: SocketAddr,
    said: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db: &TestDb, config: Option<&str>) -> Serving {
    let mut cmd = common::strata_cmd(db);
    if let Some(path) = config {
        cmd.arg("--config").arg(path);
    }
    // A short token cache, so that a revocation is seen within the test.
    cmd.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--no-scheduler",
        "--token-cache-ms",
        "200",
    ])
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("starting strata serve");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = String::new();
    let addr = loop {
        let Some(line) = lines.next() else {
            let _ = child.wait();
            panic!("strata serve ended before listening: {said}");
        };
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if let Some((_, rest)) = line.split_once("listening on http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Serving { child, addr, said }
}

async fn http_get(addr: SocketAddr, path: &str, token: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn strata_serve_runs_requests_as_the_api_role_and_says_so() {
    let db = TestDb::migrated().await;
    let pgss = common::require_extension(&db, "pg_stat_statements").await;
    let client = db.client().await;
    if pgss {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .unwrap();
    }
    let reader = token(&db, Role::Reader).await;
    let s = serve(&db, None);
    assert!(
        s.said
            .contains(&format!("API requests run as database role {ROLE}")),
        "{}",
        s.said
    );
    assert_eq!(http_get(s.addr, "/admin/jobs", &reader).await, 200);
    assert_eq!(
        http_get(s.addr, "/admin/database/health", &reader).await,
        200
    );
    if pgss {
        // pg_stat_statements records the role each statement ran as: the
        // token lookup of the server's requests ran as strata_api.
        let rows = client
            .query(
                "SELECT DISTINCT r.rolname::text, r.rolsuper
                   FROM pg_stat_statements s
                   JOIN pg_roles r ON r.oid = s.userid
                   JOIN pg_database d ON d.oid = s.dbid
                  WHERE d.datname = current_database()
                    AND s.query LIKE '%FROM strata.api_tokens WHERE token_sha256%'",
                &[],
            )
            .await
            .unwrap();
        let roles: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(roles, [(ROLE.to_string(), false)]);
    }
    // Revoked: refused once the cached entry is gone.
    let client = db.client().await;
    let id: i64 = client
        .query_one("SELECT max(id) FROM strata.api_tokens", &[])
        .await
        .unwrap()
        .get(0);
    tokens::revoke(&client, id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(s.addr, "/admin/jobs", &reader).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the revoked token is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // serve limits refused requests per network (20, then 1 a second).
    let mut limited = 0;
    for _ in 0..60 {
        if http_get(s.addr, "/admin/jobs", &reader).await == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "60 refused requests, none limited");
    drop(s);

    // Opting out is said on stderr, naming the superuser it runs as.
    let path = common::config_file("strata.toml", "[api]\nrole = \"\"\n");
    let s = serve(&db, Some(&path));
    assert!(
        s.said.contains("API requests run as the login role") && s.said.contains("a superuser"),
        "{}",
        s.said
    );
    drop(s);

    // A role name that would need quoting is refused before serving.
    let path = common::config_file("strata.toml", "[api]\nrole = \"Api Role\"\n");
    let out = common::strata_cmd(&db)
        .args(["--config", &path, "serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"Api Role\""), "{err}");
}

#[tokio::test]
async fn a_missing_role_the_login_cannot_create_or_a_superuser_role_is_refused() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let config = Config::default();
    let login: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let err = privileges::prepare(&client, &config, &login)
        .await
        .expect_err("a superuser API role limits nothing");
    assert!(
        matches!(err, privileges::PrivilegeError::Superuser { .. }),
        "{err}"
    );

    // A login role without CREATEROLE (roles are per cluster: a unique name).
    let owner = format!("strata_test_owner_{}", std::process::id());
    let missing = format!("strata_test_missing_{}", std::process::id());
    client
        .batch_execute(&format!("CREATE ROLE {owner} NOLOGIN; SET ROLE {owner}"))
        .await
        .unwrap();
    let result = privileges::prepare(&client, &config, &missing).await;
    client
        .batch_execute(&format!("RESET ROLE; DROP ROLE {owner}"))
        .await
        .unwrap();
    let err = result.expect_err("the role is missing and cannot be made");
    let text = err.to_string();
    assert!(
        matches!(err, privileges::PrivilegeError::Missing { .. }),
        "{text}"
    );
    assert!(text.contains(&missing) && text.contains(&owner), "{text}");
    assert!(text.contains("[api] role = \"\""), "{text}");
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&missing],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "nothing was created");
}
