//! `strata seal run|list|verify|export|prove|keygen`: sealed months. Each
//! database command is an operation of the runtime (a job, the table lock).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::Value;

use super::{print_json, Target};
use crate::config::Config;
use crate::ops::Op;
use crate::seal::SealOp;
use crate::{format, Error, Result};

#[derive(Debug, Subcommand)]
pub enum SealAction {
    /// Seal every closed, unsealed period (its end + seal_after behind the server's clock):
    /// hash its rows into a Merkle root, chain, sign, anchor, and make the partition read-only.
    Run {
        #[arg(long)]
        table: Option<String>,
        /// Show which periods would be sealed, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The seals of a table, in chain order.
    List {
        #[arg(long)]
        table: Option<String>,
    },
    /// Recompute every seal (or one period's rows, the chain always whole), check the chain,
    /// the signatures and the anchor, and name changed, deleted and inserted rows.
    /// Exits 3 when anything differs.
    Verify {
        /// A period's first day: 2025-03 or 2025-03-01.
        period: Option<String>,
        #[arg(long)]
        table: Option<String>,
    },
    /// Write a period's receipt (JSON: root, chain link, count, signature, key id).
    Export {
        period: String,
        #[arg(long)]
        table: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write an inclusion proof of one row (its fields, leaf index, sibling hashes, the receipt).
    Prove {
        #[arg(long)]
        id: i64,
        /// The row's created_at (RFC 3339, to the microsecond).
        #[arg(long, value_parser = super::parse_when)]
        created_at: DateTime<Utc>,
        #[arg(long)]
        table: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a new Ed25519 key pair: PATH (secret, mode 600) and PATH.pub; never overwrites.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(
    target: Option<&Target>,
    config: &Config,
    action: &SealAction,
    json: bool,
) -> Result<()> {
    let Some(target) = target else {
        let SealAction::Keygen { out } = action else {
            unreachable!("only keygen runs without a database")
        };
        return keygen(out, json);
    };
    let op = match action {
        SealAction::Keygen { .. } => unreachable!("keygen needs no database"),
        SealAction::List { table } => return list(target, config, table.as_deref(), json).await,
        SealAction::Run { table, dry_run } => SealOp::Run {
            table: table.clone(),
            dry_run: *dry_run,
        },
        SealAction::Verify { period, table } => SealOp::Verify {
            table: table.clone(),
            period: period.clone(),
        },
        SealAction::Export { period, table, .. } => SealOp::Export {
            table: table.clone(),
            period: period.clone(),
        },
        SealAction::Prove {
            id,
            created_at,
            table,
            ..
        } => SealOp::Prove {
            table: table.clone(),
            id: *id,
            created_at: *created_at,
        },
    };
    let (id, value) = super::ops::run(target, config, Op::Seal(op), json).await?;
    match action {
        SealAction::Export { out, .. } | SealAction::Prove { out, .. } => {
            write_doc(out.as_ref(), &value)
        }
        SealAction::Verify { .. } => {
            if json {
                super::ops::done(true, id, &value, String::new)?;
            } else {
                println!("job {id}: {}", verify_summary(&value));
            }
            if value["intact"].as_bool() == Some(true) {
                Ok(())
            } else {
                Err(Error::Precondition(format!(
                    "seal verification failed: {}",
                    verify_summary(&value)
                )))
            }
        }
        _ => super::ops::done(json, id, &value, || run_summary(&value)),
    }
}

fn write_doc(out: Option<&PathBuf>, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Failed(e.to_string()))?;
    match out {
        Some(path) => std::fs::write(path, text + "\n")
            .map_err(|e| Error::Failed(format!("writing {}: {e}", path.display()))),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

fn run_summary(v: &Value) -> String {
    let sealed = v["sealed"].as_array().map(Vec::len).unwrap_or(0);
    let skipped = v["skipped"].as_array().cloned().unwrap_or_default();
    let verb = if v["dry_run"].as_bool() == Some(true) {
        "would seal"
    } else {
        "sealed"
    };
    let mut s = format!(
        "{}: {verb} {sealed} period(s)",
        v["table"].as_str().unwrap_or("")
    );
    for k in &skipped {
        s.push_str(&format!(
            "\n  not sealed {}: {}",
            k["partition"].as_str().unwrap_or(""),
            k["reason"].as_str().unwrap_or("")
        ));
    }
    s
}

fn verify_summary(v: &Value) -> String {
    let rows = v["rows_checked"].as_u64().unwrap_or(0);
    let ms = v["millis"].as_u64().unwrap_or(0).max(1);
    let failed = v["seals"]
        .as_array()
        .map(|a| a.iter().filter(|s| s["ok"] == Value::Bool(false)).count())
        .unwrap_or(0);
    let state = if v["intact"].as_bool() == Some(true) {
        "intact".to_string()
    } else {
        format!("{failed} seal(s) FAILED")
    };
    format!(
        "{}: {} seal(s), {} rows checked in {} ms ({} rows/s): {state}{}{}",
        v["table"].as_str().unwrap_or(""),
        v["seals_checked"],
        format::count(rows),
        ms,
        format::count(rows * 1000 / ms),
        if v["signatures_checked"].as_bool() == Some(true) {
            ""
        } else {
            "; signatures not checked (no seal_key_file)"
        },
        if v["anchor_checked"].as_bool() == Some(true) {
            ""
        } else {
            "; no anchor configured"
        },
    )
}

async fn list(target: &Target, config: &Config, table: Option<&str>, json: bool) -> Result<()> {
    let client = target.connect().await?;
    let spec = config.table(table)?;
    let seals = crate::seal::list(&client, spec)
        .await
        .map_err(crate::ops::OpError::from)?;
    if json {
        return print_json(&seals);
    }
    if seals.is_empty() {
        println!("{}: no seals", spec.name.display_unquoted());
        return Ok(());
    }
    println!(
        "{:<22} {:<28} {:>10}  {:<16}  {:<16}  key",
        "period", "partition", "rows", "root", "seal hash"
    );
    for s in seals {
        println!(
            "{:<22} {:<28} {:>10}  {:<16}  {:<16}  {}",
            crate::seal::show_time(s.period_start),
            s.partition,
            format::count(s.row_count.max(0) as u64),
            &hex::encode(&s.root)[..16],
            &hex::encode(&s.seal_hash)[..16],
            s.key_id.as_deref().unwrap_or("unsigned")
        );
    }
    Ok(())
}

fn keygen(out: &PathBuf, json: bool) -> Result<()> {
    let (public, id) = crate::seal::sign::keygen(out).map_err(crate::ops::OpError::from)?;
    if json {
        return print_json(&serde_json::json!({
            "secret_key_file": out, "public_key_file": public, "key_id": id
        }));
    }
    println!(
        "wrote {} (secret, mode 600) and {} (public); key id {id}\nset seal_key_file = {:?} in strata.toml to sign new seals",
        out.display(),
        public.display(),
        out.display()
    );
    Ok(())
}
