//! Phase 6: drops the triggers, functions and the old table, after a full
//! re-verification (the drop cannot be undone). No VACUUM FULL: dropping
//! the old table returns its space.

use tokio_postgres::Client;

use super::session::{locked, run_statements, swap};
use super::sql;
use super::state::{latest, require, wrong, Conversion, Names, Phase};
use super::verify::{full_compare, pair, precheck, tail_check, trigger_check};
use super::ConvertError;
use crate::config::{Config, TableSpec};
use crate::db::{DbError, Statement};

pub async fn cleanup(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    confirmed: bool,
) -> Result<Conversion, ConvertError> {
    locked(client, spec, async |client| {
        let conv = require(client, spec).await?;
        if conv.phase != Phase::CutOver {
            return Err(wrong(&conv, "cleanup", "phase cut_over"));
        }
        let names = Names::new(spec, conv.id)?;
        if !confirmed {
            return Err(ConvertError::Unconfirmed(names.old.display_unquoted()));
        }
        let tables = pair(&names, conv.phase);
        let (_, max_id) = full_compare(client, tables.0, tables.1, &names.id).await?;
        let (cols, seen) = precheck(client, tables, &names.table, &names.id, max_id).await?;
        let ddl = vec![
            sql::drop_trigger(&names.table),
            Statement::Sql(format!("DROP TABLE {}", names.old)),
            Statement::Sql(format!("DROP FUNCTION IF EXISTS {}()", names.forward)),
            Statement::Sql(format!("DROP FUNCTION IF EXISTS {}()", names.reverse)),
        ];
        let pre = [sql::cancel_autovacuum(&[&names.table, &names.old])];
        let lock = [Statement::Sql(format!(
            "LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE",
            names.table, names.old
        ))];
        let policy = &config.maintenance.lock;
        swap(client, policy, "cleanup", &pre, &lock, async |c: &Client| {
            trigger_check(c, &names.table).await?;
            tail_check(c, tables, &cols, &names.id, seen).await?;
            run_statements(c, &ddl).await?;
            c.execute(
                "UPDATE strata.conversions SET phase = $2, finished_at = now(), updated_at = now(), last_error = NULL,
                        timings = timings || jsonb_build_object($2::text, now()) WHERE id = $1",
                &[&conv.id, &Phase::Cleaned.as_str()],
            )
            .await
            .map_err(DbError::query("recording the cleanup"))?;
            Ok(())
        })
        .await?;
        latest(client, &spec.name)
            .await?
            .ok_or_else(|| ConvertError::NotStarted(spec.name.display_unquoted()))
    })
    .await
}
