//! `strata config show|apply`: the table spec in effect, and storing a new one.

use super::{print_json, Target};
use crate::config::Config;
use crate::ops::{self, Op};
use crate::{format, Result};

pub async fn show(target: &Target, config: &Config, json: bool) -> Result<()> {
    let client = target.connect().await?;
    let shown = ops::spec::show_specs(&client, config).await?;
    if json {
        return print_json(&shown);
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|s| {
            vec![
                s.table.clone(),
                s.key.clone(),
                s.value.clone(),
                s.source.to_string(),
                s.pending.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!(
        "{}",
        format::table(
            &[
                "table",
                "key",
                "value",
                "from",
                "configuration says (config apply)"
            ],
            &rows
        )
    );
    if shown.iter().any(|s| s.pending.is_some()) {
        eprintln!(
            "the configuration differs from the stored spec: commands refuse to run until `strata config apply` stores it (or the configuration is changed back)"
        );
    }
    Ok(())
}

pub async fn apply(
    target: &Target,
    config: &Config,
    table: Option<String>,
    json: bool,
) -> Result<()> {
    let (id, value) = super::ops::run(target, config, Op::ConfigApply { table }, json).await?;
    super::ops::done(json, id, &value, || {
        let changes = value["changes"].as_array().cloned().unwrap_or_default();
        let table = value["table"].as_str().unwrap_or("");
        if value["previous"].is_null() {
            format!("stored the spec of {table} (first registration)")
        } else if changes.is_empty() {
            format!("{table}: the stored spec already equals the configuration")
        } else {
            let keys: Vec<String> = changes
                .iter()
                .map(|c| {
                    format!(
                        "{} {} -> {}",
                        c["key"].as_str().unwrap_or(""),
                        c["stored"].as_str().unwrap_or(""),
                        c["configured"].as_str().unwrap_or("")
                    )
                })
                .collect();
            format!("stored the new spec of {table}: {}", keys.join(", "))
        }
    })
}
