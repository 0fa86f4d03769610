//! `strata bench`: the seed's before/after table, measured on one server in
//! one run, side by side.
//!
//! Three copies of the same generated rows live in a scratch database (never
//! the user's): `seed-before` (plain table, no index on the time column),
//! `plain-indexed` (plain table with a B-tree on every filtered column) and
//! `strata` (the partitioned layout with strata's index set). Every workload
//! runs warm, K times, alternating layouts, in one session with the same
//! settings; ratios are always computed from the medians reported beside them.

mod layouts;
mod machine;
mod paired;
mod plan;
mod render;
mod rollups;
mod scratch;
mod summary;
mod upkeep;
mod workloads;

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use render::{human, markdown};
pub use summary::{ratio, Summary};

use crate::db::{DbError, IdentError};
use crate::load::LoadError;
use crate::partition::PartitionError;
use crate::schema::SchemaError;

/// Name of the scratch database unless `--bench-database` says otherwise.
pub const DEFAULT_DATABASE: &str = "strata_bench";
pub const DEFAULT_ROWS: u64 = 10_000_000;
pub const DEFAULT_RUNS: u32 = 5;
/// Seed of the generated rows: every layout holds exactly the same rows.
pub const SEED: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Ident(#[from] IdentError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Op(#[from] crate::ops::OpError),
    #[error(transparent)]
    Maintenance(#[from] crate::maintenance::MaintenanceError),
    #[error(
        "database {0} already exists and is not strata's bench database; pick another name with \
         --bench-database (the bench never writes into an existing database of yours)"
    )]
    NotOurs(String),
    #[error("{0}")]
    Usage(String),
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub rows: u64,
    pub runs: u32,
    /// Scratch database created on the target's server.
    pub database: String,
    /// Keep the scratch database afterwards (it is dropped otherwise).
    pub keep: bool,
    /// Phase lines and a load progress bar on stderr.
    pub progress: bool,
}

/// Everything one run measured. Ratios are `baseline / strata` of the
/// numbers reported next to them: above 1 strata is faster, below 1 slower.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub rows: u64,
    pub runs: u32,
    pub seed: u64,
    pub database: String,
    pub kept: bool,
    pub started_at: DateTime<Utc>,
    pub wall_ms: f64,
    pub machine: machine::Machine,
    pub data: layouts::DataShape,
    pub layouts: Vec<layouts::LayoutInfo>,
    pub method: Vec<String>,
    pub queries: Vec<workloads::QueryResult>,
    /// Rollup and read-path workloads: strata's answer against
    /// plain-indexed's base-table query, with the goals.
    pub paired: Vec<paired::PairedResult>,
    pub rollups: rollups::Rollups,
    pub index_sizes: upkeep::IndexSizes,
    pub maintenance: upkeep::Maintenance,
    pub load: upkeep::LoadRates,
}

/// Layout keys, in report order.
pub const SEED_BEFORE: &str = "seed_before";
pub const PLAIN_INDEXED: &str = "plain_indexed";
pub const STRATA: &str = "strata";

pub(crate) fn phase(progress: bool, started: Instant, what: &str) {
    if progress {
        eprintln!(
            "bench [{}] {what}",
            crate::format::duration(started.elapsed())
        );
    }
}

/// Runs the whole benchmark against the server of `admin_url`, in a scratch
/// database there. The scratch database is dropped at the end (also after a
/// failure) unless `opts.keep`.
pub async fn run(admin_url: &str, opts: &Options) -> Result<Report, BenchError> {
    if opts.rows < 10_000 {
        return Err(BenchError::Usage(format!(
            "--rows {} is too few to measure anything; use at least 10000",
            opts.rows
        )));
    }
    if opts.runs == 0 {
        return Err(BenchError::Usage("--runs must be at least 1".into()));
    }
    let scratch = scratch::Scratch::create(admin_url, &opts.database).await?;
    let result = run_in(&scratch, opts).await;
    if !opts.keep {
        if let Err(e) = scratch.drop_database().await {
            tracing::warn!(error = %e, "could not drop the bench database");
        }
    }
    result
}

async fn run_in(scratch: &scratch::Scratch, opts: &Options) -> Result<Report, BenchError> {
    let started_at = Utc::now();
    let started = Instant::now();
    let p = opts.progress;
    let mut client = scratch.connect().await?;
    workloads::session(&client).await?;
    let machine_before = machine::read(&client).await?;
    phase(
        p,
        started,
        &format!(
            "building three layouts of {} rows",
            crate::format::count(opts.rows)
        ),
    );
    let built = layouts::build(scratch, opts, started).await?;
    phase(p, started, "rollups: apply and first refresh (strata)");
    let (apply_ms, first_refresh_ms) = rollups::install(&mut client, &built).await?;
    phase(p, started, "running the query workloads");
    let queries = workloads::run_all(&client, &built, opts, started).await?;
    phase(p, started, "running the rollup and read-path workloads");
    let paired = paired::run_all(&client, &built, opts, started).await?;
    phase(p, started, "rollups: storage, refresh after new rows");
    let rollups = rollups::measure(&mut client, &built, apply_ms, first_refresh_ms).await?;
    phase(p, started, "index sizes");
    let index_sizes = upkeep::index_sizes(&client, &built).await?;
    phase(p, started, "maintenance: deletes, VACUUM, retention");
    let maintenance = upkeep::maintenance(&client, &built, started, p).await?;
    phase(p, started, "load: COPY into each indexed layout");
    let load = upkeep::load_rates(&client, &built, opts.rows).await?;
    let mut machine = machine_before;
    machine.load_average_end = machine::load_average();
    phase(p, started, "done");
    Ok(Report {
        rows: opts.rows,
        runs: opts.runs,
        seed: SEED,
        database: opts.database.clone(),
        kept: opts.keep,
        started_at,
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
        machine,
        data: built.shape.clone(),
        layouts: built.infos.clone(),
        method: method_notes(opts),
        queries,
        paired,
        rollups,
        index_sizes,
        maintenance,
        load,
    })
}

fn method_notes(opts: &Options) -> Vec<String> {
    vec![
        format!(
            "Each query: one warm-up run per layout, then {} rounds; each round runs every layout once, \
             starting with a different layout each round. Client time is measured around the query \
             including fetching every row; server time is EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) \
             Execution Time, run right after.",
            opts.runs
        ),
        "Median and p95 (nearest rank; with few runs p95 is the slowest run). Ratio = baseline median / \
         strata median: above 1 strata is faster."
            .into(),
        "One session for all layouts: synchronize_seqscans = off (otherwise repeated LIMIT seq scans start \
         where the last one stopped), TimeZone = UTC, every other setting as the server has it."
            .into(),
        "Maintenance and load figures are single measurements (they change the data), in the order listed."
            .into(),
        format!(
            "Rollup and read-path workloads run on plain-indexed and strata only, in the same rotating-order \
             rounds ({} for the rollup workloads, {} for the read path, whose times are below a millisecond), \
             after strata's default rollups were applied and refreshed once. Each answer was compared with \
             plain-indexed's before the rounds (same_answer). Ratio = plain-indexed median / strata median \
             (client time).",
            opts.runs,
            opts.runs * 4
        ),
        "The rollup version of the monthly summary counts events per day only: the original monthly \
         summary's exact count(DISTINCT user_id) cannot come from a rollup (the distinct user_id measure \
         is an hll estimate and needs an extension), so its base-table query here is the same per-day \
         count without the distinct users."
            .into(),
        "Read path: strata runs strata::api::user_walk::newest_for_user (what GET /audit-logs?user_id=N and \
         strata events --user-id N call); its client time includes the partition list's check (or, on \
         the first call, its reading) and every per-partition query; the list is kept between calls, as \
         in a long-running strata serve. plain-indexed runs the same columns and order (created_at DESC, id DESC) in \
         one statement, sent like the read path's (parse, bind and execute in one round trip).".into(),
        "From the rollup installation on, strata's writes (the maintenance DELETEs, the loads) also fire the \
         rollups' statement triggers, which build transition tables: that cost is in strata's figures. The \
         refresh measurements load the same 10,000 new rows into plain-indexed too, so both keep the same \
         rows.".into(),
    ]
}
