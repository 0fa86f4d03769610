//! `strata.toml`: the managed tables and the settings, with the seed's defaults.
//!
//! Parsing is two-step: TOML (and `STRATA_*` overrides) into a raw shape that
//! refuses unknown keys, then validation into typed values, so every bad value
//! is reported with the key it came from and what that key accepts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::db::{Ident, LockPolicy, QualifiedName};

pub const DEFAULT_CONFIG_FILE: &str = "strata.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Partition width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    Week,
    Month,
}

impl Interval {
    pub const ACCEPTED: &'static str =
        "\"1 day\" (or \"daily\"), \"1 week\" (or \"weekly\"), \"1 month\" (or \"monthly\")";

    pub fn parse(s: &str) -> Option<Interval> {
        match normalize(s).as_str() {
            "1 day" | "day" | "daily" | "1 days" => Some(Interval::Day),
            "1 week" | "week" | "weekly" | "1 weeks" => Some(Interval::Week),
            "1 month" | "month" | "monthly" | "1 months" | "1 mon" => Some(Interval::Month),
            _ => None,
        }
    }

    /// The name pg_partman 4.x expects for `p_interval`.
    pub fn partman_name(self) -> &'static str {
        match self {
            Interval::Day => "daily",
            Interval::Week => "weekly",
            Interval::Month => "monthly",
        }
    }

    pub fn default_template(self) -> &'static str {
        match self {
            Interval::Day => "{table}_{YYYY}_{MM}_{DD}",
            Interval::Week => "{table}_{IYYY}_w{IW}",
            Interval::Month => "{table}_{YYYY}_{MM}",
        }
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Interval::Day => "1 day",
            Interval::Week => "1 week",
            Interval::Month => "1 month",
        })
    }
}

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// How long partitions are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "unit", content = "count", rename_all = "lowercase")]
pub enum Retention {
    Days(u32),
    Weeks(u32),
    Months(u32),
}

impl Retention {
    pub const ACCEPTED: &'static str = "\"none\" or a count of days, weeks or months such as \"90 days\", \"12 weeks\", \"24 months\" (at most 100 years)";

    pub fn parse(s: &str) -> Option<Option<Retention>> {
        let n = normalize(s);
        if n == "none" || n.is_empty() {
            return Some(None);
        }
        let (count, unit) = n.split_once(' ')?;
        let count: u32 = count.parse().ok().filter(|c| *c > 0)?;
        // Past a century the date arithmetic would leave chrono's range; no
        // audit log keeps partitions that long.
        let max = match unit {
            "day" | "days" => 36_600,
            "week" | "weeks" => 5_220,
            _ => 1_200,
        };
        if count > max {
            return None;
        }
        let r = match unit {
            "day" | "days" => Retention::Days(count),
            "week" | "weeks" => Retention::Weeks(count),
            "month" | "months" | "mon" | "mons" => Retention::Months(count),
            _ => return None,
        };
        Some(Some(r))
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retention::Days(1) => f.write_str("1 day"),
            Retention::Weeks(1) => f.write_str("1 week"),
            Retention::Months(1) => f.write_str("1 month"),
            Retention::Days(n) => write!(f, "{n} days"),
            Retention::Weeks(n) => write!(f, "{n} weeks"),
            Retention::Months(n) => write!(f, "{n} months"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionMode {
    Detach,
    Drop,
    /// Archive to `archive_to`, verify, then drop (the archive run does it;
    /// maintain leaves such partitions alone).
    Archive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Native,
    Partman,
}

/// One managed table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    pub name: QualifiedName,
    pub time_column: Ident,
    pub interval: Interval,
    pub start: NaiveDate,
    pub premake: u32,
    pub retention: Option<Retention>,
    pub retention_mode: RetentionMode,
    pub name_template: String,
    pub backend: Backend,
    pub brin_pages_per_range: u32,
    /// GIN operator class of the `details` index.
    pub details_opclass: GinOpclass,
    /// At most this many partitions created by one run without `--yes`.
    #[serde(default = "default_max_new_partitions")]
    pub max_new_partitions: u32,
    /// Detached partitions (renamed out of the live names and recorded in
    /// `strata.detached_partitions`) are dropped this long after their
    /// detach; `None` keeps them until someone drops them.
    #[serde(default)]
    pub detached_drop_after: Option<Retention>,
    /// Continuous aggregates of the table (`[[table.rollups]]`); a spec
    /// stored before rollups existed reads as the defaults.
    #[serde(default = "RollupSpec::defaults")]
    pub rollups: Vec<RollupSpec>,
    /// Partitions whose whole range is older than this are archived to
    /// `archive_to` (Parquet); `None` with `retention_mode = "archive"`
    /// means the retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_after: Option<Retention>,
    /// `file:///abs/path` or `s3://bucket/prefix`, validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_to: Option<String>,
}

pub const DEFAULT_MAX_NEW_PARTITIONS: u32 = 48;

fn default_max_new_partitions() -> u32 {
    DEFAULT_MAX_NEW_PARTITIONS
}

/// GIN operator class for JSONB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GinOpclass {
    /// Smaller and faster; serves `@>`, `@?`, `@@` but not `?`, `?|`, `?&`.
    JsonbPathOps,
    /// PostgreSQL's default; also serves key existence.
    JsonbOps,
}

impl GinOpclass {
    pub fn keyword(self) -> &'static str {
        match self {
            GinOpclass::JsonbPathOps => "jsonb_path_ops",
            GinOpclass::JsonbOps => "jsonb_ops",
        }
    }
}

impl TableSpec {
    /// The seed's `audit_logs`: monthly from 2025-01, six months ahead, BRIN 128.
    pub fn seed_default() -> TableSpec {
        TableSpec {
            name: QualifiedName::new("public", "audit_logs").expect("static name"),
            time_column: Ident::new("created_at").expect("static name"),
            interval: Interval::Month,
            start: NaiveDate::from_ymd_opt(2025, 1, 1).expect("static date"),
            premake: 6,
            retention: None,
            retention_mode: RetentionMode::Detach,
            name_template: Interval::Month.default_template().to_string(),
            backend: Backend::Native,
            brin_pages_per_range: 128,
            details_opclass: GinOpclass::JsonbPathOps,
            max_new_partitions: DEFAULT_MAX_NEW_PARTITIONS,
            detached_drop_after: None,
            rollups: RollupSpec::defaults(),
            archive_after: None,
            archive_to: None,
        }
    }
}

// ---- rollups (`[[table.rollups]]`) ----------------------------------------

/// The time bucket of a rollup, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    /// The `date_trunc` field name (a keyword from this enum, never input).
    pub fn keyword(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    pub fn interval(self) -> &'static str {
        match self {
            Bucket::Hour => "1 hour",
            Bucket::Day => "1 day",
        }
    }
}

/// What a rollup stores per bucket and dimension values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Count,
    /// `distinct user_id`: an hll sketch, so approximate (needs the `hll`
    /// extension).
    DistinctUserId,
}

/// One continuous aggregate of a managed table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollupSpec {
    pub name: Ident,
    pub bucket: Bucket,
    pub dimensions: Vec<Ident>,
    pub measures: Vec<Measure>,
}

/// Rollup names become part of relation names (`<table>_<name>`), so they
/// stay short and plain.
const MAX_ROLLUP_NAME: usize = 30;

impl RollupSpec {
    /// What `summary`, `/audit-logs/summary` and the report read out of the
    /// box: counts by hour (severity) and by day (severity, status). Counts
    /// only, so the defaults never need an extension. The hourly one has a
    /// single dimension because its size is buckets × dimension values: with
    /// `action` as well it was 5 % of the table at 1M rows.
    pub fn defaults() -> Vec<RollupSpec> {
        let id = |s: &str| Ident::new(s).expect("static name");
        vec![
            RollupSpec {
                name: id("hourly"),
                bucket: Bucket::Hour,
                dimensions: vec![id("severity")],
                measures: vec![Measure::Count],
            },
            RollupSpec {
                name: id("daily"),
                bucket: Bucket::Day,
                dimensions: vec![id("severity"), id("status")],
                measures: vec![Measure::Count],
            },
        ]
    }

    pub fn has(&self, m: Measure) -> bool {
        self.measures.contains(&m)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollup {
    name: Option<String>,
    bucket: Option<String>,
    dimensions: Option<Vec<String>>,
    measures: Option<Vec<String>>,
}

fn validate_rollups(
    raw: Option<Vec<RawRollup>>,
    time_column: &Ident,
    i: usize,
) -> Result<Vec<RollupSpec>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(RollupSpec::defaults());
    };
    let mut out: Vec<RollupSpec> = Vec::with_capacity(raw.len());
    for (j, r) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("table[{i}].rollups[{j}].{k}");
        let name = r
            .name
            .ok_or_else(|| invalid(key("name"), "a rollup needs a name, e.g. \"hourly\""))?;
        let plain = !name.is_empty()
            && name.len() <= MAX_ROLLUP_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(invalid(
                key("name"),
                format!("{name:?} is not a rollup name; expected lowercase letters, digits and _ (at most {MAX_ROLLUP_NAME}), starting with a letter"),
            ));
        }
        if out.iter().any(|o| o.name.as_str() == name) {
            return Err(invalid(key("name"), format!("{name:?} is declared twice")));
        }
        let bucket = match r.bucket.as_deref().map(normalize).as_deref() {
            Some("hour") => Bucket::Hour,
            Some("day") => Bucket::Day,
            other => {
                return Err(invalid(
                    key("bucket"),
                    format!(
                        "{} is not a bucket; accepted: \"hour\", \"day\"",
                        other.map_or("nothing".into(), |o| format!("{o:?}"))
                    ),
                ))
            }
        };
        let mut dimensions: Vec<Ident> = Vec::new();
        for d in r.dimensions.unwrap_or_default() {
            let d = Ident::new(d.trim()).map_err(|e| invalid(key("dimensions"), e.to_string()))?;
            if d == *time_column {
                return Err(invalid(
                    key("dimensions"),
                    format!(
                        "{} is the time column; the bucket already groups by it",
                        d.as_str()
                    ),
                ));
            }
            if dimensions.contains(&d) {
                return Err(invalid(
                    key("dimensions"),
                    format!("{} is listed twice", d.as_str()),
                ));
            }
            dimensions.push(d);
        }
        let mut measures = Vec::new();
        for m in r.measures.unwrap_or_else(|| vec!["count".into()]) {
            let m = match normalize(&m).as_str() {
                "count" => Measure::Count,
                "distinct user_id" => Measure::DistinctUserId,
                other => {
                    return Err(invalid(
                        key("measures"),
                        format!("{other:?} is not a measure; accepted: \"count\", \"distinct user_id\" (needs the hll extension)"),
                    ))
                }
            };
            if !measures.contains(&m) {
                measures.push(m);
            }
        }
        // The view and the refresh always keep the count: it is what makes a
        // bucket's presence exact.
        if !measures.contains(&Measure::Count) {
            measures.insert(0, Measure::Count);
        }
        out.push(RollupSpec {
            name: Ident::new(name).expect("checked above"),
            bucket,
            dimensions,
            measures,
        });
    }
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaintenanceConfig {
    pub schedule: String,
    pub vacuum_schedule: String,
    /// When the rollups are refreshed (every few minutes: the views stay
    /// exact regardless; a refresh keeps their live part small).
    pub rollup_schedule: String,
    pub lock: LockPolicy,
    /// Rows per committed batch when moving rows out of the default partition.
    pub move_batch_rows: u64,
    /// Finished jobs kept in `strata.jobs`: at most this many per kind...
    pub job_history: u64,
    /// ...and none older than this many days.
    pub job_history_days: u64,
    /// IANA time zone of `schedule`, `vacuum_schedule` and jobs without their own.
    pub timezone: String,
    /// A missed occurrence still runs at startup when it is at most this old;
    /// older ones are recorded as missed.
    pub catch_up: Duration,
    /// Extra scheduled jobs.
    pub jobs: Vec<JobSpec>,
}

/// What a scheduled job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobCommand {
    /// Partition maintenance, a pg_stat_statements reading, ANALYZE of changed partitions.
    Maintain,
    /// VACUUM (ANALYZE) of the managed tables.
    Vacuum,
    /// ANALYZE of changed partitions (and the parent when stale).
    Analyze,
    /// REINDEX CONCURRENTLY of every partition index.
    Reindex,
    /// A pg_stat_statements reading.
    Snapshot,
    /// Seal closed periods (`strata seal run`).
    Seal,
    /// Verify every seal (`strata seal verify`).
    SealVerify,
    /// Refresh of the table's rollups.
    RollupRefresh,
    /// `archive run` of the tables with archive_to (archive, verify, and with
    /// retention_mode = "archive" drop).
    Archive,
}

impl JobCommand {
    pub const ALL: &'static [(&'static str, JobCommand)] = &[
        ("maintain", JobCommand::Maintain),
        ("vacuum", JobCommand::Vacuum),
        ("analyze", JobCommand::Analyze),
        ("reindex", JobCommand::Reindex),
        ("snapshot", JobCommand::Snapshot),
        ("seal", JobCommand::Seal),
        ("seal_verify", JobCommand::SealVerify),
        ("rollup_refresh", JobCommand::RollupRefresh),
        ("archive", JobCommand::Archive),
    ];

    pub fn name(self) -> &'static str {
        JobCommand::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(n, _)| *n)
            .expect("listed")
    }
}

/// One scheduled job: the two built-ins (`maintain`, `vacuum`) and `[[maintenance.jobs]]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobSpec {
    pub name: String,
    pub schedule: String,
    pub timezone: String,
    pub command: JobCommand,
    /// A managed table or one of its partitions; `None`: every managed table.
    pub table: Option<String>,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            schedule: "0 2 * * *".into(),
            vacuum_schedule: "0 3 * * 0".into(),
            rollup_schedule: "*/5 * * * *".into(),
            lock: LockPolicy::default(),
            move_batch_rows: 10_000,
            job_history: 1000,
            job_history_days: 90,
            timezone: "UTC".into(),
            catch_up: Duration::from_secs(6 * 3600),
            jobs: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiConfig {
    pub bind: String,
    /// How far before now a writer's `created_at` may lie; `None`: the
    /// table's retention, else [`ApiConfig::DEFAULT_ACCEPT_PAST_DAYS`].
    pub accept_past: Option<Duration>,
    /// How far after now a writer's `created_at` may lie (clock skew).
    pub accept_future: Duration,
    /// The database role API requests run as (`""`: the login role); see
    /// `api::privileges`.
    pub role: String,
}

impl ApiConfig {
    pub const DEFAULT_ACCEPT_PAST_DAYS: u64 = 30;

    /// The past bound for rows of `table`: older rows would be retention's
    /// to remove at once (or, without retention, are a month late).
    pub fn accept_past(&self, table: &TableSpec) -> Duration {
        const DAY: u64 = 86_400;
        self.accept_past.unwrap_or_else(|| {
            Duration::from_secs(match table.retention {
                Some(Retention::Days(n)) => u64::from(n) * DAY,
                Some(Retention::Weeks(n)) => u64::from(n) * 7 * DAY,
                // The longest month, so the window never refuses a row retention keeps.
                Some(Retention::Months(n)) => u64::from(n) * 31 * DAY,
                None => Self::DEFAULT_ACCEPT_PAST_DAYS * DAY,
            })
        })
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            bind: "127.0.0.1:8000".into(),
            accept_past: None,
            accept_future: Duration::from_secs(5 * 60),
            role: crate::api::privileges::DEFAULT_ROLE.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub tables: Vec<TableSpec>,
    pub maintenance: MaintenanceConfig,
    pub api: ApiConfig,
    pub health: HealthThresholds,
    /// Where the configuration came from, for messages.
    pub source: Option<PathBuf>,
    /// Whether `tables` were written by the user (a `[[table]]` in the file
    /// or a `STRATA_*` table override) rather than filled with defaults. Only
    /// written specs are compared with the stored ones; defaults never
    /// override what the database holds.
    pub tables_explicit: bool,
    /// `seal_after`, `seal_key_file`, `seal_anchor_to`.
    pub seal: SealConfig,
    /// `[alerts]`: the signed webhook `strata serve` posts status changes to.
    pub alerts: AlertsConfig,
}

/// `[alerts]` (README "Alerts"): `strata serve` evaluates the health checks
/// every `interval` and posts each status change to `webhook_url`, signed
/// with HMAC-SHA256 of the body under the secret.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertsConfig {
    /// `None`: no webhook (the checks still feed `/metrics`).
    pub webhook_url: Option<String>,
    /// Never serialized: the secret stays out of any printed configuration.
    #[serde(skip)]
    pub secret: Option<WebhookSecret>,
    pub interval: Duration,
    /// Deliveries of one event at most (the first one included).
    pub attempts: u32,
    /// Wait before the first retry; doubled after each.
    pub retry_backoff: Duration,
    /// One delivery attempt may take this long.
    pub timeout: Duration,
}

/// Where the webhook's signing key comes from.
#[derive(Clone, PartialEq)]
pub enum WebhookSecret {
    Inline(String),
    /// Read when `strata serve` starts; surrounding whitespace is trimmed.
    File(PathBuf),
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookSecret::Inline(_) => f.write_str("Inline(<redacted>)"),
            WebhookSecret::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl WebhookSecret {
    /// The key bytes.
    pub fn read(&self) -> Result<Vec<u8>, ConfigError> {
        let text = match self {
            WebhookSecret::Inline(s) => s.clone(),
            WebhookSecret::File(p) => {
                std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                    path: p.clone(),
                    source: e,
                })?
            }
        };
        let key = text.trim();
        if key.is_empty() {
            return Err(invalid("alerts.webhook_secret", "is empty"));
        }
        Ok(key.as_bytes().to_vec())
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url: None,
            secret: None,
            interval: Duration::from_secs(60),
            attempts: 5,
            retry_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sealed months (docs/seals.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SealConfig {
    /// A period is sealable once its end is this far behind the real clock.
    pub after: Duration,
    /// An Ed25519 key file (`strata seal keygen`): a secret key signs new
    /// seals, a public one only verifies.
    pub key_file: Option<PathBuf>,
    /// `file:///path`: every new seal hash is appended there.
    pub anchor_to: Option<PathBuf>,
}

impl Default for SealConfig {
    fn default() -> Self {
        SealConfig {
            after: Duration::from_secs(86_400),
            key_file: None,
            anchor_to: None,
        }
    }
}

/// The raw seal keys, validated together.
fn validate_seal(
    after: Option<&str>,
    key_file: Option<String>,
    anchor_to: Option<&str>,
) -> Result<SealConfig, ConfigError> {
    let mut c = SealConfig::default();
    if let Some(a) = after {
        c.after = parse_duration(a).ok_or_else(|| {
            invalid(
                "seal_after",
                format!("{a:?} is not a duration; expected e.g. \"1d\", \"12h\" or \"30min\""),
            )
        })?;
    }
    if let Some(k) = key_file {
        if k.trim().is_empty() {
            return Err(invalid(
                "seal_key_file",
                "is empty; give the path of a key file",
            ));
        }
        c.key_file = Some(PathBuf::from(k));
    }
    if let Some(a) = anchor_to {
        let path = a.strip_prefix("file://").filter(|p| p.starts_with('/'));
        let Some(path) = path else {
            return Err(invalid(
                "seal_anchor_to",
                format!("{a:?} is not supported; expected file:///absolute/path"),
            ));
        };
        c.anchor_to = Some(PathBuf::from(path));
    }
    Ok(c)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tables: vec![TableSpec::seed_default()],
            maintenance: MaintenanceConfig::default(),
            api: ApiConfig::default(),
            health: HealthThresholds::default(),
            source: None,
            tables_explicit: false,
            seal: SealConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

/// `[health]`: when a `strata health` check turns warning or critical.
/// Ratios are fractions (0.8 = 80 %), durations whole or fractional seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthThresholds {
    /// Client connections in use / (max_connections − reserved slots).
    pub connections_warning: f64,
    pub connections_critical: f64,
    pub long_query_warning_seconds: f64,
    pub long_query_critical_seconds: f64,
    pub idle_in_transaction_warning_seconds: f64,
    pub idle_in_transaction_critical_seconds: f64,
    pub lock_wait_warning_seconds: f64,
    pub lock_wait_critical_seconds: f64,
    /// `age(datfrozenxid)` / `age(relfrozenxid)`, in transactions.
    pub xid_age_warning: i64,
    pub xid_age_critical: i64,
    /// Fraction of the id sequence's range already used.
    pub sequence_warning: f64,
    pub sequence_critical: f64,
    /// Heap cache hit ratio below which the check warns.
    pub cache_hit_warning: f64,
    /// Heap blocks (hit + read) needed before the ratio is judged.
    pub cache_hit_min_blocks: i64,
    /// `seal_after` (not a `[health]` key): when a closed period counts as
    /// overdue for its seal.
    #[serde(skip)]
    pub seal_after: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            connections_warning: 0.8,
            connections_critical: 0.95,
            long_query_warning_seconds: 300.0,
            long_query_critical_seconds: 3600.0,
            idle_in_transaction_warning_seconds: 60.0,
            idle_in_transaction_critical_seconds: 600.0,
            lock_wait_warning_seconds: 5.0,
            lock_wait_critical_seconds: 60.0,
            xid_age_warning: 1_000_000_000,
            xid_age_critical: 1_600_000_000,
            sequence_warning: 0.75,
            sequence_critical: 0.9,
            cache_hit_warning: 0.95,
            cache_hit_min_blocks: 10_000,
            seal_after: SealConfig::default().after,
        }
    }
}

// ---- raw shape -----------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    table: Vec<RawTable>,
    #[serde(default)]
    maintenance: RawMaintenance,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    alerts: RawAlerts,
    seal_after: Option<String>,
    seal_key_file: Option<String>,
    seal_anchor_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: Option<String>,
    time_column: Option<String>,
    interval: Option<String>,
    start: Option<String>,
    premake: Option<i64>,
    retention: Option<String>,
    retention_mode: Option<String>,
    name_template: Option<String>,
    backend: Option<String>,
    brin_pages_per_range: Option<i64>,
    details_opclass: Option<String>,
    max_new_partitions: Option<i64>,
    detached_drop_after: Option<String>,
    rollups: Option<Vec<RawRollup>>,
    archive_after: Option<String>,
    archive_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    schedule: Option<String>,
    vacuum_schedule: Option<String>,
    rollup_schedule: Option<String>,
    lock_timeout: Option<String>,
    retries: Option<i64>,
    move_batch_rows: Option<i64>,
    job_history: Option<i64>,
    job_history_days: Option<i64>,
    timezone: Option<String>,
    catch_up: Option<String>,
    #[serde(default)]
    jobs: Vec<RawJob>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Option<String>,
    schedule: Option<String>,
    command: Option<String>,
    table: Option<String>,
    timezone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    bind: Option<String>,
    accept_past: Option<String>,
    accept_future: Option<String>,
    role: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    webhook_secret_file: Option<String>,
    interval: Option<String>,
    attempts: Option<i64>,
    retry_backoff: Option<String>,
    timeout: Option<String>,
}

/// Numbers are kept as TOML values so that `1.6e9` and `1600000000` both
/// work and a string gets an error naming the key rather than serde's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    connections_warning: Option<toml::Value>,
    connections_critical: Option<toml::Value>,
    long_query_warning_seconds: Option<toml::Value>,
    long_query_critical_seconds: Option<toml::Value>,
    idle_in_transaction_warning_seconds: Option<toml::Value>,
    idle_in_transaction_critical_seconds: Option<toml::Value>,
    lock_wait_warning_seconds: Option<toml::Value>,
    lock_wait_critical_seconds: Option<toml::Value>,
    xid_age_warning: Option<toml::Value>,
    xid_age_critical: Option<toml::Value>,
    sequence_warning: Option<toml::Value>,
    sequence_critical: Option<toml::Value>,
    cache_hit_warning: Option<toml::Value>,
    cache_hit_min_blocks: Option<toml::Value>,
}

impl RawHealth {
    fn slot(&mut self, key: &str) -> Option<&mut Option<toml::Value>> {
        Some(match key {
            "connections_warning" => &mut self.connections_warning,
            "connections_critical" => &mut self.connections_critical,
            "long_query_warning_seconds" => &mut self.long_query_warning_seconds,
            "long_query_critical_seconds" => &mut self.long_query_critical_seconds,
            "idle_in_transaction_warning_seconds" => &mut self.idle_in_transaction_warning_seconds,
            "idle_in_transaction_critical_seconds" => {
                &mut self.idle_in_transaction_critical_seconds
            }
            "lock_wait_warning_seconds" => &mut self.lock_wait_warning_seconds,
            "lock_wait_critical_seconds" => &mut self.lock_wait_critical_seconds,
            "xid_age_warning" => &mut self.xid_age_warning,
            "xid_age_critical" => &mut self.xid_age_critical,
            "sequence_warning" => &mut self.sequence_warning,
            "sequence_critical" => &mut self.sequence_critical,
            "cache_hit_warning" => &mut self.cache_hit_warning,
            "cache_hit_min_blocks" => &mut self.cache_hit_min_blocks,
            _ => return None,
        })
    }
}

/// `STRATA_*` variables that override configuration keys, and what they set.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("STRATA_TABLE", "table.name"),
    ("STRATA_TIME_COLUMN", "table.time_column"),
    ("STRATA_INTERVAL", "table.interval"),
    ("STRATA_START", "table.start"),
    ("STRATA_PREMAKE", "table.premake"),
    ("STRATA_RETENTION", "table.retention"),
    ("STRATA_RETENTION_MODE", "table.retention_mode"),
    ("STRATA_NAME_TEMPLATE", "table.name_template"),
    ("STRATA_BACKEND", "table.backend"),
    ("STRATA_BRIN_PAGES_PER_RANGE", "table.brin_pages_per_range"),
    ("STRATA_DETAILS_OPCLASS", "table.details_opclass"),
    ("STRATA_MAX_NEW_PARTITIONS", "table.max_new_partitions"),
    ("STRATA_DETACHED_DROP_AFTER", "table.detached_drop_after"),
    ("STRATA_ARCHIVE_AFTER", "table.archive_after"),
    ("STRATA_ARCHIVE_TO", "table.archive_to"),
    ("STRATA_SCHEDULE", "maintenance.schedule"),
    ("STRATA_VACUUM_SCHEDULE", "maintenance.vacuum_schedule"),
    ("STRATA_LOCK_TIMEOUT", "maintenance.lock_timeout"),
    ("STRATA_RETRIES", "maintenance.retries"),
    ("STRATA_MOVE_BATCH_ROWS", "maintenance.move_batch_rows"),
    ("STRATA_JOB_HISTORY", "maintenance.job_history"),
    ("STRATA_JOB_HISTORY_DAYS", "maintenance.job_history_days"),
    ("STRATA_TIMEZONE", "maintenance.timezone"),
    ("STRATA_CATCH_UP", "maintenance.catch_up"),
    ("STRATA_BIND", "api.bind"),
    (
        "STRATA_HEALTH_CONNECTIONS_WARNING",
        "health.connections_warning",
    ),
    (
        "STRATA_HEALTH_CONNECTIONS_CRITICAL",
        "health.connections_critical",
    ),
    (
        "STRATA_HEALTH_LONG_QUERY_WARNING_SECONDS",
        "health.long_query_warning_seconds",
    ),
    (
        "STRATA_HEALTH_LONG_QUERY_CRITICAL_SECONDS",
        "health.long_query_critical_seconds",
    ),
    (
        "STRATA_HEALTH_IDLE_IN_TRANSACTION_WARNING_SECONDS",
        "health.idle_in_transaction_warning_seconds",
    ),
    (
        "STRATA_HEALTH_IDLE_IN_TRANSACTION_CRITICAL_SECONDS",
        "health.idle_in_transaction_critical_seconds",
    ),
    (
        "STRATA_HEALTH_LOCK_WAIT_WARNING_SECONDS",
        "health.lock_wait_warning_seconds",
    ),
    (
        "STRATA_HEALTH_LOCK_WAIT_CRITICAL_SECONDS",
        "health.lock_wait_critical_seconds",
    ),
    ("STRATA_HEALTH_XID_AGE_WARNING", "health.xid_age_warning"),
    ("STRATA_HEALTH_XID_AGE_CRITICAL", "health.xid_age_critical"),
    ("STRATA_HEALTH_SEQUENCE_WARNING", "health.sequence_warning"),
    (
        "STRATA_HEALTH_SEQUENCE_CRITICAL",
        "health.sequence_critical",
    ),
    (
        "STRATA_HEALTH_CACHE_HIT_WARNING",
        "health.cache_hit_warning",
    ),
    (
        "STRATA_HEALTH_CACHE_HIT_MIN_BLOCKS",
        "health.cache_hit_min_blocks",
    ),
];

/// `STRATA_*` variables that are not configuration keys but are read elsewhere.
pub const ENV_OTHER: &[&str] = &[
    "STRATA_HOME",
    "STRATA_PG_BIN",
    "STRATA_PG_PORT",
    "STRATA_REQUIRE_EXTENSIONS",
    // Test hook of the archive's crash-safety tests (src/archive/run.rs).
    "STRATA_ARCHIVE_FAIL_AFTER",
    "STRATA_CONFIG",
    "STRATA_LOG",
    "STRATA_LOG_FORMAT",
];

impl Config {
    /// Reads the configuration: `path` if given (it must exist), else
    /// `strata.toml` in the current directory if present, else the defaults;
    /// then applies `STRATA_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (raw, source) = match path {
            Some(p) => (read_raw(p)?, Some(p.to_path_buf())),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                let p = PathBuf::from(DEFAULT_CONFIG_FILE);
                (read_raw(&p)?, Some(p))
            }
            None => (RawConfig::default(), None),
        };
        let mut config = Self::from_raw(raw, env)?;
        config.source = source;
        Ok(config)
    }

    /// Parses TOML text (no file, no environment): for tests and `--config -`.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, Path::new("<config>"))?;
        Self::from_raw(raw, std::iter::empty())
    }

    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, Path::new("<config>"))?;
        Self::from_raw(raw, env)
    }

    fn from_raw(
        mut raw: RawConfig,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tables_explicit = !raw.table.is_empty();
        if raw.table.is_empty() {
            raw.table.push(RawTable::default());
        }
        tables_explicit |= apply_env(&mut raw, env)?;
        let mut tables = Vec::with_capacity(raw.table.len());
        for (i, t) in raw.table.into_iter().enumerate() {
            tables.push(validate_table(t, i)?);
        }
        for (i, a) in tables.iter().enumerate() {
            if tables[..i].iter().any(|b| b.name == a.name) {
                return Err(invalid(
                    format!("table[{i}].name"),
                    format!("{} is configured twice", a.name.display_unquoted()),
                ));
            }
        }
        let seal = validate_seal(
            raw.seal_after.as_deref(),
            raw.seal_key_file.take(),
            raw.seal_anchor_to.as_deref(),
        )?;
        Ok(Config {
            tables,
            maintenance: validate_maintenance(raw.maintenance)?,
            health: HealthThresholds {
                seal_after: seal.after,
                ..validate_health(raw.health)?
            },
            api: ApiConfig {
                accept_past: api_window("api.accept_past", raw.api.accept_past.as_deref())?,
                accept_future: api_window("api.accept_future", raw.api.accept_future.as_deref())?
                    .unwrap_or(ApiConfig::default().accept_future),
                bind: raw.api.bind.unwrap_or_else(|| ApiConfig::default().bind),
                role: raw.api.role.unwrap_or_else(|| ApiConfig::default().role),
            },
            source: None,
            tables_explicit,
            seal,
            alerts: validate_alerts(raw.alerts)?,
        })
    }

    /// The spec of a managed table by name (`audit_logs` or `schema.table`).
    pub fn table(&self, name: Option<&str>) -> Result<&TableSpec, ConfigError> {
        let Some(name) = name else {
            return Ok(&self.tables[0]);
        };
        let wanted = QualifiedName::parse(name).map_err(|e| invalid("--table", e.to_string()))?;
        self.tables
            .iter()
            .find(|t| t.name == wanted)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .tables
                    .iter()
                    .map(|t| t.name.display_unquoted())
                    .collect();
                invalid(
                    "--table",
                    format!(
                        "{name} is not a managed table; managed tables: {}",
                        known.join(", ")
                    ),
                )
            })
    }
}

fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_raw(&text, path)
}

fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

fn apply_env(
    raw: &mut RawConfig,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<bool, ConfigError> {
    let mut tables_touched = false;
    for (var, value) in env {
        if !var.starts_with("STRATA_") || ENV_OTHER.contains(&var.as_str()) {
            continue;
        }
        let Some((_, key)) = ENV_OVERRIDES.iter().find(|(v, _)| *v == var) else {
            let known: Vec<&str> = ENV_OVERRIDES
                .iter()
                .map(|(v, _)| *v)
                .chain(ENV_OTHER.iter().copied())
                .collect();
            return Err(invalid(
                var,
                format!(
                    "unknown strata environment variable; known: {}",
                    known.join(", ")
                ),
            ));
        };
        let int = |v: &str| -> Result<i64, ConfigError> {
            v.trim()
                .parse()
                .map_err(|_| invalid(var.clone(), format!("expected a whole number, got {v:?}")))
        };
        let m = &mut raw.maintenance;
        match *key {
            "maintenance.schedule" => m.schedule = Some(value),
            "maintenance.vacuum_schedule" => m.vacuum_schedule = Some(value),
            "maintenance.lock_timeout" => m.lock_timeout = Some(value),
            "maintenance.retries" => m.retries = Some(int(&value)?),
            "maintenance.move_batch_rows" => m.move_batch_rows = Some(int(&value)?),
            "maintenance.job_history" => m.job_history = Some(int(&value)?),
            "maintenance.job_history_days" => m.job_history_days = Some(int(&value)?),
            "maintenance.timezone" => m.timezone = Some(value),
            "maintenance.catch_up" => m.catch_up = Some(value),
            "api.bind" => raw.api.bind = Some(value),
            health_key if health_key.starts_with("health.") => {
                let number: f64 = value.trim().parse().map_err(|_| {
                    invalid(var.clone(), format!("expected a number, got {value:?}"))
                })?;
                let slot = raw
                    .health
                    .slot(&health_key["health.".len()..])
                    .unwrap_or_else(|| unreachable!("unmapped override {health_key}"));
                *slot = Some(toml::Value::Float(number));
            }
            table_key => {
                tables_touched = true;
                // Table overrides apply to every configured table: in the usual
                // single-table setup that is the one table.
                for t in &mut raw.table {
                    match table_key {
                        "table.name" => t.name = Some(value.clone()),
                        "table.time_column" => t.time_column = Some(value.clone()),
                        "table.interval" => t.interval = Some(value.clone()),
                        "table.start" => t.start = Some(value.clone()),
                        "table.premake" => t.premake = Some(int(&value)?),
                        "table.retention" => t.retention = Some(value.clone()),
                        "table.retention_mode" => t.retention_mode = Some(value.clone()),
                        "table.name_template" => t.name_template = Some(value.clone()),
                        "table.backend" => t.backend = Some(value.clone()),
                        "table.brin_pages_per_range" => t.brin_pages_per_range = Some(int(&value)?),
                        "table.details_opclass" => t.details_opclass = Some(value.clone()),
                        "table.max_new_partitions" => t.max_new_partitions = Some(int(&value)?),
                        "table.detached_drop_after" => t.detached_drop_after = Some(value.clone()),
                        "table.archive_after" => t.archive_after = Some(value.clone()),
                        "table.archive_to" => t.archive_to = Some(value.clone()),
                        other => unreachable!("unmapped override {other}"),
                    }
                }
            }
        }
    }
    Ok(tables_touched)
}

const MAX_PREMAKE: i64 = 1000;

fn validate_table(t: RawTable, i: usize) -> Result<TableSpec, ConfigError> {
    let key = |k: &str| format!("table[{i}].{k}");
    let seed = TableSpec::seed_default();
    let name = match t.name {
        None => seed.name,
        Some(n) => QualifiedName::parse(n.trim()).map_err(|e| {
            invalid(
                key("name"),
                format!("{e}; expected \"table\" or \"schema.table\""),
            )
        })?,
    };
    let time_column = match t.time_column {
        None => seed.time_column,
        Some(c) => Ident::new(c).map_err(|e| invalid(key("time_column"), e.to_string()))?,
    };
    let interval = match t.interval {
        None => seed.interval,
        Some(s) => Interval::parse(&s).ok_or_else(|| {
            invalid(
                key("interval"),
                format!(
                    "{s:?} is not a partition interval; accepted: {}",
                    Interval::ACCEPTED
                ),
            )
        })?,
    };
    let start = match t.start {
        None => seed.start,
        Some(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
            invalid(
                key("start"),
                format!("{s:?} is not a date; expected YYYY-MM-DD, e.g. \"2025-01-01\""),
            )
        })?,
    };
    let premake = match t.premake {
        None => seed.premake,
        Some(p) if (0..=MAX_PREMAKE).contains(&p) => p as u32,
        Some(p) => {
            return Err(invalid(
                key("premake"),
                format!("{p} is out of range; expected a whole number from 0 to {MAX_PREMAKE}"),
            ))
        }
    };
    let retention = match t.retention {
        None => None,
        Some(s) => Retention::parse(&s).ok_or_else(|| {
            invalid(
                key("retention"),
                format!(
                    "{s:?} is not a retention; accepted: {}",
                    Retention::ACCEPTED
                ),
            )
        })?,
    };
    let retention_mode = match t.retention_mode.as_deref().map(normalize).as_deref() {
        None => RetentionMode::Detach,
        Some("detach") => RetentionMode::Detach,
        Some("drop") => RetentionMode::Drop,
        Some("archive") => RetentionMode::Archive,
        Some(other) => {
            return Err(invalid(
                key("retention_mode"),
                format!(
                "{other:?} is not a retention mode; accepted: \"detach\", \"drop\", \"archive\""
            ),
            ))
        }
    };
    let name_template = t
        .name_template
        .unwrap_or_else(|| interval.default_template().to_string());
    validate_template(&name_template, interval).map_err(|m| invalid(key("name_template"), m))?;
    let backend = match t.backend.as_deref().map(normalize).as_deref() {
        None | Some("native") => Backend::Native,
        Some("partman") | Some("pg_partman") => Backend::Partman,
        Some(other) => {
            return Err(invalid(
                key("backend"),
                format!("{other:?} is not a backend; accepted: \"native\", \"partman\""),
            ))
        }
    };
    let brin_pages_per_range = match t.brin_pages_per_range {
        None => seed.brin_pages_per_range,
        // PostgreSQL's own limits for the BRIN reloption.
        Some(p) if (1..=131072).contains(&p) => p as u32,
        Some(p) => {
            return Err(invalid(
                key("brin_pages_per_range"),
                format!("{p} is out of range; expected 1 to 131072"),
            ))
        }
    };
    let details_opclass = match t.details_opclass.as_deref().map(normalize).as_deref() {
        None | Some("jsonb_path_ops") => GinOpclass::JsonbPathOps,
        Some("jsonb_ops") => GinOpclass::JsonbOps,
        Some(other) => {
            return Err(invalid(
                key("details_opclass"),
                format!("{other:?} is not a GIN operator class for jsonb; accepted: \"jsonb_path_ops\", \"jsonb_ops\""),
            ))
        }
    };
    let max_new_partitions = match t.max_new_partitions {
        None => seed.max_new_partitions,
        Some(n) if (1..=10_000).contains(&n) => n as u32,
        Some(n) => {
            return Err(invalid(
                key("max_new_partitions"),
                format!("{n} is out of range; expected 1 to 10000"),
            ))
        }
    };
    let detached_drop_after = match t.detached_drop_after {
        None => None,
        Some(s) => Retention::parse(&s).ok_or_else(|| {
            invalid(
                key("detached_drop_after"),
                format!("{s:?} is not a duration; accepted: {}", Retention::ACCEPTED),
            )
        })?,
    };
    let rollups = validate_rollups(t.rollups, &time_column, i)?;
    let (archive_after, archive_to) = validate_archive(
        &t.archive_after,
        &t.archive_to,
        retention,
        retention_mode,
        &key,
    )?;
    if retention_mode == RetentionMode::Archive && backend == Backend::Partman {
        // pg_partman's own retention would drop what was never archived.
        return Err(invalid(
            key("retention_mode"),
            "\"archive\" needs backend = \"native\": pg_partman's retention drops partitions itself",
        ));
    }
    Ok(TableSpec {
        archive_after,
        archive_to,
        details_opclass,
        max_new_partitions,
        detached_drop_after,
        rollups,
        name,
        time_column,
        interval,
        start,
        premake,
        retention,
        retention_mode,
        name_template,
        backend,
        brin_pages_per_range,
    })
}

/// `archive_after`, `archive_to` and what `retention_mode = "archive"` needs.
fn validate_archive(
    archive_after: &Option<String>,
    archive_to: &Option<String>,
    retention: Option<Retention>,
    mode: RetentionMode,
    key: &dyn Fn(&str) -> String,
) -> Result<(Option<Retention>, Option<String>), ConfigError> {
    let after = match archive_after {
        None => None,
        Some(s) => match Retention::parse(s) {
            Some(Some(r)) => Some(r),
            _ => {
                return Err(invalid(
                    key("archive_after"),
                    format!(
                        "{s:?} is not a duration; accepted: a count of days, weeks or months such as \"13 months\""
                    ),
                ))
            }
        },
    };
    let to = match archive_to {
        None => None,
        Some(s) => Some(
            crate::archive::validate_url(s.trim()).map_err(|m| invalid(key("archive_to"), m))?,
        ),
    };
    if after.is_some() && to.is_none() {
        return Err(invalid(
            key("archive_to"),
            "archive_after is set but archive_to is not; set it to \"file:///path\" or \"s3://bucket/prefix\"",
        ));
    }
    if mode == RetentionMode::Archive {
        if to.is_none() {
            return Err(invalid(
                key("archive_to"),
                "retention_mode = \"archive\" needs archive_to (\"file:///path\" or \"s3://bucket/prefix\")",
            ));
        }
        if retention.is_none() {
            return Err(invalid(
                key("retention"),
                "retention_mode = \"archive\" needs a retention: partitions past it are dropped once archived and verified",
            ));
        }
    }
    Ok((after, to))
}

/// Placeholders a partition name template may use.
pub const TEMPLATE_PLACEHOLDERS: &[&str] = &["{table}", "{YYYY}", "{MM}", "{DD}", "{IYYY}", "{IW}"];

fn validate_template(t: &str, interval: Interval) -> Result<(), String> {
    let mut rest = t.to_string();
    for p in TEMPLATE_PLACEHOLDERS {
        rest = rest.replace(p, "");
    }
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "{t:?} has an unknown placeholder; accepted: {}",
            TEMPLATE_PLACEHOLDERS.join(" ")
        ));
    }
    // Each partition must get its own name, so the template has to distinguish
    // every period of the interval.
    let has = |p: &str| t.contains(p);
    let unique = match interval {
        Interval::Month => has("{YYYY}") && has("{MM}"),
        Interval::Day => has("{YYYY}") && has("{MM}") && has("{DD}"),
        Interval::Week => {
            (has("{IYYY}") && has("{IW}")) || (has("{YYYY}") && has("{MM}") && has("{DD}"))
        }
    };
    if !unique {
        let need = match interval {
            Interval::Month => "{YYYY} and {MM}",
            Interval::Day => "{YYYY}, {MM} and {DD}",
            Interval::Week => "{IYYY} and {IW} (or {YYYY}, {MM} and {DD})",
        };
        return Err(format!(
            "{t:?} would give two partitions the same name; a {interval} template needs {need}"
        ));
    }
    Ok(())
}

fn validate_maintenance(m: RawMaintenance) -> Result<MaintenanceConfig, ConfigError> {
    let d = MaintenanceConfig::default();
    let lock_timeout = match m.lock_timeout {
        None => d.lock.lock_timeout,
        Some(s) => parse_duration(&s)
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(60))
            .ok_or_else(|| {
                invalid("maintenance.lock_timeout", format!("{s:?} is not a lock timeout; expected a duration from 1ms to 60s such as \"100ms\" or \"2s\""))
            })?,
    };
    let attempts = match m.retries {
        None => d.lock.attempts,
        Some(r) if (1..=1000).contains(&r) => r as u32,
        Some(r) => {
            return Err(invalid(
                "maintenance.retries",
                format!("{r} is out of range; expected 1 to 1000 attempts"),
            ))
        }
    };
    let timezone = m.timezone.clone().unwrap_or(d.timezone.clone());
    for (key, value) in [
        ("maintenance.schedule", &m.schedule),
        ("maintenance.vacuum_schedule", &m.vacuum_schedule),
        ("maintenance.rollup_schedule", &m.rollup_schedule),
    ] {
        if let Some(v) = value {
            crate::scheduler::cron::Schedule::parse(v, &timezone).map_err(|e| invalid(key, e))?;
        }
    }
    crate::scheduler::cron::Schedule::parse("0 2 * * *", &timezone)
        .map_err(|e| invalid("maintenance.timezone", e))?;
    let catch_up = match &m.catch_up {
        None => d.catch_up,
        Some(s) => parse_duration(s).ok_or_else(|| {
            invalid(
                "maintenance.catch_up",
                format!("{s:?} is not a duration; expected e.g. \"30min\", \"6h\" or \"2d\" (\"0s\" never catches up)"),
            )
        })?,
    };
    let mut jobs = Vec::new();
    for (i, j) in m.jobs.iter().enumerate() {
        let key = |k: &str| format!("maintenance.jobs[{i}].{k}");
        let name = j
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| invalid(key("name"), "every job needs a name"))?;
        if ["maintain", "vacuum"].contains(&name.as_str())
            || jobs.iter().any(|x: &JobSpec| x.name == name)
        {
            return Err(invalid(
                key("name"),
                format!("{name:?} is already a job name (maintain and vacuum are built in)"),
            ));
        }
        let tz = j.timezone.clone().unwrap_or(timezone.clone());
        let schedule = j
            .schedule
            .clone()
            .ok_or_else(|| invalid(key("schedule"), "missing; e.g. \"0 4 * * *\""))?;
        crate::scheduler::cron::Schedule::parse(&schedule, &tz)
            .map_err(|e| invalid(key("schedule"), e))?;
        let command_text = j.command.clone().unwrap_or_default();
        let command = JobCommand::ALL
            .iter()
            .find(|(n, _)| *n == command_text)
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                let names: Vec<&str> = JobCommand::ALL.iter().map(|(n, _)| *n).collect();
                invalid(
                    key("command"),
                    format!(
                        "{command_text:?} is not a job command; expected one of {}",
                        names.join(", ")
                    ),
                )
            })?;
        jobs.push(JobSpec {
            name,
            schedule,
            timezone: tz,
            command,
            table: j.table.clone(),
        });
    }
    let move_batch_rows = match m.move_batch_rows {
        None => d.move_batch_rows,
        Some(r) if (1..=10_000_000).contains(&r) => r as u64,
        Some(r) => {
            return Err(invalid(
                "maintenance.move_batch_rows",
                format!("{r} is out of range; expected 1 to 10000000 rows"),
            ))
        }
    };
    let bounded = |key: &str, v: Option<i64>, default: u64, max: i64| match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n as u64),
        Some(n) => Err(invalid(
            key,
            format!("{n} is out of range; expected 1 to {max}"),
        )),
    };
    Ok(MaintenanceConfig {
        timezone,
        catch_up,
        jobs,
        job_history: bounded(
            "maintenance.job_history",
            m.job_history,
            d.job_history,
            1_000_000,
        )?,
        job_history_days: bounded(
            "maintenance.job_history_days",
            m.job_history_days,
            d.job_history_days,
            36_500,
        )?,
        move_batch_rows,
        schedule: m.schedule.unwrap_or(d.schedule),
        vacuum_schedule: m.vacuum_schedule.unwrap_or(d.vacuum_schedule),
        rollup_schedule: m.rollup_schedule.unwrap_or(d.rollup_schedule),
        lock: LockPolicy {
            lock_timeout,
            attempts,
            ..d.lock
        },
    })
}

/// The range a `[health]` number must fall in, and how to say so.
struct Range {
    min: f64,
    max: f64,
    whole: bool,
    what: &'static str,
}

const RATIO: Range = Range {
    min: 0.0,
    max: 1.0,
    whole: false,
    what: "a fraction from 0 to 1, such as 0.8",
};
const SECONDS: Range = Range {
    min: 0.0,
    max: 31_536_000.0,
    whole: false,
    what: "seconds from 0 to 31536000 (a year)",
};
/// Wraparound stops the server at 2^31 − 3,000,000; beyond 2^31 an age means nothing.
const XID_AGE: Range = Range {
    min: 0.0,
    max: 2_147_483_647.0,
    whole: true,
    what: "a whole number of transactions from 0 to 2147483647, such as 1.0e9",
};
const BLOCKS: Range = Range {
    min: 0.0,
    max: 1e15,
    whole: true,
    what: "a whole number of blocks, 0 or more",
};

fn health_number(
    key: &str,
    value: Option<toml::Value>,
    default: f64,
    range: &Range,
) -> Result<f64, ConfigError> {
    let key = format!("health.{key}");
    let n = match value {
        None => return Ok(default),
        Some(toml::Value::Integer(i)) => i as f64,
        Some(toml::Value::Float(f)) => f,
        Some(other) => {
            return Err(invalid(
                key,
                format!("expected {}, got {other}", range.what),
            ))
        }
    };
    if !n.is_finite() || n < range.min || n > range.max || (range.whole && n.fract() != 0.0) {
        return Err(invalid(
            key,
            format!("{n} is out of range; expected {}", range.what),
        ));
    }
    Ok(n)
}

fn validate_health(mut h: RawHealth) -> Result<HealthThresholds, ConfigError> {
    let d = HealthThresholds::default();
    let mut get = |key: &str, default: f64, range: &Range| {
        let value = h.slot(key).and_then(Option::take);
        health_number(key, value, default, range)
    };
    let t = HealthThresholds {
        connections_warning: get("connections_warning", d.connections_warning, &RATIO)?,
        connections_critical: get("connections_critical", d.connections_critical, &RATIO)?,
        long_query_warning_seconds: get(
            "long_query_warning_seconds",
            d.long_query_warning_seconds,
            &SECONDS,
        )?,
        long_query_critical_seconds: get(
            "long_query_critical_seconds",
            d.long_query_critical_seconds,
            &SECONDS,
        )?,
        idle_in_transaction_warning_seconds: get(
            "idle_in_transaction_warning_seconds",
            d.idle_in_transaction_warning_seconds,
            &SECONDS,
        )?,
        idle_in_transaction_critical_seconds: get(
            "idle_in_transaction_critical_seconds",
            d.idle_in_transaction_critical_seconds,
            &SECONDS,
        )?,
        lock_wait_warning_seconds: get(
            "lock_wait_warning_seconds",
            d.lock_wait_warning_seconds,
            &SECONDS,
        )?,
        lock_wait_critical_seconds: get(
            "lock_wait_critical_seconds",
            d.lock_wait_critical_seconds,
            &SECONDS,
        )?,
        xid_age_warning: get("xid_age_warning", d.xid_age_warning as f64, &XID_AGE)? as i64,
        xid_age_critical: get("xid_age_critical", d.xid_age_critical as f64, &XID_AGE)? as i64,
        sequence_warning: get("sequence_warning", d.sequence_warning, &RATIO)?,
        sequence_critical: get("sequence_critical", d.sequence_critical, &RATIO)?,
        cache_hit_warning: get("cache_hit_warning", d.cache_hit_warning, &RATIO)?,
        cache_hit_min_blocks: get(
            "cache_hit_min_blocks",
            d.cache_hit_min_blocks as f64,
            &BLOCKS,
        )? as i64,
        seal_after: SealConfig::default().after,
    };
    // A warning threshold past its critical one would never show a warning.
    let pairs = [
        (
            "connections_",
            "",
            t.connections_warning,
            t.connections_critical,
        ),
        (
            "long_query_",
            "_seconds",
            t.long_query_warning_seconds,
            t.long_query_critical_seconds,
        ),
        (
            "idle_in_transaction_",
            "_seconds",
            t.idle_in_transaction_warning_seconds,
            t.idle_in_transaction_critical_seconds,
        ),
        (
            "lock_wait_",
            "_seconds",
            t.lock_wait_warning_seconds,
            t.lock_wait_critical_seconds,
        ),
        (
            "xid_age_",
            "",
            t.xid_age_warning as f64,
            t.xid_age_critical as f64,
        ),
        ("sequence_", "", t.sequence_warning, t.sequence_critical),
    ];
    for (prefix, suffix, warning, critical) in pairs {
        if warning > critical {
            return Err(invalid(
                format!("health.{prefix}warning{suffix}"),
                format!(
                    "{warning} is above health.{prefix}critical{suffix} ({critical}); \
                     the warning threshold must not exceed the critical one"
                ),
            ));
        }
    }
    Ok(t)
}

fn validate_alerts(a: RawAlerts) -> Result<AlertsConfig, ConfigError> {
    let mut c = AlertsConfig::default();
    let duration = |key: &str,
                    value: Option<&str>,
                    min: Duration|
     -> Result<Option<Duration>, ConfigError> {
        let Some(s) = value else { return Ok(None) };
        match parse_duration(s) {
            Some(d) if d >= min => Ok(Some(d)),
            Some(_) => Err(invalid(
                key,
                format!("{s:?} is too short; the least is {}ms", min.as_millis()),
            )),
            None => Err(invalid(
                key,
                format!("{s:?} is not a duration; expected e.g. \"60s\", \"5min\" or \"500ms\""),
            )),
        }
    };
    let ms = Duration::from_millis;
    if let Some(d) = duration("alerts.interval", a.interval.as_deref(), ms(100))? {
        c.interval = d;
    }
    if let Some(d) = duration("alerts.retry_backoff", a.retry_backoff.as_deref(), ms(10))? {
        c.retry_backoff = d;
    }
    if let Some(d) = duration("alerts.timeout", a.timeout.as_deref(), ms(100))? {
        c.timeout = d;
    }
    if let Some(n) = a.attempts {
        if !(1..=20).contains(&n) {
            return Err(invalid(
                "alerts.attempts",
                format!("{n} is out of range; expected 1 to 20"),
            ));
        }
        c.attempts = n as u32;
    }
    c.secret = match (a.webhook_secret, a.webhook_secret_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "alerts.webhook_secret",
                "give webhook_secret or webhook_secret_file, not both",
            ))
        }
        (Some(s), None) if s.trim().is_empty() => {
            return Err(invalid("alerts.webhook_secret", "is empty"))
        }
        (Some(s), None) => Some(WebhookSecret::Inline(s)),
        (None, Some(f)) if f.trim().is_empty() => {
            return Err(invalid(
                "alerts.webhook_secret_file",
                "is empty; give the path of a file holding the secret",
            ))
        }
        (None, Some(f)) => Some(WebhookSecret::File(PathBuf::from(f))),
        (None, None) => None,
    };
    if let Some(url) = a.webhook_url {
        let scheme_ok = url
            .split_once("://")
            .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty());
        if !scheme_ok || reqwest::Url::parse(&url).is_err() {
            return Err(invalid(
                "alerts.webhook_url",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        if c.secret.is_none() {
            return Err(invalid(
                "alerts.webhook_url",
                "needs webhook_secret or webhook_secret_file: every event is signed",
            ));
        }
        c.webhook_url = Some(url);
    } else if c.secret.is_some() {
        return Err(invalid(
            "alerts.webhook_secret",
            "is set but webhook_url is not; give the URL events are posted to",
        ));
    }
    Ok(c)
}

/// `[api] accept_past` / `accept_future`: `"30d"`, `"5min"`, `"12h"`.
fn api_window(key: &str, value: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    let Some(s) = value else { return Ok(None) };
    parse_duration(s).map(Some).ok_or_else(|| {
        invalid(
            key,
            format!("{s:?} is not a duration; expected e.g. \"30d\", \"12h\" or \"5min\""),
        )
    })
}

/// `"100ms"`, `"2s"`, `"1min"`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "" | "ms" => Some(Duration::from_millis(n)),
        "s" | "sec" => Some(Duration::from_secs(n)),
        "min" | "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        "d" => Some(Duration::from_secs(n.checked_mul(86_400)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn archive_keys_are_validated_by_name() {
        let ok = Config::from_toml(
            "[[table]]\nretention = \"13 months\"\nretention_mode = \"archive\"\narchive_to = \"s3://audit-archive/prod\"\narchive_after = \"13 months\"",
        )
        .unwrap();
        assert_eq!(ok.tables[0].retention_mode, RetentionMode::Archive);
        assert_eq!(ok.tables[0].archive_after, Some(Retention::Months(13)));
        let e = err("[[table]]\narchive_to = \"ftp://x\"");
        assert!(
            e.contains("table[0].archive_to") && e.contains("ftp://x"),
            "{e}"
        );
        let e = err("[[table]]\narchive_to = \"file://relative\"");
        assert!(e.contains("table[0].archive_to"), "{e}");
        let e = err("[[table]]\narchive_to = \"file:///a\"\narchive_after = \"soon\"");
        assert!(e.contains("table[0].archive_after"), "{e}");
        let e = err("[[table]]\narchive_after = \"13 months\"");
        assert!(e.contains("table[0].archive_to"), "{e}");
        let e = err("[[table]]\nretention_mode = \"archive\"\narchive_to = \"file:///a\"");
        assert!(e.contains("table[0].retention"), "{e}");
        let e = err("[[table]]\nretention = \"1 month\"\nretention_mode = \"archive\"\narchive_to = \"file:///a\"\nbackend = \"partman\"");
        assert!(e.contains("table[0].retention_mode"), "{e}");
    }

    #[test]
    fn defaults_are_the_seed() {
        let c = Config::from_toml("").unwrap();
        let t = &c.tables[0];
        assert_eq!(t.name.display_unquoted(), "public.audit_logs");
        assert_eq!(t.interval, Interval::Month);
        assert_eq!(t.premake, 6);
        assert_eq!(t.start, NaiveDate::from_ymd_opt(2025, 1, 1).unwrap());
        assert_eq!(t.brin_pages_per_range, 128);
        assert_eq!(t.name_template, "{table}_{YYYY}_{MM}");
        assert_eq!(t.retention, None);
        assert_eq!(c.maintenance.schedule, "0 2 * * *");
        assert_eq!(c.maintenance.vacuum_schedule, "0 3 * * 0");
        assert_eq!(c.maintenance.lock.lock_timeout, Duration::from_millis(100));
        assert_eq!(c.api.bind, "127.0.0.1:8000");
    }

    #[test]
    fn a_full_table_parses() {
        let c = Config::from_toml(
            r#"
            [[table]]
            name = "app.events"
            time_column = "occurred_at"
            interval = "daily"
            start = "2024-02-28"
            premake = 14
            retention = "90 days"
            retention_mode = "drop"
            backend = "partman"
            [maintenance]
            lock_timeout = "250ms"
            retries = 3
            "#,
        )
        .unwrap();
        let t = &c.tables[0];
        assert_eq!(t.name.to_string(), "\"app\".\"events\"");
        assert_eq!(t.interval, Interval::Day);
        assert_eq!(t.name_template, "{table}_{YYYY}_{MM}_{DD}");
        assert_eq!(t.retention, Some(Retention::Days(90)));
        assert_eq!(t.retention_mode, RetentionMode::Drop);
        assert_eq!(t.backend, Backend::Partman);
        assert_eq!(c.maintenance.lock.lock_timeout, Duration::from_millis(250));
        assert_eq!(c.maintenance.lock.attempts, 3);
    }

    #[test]
    fn a_bad_interval_names_the_key_and_the_choices() {
        let e = err("[[table]]\ninterval = \"3 fortnights\"");
        assert!(e.contains("table[0].interval"), "{e}");
        assert!(e.contains("3 fortnights"), "{e}");
        assert!(e.contains("1 month"), "{e}");
    }

    #[test]
    fn a_negative_premake_names_the_key_and_the_range() {
        let e = err("[[table]]\npremake = -1");
        assert!(e.contains("table[0].premake"), "{e}");
        assert!(e.contains("0 to 1000"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_the_known_ones() {
        let e = err("[[table]]\npremak = 3");
        assert!(e.contains("premak"), "{e}");
        assert!(e.contains("premake"), "{e}");
        let e = err("[maintenence]\nschedule = \"x\"");
        assert!(e.contains("maintenence"), "{e}");
    }

    #[test]
    fn bad_dates_durations_modes_and_names_are_refused() {
        assert!(err("[[table]]\nstart = \"2025-13-01\"").contains("table[0].start"));
        assert!(err("[[table]]\nstart = \"yesterday\"").contains("YYYY-MM-DD"));
        assert!(err("[maintenance]\nlock_timeout = \"fast\"").contains("maintenance.lock_timeout"));
        assert!(err("[maintenance]\nlock_timeout = \"0ms\"").contains("maintenance.lock_timeout"));
        assert!(err("[[table]]\nretention_mode = \"archive\"").contains("table[0].archive_to"));
        assert!(err("[[table]]\nretention = \"forever\"").contains("table[0].retention"));
        assert!(err("[[table]]\nname = \"a.b.c\"").contains("table[0].name"));
        assert!(err("[[table]]\nbackend = \"timescale\"").contains("table[0].backend"));
        assert!(err("[maintenance]\nschedule = \"daily\"").contains("maintenance.schedule"));
        assert!(err("[[table]]\nbrin_pages_per_range = 0").contains("brin_pages_per_range"));
        let e = err("[[table]]\ndetails_opclass = \"btree_ops\"");
        assert!(
            e.contains("table[0].details_opclass") && e.contains("jsonb_path_ops"),
            "{e}"
        );
    }

    #[test]
    fn templates_must_be_unique_per_interval() {
        assert!(err("[[table]]\nname_template = \"{table}_{YYYY}\"").contains("same name"));
        assert!(err("[[table]]\nname_template = \"{table}_{Q}\"").contains("unknown placeholder"));
        let e = err("[[table]]\ninterval = \"1 day\"\nname_template = \"{table}_{YYYY}_{MM}\"");
        assert!(e.contains("{DD}"), "{e}");
        assert!(Config::from_toml("[[table]]\ninterval = \"weekly\"").is_ok());
    }

    #[test]
    fn tables_cannot_repeat() {
        let e = err("[[table]]\nname = \"audit_logs\"\n[[table]]\nname = \"public.audit_logs\"");
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = vec![
            ("STRATA_PREMAKE".to_string(), "3".to_string()),
            ("STRATA_LOCK_TIMEOUT".to_string(), "2s".to_string()),
            ("STRATA_HOME".to_string(), "/somewhere".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let c = Config::from_toml_with_env("[[table]]\npremake = 9", env).unwrap();
        assert_eq!(c.tables[0].premake, 3);
        assert_eq!(c.maintenance.lock.lock_timeout, Duration::from_secs(2));
    }

    #[test]
    fn environment_values_are_validated_and_typos_named() {
        let env = vec![("STRATA_PREMAKE".to_string(), "-1".to_string())];
        let e = Config::from_toml_with_env("", env).unwrap_err().to_string();
        assert!(e.contains("premake"), "{e}");
        let env = vec![("STRATA_PREMAKES".to_string(), "1".to_string())];
        let e = Config::from_toml_with_env("", env).unwrap_err().to_string();
        assert!(
            e.contains("STRATA_PREMAKES") && e.contains("STRATA_PREMAKE,"),
            "{e}"
        );
    }

    #[test]
    fn table_lookup_by_name() {
        let c = Config::default();
        assert!(c.table(Some("audit_logs")).is_ok());
        assert!(c.table(Some("public.audit_logs")).is_ok());
        let e = c.table(Some("users")).unwrap_err().to_string();
        assert!(e.contains("not a managed table"), "{e}");
    }

    #[test]
    fn health_defaults_and_overrides() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.health, HealthThresholds::default());
        assert_eq!(c.health.xid_age_critical, 1_600_000_000);
        let c = Config::from_toml_with_env(
            "[health]\nxid_age_warning = 1.2e9\nidle_in_transaction_warning_seconds = 0\n",
            vec![(
                "STRATA_HEALTH_CACHE_HIT_WARNING".to_string(),
                "0.5".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(c.health.xid_age_warning, 1_200_000_000);
        assert_eq!(c.health.idle_in_transaction_warning_seconds, 0.0);
        assert_eq!(c.health.cache_hit_warning, 0.5);
    }

    #[test]
    fn bad_health_values_name_the_key() {
        let e = err("[health]\nconections_warning = 0.5");
        assert!(
            e.contains("conections_warning") && e.contains("connections_warning"),
            "{e}"
        );
        let e = err("[health]\nconnections_warning = 1.5");
        assert!(
            e.contains("health.connections_warning") && e.contains("0 to 1"),
            "{e}"
        );
        let e = err("[health]\nlock_wait_warning_seconds = \"5s\"");
        assert!(e.contains("health.lock_wait_warning_seconds"), "{e}");
        let e = err("[health]\nxid_age_critical = 3e9");
        assert!(e.contains("health.xid_age_critical"), "{e}");
        let e = err("[health]\nsequence_warning = 0.95");
        assert!(
            e.contains("health.sequence_warning") && e.contains("health.sequence_critical"),
            "{e}"
        );
        let env = vec![(
            "STRATA_HEALTH_LOCK_WAIT_CRITICAL_SECONDS".to_string(),
            "soon".to_string(),
        )];
        let e = Config::from_toml_with_env("", env).unwrap_err().to_string();
        assert!(
            e.contains("STRATA_HEALTH_LOCK_WAIT_CRITICAL_SECONDS"),
            "{e}"
        );
    }

    #[test]
    fn alerts_keys_are_validated_by_name() {
        let c = Config::from_toml(
            "[alerts]\nwebhook_url = \"https://hooks.example/strata\"\nwebhook_secret = \"k\"\ninterval = \"30s\"\nattempts = 3",
        )
        .unwrap();
        assert_eq!(
            c.alerts.webhook_url.as_deref(),
            Some("https://hooks.example/strata")
        );
        assert_eq!(c.alerts.interval, Duration::from_secs(30));
        assert_eq!(c.alerts.attempts, 3);
        assert_eq!(c.alerts.secret.as_ref().unwrap().read().unwrap(), b"k");
        assert!(!format!("{:?}", c.alerts).contains("\"k\""));
        assert_eq!(Config::default().alerts.webhook_url, None);
        let e = err("[alerts]\nwebhook_urll = \"http://x\"");
        assert!(
            e.contains("webhook_urll") && e.contains("webhook_url"),
            "{e}"
        );
        let e = err("[alerts]\nwebhook_url = \"http://x/hook\"");
        assert!(
            e.contains("alerts.webhook_url") && e.contains("webhook_secret"),
            "{e}"
        );
        let e = err("[alerts]\nwebhook_url = \"ftp://x/hook\"\nwebhook_secret = \"k\"");
        assert!(
            e.contains("alerts.webhook_url") && e.contains("https://"),
            "{e}"
        );
        let e = err("[alerts]\nwebhook_secret = \"k\"");
        assert!(
            e.contains("alerts.webhook_secret") && e.contains("webhook_url"),
            "{e}"
        );
        let e = err("[alerts]\nwebhook_url = \"http://x\"\nwebhook_secret = \"k\"\nwebhook_secret_file = \"/f\"");
        assert!(e.contains("not both"), "{e}");
        assert!(err("[alerts]\ninterval = \"often\"").contains("alerts.interval"));
        assert!(err("[alerts]\ninterval = \"1ms\"").contains("too short"));
        assert!(err("[alerts]\nattempts = 0").contains("1 to 20"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_duration("1y"), None);
        assert_eq!(parse_duration("ms"), None);
    }
}
