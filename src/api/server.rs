//! The accept loop: hyper's HTTP/1 server with the limits `axum::serve`
//! does not offer. A client must send its request head within
//! `header_timeout` (slowloris), at most `max_connections` are open at
//! once (beyond that a new one is closed at once, so sockets never run out
//! for the database and the log), and a kept-alive connection is closed
//! gracefully after `max_connection_age`.

use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
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
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let (stop, max_age) = (stop.clone(), options.max_connection_age);
        tracker.spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
                _ = tokio::time::sleep(max_age) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
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
