//! The accept loop: hyper's HTTP/1 server with the limits `axum::serve`
//! does not offer. A client must send its request head within
//! `header_timeout` (slowloris), at most `max_connections` are open at
//! once (beyond that a new one is closed at once, so sockets never run out
//! for the database and the log), and a kept-alive connection is closed
//! gracefully after `max_connection_age`. With TLS the handshake, too,
//! must be done within `header_timeout`.

use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::add_extension::AddExtension;

use super::ServeOptions;

/// After a failed accept (EMFILE and the like), wait this long: retrying
/// at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Largest request head (hyper's buffer), well above any real one.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown`, then lets open requests
/// finish (within the request timeout) and closes idle connections.
pub async fn run(
    app: Router,
    listener: TcpListener,
    options: &ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = options.max_connections, "connection limit reached; closing a new connection");
            drop(stream);
            continue;
        };
        // What `into_make_service_with_connect_info` would add: the peer
        // address, for security events.
        let service = TowerToHyperService::new(AddExtension::new(app.clone(), ConnectInfo(peer)));
        let (stop, max_age, http) = (stop.clone(), options.max_connection_age, http.clone());
        let tls = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let header_timeout = options.header_timeout;
        tracker.spawn(async move {
            let _permit = permit;
            let result = match tls {
                None => drive(&http, stream, service, &stop, max_age).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => drive(&http, tls, service, &stop, max_age).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake not done within the header timeout");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    stop.cancel();
    tracker.close();
    // In-flight requests end within the request timeout; a little more for
    // the answer to leave.
    let drain = options.request_timeout + Duration::from_secs(1);
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after the drain period; closing them");
    }
    Ok(())
}

type Service = TowerToHyperService<AddExtension<Router, ConnectInfo<std::net::SocketAddr>>>;

/// One connection, plain or TLS, until it ends, the server stops, or it is
/// `max_age` old.
async fn drive<I>(
    http: &http1::Builder,
    io: I,
    service: Service,
    stop: &CancellationToken,
    max_age: Duration,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = tokio::time::sleep(max_age) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// The TLS configuration of `serve --tls-cert/--tls-key` (PEM; the
/// certificate file may hold the chain). The error names the file.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<std::sync::Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate in {}", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| {
            format!(
                "the TLS key {} does not fit the certificate {}: {e}",
                key.display(),
                cert.display()
            )
        })?;
    Ok(std::sync::Arc::new(config))
}
