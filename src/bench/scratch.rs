//! The scratch database: created on the target's server, recognised by a
//! marker comment, never one that holds the user's data.

use tokio_postgres::{Client, Config};

use super::BenchError;
use crate::db::{self, DbError, Ident};

/// The comment that marks a database as strata's own bench database: only
/// such a database is ever dropped and recreated.
const MARKER: &str = "strata bench scratch database (safe to drop)";

pub struct Scratch {
    admin_url: String,
    name: Ident,
    config: Config,
    tls: db::tls::Connector,
}

impl Scratch {
    /// Creates the database (recreating an earlier bench database of the same
    /// name); refuses a database that is not strata's.
    pub async fn create(admin_url: &str, name: &str) -> Result<Scratch, BenchError> {
        let ident = Ident::new(name)?;
        let (mut config, tls) = db::tls::parse(admin_url)?;
        let admin = db::connect(admin_url).await?;
        let current: String = admin
            .query_one("SELECT pg_catalog.current_database()::text", &[])
            .await
            .map_err(DbError::query("reading the current database"))?
            .get(0);
        if current == name {
            return Err(BenchError::NotOurs(name.to_string()));
        }
        let existing: Option<Option<String>> = admin
            .query_opt(
                "SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database \
                 WHERE datname = $1",
                &[&name],
            )
            .await
            .map_err(DbError::query("looking for the bench database"))?
            .map(|r| r.get(0));
        match existing {
            Some(comment) if comment.as_deref() == Some(MARKER) => {
                // FORCE: a kept bench database may still have a psql open on it.
                admin
                    .batch_execute(&format!("DROP DATABASE {ident} WITH (FORCE)"))
                    .await
                    .map_err(DbError::query("dropping the earlier bench database"))?;
            }
            Some(_) => return Err(BenchError::NotOurs(name.to_string())),
            None => {}
        }
        admin
            .batch_execute(&format!("CREATE DATABASE {ident}"))
            .await
            .map_err(DbError::query("creating the bench database"))?;
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {ident} IS {}",
                db::literal(MARKER)
            ))
            .await
            .map_err(DbError::query("marking the bench database"))?;
        config.dbname(name);
        if config.get_application_name().is_none() {
            config.application_name("strata bench");
        }
        Ok(Scratch {
            admin_url: admin_url.to_string(),
            name: ident,
            config,
            tls,
        })
    }

    /// A new session on the scratch database.
    pub async fn connect(&self) -> Result<Client, BenchError> {
        let (client, connection) =
            self.config
                .connect(self.tls.clone())
                .await
                .map_err(|source| DbError::Connect {
                    target: format!("bench database {}", self.name.as_str()),
                    source,
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "bench connection closed with an error");
            }
        });
        Ok(client)
    }

    pub async fn drop_database(&self) -> Result<(), BenchError> {
        let admin = db::connect(&self.admin_url).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .map_err(DbError::query("dropping the bench database"))?;
        Ok(())
    }
}
