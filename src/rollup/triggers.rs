//! The invalidation triggers on a table and each of its partitions.
//!
//! Statement triggers on the partitioned parent see the rows of every
//! partition through their transition tables, but a write made directly to
//! a partition fires only that partition's own statement triggers; so each
//! partition gets the same set; partitions made later get theirs when the
//! maintain run that made them ends ([`cover_new_partitions`]).
//! Foreign partitions (archives) are read-only and get none.

use tokio_postgres::Client;

use crate::config::TableSpec;
use crate::db::{literal, DbError, Ident, LockPolicy, QualifiedName};

/// (trigger name, event clause) of the set.
const TRIGGERS: &[(&str, &str)] = &[
    (
        "strata_rollup_insert",
        "AFTER INSERT ON {rel} REFERENCING NEW TABLE AS n FOR EACH STATEMENT",
    ),
    (
        "strata_rollup_update",
        "AFTER UPDATE ON {rel} REFERENCING OLD TABLE AS o NEW TABLE AS n FOR EACH STATEMENT",
    ),
    (
        "strata_rollup_delete",
        "AFTER DELETE ON {rel} REFERENCING OLD TABLE AS o FOR EACH STATEMENT",
    ),
    (
        "strata_rollup_truncate",
        "AFTER TRUNCATE ON {rel} FOR EACH STATEMENT",
    ),
];

/// Relations that should carry the set (the parent, its plain partitions)
/// with the names of the triggers each already has.
async fn relations(
    client: &Client,
    table: &QualifiedName,
) -> Result<Vec<(QualifiedName, Vec<String>)>, DbError> {
    let rows = client
        .query(
            "WITH rels AS (
                 SELECT $1::text::regclass AS oid
                 UNION ALL
                 SELECT t.relid FROM pg_catalog.pg_partition_tree($1::text::regclass) t
                  WHERE t.level > 0)
             SELECT n.nspname, c.relname,
                    coalesce((SELECT array_agg(g.tgname::text) FROM pg_catalog.pg_trigger g
                               WHERE g.tgrelid = c.oid AND g.tgname LIKE 'strata_rollup_%'), '{}')
               FROM rels r
               JOIN pg_catalog.pg_class c ON c.oid = r.oid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p')",
            &[&table.to_string()],
        )
        .await
        .map_err(DbError::query(format!(
            "listing the partitions of {}",
            table.display_unquoted()
        )))?;
    rows.iter()
        .map(|r| {
            let name = QualifiedName::new(r.get(0), r.get(1))?;
            Ok((name, r.get::<_, Vec<String>>(2)))
        })
        .collect()
}

/// Creates the missing triggers; returns how many were created.
///
/// `CREATE TRIGGER` takes SHARE ROW EXCLUSIVE on the relation, which
/// queues behind a long transaction and would make writers queue behind
/// it: each one runs alone with the policy's short lock_timeout and is
/// retried with backoff.
pub async fn ensure(
    client: &Client,
    spec: &TableSpec,
    policy: &LockPolicy,
) -> Result<usize, DbError> {
    let args = format!(
        "{}, {}, {}",
        literal(spec.time_column.as_str()),
        literal(spec.name.schema.as_str()),
        literal(spec.name.name.as_str())
    );
    let mut created = 0;
    for (rel, present) in relations(client, &spec.name).await? {
        for (name, clause) in TRIGGERS {
            if present.iter().any(|p| p == name) {
                continue;
            }
            let sql = format!(
                "CREATE TRIGGER {} {} EXECUTE FUNCTION strata.rollup_invalidate({args})",
                Ident::new(*name).expect("static name"),
                clause.replace("{rel}", &rel.to_string()),
            );
            let what = format!("creating {name} on {}", rel.display_unquoted());
            let steps = vec![
                "BEGIN".to_string(),
                policy.set_sql(true),
                sql,
                "COMMIT".to_string(),
            ];
            let steps = &steps;
            policy
                .run(&what, move || {
                    crate::partition::run_statements(client, steps)
                })
                .await?;
            created += 1;
        }
    }
    Ok(created)
}

/// After partitions were made (by strata's executor or by pg_partman): gives
/// them the set if the table has rollups, so a write straight into a new
/// partition invalidates like any other. A table without rollups has no
/// trigger on its parent and is left alone.
pub async fn cover_new_partitions(
    client: &Client,
    spec: &TableSpec,
    policy: &LockPolicy,
) -> Result<usize, DbError> {
    let has_rollups: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                             WHERE tgrelid = $1::text::regclass AND tgname = 'strata_rollup_insert')",
            &[&spec.name.to_string()],
        )
        .await
        .map_err(DbError::query("looking for the rollup triggers"))?
        .get(0);
    if !has_rollups {
        return Ok(0);
    }
    ensure(client, spec, policy).await
}
