//! Phase 1: checks, the new table with its partitions, the mirror trigger.

use chrono::Utc;
use tokio_postgres::Client;

use super::backfill::BackfillOptions;
use super::preconditions::{self, Facts};
use super::session::{self, locked};
use super::sql::{self, Columns};
use super::state::{active, lock_key, require, Conversion, Names, Phase, BUCKET_ROWS};
use super::ConvertError;
use crate::config::{Config, TableSpec};
use crate::db::{DbError, Statement};
use crate::index::fit_name;
use crate::partition::{self, period};

/// What this start has made so far: a failed start removes exactly that,
/// never an object it found.
#[derive(Default)]
struct Made {
    table: bool,
    function: bool,
    trigger: bool,
}

/// Checks the preconditions, creates the partitioned copy and installs the
/// mirror trigger. Refuses if a table with the new table's name exists.
pub async fn start(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    opts: &BackfillOptions,
) -> Result<Conversion, ConvertError> {
    locked(client, spec, async |client| {
        start_locked(client, config, spec, opts).await
    })
    .await
}

async fn start_locked(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    opts: &BackfillOptions,
) -> Result<Conversion, ConvertError> {
    if let Some(c) = active(client, &spec.name).await? {
        if c.phase != Phase::Starting {
            return Err(ConvertError::AlreadyStarted(c.table, c.phase));
        }
        discard_interrupted(client, spec, &c).await?;
    }
    let facts = preconditions::check(client, spec).await?;
    if !facts.problems.is_empty() {
        return Err(ConvertError::Precondition {
            table: spec.name.display_unquoted(),
            problems: facts
                .problems
                .iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    for w in &facts.warnings {
        tracing::warn!("{w}");
    }
    let probe = Names::new(spec, 0)?;
    if exists(client, &probe.new).await? {
        return Err(ConvertError::NewTableExists(probe.new.display_unquoted()));
    }
    let id: i64 = client
        .query_one(
            "INSERT INTO strata.conversions (schema_name, table_name, phase, rows_total_estimate, batch_rows, timings)
             VALUES ($1, $2, $3, $4, $5, jsonb_build_object($3::text, now())) RETURNING id",
            &[
                &spec.name.schema.as_str(),
                &spec.name.name.as_str(),
                &Phase::Starting.as_str(),
                &facts.estimated_rows,
                &opts.batch_rows,
            ],
        )
        .await
        .map_err(DbError::query("recording the conversion"))?
        .get(0);
    let names = Names::new(spec, id)?;
    let mut made = Made::default();
    if let Err(e) = create_all(client, config, spec, &names, &facts, id, &mut made).await {
        undo(client, &names, &made).await;
        let _ = delete_row(client, id).await;
        return Err(e);
    }
    require(client, spec).await
}

/// Removes an interrupted start's objects and row. We hold the conversion
/// lock, so the start that wrote the row is dead.
async fn discard_interrupted(
    client: &Client,
    spec: &TableSpec,
    c: &Conversion,
) -> Result<(), ConvertError> {
    tracing::warn!("discarding the interrupted start of conversion {}", c.id);
    let names = Names::new(spec, c.id)?;
    let made = Made {
        table: c.new_table.is_some(),
        function: true,
        trigger: our_trigger(client, &names).await?,
    };
    undo(client, &names, &made).await;
    delete_row(client, c.id).await
}

async fn exists(client: &Client, t: &crate::db::QualifiedName) -> Result<bool, ConvertError> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t.to_string()])
        .await
        .map_err(DbError::query("looking for the new table's name"))?
        .get(0))
}

/// Whether the mirror trigger on the table is this conversion's.
async fn our_trigger(client: &Client, names: &Names) -> Result<bool, ConvertError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = to_regclass($1)
                              AND tgname = $2 AND tgfoid = to_regproc($3))",
            &[
                &names.table.to_string(),
                &sql::TRIGGER,
                &names.forward.to_string(),
            ],
        )
        .await
        .map_err(DbError::query("looking for the mirror trigger"))?
        .get(0))
}

async fn delete_row(client: &Client, id: i64) -> Result<(), ConvertError> {
    client
        .execute("DELETE FROM strata.conversions WHERE id = $1", &[&id])
        .await
        .map_err(DbError::query("removing the failed conversion"))?;
    Ok(())
}

/// Removes what a failed start made (best effort: the error that made it
/// fail is the one to report).
async fn undo(client: &Client, names: &Names, made: &Made) {
    let mut stmts = Vec::new();
    if made.trigger {
        stmts.push(sql::drop_trigger(&names.table));
    }
    if made.table {
        stmts.push(Statement::Sql(format!(
            "DROP TABLE IF EXISTS {}",
            names.new
        )));
    }
    if made.function {
        stmts.push(Statement::Sql(format!(
            "DROP FUNCTION IF EXISTS {}()",
            names.forward
        )));
    }
    for s in stmts {
        if let Err(e) = session::run_statements(client, &[s]).await {
            tracing::warn!("removing what the failed start made: {e}");
        }
    }
}

async fn create_all(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    names: &Names,
    facts: &Facts,
    id: i64,
    made: &mut Made,
) -> Result<(), ConvertError> {
    create_table(client, names, id).await?;
    made.table = true;
    create_partitions(client, config, spec, names, facts).await?;
    let cols = Columns(partition::insertable_columns(client, &names.table).await?);
    let function = sql::forward_function(
        &names.forward,
        &names.new,
        &cols,
        &names.id,
        &names.time,
        lock_key(id),
        BUCKET_ROWS,
    );
    made.function = true;
    session::run_statements(client, &[Statement::Sql(function)]).await?;
    // CREATE TRIGGER takes SHARE ROW EXCLUSIVE on the table, which writers
    // would queue behind: short lock_timeout, retried. Its commit is the
    // moment from which every write is mirrored; the backfill covers every
    // id up to the maximum read right after.
    let policy = &config.maintenance.lock;
    let body = sql::create_trigger(&names.table, &names.forward);
    session::swap(
        client,
        policy,
        "installing the mirror trigger",
        &[],
        &body,
        async |_: &Client| Ok(()),
    )
    .await?;
    made.trigger = true;
    record_started(client, names, facts, id).await
}

/// The new table and, in the same transaction, its name in the row: a row
/// naming a new table is proof that this conversion made it.
async fn create_table(client: &mut Client, names: &Names, id: i64) -> Result<(), ConvertError> {
    let (table, new) = (&names.table, &names.new);
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("creating the partitioned table"))?;
    tx.batch_execute(&format!(
        "CREATE TABLE {new} (LIKE {table} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS \
                             INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ({time});
         ALTER TABLE {new} ADD PRIMARY KEY ({idc}, {time});",
        time = names.time,
        idc = names.id,
    ))
    .await
    .map_err(DbError::query("creating the partitioned table"))?;
    tx.execute(
        "UPDATE strata.conversions SET new_table = $2, updated_at = now() WHERE id = $1",
        &[&id, &new.display_unquoted()],
    )
    .await
    .map_err(DbError::query("recording the new table"))?;
    tx.commit()
        .await
        .map_err(DbError::query("creating the partitioned table"))?;
    Ok(())
}

async fn create_partitions(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    names: &Names,
    facts: &Facts,
) -> Result<(), ConvertError> {
    let start = facts
        .min_time
        .map(|t| period::floor(spec.interval, t).date_naive())
        .unwrap_or(spec.start);
    let new_spec = names.new_spec(spec, start);
    let snap = partition::snapshot(client, &new_spec).await?;
    let plan = partition::plan(&new_spec, Utc::now(), &snap);
    let report =
        partition::apply(client, &new_spec, &plan.steps, &config.maintenance, |_| {}).await;
    // The partition executor resets lock_timeout when it is done.
    session::bound(client).await?;
    let report = report?;
    if report.failed() > 0 {
        return Err(ConvertError::PartitionsFailed {
            table: names.new.display_unquoted(),
            detail: report
                .results
                .iter()
                .filter_map(|r| r.error.clone())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let table = &names.table;
    let default = table.sibling(&fit_name(&format!("{}_default", table.name.as_str())))?;
    session::run_statements(
        client,
        &[Statement::Sql(format!(
            "CREATE TABLE {default} PARTITION OF {} DEFAULT",
            names.new
        ))],
    )
    .await?;
    Ok(())
}

async fn record_started(
    client: &Client,
    names: &Names,
    facts: &Facts,
    id: i64,
) -> Result<(), ConvertError> {
    let until: Option<i64> = client
        .query_one(
            &format!("SELECT max({}) FROM {}", names.id, names.table),
            &[],
        )
        .await
        .map_err(DbError::query("reading the highest id"))?
        .get(0);
    client
        .execute(
            "UPDATE strata.conversions SET phase = $7, new_table = $2, old_table = $3, backfill_until = $4,
                    watermark = $5, bucket_rows = $6, updated_at = now(),
                    timings = timings || jsonb_build_object($7::text, now())
              WHERE id = $1",
            &[
                &id,
                &names.new.display_unquoted(),
                &names.old.display_unquoted(),
                &until.unwrap_or(0),
                &facts.min_id.map(|m| m - 1).unwrap_or(0),
                &BUCKET_ROWS,
                &Phase::Started.as_str(),
            ],
        )
        .await
        .map_err(DbError::query("recording the conversion"))?;
    Ok(())
}
