//! Finding the machine's PostgreSQL server binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ClusterError;

const REQUIRED: [&str; 3] = ["postgres", "initdb", "pg_ctl"];

fn holds_server(dir: &Path) -> bool {
    REQUIRED.iter().all(|b| dir.join(b).is_file())
}

/// `STRATA_PG_BIN`, else `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/<major>/bin` that holds a server.
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os("STRATA_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if holds_server(&dir) {
            Ok(dir)
        } else {
            Err(ClusterError::BadBinDir(dir))
        };
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            // libpq-dev ships pg_config without a server; fall through then.
            if holds_server(&dir) {
                return Ok(dir);
            }
        }
    }
    newest_debian_bin_dir(Path::new("/usr/lib/postgresql")).ok_or(ClusterError::NoBinaries)
}

fn newest_debian_bin_dir(root: &Path) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            holds_server(&bin).then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The server's library folder (where `pg_cron.so` would be).
pub fn pkglib_dir(bin_dir: &Path) -> Option<PathBuf> {
    let out = Command::new(bin_dir.join("pg_config"))
        .arg("--pkglibdir")
        .output()
        .ok();
    if let Some(out) = out.filter(|o| o.status.success()) {
        return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    // Debian layout: /usr/lib/postgresql/15/{bin,lib}.
    let lib = bin_dir.parent()?.join("lib");
    lib.is_dir().then_some(lib)
}
