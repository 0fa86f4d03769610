//! Swaps back after a cutover: the plain table is `table` again, mirrored
//! forward; writes made since the cutover are kept (the reverse mirror).

use tokio_postgres::Client;

use super::cutover::{id_sequence, Renames};
use super::session::{locked, run_statements, swap};
use super::sql;
use super::state::{require, wrong, Conversion, Names, Phase};
use super::ConvertError;
use crate::config::{Config, TableSpec};
use crate::db::{DbError, QualifiedName, Statement};

/// The index renames recorded at cutover. Without them the indexes cannot be
/// given back their names, so an unreadable record is a refusal, not a
/// silent skip.
fn recorded_renames(conv: &Conversion) -> Result<Renames, ConvertError> {
    let unreadable = |detail: String| ConvertError::UnreadableRecord {
        table: conv.table.clone(),
        what: "roll back",
        detail,
    };
    let v = conv
        .timings
        .get("renames")
        .ok_or_else(|| unreadable("timings has no \"renames\"".into()))?;
    serde_json::from_value(v.clone()).map_err(|e| unreadable(format!("timings->'renames': {e}")))
}

/// The swap back's DDL after the tables are locked.
fn rollback_ddl(
    names: &Names,
    renames: &Renames,
    seq: Option<&QualifiedName>,
) -> Result<Vec<Statement>, ConvertError> {
    let schema = &names.table.schema;
    let mut ddl = vec![sql::drop_trigger(&names.table)];
    ddl.extend(sql::renames(schema, &renames.new_indexes, true)?);
    ddl.push(Statement::Sql(format!(
        "ALTER TABLE {} RENAME TO {}",
        names.table, names.new.name
    )));
    ddl.extend(sql::renames(schema, &renames.old_indexes, true)?);
    ddl.push(Statement::Sql(format!(
        "ALTER TABLE {} RENAME TO {}",
        names.old, names.table.name
    )));
    if let Some(seq) = seq {
        ddl.push(Statement::Sql(format!(
            "ALTER SEQUENCE {seq} OWNED BY {}.{}",
            names.table, names.id
        )));
    }
    ddl.extend(sql::create_trigger(&names.table, &names.forward));
    Ok(ddl)
}

/// Swaps back (until cleanup).
pub async fn rollback(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
) -> Result<Conversion, ConvertError> {
    locked(client, spec, async |client| {
        let conv = require(client, spec).await?;
        if conv.phase != Phase::CutOver {
            return Err(wrong(&conv, "rollback", "phase cut_over"));
        }
        let renames = recorded_renames(&conv)?;
        let names = Names::new(spec, conv.id)?;
        let seq = id_sequence(client, &names).await?;
        let ddl = rollback_ddl(&names, &renames, seq.as_ref())?;
        let pre = [sql::cancel_autovacuum(&[&names.table, &names.old])];
        let lock = [Statement::Sql(format!(
            "LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE",
            names.table, names.old
        ))];
        let policy = &config.maintenance.lock;
        swap(
            client,
            policy,
            "rollback",
            &pre,
            &lock,
            async |c: &Client| {
                run_statements(c, &ddl).await?;
                c.execute(
                "UPDATE strata.conversions SET phase = $2, updated_at = now(), last_error = NULL,
                        timings = timings || jsonb_build_object($2::text, now()) WHERE id = $1",
                &[&conv.id, &Phase::RolledBack.as_str()],
            )
            .await
            .map_err(DbError::query("recording the rollback"))?;
                Ok(())
            },
        )
        .await?;
        require(client, spec).await
    })
    .await
}
