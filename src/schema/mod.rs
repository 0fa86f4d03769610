//! Versioned migrations, embedded in the binary.
//!
//! Each migration runs in its own transaction and is recorded in
//! `strata.schema_migrations` with a SHA-256 of its text. The whole run holds
//! an advisory lock, so two `strata migrate` processes apply each migration
//! exactly once; a migration whose text changed after it was applied is
//! refused rather than silently skipped.

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::db::{self, DbError};

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "conversions",
        sql: include_str!("migrations/0002_conversions.sql"),
    },
    Migration {
        version: 3,
        name: "ops",
        sql: include_str!("migrations/0003_ops.sql"),
    },
    Migration {
        version: 4,
        name: "search",
        sql: include_str!("migrations/0004_search.sql"),
    },
    Migration {
        version: 5,
        name: "archive",
        sql: include_str!("migrations/0005_archive.sql"),
    },
    Migration {
        version: 6,
        name: "rollups",
        sql: include_str!("migrations/0006_rollups.sql"),
    },
    Migration {
        version: 7,
        name: "seals",
        sql: include_str!("migrations/0007_seals.sql"),
    },
    Migration {
        version: 9,
        name: "job_progress",
        sql: include_str!("migrations/0009_job_progress.sql"),
    },
];

const LOCK_NAME: &str = "migrate";

const BOOTSTRAP: &str = "CREATE SCHEMA IF NOT EXISTS strata;
CREATE TABLE IF NOT EXISTS strata.schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "migration {version} ({name}) was changed after it was applied: the database recorded checksum {recorded}, \
         this strata has {embedded}. Applied migrations must never be edited; add a new migration instead"
    )]
    Edited {
        version: i32,
        name: String,
        recorded: String,
        embedded: String,
    },
    #[error("the database has migration {version} ({name}), which this strata does not know: it was migrated by a newer strata")]
    Unknown { version: i32, name: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    pub version: i32,
    pub name: &'static str,
    pub checksum: String,
    pub applied: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub applied: Vec<MigrationStatus>,
    pub already_applied: usize,
    pub dry_run: bool,
}

pub fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Applies every pending migration of `migrations` (normally [`MIGRATIONS`]).
pub async fn migrate_with(
    client: &mut Client,
    migrations: &[Migration],
    dry_run: bool,
) -> Result<MigrateReport, SchemaError> {
    db::advisory_lock(client, LOCK_NAME).await?;
    let result = migrate_locked(client, migrations, dry_run).await;
    // The lock is session-level: release it even when a migration failed.
    let unlock = db::advisory_unlock(client, LOCK_NAME).await;
    let report = result?;
    unlock?;
    Ok(report)
}

pub async fn migrate(client: &mut Client, dry_run: bool) -> Result<MigrateReport, SchemaError> {
    migrate_with(client, MIGRATIONS, dry_run).await
}

async fn migrate_locked(
    client: &mut Client,
    migrations: &[Migration],
    dry_run: bool,
) -> Result<MigrateReport, SchemaError> {
    let recorded = if dry_run {
        recorded_if_any(client).await?
    } else {
        client
            .batch_execute(BOOTSTRAP)
            .await
            .map_err(DbError::query("creating strata.schema_migrations"))?;
        recorded_if_any(client).await?
    };
    check_recorded(&recorded, migrations)?;
    let mut applied = Vec::new();
    for m in migrations {
        if recorded.iter().any(|(v, _, _)| *v == m.version) {
            continue;
        }
        let sum = checksum(m.sql);
        if !dry_run {
            let tx = client
                .transaction()
                .await
                .map_err(DbError::query("starting a migration transaction"))?;
            tx.batch_execute(m.sql)
                .await
                .map_err(DbError::query(format!(
                    "applying migration {} ({})",
                    m.version, m.name
                )))?;
            tx.execute(
                "INSERT INTO strata.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &sum],
            )
            .await
            .map_err(DbError::query("recording a migration"))?;
            tx.commit().await.map_err(DbError::query(format!(
                "committing migration {}",
                m.version
            )))?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
        }
        applied.push(MigrationStatus {
            version: m.version,
            name: m.name,
            checksum: sum,
            applied: !dry_run,
        });
    }
    Ok(MigrateReport {
        already_applied: recorded.len(),
        applied,
        dry_run,
    })
}

async fn recorded_if_any(client: &Client) -> Result<Vec<(i32, String, String)>, SchemaError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('strata.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(DbError::query("looking for strata.schema_migrations"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, checksum FROM strata.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(DbError::query("reading strata.schema_migrations"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

fn check_recorded(
    recorded: &[(i32, String, String)],
    migrations: &[Migration],
) -> Result<(), SchemaError> {
    for (version, name, sum) in recorded {
        let Some(m) = migrations.iter().find(|m| m.version == *version) else {
            return Err(SchemaError::Unknown {
                version: *version,
                name: name.clone(),
            });
        };
        let embedded = checksum(m.sql);
        if &embedded != sum {
            return Err(SchemaError::Edited {
                version: *version,
                name: name.clone(),
                recorded: sum.clone(),
                embedded,
            });
        }
    }
    Ok(())
}

/// The highest applied version, or `None` when strata never migrated here.
pub async fn current_version(client: &Client) -> Result<Option<i32>, SchemaError> {
    Ok(recorded_if_any(client)
        .await?
        .iter()
        .map(|(v, _, _)| *v)
        .max())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_unique() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        assert_eq!(MIGRATIONS[0].version, 1);
    }

    #[test]
    fn an_edited_migration_is_detected() {
        let recorded = vec![(1, "init".to_string(), "0".repeat(64))];
        let e = check_recorded(&recorded, MIGRATIONS).unwrap_err();
        assert!(matches!(e, SchemaError::Edited { version: 1, .. }), "{e}");
        let ok = vec![(1, "init".to_string(), checksum(MIGRATIONS[0].sql))];
        assert!(check_recorded(&ok, MIGRATIONS).is_ok());
        let unknown = vec![(99, "future".to_string(), "x".into())];
        assert!(matches!(
            check_recorded(&unknown, MIGRATIONS),
            Err(SchemaError::Unknown { version: 99, .. })
        ));
    }
}
