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
    // Sealed months, so the screenshots show the Overview's tiers and the
    // Seals page with content.
    let out = common::strata(&db, &["seal", "run"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // A hostile row: whatever a writer stored is text on every page.
    client
        .execute(
            "INSERT INTO audit_logs (user_id, action, details, created_at)
             VALUES (7, '<img src=x id=xss-action>', '{\"note\": \"<script id=xss-details></script>\"}', now())",
            &[],
        )
        .await
        .unwrap();
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
    // Once the browser's vacuum has succeeded, hold the lock ANALYZE needs
    // on one partition (SHARE UPDATE EXCLUSIVE, which reads do not mind),
    // so the script's first ANALYZE of it keeps running and its second is
    // a 409. The marker file tells the script the lock is held.
    let locked = profile.join(format!("locked-{}", std::process::id()));
    let _ = std::fs::remove_file(&locked);
    let mut blocker = db.client().await;
    let marker = locked.clone();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        common::wait_until(
            &blocker,
            "SELECT EXISTS (SELECT 1 FROM strata.jobs WHERE kind = 'vacuum' AND state = 'succeeded')",
            "the browser's vacuum succeeded",
        )
        .await;
        let tx = blocker.transaction().await.unwrap();
        tx.batch_execute("LOCK TABLE audit_logs_2025_03 IN SHARE UPDATE EXCLUSIVE MODE")
            .await
            .unwrap();
        std::fs::write(&marker, "locked").unwrap();
        let _ = released.await;
        tx.rollback().await.unwrap();
    });
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
            .env("STRATA_LOCKED", &locked)
            .env("STRATA_BUSY_PARTITION", "audit_logs_2025_03")
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let _ = release.send(());
    holder.await.unwrap();
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
    assert_eq!(summary["hostile_rows_shown"], true, "{summary:#}");
    assert_eq!(summary["hostile_elements"], 0, "{summary:#}");
    for (what, status) in [
        ("bad_token", 401),
        ("csrf_less", 403),
        ("reader_forged", 403),
        ("reader_confirm", 403),
        ("bad_date", 400),
        ("second_start", 409),
        ("events", 200),
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

/// One HTTP/1.1 request over a fresh connection: status, head, body.
async fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// `api::serve` (as `strata serve` runs it) on a loopback port with the
/// configuration file `cfg`: its address, the stop signal, the task.
async fn serve(
    db: &TestDb,
    cfg: &str,
    pool: usize,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let config = Config::load(Some(std::path::Path::new(cfg)), Vec::new()).unwrap();
    let state = AppState::new(
        api::pool(&db.url, pool).unwrap(),
        config,
        ServeOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(state, listener, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

/// Logs in with `token`; the session cookie (`name=value`).
async fn login(addr: std::net::SocketAddr, token: &str) -> String {
    let body = format!("token={token}");
    let (st, head, _) = http(
        addr,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(st, 303, "{head}");
    head.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string()
}

/// The number in `<span data-testid="{id}">N</span>`.
fn testid_number(page: &str, id: &str) -> i64 {
    let tag = format!("data-testid=\"{id}\">");
    let at = page
        .find(&tag)
        .unwrap_or_else(|| panic!("no {id} on the page"))
        + tag.len();
    page[at..]
        .split('<')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{id} is not a number"))
}

/// Seals every closed month, archives (and drops) those past 13 months,
/// and the Overview's timeline shows each period's tier as the catalog has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_shows_hot_sealed_and_archived_periods() {
    let store = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "tiers-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap()
    ));
    std::fs::create_dir_all(&store).unwrap();
    let cfg = common::config_file(
        "strata.toml",
        &format!(
            "[[table]]\nname = \"audit_logs\"\nretention = \"13 months\"\nretention_mode = \"archive\"\n\
             archive_after = \"13 months\"\narchive_to = \"file://{}\"\n",
            store.display()
        ),
    );
    let db = common::seeded(3000).await;
    // The seed's months (2025) get archived; months made two months ago
    // are closed but recent, so they are sealed and stay in PostgreSQL.
    let recent = (chrono::Utc::now() - chrono::Duration::days(62))
        .format("%Y-%m-%d")
        .to_string();
    for args in [
        vec!["config", "apply"],
        vec!["maintain", "--yes"],
        vec!["maintain", "--now", recent.as_str()],
        vec!["seal", "run"],
        vec!["archive", "run"],
    ] {
        let out = common::strata(
            &db,
            &[&["--config", cfg.as_str()], args.as_slice()].concat(),
        );
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            common::stdout(&out),
            common::stderr(&out)
        );
    }
    let archived = count(
        &db,
        "SELECT count(*) FROM strata.archives WHERE state IN ('archived', 'dropped')",
    )
    .await;
    let dropped = count(
        &db,
        "SELECT count(*) FROM strata.archives WHERE state = 'dropped'",
    )
    .await;
    let sealed_only = count(
        &db,
        "SELECT count(*) FROM strata.seals s WHERE NOT EXISTS (
             SELECT 1 FROM strata.archives a WHERE a.period_start = s.period_start
                AND a.state IN ('archived', 'dropped'))",
    )
    .await;
    assert!(
        dropped >= 6,
        "the seed's six months were archived and dropped: {dropped}"
    );
    assert!(sealed_only >= 1, "a recent month is sealed: {sealed_only}");

    let client = db.client().await;
    let (_, reader) = tokens::create(&client, Role::Reader, "tiers")
        .await
        .unwrap();
    let (addr, stop, server) = serve(&db, &cfg, 4).await;
    let cookie = login(addr, &reader).await;
    let (st, _, page) = http(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(testid_number(&page, "tier-archived"), archived, "{page}");
    assert_eq!(testid_number(&page, "tier-sealed"), sealed_only);
    assert!(
        testid_number(&page, "tier-hot") >= 1,
        "the current month is hot"
    );
    assert!(
        page.contains("2025-03 (archived)"),
        "a dropped month keeps its column"
    );
    assert!(page.contains("class=\"col past tier-sealed\""));
    // The tier pages list what the catalog holds.
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        )
    };
    let (st, _, page) = http(addr, &get("/archives")).await;
    assert_eq!(st, 200, "{page}");
    let all = count(&db, "SELECT count(*) FROM strata.archives").await;
    assert_eq!(testid_number(&page, "archive-count"), all);
    assert!(page.contains("<td>2025-03</td>"), "{page}");
    let (st, _, page) = http(addr, &get("/seals")).await;
    assert_eq!(st, 200, "{page}");
    let seals = count(&db, "SELECT count(*) FROM strata.seals").await;
    assert_eq!(testid_number(&page, "seal-count"), seals);
    assert!(page.contains("public.audit_logs_2025_03"), "{page}");
    let (st, _, page) = http(addr, &get("/rollups")).await;
    assert_eq!(st, 200, "{page}");
    let rollups = count(&db, "SELECT count(*) FROM strata.rollups").await;
    assert_eq!(
        page.matches("data-testid=\"rollup-name\"").count() as i64,
        rollups,
        "{page}"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// The figures in docs/dashboard.md: every page's time with 1,000 daily
/// partitions (median of 5 after a warm-up, over loopback, so it is the
/// server's time). Run with
/// `cargo test --test dashboard -- --ignored --nocapture measure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check; see its doc comment"]
async fn measure_every_page_with_1000_partitions() {
    let db = TestDb::migrated().await;
    let cfg = common::config_file(
        "dashboard-measure.toml",
        "[[table]]\ninterval = \"1 day\"\nstart = \"2024-02-24\"\nmax_new_partitions = 2000\n",
    );
    let out = common::strata(&db, &["--config", &cfg, "maintain", "--now", "2026-11-20"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = common::strata(
        &db,
        &[
            "--config",
            &cfg,
            "load",
            "--rows",
            "100000",
            "--from",
            "2024-02-24",
            "--to",
            "2026-11-20",
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let client = db.client().await;
    client.batch_execute("ANALYZE audit_logs").await.unwrap();
    let partitions = count(
        &db,
        "SELECT count(*) FROM pg_catalog.pg_inherits WHERE inhparent = 'public.audit_logs'::regclass",
    )
    .await;
    assert!(partitions >= 1000, "{partitions} partitions");
    let (_, admin) = tokens::create(&client, Role::Admin, "m").await.unwrap();
    let (addr, stop, server) = serve(&db, &cfg, 8).await;
    let cookie = login(addr, &admin).await;
    println!("{partitions} partitions; milliseconds per page (median of 5, then max):");
    for path in [
        "/",
        "/partitions",
        "/indexes",
        "/queries",
        "/live",
        "/jobs",
        "/jobs/confirm?action=vacuum&table=audit_logs",
        "/conversion",
        "/events",
        "/archives",
        "/seals",
        "/rollups",
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        );
        let (st, _, page) = http(addr, &req).await;
        assert_eq!(st, 200, "{path}: {page}");
        let mut ms = Vec::new();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let (st, _, _) = http(addr, &req).await;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(st, 200);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{path:50} {:8.1} {:8.1}  ({} KB)",
            ms[2],
            ms[4],
            page.len() / 1024
        );
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
