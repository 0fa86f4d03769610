//! Test harness: a real PostgreSQL, a fresh database per test.
//!
//! Without `TEST_DATABASE_URL` the project's own local cluster is started once
//! per test run under `target/` (never the user's `.strata`), in the test
//! profile (no fsync). Each test gets a database cloned from a migrated
//! template, dropped when the test's `TestDb` goes out of scope, pass or fail.
#![allow(dead_code)]

pub mod moto;
pub mod tools;

use std::path::PathBuf;
use std::sync::OnceLock;

use strata::cluster::{LocalCluster, Profile};
use strata::db::{self, Ident};
use tokio_postgres::Client;

struct Server {
    /// URL of a database on the server we may connect to for admin work.
    admin_url: String,
    template: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();

pub fn test_cluster_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("strata-test-cluster")
}

fn with_database(url: &str, database: &str) -> String {
    let mut config: tokio_postgres::Config = url.parse().expect("TEST_DATABASE_URL is a valid URL");
    config.dbname(database);
    // Rebuild as a key=value string: tokio-postgres parses both forms.
    let mut parts = Vec::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={h}")),
            tokio_postgres::config::Host::Unix(p) => parts.push(format!("host={}", p.display())),
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(pw) = config.get_password() {
        parts.push(format!(
            "password='{}'",
            String::from_utf8_lossy(pw)
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
        ));
    }
    parts.push(format!("dbname={database}"));
    parts.join(" ")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        // Runs on its own thread: tests call this from inside their runtime.
        std::thread::spawn(|| {
            let admin_url = match std::env::var("TEST_DATABASE_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    let cluster = LocalCluster::new(test_cluster_home(), Profile::Test);
                    let state = cluster.start().expect("starting the test cluster");
                    state.url("postgres")
                }
            };
            let template = block_on(prepare_template(&admin_url));
            Server {
                admin_url,
                template,
            }
        })
        .join()
        .expect("test server setup panicked")
    })
}

/// A migrated template named after the migrations' checksums, built once per
/// server (under an advisory lock, so parallel test binaries agree).
async fn prepare_template(admin_url: &str) -> String {
    let sums: String = strata::schema::MIGRATIONS
        .iter()
        .map(|m| strata::schema::checksum(m.sql))
        .collect();
    let name = format!("strata_tmpl_{}", &strata::schema::checksum(&sums)[..16]);
    let admin = db::connect(admin_url)
        .await
        .expect("connecting to the test server");
    db::advisory_lock(&admin, "test-template").await.unwrap();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let partial = format!("{name}_partial");
        let p = Ident::new(partial.clone()).unwrap();
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {p} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {p} TEMPLATE template0"))
            .await
            .unwrap();
        {
            let mut c = db::connect(&with_database(admin_url, &partial))
                .await
                .unwrap();
            strata::schema::migrate(&mut c, false)
                .await
                .expect("migrating the template");
        }
        // Renaming needs the template's connections gone; ours just closed.
        let n = Ident::new(name.clone()).unwrap();
        let mut renamed = false;
        for _ in 0..50 {
            if admin
                .batch_execute(&format!("ALTER DATABASE {p} RENAME TO {n}"))
                .await
                .is_ok()
            {
                renamed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(renamed, "could not rename the template database");
    }
    db::advisory_unlock(&admin, "test-template").await.unwrap();
    name
}

/// A fresh database for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// A database with strata's schema already migrated.
    pub async fn migrated() -> TestDb {
        let template = server().template.clone();
        Self::create(Some(&template)).await
    }

    /// An empty database (no strata schema).
    pub async fn empty() -> TestDb {
        Self::create(None).await
    }

    async fn create(template: Option<&str>) -> TestDb {
        let server = server();
        let name = format!("strata_test_{}", hex_id());
        let admin = db::connect(&server.admin_url)
            .await
            .expect("connecting to the test server");
        let ident = Ident::new(name.clone()).unwrap();
        let template = Ident::new(template.unwrap_or("template0")).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {ident} TEMPLATE {template}"))
            .await
            .expect("creating the test database");
        TestDb {
            url: with_database(&server.admin_url, &name),
            name,
            admin_url: server.admin_url.clone(),
        }
    }

    pub async fn client(&self) -> Client {
        db::connect(&self.url)
            .await
            .expect("connecting to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime (or during a panic): use a thread
        // with a runtime of its own.
        let _ = std::thread::spawn(move || {
            block_on(async {
                if let Ok(admin) = db::connect(&admin_url).await {
                    let ident = Ident::new(name).unwrap();
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)"))
                        .await;
                }
            })
        })
        .join();
    }
}

fn hex_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{:x}_{:x}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs the strata binary with `--database-url` and the given arguments.
pub fn strata(db: &TestDb, args: &[&str]) -> std::process::Output {
    strata_cmd(db).args(args).output().expect("running strata")
}

pub fn strata_cmd(db: &TestDb) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--database-url").arg(&db.url);
    // A stray strata.toml or STRATA_* variable in the developer's shell must
    // not change what the tests see.
    cmd.env_remove("STRATA_CONFIG")
        .current_dir(env!("CARGO_TARGET_TMPDIR"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether the server offers `extension`. When it does not: with
/// STRATA_REQUIRE_EXTENSIONS=1 (CI) the test fails; otherwise it is skipped
/// with a message saying so.
pub async fn require_extension(db: &TestDb, extension: &str) -> bool {
    let available: bool = db
        .client()
        .await
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1)",
            &[&extension],
        )
        .await
        .unwrap()
        .get(0);
    if !available {
        let required = std::env::var("STRATA_REQUIRE_EXTENSIONS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "extension {extension} is not installed and STRATA_REQUIRE_EXTENSIONS=1"
        );
        eprintln!("SKIPPED: extension {extension} is not installed (set STRATA_REQUIRE_EXTENSIONS=1 to fail instead)");
    }
    available
}

/// Writes a strata.toml for one test and returns its path.
pub fn config_file(name: &str, text: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cfg-{}", hex_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A migrated database with the seed's partitions made (as of 2025-12-15)
/// and `rows` generated rows over 2025-01..2025-06.
pub async fn seeded(rows: u64) -> TestDb {
    let db = TestDb::migrated().await;
    let out = strata(&db, &["maintain", "--now", "2025-12-15"]);
    assert!(out.status.success(), "{}", stderr(&out));
    if rows > 0 {
        let n = rows.to_string();
        let out = strata(
            &db,
            &[
                "load",
                "--rows",
                &n,
                "--from",
                "2025-01-01",
                "--to",
                "2025-07-01",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    db
}

/// Polls `sql` (returning one bool) until it is true, for up to 30 s.
pub async fn wait_until(client: &Client, sql: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let done: bool = client.query_one(sql, &[]).await.unwrap().get(0);
        if done {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl TestDb {
    /// A URL for another database on the same server.
    pub fn url_for(&self, database: &str) -> String {
        with_database(&self.admin_url, database)
    }
}

/// A connection to any URL (e.g. another database of the test server).
pub struct TestDbUrl;

impl TestDbUrl {
    pub async fn connect(url: &str) -> Client {
        db::connect(url).await.expect("connecting")
    }
}
