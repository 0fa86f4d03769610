//! The CLI's adapter of the operations runtime: runs an [`Op`] as a job,
//! prints its progress lines (human output) and its result (`--json`).

use serde_json::{json, Value};

use super::{print_json, Target};
use crate::config::Config;
use crate::ops::{self, Op, Origin, Progress};
use crate::{format, Result};

/// Runs `op` from the command line. Progress goes to stdout as it happens
/// (not with `--json`); the error, recorded in the job, is returned.
pub async fn run(target: &Target, config: &Config, op: Op, json: bool) -> Result<(i64, Value)> {
    let mut client = target.connect().await?;
    let mut progress = |p: &Progress| {
        if json {
            return;
        }
        match p {
            Progress::Line { message } => println!("{message}"),
            Progress::Relation(r) => super::maintenance::print_line(r),
        }
    };
    let (id, value) = ops::run(&mut client, config, op, &Origin::cli(), &mut progress).await?;
    Ok((id, value))
}

/// Prints an operation's result: its outcome as JSON with the job id added,
/// or the caller's summary line.
pub fn done(json: bool, id: i64, value: &Value, summary: impl FnOnce() -> String) -> Result<()> {
    if json {
        let mut out = value.clone();
        match out.as_object_mut() {
            Some(map) => {
                map.insert("job_id".into(), json!(id));
            }
            None => out = json!({"job_id": id, "result": value}),
        }
        return print_json(&out);
    }
    println!("job {id}: {}", summary());
    Ok(())
}

/// The summary line of a maintain run.
pub fn maintain_summary(v: &Value) -> String {
    let steps = v["results"].as_array().map(Vec::len).unwrap_or(0);
    let mut s = if let Some(version) = v["partman_version"].as_str() {
        format!(
            "pg_partman {version} maintained {} (create_parent once, part_config, run_maintenance)",
            v["table"].as_str().unwrap_or("")
        )
    } else if steps == 0 {
        format!("{}: nothing to do", v["table"].as_str().unwrap_or(""))
    } else {
        format!(
            "{}: {steps} step(s) done",
            v["table"].as_str().unwrap_or("")
        )
    };
    if let Some(n) = v["analyzed"].as_u64().filter(|n| *n > 0) {
        s.push_str(&format!(", {} relation(s) analyzed", format::count(n)));
    }
    s
}
