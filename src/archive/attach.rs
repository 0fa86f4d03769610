//! `strata archive attach PERIOD` / `detach PERIOD`: an archived period read
//! in place by PostgreSQL, without restoring it.
//!
//! The period becomes a foreign table (contrib `file_fdw`) whose rows come
//! from a program, `strata archive cat`, run by the server on its own host:
//! it reads the period's Parquet files from the store (checking each file's
//! SHA-256 against the manifest) and prints them as CSV.
//!
//! The issue asked for a foreign *partition* of the table. PostgreSQL
//! refuses that for any partitioned table with a unique index ("cannot
//! attach foreign table ... contains unique indexes"), and strata's tables
//! have a primary key. So the foreign tables live in the `strata` schema,
//! each with a CHECK constraint on the period's bounds, and one view per
//! table, `<table>_with_archive`, is the table `UNION ALL` its attached
//! periods. With `constraint_exclusion = partition` (PostgreSQL's default)
//! the planner drops the branches whose CHECK contradicts the query's time
//! range, the way it prunes partitions, so a query on live months never
//! runs the program. A query that reaches an archived period reads the
//! whole period through the program on every execution: no index, no
//! pushdown.

use std::io::Write;

use serde_json::{json, Value};
use tokio_postgres::Client;

use super::columns::{Column, Kind};
use super::run::{owned, table_dir};
use super::store::Store;
use super::{catalog, manifest, ArchiveError};
use crate::config::{Config, TableSpec};
use crate::db::{literal, DbError, Ident, QualifiedName, Statement};
use crate::ops::{Progress, ProgressFn};
use crate::partition::{self, period};

/// The `file_fdw` server strata's foreign tables use.
const SERVER: &str = "strata_archive";
/// Marks a foreign table as strata's: `strata archive: <table> <period>`.
const MARK: &str = "strata archive: ";

/// The foreign table of one period: `strata.<partition name>_archive`.
fn foreign_name(
    spec: &TableSpec,
    start: chrono::DateTime<chrono::Utc>,
) -> Result<QualifiedName, ArchiveError> {
    let part = period::render_name(&spec.name_template, spec.name.name.as_str(), start);
    QualifiedName::new("strata", &format!("{part}_archive"))
        .map_err(|e| ArchiveError::Failed(e.to_string()))
}

/// `<table>_with_archive`, next to the table.
fn view_name(spec: &TableSpec) -> Result<QualifiedName, ArchiveError> {
    spec.name
        .sibling(&format!("{}_with_archive", spec.name.name.as_str()))
        .map_err(|e| ArchiveError::Failed(e.to_string()))
}

fn mark(spec: &TableSpec, label: &str) -> String {
    format!("{MARK}{} {label}", spec.name)
}

/// What `strata archive cat` prints: the period's rows as CSV in the
/// archive's column order; NULL is an empty unquoted field, every text
/// value is quoted (so an empty string stays one), times are RFC 3339 UTC.
pub async fn cat(
    store_url: &str,
    table: &str,
    period: &str,
    out: &mut (dyn Write + Send),
) -> Result<u64, ArchiveError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use arrow_array::Array;

    let store = Store::open(store_url)?;
    let m = manifest::load(&store, table, period)
        .await?
        .ok_or_else(|| {
            ArchiveError::Precondition(format!(
                "{} is not in {store_url}",
                manifest::manifest_key(table, period)
            ))
        })?;
    let io = |e: std::io::Error| ArchiveError::Failed(format!("writing rows: {e}"));
    let mut rows = 0u64;
    let mut line = Vec::with_capacity(1024);
    super::rows::visit_files(&store, &m, &mut |batch, schema| {
        for row in 0..batch.num_rows() {
            line.clear();
            for (i, c) in schema.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                let a = batch.column(i);
                if a.is_null(row) {
                    continue;
                }
                match c.kind {
                    Kind::Int64 => {
                        let v = a.as_primitive::<Int64Type>().value(row);
                        write!(line, "{v}").map_err(io)?;
                    }
                    Kind::Timestamp => {
                        let v = a.as_primitive::<TimestampMicrosecondType>().value(row);
                        write!(line, "{}", super::columns::PgTime(v)).map_err(io)?;
                    }
                    Kind::Json | Kind::Text => {
                        line.push(b'"');
                        for b in a.as_string::<i32>().value(row).bytes() {
                            if b == b'"' {
                                line.push(b'"');
                            }
                            line.push(b);
                        }
                        line.push(b'"');
                    }
                }
            }
            line.push(b'\n');
            out.write_all(&line).map_err(io)?;
            rows += 1;
        }
        Ok(())
    })
    .await?;
    out.flush().map_err(io)?;
    Ok(rows)
}

/// The shell command the server runs for one period.
fn program(strata: &str, store_url: &str, table: &str, label: &str) -> String {
    let w = crate::format::shell_word;
    format!(
        "{} archive cat {} --store {} --table-dir {}",
        w(strata),
        w(label),
        w(store_url),
        w(table)
    )
}

pub async fn attach(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    label: &str,
    strata_path: Option<&str>,
    progress: ProgressFn<'_>,
) -> Result<Value, ArchiveError> {
    let start = super::restore::parse_period(spec, label)?;
    let label = super::run::label(spec.interval, start);
    let record = catalog::records(client, spec)
        .await?
        .into_iter()
        .find(|r| r.period_start == start)
        .ok_or_else(|| {
            ArchiveError::Precondition(format!(
                "period {label} of {} is not archived (see strata archive list)",
                spec.name.display_unquoted()
            ))
        })?;
    let snap = partition::snapshot(client, spec)
        .await
        .map_err(|e| ArchiveError::Failed(e.to_string()))?;
    if owned(spec, &snap.partitions)
        .iter()
        .any(|p| p.from == start)
    {
        return Err(ArchiveError::Precondition(format!(
            "period {label} of {} is still a partition: its rows are in the table, and attaching the archive too would count them twice",
            spec.name.display_unquoted()
        )));
    }
    let store = Store::open(&record.store_url)?;
    let dir = table_dir(spec);
    let m = manifest::load(&store, &dir, &label).await?.ok_or_else(|| {
        ArchiveError::Mismatch(format!(
            "{} is missing from {}",
            manifest::manifest_key(&dir, &label),
            record.store_url
        ))
    })?;
    let foreign = foreign_name(spec, start)?;
    let strata = match strata_path {
        Some(p) => p.to_string(),
        None => std::env::current_exe()
            .map_err(|e| ArchiveError::Failed(format!("finding strata's own path: {e}")))?
            .display()
            .to_string(),
    };
    let cmd = program(&strata, &record.store_url, &dir, &label);
    let already = attached(client, spec).await?.contains(&foreign);
    if !already {
        let columns: Vec<String> = m.schema.iter().map(column_def).collect::<Result<_, _>>()?;
        let col = &spec.time_column;
        let (from, to) = (
            literal(&period::sql_timestamp(m.period_start)),
            literal(&period::sql_timestamp(m.period_end)),
        );
        let server = Ident::new(SERVER.to_string()).expect("a plain name");
        let setup = format!(
            "CREATE EXTENSION IF NOT EXISTS file_fdw;
             DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server WHERE srvname = {srv}) THEN
                 CREATE SERVER {server} FOREIGN DATA WRAPPER file_fdw;
               END IF;
             END $$;",
            srv = literal(SERVER),
        );
        client.batch_execute(&setup).await.map_err(|e| {
            ArchiveError::Precondition(format!(
                "setting up file_fdw (the contrib extension, created by a superuser or a role that may create it): {}",
                DbError::query("creating file_fdw's server")(e)
            ))
        })?;
        let create = format!(
            "CREATE FOREIGN TABLE {foreign} ({}, CHECK ({col} >= {from}::timestamptz AND {col} < {to}::timestamptz))
               SERVER {server} OPTIONS (program {}, format 'csv');
             COMMENT ON FOREIGN TABLE {foreign} IS {}",
            columns.join(", "),
            literal(&cmd),
            literal(&mark(spec, &label))
        );
        client.batch_execute(&create).await.map_err(|e| {
            ArchiveError::Precondition(format!(
                "creating {} (a program option needs a superuser or pg_execute_server_program): {}",
                foreign.display_unquoted(),
                DbError::query("creating the foreign table")(e)
            ))
        })?;
    }
    // One read through the program before the view shows it: a server that
    // cannot run strata or reach the store fails here, not in a user's query.
    let counted: Result<i64, _> = client
        .query_one(&format!("SELECT count(*)::int8 FROM {foreign}"), &[])
        .await
        .map(|r| r.get(0));
    let counted = match counted {
        Ok(n) if n == m.row_count => n,
        other => {
            let why = match other {
                Ok(n) => format!("it read {n} rows, the manifest says {}", m.row_count),
                Err(e) => DbError::query("reading through the program")(e).to_string(),
            };
            if !already {
                client
                    .batch_execute(&format!("DROP FOREIGN TABLE IF EXISTS {foreign}"))
                    .await
                    .ok();
            }
            return Err(ArchiveError::Precondition(format!(
                "the server could not read period {label} through `{cmd}`: {why}. strata must be installed on the database host at that path (--strata-path) and the store readable there (AWS_* in the server's environment for S3)"
            )));
        }
    };
    rebuild_view(client, config, spec).await?;
    progress(&Progress::Line {
        message: format!(
            "attached {label} as {} ({counted} rows, read through `{cmd}`); query it through {}",
            foreign.display_unquoted(),
            view_name(spec)?.display_unquoted()
        ),
    });
    Ok(json!({
        "table": spec.name.display_unquoted(),
        "period": label,
        "foreign_table": foreign.display_unquoted(),
        "view": view_name(spec)?.display_unquoted(),
        "rows": counted,
        "program": cmd,
        "already_attached": already,
    }))
}

pub async fn detach(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    label: &str,
    progress: ProgressFn<'_>,
) -> Result<Value, ArchiveError> {
    let start = super::restore::parse_period(spec, label)?;
    let label = super::run::label(spec.interval, start);
    let foreign = foreign_name(spec, start)?;
    let mut tables = attached(client, spec).await?;
    let present = tables.contains(&foreign);
    if present {
        // The view goes first (it depends on the foreign table), and comes
        // back without it.
        tables.retain(|n| *n != foreign);
        replace_view(client, config, spec, &tables, Some(&foreign)).await?;
    }
    progress(&Progress::Line {
        message: if present {
            format!("detached {label}: {} dropped", foreign.display_unquoted())
        } else {
            format!("{label} was not attached")
        },
    });
    Ok(json!({
        "table": spec.name.display_unquoted(),
        "period": label,
        "foreign_table": foreign.display_unquoted(),
        "was_attached": present,
    }))
}

/// strata's foreign tables of `spec`, by their comment, oldest period first.
async fn attached(client: &Client, spec: &TableSpec) -> Result<Vec<QualifiedName>, ArchiveError> {
    let prefix = format!("{MARK}{} ", spec.name);
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0
              WHERE c.relkind = 'f' AND n.nspname = 'strata' AND starts_with(d.description, $1)
              ORDER BY d.description",
            &[&prefix],
        )
        .await
        .map_err(DbError::query("listing attached archive periods"))?;
    rows.iter()
        .map(|r| {
            QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1))
                .map_err(|e| ArchiveError::Failed(e.to_string()))
        })
        .collect()
}

fn column_def(c: &Column) -> Result<String, ArchiveError> {
    let name = Ident::new(c.name.clone()).map_err(|e| ArchiveError::Failed(e.to_string()))?;
    // The type as format_type printed it from the catalog when archiving,
    // checked against what a type name may look like before it goes into
    // DDL: letters, digits, spaces, parentheses, commas, underscores, dots.
    let t = &c.postgres_type;
    if t.is_empty()
        || !t
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || " (),_.\"[]".contains(ch))
    {
        return Err(ArchiveError::Mismatch(format!(
            "the manifest's type {t:?} of column {} is not a type name",
            c.name
        )));
    }
    Ok(format!("{name} {t}"))
}

async fn rebuild_view(
    client: &Client,
    config: &Config,
    spec: &TableSpec,
) -> Result<(), ArchiveError> {
    let tables = attached(client, spec).await?;
    replace_view(client, config, spec, &tables, None).await
}

/// `<table>_with_archive` = the table `UNION ALL` each attached period, in
/// the table's column order; generated columns are computed from the
/// archived ones with the table's own expression. `drop` is dropped in the
/// same transaction, after the view no longer uses it.
async fn replace_view(
    client: &Client,
    config: &Config,
    spec: &TableSpec,
    tables: &[QualifiedName],
    drop: Option<&QualifiedName>,
) -> Result<(), ArchiveError> {
    let cols = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
                    CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END
               FROM pg_catalog.pg_attribute a
               LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&spec.name.to_string()],
        )
        .await
        .map_err(DbError::query("reading the table's columns"))?;
    let mut live = Vec::new();
    let mut archived = Vec::new();
    for r in &cols {
        let name =
            Ident::new(r.get::<_, String>(0)).map_err(|e| ArchiveError::Failed(e.to_string()))?;
        let ty: String = r.get(1);
        live.push(name.to_string());
        // The expression comes from the catalog (pg_get_expr), as the
        // table's own definition does.
        archived.push(match r.get::<_, Option<String>>(2) {
            Some(expr) => format!("({expr})::{ty} AS {name}"),
            None => name.to_string(),
        });
    }
    let view = view_name(spec)?;
    let mut sql = format!("SELECT {} FROM {}", live.join(", "), spec.name);
    for t in tables {
        sql.push_str(&format!(
            "\nUNION ALL SELECT {} FROM {t}",
            archived.join(", ")
        ));
    }
    let mut steps: Vec<Statement> = vec![
        Statement::Begin,
        config.maintenance.lock.set_sql(true).into(),
        // Same columns every time, so CREATE OR REPLACE works, and views a
        // user built on this one stay.
        format!("CREATE OR REPLACE VIEW {view} AS {sql}").into(),
        format!(
            "COMMENT ON VIEW {view} IS {}",
            literal(&format!(
                "strata: {} and its attached archive periods (strata archive attach)",
                spec.name.display_unquoted()
            ))
        )
        .into(),
    ];
    if let Some(d) = drop {
        steps.push(format!("DROP FOREIGN TABLE IF EXISTS {d}").into());
    }
    steps.push(Statement::Commit);
    let policy = &config.maintenance.lock;
    policy
        .run(&format!("replacing {}", view.display_unquoted()), || {
            crate::db::run_statements(client, &steps)
        })
        .await?;
    Ok(())
}
