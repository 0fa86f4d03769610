//! What a production install uses: the systemd unit in contrib/ passes
//! `systemd-analyze verify` without a warning, and its command line is one
//! this strata accepts.

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../contrib/systemd/strata.service");

fn exec_start() -> Vec<String> {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        assert!(
            !std::env::var("STRATA_REQUIRE_EXTENSIONS").is_ok_and(|v| v == "1"),
            "systemd-analyze is missing and STRATA_REQUIRE_EXTENSIONS=1 (apt-get install systemd)"
        );
        eprintln!("SKIPPED: systemd-analyze is missing (apt-get install systemd)");
        return;
    };
    // The unit names /usr/local/bin/strata, where the guide installs it;
    // verify checks that the program exists, so point it at this build.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("strata.service");
    std::fs::write(
        &unit,
        UNIT.replace("/usr/local/bin/strata", env!("CARGO_BIN_EXE_strata")),
    )
    .unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim().is_empty(), "systemd-analyze verify warns: {err}");
}

#[test]
fn the_units_command_line_is_accepted() {
    let args = exec_start();
    assert_eq!(args[0], "/usr/local/bin/strata");
    assert!(args.iter().any(|a| a == "serve"), "{args:?}");
    // --help after the unit's own arguments: clap rejects an unknown flag or
    // a bad value before it gets to the help.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(&args[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("--bind"));
}
