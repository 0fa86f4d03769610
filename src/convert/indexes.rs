//! Phase 3: strata's index set on the new table, built online per partition
//! (the backfill copied into partitions carrying only the primary key).

use tokio_postgres::Client;

use super::session::{self, locked, DATA_STATEMENT_TIMEOUT};
use super::state::{require, set_phase, wrong, Conversion, Names, Phase};
use super::ConvertError;
use crate::config::{Config, TableSpec};
use crate::db::DbError;

/// Builds the missing indexes. A step that fails for any reason but a lock
/// timeout is [`ConvertError::IndexBuildFailed`]; a lock timeout (after the
/// policy's retries) is reported as one, with the sessions holding locks.
pub async fn build_indexes(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    mut progress: impl FnMut(&crate::index::IndexStepResult),
) -> Result<Conversion, ConvertError> {
    locked(client, spec, async |client| {
        let conv = require(client, spec).await?;
        if conv.phase != Phase::Backfilled {
            return Err(wrong(&conv, "building indexes", "phase backfilled"));
        }
        let names = Names::new(spec, conv.id)?;
        let new_spec = names.new_spec(spec, spec.start);
        let plan = crate::index::plan_now(client, &new_spec).await?;
        // An index build on a big partition is a long data statement.
        client
            .batch_execute(&format!(
                "SET statement_timeout = '{DATA_STATEMENT_TIMEOUT}'"
            ))
            .await
            .map_err(DbError::query("setting the build's statement_timeout"))?;
        let results = crate::index::apply(
            client,
            &new_spec,
            &plan.steps,
            &config.maintenance.lock,
            |_, r| progress(r),
        )
        .await;
        session::bound(client).await?;
        if let Some(failed) = results?.iter().find(|r| !r.ok) {
            let detail = failed.error.clone().unwrap_or_default();
            let step = crate::index::describe(&failed.step);
            // The index executor keeps only the text of a step's error; its
            // lock policy produces exactly this kind after exhausting retries.
            if detail.contains("could not get its lock within") {
                return Err(ConvertError::Locked {
                    what: format!("{step}: {detail}"),
                    blockers: session::blockers(client, spec).await,
                });
            }
            return Err(ConvertError::IndexBuildFailed {
                table: names.new.display_unquoted(),
                step,
                detail,
            });
        }
        set_phase(client, conv.id, Phase::Indexed).await?;
        require(client, spec).await
    })
    .await
}
