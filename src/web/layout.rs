//! The page shell every dashboard page shares: skip link, banner with the
//! signed-in token and logout, the navigation landmark, `main`; plus the
//! error and refusal pages.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::AppError;
use crate::db::DbError;
use crate::html;

use super::csrf;
use super::html::Html;
use super::session::Viewer;

/// Bumped with the binary, so cached assets of an older one are not used.
pub const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The navigation's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Partitions,
    Indexes,
    Queries,
    Live,
    Jobs,
    Conversion,
    Events,
    Archives,
    Seals,
    Rollups,
}

impl Nav {
    pub const ALL: [Nav; 11] = [
        Nav::Overview,
        Nav::Partitions,
        Nav::Indexes,
        Nav::Queries,
        Nav::Live,
        Nav::Jobs,
        Nav::Conversion,
        Nav::Events,
        Nav::Archives,
        Nav::Seals,
        Nav::Rollups,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Nav::Overview => "/",
            Nav::Partitions => "/partitions",
            Nav::Indexes => "/indexes",
            Nav::Queries => "/queries",
            Nav::Live => "/live",
            Nav::Jobs => "/jobs",
            Nav::Conversion => "/conversion",
            Nav::Events => "/events",
            Nav::Archives => "/archives",
            Nav::Seals => "/seals",
            Nav::Rollups => "/rollups",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Nav::Overview => "Overview",
            Nav::Partitions => "Partitions",
            Nav::Indexes => "Indexes",
            Nav::Queries => "Queries",
            Nav::Live => "Live",
            Nav::Jobs => "Jobs",
            Nav::Conversion => "Conversion",
            Nav::Events => "Events",
            Nav::Archives => "Archives",
            Nav::Seals => "Seals",
            Nav::Rollups => "Rollups",
        }
    }
}

/// A page that could not be built: its status and what to tell the user.
#[derive(Debug)]
pub struct WebError {
    pub status: u16,
    pub message: String,
}

impl WebError {
    pub fn bad_input(message: impl Into<String>) -> WebError {
        WebError {
            status: 400,
            message: message.into(),
        }
    }

    /// A server-side failure: logged whole, shown as a generic message
    /// (database error text can name hosts and SQL).
    pub fn internal(e: impl std::fmt::Display) -> WebError {
        tracing::error!(error = %e, "dashboard page failed");
        WebError {
            status: 500,
            message: "Something failed on the server; the server log has the detail.".into(),
        }
    }
}

impl From<DbError> for WebError {
    fn from(e: DbError) -> Self {
        WebError::internal(e)
    }
}

impl From<deadpool_postgres::PoolError> for WebError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::error!(error = %e, "no database connection for a dashboard page");
        WebError {
            status: 503,
            message: "The database is not reachable right now; try again shortly.".into(),
        }
    }
}

impl From<AppError> for WebError {
    fn from(e: AppError) -> Self {
        match e {
            // A form names a table: one that does not exist is bad input there.
            AppError::BadRequest { message, .. }
            | AppError::Unprocessable { message, .. }
            | AppError::Missing { message, .. } => WebError::bad_input(message),
            AppError::Conflict(message) => WebError {
                status: 409,
                message,
            },
            AppError::Unavailable(message) => WebError {
                status: 503,
                message,
            },
            AppError::Forbidden(message) => WebError {
                status: 403,
                message,
            },
            other => WebError::internal(other),
        }
    }
}

fn head(out: &mut Html, title: &str) {
    html!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · strata</title>\
         <link rel=\"stylesheet\" href=\"/assets/app.css?v={}\">\
         <script src=\"/assets/app.js?v={}\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>",
        title,
        ASSET_VERSION,
        ASSET_VERSION
    );
}

fn respond(status: u16, body: Html) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body.into_string(),
    )
        .into_response()
}

/// A whole page with the shell around `body`.
pub fn page(viewer: &Viewer, nav: Nav, title: &str, body: &Html, status: u16) -> Response {
    let mut out = Html::new();
    head(&mut out, title);
    let p = &viewer.session.principal;
    html!(
        out,
        "<header class=\"top\"><span class=\"brand\">strata</span>\
         <span class=\"who\">Signed in as <strong>{}</strong> ({})</span>\
         <form method=\"post\" action=\"/logout\" class=\"logout\">",
        p.name,
        p.role
    );
    out.push(&csrf::input(viewer));
    html!(
        out,
        "<button type=\"submit\">Log out</button></form></header>\
         <nav aria-label=\"Dashboard pages\"><ul>"
    );
    for n in Nav::ALL {
        if n == nav {
            html!(
                out,
                "<li><a href=\"{}\" aria-current=\"page\">{}</a></li>",
                n.path(),
                n.label()
            );
        } else {
            html!(out, "<li><a href=\"{}\">{}</a></li>", n.path(), n.label());
        }
    }
    html!(
        out,
        "</ul></nav><main id=\"main\" tabindex=\"-1\"><h1>{}</h1>",
        title
    );
    out.push(body);
    html!(out, "</main></body></html>");
    respond(status, out)
}

/// A page, or the error that stopped it, inside the shell.
pub fn render(viewer: &Viewer, nav: Nav, title: &str, result: Result<Html, WebError>) -> Response {
    match result {
        Ok(body) => page(viewer, nav, title, &body, 200),
        Err(e) => page(viewer, nav, title, &error_box(&e.message), e.status),
    }
}

/// A clear message for something that went wrong or was refused.
pub fn error_box(message: &str) -> Html {
    let mut h = Html::new();
    html!(
        h,
        "<div class=\"error\" role=\"alert\"><h2>Not done</h2><p>{}</p></div>",
        message
    );
    h
}

/// A page without a session (refused, expired): the message and a way back.
pub fn refusal(status: u16, message: &str) -> Response {
    let mut out = Html::new();
    head(&mut out, "Refused");
    html!(
        out,
        "<main id=\"main\" tabindex=\"-1\" class=\"narrow\"><h1>Refused</h1>\
         <div class=\"error\" role=\"alert\"><p>{}</p></div>\
         <p><a href=\"/\">Back to the dashboard</a> · <a href=\"/login\">Log in</a></p></main></body></html>",
        message
    );
    respond(status, out)
}

/// The login form; `message` says why the last attempt failed.
pub fn login(message: Option<&str>, status: u16) -> Response {
    let mut out = Html::new();
    head(&mut out, "Log in");
    html!(
        out,
        "<main id=\"main\" tabindex=\"-1\" class=\"narrow\"><h1>strata dashboard</h1>"
    );
    if let Some(m) = message {
        html!(
            out,
            "<div class=\"error\" role=\"alert\"><p>{}</p></div>",
            m
        );
    }
    html!(
        out,
        "<form method=\"post\" action=\"/login\" class=\"login\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required \
          aria-describedby=\"token-help\">\
         <p id=\"token-help\" class=\"help\">An admin or reader token from <code>strata token create</code>.</p>\
         <button type=\"submit\">Log in</button></form></main></body></html>"
    );
    respond(status, out)
}
