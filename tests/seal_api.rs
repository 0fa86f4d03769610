//! The seals API: `GET /admin/database/seals` (reader) and `POST
//! /admin/database/seals/verify` (admin, a job; 409 while the table is busy).

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use strata::api::{self, tokens, AppState, Role, ServeOptions};
use strata::config::Config;
use tower::ServiceExt;

use common::{seeded, stderr, strata};

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
        "192.0.2.7:40000".parse::<SocketAddr>().unwrap(),
    ));
    let resp = api::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn seals_are_listed_and_verified_as_a_job() {
    let db = seeded(600).await;
    let out = strata(&db, &["--json", "seal", "run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = db.client().await;
    let (_, admin) = tokens::create(&c, Role::Admin, "admin").await.unwrap();
    let (_, reader) = tokens::create(&c, Role::Reader, "reader").await.unwrap();
    let state = AppState::new(
        api::pool(&db.url, 4).unwrap(),
        Config::default(),
        ServeOptions::default(),
    );

    let (st, v) = send(&state, Method::GET, "/admin/database/seals", &reader, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["seals"].as_array().unwrap().len() >= 6, "{v:#}");
    assert_eq!(v["unsealed_closed"], json!([]));
    assert!(v["last_verify"].is_null());

    let (st, _) = send(
        &state,
        Method::POST,
        "/admin/database/seals/verify",
        &reader,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = send(
        &state,
        Method::POST,
        "/admin/database/seals/verify",
        &admin,
        Some(json!({"period": "March"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("March"),
        "{v}"
    );

    // Busy: another session holds the table's maintenance lock.
    let holder = db.client().await;
    assert!(
        strata::db::try_advisory_lock(&holder, "maintain:public.audit_logs")
            .await
            .unwrap()
    );
    let (st, v) = send(
        &state,
        Method::POST,
        "/admin/database/seals/verify",
        &admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    strata::db::advisory_unlock(&holder, "maintain:public.audit_logs")
        .await
        .unwrap();

    let (st, v) = send(
        &state,
        Method::POST,
        "/admin/database/seals/verify",
        &admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_i64().unwrap();
    common::wait_until(
        &c,
        &format!("SELECT state <> 'running' FROM strata.jobs WHERE id = {id}"),
        "the verify job ends",
    )
    .await;
    let (_, v) = send(&state, Method::GET, "/admin/database/seals", &reader, None).await;
    assert_eq!(v["last_verify"]["job_id"], id, "{v:#}");
    assert_eq!(v["last_verify"]["intact"], true, "{v:#}");
    let n = v["seals"].as_array().unwrap().len();

    // /metrics carries the same: seal count, unsealed closed periods, last verify.
    let req = Request::builder()
        .uri("/metrics")
        .header("authorization", format!("Bearer {reader}"))
        .body(Body::empty())
        .unwrap();
    let mut req = req;
    req.extensions_mut().insert(ConnectInfo(
        "192.0.2.7:40000".parse::<SocketAddr>().unwrap(),
    ));
    let resp = api::app(state.clone()).oneshot(req).await.unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains(&format!(
            "strata_seals{{table=\"public.audit_logs\"}} {n}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("strata_seal_unsealed_closed_periods{table=\"public.audit_logs\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("strata_seal_last_verify_intact{table=\"public.audit_logs\"} 1\n"),
        "{text}"
    );
}
