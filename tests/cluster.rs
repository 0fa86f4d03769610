//! The embedded cluster, driven through the binary with its own STRATA_HOME.

use std::path::PathBuf;
use std::process::Command;

fn strata(home: &PathBuf, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.env("STRATA_HOME", home)
        .args(args)
        .output()
        .expect("running strata")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn start_is_idempotent_survives_a_stale_pid_file_and_destroy_cleans_up() {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cluster-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);

    let status = json(&strata(&home, &["--json", "local", "status"]));
    assert_eq!(status["initialized"], false);

    let started = json(&strata(&home, &["--json", "local", "start"]));
    let url = started["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("postgresql://postgres@127.0.0.1:"), "{url}");
    // The password is printed by no command unless asked for.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("cluster.json")).unwrap()).unwrap();
    let password = state["password"].as_str().unwrap().to_string();
    let shown = json(&strata(&home, &["--json", "local", "url"]));
    assert_eq!(shown["url"], url.as_str());
    let pgpass = PathBuf::from(shown["pgpassfile"].as_str().unwrap());
    let line = std::fs::read_to_string(&pgpass).unwrap();
    assert!(line.ends_with(&format!(":postgres:{password}\n")), "{line}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pgpass).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let plain = strata(&home, &["local", "url"]);
    let status_text = strata(&home, &["local", "status"]);
    for out in [&plain, &status_text] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && !all.contains(&password), "{all}");
    }
    let full = json(&strata(
        &home,
        &["--json", "local", "url", "--show-password"],
    ));
    assert!(full["url"].as_str().unwrap().contains(&password));
    let again = json(&strata(&home, &["--json", "local", "start"]));
    assert_eq!(
        again["url"],
        url.as_str(),
        "a second start reuses the running cluster"
    );
    let status = json(&strata(&home, &["--json", "local", "status"]));
    assert_eq!(status["running"], true);

    // Work happens against it: migrate through the local default target.
    let migrated = strata(&home, &["migrate"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    // A crash, then a reboot: postmaster.pid is left behind and its PID now
    // belongs to an unrelated live process (this test). Both pg_ctl and the
    // postmaster would take that for a running server.
    let stopped = json(&strata(&home, &["--json", "local", "stop"]));
    assert_eq!(stopped["stopped"], true);
    let data = PathBuf::from(status["data_dir"].as_str().unwrap());
    let pid_file = data.join("postmaster.pid");
    std::fs::write(
        &pid_file,
        format!("{}\n{}\n", std::process::id(), data.display()),
    )
    .unwrap();
    let status = json(&strata(&home, &["--json", "local", "status"]));
    assert_eq!(
        status["running"], false,
        "a live non-postgres PID is not a running server"
    );
    let restarted = json(&strata(&home, &["--json", "local", "start"]));
    assert_eq!(restarted["running"], true);
    let status = json(&strata(&home, &["--json", "local", "status"]));
    assert_eq!(status["running"], true);

    // A plain crash: the PID in the file is dead. The postmaster replaces
    // such a file itself (after its own shared-memory check).
    json(&strata(&home, &["--json", "local", "stop"]));
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(&pid_file, format!("{dead_pid}\n{}\n", data.display())).unwrap();
    let status = json(&strata(&home, &["--json", "local", "status"]));
    assert_eq!(
        status["running"], false,
        "a dead PID is not a running server"
    );
    let restarted = json(&strata(&home, &["--json", "local", "start"]));
    assert_eq!(restarted["running"], true);

    let refused = strata(&home, &["local", "destroy"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "destroy without --yes is refused"
    );
    json(&strata(&home, &["--json", "local", "destroy", "--yes"]));
    assert!(!data.exists(), "the data folder is gone");
    let status = json(&strata(&home, &["--json", "local", "status"]));
    assert_eq!(status["initialized"], false);
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_wrong_server_binary_folder_is_a_clear_error() {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cluster-nobin-{}", std::process::id()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    let out = cmd
        .env("STRATA_HOME", &home)
        .env("STRATA_PG_BIN", "/nonexistent/bin")
        .env_remove("DATABASE_URL")
        .args(["local", "start"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("STRATA_PG_BIN=/nonexistent/bin") && err.contains("initdb"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// With no --database-url and no local cluster, a command that reads a
/// database refuses (exit 2, saying what to do) instead of creating and
/// starting a cluster of its own; `migrate --local` creates one, and then
/// commands use it, saying so on stderr.
#[test]
fn no_url_and_no_cluster_is_an_error_not_a_new_cluster() {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("no-cluster-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    for args in [
        &["health"][..],
        &["report"],
        &["stats", "partitions"],
        &["maintain"],
        &["migrate"],
    ] {
        let out = strata(&home, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--database-url") && err.contains("strata local start"),
            "{args:?}: {err}"
        );
        assert!(!home.exists(), "{args:?} created {}", home.display());
    }
    let created = strata(&home, &["migrate", "--local"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let health = strata(&home, &["--json", "health"]);
    let err = String::from_utf8_lossy(&health.stderr);
    assert!(
        err.contains("using the local cluster in"),
        "says which database it used: {err}"
    );
    assert!(
        serde_json::from_slice::<serde_json::Value>(&health.stdout).is_ok(),
        "{err}"
    );
    json(&strata(&home, &["--json", "local", "destroy", "--yes"]));
}
