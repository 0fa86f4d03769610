//! The local cluster run by root must not be a way for other local users
//! to write root's files: planted symlinks in the server user's folders and
//! a prepared temp folder are refused or replaced, never followed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VICTIM_TEXT: &str = "root only: strata must never write here\n";

fn is_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED: these tests plant symlinks for a root-run cluster; run them as root");
    }
    root
}

fn strata(home: &Path, tmpdir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    if let Some(t) = tmpdir {
        cmd.env("TMPDIR", t);
    }
    cmd.env("STRATA_HOME", home)
        .args(args)
        .output()
        .expect("running strata")
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn scratch(name: &str) -> PathBuf {
    let p =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A root-owned file with known content, mode 600.
fn victim(dir: &Path) -> PathBuf {
    let v = dir.join("victim");
    std::fs::write(&v, VICTIM_TEXT).unwrap();
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o600)).unwrap();
    v
}

fn assert_untouched(victim: &Path) {
    let meta = std::fs::symlink_metadata(victim).unwrap();
    assert_eq!(
        std::fs::read_to_string(victim).unwrap(),
        VICTIM_TEXT,
        "the victim's content changed"
    );
    assert_eq!(meta.uid(), 0, "the victim was given away");
    assert_eq!(meta.mode() & 0o777, 0o600, "the victim's mode changed");
}

fn postgres_uid() -> u32 {
    nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("a postgres OS user")
        .uid
        .as_raw()
}

#[test]
fn a_symlinked_strata_conf_is_replaced_not_followed() {
    if !is_root() {
        return;
    }
    let dir = scratch("sec-conf");
    let home = dir.join("home");
    let victim = victim(&dir);
    ok(&strata(&home, None, &["--json", "local", "start"]));
    let status = ok(&strata(&home, None, &["--json", "local", "status"]));
    let data = PathBuf::from(status["data_dir"].as_str().unwrap());
    ok(&strata(&home, None, &["--json", "local", "stop"]));

    // What the postgres OS user (owner of data/) can do between two starts.
    let conf = data.join("strata.conf");
    std::fs::remove_file(&conf).unwrap();
    std::os::unix::fs::symlink(&victim, &conf).unwrap();

    let started = ok(&strata(&home, None, &["--json", "local", "start"]));
    assert_eq!(started["running"], true);
    assert_untouched(&victim);
    let meta = std::fs::symlink_metadata(&conf).unwrap();
    assert!(
        meta.file_type().is_file(),
        "strata.conf is a regular file again"
    );
    assert_eq!(meta.uid(), postgres_uid());
    assert!(std::fs::read_to_string(&conf).unwrap().contains("port = "));

    ok(&strata(
        &home,
        None,
        &["--json", "local", "destroy", "--yes"],
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_temp_folder_fallback_is_unpredictable_and_checked() {
    if !is_root() {
        return;
    }
    let dir = scratch("sec-tmp");
    let victim = victim(&dir);
    // A temp dir anyone may write, like /tmp.
    let tmpdir = dir.join("tmp");
    std::fs::create_dir(&tmpdir).unwrap();
    std::fs::set_permissions(&tmpdir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // A strata home the postgres user cannot reach (a private parent).
    let private = dir.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let home = private.join("home");

    // The name older strata used, prepared by `nobody` with a link where
    // root wrote the cluster password.
    let predictable = {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(home.as_os_str().as_encoded_bytes());
        tmpdir.join(format!("strata-pg-{}", hex::encode(&digest[..6])))
    };
    std::fs::create_dir(&predictable).unwrap();
    std::os::unix::fs::symlink(&victim, predictable.join("initdb.tmp")).unwrap();
    std::os::unix::fs::symlink(&victim, predictable.join("initdb.pw")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    for p in [&predictable, &predictable.join("initdb.tmp")] {
        std::os::unix::fs::lchown(p, Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw())).unwrap();
    }
    std::fs::set_permissions(&predictable, std::fs::Permissions::from_mode(0o777)).unwrap();

    let started = ok(&strata(&home, Some(&tmpdir), &["--json", "local", "start"]));
    assert_eq!(started["running"], true);
    assert_untouched(&victim);
    assert_eq!(
        std::fs::metadata(&predictable).unwrap().uid(),
        nobody.uid.as_raw(),
        "the prepared folder was not taken over"
    );

    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("cluster.json")).unwrap()).unwrap();
    let base = PathBuf::from(state["base_dir"].as_str().unwrap());
    assert_ne!(base, predictable);
    assert_eq!(base.parent(), Some(tmpdir.as_path()));
    let name = base.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("strata-pg-") && name.len() == "strata-pg-".len() + 16,
        "{name}"
    );
    let meta = std::fs::symlink_metadata(&base).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), postgres_uid());
    assert_eq!(meta.mode() & 0o777, 0o700);

    // A recorded folder that others may write in is refused, clearly.
    ok(&strata(&home, Some(&tmpdir), &["--json", "local", "stop"]));
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = strata(&home, Some(&tmpdir), &["local", "start"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("refusing to use") && err.contains("lets other users write"),
        "{err}"
    );
    // ... and so is one replaced by a symlink.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let moved = tmpdir.join("moved-away");
    std::fs::rename(&base, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &base).unwrap();
    let refused = strata(&home, Some(&tmpdir), &["local", "start"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("symbolic link"), "{err}");
    std::fs::remove_file(&base).unwrap();
    std::fs::rename(&moved, &base).unwrap();
    assert_untouched(&victim);

    ok(&strata(
        &home,
        Some(&tmpdir),
        &["--json", "local", "destroy", "--yes"],
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
