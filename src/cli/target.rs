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
    /// The URL to work on. With no URL the local cluster is started (and, when
    /// `migrate_local`, migrated: it is strata's own database, so keeping its
    /// schema current is strata's job; a user's server is migrated only by an
    /// explicit `strata migrate`).
    pub async fn resolve(cli: &Cli, migrate_local: bool) -> Result<Target> {
        if let Some(url) = &cli.database_url {
            return Ok(Target {
                url: url.clone(),
                local: false,
            });
        }
        let target = Self::local().await?;
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
