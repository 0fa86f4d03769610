//! `strata convert start|status|resume|verify|cutover|rollback|cleanup|run`.

use std::time::Duration;

use super::{print_json, ConvertAction, ConvertArgs, Target};
use crate::config::Config;
use crate::convert::{self, BackfillOptions, BatchReport, Conversion, ConvertError, Phase};
use crate::progress::Progress;
use crate::{format, Result};

fn options(args: &ConvertArgs) -> BackfillOptions {
    BackfillOptions {
        batch_rows: args.batch_rows,
        max_rate: args.max_rate.unwrap_or(0),
        max_batches: args.max_batches.unwrap_or(0),
        ..BackfillOptions::default()
    }
}

fn say(json: bool, text: &str) {
    if !json {
        println!("{text}");
    }
}

fn describe(c: &Conversion) -> String {
    format!(
        "{}: phase {}, {} rows copied (watermark {} of {})",
        c.table,
        c.phase,
        format::count(c.rows_copied.max(0) as u64),
        c.watermark.unwrap_or(0),
        c.backfill_until.unwrap_or(0)
    )
}

fn print_verified(ranges: &[convert::RangeCheck], json: bool) -> Result<()> {
    if json {
        return print_json(&ranges);
    }
    let rows: i64 = ranges.iter().map(|r| r.new_rows).sum();
    println!(
        "verified: {} id range(s), {} rows, counts and content hashes equal",
        ranges.len(),
        format::count(rows.max(0) as u64)
    );
    Ok(())
}

fn print_status(s: &convert::Status, json: bool) -> Result<()> {
    if json {
        return print_json(s);
    }
    println!("{}", describe(&s.conversion));
    println!(
        "progress {:.1}%{}{}",
        s.percent,
        s.rows_per_second
            .map(|r| format!(", {} rows/s", format::count(r as u64)))
            .unwrap_or_default(),
        s.eta_seconds
            .map(|e| format!(", ETA {}", format::duration(Duration::from_secs_f64(e))))
            .unwrap_or_default()
    );
    if let Some(e) = &s.conversion.last_error {
        println!("last error: {e}");
    }
    Ok(())
}

pub async fn run(
    target: &Target,
    config: &Config,
    action: &ConvertAction,
    json: bool,
) -> Result<()> {
    let args = action.args();
    let spec = config.table(args.table.as_deref())?;
    let mut client = target.connect().await?;
    // Bounded lock and statement waits from the first query on.
    convert::bound_session(&client).await?;
    let opts = options(args);
    if matches!(action, ConvertAction::Run(_)) {
        let phase = convert::active(&client, &spec.name).await?.map(|c| c.phase);
        if matches!(phase, None | Some(Phase::Starting)) {
            convert::start(&mut client, config, spec, &opts).await?;
        }
    }
    let estimate = convert::active(&client, &spec.name)
        .await?
        .map(|c| convert::rows_left(&c))
        .unwrap_or(0);
    let mut bar = Progress::new("backfill", estimate.max(1), !json);
    let mut on_batch = |b: &BatchReport| {
        bar.add(b.rows);
        tracing::debug!(
            watermark = b.watermark,
            rows = b.rows,
            ms = b.millis,
            batch = b.batch_rows,
            "batch"
        );
    };
    let result: Conversion = match action {
        ConvertAction::Start(_) => {
            let c = convert::start(&mut client, config, spec, &opts).await?;
            say(json, &format!("started: {}", describe(&c)));
            say(json, "next: `strata convert resume` (backfill, indexes, verify), then `strata convert cutover`");
            c
        }
        ConvertAction::Resume(_) => {
            convert::resume(&mut client, config, spec, &opts, &mut on_batch).await?
        }
        ConvertAction::Verify(_) => {
            return print_verified(&convert::verify(&mut client, spec).await?, json);
        }
        ConvertAction::Cutover(_) => convert::cutover(&mut client, config, spec).await?,
        ConvertAction::Rollback(_) => convert::rollback(&mut client, config, spec).await?,
        ConvertAction::Cleanup { yes, .. } => {
            convert::cleanup(&mut client, config, spec, *yes).await?
        }
        ConvertAction::Status(_) => {
            return print_status(&convert::status(&client, spec).await?, json);
        }
        ConvertAction::Run(_) => {
            let c = convert::resume(&mut client, config, spec, &opts, &mut on_batch).await?;
            let c = if matches!(c.phase, Phase::Verified | Phase::RolledBack) {
                convert::cutover(&mut client, config, spec).await?
            } else {
                c
            };
            // `run` promises a cut-over table; anything else is a failure.
            if c.phase != Phase::CutOver {
                bar.finish();
                return Err(ConvertError::Stopped {
                    table: c.table,
                    phase: c.phase,
                    hint: "run `strata convert status` to see why, then `strata convert run` again",
                }
                .into());
            }
            c
        }
    };
    bar.finish();
    if json {
        return print_json(&result);
    }
    println!("{}", describe(&result));
    if result.phase == Phase::CutOver {
        println!(
            "cut over: {} is partitioned; `strata convert rollback` swaps back, `strata convert cleanup --yes` drops {}",
            result.table,
            result.old_table.as_deref().unwrap_or("the old table")
        );
    }
    Ok(())
}
