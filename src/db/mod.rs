//! Connections, lock-safe DDL retries and advisory locks: the one place every
//! capability module reaches PostgreSQL through.

mod blockers;
mod ident;
mod retry;
mod sql;
pub mod tls;

pub use blockers::{blockers, describe as describe_blockers, Blocker};
pub use ident::{literal, Ident, IdentError, QualifiedName, MAX_IDENT_BYTES};
pub use retry::{is_lock_timeout, LockPolicy};
pub use sql::{run_statements, DollarQuoted, Statement};

use tokio_postgres::Client;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to {target}: {}", server_message(source))]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{context}: {}", server_message(source))]
    Query {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Ident(#[from] IdentError),
    /// A bad `sslmode` or `sslrootcert`: the user's input, not the server.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{what} could not get its lock within {attempts} attempts of {timeout_ms} ms each: {detail}")]
    LockTimeout {
        what: String,
        attempts: u32,
        timeout_ms: u64,
        detail: String,
    },
    /// A bounded wait ran out and we know who was in the way.
    #[error(
        "{what} gave up waiting for a lock after {waited_ms} ms: {}",
        describe_blockers(holders)
    )]
    Blocked {
        what: String,
        waited_ms: u64,
        holders: Vec<Blocker>,
    },
}

impl DbError {
    pub fn query(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        let context = context.into();
        move |source| DbError::Query { context, source }
    }

    /// The SQLSTATE of the underlying server error, if there is one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            DbError::Connect { source, .. } | DbError::Query { source, .. } => source.code(),
            DbError::LockTimeout { .. } | DbError::Blocked { .. } => {
                Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
            }
            DbError::Ident(_) | DbError::Tls(_) => None,
        }
    }
}

/// The server's own words for an error (message, detail, hint), which
/// tokio-postgres's `Display` leaves out ("db error").
pub fn server_message(e: &tokio_postgres::Error) -> String {
    let Some(d) = e.as_db_error() else {
        return tls::describe_failure(e).unwrap_or_else(|| e.to_string());
    };
    let mut s = d.message().to_string();
    if let Some(detail) = d.detail() {
        s.push_str(&format!(" ({detail})"));
    }
    if let Some(hint) = d.hint() {
        s.push_str(&format!("; hint: {hint}"));
    }
    s
}

/// Removes the password from a connection string so it can be shown or
/// logged: the user-info password and a `password=` query parameter of a
/// URL, and the `password` key of the `key=value` form (quoted or not).
/// A `key=value` string that does not parse is shown only if it mentions
/// no password at all.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_key_values(url).unwrap_or_else(|| {
            if url.to_ascii_lowercase().contains("password") {
                "(a connection string with a password; not shown)".to_string()
            } else {
                url.to_string()
            }
        });
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => rest.to_string(),
        },
        None => rest.to_string(),
    };
    let Some(query) = query else {
        return format!("{scheme}://{rest}");
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{scheme}://{rest}?{}", params.join("&"))
}

/// `key=value` pairs with the password's value replaced. `None` when the
/// text does not parse as pairs.
fn redact_key_values(s: &str) -> Option<String> {
    let pairs = key_value_pairs(s)?;
    let shown: Vec<String> = pairs
        .into_iter()
        .map(|(key, value)| {
            if key == "password" {
                "password=***".to_string()
            } else {
                format!("{key}={value}")
            }
        })
        .collect();
    Some(shown.join(" "))
}

/// The pairs of a `key=value` connection string (libpq's syntax: values
/// bare or in single quotes, backslash escapes), each value as written
/// (quotes and escapes kept). `None` when the text does not parse as pairs.
fn key_value_pairs(s: &str) -> Option<Vec<(&str, &str)>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i == b.len() {
            return Some(out);
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[key_start..i];
        i = skip_ws(i);
        if b.get(i) != Some(&b'=') || key.is_empty() {
            return None;
        }
        i = skip_ws(i + 1);
        let value_start = i;
        if b.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\\') => i += 2,
                    Some(b'\'') => break,
                    Some(_) => i += 1,
                }
            }
            i += 1;
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
        }
        out.push((key, s.get(value_start..i.min(b.len()))?));
    }
}

/// `lock_timeout` of every session strata opens, unless the operation sets
/// its own: no read and no statement waits behind a lock for longer.
pub const SESSION_LOCK_TIMEOUT_MS: u64 = 5_000;
/// `statement_timeout` of every session strata opens: catalog and stats
/// reads end; long work (VACUUM, index builds, copies) sets its own.
pub const SESSION_STATEMENT_TIMEOUT_MS: u64 = 120_000;

/// Adds strata's session defaults to a connection config: tagged
/// `application_name=strata` so operators can see (and `strata health` can
/// exclude) strata's own sessions, and bounded waits. Settings the user put
/// in the URL's `options` come after ours and win.
pub fn session_defaults(config: &mut tokio_postgres::Config) {
    if config.get_application_name().is_none() {
        config.application_name("strata");
    }
    let ours = format!(
        "-c lock_timeout={SESSION_LOCK_TIMEOUT_MS} -c statement_timeout={SESSION_STATEMENT_TIMEOUT_MS} \
         -c idle_in_transaction_session_timeout=600000"
    );
    let options = match config.get_options() {
        Some(theirs) if !theirs.is_empty() => format!("{ours} {theirs}"),
        _ => ours,
    };
    config.options(&options);
}

/// Opens one connection and drives it on the runtime, with
/// [`session_defaults`].
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let (mut config, tls) = tls::parse(url)?;
    let ours = config.get_application_name().is_none();
    session_defaults(&mut config);
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|source| DbError::Connect {
            target: redact_url(url),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection closed with an error");
        }
    });
    if ours {
        crate::stats::untrack_own_statements(&client).await;
    }
    Ok(client)
}

/// The advisory-lock key strata uses for `name` (e.g. `maintain:public.audit_logs`).
///
/// Computed by the server so that every strata process, whatever its version
/// or host, derives the same 64-bit key.
const ADVISORY_KEY_SQL: &str = "hashtextextended('strata:' || $1, 0)";

/// Tries to take a session-level advisory lock without waiting.
pub async fn try_advisory_lock(client: &Client, name: &str) -> Result<bool, DbError> {
    let sql = format!("SELECT pg_try_advisory_lock({ADVISORY_KEY_SQL})");
    let row = client
        .query_one(&sql, &[&name])
        .await
        .map_err(DbError::query(format!("taking advisory lock {name}")))?;
    Ok(row.get(0))
}

/// Waits for a session-level advisory lock.
pub async fn advisory_lock(client: &Client, name: &str) -> Result<(), DbError> {
    let sql = format!("SELECT pg_advisory_lock({ADVISORY_KEY_SQL})");
    client
        .execute(&sql, &[&name])
        .await
        .map_err(DbError::query(format!("waiting for advisory lock {name}")))?;
    Ok(())
}

pub async fn advisory_unlock(client: &Client, name: &str) -> Result<(), DbError> {
    let sql = format!("SELECT pg_advisory_unlock({ADVISORY_KEY_SQL})");
    client
        .execute(&sql, &[&name])
        .await
        .map_err(DbError::query(format!("releasing advisory lock {name}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgresql://postgres:secret@127.0.0.1:5432/strata"),
            "postgresql://postgres:***@127.0.0.1:5432/strata"
        );
        assert_eq!(redact_url("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(redact_url("host=/tmp dbname=x"), "host=/tmp dbname=x");
    }

    #[test]
    fn passwords_are_redacted_in_every_form() {
        let cases = [
            (
                "host=h password=secret dbname=x",
                "host=h password=*** dbname=x",
            ),
            (
                "host=h password = 'se cret\\'s' user=u",
                "host=h password=*** user=u",
            ),
            ("password='' host=h", "password=*** host=h"),
            (
                "postgresql://u@h/db?sslmode=require&password=secret",
                "postgresql://u@h/db?sslmode=require&password=***",
            ),
            (
                "postgres://u:secret@h:5/db?password=other",
                "postgres://u:***@h:5/db?password=***",
            ),
        ];
        for (url, shown) in cases {
            let r = redact_url(url);
            assert_eq!(r, shown);
            assert!(!r.contains("secret") && !r.contains("cret"), "{r}");
        }
        // Unparseable but mentioning a password: nothing of it is shown.
        let r = redact_url("host=h password='unterminated secret");
        assert!(!r.contains("secret"), "{r}");
    }
}
