//! TLS to PostgreSQL with libpq's `sslmode` and `sslrootcert`: the one place
//! that builds the connector every strata connection uses (CLI sessions, the
//! API pool, cancel requests, the bench database).
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, and rejects
//! `verify-ca`, `verify-full` and `sslrootcert`; so [`parse`] takes both out
//! of the connection string first, hands tokio-postgres the rest with the
//! matching transport mode, and puts the checking into the rustls verifier.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::{Host, SslMode as Transport};

/// The connector handed to tokio-postgres and deadpool.
pub type Connector = tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values that strata supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Try TLS, fall back to plain text; no certificate check (libpq's and
    /// tokio-postgres's default).
    Prefer,
    /// Encrypt, and check nothing, unless `sslrootcert` is given (then as
    /// `verify-ca`, as libpq does).
    Require,
    /// The certificate must chain to a trusted root; any host name.
    VerifyCa,
    /// Chain and host name.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str, from: &'static str) -> Result<SslMode, TlsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(TlsError::UnknownMode {
                    value: value.to_string(),
                    from,
                })
            }
        })
    }
}

/// What [`parse`] took out of a connection string (or the environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "unknown sslmode {value:?} (in {from}): use disable, prefer, require, verify-ca or verify-full \
         (allow is not supported)"
    )]
    UnknownMode { value: String, from: &'static str },
    #[error("cannot read sslrootcert {}: {reason}", path.display())]
    RootCert { path: PathBuf, reason: String },
    #[error("no trusted root certificates for sslmode={mode}: {reason}; pass sslrootcert=/path/to/ca.pem")]
    NoRoots { mode: &'static str, reason: String },
}

/// The connection string's tokio-postgres config, with [`super::session_defaults`]
/// not yet applied, and the connector that implements its `sslmode`.
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, Connector), super::DbError> {
    let (rest, params) = split(url, |k| std::env::var(k).ok())?;
    let mut config: tokio_postgres::Config =
        rest.parse().map_err(|source| super::DbError::Connect {
            target: super::redact_url(url),
            source,
        })?;
    // PostgreSQL never speaks TLS over a Unix socket and libpq ignores
    // sslmode there; tokio-postgres would fail `require` instead.
    let only_sockets = config.get_hostaddrs().is_empty()
        && !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, Host::Tcp(_)));
    let mode = if only_sockets {
        SslMode::Disable
    } else {
        params.mode
    };
    config.ssl_mode(match mode {
        SslMode::Disable => Transport::Disable,
        SslMode::Prefer => Transport::Prefer,
        _ => Transport::Require,
    });
    Ok((config, connector(&params)?))
}

/// Removes `sslmode` and `sslrootcert` from a URL's query or a `key=value`
/// string; when absent, `PGSSLMODE` / `PGSSLROOTCERT` (through `env`) apply,
/// as in libpq. The default mode is `prefer`.
pub fn split(
    url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, TlsParams), TlsError> {
    let (rest, mode, root) = if url.contains("://") {
        split_url(url)
    } else {
        split_key_values(url)
    };
    let mode = match (mode, env("PGSSLMODE")) {
        (Some(v), _) => SslMode::parse(&v, "the connection string")?,
        (None, Some(v)) if !v.is_empty() => SslMode::parse(&v, "PGSSLMODE")?,
        _ => SslMode::Prefer,
    };
    let root_cert = root
        .or_else(|| env("PGSSLROOTCERT"))
        .filter(|r| !r.is_empty())
        .map(PathBuf::from);
    Ok((rest, TlsParams { mode, root_cert }))
}

type Split = (String, Option<String>, Option<String>);

fn split_url(url: &str) -> Split {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None, None);
    };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(percent_decode(v)),
            Some(("sslrootcert", v)) => root = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, mode, root)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pairs are kept as written, so tokio-postgres parses (and reports
/// errors in) everything but ours.
fn split_key_values(s: &str) -> Split {
    let Some(pairs) = super::key_value_pairs(s) else {
        return (s.to_string(), None, None);
    };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for (key, raw) in pairs {
        match key {
            "sslmode" => mode = Some(unquote(raw)),
            "sslrootcert" => root = Some(unquote(raw)),
            _ => kept.push(format!("{key}={raw}")),
        }
    }
    (kept.join(" "), mode, root)
}

fn unquote(raw: &str) -> String {
    let inner = raw
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .unwrap_or(raw);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls connector for `params`: no certificate check for `prefer` and
/// `require` (as libpq: encryption against passive listeners only), the
/// chain for `verify-ca` (and `require` with a `sslrootcert`), chain and
/// host name for `verify-full`.
pub fn connector(params: &TlsParams) -> Result<Connector, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions");
    let verifier: Arc<dyn ServerCertVerifier> = match (params.mode, &params.root_cert) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
            Arc::new(NoCheck(provider))
        }
        (mode, root) => {
            let roots = match root {
                Some(path) if path.as_os_str() != "system" => read_roots(path)?,
                _ => system_roots(mode)?,
            };
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::NoRoots {
                    mode: mode_name(mode),
                    reason: e.to_string(),
                })?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Connector::new(config))
}

fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let bad = |reason: String| TlsError::RootCert {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate in it".to_string()));
    }
    Ok(roots)
}

/// The operating system's trust store, which is where an operator installs
/// a private CA (unlike a bundled Mozilla list).
fn system_roots(mode: SslMode) -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = match found.errors.first() {
            Some(e) => format!("the system store could not be read ({e})"),
            None => "the system store is empty".to_string(),
        };
        return Err(TlsError::NoRoots {
            mode: mode_name(mode),
            reason,
        });
    }
    Ok(roots)
}

/// `prefer` / `require`: any certificate, but the handshake's signatures are
/// still checked so the session key is really the server's certificate's.
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: webpki checks the chain before the name, so a name error
/// means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Names a certificate check that failed during the TLS handshake, in the
/// operator's terms (unknown CA, hostname mismatch), or `None` when `e` is
/// no such failure.
pub fn describe_failure(e: &tokio_postgres::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        // io::Error's source() skips its own payload, where tokio-rustls
        // puts the rustls error.
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(c), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(ce)) = candidate.downcast_ref() {
                return Some(describe_certificate_error(ce));
            }
        }
        cause = c.source();
    }
    None
}

fn describe_certificate_error(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer => "TLS certificate verification failed: unknown CA (the server's \
             certificate does not chain to a root in sslrootcert or the system store)"
            .to_string(),
        CertificateError::NotValidForName => {
            "TLS certificate verification failed: hostname mismatch (the server's certificate is not \
             valid for the host connected to; sslmode=verify-ca does not check the name)"
                .to_string()
        }
        CertificateError::NotValidForNameContext { expected, presented } => format!(
            "TLS certificate verification failed: hostname mismatch (the server's certificate is for {} \
             but the host is {}; sslmode=verify-ca does not check the name)",
            presented
                .iter()
                .map(|p| unwrap_name(p))
                .collect::<Vec<_>>()
                .join(", "),
            expected.to_str()
        ),
        other => format!("TLS certificate verification failed: {other}"),
    }
}

/// rustls shows the certificate's names as `DnsName("db.example")`.
fn unwrap_name(shown: &str) -> &str {
    shown
        .strip_prefix("DnsName(\"")
        .and_then(|s| s.strip_suffix("\")"))
        .unwrap_or(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn url_form_is_split() {
        let (rest, p) = split(
            "postgresql://u:pw@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
            no_env,
        )
        .unwrap();
        assert_eq!(rest, "postgresql://u:pw@h:5/db?application_name=x");
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.root_cert.as_deref(), Some(Path::new("/tmp/ca.pem")));
        let (rest, p) = split("postgres://h/db?sslmode=require", no_env).unwrap();
        assert_eq!(
            (rest.as_str(), p.mode),
            ("postgres://h/db", SslMode::Require)
        );
    }

    #[test]
    fn key_value_form_is_split() {
        let (rest, p) = split(
            "host=h sslmode=verify-ca password='a b' sslrootcert='/x y/ca.pem' dbname=d",
            no_env,
        )
        .unwrap();
        assert_eq!(rest, "host=h password='a b' dbname=d");
        assert_eq!(p.mode, SslMode::VerifyCa);
        assert_eq!(p.root_cert.as_deref(), Some(Path::new("/x y/ca.pem")));
    }

    #[test]
    fn environment_is_the_fallback() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-full".to_string()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_string()),
            _ => None,
        };
        let (_, p) = split("host=h", env).unwrap();
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.root_cert.as_deref(), Some(Path::new("/env/ca.pem")));
        let (_, p) = split("host=h sslmode=disable", env).unwrap();
        assert_eq!(p.mode, SslMode::Disable);
        let (_, p) = split("host=h", no_env).unwrap();
        assert_eq!((p.mode, p.root_cert), (SslMode::Prefer, None));
    }

    #[test]
    fn unknown_modes_are_named() {
        let e = split("postgres://h/db?sslmode=verify_full", no_env).unwrap_err();
        assert!(e.to_string().contains("\"verify_full\""), "{e}");
        let env = |_: &str| Some("allow".to_string());
        let e = split("host=h", env).unwrap_err();
        assert!(e.to_string().contains("\"allow\" (in PGSSLMODE)"), "{e}");
    }

    #[test]
    fn unreadable_root_cert_is_named() {
        let params = TlsParams {
            mode: SslMode::VerifyFull,
            root_cert: Some(PathBuf::from("/nonexistent/strata-ca.pem")),
        };
        let e = connector(&params).err().expect("no such file");
        assert!(e.to_string().contains("/nonexistent/strata-ca.pem"), "{e}");
    }

    #[test]
    fn sockets_only_never_ask_for_tls() {
        let (config, _) = parse("host=/tmp sslmode=require dbname=d").unwrap();
        assert_eq!(config.get_ssl_mode(), Transport::Disable);
        let (config, _) = parse("host=127.0.0.1 sslmode=require dbname=d").unwrap();
        assert_eq!(config.get_ssl_mode(), Transport::Require);
    }
}
