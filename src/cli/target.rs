//! Which PostgreSQL a command works on: `--database-url`, or the local cluster.

use crate::cluster::{self, LocalCluster, DEFAULT_DATABASE};
use crate::db::{self, redact_url};
use crate::{schema, Result};

use super::Cli;

pub struct Target {
    pub url: String,
    /// Whether this is strata's own local cluster (started on demand).
    pub local: bool,
}

impl Target {
    /// The URL to work on: `--database-url` / `DATABASE_URL`, else the local
    /// cluster *if it exists* (started when stopped; said in one line on
    /// stderr, so a cron job that lost its environment cannot silently report
    /// on strata's own empty database). With neither: exit 2 with what to do.
    /// When `migrate_local`, the local cluster is migrated (it is strata's own
    /// database, so keeping its schema current is strata's job; a user's
    /// server is migrated only by an explicit `strata migrate`).
    pub async fn resolve(cli: &Cli, migrate_local: bool) -> Result<Target> {
        Self::resolve_with(cli, migrate_local, false).await
    }

    /// Like [`Target::resolve`], but creates the local cluster when there is
    /// none: only `demo` and `migrate --local` do that.
    pub async fn resolve_or_create(cli: &Cli, migrate_local: bool) -> Result<Target> {
        Self::resolve_with(cli, migrate_local, true).await
    }

    async fn resolve_with(cli: &Cli, migrate_local: bool, create: bool) -> Result<Target> {
        if let Some(url) = &cli.database_url {
            return Ok(Target {
                url: url.clone(),
                local: false,
            });
        }
        let cluster = LocalCluster::from_env();
        let home = cluster.home().display().to_string();
        if !create && !cluster.status()?.initialized {
            return Err(crate::Error::Usage(format!(
                "no database to work on: no --database-url, DATABASE_URL is not set, and there is no local \
                 cluster in {home}. Pass --database-url postgres://USER@HOST/DB (or set DATABASE_URL), or \
                 create strata's local cluster with `strata local start` (or `strata demo`)"
            )));
        }
        let target = Self::local().await?;
        eprintln!("using the local cluster in {home} (no --database-url)");
        if migrate_local {
            let mut client = db::connect(&target.url).await?;
            schema::migrate(&mut client, false).await?;
        }
        Ok(target)
    }

    pub async fn local() -> Result<Target> {
        let cluster = LocalCluster::from_env();
        let state = tokio::task::spawn_blocking(move || cluster.start())
            .await
            .map_err(|e| crate::Error::Failed(format!("starting the local cluster: {e}")))??;
        cluster::ensure_database(&state.url("postgres"), DEFAULT_DATABASE).await?;
        let url = state.url(DEFAULT_DATABASE);
        tracing::debug!(url = %redact_url(&url), "using the local cluster");
        Ok(Target { url, local: true })
    }

    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        Ok(db::connect(&self.url).await?)
    }
}
