//! `strata partitions …`, `strata maintain` and `strata load`.

use chrono::Utc;
use serde_json::json;

use super::{print_json, LoadArgs, PlanArgs, Target};
use crate::config::{Backend, Config};
use crate::format;
use crate::load;
use crate::ops::{MaintainOptions, Op};
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
    let mut client = target.connect().await?;
    let real = crate::ops::real_now(&client).await?;
    let now = args.now.unwrap_or(real);
    let snap = partition::snapshot(&mut client, spec).await?;
    let plan = partition::plan_with(spec, partition::Clock { plan: now, real }, &snap);
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
    for step in &plan.previewed {
        println!(
            "would {} at {} (not done: detach and drop follow the real clock)",
            partition::describe(step),
            now.to_rfc3339()
        );
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
    for (start, rows) in &plan.out_of_window {
        eprintln!(
            "note: {rows} rows in the default partition belong to the period starting {}, outside the window \
             [start, now + premake]; no partition is made for them (fix the rows, or widen start)",
            period::sql_timestamp(*start)
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
    if let Some(now) = args.now {
        if !json {
            println!(
                "pretending it is {}: partitions are created as of then; detach and drop follow the real clock",
                now.to_rfc3339()
            );
        }
    }
    let op = Op::Maintain(MaintainOptions {
        table: args.table.clone(),
        now: args.now,
        create_only: false,
        yes: args.yes,
    });
    let (id, value) = super::ops::run(target, config, op, json).await?;
    if !json {
        print_plan_notes(&value);
    }
    super::ops::done(json, id, &value, || super::ops::maintain_summary(&value))
}

/// What the plan left alone, from a maintain job's result.
fn print_plan_notes(value: &serde_json::Value) {
    let plan: partition::Plan = match serde_json::from_value(value["plan"].clone()) {
        Ok(p) => p,
        Err(_) => return,
    };
    print_conflicts(&plan);
    for r in value["refused"].as_array().into_iter().flatten() {
        eprintln!("refused: {}", r.as_str().unwrap_or(""));
    }
}

pub async fn list_detached(
    target: &Target,
    config: &Config,
    table: Option<&str>,
    json: bool,
) -> Result<()> {
    let spec = config.table(table)?;
    let client = target.connect().await?;
    let rows = partition::detached::list(&client, spec, false).await?;
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("{}: no detached partitions", spec.name.display_unquoted());
        return Ok(());
    }
    let drop_after = spec
        .detached_drop_after
        .map(|d| d.to_string())
        .unwrap_or_else(|| "never (detached_drop_after is not set)".into());
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.original_name.clone(),
                period::sql_timestamp(d.from),
                period::sql_timestamp(d.to),
                d.detached_at.format("%Y-%m-%d %H:%M").to_string(),
                if d.exists {
                    "yes".into()
                } else {
                    "gone".into()
                },
            ]
        })
        .collect();
    println!(
        "{}",
        format::table(
            &["table", "was", "from", "to", "detached (UTC)", "exists"],
            &table_rows
        )
    );
    println!("dropped automatically after: {drop_after}");
    Ok(())
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
        // Partitions for the whole load range first, so rows do not pile up
        // in the default partition. Only creates: a load never runs
        // retention, whatever time its rows carry.
        let to = args.to.unwrap_or_else(Utc::now);
        let op = Op::Maintain(MaintainOptions {
            table: Some(spec.name.to_string()),
            now: Some(to.max(Utc::now())),
            create_only: true,
            yes: false,
        });
        super::ops::run(target, config, op, true)
            .await
            .map_err(|e| {
                Error::Failed(format!(
                    "could not create the partitions for the load ({e}); run `strata maintain`"
                ))
            })?;
        target.connect().await?
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
