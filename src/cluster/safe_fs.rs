//! Files in folders the server user owns, handled as root without ever
//! following a link the server user could have planted.
//!
//! As root, strata writes into folders that belong to the `postgres` OS user
//! (`data/strata.conf`, `postgresql.conf`, the initdb password file). A path
//! such as `base/data/strata.conf` is resolved again on every use, and the
//! postgres user may turn any part of it it owns into a symlink to a root-only
//! file. So each folder is opened once with `O_NOFOLLOW`, its owner and mode
//! are checked on the open descriptor, and everything inside is done relative
//! to that descriptor: files are opened with `O_NOFOLLOW`, new files are
//! created exclusively under a random name, owned through `fchown` on their
//! descriptor and renamed into place (a rename replaces a symlink, it does
//! not follow it).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::ClusterError;

/// Who may own a folder strata uses, and who gets what strata creates.
#[derive(Clone, Copy, Debug)]
pub struct Owners {
    /// The server user's (uid, gid); ourselves when we are not root.
    pub server: (u32, u32),
    /// Our effective uid: a folder we made before handing it over is fine.
    pub me: u32,
}

impl Owners {
    fn accepts(&self, uid: u32) -> bool {
        uid == self.server.0 || uid == self.me
    }
}

/// An open folder whose owner and mode were checked.
#[derive(Debug)]
pub struct Dir {
    file: File,
    path: PathBuf,
}

fn unsafe_path(path: &Path, reason: impl Into<String>) -> ClusterError {
    ClusterError::UnsafePath {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn open_error(path: &Path, e: Errno) -> ClusterError {
    // With O_DIRECTORY, Linux answers a symlink with ENOTDIR rather than ELOOP.
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match e {
        Errno::ELOOP | Errno::ENOTDIR if is_link => unsafe_path(path, "it is a symbolic link"),
        Errno::ENOTDIR => unsafe_path(path, "it is not a folder"),
        e => ClusterError::Io {
            context: format!("opening {}", path.display()),
            source: e.into(),
        },
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

impl Dir {
    /// Opens `path` (not following a symlink there) and checks that it is a
    /// folder owned by the server user (or us) that nobody else may write.
    pub fn open(path: &Path, owners: Owners) -> Result<Dir, ClusterError> {
        let fd = openat(None, path, dir_flags(), Mode::empty()).map_err(|e| open_error(path, e))?;
        // SAFETY: openat just returned this descriptor and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        let dir = Dir {
            file,
            path: path.to_path_buf(),
        };
        dir.check(owners)?;
        Ok(dir)
    }

    /// The folder `name` inside this one, checked like [`Dir::open`].
    pub fn child(&self, name: &str, owners: Owners) -> Result<Dir, ClusterError> {
        let path = self.path.join(name);
        let fd = openat(Some(self.fd()), name, dir_flags(), Mode::empty())
            .map_err(|e| open_error(&path, e))?;
        // SAFETY: as in `open`.
        let file = unsafe { File::from_raw_fd(fd) };
        let dir = Dir { file, path };
        dir.check(owners)?;
        Ok(dir)
    }

    /// Creates (or reuses) the folder `name` inside this one and makes it
    /// the server user's with mode 700.
    pub fn private_child(&self, name: &str, owners: Owners) -> Result<Dir, ClusterError> {
        match mkdirat(Some(self.fd()), name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(ClusterError::Io {
                    context: format!("creating {}", self.path.join(name).display()),
                    source: e.into(),
                })
            }
        }
        let dir = self.child(name, owners)?;
        dir.hand_over(owners)?;
        Ok(dir)
    }

    /// Makes this folder the server user's, mode 700, through its descriptor.
    pub fn hand_over(&self, owners: Owners) -> Result<(), ClusterError> {
        let (uid, gid) = owners.server;
        std::os::unix::fs::fchown(&self.file, Some(uid), Some(gid)).map_err(|source| {
            ClusterError::Io {
                context: format!("giving {} to the postgres user", self.path.display()),
                source,
            }
        })?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(|source| ClusterError::Io {
                context: format!("setting permissions of {}", self.path.display()),
                source,
            })
    }

    /// A path to this very folder that no rename can redirect (Linux's
    /// `/proc/self/fd`), for std functions that take paths.
    pub fn pinned_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd()))
    }

    fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    fn check(&self, owners: Owners) -> Result<(), ClusterError> {
        let meta = self.file.metadata().map_err(|source| ClusterError::Io {
            context: format!("inspecting {}", self.path.display()),
            source,
        })?;
        if !owners.accepts(meta.uid()) {
            return Err(unsafe_path(
                &self.path,
                format!(
                    "it belongs to uid {}, neither the server user ({}) nor us ({})",
                    meta.uid(),
                    owners.server.0,
                    owners.me
                ),
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(unsafe_path(
                &self.path,
                format!(
                    "its mode {:o} lets other users write in it",
                    meta.mode() & 0o7777
                ),
            ));
        }
        Ok(())
    }

    fn open_file(&self, name: &str, flags: OFlag, mode: u32) -> Result<File, ClusterError> {
        let path = self.path.join(name);
        let fd = openat(
            Some(self.fd()),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| match e {
            Errno::ELOOP => unsafe_path(&path, "it is a symbolic link"),
            e => ClusterError::Io {
                context: format!("opening {}", path.display()),
                source: e.into(),
            },
        })?;
        // SAFETY: as in `open`.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Reads the regular file `name` (a symlink there is refused).
    pub fn read(&self, name: &str) -> Result<String, ClusterError> {
        let mut f = self.open_file(name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0)?;
        let path = self.path.join(name);
        let io = |source| ClusterError::Io {
            context: format!("reading {}", path.display()),
            source,
        };
        if !f.metadata().map_err(io)?.is_file() {
            return Err(unsafe_path(&path, "it is not a regular file"));
        }
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(io)?;
        Ok(text)
    }

    /// Replaces `name` with `bytes` (mode 600, owned by the server user).
    /// Whatever was at `name`, a symlink included, is replaced, not written.
    pub fn write(&self, name: &str, bytes: &[u8], owners: Owners) -> Result<(), ClusterError> {
        let tmp = format!(".{name}.{}.tmp", random_suffix());
        let path = self.path.join(name);
        let io = |source| ClusterError::Io {
            context: format!("writing {}", path.display()),
            source,
        };
        let mut f = self.open_file(
            &tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            0o600,
        )?;
        let written = (|| {
            f.write_all(bytes)?;
            std::os::unix::fs::fchown(&f, Some(owners.server.0), Some(owners.server.1))?;
            f.sync_all()?;
            renameat(Some(self.fd()), tmp.as_str(), Some(self.fd()), name).map_err(Into::into)
        })();
        if written.is_err() {
            let _ = unlinkat(Some(self.fd()), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        written.map_err(io)
    }

    /// Removes the file `name`, if there is one (a symlink is removed, not followed).
    pub fn remove(&self, name: &str) -> Result<(), ClusterError> {
        match unlinkat(Some(self.fd()), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(ClusterError::Io {
                context: format!("removing {}", self.path.join(name).display()),
                source: e.into(),
            }),
        }
    }
}

/// Creates `path` exclusively (it must not exist: a folder someone made
/// before us could hold their links), mode 700, and opens it.
pub fn create_exclusive(path: &Path, owners: Owners) -> Result<Dir, ClusterError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                unsafe_path(
                    path,
                    "it exists already, and strata only uses a temp folder it created itself",
                )
            } else {
                ClusterError::Io {
                    context: format!("creating {}", path.display()),
                    source,
                }
            }
        })?;
    Dir::open(path, owners)
}

/// 16 hex digits from the OS's random source: a name nobody can guess ahead.
pub fn random_suffix() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}
