//! The session rules of every convert phase: bounded lock and statement
//! waits, one process per conversion (a bounded wait for the lock), lock
//! timeouts reported with the sessions that hold the locks, and the short
//! retried transactions of cutover, rollback and cleanup.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::state::Names;
use super::ConvertError;
use crate::config::TableSpec;
use crate::db::{self, DbError, LockPolicy, QualifiedName, Statement};

/// How long a read may wait for a relation lock: long enough to ride out a
/// brief DDL, short enough that nothing hangs behind an ACCESS EXCLUSIVE
/// holder. A waiting read does not stall writers (it conflicts only with
/// ACCESS EXCLUSIVE), so it can be longer than the DDL lock_timeout.
pub(super) const READ_LOCK_TIMEOUT: &str = "5s";
/// Catalog reads and bookkeeping statements.
const CATALOG_STATEMENT_TIMEOUT: &str = "60s";
/// Data statements (a backfill batch, a verify scan, an index build) set
/// this locally instead.
pub(super) const DATA_STATEMENT_TIMEOUT: &str = "6h";
/// How long a phase waits for another process's conversion lock. A killed
/// process's backend keeps the lock until it notices its client is gone
/// (within `client_connection_check_interval`) or its statement ends.
const CONVERSION_LOCK_WAIT: Duration = Duration::from_secs(60);
const LOCK_POLL: Duration = Duration::from_millis(250);

/// Puts the session's bounds in place. Called at the start of each phase and
/// after helpers that `RESET lock_timeout`.
pub async fn bound(client: &Client) -> Result<(), ConvertError> {
    client
        .batch_execute(&format!(
            "SET lock_timeout = '{READ_LOCK_TIMEOUT}'; SET statement_timeout = '{CATALOG_STATEMENT_TIMEOUT}';
             SET client_connection_check_interval = '1s'"
        ))
        .await
        .map_err(DbError::query("setting the session's timeouts"))?;
    Ok(())
}

/// The session holding strata's advisory lock `name`, for messages; `None`
/// when it let go between our try and this look.
async fn advisory_holder(client: &Client, name: &str) -> Result<Option<String>, ConvertError> {
    let row = client
        .query_opt(
            "SELECT l.pid, coalesce(a.state, '?'), coalesce(left(a.query, 200), '?')
               FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
                AND ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended('strata:' || $1, 0)
              LIMIT 1",
            &[&name],
        )
        .await
        .map_err(DbError::query("finding the holder of the conversion lock"))?;
    Ok(row.map(|r| {
        format!(
            "pid {} ({}: {})",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2)
        )
    }))
}

/// Takes the session advisory lock of the conversion: one process at a
/// time. Waits (bounded, saying so) for a holder to go away, terminating
/// nothing: after `kill -9` the dead process's backend lets go by itself.
async fn lock(client: &Client, table: &QualifiedName) -> Result<String, ConvertError> {
    bound(client).await?;
    let name = format!("convert:{}", table.display_unquoted());
    let deadline = Instant::now() + CONVERSION_LOCK_WAIT;
    let mut told = false;
    loop {
        if db::try_advisory_lock(client, &name).await? {
            return Ok(name);
        }
        let holder = advisory_holder(client, &name).await?;
        if Instant::now() >= deadline {
            return Err(ConvertError::Busy(format!(
                "{} (still held after {} s by {})",
                table.display_unquoted(),
                CONVERSION_LOCK_WAIT.as_secs(),
                holder
                    .as_deref()
                    .unwrap_or("a session that let go meanwhile")
            )));
        }
        // Say so once the holder is known (it may have let go between the
        // try and the look, and then the next try takes the lock).
        if let (false, Some(holder)) = (told, holder) {
            tracing::warn!(
                "waiting up to {} s for the conversion lock of {}, held by {holder}",
                CONVERSION_LOCK_WAIT.as_secs(),
                table.display_unquoted()
            );
            told = true;
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}

/// Runs `work` under the conversion lock, then releases it and records an
/// error (if any) in the row, so `status` shows why the last attempt stopped.
pub(super) async fn locked<T>(
    client: &mut Client,
    spec: &TableSpec,
    work: impl AsyncFnOnce(&mut Client) -> Result<T, ConvertError>,
) -> Result<T, ConvertError> {
    let table = &spec.name;
    let name = lock(client, table).await?;
    let mut out = work(client).await;
    if let Err(e) = &out {
        if e.is_lock_timeout() && !matches!(e, ConvertError::Locked { .. }) {
            let blockers = blockers(client, spec).await;
            out = Err(ConvertError::Locked {
                what: e.to_string(),
                blockers,
            });
        }
    }
    if let Err(e) = &out {
        if !matches!(
            e,
            ConvertError::Busy(_) | ConvertError::NotStarted(_) | ConvertError::NotMigrated
        ) {
            let _ = client
                .execute(
                    "UPDATE strata.conversions SET last_error = $3, updated_at = now()
                      WHERE schema_name = $1 AND table_name = $2 AND finished_at IS NULL",
                    &[&table.schema.as_str(), &table.name.as_str(), &e.to_string()],
                )
                .await;
        }
    }
    let _ = db::advisory_unlock(client, &name).await;
    out
}

pub(super) fn is_lock_error(e: &DbError) -> bool {
    matches!(e, DbError::LockTimeout { .. })
        || matches!(e, DbError::Query { source, .. } if source.code() == Some(&SqlState::LOCK_NOT_AVAILABLE))
}

/// Who holds locks on the conversion's tables (either name, any partition):
/// pid, mode, relation, application, transaction age and query.
pub(super) async fn blockers(client: &Client, spec: &TableSpec) -> String {
    let Ok(names) = Names::new(spec, 0) else {
        return "unknown sessions".into();
    };
    let tables: Vec<String> = [&names.table, &names.new, &names.old]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let rows = client
        .query(
            "WITH rel AS (SELECT to_regclass(t) AS oid FROM unnest($1::text[]) t),
                  fam AS (SELECT oid FROM rel WHERE oid IS NOT NULL
                          UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN rel ON i.inhparent = rel.oid)
             SELECT DISTINCT l.pid, l.mode, l.relation::regclass::text, coalesce(a.application_name, ''),
                    coalesce(extract(epoch FROM now() - a.xact_start), 0)::int8, coalesce(left(a.query, 200), '')
               FROM pg_catalog.pg_locks l JOIN fam ON l.relation = fam.oid
               LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid()
                AND l.mode IN ('AccessExclusiveLock', 'ExclusiveLock', 'ShareRowExclusiveLock', 'ShareLock')
              ORDER BY 1, 3 LIMIT 10",
            &[&tables],
        )
        .await;
    match rows {
        Ok(rows) if !rows.is_empty() => rows
            .iter()
            .map(|r| {
                format!(
                    "pid {} holds {} on {} (application {:?}, transaction open {} s, query: {})",
                    r.get::<_, i32>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3),
                    r.get::<_, i64>(4),
                    r.get::<_, String>(5)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Ok(_) => "no session holds a conflicting lock any more (it was released meanwhile)".into(),
        Err(e) => format!("(could not list the lock holders: {e})"),
    }
}

pub(super) use crate::db::run_statements;

/// One lock-taking transaction under the lock policy (short lock_timeout,
/// retried only on SQLSTATE 55P03): `pre` outside it, then BEGIN,
/// SET LOCAL lock_timeout, `body`, `inside` (checks and bookkeeping with
/// bind parameters), COMMIT. Any failure rolls the attempt back whole.
pub(super) async fn swap<F>(
    client: &Client,
    policy: &LockPolicy,
    what: &str,
    pre: &[Statement],
    body: &[Statement],
    inside: F,
) -> Result<(), ConvertError>
where
    F: AsyncFn(&Client) -> Result<(), ConvertError>,
{
    let inside = &inside;
    let outcome = policy
        .run(what, || async move {
            match attempt(client, policy, pre, body, inside).await {
                Err(ConvertError::Db(e)) if is_lock_error(&e) => Err(e),
                other => Ok(other),
            }
        })
        .await;
    match outcome {
        Ok(inner) => inner,
        Err(e) => Err(e.into()),
    }
}

async fn attempt<F>(
    client: &Client,
    policy: &LockPolicy,
    pre: &[Statement],
    body: &[Statement],
    inside: &F,
) -> Result<(), ConvertError>
where
    F: AsyncFn(&Client) -> Result<(), ConvertError>,
{
    run_statements(client, pre).await?;
    run_statements(
        client,
        &[Statement::Begin, Statement::Sql(policy.set_sql(true))],
    )
    .await?;
    let out = async {
        run_statements(client, body).await?;
        inside(client).await?;
        run_statements(client, &[Statement::Commit]).await?;
        Ok(())
    }
    .await;
    if out.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    out
}
