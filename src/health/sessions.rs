//! Checks of sessions: connection slots, long queries, idle transactions,
//! lock waits. Session checks look at the current database only: that is
//! where the managed tables live, and other databases' sessions neither hold
//! their locks nor their vacuum horizon.

use serde_json::json;
use tokio_postgres::Client;

use super::{plural, seconds, CheckResult, HealthError, HealthThresholds, Status, MAX_LISTED};
use crate::db::DbError;

pub async fn connections(
    client: &Client,
    t: &HealthThresholds,
) -> Result<CheckResult, HealthError> {
    let r = client
        .query_one(include_str!("connections.sql"), &[])
        .await
        .map_err(DbError::query("counting connections"))?;
    let (used, max, superuser, reserved): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    let usable = (max - superuser - reserved).max(1);
    let ratio = used as f64 / usable as f64;
    let status = Status::at_least(ratio, t.connections_warning, t.connections_critical);
    let message = format!(
        "{used} of {usable} usable connections in use ({:.0}%; max_connections {max}, {} reserved)",
        ratio * 100.0,
        superuser + reserved
    );
    let mut c = CheckResult::new(
        "connections",
        status,
        message,
        json!({"used": used, "usable": usable, "max_connections": max,
               "superuser_reserved_connections": superuser, "reserved_connections": reserved,
               "ratio": ratio, "warning": t.connections_warning, "critical": t.connections_critical}),
    );
    if status != Status::Ok {
        c = c.fix("use a connection pooler (e.g. PgBouncer) or raise max_connections; see idle_in_transaction for sessions to end");
    }
    Ok(c)
}

/// One session a check lists.
struct Session {
    pid: i32,
    seconds: f64,
    query: Option<String>,
}

fn grade(sessions: &[Session], warning: f64, critical: f64) -> Status {
    sessions
        .iter()
        .map(|s| Status::at_least(s.seconds, warning, critical))
        .max()
        .unwrap_or(Status::Ok)
}

fn pids(sessions: &[Session]) -> String {
    let mut shown: Vec<String> = sessions.iter().take(5).map(|s| s.pid.to_string()).collect();
    if sessions.len() > 5 {
        shown.push("…".into());
    }
    shown.join(", ")
}

pub async fn long_running_queries(
    client: &Client,
    t: &HealthThresholds,
) -> Result<CheckResult, HealthError> {
    let rows = client
        .query(
            include_str!("long_queries.sql"),
            &[&t.long_query_warning_seconds],
        )
        .await
        .map_err(DbError::query("listing long-running queries"))?;
    let sessions: Vec<Session> = rows
        .iter()
        .map(|r| Session {
            pid: r.get("pid"),
            seconds: r.get("seconds"),
            query: r.get("query"),
        })
        .collect();
    let status = grade(
        &sessions,
        t.long_query_warning_seconds,
        t.long_query_critical_seconds,
    );
    let evidence = json!({
        "count": sessions.len(),
        "warning_seconds": t.long_query_warning_seconds,
        "critical_seconds": t.long_query_critical_seconds,
        "queries": rows.iter().take(MAX_LISTED).map(|r| json!({
            "pid": r.get::<_, i32>("pid"),
            "user": r.get::<_, Option<String>>("usename"),
            "seconds": r.get::<_, f64>("seconds"),
            "query": r.get::<_, Option<String>>("query"),
        })).collect::<Vec<_>>(),
    });
    let Some(first) = sessions.first() else {
        let message = format!(
            "no query running longer than {}",
            seconds(t.long_query_warning_seconds)
        );
        return Ok(CheckResult::new(
            "long_running_queries",
            Status::Ok,
            message,
            evidence,
        ));
    };
    let message = format!(
        "{} running longer than {} (pid {}); longest {}: {}",
        plural(sessions.len(), "query", "queries"),
        seconds(t.long_query_warning_seconds),
        pids(&sessions),
        seconds(first.seconds),
        first.query.as_deref().unwrap_or("?")
    );
    Ok(
        CheckResult::new("long_running_queries", status, message, evidence)
            .fix(format!("SELECT pg_cancel_backend({})", first.pid)),
    )
}

pub async fn idle_in_transaction(
    client: &Client,
    t: &HealthThresholds,
) -> Result<CheckResult, HealthError> {
    let rows = client
        .query(
            include_str!("idle_in_transaction.sql"),
            &[&t.idle_in_transaction_warning_seconds],
        )
        .await
        .map_err(DbError::query("listing idle transactions"))?;
    let sessions: Vec<Session> = rows
        .iter()
        .map(|r| Session {
            pid: r.get("pid"),
            seconds: r.get("seconds"),
            query: r.get("last_query"),
        })
        .collect();
    let status = grade(
        &sessions,
        t.idle_in_transaction_warning_seconds,
        t.idle_in_transaction_critical_seconds,
    );
    let evidence = json!({
        "count": sessions.len(),
        "warning_seconds": t.idle_in_transaction_warning_seconds,
        "critical_seconds": t.idle_in_transaction_critical_seconds,
        "sessions": rows.iter().take(MAX_LISTED).map(|r| json!({
            "pid": r.get::<_, i32>("pid"),
            "user": r.get::<_, Option<String>>("usename"),
            "state": r.get::<_, Option<String>>("state"),
            "idle_seconds": r.get::<_, f64>("seconds"),
            "transaction_seconds": r.get::<_, Option<f64>>("transaction_seconds"),
            "last_query": r.get::<_, Option<String>>("last_query"),
        })).collect::<Vec<_>>(),
    });
    let Some(first) = sessions.first() else {
        let message = format!(
            "no session idle in a transaction for {} or more",
            seconds(t.idle_in_transaction_warning_seconds)
        );
        return Ok(CheckResult::new(
            "idle_in_transaction",
            Status::Ok,
            message,
            evidence,
        ));
    };
    // Idle transactions hold their locks and pin the vacuum horizon.
    let message = format!(
        "{} idle in a transaction (pid {}); longest idle {}, last query: {}",
        plural(sessions.len(), "session", "sessions"),
        pids(&sessions),
        seconds(first.seconds),
        first.query.as_deref().unwrap_or("?")
    );
    Ok(
        CheckResult::new("idle_in_transaction", status, message, evidence).fix(format!(
            "SELECT pg_terminate_backend({}); and set idle_in_transaction_session_timeout",
            first.pid
        )),
    )
}

pub async fn lock_waits(client: &Client, t: &HealthThresholds) -> Result<CheckResult, HealthError> {
    let rows = client
        .query(
            include_str!("lock_waits.sql"),
            &[&t.lock_wait_warning_seconds],
        )
        .await
        .map_err(DbError::query("listing lock waits"))?;
    let sessions: Vec<Session> = rows
        .iter()
        .map(|r| Session {
            pid: r.get("pid"),
            seconds: r.get("seconds"),
            query: r.get("query"),
        })
        .collect();
    let status = grade(
        &sessions,
        t.lock_wait_warning_seconds,
        t.lock_wait_critical_seconds,
    );
    let blockers_of = |r: &tokio_postgres::Row| r.get::<_, Vec<i32>>("blocked_by");
    let evidence = json!({
        "count": sessions.len(),
        "warning_seconds": t.lock_wait_warning_seconds,
        "critical_seconds": t.lock_wait_critical_seconds,
        "waiters": rows.iter().take(MAX_LISTED).map(|r| json!({
            "pid": r.get::<_, i32>("pid"),
            "blocked_by": blockers_of(r),
            "waiting_seconds": r.get::<_, f64>("seconds"),
            "relation": r.get::<_, Option<String>>("relation"),
            "query": r.get::<_, Option<String>>("query"),
        })).collect::<Vec<_>>(),
    });
    let Some(first) = rows.first() else {
        let message = format!(
            "no session waiting on a lock for {} or more",
            seconds(t.lock_wait_warning_seconds)
        );
        return Ok(CheckResult::new(
            "lock_waits",
            Status::Ok,
            message,
            evidence,
        ));
    };
    // A blocker that is not itself waiting is where the queue starts.
    let waiting: Vec<i32> = sessions.iter().map(|s| s.pid).collect();
    let mut roots: Vec<i32> = rows
        .iter()
        .flat_map(blockers_of)
        .filter(|pid| !waiting.contains(pid))
        .collect();
    roots.sort_unstable();
    roots.dedup();
    let blocker_list = |pids: &[i32]| {
        pids.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let message = format!(
        "{} waiting on a lock (waiter pid {} blocked by pid {}); longest wait {}: {}",
        plural(sessions.len(), "session", "sessions"),
        pids(&sessions),
        blocker_list(&blockers_of(first)),
        seconds(sessions[0].seconds),
        sessions[0].query.as_deref().unwrap_or("?")
    );
    let mut c = CheckResult::new("lock_waits", status, message, evidence);
    if let Some(root) = roots.first() {
        c = c.fix(format!(
            "SELECT pg_terminate_backend({root}); -- blocking pid(s): {}",
            blocker_list(&roots)
        ));
    }
    Ok(c)
}
