//! `strata health`: print the report; exit 3 when a check is critical.

use chrono::{DateTime, Utc};

use super::{print_json, Target};
use crate::config::Config;
use crate::format;
use crate::health::{self, HealthReport, Status};
use crate::{Error, Result};

pub async fn run(
    target: &Target,
    config: &Config,
    now: Option<DateTime<Utc>>,
    json: bool,
) -> Result<()> {
    let mut client = target.connect().await?;
    let report = health::check(
        &mut client,
        &config.tables,
        &config.health,
        now.unwrap_or_else(Utc::now),
    )
    .await?;
    if json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    let critical: Vec<&str> = report.critical().map(|c| c.name).collect();
    if critical.is_empty() {
        return Ok(());
    }
    Err(Error::Precondition(format!(
        "health: {} critical: {}",
        if critical.len() == 1 {
            "1 check is".to_string()
        } else {
            format!("{} checks are", critical.len())
        },
        critical.join(", ")
    )))
}

fn print_human(report: &HealthReport) {
    let label = |s: Status| match s {
        Status::Ok => "ok".to_string(),
        other => other.as_str().to_uppercase(),
    };
    let rows: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|c| {
            let message = match &c.table {
                Some(t) => format!("{t}: {}", c.message),
                None => c.message.clone(),
            };
            vec![label(c.status), c.name.to_string(), message]
        })
        .collect();
    println!("{}", format::table(&["status", "check", "message"], &rows));
    let fixes: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .filter_map(|c| c.fix.as_ref().map(|f| (c.name, f)))
        .collect();
    if !fixes.is_empty() {
        println!("\nto fix (shown, not run):");
        for (name, fix) in fixes {
            println!("  {name}: {fix}");
        }
    }
    println!("\noverall: {}", label(report.status));
}
