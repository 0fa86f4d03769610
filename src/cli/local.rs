//! `strata local …` and `strata migrate`.

use serde_json::json;

use super::{print_json, LocalAction, Target};
use crate::cluster::{LocalCluster, DEFAULT_DATABASE};
use crate::{schema, Error, Result};

pub async fn run(action: &LocalAction, json: bool) -> Result<()> {
    let cluster = LocalCluster::from_env();
    match action {
        LocalAction::Start => {
            Target::local().await?;
            // The password stays out of the output (terminals, CI logs):
            // `strata local url` says where it is.
            let url = cluster
                .state()?
                .map(|s| s.public_url(DEFAULT_DATABASE))
                .unwrap_or_default();
            if json {
                print_json(&json!({"running": true, "url": url}))
            } else {
                println!("local PostgreSQL is running: {url}");
                println!("(`strata local url` tells where its password is)");
                Ok(())
            }
        }
        LocalAction::Stop => {
            let stopped = blocking(move || cluster.stop()).await?;
            if json {
                print_json(&json!({"running": false, "stopped": stopped}))
            } else {
                println!(
                    "{}",
                    if stopped {
                        "stopped"
                    } else {
                        "was not running"
                    }
                );
                Ok(())
            }
        }
        LocalAction::Status => {
            let status = blocking(move || cluster.status()).await?;
            if json {
                return print_json(&status);
            }
            match (&status.url, status.running) {
                (Some(url), true) => println!("running  {url}"),
                (Some(url), false) => println!("stopped  {url}"),
                (None, _) => println!("not initialized (run `strata local start`)"),
            }
            if let Some(data) = &status.data_dir {
                println!("data     {}", data.display());
            }
            if let Some(log) = &status.log_file {
                println!("log      {}", log.display());
            }
            Ok(())
        }
        LocalAction::Url { show_password } => {
            let state = cluster.state()?.ok_or_else(|| {
                Error::Precondition(
                    "the local cluster is not initialized; run `strata local start`".into(),
                )
            })?;
            if *show_password {
                let url = state.url(DEFAULT_DATABASE);
                return if json {
                    print_json(&json!({"url": url}))
                } else {
                    println!("{url}");
                    Ok(())
                };
            }
            let url = state.public_url(DEFAULT_DATABASE);
            let pgpass = cluster.write_pgpass(&state)?;
            if json {
                print_json(&json!({"url": url, "pgpassfile": pgpass}))
            } else {
                println!("{url}");
                eprintln!(
                    "the password is in {} (mode 600): export PGPASSFILE={}, or pass --show-password",
                    pgpass.display(),
                    pgpass.display()
                );
                Ok(())
            }
        }
        LocalAction::Destroy { yes } => {
            if !yes {
                return Err(Error::Usage(
                    "`strata local destroy` deletes the local cluster's data; pass --yes to confirm".into(),
                ));
            }
            blocking(move || cluster.destroy()).await?;
            if json {
                print_json(&json!({"destroyed": true}))
            } else {
                println!("local cluster destroyed");
                Ok(())
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, crate::cluster::ClusterError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Failed(format!("cluster task failed: {e}")))??)
}

pub async fn migrate(target: &Target, dry_run: bool, json: bool) -> Result<()> {
    let mut client = target.connect().await?;
    let report = schema::migrate(&mut client, dry_run).await?;
    if json {
        return print_json(&report);
    }
    if report.applied.is_empty() {
        println!(
            "schema is up to date ({} migrations applied)",
            report.already_applied
        );
    }
    for m in &report.applied {
        let verb = if dry_run { "would apply" } else { "applied" };
        println!("{verb} migration {} ({})", m.version, m.name);
        if dry_run {
            let sql = schema::MIGRATIONS
                .iter()
                .find(|x| x.version == m.version)
                .map(|x| x.sql)
                .unwrap_or("");
            println!("{sql}");
        }
    }
    Ok(())
}
