//! Who is in the way: the sessions holding locks on a table or its
//! partitions, for the error of anything that gave up waiting. An operator
//! who is told "lock timeout" needs the pid and the query to look at.

use serde::Serialize;
use tokio_postgres::Client;

use super::QualifiedName;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Blocker {
    pub pid: i32,
    pub mode: String,
    pub relation: String,
    pub application: String,
    pub state: String,
    pub transaction_seconds: i64,
    pub query: String,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} holds {} on {} ({}{}, transaction open {} s: {})",
            self.pid,
            self.mode,
            self.relation,
            self.state,
            if self.application.is_empty() {
                String::new()
            } else {
                format!(", application {}", self.application)
            },
            self.transaction_seconds,
            self.query
        )
    }
}

/// Sessions other than ours holding a heavyweight lock that conflicts with
/// reading or changing `table` or one of its partitions (anything stronger
/// than ROW EXCLUSIVE: the modes writers themselves take are not the
/// problem). Empty when the holder went away meanwhile.
pub async fn blockers(client: &Client, table: &QualifiedName) -> Vec<Blocker> {
    let rows = client
        .query(
            "WITH rels AS (
                 SELECT to_regclass($1) AS oid
                 UNION ALL
                 SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = to_regclass($1))
             SELECT l.pid, l.mode, l.relation::regclass::text, coalesce(a.application_name, ''),
                    coalesce(a.state, ''), left(coalesce(a.query, ''), 120),
                    coalesce(extract(epoch FROM now() - a.xact_start), 0)::int8
               FROM pg_catalog.pg_locks l
               JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid()
                AND l.relation IN (SELECT oid FROM rels)
                AND l.mode IN ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock',
                               'ExclusiveLock', 'AccessExclusiveLock')
              ORDER BY a.xact_start, l.pid
              LIMIT 10",
            &[&table.to_string()],
        )
        .await;
    match rows {
        Ok(rows) => rows
            .iter()
            .map(|r| Blocker {
                pid: r.get(0),
                mode: r.get(1),
                relation: r.get(2),
                application: r.get(3),
                state: r.get(4),
                query: r.get(5),
                transaction_seconds: r.get(6),
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "could not list lock holders");
            Vec::new()
        }
    }
}

/// One line naming the blockers, or saying they are gone.
pub fn describe(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "the conflicting lock was released before it could be identified".into();
    }
    blockers
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
