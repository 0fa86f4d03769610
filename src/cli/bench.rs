//! `strata bench`.

use super::{print_json, BenchArgs, Target};
use crate::bench::{self, Options};
use crate::{Error, Result};

pub async fn run(target: &Target, args: &BenchArgs, json: bool) -> Result<()> {
    let opts = Options {
        rows: args.rows,
        runs: args.runs,
        database: args.bench_database.clone(),
        keep: args.keep,
        progress: !json,
    };
    let report = bench::run(&target.url, &opts).await?;
    if let Some(path) = &args.markdown {
        std::fs::write(path, bench::markdown(&report))
            .map_err(|e| Error::Failed(format!("writing {}: {e}", path.display())))?;
    }
    if json {
        return print_json(&report);
    }
    print!("{}", bench::human(&report));
    if let Some(path) = &args.markdown {
        println!("Markdown written to {}", path.display());
    }
    if report.kept {
        println!("The bench database {} was kept (--keep).", report.database);
    }
    Ok(())
}
