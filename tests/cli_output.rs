//! What the binary writes for people and for machines: no colour codes off a
//! terminal, JSON logs on request, completions and a man page.

mod common;

use std::process::Command;

use common::{stderr, stdout, strata_cmd, TestDb};

const ESC: u8 = 0x1b;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.current_dir(env!("CARGO_TARGET_TMPDIR"));
    cmd
}

/// A file whose load logs a warning (a skipped line) on stderr.
fn file_with_a_bad_line() -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-output-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("one-bad.ndjson");
    std::fs::write(
        &path,
        "{\"user_id\":1,\"action\":\"user.login\",\"created_at\":\"2025-02-01T00:00:00Z\"}\n{not json\n",
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let db = TestDb::migrated().await;
    let file = file_with_a_bad_line();
    for no_color in [None, Some("1")] {
        let mut cmd = strata_cmd(&db);
        cmd.env("RUST_LOG", "warn")
            .args(["load", "--file", &file, "--skip-bad"]);
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("WARN"),
            "a warning was logged: {}",
            stderr(&out)
        );
        assert!(
            !out.stderr.contains(&ESC) && !out.stdout.contains(&ESC),
            "no escape codes: {:?}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_a_line() {
    let db = TestDb::migrated().await;
    let file = file_with_a_bad_line();
    for how in ["flag", "env"] {
        let mut cmd = strata_cmd(&db);
        cmd.env("RUST_LOG", "warn");
        if how == "flag" {
            cmd.args(["--log-format", "json"]);
        } else {
            cmd.env("STRATA_LOG_FORMAT", "json");
        }
        let out = cmd
            .args(["--json", "load", "--file", &file, "--skip-bad"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{how}: {}", stderr(&out));
        let lines: Vec<serde_json::Value> = stderr(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{how}: {l:?}: {e}")))
            .collect();
        assert!(
            lines.iter().any(|l| l["level"] == "WARN"
                && l["fields"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("line 2")),
            "{how}: {lines:?}"
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["skipped"], 1);
    }
    let bad = bin().args(["--log-format", "xml", "man"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn bash_completions_name_the_commands_and_parse() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    for word in [
        "partitions",
        "maintain",
        "serve",
        "completions",
        "--database-url",
        "--rejects",
    ] {
        assert!(script.contains(word), "{word} missing from the completions");
    }
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("strata-completions-{}.bash", std::process::id()));
    std::fs::write(&path, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", stderr(&check));
    for shell in ["zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(
            out.status.success() && stdout(&out).contains("maintain"),
            "{shell}"
        );
    }
}

#[test]
fn the_man_page_is_roff_with_every_command() {
    let out = bin().arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") || page.contains(".TH strata"),
        "{}",
        &page[..200.min(page.len())]
    );
    for word in ["partitions", "maintain", "completions"] {
        assert!(page.contains(word), "{word} missing from the man page");
    }
}

#[tokio::test]
async fn stats_queries_lists_the_applications_statements_not_stratas() {
    let db = TestDb::migrated().await;
    if !common::require_extension(&db, "pg_stat_statements").await {
        return;
    }
    let app = common::TestDbUrl::connect(&format!("{} application_name=app", db.url)).await;
    app.batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    // strata at work on the table: partitions, a load, exact counts, stats.
    for args in [
        &["maintain"][..],
        &[
            "load",
            "--rows",
            "200",
            "--from",
            "2025-02-01",
            "--to",
            "2025-03-01",
        ],
        &["partitions", "list", "--exact"],
        &["stats", "partitions"],
        &["stats", "snapshot"],
    ] {
        let out = common::strata(&db, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    // A strata session opened by the library (application_name=strata).
    let own = db.client().await;
    own.query_one("SELECT count(*) AS strata_own FROM audit_logs", &[])
        .await
        .unwrap();
    // The application's statement.
    for user in 1..=3i64 {
        app.query_one(
            "SELECT count(*) AS app_probe FROM audit_logs WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap();
    }
    let out = common::strata(&db, &["--json", "stats", "queries", "--days", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = v["most_frequent"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["slowest"].as_array().unwrap())
        .map(|q| q["query"].as_str().unwrap())
        .collect();
    assert!(listed.iter().any(|q| q.contains("app_probe")), "{v:#}");
    assert!(
        listed.iter().all(|q| q.contains("app_probe")),
        "only the application's statements: {listed:#?}"
    );
    // People get words, not internal values.
    let out = common::strata(&db, &["stats", "queries", "--days", "7"]);
    let text = stdout(&out);
    assert!(text.contains("window:"), "{text}");
    for internal in ["short_snapshot", "since_reset", "(snapshot)", "0.0 hours"] {
        assert!(!text.contains(internal), "{internal} in:\n{text}");
    }
}
