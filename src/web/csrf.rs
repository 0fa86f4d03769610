//! CSRF protection of every state-changing request: each form carries the
//! session's random token in a hidden `csrf` field, and a POST whose field
//! is missing or different is refused (403, recorded as a security event)
//! before anything else happens. The session cookie being `SameSite=Strict`
//! is the second line; a cross-origin `Origin` header is refused too.

use axum::http::{header, HeaderMap};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::api::events;
use crate::api::AppState;

use super::html::Html;
use super::layout;
use super::session::Viewer;

/// The hidden field every form carries.
pub const FIELD: &str = "csrf";

#[derive(Deserialize)]
struct Token {
    csrf: Option<String>,
}

/// `<input type="hidden" name="csrf" value="…">` for the viewer's session.
pub fn input(viewer: &Viewer) -> Html {
    let mut h = Html::new();
    crate::html!(
        h,
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        FIELD,
        viewer.session.csrf
    );
    h
}

/// Equal without an early exit, so the time taken says nothing about how
/// much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an `Origin` header, when the browser sent one, is this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !host.is_empty() && origin_host == host
}

/// The form in `body`, once its CSRF token is checked against the session.
pub async fn form<T: DeserializeOwned>(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Response> {
    let token = serde_urlencoded::from_bytes::<Token>(body)
        .ok()
        .and_then(|t| t.csrf);
    let ok = same_origin(headers)
        && token.is_some_and(|t| same(t.as_bytes(), viewer.session.csrf.as_bytes()));
    if !ok {
        let p = &viewer.session.principal;
        state.metrics.refused(events::FORBIDDEN);
        state
            .events
            .refused(
                &viewer.ctx,
                events::FORBIDDEN,
                "dashboard POST without this session's CSRF token",
                p.token_id,
            )
            .await;
        return Err(layout::refusal(
            403,
            "This form is out of date or did not come from this dashboard (CSRF check failed). Reload the page and try again.",
        ));
    }
    serde_urlencoded::from_bytes::<T>(body)
        .map_err(|e| layout::refusal(400, &format!("The form could not be read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_needs_the_whole_token() {
        assert!(same(b"abcd", b"abcd"));
        assert!(!same(b"abcd", b"abce"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h), "no Origin header: nothing to compare");
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h));
    }
}
