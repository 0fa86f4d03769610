//! `strata demo`: the README's first command. Starts the local cluster,
//! migrates, creates partitions, loads sample rows (reusing them on a second
//! run) and shows what partitioning does with them.

use std::time::Duration;

use chrono::{DateTime, Datelike, Months, Utc};
use serde::Serialize;
use serde_json::json;

use crate::cli::{print_json, Target};
use crate::config::Config;
use crate::db::DbError;
use crate::partition::{self, period};
use crate::{format, load, stats, Result};

#[derive(Serialize)]
struct PartitionRow {
    name: String,
    rows: i64,
    total_bytes: i64,
}

/// The seed's one-month query, for the last whole month before `now`.
fn seed_query_month(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let this_month = period::midnight(now.date_naive().with_day(1).expect("day 1"));
    (this_month - Months::new(1), this_month)
}

pub async fn run(
    target: &Target,
    config: &Config,
    rows: u64,
    reload: bool,
    json: bool,
) -> Result<()> {
    let spec = &config.tables[0];
    let now = Utc::now();
    let mut client = target.connect().await?;
    if target.local {
        // The local cluster preloads pg_stat_statements; creating it here lets
        // `strata report` and `stats queries` show the demo's queries.
        if let Err(e) = client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
        {
            tracing::warn!(error = %e, "pg_stat_statements is not available");
        }
    }
    let say = |s: &str| {
        if !json {
            println!("{s}");
        }
    };
    say(&format!(
        "strata demo on {}",
        crate::db::redact_url(&target.url)
    ));

    // The same maintain as `strata maintain`: through the operations runtime,
    // as a job, under its safety rules.
    let op = crate::ops::Op::Maintain(crate::ops::MaintainOptions {
        table: Some(spec.name.to_string()),
        ..Default::default()
    });
    let mut quiet = |_: &crate::ops::Progress| {};
    let (_, outcome) = crate::ops::run(
        &mut client,
        config,
        op,
        &crate::ops::Origin::cli(),
        &mut quiet,
    )
    .await?;
    let planned = outcome["plan"]["steps"].as_array().map_or(0, Vec::len);
    let made = outcome["results"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|s| s["ok"] == true).count());
    say(&format!(
        "partitions: {} steps planned, {} done (monthly from {}, {} months ahead)",
        planned, made, spec.start, spec.premake
    ));

    let existing: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", spec.name), &[])
        .await
        .map_err(DbError::query("counting rows"))?
        .get(0);
    let loaded = if existing == rows as i64 && !reload {
        say(&format!(
            "reusing the {} rows already loaded (pass --reload to load again)",
            format::count(rows)
        ));
        None
    } else {
        if existing > 0 && !target.local && !reload {
            // Someone else's database: never throw their rows away unasked.
            return Err(crate::Error::Precondition(format!(
                "{} on {} already holds {} rows; the demo would replace them. Run it on the local \
                 cluster (no --database-url), or pass --reload to truncate the table and load again",
                spec.name.display_unquoted(),
                crate::db::redact_url(&target.url),
                format::count(existing as u64)
            )));
        }
        if existing > 0 {
            say(&format!(
                "removing the {} rows of an earlier run",
                format::count(existing as u64)
            ));
            client
                .batch_execute(&format!("TRUNCATE {}", spec.name))
                .await
                .map_err(DbError::query("truncating"))?;
        }
        let from = period::midnight(spec.start);
        say(&format!(
            "loading {} rows from {} to now",
            format::count(rows),
            spec.start
        ));
        let r = load::load_generated(
            &client,
            &spec.name,
            load::Generate {
                rows,
                from,
                to: now,
                seed: 1,
                batch_rows: load::DEFAULT_BATCH_ROWS,
            },
            !json,
        )
        .await?;
        say(&format!(
            "loaded {} rows in {} ({} rows/s)",
            format::count(r.rows),
            format::duration(Duration::from_millis(r.elapsed_ms as u64)),
            format::count(r.rows_per_sec as u64)
        ));
        // Fresh statistics, so the plans below are the ones users will get.
        client
            .batch_execute(&format!("ANALYZE {}", spec.name))
            .await
            .map_err(DbError::query("analyzing"))?;
        Some(r)
    };

    let counts = stats::exact_counts(&client, &spec.name).await?;
    let infos = partition::list(&mut client, spec, false).await?;
    let parts: Vec<PartitionRow> = infos
        .iter()
        .map(|p| PartitionRow {
            rows: counts
                .iter()
                .find(|(n, _)| p.name.ends_with(&format!(".{n}")))
                .map(|(_, c)| *c)
                .unwrap_or(0),
            name: p.name.clone(),
            total_bytes: p.total_bytes,
        })
        .collect();
    let total_rows: i64 = parts.iter().map(|p| p.rows).sum();
    let indexes = stats::index_sizes(&client, &spec.name).await?;
    let (from, to) = seed_query_month(now);
    let explain_sql = format!(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT * FROM {} WHERE {col} >= $1 AND {col} < $2 LIMIT 10000",
        spec.name,
        col = spec.time_column
    );
    let plan_lines: Vec<String> = client
        .query(&explain_sql, &[&from, &to])
        .await
        .map_err(DbError::query("explaining the one-month query"))?
        .iter()
        .map(|r| r.get(0))
        .collect();

    if json {
        return print_json(&json!({
            "url": crate::db::redact_url(&target.url),
            "rows": total_rows,
            "loaded": loaded,
            "partitions": parts,
            "indexes": indexes,
            "one_month_query": {"from": from, "to": to, "plan": plan_lines},
        }));
    }
    let table_rows: Vec<Vec<String>> = parts
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                format::count(p.rows as u64),
                format::bytes(p.total_bytes as u64),
            ]
        })
        .collect();
    println!(
        "\n{}",
        format::table(&["partition", ">rows", ">size"], &table_rows)
    );
    println!(
        "{} partitions, {} rows in all\n",
        parts.len(),
        format::count(total_rows as u64)
    );
    let index_rows: Vec<Vec<String>> = indexes
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.method.clone(),
                i.partitions.to_string(),
                format::bytes(i.bytes as u64),
            ]
        })
        .collect();
    println!(
        "{}\n",
        format::table(&["index", "type", ">partitions", ">size"], &index_rows)
    );
    println!(
        "The original design's one-month query ({} .. {}), with partition pruning:",
        from.format("%Y-%m-%d"),
        to.format("%Y-%m-%d")
    );
    for l in &plan_lines {
        println!("  {l}");
    }
    let exe = shell_command();
    let mut next = String::from("\nNext:\n");
    if target.local {
        // The commands find the cluster through STRATA_HOME from any directory.
        let home = crate::cluster::LocalCluster::from_env()
            .home()
            .to_path_buf();
        let home = std::path::absolute(&home).unwrap_or(home);
        next.push_str(&format!(
            "  export STRATA_HOME={}   # so the commands below find this cluster from any directory\n",
            crate::format::shell_word(&home.display().to_string())
        ));
    }
    next.push_str(&format!(
        "  psql {}\n  {exe} report            # what to fix, with the command for each\n  {exe} health\n  {exe} stats partitions\n  {exe} partitions plan --now {}   # what maintenance would do next month (a preview: nothing changes)",
        // Never the password itself: the local one comes from `local url`.
        if target.local {
            format!("\"$({exe} local url --show-password)\"")
        } else {
            format!("'{}'", crate::db::redact_url(&target.url))
        },
        (now + Months::new(1)).format("%Y-%m-%d")
    ));
    println!("{next}");
    Ok(())
}

/// How to run this binary from a shell: `strata` when that name on PATH is
/// this very executable (installed), else its absolute path (`cargo run`).
fn shell_command() -> String {
    let Ok(exe) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "strata".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join("strata")
                .canonicalize()
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        "strata".into()
    } else {
        crate::format::shell_word(&exe.display().to_string())
    }
}
