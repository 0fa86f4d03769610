//! Tools outside PostgreSQL that some tests drive: the Python virtualenv that
//! `.ci/run` prepares (moto's S3 server, DuckDB, an independent Ed25519, schemathesis),
//! Debian's Chromium and the npm packages under `tests/browser`.
//!
//! Each finder returns `None` (and says the test is skipped) when the tool is
//! missing, except under `STRATA_REQUIRE_EXTENSIONS=1` (CI), where a missing
//! tool fails the test: a skipped test must never pass for coverage there.

use std::path::{Path, PathBuf};
use std::process::Command;

fn required() -> bool {
    std::env::var("STRATA_REQUIRE_EXTENSIONS").is_ok_and(|v| v == "1")
}

fn missing(what: &str, hint: &str) -> Option<PathBuf> {
    assert!(
        !required(),
        "{what} is missing and STRATA_REQUIRE_EXTENSIONS=1 ({hint})"
    );
    eprintln!(
        "SKIPPED: {what} is missing ({hint}; set STRATA_REQUIRE_EXTENSIONS=1 to fail instead)"
    );
    None
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The virtualenv's python with `module` importable (`moto`, `duckdb`,
/// `cryptography`). `STRATA_TEST_PYTHON` overrides the interpreter.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let python = std::env::var_os("STRATA_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-venv/bin/python"));
    let hint = "run: python3 -m venv target/ci-venv && target/ci-venv/bin/pip install -r .ci/requirements.txt";
    if !python.exists() {
        return missing(&format!("python virtualenv {}", python.display()), hint);
    }
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return missing(
            &format!("python module {module} in {}", python.display()),
            hint,
        );
    }
    Some(python)
}

/// The `moto_server` script of the virtualenv (an S3 API for tests).
pub fn moto_server() -> Option<PathBuf> {
    let python = python_with("moto")?;
    let script = python.with_file_name("moto_server");
    if !script.exists() {
        return missing(
            &format!("{}", script.display()),
            "pip install 'moto[server]'",
        );
    }
    Some(script)
}

/// The `schemathesis` CLI of the virtualenv (an OpenAPI fuzzer).
pub fn schemathesis() -> Option<PathBuf> {
    let python = python_with("schemathesis")?;
    let script = python.with_file_name("schemathesis");
    if !script.exists() {
        return missing(
            &format!("{}", script.display()),
            "pip install -r .ci/requirements.txt",
        );
    }
    Some(script)
}

/// Debian's Chromium (`STRATA_TEST_CHROMIUM` overrides). Never a browser
/// downloaded by a test tool.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("STRATA_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !path.exists() {
        return missing(&format!("{}", path.display()), "apt-get install chromium");
    }
    Some(path)
}

/// `tests/browser/node_modules` with playwright-core and axe-core.
pub fn browser_node_modules() -> Option<PathBuf> {
    let dir = repo().join("tests/browser/node_modules");
    for package in ["playwright-core", "axe-core"] {
        if !dir.join(package).join("package.json").exists() {
            return missing(
                &format!("npm package {package}"),
                "npm ci --prefix tests/browser",
            );
        }
    }
    Some(dir)
}

/// Debian's `promtool` (package `prometheus`; `STRATA_TEST_PROMTOOL`
/// overrides), which checks the alerting rules in docs/alerts.yml.
pub fn promtool() -> Option<PathBuf> {
    let path = std::env::var_os("STRATA_TEST_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/promtool"));
    if !path.exists() {
        return missing(&format!("{}", path.display()), "apt-get install prometheus");
    }
    Some(path)
}
