//! Puts the git commit in `strata --version`, so a bug report names the
//! exact build. Outside a git checkout (a crate tarball) it says "unknown".
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let suffix = if dirty { "-modified" } else { "" };
    // Not STRATA_*: cargo also sets this for the programs it runs (tests), and
    // strata refuses STRATA_* variables it does not know.
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}{suffix}");
    // Rebuild when HEAD moves (a commit, a checkout); not on every edit.
    for path in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
