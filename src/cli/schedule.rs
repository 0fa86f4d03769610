//! `strata schedule list|run|daemon|install-pg-cron`.

use chrono::Utc;
use serde_json::json;

use super::{print_json, Target};
use crate::config::Config;
use crate::scheduler::{self, pgcron};
use crate::{format, Result};

pub async fn list(target: &Target, config: &Config, json: bool) -> Result<()> {
    let client = target.connect().await?;
    let jobs = scheduler::list(&client, config, Utc::now()).await?;
    if json {
        return print_json(&jobs);
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let last = j
                .last_run
                .as_ref()
                .map(|r| {
                    format!(
                        "{} {}",
                        r.scheduled_for
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default(),
                        r.state
                    )
                })
                .unwrap_or_else(|| "-".into());
            vec![
                j.name.clone(),
                j.command.name().to_string(),
                format!("{} ({})", j.schedule, j.timezone),
                j.table.clone().unwrap_or_else(|| "all".into()),
                j.next_run
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into()),
                last,
            ]
        })
        .collect();
    println!(
        "{}",
        format::table(
            &[
                "job",
                "command",
                "schedule",
                "table",
                "next run (UTC)",
                "last run"
            ],
            &rows
        )
    );
    Ok(())
}

pub async fn run(target: &Target, config: &Config, name: &str, json: bool) -> Result<()> {
    let mut client = target.connect().await?;
    let job = scheduler::run_now(&mut client, config, name).await?;
    if json {
        print_json(&job)?;
        // Scripts read the exit code too: a failed job is not a success.
        if job.state != "succeeded" {
            return Err(crate::Error::Failed(format!("scheduled job {name} failed")));
        }
        return Ok(());
    }
    println!(
        "job {} ({}): {}{}",
        job.id,
        name,
        job.state,
        job.error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    if job.state != "succeeded" {
        return Err(crate::Error::Failed(format!("scheduled job {name} failed")));
    }
    Ok(())
}

pub async fn daemon(target: &Target, config: &Config, once: bool) -> Result<()> {
    let jobs = scheduler::jobs(config);
    eprintln!(
        "strata scheduler: {} job(s): {}",
        jobs.len(),
        jobs.iter()
            .map(|j| format!("{} \"{}\"", j.spec.name, j.spec.schedule))
            .collect::<Vec<_>>()
            .join(", ")
    );
    scheduler::run(&target.url, config, once, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

pub async fn install_pg_cron(
    target: &Target,
    config: &Config,
    uninstall: bool,
    json: bool,
) -> Result<()> {
    let client = target.connect().await?;
    if uninstall {
        let removed = pgcron::uninstall(&client).await?;
        if json {
            return print_json(&json!({ "removed": removed }));
        }
        println!(
            "removed {} pg_cron job(s): {}",
            removed.len(),
            removed.join(", ")
        );
        return Ok(());
    }
    let installed = pgcron::install(&client, config).await?;
    if json {
        return print_json(&installed);
    }
    for j in &installed.jobs {
        println!("{:<28} {:<12} {}", j.name, j.schedule, j.command);
    }
    for n in &installed.notes {
        println!("note: {n}");
    }
    Ok(())
}
