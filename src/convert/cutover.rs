//! Phase 5: the swap, in one transaction under a short lock_timeout,
//! retried; writers wait at most one lock_timeout per attempt. Before it
//! commits, the rows written since the verification are compared again.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::preconditions;
use super::session::{locked, run_statements, swap};
use super::sql;
use super::state::{require, wrong, Conversion, Names, Phase};
use super::verify::{full_compare, precheck, tail_check, trigger_check};
use super::ConvertError;
use crate::config::{Config, TableSpec};
use crate::db::{DbError, QualifiedName, Statement};
use crate::index::fit_name;
use crate::partition;

/// Index renames done at cutover, so rollback can undo them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Renames {
    /// (index name before, after) on the old table.
    pub old_indexes: Vec<(String, String)>,
    /// (index name before, after) on the new table.
    pub new_indexes: Vec<(String, String)>,
}

async fn index_names(client: &Client, t: &QualifiedName) -> Result<Vec<String>, ConvertError> {
    Ok(client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = to_regclass($1) ORDER BY 1",
            &[&t.to_string()],
        )
        .await
        .map_err(DbError::query("listing indexes"))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

/// The renames that give the new table's indexes their final names: every
/// index of the new parent named after the temporary table is renamed after
/// the final one; an index of the old table already holding such a name
/// moves aside to `<name>_old`.
async fn plan_renames(client: &Client, names: &Names) -> Result<Renames, ConvertError> {
    let old_names = index_names(client, &names.table).await?;
    let new_names = index_names(client, &names.new).await?;
    let tmp = names.new.name.as_str();
    let fin = names.table.name.as_str();
    let mut r = Renames::default();
    for n in &new_names {
        if let Some(pos) = n.find(tmp) {
            let target = fit_name(&format!("{}{}{}", &n[..pos], fin, &n[pos + tmp.len()..]));
            r.new_indexes.push((n.clone(), target));
        }
    }
    for o in &old_names {
        if r.new_indexes.iter().any(|(_, t)| t == o) {
            r.old_indexes
                .push((o.clone(), fit_name(&format!("{o}_old"))));
        }
    }
    Ok(r)
}

/// The sequence that feeds `id` (it moves with ownership at cutover and
/// rollback, so it is found from whichever table `names.table` is now).
pub(super) async fn id_sequence(
    client: &Client,
    names: &Names,
) -> Result<Option<QualifiedName>, ConvertError> {
    let row = client
        .query_opt(
            "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = pg_catalog.pg_get_serial_sequence($1, $2)::regclass",
            &[&names.table.to_string(), &names.id.as_str()],
        )
        .await
        .map_err(DbError::query("finding the id sequence"))?;
    Ok(match row {
        Some(r) => Some(QualifiedName::new(r.get(0), r.get(1))?),
        None => None,
    })
}

/// The swap's DDL after the tables are locked.
fn cutover_ddl(
    names: &Names,
    renames: &Renames,
    seq: Option<&QualifiedName>,
    cols: &sql::Columns,
    old_key: &str,
) -> Result<Vec<Statement>, ConvertError> {
    let schema = &names.table.schema;
    let mut ddl = vec![
        sql::drop_trigger(&names.table),
        Statement::Sql(format!(
            "ALTER TABLE {} RENAME TO {}",
            names.table, names.old.name
        )),
    ];
    ddl.extend(sql::renames(schema, &renames.old_indexes, false)?);
    ddl.push(Statement::Sql(format!(
        "ALTER TABLE {} RENAME TO {}",
        names.new, names.table.name
    )));
    ddl.extend(sql::renames(schema, &renames.new_indexes, false)?);
    if let Some(seq) = seq {
        // The sequence stays; it now belongs to the new table, so new rows
        // continue it and dropping the old table leaves it alone.
        ddl.push(Statement::Sql(format!(
            "ALTER SEQUENCE {seq} OWNED BY {}.{}",
            names.table, names.id
        )));
    }
    ddl.push(Statement::Sql(sql::reverse_function(
        &names.reverse,
        &names.old,
        cols,
        &names.id,
        old_key,
    )));
    ddl.extend(sql::create_trigger(&names.table, &names.reverse));
    Ok(ddl)
}

/// Swaps the tables: the partitioned one takes the name, the plain one
/// becomes `<table>_old`, mirrored back until cleanup.
pub async fn cutover(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
) -> Result<Conversion, ConvertError> {
    locked(client, spec, async |client| {
        let conv = require(client, spec).await?;
        if !matches!(conv.phase, Phase::Verified | Phase::RolledBack) {
            return Err(wrong(&conv, "cutover", "phase verified (run `strata convert verify`) or rolled_back"));
        }
        let names = Names::new(spec, conv.id)?;
        let tables = (&names.table, &names.new);
        let since = match conv.timings["verified_max_id"].as_i64() {
            Some(m) => m,
            None => full_compare(client, tables.0, tables.1, &names.id).await?.1,
        };
        let (cols, seen) = precheck(client, tables, &names.table, &names.id, since).await?;
        let renames = plan_renames(client, &names).await?;
        let old_key = preconditions::id_key(client, &names.table, &names.id, &names.time).await?;
        let seq = id_sequence(client, &names).await?;
        let ddl = cutover_ddl(&names, &renames, seq.as_ref(), &cols, &old_key)?;
        let record = serde_json::to_value(&renames).expect("renames serialize");
        let pre = [sql::cancel_autovacuum(&[&names.table, &names.new])];
        let lock = [Statement::Sql(format!(
            "LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE",
            names.table, names.new
        ))];
        let policy = &config.maintenance.lock;
        swap(client, policy, "cutover", &pre, &lock, async |c: &Client| {
            // Under the lock nothing writes: what was written since the
            // re-check must match too, or the swap is not made.
            trigger_check(c, &names.table).await?;
            tail_check(c, tables, &cols, &names.id, seen).await?;
            run_statements(c, &ddl).await?;
            c.execute(
                "UPDATE strata.conversions SET phase = $2, cutover_at = now(), updated_at = now(), last_error = NULL,
                        timings = timings || jsonb_build_object($2::text, now(), 'renames', $3::jsonb)
                  WHERE id = $1",
                &[&conv.id, &Phase::CutOver.as_str(), &record],
            )
            .await
            .map_err(DbError::query("recording the cutover"))?;
            Ok(())
        })
        .await?;
        partition::register(client, spec).await?;
        require(client, spec).await
    })
    .await
}
