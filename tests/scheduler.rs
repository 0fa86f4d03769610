//! The built-in scheduler against a real server: exactly once across
//! processes, a killed holder, catch-up, history pruning, pg_cron install.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{
    config_file, require_extension, seeded, stderr, strata, strata_cmd, wait_until, TestDb,
};

/// Schedules far away, so the built-in jobs stay out of the way.
const QUIET_BUILTINS: &str =
    "[maintenance]\nschedule = \"0 0 1 1 *\"\nvacuum_schedule = \"0 0 1 1 *\"\n";

fn daemon(db: &TestDb, config: &str) -> Child {
    strata_cmd(db)
        .args(["--config", config, "schedule", "daemon"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting a scheduler")
}

fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

#[tokio::test]
async fn three_schedulers_run_each_occurrence_exactly_once() {
    let db = TestDb::migrated().await;
    let config = config_file(
        "tick.toml",
        &format!(
            "{QUIET_BUILTINS}catch_up = \"3s\"\n[[maintenance.jobs]]\nname = \"tick\"\nschedule = \"* * * * * *\"\ncommand = \"snapshot\"\n"
        ),
    );
    let children: Vec<Child> = (0..3).map(|_| daemon(&db, &config)).collect();
    let c = db.client().await;
    wait_until(
        &c,
        "SELECT count(*) >= 10 FROM strata.jobs WHERE kind = 'tick' AND state = 'succeeded'",
        "ten ticks ran",
    )
    .await;
    children.into_iter().for_each(stop);
    let rows = c
        .query(
            "SELECT scheduled_for, count(*), bool_and(state = 'succeeded'), count(DISTINCT owner)
               FROM strata.jobs WHERE kind = 'tick' GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 10);
    let mut prev: Option<chrono::DateTime<chrono::Utc>> = None;
    for r in &rows {
        let at: chrono::DateTime<chrono::Utc> = r.get(0);
        assert_eq!(r.get::<_, i64>(1), 1, "occurrence {at} ran once");
        assert!(r.get::<_, bool>(2), "occurrence {at} succeeded");
        if let Some(p) = prev {
            assert_eq!(
                (at - p).num_seconds(),
                1,
                "no occurrence between {p} and {at} was skipped"
            );
        }
        prev = Some(at);
    }
    let owners: i64 = c
        .query_one(
            "SELECT count(DISTINCT owner) FROM strata.jobs WHERE kind = 'tick'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(owners >= 1);
}

#[tokio::test]
async fn a_killed_holder_releases_the_job_and_the_next_occurrence_runs() {
    let db = seeded(300).await;
    let config = config_file(
        "vac.toml",
        &format!(
            "{QUIET_BUILTINS}catch_up = \"1s\"\n[[maintenance.jobs]]\nname = \"vac\"\nschedule = \"*/2 * * * * *\"\ncommand = \"vacuum\"\ntable = \"audit_logs_2025_03\"\n"
        ),
    );
    // The first run will wait on this lock (VACUUM needs SHARE UPDATE EXCLUSIVE).
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE audit_logs_2025_03 IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut first = daemon(&db, &config);
    let c = db.client().await;
    wait_until(
        &c,
        "SELECT EXISTS (SELECT 1 FROM strata.jobs WHERE kind = 'vac' AND state = 'running')",
        "a run is under way",
    )
    .await;
    let (killed_id, killed_at): (i64, chrono::DateTime<chrono::Utc>) = {
        let r = c
            .query_one(
                "SELECT id, scheduled_for FROM strata.jobs WHERE kind = 'vac' AND state = 'running'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    first.kill().unwrap();
    first.wait().unwrap();
    let second = daemon(&db, &config);
    holder.batch_execute("COMMIT").await.unwrap();
    wait_until(
        &c,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM strata.jobs WHERE kind = 'vac' AND state = 'succeeded' \
                     AND scheduled_for > '{}')",
            killed_at.to_rfc3339()
        ),
        "a later occurrence succeeded",
    )
    .await;
    stop(second);
    let state: String = c
        .query_one("SELECT state FROM strata.jobs WHERE id = $1", &[&killed_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        state, "failed",
        "the killed run is closed, not left running"
    );
    let running: i64 = c
        .query_one(
            "SELECT count(*) FROM strata.jobs WHERE state = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0);
}

#[tokio::test]
async fn missed_runs_catch_up_within_the_window_and_are_recorded_otherwise() {
    let db = TestDb::migrated().await;
    let config = config_file(
        "catch.toml",
        "[maintenance]\nschedule = \"0 0 1 1 *\"\nvacuum_schedule = \"0 0 1 1 *\"\ncatch_up = \"2min\"\n\
         [[maintenance.jobs]]\nname = \"minutely\"\nschedule = \"* * * * *\"\ncommand = \"snapshot\"\n",
    );
    let out = strata(&db, &["--config", &config, "schedule", "daemon", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = db.client().await;
    let (minute, state): (chrono::DateTime<chrono::Utc>, String) = {
        let r = c
            .query_one(
                "SELECT scheduled_for, state FROM strata.jobs WHERE kind = 'minutely'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(state, "succeeded", "the last minute's run was caught up");
    // The yearly built-ins are months past the 2-minute window: missed, recorded.
    for kind in ["maintain", "vacuum"] {
        let state: String = c
            .query_one("SELECT state FROM strata.jobs WHERE kind = $1", &[&kind])
            .await
            .unwrap()
            .get(0);
        assert_eq!(state, "missed", "{kind}");
    }
    // A second start does not run the same occurrence again.
    let out = strata(&db, &["--config", &config, "schedule", "daemon", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again: i64 = c
        .query_one(
            "SELECT count(*) FROM strata.jobs WHERE kind = 'minutely' AND scheduled_for = $1",
            &[&minute],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, 1);
    let missed: i64 = c
        .query_one(
            "SELECT count(*) FROM strata.jobs WHERE kind = 'maintain'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(missed, 1, "a missed occurrence is recorded once");
}

#[tokio::test]
async fn history_is_pruned_to_the_configured_count() {
    let db = TestDb::migrated().await;
    let config = config_file(
        "prune.toml",
        &format!(
            "{QUIET_BUILTINS}catch_up = \"2s\"\njob_history = 3\n[[maintenance.jobs]]\nname = \"tick\"\nschedule = \"* * * * * *\"\ncommand = \"snapshot\"\n"
        ),
    );
    let child = daemon(&db, &config);
    let c = db.client().await;
    // Six distinct seconds have run (the newest id is at least six past the first).
    wait_until(
        &c,
        "SELECT coalesce(max(scheduled_for) - min(scheduled_for) >= interval '1 second', false)
           FROM strata.jobs WHERE kind = 'tick'",
        "ticks ran",
    )
    .await;
    let start = Instant::now();
    let first_id: i64 = c
        .query_one("SELECT min(id) FROM strata.jobs WHERE kind = 'tick'", &[])
        .await
        .unwrap()
        .get(0);
    wait_until(
        &c,
        &format!("SELECT coalesce(max(id), 0) >= {} FROM strata.jobs WHERE kind = 'tick' AND state = 'succeeded'", first_id + 6),
        "six more ticks ran",
    )
    .await;
    stop(child);
    assert!(start.elapsed() < Duration::from_secs(30));
    let kept: i64 = c
        .query_one(
            "SELECT count(*) FROM strata.jobs WHERE kind = 'tick' AND state <> 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        (1..=3).contains(&kept),
        "kept {kept} finished ticks, configured 3"
    );
    let oldest_gone: bool = c
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM strata.jobs WHERE id = $1)",
            &[&first_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(oldest_gone, "the oldest tick was pruned");
}

#[tokio::test]
async fn schedule_list_and_run_now() {
    let db = seeded(200).await;
    let out = strata(&db, &["--json", "schedule", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let maintain = v
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "maintain")
        .unwrap();
    let next =
        chrono::DateTime::parse_from_rfc3339(maintain["next_run"].as_str().unwrap()).unwrap();
    assert_eq!(next.format("%H:%M:%S").to_string(), "02:00:00");
    let vacuum = v
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "vacuum")
        .unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(vacuum["next_run"].as_str().unwrap()).unwrap();
    assert_eq!(next.format("%a %H:%M").to_string(), "Sun 03:00");

    let out = strata(&db, &["--json", "schedule", "run", "maintain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["tables"][0]["table"], "public.audit_logs");
    let out = strata(&db, &["schedule", "run", "nightly"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("maintain, vacuum"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_key() {
    let db = TestDb::migrated().await;
    for (text, key) in [
        ("[maintenance]\nschedule = \"0 25 * * *\"\n", "maintenance.schedule"),
        ("[maintenance]\ntimezone = \"Mars/Base\"\n", "maintenance.timezone"),
        ("[[maintenance.jobs]]\nname = \"x\"\nschedule = \"* * * * *\"\ncommand = \"explode\"\n", "maintenance.jobs[0].command"),
        ("[[maintenance.jobs]]\nname = \"vacuum\"\nschedule = \"* * * * *\"\ncommand = \"vacuum\"\n", "maintenance.jobs[0].name"),
    ] {
        let config = config_file("bad.toml", text);
        let out = strata(&db, &["--config", &config, "schedule", "list"]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(stderr(&out).contains(key), "{key}: {}", stderr(&out));
    }
}

#[tokio::test]
async fn install_pg_cron_is_idempotent_and_uninstalls() {
    let db = TestDb::migrated().await;
    if !require_extension(&db, "pg_cron").await {
        return;
    }
    // The test database is not cron.database_name: the error says what to change.
    let out = strata(&db, &["schedule", "install-pg-cron"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cron.database_name"),
        "{}",
        stderr(&out)
    );

    let c = db.client().await;
    let cron_db: String = c
        .query_one("SELECT current_setting('cron.database_name')", &[])
        .await
        .unwrap()
        .get(0);
    let exists: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&cron_db],
        )
        .await
        .unwrap()
        .get(0);
    if !exists {
        let _ = c
            .batch_execute(&format!(
                "CREATE DATABASE \"{}\"",
                cron_db.replace('"', "\"\"")
            ))
            .await;
    }
    let url = db.url_for(&cron_db);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--database-url")
            .arg(&url)
            .args(args)
            .env_remove("STRATA_CONFIG")
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let out = run(&["schedule", "install-pg-cron"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            common::stdout(&out).contains("native"),
            "the skipped maintain job is explained"
        );
    }
    let cron = common::TestDbUrl::connect(&url).await;
    let jobs: Vec<(String, String, String)> = cron
        .query("SELECT jobname, schedule, command FROM cron.job WHERE jobname LIKE 'strata-%' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        jobs,
        vec![
            (
                "strata-prune-history".to_string(),
                "30 4 * * *".to_string(),
                "DELETE FROM cron.job_run_details WHERE end_time < now() - interval '30 days'"
                    .to_string()
            ),
            (
                "strata-vacuum".to_string(),
                "0 3 * * 0".to_string(),
                "VACUUM (ANALYZE) \"public\".\"audit_logs\"".to_string()
            ),
        ],
        "exactly the expected jobs, once each"
    );
    let out = run(&["schedule", "install-pg-cron", "--uninstall"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left: i64 = cron
        .query_one(
            "SELECT count(*) FROM cron.job WHERE jobname LIKE 'strata-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
