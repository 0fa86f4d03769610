//! `strata archive …`: run, verify and restore are jobs of the operations
//! runtime; list and search are reads.

use serde_json::json;

use super::{parse_when, print_json, Target};
use crate::archive::{self, ArchiveOp, RunOptions, SearchQuery};
use crate::config::Config;
use crate::format;
use crate::ops::{Op, OpError};
use crate::Result;

#[derive(Debug, clap::Subcommand)]
pub enum ArchiveAction {
    /// Archive every period past archive_after to archive_to (Parquet, verified by reading it back);
    /// with retention_mode = "archive", drop partitions past retention whose manifest re-reads clean.
    /// Follows the server's clock only.
    Run {
        #[arg(long)]
        table: Option<String>,
        /// Show what is due, what would be dropped and which orphans would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Archived periods: rows, bytes in the store and in PostgreSQL, ratio, state.
    List {
        #[arg(long)]
        table: Option<String>,
    },
    /// Re-read the files of every archived period (or PERIOD) and check SHA-256, count and row
    /// digest against the manifest. Exits 3 on a mismatch, naming the file.
    Verify {
        /// YYYY-MM (monthly tables) or YYYY-MM-DD.
        period: Option<String>,
        #[arg(long)]
        table: Option<String>,
    },
    /// Re-create PERIOD's partition from its files (COPY in batches, count + content hash checked
    /// against the manifest, indexes, ATTACH with lock_timeout). Idempotent.
    Restore {
        period: String,
        #[arg(long)]
        table: Option<String>,
    },
    /// Make archived PERIOD readable in place, without restoring it: a file_fdw foreign table
    /// (strata.<partition>_archive) whose rows the server reads by running `strata archive cat`
    /// on its own host, behind the view <table>_with_archive (the table UNION ALL its attached
    /// periods, pruned by each period's bounds). Needs file_fdw and a superuser (or
    /// pg_execute_server_program). No index: a query that reaches the period reads all of it.
    Attach {
        period: String,
        #[arg(long)]
        table: Option<String>,
        /// strata's path on the database host (default: this strata's own path).
        #[arg(long)]
        strata_path: Option<String>,
    },
    /// Drop what `attach` made for PERIOD (the view stays, without it). Idempotent.
    Detach {
        period: String,
        #[arg(long)]
        table: Option<String>,
    },
    /// Print an archived period's rows as CSV (what the server runs for `attach`). Reads only the
    /// store: no database, no configuration.
    Cat {
        period: String,
        /// The store the period was archived to (strata.archives.store_url).
        #[arg(long)]
        store: String,
        /// The table's directory in the store (`table=<this>/period=...`).
        #[arg(long)]
        table_dir: String,
    },
    /// Rows of one user from the files, without restoring (NDJSON on stdout; row groups read vs
    /// skipped on stderr).
    Search {
        #[arg(long)]
        user_id: i64,
        #[arg(long)]
        action: Option<String>,
        /// From this date or RFC 3339 time (inclusive).
        #[arg(long, value_parser = parse_when)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// To this date or RFC 3339 time (exclusive).
        #[arg(long, value_parser = parse_when)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        table: Option<String>,
    },
}

pub async fn run(
    target: &Target,
    config: &Config,
    action: &ArchiveAction,
    json: bool,
) -> Result<()> {
    match action {
        ArchiveAction::Run { table, dry_run } => {
            let op = ArchiveOp::Run(RunOptions { dry_run: *dry_run });
            job(target, config, table, op, json, |v| {
                let n = |k: &str| v[k].as_array().map(Vec::len).unwrap_or(0);
                format!(
                    "{}: {} period(s) archived, {} already archived, {} dropped, {} refused, {} orphan key(s) removed{}",
                    v["table"].as_str().unwrap_or(""),
                    n("archived"),
                    n("already_archived"),
                    n("dropped"),
                    n("refused"),
                    n("orphans_removed"),
                    if v["dry_run"].as_bool() == Some(true) { " (dry run: nothing changed)" } else { "" }
                )
            })
            .await
        }
        ArchiveAction::Verify { period, table } => {
            let op = ArchiveOp::Verify {
                period: period.clone(),
            };
            job(target, config, table, op, json, |v| {
                format!(
                    "{} period(s) verified: every file's SHA-256, count and row digest match",
                    v["verified"].as_array().map(Vec::len).unwrap_or(0)
                )
            })
            .await
        }
        ArchiveAction::Restore { period, table } => {
            let op = ArchiveOp::Restore {
                period: period.clone(),
            };
            job(target, config, table, op, json, |v| {
                if v["already_restored"].as_bool() == Some(true) {
                    format!(
                        "period {} is already restored ({} is a partition)",
                        v["period"].as_str().unwrap_or(""),
                        v["partition"].as_str().unwrap_or("")
                    )
                } else {
                    format!(
                        "restored {} into {}: {} rows, verified",
                        v["period"].as_str().unwrap_or(""),
                        v["partition"].as_str().unwrap_or(""),
                        v["rows"]
                    )
                }
            })
            .await
        }
        ArchiveAction::Attach {
            period,
            table,
            strata_path,
        } => {
            let op = ArchiveOp::Attach {
                period: period.clone(),
                strata_path: strata_path.clone(),
            };
            job(target, config, table, op, json, |v| {
                format!(
                    "{} {} as {} ({} rows); query it through {}",
                    if v["already_attached"].as_bool() == Some(true) {
                        "already attached:"
                    } else {
                        "attached"
                    },
                    v["period"].as_str().unwrap_or(""),
                    v["foreign_table"].as_str().unwrap_or(""),
                    v["rows"],
                    v["view"].as_str().unwrap_or("")
                )
            })
            .await
        }
        ArchiveAction::Detach { period, table } => {
            let op = ArchiveOp::Detach {
                period: period.clone(),
            };
            job(target, config, table, op, json, |v| {
                if v["was_attached"].as_bool() == Some(true) {
                    format!(
                        "detached {}: {} dropped",
                        v["period"].as_str().unwrap_or(""),
                        v["foreign_table"].as_str().unwrap_or("")
                    )
                } else {
                    format!("{} was not attached", v["period"].as_str().unwrap_or(""))
                }
            })
            .await
        }
        ArchiveAction::Cat { .. } => unreachable!("handled before connecting (cli::archive::cat)"),
        ArchiveAction::List { table } => list(target, config, table.as_deref(), json).await,
        ArchiveAction::Search {
            user_id,
            action,
            from,
            to,
            limit,
            table,
        } => {
            let spec = config.table(table.as_deref())?;
            let client = target.connect().await?;
            let q = SearchQuery {
                user_id: *user_id,
                action: action.clone(),
                from: *from,
                to: *to,
                limit: *limit,
            };
            let mut emit = |v: serde_json::Value| println!("{v}");
            let s = archive::search(&client, spec, &q, &mut emit)
                .await
                .map_err(OpError::from)?;
            if json {
                eprintln!("{}", json!({ "summary": s }));
            } else {
                eprintln!(
                    "{} row(s) from {} period(s): {} of {} row groups read ({} skipped by statistics, {} by bloom filters) in {} ms{}",
                    s.rows,
                    s.periods_searched,
                    s.row_groups_read,
                    s.row_groups,
                    s.row_groups_skipped_by_statistics,
                    s.row_groups_skipped_by_bloom_filter,
                    s.millis,
                    if s.truncated { " (--limit reached)" } else { "" }
                );
            }
            Ok(())
        }
    }
}

async fn job(
    target: &Target,
    config: &Config,
    table: &Option<String>,
    op: ArchiveOp,
    json: bool,
    summary: impl FnOnce(&serde_json::Value) -> String,
) -> Result<()> {
    let op = Op::Archive {
        table: table.clone(),
        op,
    };
    let (id, value) = super::ops::run(target, config, op, json).await?;
    super::ops::done(json, id, &value, || summary(&value))
}

async fn list(target: &Target, config: &Config, table: Option<&str>, json: bool) -> Result<()> {
    let spec = config.table(table)?;
    let client = target.connect().await?;
    let rows = archive::list(&client, spec).await.map_err(OpError::from)?;
    if json {
        return print_json(&json!({ "table": spec.name.display_unquoted(), "archives": rows }));
    }
    if rows.is_empty() {
        println!("{}: nothing archived", spec.name.display_unquoted());
        return Ok(());
    }
    println!(
        "{:<10} {:>12} {:>10} {:>12} {:>7}  {:<9} verified",
        "period", "rows", "store", "postgres", "ratio", "state"
    );
    for r in &rows {
        println!(
            "{:<10} {:>12} {:>10} {:>12} {:>6.1}x  {:<9} {}",
            r.period,
            format::count(r.rows.max(0) as u64),
            format::bytes(r.store_bytes.max(0) as u64),
            format::bytes(r.postgres_bytes.max(0) as u64),
            r.ratio,
            r.state,
            match (r.verify_ok, &r.verify_error) {
                (Some(true), _) => "ok".to_string(),
                (Some(false), Some(e)) => format!("FAILED: {e}"),
                _ => "-".to_string(),
            }
        );
    }
    Ok(())
}

/// `strata archive cat`: no database and no configuration, so it runs as
/// the server's program with nothing but the store.
pub async fn cat(action: &ArchiveAction) -> Result<()> {
    let ArchiveAction::Cat {
        period,
        store,
        table_dir,
    } = action
    else {
        unreachable!("only cat")
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
    archive::cat(store, table_dir, period, &mut out)
        .await
        .map_err(OpError::from)?;
    Ok(())
}
