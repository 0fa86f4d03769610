//! Running server programs, as the `postgres` OS user when we are root.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::safe_fs::Owners;
use super::{io, ClusterError, ClusterState};

/// Who the server runs as.
pub struct ServerUser {
    /// `Some` when we are root and must switch to this uid/gid.
    switch_to: Option<(u32, u32)>,
}

impl ServerUser {
    pub fn for_current_process() -> Result<ServerUser, ClusterError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(ServerUser { switch_to: None });
        }
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(ClusterError::NoServerUser)?;
        Ok(ServerUser {
            switch_to: Some((user.uid.as_raw(), user.gid.as_raw())),
        })
    }

    /// Who may own the cluster's folders and who gets what strata creates
    /// in them: the server user, or ourselves when we are not root.
    pub fn owners(&self) -> Owners {
        let me = nix::unistd::geteuid().as_raw();
        Owners {
            server: self
                .switch_to
                .unwrap_or((me, nix::unistd::getegid().as_raw())),
            me,
        }
    }

    /// Whether the server user can reach `path` (execute permission on each
    /// existing ancestor). Folders that do not exist yet will be created by us
    /// with a traversable mode.
    pub fn can_traverse(&self, path: &Path) -> bool {
        let Some((uid, gid)) = self.switch_to else {
            return true;
        };
        path.ancestors()
            .filter_map(|p| fs::metadata(p).ok())
            .all(|m| {
                let mode = m.mode();
                if m.uid() == uid {
                    mode & 0o100 != 0
                } else if m.gid() == gid {
                    mode & 0o010 != 0
                } else {
                    mode & 0o001 != 0
                }
            })
    }
}

/// Runs a server program (as the server user), returning its output or an
/// error that carries the output and points at the log.
pub fn run_as_server_user(
    user: &ServerUser,
    program: &Path,
    args: &[&OsStr],
    what: &str,
    log: &Path,
) -> Result<String, ClusterError> {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir("/");
    if let Some((uid, gid)) = user.switch_to {
        cmd.uid(uid).gid(gid);
    }
    // pg_ctl start leaves the postmaster running with our stdout unless it is
    // redirected, which would keep a caller's pipe open forever.
    cmd.stdin(std::process::Stdio::null());
    let out = cmd
        .output()
        .map_err(io(format!("running {}", program.display())))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        return Ok(text);
    }
    let tail = fs::read_to_string(log)
        .map(|l| {
            l.lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    Err(ClusterError::Command {
        what: what.to_string(),
        status: out.status.to_string(),
        output: format!("{}\n{}", text.trim(), tail).trim().to_string(),
        log: log.display().to_string(),
    })
}

/// Whether the server of `state` is running (`pg_ctl status`, after checking
/// that the PID in `postmaster.pid` really is a postgres process: `pg_ctl`
/// only asks whether the PID is alive, and after a reboot it may belong to
/// anything).
pub fn pg_ctl_status(state: &ClusterState) -> Result<bool, ClusterError> {
    if !state.data_dir().join("PG_VERSION").exists() {
        return Ok(false);
    }
    if pid_file_owner(&state.data_dir()) != PidOwner::Postgres {
        return Ok(false);
    }
    let user = ServerUser::for_current_process()?;
    let mut cmd = Command::new(state.bin_dir.join("pg_ctl"));
    cmd.arg("status")
        .arg("-D")
        .arg(state.data_dir())
        .current_dir("/");
    if let Some((uid, gid)) = user.switch_to {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().map_err(io("running pg_ctl status"))?;
    // 0: running; 3: not running; 4: no accessible data folder.
    Ok(out.status.code() == Some(0))
}

/// A `postmaster.pid` whose PID now belongs to an unrelated process (after a
/// reboot, PIDs are reused) makes the server refuse to start: it sees a live
/// PID and assumes another postmaster. Remove it in that case only. A file
/// whose PID is dead is left alone: the postmaster replaces it itself, after
/// checking that no orphaned backend still uses the old shared memory, a
/// check strata must not bypass.
pub fn remove_stale_pid_file(data: &Path) -> Result<(), ClusterError> {
    let pid_file = data.join("postmaster.pid");
    if pid_file_owner(data) == PidOwner::Other {
        tracing::warn!(path = %pid_file.display(), "removing a postmaster.pid whose PID belongs to another program");
        fs::remove_file(&pid_file).map_err(io(format!("removing {}", pid_file.display())))?;
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum PidOwner {
    NoFile,
    /// The postmaster of this data folder.
    Postgres,
    /// No such process (left by a crash).
    Dead,
    /// A live process that is not this folder's postmaster.
    Other,
}

fn pid_file_owner(data: &Path) -> PidOwner {
    let Ok(text) = fs::read_to_string(data.join("postmaster.pid")) else {
        return PidOwner::NoFile;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return PidOwner::Other;
    };
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !proc_dir.exists() {
        return PidOwner::Dead;
    }
    // The postmaster's working directory is its data folder; a reused PID
    // (even another cluster's postgres) has a different one.
    let ours = match fs::read_link(proc_dir.join("cwd")) {
        Ok(cwd) => fs::canonicalize(data).is_ok_and(|d| d == cwd),
        // Not ours to inspect (another user): fall back to the program name.
        Err(_) => fs::read_to_string(proc_dir.join("comm")).is_ok_and(|comm| {
            comm.trim().starts_with("postgres") || comm.trim().starts_with("postmaster")
        }),
    };
    if ours {
        PidOwner::Postgres
    } else {
        PidOwner::Other
    }
}
