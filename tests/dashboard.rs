//! The dashboard in a real browser: a server on a TCP port (`api::serve`,
//! as `strata serve` runs it), admin and reader tokens, rows planted in the
//! default partition, then `tests/browser/dashboard.spec.mjs` in Debian's
//! Chromium through playwright-core. The script's exit code and its JSON
//! summary are both checked here, and so are the security events it caused.

mod common;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use strata::api::{self, tokens, AppState, Role, ServeOptions};
use strata::config::Config;

use common::{tools, TestDb};

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let Some(chromium) = tools::chromium() else {
        return;
    };
    let Some(modules) = tools::browser_node_modules() else {
        return;
    };
    let db = common::seeded(3000).await;
    let client = db.client().await;
    // Rows no partition covers (2031) land in the default partition.
    let planted = client
        .execute(
            "INSERT INTO audit_logs (user_id, action, severity, created_at)
             SELECT g, 'planted.row', 'info', timestamptz '2031-03-01 00:00:00+00' + g * interval '1 minute'
               FROM generate_series(1, 37) g",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(planted, 37);
    let (_, admin) = tokens::create(&client, Role::Admin, "dba").await.unwrap();
    let (_, reader) = tokens::create(&client, Role::Reader, "viewer")
        .await
        .unwrap();
    let partitions = count(
        &db,
        "SELECT count(*) FROM pg_catalog.pg_inherits WHERE inhparent = 'public.audit_logs'::regclass",
    )
    .await;
    assert!(partitions > 10, "{partitions} partitions");

    let pool = api::pool(&db.url, 8).unwrap();
    let state = AppState::new(pool, Config::default(), ServeOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(state, listener, async {
        let _ = stopped.await;
    }));

    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shots = repo.join("docs/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let script = repo.join("tests/browser/dashboard.spec.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .current_dir(modules.parent().unwrap())
            .env("STRATA_URL", format!("http://{addr}"))
            .env("STRATA_ADMIN_TOKEN", &admin)
            .env("STRATA_READER_TOKEN", &reader)
            .env("STRATA_CHROMIUM", &chromium)
            .env("STRATA_SCREENSHOTS", &shots)
            .env("STRATA_PROFILE", &profile)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or("");
    let summary: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}); stdout: {stdout}; stderr: {stderr}"));
    if !out.status.success() {
        let rows = client
            .query(
                "SELECT action, details::text FROM audit_logs WHERE action LIKE 'security.%' ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            eprintln!("{}: {}", r.get::<_, String>(0), r.get::<_, String>(1));
        }
    }
    assert!(
        out.status.success(),
        "the browser script failed: {summary:#}\nstderr: {stderr}"
    );
    assert_eq!(summary["failures"], serde_json::json!([]));
    assert_eq!(summary["partition_count"], partitions, "{summary:#}");
    let warning = summary["default_warning"].as_str().unwrap_or("");
    assert!(
        warning.contains("37 rows in the default partition"),
        "{warning}"
    );
    assert_eq!(summary["vacuum_state"], "succeeded");
    assert_eq!(summary["reader_admin_controls"], 0);
    for (what, status) in [
        ("bad_token", 401),
        ("csrf_less", 403),
        ("reader_forged", 403),
        ("reader_confirm", 403),
        ("bad_date", 400),
        ("unknown_table", 400),
        ("overview", 200),
        ("jobs", 200),
    ] {
        assert_eq!(summary["statuses"][what], status, "{what}: {summary:#}");
    }
    for (page, violations) in summary["axe"].as_object().unwrap() {
        assert_eq!(violations, &serde_json::json!([]), "axe on {page}");
    }
    assert!(summary["axe"].as_object().unwrap().len() >= 13);
    assert!(summary["screenshots"].as_array().unwrap().len() >= 13);

    // The vacuum went through the operations runtime: a job row by the
    // dashboard's token, and an admin event.
    let job = summary["vacuum_job_id"].as_i64().unwrap();
    let row = client
        .query_one(
            "SELECT kind, state, origin, actor FROM strata.jobs WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "vacuum");
    assert_eq!(row.get::<_, String>(1), "succeeded");
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("api"));
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("dba"));

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    // Logins, the refused bad token, the refused CSRF-less and forged POSTs
    // and the admin action are security events (written by now: shutdown
    // flushes the aggregated refusals).
    for (action, at_least) in [
        ("security.dashboard_login", 2),
        ("security.dashboard_logout", 1),
        ("security.auth_failed", 1),
        ("security.forbidden", 2),
        ("admin.vacuum", 1),
    ] {
        let n = count(
            &db,
            &format!("SELECT count(*) FROM audit_logs WHERE action = '{action}'"),
        )
        .await;
        assert!(n >= at_least, "{action}: {n} events");
    }
}
