//! `strata rollup apply|refresh|list`.

use super::{print_json, Target};
use crate::config::Config;
use crate::ops::Op;
use crate::{format, rollup, Result};

/// Installs the declared rollups, as a job of the operations runtime.
pub async fn apply(
    target: &Target,
    config: &Config,
    table: Option<&str>,
    json: bool,
) -> Result<()> {
    let spec = config.table(table)?;
    let op = Op::RollupApply {
        table: Some(spec.name.to_string()),
    };
    let (id, v) = super::ops::run(target, config, op, json).await?;
    super::ops::done(json, id, &v, || {
        let names = |k: &str| {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "none".into())
        };
        format!(
            "{}: rollups created {}, unchanged {}, dropped {}; {} trigger(s) created",
            spec.name.display_unquoted(),
            names("created"),
            names("unchanged"),
            names("dropped"),
            v["triggers_created"].as_u64().unwrap_or(0)
        )
    })
}

/// Refreshes the table's rollups, as a job of the operations runtime.
pub async fn refresh(
    target: &Target,
    config: &Config,
    table: Option<&str>,
    json: bool,
) -> Result<()> {
    let spec = config.table(table)?;
    let op = Op::RollupRefresh {
        table: Some(spec.name.to_string()),
    };
    let (id, v) = super::ops::run(target, config, op, json).await?;
    if !json {
        for r in v["rollups"].as_array().into_iter().flatten() {
            println!(
                "{}: {} range(s) and {} bucket(s) rematerialized ({} rows from {} base rows) in {} ms; watermark {}",
                r["view"].as_str().unwrap_or(""),
                r["ranges"],
                r["buckets"],
                r["rows_written"],
                r["base_rows"],
                r["millis"],
                r["watermark_after"].as_str().unwrap_or("-infinity"),
            );
        }
        if let Some(h) = v["held_back"].as_str() {
            println!("watermarks held back: {h}");
        }
    }
    super::ops::done(json, id, &v, || {
        format!(
            "{}: refreshed, {} invalidation(s) consumed",
            spec.name.display_unquoted(),
            v["invalidations_consumed"].as_u64().unwrap_or(0)
        )
    })
}

pub async fn list(target: &Target, config: &Config, table: Option<&str>, json: bool) -> Result<()> {
    let specs = match table {
        Some(t) => vec![config.table(Some(t))?.clone()],
        None => config.tables.clone(),
    };
    let client = target.connect().await?;
    let all = rollup::list(&client, &specs).await?;
    if json {
        return print_json(&all);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            vec![
                r.view.clone(),
                r.bucket.clone(),
                r.dimensions.join(", "),
                r.measures.join(", "),
                if !r.installed {
                    "not installed".into()
                } else {
                    r.watermark
                        .map(|w| w.to_rfc3339())
                        .unwrap_or_else(|| "-infinity".into())
                },
                format::count(r.rows as u64),
                format::bytes(r.bytes as u64),
                r.pending_invalidations.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        format::table(
            &[
                "view",
                "bucket",
                "dimensions",
                "measures",
                "watermark",
                "rows",
                "size",
                "pending"
            ],
            &rows
        )
    );
    Ok(())
}

/// `strata summary`: rows per bucket and severity, from a rollup view when
/// one answers the range exactly.
pub async fn summary(
    target: &Target,
    config: &Config,
    args: &super::SummaryArgs,
    json: bool,
) -> Result<()> {
    let spec = config.table(args.table.as_deref())?;
    let today = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let to = args.to.unwrap_or(today + chrono::TimeDelta::days(1));
    let from = args.from.unwrap_or(to - chrono::TimeDelta::days(30));
    if from >= to {
        return Err(crate::Error::Usage("--from must be before --to".into()));
    }
    let client = target.connect().await?;
    let (rows, source) =
        rollup::severity_counts(&client, &spec.name, from, to, &args.bucket).await?;
    if json {
        return print_json(&serde_json::json!({
            "table": spec.name.display_unquoted(),
            "from": from,
            "to": to,
            "bucket": args.bucket,
            "read_from": source,
            "total": rows.iter().map(|r| r.count).sum::<i64>(),
            "rows": rows,
        }));
    }
    let shown: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.start.to_rfc3339(),
                r.severity.clone(),
                format::count(r.count as u64),
            ]
        })
        .collect();
    print!("{}", format::table(&["bucket", "severity", "rows"], &shown));
    match source {
        rollup::Source::Rollup(v) => println!("read from rollup view {v} (exact)"),
        rollup::Source::Base => println!("read from the table (no rollup answers this range)"),
    }
    Ok(())
}

/// `strata events --user-id N`: the user's newest rows, partitions walked
/// newest to oldest.
pub async fn events(
    target: &Target,
    config: &Config,
    args: &super::EventsArgs,
    json: bool,
) -> Result<()> {
    use crate::api::audit_query::Cursor;
    let spec = config.table(args.table.as_deref())?;
    if !(1..=1000).contains(&args.limit) {
        return Err(crate::Error::Usage(
            "--limit must be between 1 and 1000".into(),
        ));
    }
    let after = match &args.cursor {
        None => None,
        Some(c) => Some(
            Cursor::decode(c)
                .ok_or_else(|| crate::Error::Usage("--cursor is not one strata gave out".into()))?,
        ),
    };
    let client = target.connect().await?;
    let (rows, next) = crate::api::user_walk::newest_for_user(
        &client,
        &spec.name,
        args.user_id,
        after,
        args.limit,
    )
    .await?;
    let next = next.map(|c| c.encode());
    if json {
        return print_json(&serde_json::json!({"items": rows, "next_cursor": next}));
    }
    let shown: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.created_at.to_rfc3339(),
                r.id.to_string(),
                r.action.clone(),
                r.severity.clone().unwrap_or_default(),
                r.status.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        format::table(
            &["created_at", "id", "action", "severity", "status"],
            &shown
        )
    );
    if let Some(c) = next {
        println!("more: --cursor {c}");
    }
    Ok(())
}
