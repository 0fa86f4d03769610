//! `strata schedule install-pg-cron`: the seed's two jobs (and a pruner of
//! pg_cron's own run history, which otherwise grows without bound)
//! registered with pg_cron, for users who prefer it to `strata serve`.
//!
//! Jobs are named (`strata-…`), and `cron.schedule` with a name replaces a
//! job of that name, so installing twice updates rather than duplicates.
//! pg_cron silently does nothing when it is misconfigured, so the
//! preconditions are checked first and each failure says what to change.

use serde::Serialize;
use tokio_postgres::Client;

use super::SchedulerError;
use crate::config::{Backend, Config};
use crate::db::{literal, DbError};

/// Prefix of every job strata registers: `--uninstall` removes exactly these.
pub const PREFIX: &str = "strata-";

/// Days of `cron.job_run_details` kept by the pruning job.
pub const HISTORY_DAYS: u32 = 30;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CronJob {
    pub name: String,
    pub schedule: String,
    pub command: String,
}

#[derive(Debug, Serialize)]
pub struct Installed {
    pub jobs: Vec<CronJob>,
    /// What was not registered, and why.
    pub notes: Vec<String>,
}

/// The jobs for `config`. The native backend's partition maintenance is
/// strata's own code and cannot run inside pg_cron: it is left out, with a
/// note saying what runs it instead.
pub async fn wanted(client: &Client, config: &Config) -> Result<Installed, SchedulerError> {
    let m = &config.maintenance;
    let mut jobs = Vec::new();
    let mut notes = Vec::new();
    for spec in &config.tables {
        let table = spec.name.display_unquoted();
        let suffix = if config.tables.len() == 1 {
            String::new()
        } else {
            format!(" {table}")
        };
        if spec.backend == Backend::Partman {
            let pm = crate::partition::partman::detect(client)
                .await
                .map_err(|e| SchedulerError::PgCron(e.to_string()))?
                .ok_or_else(|| {
                    SchedulerError::PgCron(format!(
                        "{table} uses backend = \"partman\", but pg_partman is not installed in this database"
                    ))
                })?;
            jobs.push(CronJob {
                name: format!("{PREFIX}maintain{suffix}"),
                schedule: m.schedule.clone(),
                command: format!(
                    "SELECT {}(p_parent_table := {}, p_analyze := true, p_jobmon := false)",
                    pm.func("run_maintenance"),
                    literal(&table)
                ),
            });
        } else {
            notes.push(format!(
                "{table}: backend = \"native\" partition maintenance is strata's own code and cannot run inside \
                 pg_cron; run `strata serve` (or `strata schedule daemon`), or call `strata maintain` from the \
                 system crontab"
            ));
        }
        // One job per table: VACUUM cannot run inside the implicit
        // transaction of a multi-statement command.
        jobs.push(CronJob {
            name: format!("{PREFIX}vacuum{suffix}"),
            schedule: m.vacuum_schedule.clone(),
            command: format!("VACUUM (ANALYZE) {}", spec.name),
        });
    }
    jobs.push(CronJob {
        name: format!("{PREFIX}prune-history"),
        schedule: "30 4 * * *".into(),
        command: format!(
            "DELETE FROM cron.job_run_details WHERE end_time < now() - interval '{HISTORY_DAYS} days'"
        ),
    });
    if m.timezone != "UTC" {
        notes.push(format!(
            "maintenance.timezone is {:?}, but pg_cron reads schedules in its own cron.timezone (GMT unless set)",
            m.timezone
        ));
    }
    for j in &jobs {
        if j.schedule.split_whitespace().count() != 5 {
            return Err(SchedulerError::PgCron(format!(
                "{}: pg_cron takes five-field schedules, not {:?}",
                j.name, j.schedule
            )));
        }
    }
    Ok(Installed { jobs, notes })
}

/// pg_cron must be preloaded, and jobs live in the database named by
/// `cron.database_name`.
pub async fn check(client: &Client) -> Result<(), SchedulerError> {
    let row = client
        .query_one(
            "SELECT current_database()::text,
                    current_setting('cron.database_name', true),
                    CASE WHEN pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')
                         THEN 'pg_cron' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
                    END,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'pg_cron')",
            &[],
        )
        .await
        .map_err(DbError::query("checking pg_cron"))?;
    let db: String = row.get(0);
    let cron_db: Option<String> = row.get(1);
    let preloaded: Option<bool> = row.get(2);
    let available: bool = row.get(3);
    if !available {
        return Err(SchedulerError::PgCron(
            "pg_cron is not installed on the server: install it (Debian/Ubuntu: apt-get install \
             postgresql-15-cron), then add it to shared_preload_libraries and restart"
                .into(),
        ));
    }
    // The GUC exists only once the library is loaded.
    if preloaded == Some(false) || cron_db.is_none() {
        return Err(SchedulerError::PgCron(format!(
            "pg_cron is installed but not loaded: add it to shared_preload_libraries (keeping what is there, e.g. \
             ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements,pg_cron'), set \
             ALTER SYSTEM SET cron.database_name = {}, and restart the server",
            literal(&db)
        )));
    }
    let cron_db = cron_db.unwrap_or_default();
    if cron_db != db {
        return Err(SchedulerError::PgCron(format!(
            "pg_cron runs jobs from database {cron_db:?} (cron.database_name) but this is {db:?}: either run this \
             command against {cron_db:?}, or ALTER SYSTEM SET cron.database_name = {} and restart the server",
            literal(&db)
        )));
    }
    Ok(())
}

/// Registers (or updates) the jobs; removes `strata-` jobs no longer wanted.
pub async fn install(client: &Client, config: &Config) -> Result<Installed, SchedulerError> {
    check(client).await?;
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        .await
        .map_err(DbError::query("creating the pg_cron extension"))?;
    let wanted = wanted(client, config).await?;
    for j in &wanted.jobs {
        client
            .execute(
                "SELECT cron.schedule($1, $2, $3)",
                &[&j.name, &j.schedule, &j.command],
            )
            .await
            .map_err(DbError::query(format!("scheduling {}", j.name)))?;
    }
    let names: Vec<String> = wanted.jobs.iter().map(|j| j.name.clone()).collect();
    client
        .execute(
            "SELECT cron.unschedule(jobid) FROM cron.job
              WHERE jobname LIKE 'strata-%' AND NOT (jobname = ANY ($1))",
            &[&names],
        )
        .await
        .map_err(DbError::query("removing stale strata jobs"))?;
    Ok(wanted)
}

/// Removes every `strata-` job. Returns their names.
pub async fn uninstall(client: &Client) -> Result<Vec<String>, SchedulerError> {
    check(client).await?;
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron')",
            &[],
        )
        .await
        .map_err(DbError::query("checking pg_cron"))?
        .get(0);
    if !exists {
        return Ok(vec![]);
    }
    let rows = client
        .query(
            "SELECT jobname, cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'strata-%' ORDER BY jobname",
            &[],
        )
        .await
        .map_err(DbError::query("unscheduling strata jobs"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The `strata-` jobs pg_cron has.
pub async fn installed(client: &Client) -> Result<Vec<CronJob>, SchedulerError> {
    let rows = client
        .query(
            "SELECT jobname, schedule, command FROM cron.job WHERE jobname LIKE 'strata-%' ORDER BY jobname",
            &[],
        )
        .await
        .map_err(DbError::query("listing pg_cron jobs"))?;
    Ok(rows
        .iter()
        .map(|r| CronJob {
            name: r.get(0),
            schedule: r.get(1),
            command: r.get(2),
        })
        .collect())
}
