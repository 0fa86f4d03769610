//! The command line: clap definitions and dispatch. Handlers are thin: they
//! resolve the target, call a capability module and print its result.

mod archive;
mod bench;
mod completions;
mod convert;
mod health;
mod indexes;
mod local;
mod maintenance;
mod ops;
mod partitions;
mod report;
mod rollup;
mod schedule;
mod seal;
mod serve;
mod spec;
mod stats;
mod target;

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::load::FileFormat;
use crate::{Error, Result};

pub use target::Target;

/// strata keeps a large, append-mostly PostgreSQL table (audit_logs) fast and
/// cheap for years: partitions made ahead of time, the right indexes,
/// maintenance that never stalls writers.
#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BUILD_GIT_COMMIT"), ")"),
    propagate_version = true
)]
pub struct Cli {
    /// PostgreSQL to work on; without it strata uses its local cluster if one exists
    /// (`strata local start` or `strata demo` creates it), else exits 2.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Configuration file (default: strata.toml in the current directory, if present).
    #[arg(long, env = "STRATA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log lines on stderr as text or as JSON objects (one a line).
    #[arg(
        long,
        env = "STRATA_LOG_FORMAT",
        global = true,
        value_enum,
        default_value = "text"
    )]
    pub log_format: crate::format::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the embedded local PostgreSQL cluster (data under .strata/ or STRATA_HOME).
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
    /// Apply strata's schema migrations (audit_logs and the strata metadata schema).
    Migrate {
        /// Show what would be applied without applying it.
        #[arg(long)]
        dry_run: bool,
        /// With no --database-url: create strata's local cluster if there is
        /// none (other commands only use one that exists).
        #[arg(long)]
        local: bool,
    },
    /// Bulk-load generated rows (--rows) or an NDJSON/CSV file (--file) with COPY.
    Load(LoadArgs),
    /// Start the local cluster, migrate, load sample data and show what partitioning does.
    Demo {
        /// Rows to generate.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Throw away existing rows and load again.
        #[arg(long)]
        reload: bool,
    },
    /// Plan, apply or list the partitions of a managed table.
    Partitions {
        #[command(subcommand)]
        action: PartitionsAction,
    },
    /// Partition maintenance: create ahead (premake), move rows out of the default partition, retention.
    Maintain(PlanArgs),
    /// Plan or build strata's index set, online (CONCURRENTLY, partition by partition).
    Indexes {
        #[command(subcommand)]
        action: IndexesAction,
    },
    /// VACUUM a managed table (each partition in turn) or one partition; recorded as a job.
    Vacuum {
        /// The managed table or one of its partitions, e.g. audit_logs or audit_logs_2025_03.
        table: String,
        /// Also refresh planner statistics (VACUUM (ANALYZE); on the parent, one ANALYZE of the whole table).
        #[arg(long)]
        analyze: bool,
    },
    /// ANALYZE a managed table (its partitions and its own statistics) or one partition.
    Analyze {
        table: String,
        /// Only partitions changed since their last analyze, and the parent's own statistics when
        /// they are over a week old (what the scheduler runs).
        #[arg(long)]
        changed_only: bool,
    },
    /// REINDEX INDEX CONCURRENTLY each index of each partition (never VACUUM FULL).
    Reindex { table: String },
    /// Statistics of the managed tables: partitions, indexes, queries.
    Stats {
        #[command(subcommand)]
        action: StatsAction,
    },
    /// Partitions, indexes, queries and the partition-strategy check in one report, with
    /// recommendations and the exact command or SQL that fixes each.
    Report {
        /// Query statistics window in days.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// The maintenance schedule: list, run a job now, run the scheduler, or hand it to pg_cron.
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// Convert a plain table to the partitioned layout online: writers keep writing, nothing is lost.
    Convert {
        #[command(subcommand)]
        action: ConvertAction,
    },
    /// Maintenance jobs and their history (strata.jobs).
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Measure what partitioning buys: the same generated rows as a plain table without a time
    /// index, a plain table with B-trees, and strata's partitioned layout, in a scratch database.
    Bench(BenchArgs),
    /// Check connections, long queries, idle transactions, lock waits, wraparound, the id sequence,
    /// cache hits, replication slots, partitions ahead, the default partition and INVALID indexes.
    /// Exits 3 when a check is critical.
    Health {
        /// Judge partitions as of this time (date or RFC 3339) instead of now.
        #[arg(long, value_parser = parse_when)]
        now: Option<DateTime<Utc>>,
    },
    /// Run the admin HTTP API (see README "HTTP API"); stops on ctrl-c or SIGTERM.
    Serve(ServeArgs),
    /// API tokens: create (printed once), list, revoke.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The table spec: the one stored in the database is the source of truth once written.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Sealed months: tamper-evident, read-only closed periods (docs/seals.md).
    Seal {
        #[command(subcommand)]
        action: seal::SealAction,
    },
    /// Rollups (continuous aggregates): install, refresh, list. Views never return stale numbers.
    Rollup {
        #[command(subcommand)]
        action: RollupAction,
    },
    /// Rows per time bucket and severity, read from a rollup view (exact) when one answers the range.
    Summary(SummaryArgs),
    /// A user's newest audit rows (newest first), walking partitions newest to oldest.
    Events(EventsArgs),
    /// Old partitions as Parquet on object storage: run, list, verify, restore, search.
    Archive {
        #[command(subcommand)]
        action: archive::ArchiveAction,
    },
    /// Print shell completions: `strata completions bash > /etc/bash_completion.d/strata`.
    Completions { shell: completions::Shell },
    /// Print the man page: `strata man > /usr/local/share/man/man1/strata.1`.
    Man,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default: [api] bind in strata.toml, else 127.0.0.1:8000).
    #[arg(long)]
    pub bind: Option<String>,
    /// Database connections at most; each running job holds one.
    #[arg(long, default_value_t = 16)]
    pub pool_size: usize,
    /// Seconds a request may take before it is answered 503 (jobs run on after their 202).
    #[arg(long, default_value_t = 30)]
    pub request_timeout: u64,
    /// At shutdown, seconds running jobs may go on before they are cancelled (and recorded as such).
    #[arg(long, default_value_t = 30)]
    pub job_grace: u64,
    /// Open HTTP connections at most; more are closed as they arrive.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (slowloris).
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Do not run the maintenance scheduler in this process (by default every `serve` runs it;
    /// several processes still run each occurrence once).
    #[arg(long)]
    pub no_scheduler: bool,
    /// Serve HTTPS with this certificate (PEM, chain allowed); needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM); needs --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Milliseconds an accepted token is used without a new lookup (tests shorten it).
    #[arg(long, default_value_t = 5000, hide = true)]
    pub token_cache_ms: u64,
    /// Refused requests a source network may make at once before 429s (1 more a second);
    /// a fuzzer's CI run raises it.
    #[arg(long, default_value_t = 20, hide = true)]
    pub failed_auth_burst: u32,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it once; only its SHA-256 is stored.
    Create {
        /// admin (everything), reader (stats, report, health, jobs, audit-log reads) or writer (POST /audit-logs).
        #[arg(long, value_parser = ["admin", "reader", "writer"])]
        role: String,
        /// A name to recognise it by in `token list`.
        #[arg(long)]
        name: Option<String>,
    },
    /// Tokens with their role, creation, last use and revocation.
    List,
    /// Revoke a token by id (from `token list`); requests with it get 401 from then on.
    Revoke { id: i64 },
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Rows in each layout.
    #[arg(long, default_value_t = crate::bench::DEFAULT_ROWS)]
    pub rows: u64,
    /// Timed runs of each query on each layout (after one warm-up run).
    #[arg(long, default_value_t = crate::bench::DEFAULT_RUNS)]
    pub runs: u32,
    /// Also write the results as a Markdown table (for a README) to this file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Keep the scratch database afterwards (it is dropped otherwise).
    #[arg(long)]
    pub keep: bool,
    /// Name of the scratch database created on the server. An existing database of that name is
    /// recreated only if it is strata's own bench database; any other is refused.
    #[arg(long, default_value = crate::bench::DEFAULT_DATABASE)]
    pub bench_database: String,
}

#[derive(Debug, Subcommand)]
pub enum StatsAction {
    /// Per partition: bounds, rows (estimate), table/index/toast/total size, dead tuples, last vacuum/analyze.
    Partitions,
    /// Per index, summed over partitions: size, scans, validity; flags unused, duplicate, invalid, bloated.
    Indexes,
    /// Slowest and most frequent statements on the managed tables over the last N days (pg_stat_statements).
    Queries {
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Store a pg_stat_statements reading now (maintain and the scheduler do this too).
    Snapshot,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Each job with its schedule, next run and last result.
    List,
    /// Run a job now (under the same exactly-once guard as the scheduler).
    Run { job: String },
    /// Run the scheduler in the foreground until SIGTERM (`strata serve` runs it too).
    Daemon {
        /// Handle the startup catch-up and anything due now, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Register the original design's jobs with pg_cron (idempotent), plus a pruner of its run history.
    InstallPgCron {
        /// Remove strata's pg_cron jobs instead.
        #[arg(long)]
        uninstall: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConvertArgs {
    /// The plain table to convert (default: the first configured table).
    #[arg(long)]
    pub table: Option<String>,
    /// Rows per backfill batch to start with (adapted to ~0.5 s per batch).
    #[arg(long, default_value_t = 10_000)]
    pub batch_rows: i64,
    /// Copy at most this many rows per second.
    #[arg(long)]
    pub max_rate: Option<u64>,
    /// Stop the backfill after this many batches (resume continues).
    #[arg(long, hide = true)]
    pub max_batches: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ConvertAction {
    /// Check preconditions, create the partitioned table and the mirror trigger.
    Start(ConvertArgs),
    /// Phase, progress, rate, ETA and the last error.
    Status(ConvertArgs),
    /// Continue from the last committed batch: backfill, indexes, verify.
    Resume(ConvertArgs),
    /// Compare both tables per id range (counts and content hashes) in one snapshot.
    Verify(ConvertArgs),
    /// Swap the tables in one short transaction (lock_timeout, retried).
    Cutover(ConvertArgs),
    /// Swap back (until cleanup); writes made since cutover are kept.
    Rollback(ConvertArgs),
    /// Drop the mirror triggers and the old table.
    Cleanup {
        #[command(flatten)]
        args: ConvertArgs,
        /// Required: the old table is dropped for good.
        #[arg(long)]
        yes: bool,
    },
    /// start, backfill, indexes, verify and cutover in one go (stops before cleanup).
    Run(ConvertArgs),
}

impl Command {
    /// Commands on the local cluster itself, where no table lock applies.
    fn is_local(&self) -> bool {
        matches!(self, Command::Local { .. } | Command::Bench(_))
    }
}

impl ConvertAction {
    pub fn args(&self) -> &ConvertArgs {
        match self {
            ConvertAction::Start(a)
            | ConvertAction::Status(a)
            | ConvertAction::Resume(a)
            | ConvertAction::Verify(a)
            | ConvertAction::Cutover(a)
            | ConvertAction::Rollback(a)
            | ConvertAction::Run(a) => a,
            ConvertAction::Cleanup { args, .. } => args,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// The newest jobs first.
    List {
        /// Only jobs of this kind (vacuum, analyze, reindex, maintain, ...).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One job with its result.
    Show { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum IndexesAction {
    /// Show which indexes are missing, INVALID or in conflict.
    Plan {
        #[arg(long)]
        table: Option<String>,
    },
    /// Build what is missing: ON ONLY the parent, then CONCURRENTLY per partition and ATTACH.
    Apply {
        #[arg(long)]
        table: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[arg(long)]
    pub table: Option<String>,
    #[arg(long)]
    pub user_id: i64,
    /// Rows per page (1..=1000).
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    /// The `more: --cursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    #[arg(long)]
    pub table: Option<String>,
    /// Start, inclusive (default: 30 days before --to).
    #[arg(long, value_parser = parse_when)]
    pub from: Option<DateTime<Utc>>,
    /// End, exclusive (default: the end of today, UTC).
    #[arg(long, value_parser = parse_when)]
    pub to: Option<DateTime<Utc>>,
    /// hour, day or month (UTC).
    #[arg(long, default_value = "day", value_parser = ["hour", "day", "month"])]
    pub bucket: String,
}

#[derive(Debug, Subcommand)]
pub enum RollupAction {
    /// Create (or rebuild, when its definition changed) each declared rollup and the invalidation triggers.
    Apply {
        #[arg(long)]
        table: Option<String>,
    },
    /// Rematerialize invalidated ranges and finished buckets (installs missing rollups first).
    Refresh {
        #[arg(long)]
        table: Option<String>,
    },
    /// Declared rollups with their watermark, size and pending invalidations.
    List {
        #[arg(long)]
        table: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LocalAction {
    /// Initialize (first time) and start the cluster; waits until it accepts connections.
    Start,
    /// Stop the cluster.
    Stop,
    /// Say whether the cluster is running, and its URL.
    Status,
    /// Print the connection URL (without the password; it goes into a PGPASSFILE).
    Url {
        /// Put the password into the printed URL.
        #[arg(long)]
        show_password: bool,
    },
    /// Stop the cluster and delete its data.
    Destroy {
        /// Required: the data is deleted for good.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Generate this many synthetic rows.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    pub rows: Option<u64>,
    /// First timestamp of generated rows (date or RFC 3339; default: the table's start).
    #[arg(long, value_parser = parse_when)]
    pub from: Option<DateTime<Utc>>,
    /// Timestamp generated rows stay before (default: now).
    #[arg(long, value_parser = parse_when)]
    pub to: Option<DateTime<Utc>>,
    /// Seed of the generator, for repeatable data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Load this NDJSON (.ndjson/.jsonl) or CSV (.csv, with a header) file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// File format, when the file name does not tell.
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Skip (and count) malformed lines instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Set bad lines aside in this file (JSON lines: line, field, reason, text) and go on.
    #[arg(long, requires = "file", conflicts_with = "skip_bad")]
    pub rejects: Option<PathBuf>,
    /// Rows per COPY batch (each batch is one transaction).
    #[arg(long, default_value_t = crate::load::DEFAULT_BATCH_ROWS)]
    pub batch_rows: usize,
    /// Managed table to load into (default: the first configured table).
    #[arg(long)]
    pub table: Option<String>,
    /// After the load, time the server-side ceiling (INSERT ... SELECT generate_series of as many rows,
    /// same table and indexes, rolled back) and print both rates.
    #[arg(long, requires = "rows")]
    pub compare: bool,
}

#[derive(Debug, Subcommand)]
pub enum PartitionsAction {
    /// Show what maintenance would do.
    Plan {
        #[command(flatten)]
        args: PlanArgs,
        /// Print the SQL of each step.
        #[arg(long)]
        dry_run: bool,
    },
    /// Do it (same as `strata maintain`).
    Apply(PlanArgs),
    /// Show partitions with bounds, rows and sizes.
    List {
        #[arg(long)]
        table: Option<String>,
        /// Count rows exactly (scans every partition).
        #[arg(long)]
        exact: bool,
        /// List the partitions retention detached (renamed `<name>_detached`, kept until
        /// `detached_drop_after` or a manual DROP).
        #[arg(long, conflicts_with = "exact")]
        detached: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Managed table (default: the first managed table).
    #[arg(long)]
    pub table: Option<String>,
    /// Pretend it is this time (date or RFC 3339) for creating partitions, e.g. next month's
    /// ahead of time. Detach and drop always follow the real clock: with --now they are only
    /// shown as what would happen then.
    #[arg(long, value_parser = parse_when)]
    pub now: Option<DateTime<Utc>>,
    /// Create more than `max_new_partitions` partitions in this run.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// The table spec in effect, key by key, with where each value comes from (the database,
    /// the configuration, the defaults) and what `config apply` would change.
    Show,
    /// Store the configuration's table spec in the database (the source of truth), as a job.
    Apply {
        #[arg(long)]
        table: Option<String>,
    },
}

/// `2025-12-15` (midnight UTC) or an RFC 3339 timestamp.
pub fn parse_when(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(crate::partition::period::midnight)
        .map_err(|_| {
            format!(
                "{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 timestamp (2025-12-15T10:00:00Z)"
            )
        })
}

/// Runs a parsed command line. A statement that gave up waiting for a lock
/// (the session's `lock_timeout`) is reported with the sessions in the way.
pub async fn run(cli: Cli) -> Result<()> {
    let result = dispatch(&cli).await;
    match result {
        Err(e) if lock_timed_out(&e) && !cli.command.is_local() => {
            Err(name_blockers(&cli, e).await)
        }
        other => other,
    }
}

/// Whether a server's "lock timeout" is somewhere in the error's causes.
fn lock_timed_out(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(pg) = c.downcast_ref::<tokio_postgres::Error>() {
            if pg.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                return true;
            }
        }
        if let Some(crate::db::DbError::Blocked { .. }) = c.downcast_ref::<crate::db::DbError>() {
            // Already names its blockers.
            return false;
        }
        cause = c.source();
    }
    false
}

async fn name_blockers(cli: &Cli, e: Error) -> Error {
    let Ok(target) = Target::resolve(cli, false).await else {
        return e;
    };
    let Ok(client) = target.connect().await else {
        return e;
    };
    let specs = crate::ops::spec::stored_specs(&client)
        .await
        .unwrap_or_else(|_| vec![crate::config::TableSpec::seed_default()]);
    let mut holders = Vec::new();
    for spec in &specs {
        holders.extend(crate::db::blockers(&client, &spec.name).await);
    }
    let code = e.exit_code();
    let text = format!("{e}; {}", crate::db::describe_blockers(&holders));
    match code {
        3 => Error::Precondition(text),
        2 => Error::Usage(text),
        _ => Error::Failed(text),
    }
}

async fn dispatch(cli: &Cli) -> Result<()> {
    // vars_os: a non-UTF-8 variable elsewhere in the environment must not
    // abort strata; a non-UTF-8 STRATA_* value is reported as such.
    let env = std::env::vars_os()
        .filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("STRATA_")))
        .map(|(k, v)| {
            let k = k.to_string_lossy().into_owned();
            let v = v
                .into_string()
                .unwrap_or_else(|v| v.to_string_lossy().into_owned());
            (k, v)
        });
    let config = Config::load(cli.config.as_deref(), env)?;
    match &cli.command {
        Command::Local { action } => local::run(action, cli.json).await,
        Command::Migrate { dry_run, local } => {
            let target = if *local {
                Target::resolve_or_create(cli, false).await?
            } else {
                Target::resolve(cli, false).await?
            };
            local::migrate(&target, *dry_run, cli.json).await
        }
        Command::Load(args) => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            partitions::load(&target, &config, args, cli.json).await
        }
        Command::Demo { rows, reload } => {
            let target = Target::resolve_or_create(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            crate::demo::run(&target, &config, *rows, *reload, cli.json).await
        }
        Command::Partitions { action } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            match action {
                PartitionsAction::Plan { args, dry_run } => {
                    partitions::plan(&target, &config, args, *dry_run, cli.json).await
                }
                PartitionsAction::Apply(args) => {
                    partitions::apply(&target, &config, args, cli.json).await
                }
                PartitionsAction::List {
                    table,
                    exact,
                    detached,
                } => {
                    if *detached {
                        partitions::list_detached(&target, &config, table.as_deref(), cli.json)
                            .await
                    } else {
                        partitions::list(&target, &config, table.as_deref(), *exact, cli.json).await
                    }
                }
            }
        }
        Command::Indexes { action } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            match action {
                IndexesAction::Plan { table } => {
                    indexes::plan(&target, &config, table.as_deref(), cli.json).await
                }
                IndexesAction::Apply { table } => {
                    indexes::apply(&target, &config, table.as_deref(), cli.json).await
                }
            }
        }
        Command::Vacuum { table, analyze } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            let op = crate::ops::Op::Vacuum {
                target: table.clone(),
                analyze: *analyze,
            };
            maintenance::run(&target, &config, op, cli.json).await
        }
        Command::Analyze {
            table,
            changed_only,
        } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            let scope = if *changed_only {
                crate::maintenance::AnalyzeScope::Changed
            } else {
                crate::maintenance::AnalyzeScope::All
            };
            let op = crate::ops::Op::Analyze {
                target: table.clone(),
                scope,
            };
            maintenance::run(&target, &config, op, cli.json).await
        }
        Command::Reindex { table } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            let op = crate::ops::Op::Reindex {
                target: table.clone(),
            };
            maintenance::run(&target, &config, op, cli.json).await
        }
        Command::Config { action } => {
            let target = Target::resolve(cli, true).await?;
            match action {
                ConfigAction::Show => spec::show(&target, &config, cli.json).await,
                ConfigAction::Apply { table } => {
                    spec::apply(&target, &config, table.clone(), cli.json).await
                }
            }
        }
        Command::Stats { action } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            match action {
                StatsAction::Partitions => stats::partitions(&target, &config, cli.json).await,
                StatsAction::Indexes => stats::indexes(&target, &config, cli.json).await,
                StatsAction::Queries { days, limit } => {
                    stats::queries(&target, &config, *days, *limit, cli.json).await
                }
                StatsAction::Snapshot => stats::snapshot(&target, &config, cli.json).await,
            }
        }
        Command::Report { days } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            if *days == 0 {
                return Err(Error::Usage("--days must be at least 1".into()));
            }
            report::run(&target, &config, *days, cli.json).await
        }
        Command::Jobs { action } => {
            let target = Target::resolve(cli, true).await?;
            match action {
                JobsAction::List { kind, limit } => {
                    maintenance::list(&target, kind.as_deref(), *limit, cli.json).await
                }
                JobsAction::Show { id } => maintenance::show(&target, *id, cli.json).await,
            }
        }
        Command::Schedule { action } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            match action {
                ScheduleAction::List => schedule::list(&target, &config, cli.json).await,
                ScheduleAction::Run { job } => schedule::run(&target, &config, job, cli.json).await,
                ScheduleAction::Daemon { once } => schedule::daemon(&target, &config, *once).await,
                ScheduleAction::InstallPgCron { uninstall } => {
                    schedule::install_pg_cron(&target, &config, *uninstall, cli.json).await
                }
            }
        }
        Command::Convert { action } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            convert::run(&target, &config, action, cli.json).await
        }
        Command::Health { now } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            health::run(&target, &config, *now, cli.json).await
        }
        Command::Bench(args) => {
            let target = Target::resolve(cli, false).await?;
            bench::run(&target, args, cli.json).await
        }
        Command::Serve(args) => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            serve::serve(&target, config, args).await
        }
        Command::Token { action } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            match action {
                TokenAction::Create { role, name } => {
                    serve::token_create(&target, &config, role, name.as_deref(), cli.json).await
                }
                TokenAction::List => serve::token_list(&target, cli.json).await,
                TokenAction::Revoke { id } => {
                    serve::token_revoke(&target, &config, *id, cli.json).await
                }
            }
        }
        Command::Maintain(args) => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            partitions::apply(&target, &config, args, cli.json).await
        }
        Command::Seal { action } => {
            if matches!(action, seal::SealAction::Keygen { .. }) {
                return seal::run(None, &config, action, cli.json).await;
            }
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            seal::run(Some(&target), &config, action, cli.json).await
        }
        Command::Rollup { action } => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            match action {
                RollupAction::Apply { table } => {
                    rollup::apply(&target, &config, table.as_deref(), cli.json).await
                }
                RollupAction::Refresh { table } => {
                    rollup::refresh(&target, &config, table.as_deref(), cli.json).await
                }
                RollupAction::List { table } => {
                    rollup::list(&target, &config, table.as_deref(), cli.json).await
                }
            }
        }
        Command::Summary(args) => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            rollup::summary(&target, &config, args, cli.json).await
        }
        Command::Events(args) => {
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            rollup::events(&target, &config, args, cli.json).await
        }
        Command::Archive { action } => {
            if matches!(action, archive::ArchiveAction::Cat { .. }) {
                return archive::cat(action).await;
            }
            let target = Target::resolve(cli, true).await?;
            let config = config_in_effect(&target, &config).await?;
            archive::run(&target, &config, action, cli.json).await
        }
        Command::Completions { shell } => completions::print(*shell),
        Command::Man => completions::man(),
    }
}

/// The configuration with the table specs in effect: the stored ones (the
/// source of truth), checked against what the configuration writes.
async fn config_in_effect(target: &Target, config: &Config) -> Result<Config> {
    let client = target.connect().await?;
    let mut config = config.clone();
    config.tables = crate::ops::effective_specs(&client, &config).await?;
    Ok(config)
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Failed(e.to_string()))?;
    println!("{text}");
    Ok(())
}
