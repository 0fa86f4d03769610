//! The embedded local PostgreSQL: strata's default target when no URL is given.
//!
//! It runs the machine's own server binaries with data in a folder strata owns.
//! As root it runs them as the `postgres` OS user (initdb refuses root); that
//! user must be able to reach the data folder, so when an ancestor of the
//! strata home is private (a home directory with mode 700, as CI clones may
//! sit in) the cluster lives in a folder of the system temp dir instead and
//! `cluster.json` records where.
//!
//! As root, every file strata writes into the server user's folders goes
//! through `safe_fs`: the postgres OS user must not be able to turn strata
//! into a root file-writer by planting symlinks there.

mod binaries;
mod process;
mod safe_fs;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use binaries::find_bin_dir;
use process::{pg_ctl_status, run_as_server_user, ServerUser};
use safe_fs::Dir;

/// Database created in the local cluster for strata's data.
pub const DEFAULT_DATABASE: &str = "strata";
const STATE_FILE: &str = "cluster.json";
const LOCK_FILE: &str = "cluster.lock";
/// The password for clients, in libpq's password-file format.
const PGPASS_FILE: &str = "pgpass";
/// Unix socket paths are limited to ~108 bytes including `/.s.PGSQL.NNNNN`.
const MAX_SOCKET_DIR_LEN: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries found (looked at STRATA_PG_BIN, `pg_config --bindir` and /usr/lib/postgresql/*/bin).\n\
         Install the server, e.g. `apt-get install postgresql` on Debian/Ubuntu (version 15 or newer), \
         or point STRATA_PG_BIN at the folder holding `postgres`, `initdb` and `pg_ctl`"
    )]
    NoBinaries,
    #[error("STRATA_PG_BIN={0} does not hold `postgres`, `initdb` and `pg_ctl`")]
    BadBinDir(PathBuf),
    #[error("running as root, but there is no `postgres` OS user to run the server as; create one (e.g. `useradd --system postgres`) or run strata as a regular user")]
    NoServerUser,
    #[error("{what} failed ({status}); see {log}:\n{output}")]
    Command {
        what: String,
        status: String,
        output: String,
        log: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cluster state {path} is unreadable ({message}); run `strata local destroy` to start over"
    )]
    State { path: PathBuf, message: String },
    #[error(
        "refusing to use {path}: {reason}. strata does not follow links or use folders others could \
         have prepared; move it away (or run `strata local destroy`) and run the command again"
    )]
    UnsafePath { path: PathBuf, reason: String },
    #[error(
        "{0} holds a PostgreSQL cluster that has run before, but its state file is missing; strata will not \
         delete it. Move it away (or delete it yourself) and run the command again"
    )]
    Orphaned(PathBuf),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// Tuning profile of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Durable, sized for loading millions of rows.
    Local,
    /// For test runs: no fsync, since the data is thrown away.
    Test,
}

/// What `cluster.json` records: enough to find and reach the cluster again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterState {
    pub bin_dir: PathBuf,
    /// Folder holding `data/`, the log and (usually) the socket.
    pub base_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    /// Whether the port was configured (STRATA_PG_PORT) rather than picked.
    pub port_fixed: bool,
    pub user: String,
    pub password: String,
    pub profile: Profile,
}

impl ClusterState {
    pub fn data_dir(&self) -> PathBuf {
        self.base_dir.join("data")
    }
    pub fn log_file(&self) -> PathBuf {
        self.base_dir.join("postgres.log")
    }
    /// The URL with the password, for connecting; never print it.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}",
            self.user, self.password, self.port, database
        )
    }

    /// The URL without the password, for showing: clients find the password
    /// in the `PGPASSFILE` that [`LocalCluster::write_pgpass`] writes.
    pub fn public_url(&self, database: &str) -> String {
        format!(
            "postgresql://{}@127.0.0.1:{}/{}",
            self.user, self.port, database
        )
    }
}

/// Running or not, as `strata local status` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub running: bool,
    pub initialized: bool,
    pub url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
}

/// A local cluster rooted at a strata home folder (`.strata` by default).
pub struct LocalCluster {
    home: PathBuf,
    profile: Profile,
}

impl LocalCluster {
    /// The cluster for `STRATA_HOME`, or `.strata` in the current directory.
    pub fn from_env() -> LocalCluster {
        let home = std::env::var_os("STRATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".strata"));
        LocalCluster::new(home, Profile::Local)
    }

    pub fn new(home: impl Into<PathBuf>, profile: Profile) -> LocalCluster {
        LocalCluster {
            home: home.into(),
            profile,
        }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn state(&self) -> Result<Option<ClusterState>, ClusterError> {
        let path = self.home.join(STATE_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ClusterError::State {
                    path,
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    fn save_state(&self, state: &ClusterState) -> Result<(), ClusterError> {
        let path = self.home.join(STATE_FILE);
        let text = serde_json::to_string_pretty(state).expect("state serializes");
        write_private(&path, text.as_bytes())
    }

    /// Initializes (first time) and starts the cluster, waiting until it
    /// accepts connections. Safe to call when it is already running, and from
    /// several processes at once (they serialize on a lock file).
    pub fn start(&self) -> Result<ClusterState, ClusterError> {
        fs::create_dir_all(&self.home).map_err(io(format!("creating {}", self.home.display())))?;
        let lock = fs::File::create(self.home.join(LOCK_FILE))
            .map_err(io("creating the cluster lock file"))?;
        lock.lock().map_err(io("locking the cluster lock file"))?;

        let mut state = match self.state()? {
            Some(s) if s.data_dir().join("PG_VERSION").exists() => s,
            previous => self.init(previous.as_ref())?,
        };
        let user = ServerUser::for_current_process()?;
        process::remove_stale_pid_file(&state.data_dir())?;
        if pg_ctl_status(&state)? {
            return Ok(state);
        }
        if !state.port_fixed && !port_is_free(state.port) {
            state.port = pick_port()?;
            tracing::info!(
                port = state.port,
                "previous port is taken; moved the local cluster"
            );
        }
        self.write_settings(&state, &user)?;
        self.save_state(&state)?;
        let data = state.data_dir();
        let log = state.log_file();
        let pg_ctl = state.bin_dir.join("pg_ctl");
        run_as_server_user(
            &user,
            &pg_ctl,
            &[
                "start".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "120".as_ref(),
            ],
            "starting the local PostgreSQL",
            &log,
        )?;
        Ok(state)
    }

    /// Makes the data folder. `previous` is the state an interrupted init
    /// recorded: its folders are reused, after the same checks.
    fn init(&self, previous: Option<&ClusterState>) -> Result<ClusterState, ClusterError> {
        let bin_dir = find_bin_dir()?;
        let user = ServerUser::for_current_process()?;
        let owners = user.owners();
        let (base_dir, socket_dir) = match previous {
            Some(s) => (s.base_dir.clone(), s.socket_dir.clone()),
            None => self.make_dirs(&user)?,
        };
        let base = Dir::open(&base_dir, owners)?;
        let (port, port_fixed) = match std::env::var("STRATA_PG_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
        {
            Some(p) => (p, true),
            None => (pick_port()?, false),
        };
        let password = random_password();
        let state = ClusterState {
            bin_dir,
            base_dir,
            socket_dir,
            port,
            port_fixed,
            user: "postgres".into(),
            password,
            profile: self.profile,
        };
        let data = state.data_dir();
        if data.join("postmaster.opts").exists() {
            // Written at a server's first start: this is no interrupted
            // init but a cluster someone used.
            return Err(ClusterError::Orphaned(data));
        }
        // Recorded before initdb runs, so an interrupted init finds its
        // (randomly named) folders again instead of making new ones.
        self.save_state(&state)?;
        if fs::symlink_metadata(&data).is_ok() {
            // A half-made data folder from an interrupted init: initdb refuses
            // a non-empty folder, and nothing in it is worth keeping. Removed
            // through the opened base folder, so no swapped-in link redirects it.
            fs::remove_dir_all(base.pinned_path().join("data"))
                .map_err(io(format!("removing the incomplete {}", data.display())))?;
        }
        base.write("initdb.pw", state.password.as_bytes(), owners)?;
        let pwfile = state.base_dir.join("initdb.pw");
        let mut pwarg = std::ffi::OsString::from("--pwfile=");
        pwarg.push(&pwfile);
        let result = run_as_server_user(
            &user,
            &state.bin_dir.join("initdb"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                pwarg.as_os_str(),
                "--auth-local=trust".as_ref(),
                "--auth-host=scram-sha-256".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C.UTF-8".as_ref(),
            ],
            "initdb",
            &state.log_file(),
        );
        let _ = base.remove("initdb.pw");
        result?;
        let data_dir = base.child("data", owners)?;
        let mut text = data_dir.read("postgresql.conf")?;
        text.push_str("\n# Settings managed by strata (rewritten on every start).\ninclude_if_exists = 'strata.conf'\n");
        data_dir.write("postgresql.conf", text.as_bytes(), owners)?;
        self.save_state(&state)?;
        Ok(state)
    }

    /// Creates the cluster's folder and socket folder: `home/pg` when the
    /// server user can reach it, else a folder of the system temp dir with a
    /// random name (a predictable one could be prepared by any local user),
    /// created exclusively. The folders are handed to the server user last,
    /// so nobody else can put anything in them while strata sets them up.
    fn make_dirs(&self, user: &ServerUser) -> Result<(PathBuf, PathBuf), ClusterError> {
        let owners = user.owners();
        let home = std::path::absolute(&self.home).map_err(io("resolving the strata home"))?;
        let (base_dir, base) = if user.can_traverse(&home) {
            let path = home.join("pg");
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(format!("creating {}", path.display()))(e)),
            }
            let dir = Dir::open(&path, owners)?;
            (path, dir)
        } else {
            let name = format!("strata-pg-{}", safe_fs::random_suffix());
            let path = std::env::temp_dir().join(name);
            tracing::info!(
                dir = %path.display(),
                "the postgres user cannot reach {}; keeping the cluster in the temp dir",
                home.display()
            );
            let dir = safe_fs::create_exclusive(&path, owners)?;
            (path, dir)
        };
        let socket_dir = if base_dir.join("run").as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            base.private_child("run", owners)?;
            base_dir.join("run")
        } else {
            let suffix = safe_fs::random_suffix();
            let path = std::env::temp_dir().join(format!("strata-{}", &suffix[..12]));
            safe_fs::create_exclusive(&path, owners)?.hand_over(owners)?;
            path
        };
        base.hand_over(owners)?;
        Ok((base_dir, socket_dir))
    }

    fn write_settings(&self, state: &ClusterState, user: &ServerUser) -> Result<(), ClusterError> {
        let mut preload = Vec::new();
        let libs = binaries::pkglib_dir(&state.bin_dir);
        let has = |lib: &str| {
            libs.as_ref()
                .is_some_and(|d| d.join(format!("{lib}.so")).exists())
        };
        if has("pg_stat_statements") {
            preload.push("pg_stat_statements");
        }
        if has("pg_cron") {
            preload.push("pg_cron");
        }
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket}'\n\
             shared_preload_libraries = '{preload}'\n\
             track_io_timing = on\n\
             max_connections = 200\n\
             max_wal_size = '4GB'\n\
             checkpoint_timeout = '15min'\n\
             log_min_messages = warning\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n",
            port = state.port,
            socket = state.socket_dir.display().to_string().replace('\'', "''"),
            preload = preload.join(","),
        );
        if has("pg_cron") {
            conf.push_str(&format!("cron.database_name = '{DEFAULT_DATABASE}'\n"));
        }
        match state.profile {
            Profile::Local => conf.push_str("shared_buffers = '1GB'\nmaintenance_work_mem = '256MB'\n"),
            // Test data is thrown away: durability only costs time.
            Profile::Test => conf.push_str(
                "shared_buffers = '256MB'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            ),
        }
        // Never `fs::write` here: the postgres user owns data/ and may have
        // made strata.conf a symlink to a root-only file.
        let owners = user.owners();
        let data = Dir::open(&state.base_dir, owners)?.child("data", owners)?;
        data.write("strata.conf", conf.as_bytes(), owners)
    }

    pub fn stop(&self) -> Result<bool, ClusterError> {
        let Some(state) = self.state()? else {
            return Ok(false);
        };
        if !pg_ctl_status(&state)? {
            return Ok(false);
        }
        let user = ServerUser::for_current_process()?;
        let data = state.data_dir();
        run_as_server_user(
            &user,
            &state.bin_dir.join("pg_ctl"),
            &[
                "stop".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
            ],
            "stopping the local PostgreSQL",
            &state.log_file(),
        )?;
        Ok(true)
    }

    pub fn status(&self) -> Result<Status, ClusterError> {
        let Some(state) = self.state()? else {
            return Ok(Status {
                running: false,
                initialized: false,
                url: None,
                data_dir: None,
                log_file: None,
            });
        };
        Ok(Status {
            running: pg_ctl_status(&state)?,
            initialized: state.data_dir().join("PG_VERSION").exists(),
            url: Some(state.public_url(DEFAULT_DATABASE)),
            data_dir: Some(state.data_dir()),
            log_file: Some(state.log_file()),
        })
    }

    /// Writes `home/pgpass` (mode 600) with the cluster's password, for
    /// `PGPASSFILE`, and returns its path.
    pub fn write_pgpass(&self, state: &ClusterState) -> Result<PathBuf, ClusterError> {
        let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
        let line = format!(
            "127.0.0.1:{}:*:{}:{}\n",
            state.port,
            escape(&state.user),
            escape(&state.password)
        );
        let path = std::path::absolute(self.home.join(PGPASS_FILE))
            .map_err(io("resolving the strata home"))?;
        write_private(&path, line.as_bytes())?;
        Ok(path)
    }

    /// Stops the cluster and deletes its data and state.
    pub fn destroy(&self) -> Result<(), ClusterError> {
        let state = self.state()?;
        self.stop()?;
        if let Some(state) = state {
            for dir in [&state.base_dir, &state.socket_dir] {
                if dir.exists() {
                    fs::remove_dir_all(dir).map_err(io(format!("removing {}", dir.display())))?;
                }
            }
        }
        for file in [STATE_FILE, LOCK_FILE, PGPASS_FILE] {
            let _ = fs::remove_file(self.home.join(file));
        }
        Ok(())
    }
}

/// Creates `database` if it does not exist. `admin_url` points at any
/// database of the same server.
pub async fn ensure_database(admin_url: &str, database: &str) -> Result<(), crate::db::DbError> {
    let client = crate::db::connect(admin_url).await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(crate::db::DbError::query("looking up the database"))?
        .is_some();
    if !exists {
        let ident = crate::db::Ident::new(database)?;
        match client
            .batch_execute(&format!("CREATE DATABASE {ident}"))
            .await
        {
            Ok(()) => {}
            // Another process created it between our check and our CREATE.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => {
                return Err(crate::db::DbError::query(format!(
                    "creating database {database}"
                ))(e))
            }
        }
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClusterError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(format!("writing {}", tmp.display())))?;
    f.write_all(bytes)
        .map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("renaming {}", tmp.display())))
}

fn pick_port() -> Result<u16, ClusterError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn random_password() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().gen();
    hex::encode(bytes)
}
