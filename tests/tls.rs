//! TLS to PostgreSQL: a cluster of its own with `ssl = on` and certificates
//! made here (a CA, a server certificate for `localhost` only, and a second
//! CA that signed nothing the server presents).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use strata::cluster::{LocalCluster, Profile};

struct Server {
    port: u16,
    user: String,
    password: String,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA the server's certificate does not chain to.
    other_ca: PathBuf,
    /// For `strata serve --tls-*`: signed by `ca`, for localhost.
    api_cert: PathBuf,
    api_key: PathBuf,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).unwrap().pem();
    (Issuer::new(params, key), pem)
}

/// Writes a file the server (the `postgres` user when we are root) can read
/// and nobody else: PostgreSQL refuses a key readable by others.
fn write_for_server(data: &Path, name: &str, text: &str) {
    let path = data.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let owner = std::fs::metadata(data).unwrap();
    std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        std::thread::spawn(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("strata-tls");
            std::fs::create_dir_all(&dir).unwrap();
            let (issuer, ca_pem) = ca("strata test CA");
            let (_, other_pem) = ca("some other CA");
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, "localhost");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let cert = params.signed_by(&key, &issuer).unwrap();
            let (ca, other_ca) = (dir.join("ca.pem"), dir.join("other-ca.pem"));
            std::fs::write(&ca, ca_pem).unwrap();
            std::fs::write(&other_ca, other_pem).unwrap();
            let api_key = KeyPair::generate().unwrap();
            let mut api = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            api.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let api_cert = api.signed_by(&api_key, &issuer).unwrap();
            let (api_cert_file, api_key_file) = (dir.join("api.crt"), dir.join("api.key"));
            std::fs::write(&api_cert_file, api_cert.pem()).unwrap();
            std::fs::write(&api_key_file, api_key.serialize_pem()).unwrap();

            let cluster = LocalCluster::new(dir.join("cluster"), Profile::Test);
            let state = cluster.start().expect("starting the TLS test cluster");
            let data = state.data_dir();
            write_for_server(&data, "tls-server.crt", &cert.pem());
            write_for_server(&data, "tls-server.key", &key.serialize_pem());
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let c = strata::db::connect(&plain_url(&state.url("postgres")))
                        .await
                        .unwrap();
                    // One statement each: ALTER SYSTEM refuses a transaction.
                    for setting in [
                        "ssl = on",
                        "ssl_cert_file = 'tls-server.crt'",
                        "ssl_key_file = 'tls-server.key'",
                    ] {
                        c.batch_execute(&format!("ALTER SYSTEM SET {setting}"))
                            .await
                            .unwrap();
                    }
                });
            // A restart, not a reload: the new certificates are in force
            // when start() returns, with nothing to wait for.
            cluster.stop().unwrap();
            let state = cluster.start().expect("restarting with ssl = on");
            Server {
                port: state.port,
                user: state.user,
                password: state.password,
                ca,
                other_ca,
                api_cert: api_cert_file,
                api_key: api_key_file,
            }
        })
        .join()
        .expect("TLS test server setup panicked")
    })
}

fn plain_url(url: &str) -> String {
    format!("{url}?sslmode=disable")
}

/// A URL naming `host`, connecting to 127.0.0.1 (the cluster's only
/// address) whatever `host` resolves to, with `query` appended.
fn url(host: &str, query: &str) -> String {
    let s = server();
    format!(
        "postgresql://{}:{}@{host}:{}/postgres?hostaddr=127.0.0.1&{query}",
        s.user, s.password, s.port
    )
}

fn ca_query(mode: &str, ca: &Path) -> String {
    format!("sslmode={mode}&sslrootcert={}", ca.display())
}

async fn encrypted(url: &str) -> bool {
    let client = strata::db::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting: {e}"));
    client
        .query_one(
            "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn refused(url: &str) -> String {
    let Err(e) = strata::db::connect(url).await else {
        panic!("the connection should be refused");
    };
    let e = e.to_string();
    assert!(
        !e.contains(&server().password),
        "the password is shown: {e}"
    );
    e
}

#[tokio::test]
async fn require_encrypts_without_checking() {
    // The certificate is for localhost and signed by a CA we do not pass.
    assert!(encrypted(&url("127.0.0.1", "sslmode=require")).await);
}

#[tokio::test]
async fn disable_is_plain_text_and_prefer_encrypts() {
    assert!(!encrypted(&url("127.0.0.1", "sslmode=disable")).await);
    assert!(encrypted(&url("127.0.0.1", "sslmode=prefer")).await);
}

#[tokio::test]
async fn verify_full_with_the_right_ca() {
    let s = server();
    assert!(encrypted(&url("localhost", &ca_query("verify-full", &s.ca))).await);
    // The key=value form too.
    let kv = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user={} password='{}' dbname=postgres \
         sslmode=verify-full sslrootcert='{}'",
        s.port,
        s.user,
        s.password,
        s.ca.display()
    );
    assert!(encrypted(&kv).await);
}

#[tokio::test]
async fn verify_full_refuses_another_ca() {
    let s = server();
    let e = refused(&url("localhost", &ca_query("verify-full", &s.other_ca))).await;
    assert!(e.contains("unknown CA"), "{e}");
    // libpq's rule: require with a root certificate checks the chain.
    let e = refused(&url("localhost", &ca_query("require", &s.other_ca))).await;
    assert!(e.contains("unknown CA"), "{e}");
}

#[tokio::test]
async fn verify_full_refuses_another_host_name_and_verify_ca_accepts_it() {
    let s = server();
    let e = refused(&url("127.0.0.1", &ca_query("verify-full", &s.ca))).await;
    assert!(e.contains("hostname mismatch"), "{e}");
    assert!(e.contains("127.0.0.1"), "{e}");
    assert!(encrypted(&url("127.0.0.1", &ca_query("verify-ca", &s.ca))).await);
    // verify-ca still checks the chain.
    let e = refused(&url("127.0.0.1", &ca_query("verify-ca", &s.other_ca))).await;
    assert!(e.contains("unknown CA"), "{e}");
}

#[tokio::test]
async fn the_api_pool_uses_the_same_tls() {
    let s = server();
    let pool = strata::api::pool(&url("localhost", &ca_query("verify-full", &s.ca)), 2).unwrap();
    let client = pool.get().await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    let bad =
        strata::api::pool(&url("localhost", &ca_query("verify-full", &s.other_ca)), 2).unwrap();
    let Err(deadpool_postgres::PoolError::Backend(e)) = bad.get().await else {
        panic!("the pool should refuse the other CA");
    };
    // What the API logs for a pool error.
    let e = strata::db::server_message(&e);
    assert!(e.contains("unknown CA"), "{e}");
    assert!(!e.contains(&s.password), "{e}");
}

fn strata(url: &str, args: &[&str]) -> std::process::Output {
    command(url).args(args).output().expect("running strata")
}

/// strata with `--database-url`, untouched by the developer's environment.
fn command(url: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--database-url")
        .arg(url)
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT");
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[tokio::test]
async fn the_cli_works_over_verify_full() {
    let s = server();
    let good = url("localhost", &ca_query("verify-full", &s.ca));
    let out = strata(&good, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = strata(&good, &["stats", "partitions", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(stats["table"], "public.audit_logs", "{stats}");

    let out = strata(
        &url("127.0.0.1", &ca_query("verify-full", &s.ca)),
        &["stats", "partitions", "--json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("hostname mismatch (the server's certificate is for localhost but the host is 127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains(&s.password), "{stderr}");
}

#[test]
fn bad_tls_settings_are_usage_errors_naming_the_value() {
    let url = "postgresql://u:secret@127.0.0.1:1/postgres?sslmode=verify_full";
    let out = strata(url, &["health", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"verify_full\""), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");

    let url = "host=127.0.0.1 port=1 sslmode=verify-full sslrootcert=/nonexistent/strata/ca.pem";
    let out = strata(url, &["health", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/strata/ca.pem"), "{stderr}");
}

/// A `strata serve` child, killed when dropped.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `strata serve` on a free port and returns it with the address
/// it says it listens on (the line it prints once bound).
fn serve_tls(db_url: &str) -> (Serving, String) {
    use std::io::BufRead;
    let s = server();
    let mut cmd = command(db_url);
    cmd.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--no-scheduler",
        "--tls-cert",
    ])
    .arg(&s.api_cert)
    .arg("--tls-key")
    .arg(&s.api_key)
    .stderr(std::process::Stdio::piped());
    let mut child = Serving(cmd.spawn().expect("starting strata serve"));
    let stderr = child.0.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut said = String::new();
    let addr = loop {
        let Some(line) = lines.next() else {
            panic!("strata serve ended before listening: {said}");
        };
        let line = line.unwrap();
        said.push_str(&line);
        if let Some(rest) = line.split_once("listening on https://") {
            break rest.1.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

#[tokio::test]
async fn serve_speaks_https_only() {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server();
    let db_url = url("localhost", &ca_query("verify-full", &s.ca));
    let out = strata(&db_url, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_serving, addr) = serve_tls(&db_url);

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&s.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with strata serve");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The body is what counts; a missing close_notify at the end is not.
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        plain.read_to_end(&mut answer),
    )
    .await
    .expect("the TLS port closes a plain-text connection");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
}

#[test]
fn serve_refuses_a_missing_key_naming_it() {
    let s = server();
    let db_url = url("localhost", &ca_query("verify-full", &s.ca));
    let out = strata(
        &db_url,
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            s.api_cert.to_str().unwrap(),
            "--tls-key",
            "/nonexistent/strata/api.key",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/strata/api.key"), "{stderr}");
    // Both or neither.
    let out = strata(
        &db_url,
        &["serve", "--tls-cert", s.api_cert.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
