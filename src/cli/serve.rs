//! `strata serve` and `strata token create|list|revoke`.

use std::time::Duration;

use serde_json::json;

use super::{print_json, ServeArgs, Target};
use crate::api::{self, events, tokens, Role, ServeOptions};
use crate::config::Config;
use crate::{format, Error, Result};

pub async fn serve(target: &Target, config: Config, args: &ServeArgs) -> Result<()> {
    let bind = args.bind.clone().unwrap_or_else(|| config.api.bind.clone());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(api::tls_config(cert, key).map_err(Error::Usage)?),
        _ => None,
    };
    let options = ServeOptions {
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        // No statement outlives its request, even if its cancel is lost.
        statement_timeout: Duration::from_secs(args.request_timeout.max(1)),
        job_grace: Duration::from_secs(args.job_grace),
        pool_size: args.pool_size,
        max_connections: args.max_connections.max(1),
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
        tls,
        role: api_role(target, &config).await?,
        token_cache_ttl: Duration::from_millis(args.token_cache_ms),
        failed_auth_limit: Some(api::guard::RateLimit {
            burst: f64::from(args.failed_auth_burst.max(1)),
            ..api::guard::RateLimit::FAILED_AUTH
        }),
        ..ServeOptions::guarded()
    };
    // Read before serving: a webhook secret file that cannot be read stops
    // the start, not the first alert.
    let webhook_key = match &config.alerts.secret {
        Some(secret) if config.alerts.webhook_url.is_some() => Some(secret.read()?),
        _ => None,
    };
    let pool = api::pool_with(&target.url, &options)?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Failed(e.to_string()))?;
    let scheme = if options.tls_on() { "https" } else { "http" };
    eprintln!("strata API listening on {scheme}://{addr} (ctrl-c or SIGTERM stops it)");
    // One signal stops both the API and the scheduler.
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        api::shutdown_signal().await;
        on_signal.cancel();
    });
    let scheduler = (!args.no_scheduler).then(|| {
        let (url, config, stop) = (target.url.clone(), config.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) =
                crate::scheduler::run(&url, &config, false, stop.cancelled_owned()).await
            {
                tracing::error!(error = %e, "the scheduler stopped");
            }
        })
    });
    let state = api::AppState::new(pool, config, options);
    let alerts = webhook_key.map(|key| {
        let (pool, config, metrics) = (
            state.pool.clone(),
            state.config.clone(),
            state.metrics.clone(),
        );
        tokio::spawn(crate::alerts::webhook::run(
            pool,
            config,
            metrics,
            key,
            stop.clone(),
        ))
    });
    let served = api::serve(state, listener, stop.clone().cancelled_owned())
        .await
        .map_err(|e| Error::Failed(format!("serving: {e}")));
    stop.cancel();
    if let Some(s) = scheduler {
        // A scheduled job in progress ends with its statement; its row is
        // closed by the next claim if the process is gone first.
        let _ = tokio::time::timeout(Duration::from_secs(args.job_grace), s).await;
    }
    if let Some(a) = alerts {
        // An event mid-delivery is dropped at shutdown (it is logged).
        let _ = tokio::time::timeout(Duration::from_secs(2), a).await;
    }
    served
}

/// The role request sessions run as, made ready (`api::privileges`); what
/// was created or could not be granted goes to stderr.
async fn api_role(target: &Target, config: &Config) -> Result<Option<String>> {
    let client = target.connect().await?;
    let prepared = api::privileges::prepare(&client, config, &config.api.role)
        .await
        .map_err(|e| match e {
            api::privileges::PrivilegeError::Db(e) => Error::from(e),
            e @ api::privileges::PrivilegeError::BadName(_) => Error::Usage(e.to_string()),
            other => Error::Precondition(other.to_string()),
        })?;
    for note in &prepared.notes {
        eprintln!("{note}");
    }
    if let Some(role) = &prepared.role {
        eprintln!("API requests run as database role {role}; jobs as the login role");
    }
    Ok(prepared.role)
}

/// A CLI-side admin action as a security event: no address, the OS user as agent.
async fn record(
    client: &tokio_postgres::Client,
    config: &Config,
    action: &str,
    id: i64,
    details: serde_json::Value,
) {
    let user = std::env::var("USER").unwrap_or_else(|_| "?".into());
    let event = events::Event {
        action: action.into(),
        user_id: 0,
        resource_type: Some("api_token"),
        resource_id: Some(id),
        status: "success",
        severity: "info",
        ip: None,
        user_agent: Some(format!("strata-cli ({user})")),
        details,
    };
    if let Err(e) = events::write(client, &config.tables[0].name, &event).await {
        eprintln!("warning: could not record the {action} security event: {e}");
    }
}

pub async fn token_create(
    target: &Target,
    config: &Config,
    role: &str,
    name: Option<&str>,
    json: bool,
) -> Result<()> {
    let role = Role::parse(role).ok_or_else(|| Error::Usage(format!("unknown role {role}")))?;
    let client = target.connect().await?;
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| format!("{role} token"));
    let (info, token) = tokens::create(&client, role, &name).await?;
    record(
        &client,
        config,
        "admin.token_create",
        info.id,
        json!({"token_id": info.id, "name": info.name, "role": role}),
    )
    .await;
    if json {
        return print_json(
            &json!({"token": token, "id": info.id, "name": info.name, "role": role}),
        );
    }
    eprintln!(
        "token {} ({}, role {role}) created; it is shown only this once:",
        info.id, info.name
    );
    println!("{token}");
    Ok(())
}

pub async fn token_list(target: &Target, json: bool) -> Result<()> {
    let client = target.connect().await?;
    let list = tokens::list(&client).await?;
    if json {
        return print_json(&list);
    }
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.role.to_string(),
                when(Some(t.created_at)),
                when(t.last_used_at),
                when(t.revoked_at),
            ]
        })
        .collect();
    println!(
        "{}",
        format::table(
            &[
                ">id",
                "name",
                "role",
                "created (UTC)",
                "last used",
                "revoked"
            ],
            &rows
        )
    );
    Ok(())
}

pub async fn token_revoke(target: &Target, config: &Config, id: i64, json: bool) -> Result<()> {
    let client = target.connect().await?;
    let info = tokens::revoke(&client, id)
        .await?
        .ok_or_else(|| Error::Usage(format!("there is no token {id}")))?;
    record(
        &client,
        config,
        "admin.token_revoke",
        id,
        json!({"token_id": id, "name": info.name, "role": info.role}),
    )
    .await;
    if json {
        return print_json(&info);
    }
    println!("token {id} ({}) revoked", info.name);
    Ok(())
}
