//! API tokens: a random secret shown once, stored only as its SHA-256 in
//! `strata.api_tokens`.
//!
//! Lookup is by hash, through the unique index, so no comparison of the
//! secret itself ever runs: how long the index search takes depends on the
//! hash of what the caller sent, and learning which stored hashes share a
//! prefix with it says nothing useful about a token without a preimage.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use utoipa::ToSchema;

use crate::db::DbError;

/// Every token starts with this, so a leaked one is easy to find in logs
/// and code, and obvious garbage is refused without a database lookup.
pub const TOKEN_PREFIX: &str = "strata_";
/// Random bytes per token (hex-encoded after the prefix).
const TOKEN_BYTES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Reader,
    Writer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
            Role::Writer => "writer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            _ => None,
        }
    }

    /// Whether a token of this role may do what `needed` is required for:
    /// admin may do everything, the others only their own.
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `strata.api_tokens`, without the hash.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The caller a valid token belongs to.
#[derive(Clone, Debug, Serialize)]
pub struct Principal {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
}

/// Why a presented token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    Unknown,
    Revoked,
    /// The stored role is none strata knows (a newer version's, or edited
    /// by hand): such a token gets no access at all rather than a guess.
    UnknownRole,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed token",
            Refused::Unknown => "unknown token",
            Refused::Revoked => "revoked token",
            Refused::UnknownRole => "token with an unknown stored role",
        }
    }
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn generate() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// Whether `token` has the shape of one strata made (checked before any lookup).
pub fn well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == TOKEN_BYTES * 2 && rest.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Creates a token; the returned secret is not stored anywhere.
pub async fn create(
    client: &Client,
    role: Role,
    name: &str,
) -> Result<(TokenInfo, String), DbError> {
    let token = generate();
    let row = client
        .query_one(
            "INSERT INTO strata.api_tokens (name, role, token_sha256) VALUES ($1, $2, $3)
             RETURNING id, created_at",
            &[&name, &role.as_str(), &hash(&token)],
        )
        .await
        .map_err(DbError::query("storing the token"))?;
    let info = TokenInfo {
        id: row.get(0),
        name: name.to_string(),
        role,
        created_at: row.get(1),
        last_used_at: None,
        revoked_at: None,
    };
    Ok((info, token))
}

pub async fn list(client: &Client) -> Result<Vec<TokenInfo>, DbError> {
    let rows = client
        .query(
            "SELECT id, name, role, created_at, last_used_at, revoked_at FROM strata.api_tokens ORDER BY id",
            &[],
        )
        .await
        .map_err(DbError::query("listing tokens"))?;
    Ok(rows
        .iter()
        .map(|r| TokenInfo {
            id: r.get(0),
            name: r.get(1),
            role: Role::parse(r.get(2)).unwrap_or(Role::Reader),
            created_at: r.get(3),
            last_used_at: r.get(4),
            revoked_at: r.get(5),
        })
        .collect())
}

/// Revokes token `id`. `None` when there is no such token; revoking twice
/// keeps the first revocation time.
pub async fn revoke(client: &Client, id: i64) -> Result<Option<TokenInfo>, DbError> {
    let row = client
        .query_opt(
            "UPDATE strata.api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
             RETURNING id, name, role, created_at, last_used_at, revoked_at",
            &[&id],
        )
        .await
        .map_err(DbError::query("revoking the token"))?;
    Ok(row.map(|r| TokenInfo {
        id: r.get(0),
        name: r.get(1),
        role: Role::parse(r.get(2)).unwrap_or(Role::Reader),
        created_at: r.get(3),
        last_used_at: r.get(4),
        revoked_at: r.get(5),
    }))
}

/// The principal behind `token`, in one round trip that also refreshes
/// `last_used_at`. That is written at most once a minute per token, so a
/// busy client does not turn every request into an UPDATE.
pub async fn authenticate(
    client: &Client,
    token: &str,
) -> Result<Result<Principal, Refused>, DbError> {
    if !well_formed(token) {
        return Ok(Err(Refused::Malformed));
    }
    let sql = "WITH t AS (SELECT id, name, role, revoked_at, last_used_at FROM strata.api_tokens WHERE token_sha256 = $1),
              touched AS (UPDATE strata.api_tokens a SET last_used_at = now() FROM t
                           WHERE a.id = t.id AND t.revoked_at IS NULL
                             AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute'))
         SELECT id, name, role, revoked_at IS NOT NULL FROM t";
    let row = client
        .query_opt(sql, &[&hash(token)])
        .await
        .map_err(DbError::query("looking up the token"))?;
    let Some(row) = row else {
        return Ok(Err(Refused::Unknown));
    };
    if row.get::<_, bool>(3) {
        return Ok(Err(Refused::Revoked));
    }
    let Some(role) = Role::parse(row.get(2)) else {
        return Ok(Err(Refused::UnknownRole));
    };
    Ok(Ok(Principal {
        token_id: row.get(0),
        name: row.get(1),
        role,
    }))
}

/// Whether token `id` still exists unrevoked: a dashboard session lives
/// only as long as the token it was opened with.
pub async fn active(client: &Client, id: i64) -> Result<bool, DbError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM strata.api_tokens WHERE id = $1 AND revoked_at IS NULL",
            &[&id],
        )
        .await
        .map_err(DbError::query("checking the token"))?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_hex() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert!(!well_formed("strata_xyz"));
        assert!(!well_formed(&a.replace("strata_", "other_")));
        assert_eq!(hash(&a).len(), 32);
    }

    #[test]
    fn admin_may_do_everything_others_their_own() {
        assert!(Role::Admin.allows(Role::Writer));
        assert!(Role::Admin.allows(Role::Reader));
        assert!(Role::Reader.allows(Role::Reader));
        assert!(!Role::Reader.allows(Role::Writer));
        assert!(!Role::Writer.allows(Role::Reader));
        assert!(!Role::Reader.allows(Role::Admin));
    }
}
