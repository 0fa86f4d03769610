//! `strata partitions …`, `strata maintain` and `strata load`.

use chrono::Utc;
use serde_json::json;

use super::{print_json, LoadArgs, PlanArgs, Target};
use crate::config::{Backend, Config};
use crate::format;
use crate::load;
use crate::partition::{self, period, Bound};
use crate::{Error, Result};

pub async fn plan(
    target: &Target,
    config: &Config,
    args: &PlanArgs,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let spec = config.table(args.table.as_deref())?;
    if spec.backend == Backend::Partman {
        let message = "backend = \"partman\": pg_partman decides the steps itself from the server clock; \
                       `strata maintain` registers the table with create_parent (once), sets premake and retention \
                       in part_config, and calls run_maintenance";
        return if json {
            print_json(&json!({"backend": "partman", "steps": [], "note": message}))
        } else {
            println!("{message}");
            Ok(())
        };
    }
    let now = args.now.unwrap_or_else(Utc::now);
    let mut client = target.connect().await?;
    let snap = partition::snapshot(&mut client, spec).await?;
    let plan = partition::plan(spec, now, &snap);
    let columns = partition::insertable_columns(&client, &spec.name).await?;
    let sql: Vec<Vec<String>> = plan
        .steps
        .iter()
        .map(|s| {
            partition::step_sql(
                spec,
                s,
                snap.default_partition(),
                &columns,
                &config.maintenance.lock,
            )
        })
        .collect();
    if json {
        let mut value = serde_json::to_value(&plan).map_err(|e| Error::Failed(e.to_string()))?;
        if dry_run {
            value["sql"] = json!(sql);
        }
        return print_json(&value);
    }
    if plan.steps.is_empty() {
        println!(
            "{}: nothing to do at {}",
            spec.name.display_unquoted(),
            now.to_rfc3339()
        );
    }
    for (step, sql) in plan.steps.iter().zip(&sql) {
        println!("{}", partition::describe(step));
        if dry_run {
            for stmt in sql {
                println!("    {stmt};");
            }
        }
    }
    print_conflicts(&plan);
    Ok(())
}

fn print_conflicts(plan: &partition::Plan) {
    for c in &plan.conflicts {
        eprintln!(
            "conflict: {} [{}, {}) not created: {} ({})",
            c.wanted,
            period::sql_timestamp(c.from),
            period::sql_timestamp(c.to),
            c.reason,
            c.blocking.display_unquoted()
        );
    }
    if plan.stale_default_rows > 0 {
        eprintln!(
            "note: {} rows in the default partition are older than retention and were left there",
            plan.stale_default_rows
        );
    }
}

pub async fn apply(target: &Target, config: &Config, args: &PlanArgs, json: bool) -> Result<()> {
    let spec = config.table(args.table.as_deref())?;
    let now = args.now.unwrap_or_else(Utc::now);
    let mut client = target.connect().await?;
    if spec.backend == Backend::Partman {
        if args.now.is_some() {
            return Err(partition::PartitionError::PartmanNow.into());
        }
        partition::register(&client, spec).await?;
        let pm = partition::partman::maintain(&mut client, spec, &config.maintenance.lock).await?;
        super::stats::snapshot_quietly(&client, config).await;
        let parts = partition::list(&mut client, spec, false).await?;
        if json {
            return print_json(
                &json!({"table": spec.name.display_unquoted(), "backend": "partman",
                "partman_version": pm.version, "partitions": parts.len()}),
            );
        }
        println!(
            "pg_partman {} maintained {}: {} partitions",
            pm.version,
            spec.name.display_unquoted(),
            parts.len()
        );
        return Ok(());
    }
    let (plan, report) = partition::maintain(&mut client, spec, now, &config.maintenance, |r| {
        if !json {
            let status = if r.ok { "ok" } else { "FAILED" };
            println!(
                "{status:>6}  {}  ({} ms)",
                partition::describe(&r.step),
                r.millis
            );
            if let Some(e) = &r.error {
                println!("        {e}");
            }
        }
    })
    .await?;
    super::stats::snapshot_quietly(&client, config).await;
    if json {
        print_json(
            &json!({"table": spec.name.display_unquoted(), "now": now, "plan": plan, "results": report.results}),
        )?;
    } else {
        if plan.steps.is_empty() {
            println!("{}: nothing to do", spec.name.display_unquoted());
        }
        print_conflicts(&plan);
    }
    match report.failed() {
        0 => Ok(()),
        n => Err(Error::Failed(format!(
            "{n} of {} maintenance steps failed",
            report.results.len()
        ))),
    }
}

pub async fn list(
    target: &Target,
    config: &Config,
    table: Option<&str>,
    exact: bool,
    json: bool,
) -> Result<()> {
    let spec = config.table(table)?;
    let mut client = target.connect().await?;
    let parts = partition::list(&mut client, spec, exact).await?;
    if json {
        return print_json(&parts);
    }
    let rows: Vec<Vec<String>> = parts
        .iter()
        .map(|p| {
            let (from, to) = match &p.bound {
                Bound::Default => ("DEFAULT".to_string(), String::new()),
                Bound::Range { from, to } => (
                    from.map(period::sql_timestamp)
                        .unwrap_or_else(|| "MINVALUE".into()),
                    to.map(period::sql_timestamp)
                        .unwrap_or_else(|| "MAXVALUE".into()),
                ),
            };
            let rows = p
                .exact_rows
                .map(|n| format::count(n as u64))
                .unwrap_or_else(|| format!("~{}", format::count(p.estimated_rows as u64)));
            vec![
                p.name.clone(),
                from,
                to,
                rows,
                format::bytes(p.table_bytes as u64),
                format::bytes(p.index_bytes as u64),
                format::bytes(p.total_bytes as u64),
            ]
        })
        .collect();
    println!(
        "{}",
        format::table(
            &[
                "partition",
                "from",
                "to",
                ">rows",
                ">table",
                ">indexes",
                ">total"
            ],
            &rows
        )
    );
    Ok(())
}

pub async fn load(target: &Target, config: &Config, args: &LoadArgs, json: bool) -> Result<()> {
    let spec = config.table(args.table.as_deref())?;
    let client = {
        let mut client = target.connect().await?;
        // Partitions for the whole load range first, so rows do not pile up
        // in the default partition.
        let to = args.to.unwrap_or_else(Utc::now);
        let now = to.max(Utc::now());
        let (_, report) =
            partition::maintain(&mut client, spec, now, &config.maintenance, |_| {}).await?;
        if report.failed() > 0 {
            return Err(Error::Failed(
                "could not create the partitions for the load; run `strata maintain`".into(),
            ));
        }
        client
    };
    let show = !json;
    let report = match (&args.file, args.rows) {
        (Some(path), _) => {
            load::load_file(
                &client,
                &spec.name,
                path,
                args.format,
                match (&args.rejects, args.skip_bad) {
                    (Some(file), _) => load::BadLines::Reject(file),
                    (None, true) => load::BadLines::Skip,
                    (None, false) => load::BadLines::Stop,
                },
                args.batch_rows,
                show,
            )
            .await?
        }
        (None, Some(rows)) => {
            let from = args.from.unwrap_or_else(|| period::midnight(spec.start));
            let to = args.to.unwrap_or_else(Utc::now);
            let ceiling = if args.compare {
                Some(server_ceiling(&client, &spec.name, rows, from, to).await?)
            } else {
                None
            };
            let report = load::load_generated(
                &client,
                &spec.name,
                load::Generate {
                    rows,
                    from,
                    to,
                    seed: args.seed,
                    batch_rows: args.batch_rows,
                },
                show,
            )
            .await?;
            if let Some(ceiling) = ceiling {
                let ratio = report.rows_per_sec / ceiling.rows_per_sec;
                if json {
                    return print_json(
                        &json!({"load": report, "server_side": ceiling, "ratio": ratio}),
                    );
                }
                print_report(&report);
                println!(
                    "server-side INSERT ... SELECT generate_series of {} rows (same table, same indexes, rolled back, then vacuumed): \
                     {} in {} = {} rows/s; the loader ran at {:.0}% of it",
                    format::count(ceiling.rows),
                    format::count(ceiling.rows),
                    format::duration(std::time::Duration::from_millis(ceiling.elapsed_ms as u64)),
                    format::count(ceiling.rows_per_sec as u64),
                    ratio * 100.0
                );
                return Ok(());
            }
            report
        }
        (None, None) => return Err(Error::Usage("pass --rows N or --file PATH".into())),
    };
    if json {
        return print_json(&report);
    }
    print_report(&report);
    Ok(())
}

fn print_report(r: &load::LoadReport) {
    let skipped = if r.skipped > 0 {
        format!(" ({} bad lines skipped)", format::count(r.skipped))
    } else {
        String::new()
    };
    println!(
        "loaded {} rows in {} ({} rows/s, {} batches){skipped}",
        format::count(r.rows),
        format::duration(std::time::Duration::from_millis(r.elapsed_ms as u64)),
        format::count(r.rows_per_sec as u64),
        r.batches
    );
}

/// Times the server-side generator inside a transaction that is rolled back,
/// then VACUUMs the table (untimed) so the loader that runs next starts from
/// the same state: without it the loader works through a million dead heap
/// and index entries and measures 25% slower than it is (seen here).
async fn server_ceiling(
    client: &tokio_postgres::Client,
    table: &crate::db::QualifiedName,
    rows: u64,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
) -> Result<load::LoadReport> {
    let q = |e| {
        Error::Db(crate::db::DbError::query("timing the server-side ceiling")(
            e,
        ))
    };
    client.batch_execute("BEGIN").await.map_err(q)?;
    let result = load::server_side_insert(client, rows, from, to).await;
    client.batch_execute("ROLLBACK").await.map_err(q)?;
    client
        .batch_execute(&format!("VACUUM {table}"))
        .await
        .map_err(q)?;
    Ok(result?)
}
