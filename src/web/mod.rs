//! The dashboard `strata serve` shows at `/`: server-rendered HTML (an
//! adapter like `api`: it reads through `stats`, `report`, `health`,
//! `convert` and `jobs`, and starts maintenance through the API's own job
//! path into `ops`), SVG charts, one small script for live refresh and
//! sortable tables, all embedded in the binary.
//!
//! Sessions come from logging in with an API token (`session.rs`); every
//! POST carries the session's CSRF token (`csrf.rs`); every response gets a
//! strict Content-Security-Policy (no inline script or style).

pub mod charts;
pub mod csrf;
pub mod html;
pub mod layout;
mod login;
mod pages;
pub mod session;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::api::AppState;

/// Content-Security-Policy of every dashboard response: only this origin's
/// script, style and images, no plugins, no framing, forms post here only.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
/// Assets are named with the binary's version (`?v=`), so a day's caching is safe.
const ASSET_CACHE: &str = "public, max-age=86400";

async fn security_headers(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // The handler's own time (reads and rendering, not the network), so
    // `bench/dashboard.sh` and a browser's devtools show the server's part.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "app;dur={:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    )) {
        h.insert(header::HeaderName::from_static("server-timing"), v);
    }
    let set = |h: &mut axum::http::HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // Not `no-referrer`: under it Chromium sends `Origin: null` with a
    // same-origin form POST, which `csrf::same_origin` must refuse.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages show live data and who is logged in: never cached.
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        JS,
    )
}

/// The dashboard's routes, to merge into the API's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .merge(pages::router())
        .layer(Extension(Arc::new(session::Sessions::default())))
        .layer(middleware::from_fn(security_headers))
}
