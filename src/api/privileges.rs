//! Least privilege for API requests.
//!
//! `serve` logs in once, as the URL's role (the owner of the managed tables:
//! partition DDL, index builds and vacuum need ownership, which PostgreSQL
//! 15 grants no other way). Every request session runs as a role with only
//! what requests need (`[api] role`, default `strata_api`): each pooled
//! connection starts with `-c role=strata_api`, so its first statement
//! already runs as that role and the pool's RESET ALL returns to it. Jobs
//! started by a request are the owner's work: the job's session goes back to
//! the login role (`SET ROLE NONE`) before the operation begins, and the
//! connection leaves the pool when the job ends.
//!
//! What requests need, granted here at every start (grants are idempotent):
//! USAGE on the schemas; SELECT and INSERT on the managed tables and USAGE
//! on their sequences (writes and security events); SELECT on strata's own
//! tables (jobs, tokens, specs, stats readings) and UPDATE of
//! `api_tokens.last_used_at`; INSERT and DELETE on `strata.query_snapshots`;
//! SELECT on the partitions (some stats read one directly) and on rollup
//! views, and by default on tables the login role makes later in the
//! managed tables' schemas (new partitions); `pg_monitor` for the stats and
//! health pages.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::config::Config;
use crate::db::{DbError, Ident, QualifiedName};

/// The role API requests run as unless `[api] role` says otherwise.
pub const DEFAULT_ROLE: &str = "strata_api";

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "[api] role = {0:?} is not a plain role name (lower-case letters, digits and _, not starting \
         with a digit, at most 63); use such a name, or \"\" to run requests as the login role"
    )]
    BadName(String),
    #[error(
        "API requests run as role {role}, which does not exist, and {login} may not create it: create \
         it with the GRANT script in the README (\"Roles and privileges\"), or set [api] role = \"\" to run \
         requests as {login} itself"
    )]
    Missing { role: String, login: String },
    #[error(
        "API requests run as role {role}, but {login} is not a member of it, so its sessions cannot \
         switch to it: GRANT {role} TO {login}"
    )]
    NotMember { role: String, login: String },
    #[error(
        "API requests run as role {role}, which is a superuser: that limits nothing. Use a role \
         without SUPERUSER (see the README's \"Roles and privileges\")"
    )]
    Superuser { role: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What [`prepare`] settled on.
#[derive(Debug)]
pub struct Prepared {
    /// The role request sessions run as; `None`: the login role.
    pub role: Option<String>,
    /// For stderr: what was created, or which grant could not be made.
    pub notes: Vec<String>,
}

/// Checks `[api] role`: a name that needs no quoting anywhere, so it can go
/// into the connection options as it is.
pub fn role_name(name: &str) -> Result<Option<String>, PrivilegeError> {
    if name.is_empty() {
        return Ok(None);
    }
    let plain = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !plain {
        return Err(PrivilegeError::BadName(name.into()));
    }
    Ok(Some(name.into()))
}

/// Makes sure `role` (from `[api] role`) exists, that the login role may
/// switch to it, and that it holds what requests need on `config`'s tables.
/// Creates it (NOLOGIN) when the login role may create roles, as the local
/// cluster's superuser may. Grants the login role cannot make (e.g.
/// `pg_monitor` without superuser) become notes: the README's script has them.
pub async fn prepare(
    client: &Client,
    config: &Config,
    role: &str,
) -> Result<Prepared, PrivilegeError> {
    let Some(name) = role_name(role)? else {
        let row = client
            .query_one(
                "SELECT current_user::text, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(DbError::query("looking up the login role"))?;
        let (login, superuser): (String, bool) = (row.get(0), row.get(1));
        let mut notes = vec![format!(
            "warning: [api] role = \"\": API requests run as the login role {login}{}",
            if superuser { ", a superuser" } else { "" }
        )];
        if superuser {
            notes.push("warning: a request session can do anything; set [api] role (see the README's \"Roles and privileges\")".into());
        }
        return Ok(Prepared { role: None, notes });
    };
    let mut notes = Vec::new();
    let login = ensure_role(client, &name, &mut notes).await?;
    for (what, sql) in grants(client, config, &name).await? {
        if let Err(e) = grant(client, &sql).await {
            if e.code() != Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                return Err(DbError::query("granting the API role its privileges")(e).into());
            }
            notes.push(format!(
                "warning: {login} could not grant {name} {what} ({}); some API routes may fail: run the \
                 README's GRANT script as a superuser",
                e.as_db_error().map(|d| d.message()).unwrap_or("permission denied")
            ));
        }
    }
    Ok(Prepared {
        role: Some(name),
        notes,
    })
}

/// Runs one GRANT. Two servers granting the same role membership at once
/// can collide on the shared catalog ("tuple concurrently updated"); the
/// grant is idempotent, so it is simply tried again.
async fn grant(client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        match client.batch_execute(sql).await {
            Err(e)
                if attempt < ATTEMPTS
                    && matches!(
                        e.code(),
                        Some(c) if *c == SqlState::INTERNAL_ERROR
                            || *c == SqlState::UNIQUE_VIOLATION
                            || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    ) =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Creates `role` when missing (and allowed) and checks membership.
/// Returns the login role's name.
async fn ensure_role(
    client: &Client,
    role: &str,
    notes: &mut Vec<String>,
) -> Result<String, PrivilegeError> {
    let sql = "SELECT current_user::text, me.rolsuper OR me.rolcreaterole,
                      r.oid IS NOT NULL, coalesce(r.rolsuper, false)
                 FROM pg_catalog.pg_roles me
                 LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1
                WHERE me.rolname = current_user";
    let row = client
        .query_one(sql, &[&role])
        .await
        .map_err(DbError::query("looking up the API role"))?;
    let (login, may_create, exists, superuser): (String, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let ident = Ident::new(role).map_err(|_| PrivilegeError::BadName(role.into()))?;
    if superuser {
        return Err(PrivilegeError::Superuser { role: role.into() });
    }
    if !exists {
        if !may_create {
            return Err(PrivilegeError::Missing {
                role: role.into(),
                login,
            });
        }
        match client
            .batch_execute(&format!("CREATE ROLE {ident} NOLOGIN"))
            .await
        {
            Ok(()) => notes.push(format!(
                "created role {role} (NOLOGIN): API requests run as it"
            )),
            // Another serve (or test) created it in the meantime: roles are
            // per cluster, not per database.
            Err(e)
                if e.code() == Some(&SqlState::DUPLICATE_OBJECT)
                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(DbError::query("creating the API role")(e).into()),
        }
    }
    let member: bool = client
        .query_one(
            "SELECT pg_catalog.pg_has_role(current_user, $1, 'MEMBER')",
            &[&role],
        )
        .await
        .map_err(DbError::query("checking membership of the API role"))?
        .get(0);
    if !member {
        // A CREATEROLE login may grant itself a role it made.
        let _ = client
            .batch_execute(&format!("GRANT {ident} TO CURRENT_USER"))
            .await;
        let member: bool = client
            .query_one(
                "SELECT pg_catalog.pg_has_role(current_user, $1, 'MEMBER')",
                &[&role],
            )
            .await
            .map_err(DbError::query("checking membership of the API role"))?
            .get(0);
        if !member {
            return Err(PrivilegeError::NotMember {
                role: role.into(),
                login,
            });
        }
    }
    Ok(login)
}

/// The GRANT statements for `role`, each with what it is for. Names come
/// from the catalog and go through [`Ident`]; only existing relations.
async fn grants(
    client: &Client,
    config: &Config,
    role: &str,
) -> Result<Vec<(String, String)>, PrivilegeError> {
    let r = Ident::new(role).map_err(|_| PrivilegeError::BadName(role.into()))?;
    let mut out = vec![
        (
            "USAGE on schema strata".to_string(),
            format!("GRANT USAGE ON SCHEMA strata TO {r}"),
        ),
        (
            "SELECT on strata's tables".into(),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA strata TO {r}"),
        ),
        (
            "UPDATE of api_tokens.last_used_at".into(),
            format!("GRANT UPDATE (last_used_at) ON strata.api_tokens TO {r}"),
        ),
        (
            "UPDATE of jobs.progress (a running job's latest line)".into(),
            format!("GRANT UPDATE (progress, progress_at) ON strata.jobs TO {r}"),
        ),
        (
            "INSERT, DELETE on strata.query_snapshots".into(),
            format!("GRANT INSERT, DELETE ON strata.query_snapshots TO {r}"),
        ),
        (
            "pg_monitor (stats and health pages)".into(),
            format!("GRANT pg_monitor TO {r}"),
        ),
    ];
    let mut relations: Vec<(QualifiedName, &'static str)> = Vec::new();
    for spec in &config.tables {
        relations.push((spec.name.clone(), "table"));
    }
    // Sequences of the managed tables (BIGSERIAL ids) and rollup views, from
    // the catalog: only what exists.
    let names: Vec<String> = config.tables.iter().map(|t| t.name.to_string()).collect();
    let rows = client
        .query(
            "SELECT n.nspname::text, s.relname::text, 'sequence'
               FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
               JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
              WHERE d.classid = 'pg_catalog.pg_class'::regclass
                AND d.refobjid = ANY (SELECT pg_catalog.to_regclass(x)::oid FROM unnest($1::text[]) x)
                AND d.deptype IN ('a', 'i')
             UNION ALL
             -- Partitions: some stats read one directly (the default's rows).
             SELECT n.nspname::text, c.relname::text, 'view'
               FROM unnest($1::text[]) x
               CROSS JOIN LATERAL pg_catalog.pg_partition_tree(pg_catalog.to_regclass(x)) t
               JOIN pg_catalog.pg_class c ON c.oid = t.relid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE t.level > 0
             UNION ALL
             SELECT r.schema_name, r.view_name, 'view'
               FROM strata.rollups r
              WHERE pg_catalog.to_regclass(pg_catalog.quote_ident(r.schema_name) || '.' || pg_catalog.quote_ident(r.view_name)) IS NOT NULL",
            &[&names],
        )
        .await
        .map_err(DbError::query("listing the managed tables' sequences and rollup views"))?;
    for row in rows {
        let kind: &str = row.get(2);
        if let Ok(name) = QualifiedName::new(row.get(0), row.get(1)) {
            relations.push((
                name,
                if kind == "sequence" {
                    "sequence"
                } else {
                    "read"
                },
            ));
        }
    }
    for (name, kind) in relations {
        let exists: bool = client
            .query_one(
                "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                &[&name.to_string()],
            )
            .await
            .map_err(DbError::query("looking up a managed table"))?
            .get(0);
        if !exists {
            continue;
        }
        let shown = name.display_unquoted();
        let schema = &name.schema;
        out.push((
            format!("USAGE on schema {}", schema.as_str()),
            format!("GRANT USAGE ON SCHEMA {schema} TO {r}"),
        ));
        if kind == "table" {
            // Partitions made later (by maintain, the scheduler, the CLI:
            // all as this login role) are readable too.
            out.push((
                format!("SELECT on tables made later in schema {}", schema.as_str()),
                format!(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {r}"
                ),
            ));
        }
        let (what, sql) = match kind {
            "table" => (
                format!("SELECT, INSERT on {shown}"),
                format!("GRANT SELECT, INSERT ON TABLE {name} TO {r}"),
            ),
            "sequence" => (
                format!("USAGE on sequence {shown}"),
                format!("GRANT USAGE ON SEQUENCE {name} TO {r}"),
            ),
            _ => (
                format!("SELECT on {shown}"),
                format!("GRANT SELECT ON TABLE {name} TO {r}"),
            ),
        };
        out.push((what, sql));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_role_names_are_accepted() {
        assert_eq!(role_name("").unwrap(), None);
        assert_eq!(
            role_name("strata_api").unwrap().as_deref(),
            Some("strata_api")
        );
        for bad in ["Strata", "1api", "a b", "a-b", "x\"", &"a".repeat(64)] {
            assert!(role_name(bad).is_err(), "{bad}");
        }
    }
}
