//! What operators alert on: docs/alerts.yml checked and unit-tested by
//! Debian's promtool, every metric the rules and docs/grafana-dashboard.json
//! use served by a live `strata serve`, and the signed webhook delivering
//! status changes to a local receiver (with retries).

mod common;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use strata::api::{tokens, Role};

use common::{stderr, strata, tools, TestDb};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = tools::promtool() else {
        return;
    };
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(repo("docs/alerts.yml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SUCCESS"), "{text}");
    // The unit tests: rules fire (and stay quiet) at the times they should.
    let out = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(repo("tests/alerts_rules_test.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `strata serve` as a child process, its JSON log lines collected.
struct Serve {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(db: &TestDb, config: Option<&str>) -> Serve {
        let mut cmd = common::strata_cmd(db);
        if let Some(c) = config {
            cmd.args(["--config", c]);
        }
        let mut child = cmd
            .args(["--log-format", "json", "serve", "--bind", "127.0.0.1:0"])
            .arg("--no-scheduler")
            .env("RUST_LOG", "info,strata::alerts=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting strata serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("strata API listening on http://") {
                    let addr = addr.split_whitespace().next().unwrap().to_string();
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                } else if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                } else {
                    eprintln!("serve: {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("strata serve did not say where it listens");
        Serve { child, addr, logs }
    }

    /// Log lines whose message starts with `prefix`.
    fn logged(&self, prefix: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(prefix))
            })
            .cloned()
            .collect()
    }

    /// How many times the webhook task has evaluated the checks.
    fn rounds(&self) -> u64 {
        self.logged("alerts: checks evaluated")
            .iter()
            .filter_map(|v| v["fields"]["round"].as_u64())
            .max()
            .unwrap_or(0)
    }
}

/// Polls `done` every 20 ms until it holds; fails after 60 s.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn maintain(db: &TestDb) {
    let out = strata(db, &["maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Metric names of the sample lines of an exposition.
fn served_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// The value of the sample `series` (name and labels, as printed).
fn sample(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
}

/// `strata_…` names in a PromQL expression.
fn names_in(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(i) = rest.find("strata_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        into.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
}

fn used_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let rules = std::fs::read_to_string(repo("docs/alerts.yml")).unwrap();
    for line in rules.lines() {
        if let Some(expr) = line.trim().strip_prefix("expr:") {
            names_in(expr, &mut names);
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("docs/grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            names_in(target["expr"].as_str().expect("expr"), &mut names);
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"].as_str() {
            names_in(q, &mut names);
        }
    }
    names
}

async fn get_metrics(client: &reqwest::Client, addr: SocketAddr, token: &str) -> String {
    let r = client
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn every_metric_the_rules_and_dashboard_use_is_served() {
    let db = TestDb::migrated().await;
    maintain(&db);
    let (_, token) = tokens::create(&db.client().await, Role::Reader, "prometheus")
        .await
        .unwrap();
    let serve = Serve::start(&db, None);
    let http = reqwest::Client::new();
    // The first scrape is what puts the request counters there.
    get_metrics(&http, serve.addr, &token).await;
    let text = get_metrics(&http, serve.addr, &token).await;
    let served = served_names(&text);
    let used = used_names();
    assert!(used.len() >= 12, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !served.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "used but not served: {missing:?}\n{text}"
    );

    // The values say what `strata health` says after a maintain.
    let t = "{table=\"public.audit_logs\"}";
    let at = |name: &str| sample(&text, &format!("{name}{t}"));
    assert_eq!(at("strata_default_partition_rows").as_deref(), Some("0"));
    assert_eq!(at("strata_partitions_premake").as_deref(), Some("6"));
    assert_eq!(at("strata_partitions_ahead").as_deref(), Some("6"));
    assert_eq!(at("strata_partition_current_covered").as_deref(), Some("1"));
    assert_eq!(at("strata_invalid_indexes").as_deref(), Some("0"));
    let age: f64 = at("strata_maintain_last_success_age_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..3600.0).contains(&age), "{age}");
    assert_eq!(
        sample(&text, "strata_job_last_success{kind=\"maintain\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            "strata_health_check_status{check=\"default_partition_rows\",table=\"public.audit_logs\"}"
        )
        .as_deref(),
        Some("0")
    );
    // Label sets stay bounded: tables are the managed ones, kinds strata's own.
    for line in text.lines().filter(|l| l.contains("table=\"")) {
        assert!(
            line.contains("table=\"public.audit_logs\"") || line.contains("table=\"\""),
            "{line}"
        );
    }

    // A failed job shows as 0 for its kind.
    db.client()
        .await
        .batch_execute(
            "INSERT INTO strata.jobs (kind, target, state, started_at, finished_at, error)
             VALUES ('vacuum', 'public.audit_logs', 'failed', now(), now(), 'planted')",
        )
        .await
        .unwrap();
    let vacuum = "strata_job_last_success{kind=\"vacuum\"}";
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // The gauges are cached for a few seconds: poll until the cache turns.
    while sample(&text, vacuum).is_none() {
        assert!(Instant::now() < deadline, "{vacuum} never appeared");
        tokio::time::sleep(Duration::from_millis(200)).await;
        text = get_metrics(&http, serve.addr, &token).await;
    }
    assert_eq!(sample(&text, vacuum).as_deref(), Some("0"));
}

/// A request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    answered: u16,
    signature: Option<String>,
    event_id: Option<String>,
    body: Bytes,
}

#[derive(Default)]
struct Receiver {
    /// Requests to answer 500 before answering 200.
    fail_first: AtomicUsize,
    got: Mutex<Vec<Got>>,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let fail = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    r.got.lock().unwrap().push(Got {
        answered: status.as_u16(),
        signature: header("x-strata-signature"),
        event_id: header("x-strata-event-id"),
        body,
    });
    status
}

/// Delivered events (answered 200) about `check`, parsed.
fn delivered(r: &Receiver, check: &str) -> Vec<Value> {
    r.got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.answered == 200)
        .map(|g| serde_json::from_slice::<Value>(&g.body).unwrap())
        .filter(|v| v["check"] == check)
        .collect()
}

fn verify(secret: &[u8], g: &Got) {
    let mut mac = Hmac::<sha2_011::Sha256>::new_from_slice(secret).unwrap();
    mac.update(&g.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(g.signature.as_deref(), Some(want.as_str()), "{g:?}");
}

#[tokio::test]
async fn status_changes_are_posted_signed_and_retried_and_steady_states_are_not() {
    let db = TestDb::migrated().await;
    maintain(&db);
    let receiver = Arc::new(Receiver::default());
    // The first delivery (whatever it is) fails twice before it succeeds.
    receiver.fail_first.store(2, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let secret = "s3cret-for-the-test";
    let secret_file = common::config_file("webhook.secret", &format!("{secret}\n"));
    let config = common::config_file(
        "strata.toml",
        &format!(
            "[alerts]\nwebhook_url = \"http://{hook_addr}/hook\"\nwebhook_secret_file = \"{secret_file}\"\n\
             interval = \"200ms\"\nretry_backoff = \"50ms\"\nattempts = 5\n"
        ),
    );
    let serve = Serve::start(&db, Some(&config));
    // Plant rows only after the first evaluation saw the table ok.
    wait_for("the first evaluation", || serve.rounds() >= 1).await;
    assert!(
        delivered(&receiver, "default_partition_rows").is_empty(),
        "an ok check sent an event at start"
    );

    // Three years ahead is past premake: the rows stay in the default partition.
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO audit_logs (user_id, action, created_at)
             SELECT 7, 'login', now() + interval '3 years' FROM generate_series(1, 3)",
        )
        .await
        .unwrap();
    wait_for("the warning event", || {
        !delivered(&receiver, "default_partition_rows").is_empty()
    })
    .await;
    let events = delivered(&receiver, "default_partition_rows");
    let e = &events[0];
    assert_eq!(e["kind"], "health_check_changed");
    assert_eq!(e["table"], "public.audit_logs");
    assert_eq!(e["old_status"], "ok");
    assert_eq!(e["new_status"], "warning");
    assert!(e["message"].as_str().unwrap().contains("3 rows"), "{e}");
    assert!(e["checked_at"].is_string() && e["id"].is_string(), "{e}");

    // Every request is signed, and the first event came after two refusals
    // with the same id and body each time.
    let got = receiver.got.lock().unwrap().clone();
    for g in &got {
        verify(secret.as_bytes(), g);
    }
    assert!(got.len() >= 3, "{got:?}");
    assert_eq!(
        got[..3].iter().map(|g| g.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    assert!(got[..3]
        .iter()
        .all(|g| g.body == got[0].body && g.event_id == got[0].event_id));
    let first: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(got[0].event_id.as_deref(), first["id"].as_str());
    // A wrong secret does not verify.
    let mut mac = Hmac::<sha2_011::Sha256>::new_from_slice(b"not the secret").unwrap();
    mac.update(&got[0].body);
    assert_ne!(
        got[0].signature.as_deref(),
        Some(format!("sha256={}", hex::encode(mac.finalize().into_bytes())).as_str())
    );

    // A warning that stays a warning sends nothing more.
    let seen = serve.rounds();
    wait_for("three more evaluations", || serve.rounds() >= seen + 3).await;
    assert_eq!(delivered(&receiver, "default_partition_rows").len(), 1);

    // Back to ok.
    client
        .batch_execute("DELETE FROM audit_logs WHERE user_id = 7")
        .await
        .unwrap();
    wait_for("the ok event", || {
        delivered(&receiver, "default_partition_rows").len() >= 2
    })
    .await;
    let events = delivered(&receiver, "default_partition_rows");
    assert_eq!(
        (&events[1]["old_status"], &events[1]["new_status"]),
        (&Value::from("warning"), &Value::from("ok"))
    );
    assert_ne!(events[0]["id"], events[1]["id"]);
    let seen = serve.rounds();
    wait_for("three more evaluations", || serve.rounds() >= seen + 3).await;
    assert_eq!(delivered(&receiver, "default_partition_rows").len(), 2);
    assert!(serve.logged("alerts: event not delivered").is_empty());
}

#[test]
fn serve_refuses_an_unreadable_webhook_secret_file() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::migrated());
    let config = common::config_file(
        "strata.toml",
        "[alerts]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_secret_file = \"/nonexistent/strata-secret\"\n",
    );
    let out = common::strata_cmd(&db)
        .args(["--config", &config, "serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/strata-secret"), "{err}");
}
