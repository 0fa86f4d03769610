//! What an auditor checks offline (docs/seal-format.md "Checking offline"):
//! a period's receipt and one row's inclusion proof.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::merkle::{self, Hash};
use super::store::{self, StoredSeal};
use super::{parse_period, rows, show_time, sign, SealError};
use crate::config::{Config, TableSpec};

fn hex_opt(v: &Option<Vec<u8>>) -> Value {
    v.as_ref()
        .map(hex::encode)
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// The receipt of one seal: everything its seal hash covers, the hash,
/// the signature and key id (and the public key when one is configured;
/// an auditor should hold their own copy of it).
pub fn receipt(s: &StoredSeal, key: Option<&sign::Key>) -> Value {
    json!({
        "format": super::record::FORMAT,
        "table": s.table,
        "period_start": show_time(s.period_start),
        "period_start_us": s.period_start.timestamp_micros(),
        "period_end": show_time(s.period_end),
        "period_end_us": s.period_end.timestamp_micros(),
        "row_count": s.row_count,
        "root": hex::encode(&s.root),
        "prev_hash": hex_opt(&s.prev_hash),
        "sealed_at": show_time(s.sealed_at),
        "sealed_at_us": s.sealed_at.timestamp_micros(),
        "seal_hash": hex::encode(&s.seal_hash),
        "signature": hex_opt(&s.signature),
        "key_id": s.key_id,
        "public_key": key.map(|k| hex::encode(k.verifying().as_bytes())),
    })
}

fn configured_key(config: &Config) -> Result<Option<sign::Key>, SealError> {
    config.seal.key_file.as_deref().map(sign::load).transpose()
}

pub async fn export(
    client: &Client,
    config: &Config,
    spec: &TableSpec,
    period: &str,
) -> Result<Value, SealError> {
    let start = parse_period(period)?;
    let key = configured_key(config)?;
    let seals = store::list(client, spec).await?;
    let s = seals
        .iter()
        .find(|s| s.period_start == start)
        .ok_or_else(|| {
            SealError::NotSealed(format!(
                "{} has no seal for {period}; see strata seal list",
                spec.name.display_unquoted()
            ))
        })?;
    Ok(receipt(s, key.as_ref()))
}

/// The inclusion proof of the row `(id, created_at)`: its fields, leaf
/// index, tree size and the sibling hashes. The partition is hashed again
/// and must still match its seal, so the proof is about the sealed rows.
pub async fn prove(
    client: &Client,
    config: &Config,
    spec: &TableSpec,
    id: i64,
    created_at: DateTime<Utc>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Value, SealError> {
    let key = configured_key(config)?;
    let seals = store::list(client, spec).await?;
    let s = seals
        .iter()
        .find(|s| s.period_start <= created_at && created_at < s.period_end)
        .ok_or_else(|| SealError::NotSealed(format!("no seal covers {}", show_time(created_at))))?;
    let partition = s
        .partition_name
        .clone()
        .ok_or_else(|| SealError::NotSealed("bad partition name".into()))?;
    let want = created_at.timestamp_micros();
    let scanned = rows::scan(client, &partition, Some((id, want)), progress).await?;
    let leaves: Vec<Hash> = scanned.entries.iter().map(|e| e.leaf).collect();
    let found = scanned.wanted.map(|enc| {
        let index = scanned
            .entries
            .iter()
            .position(|e| e.id == id && e.created_at_us == want)
            .expect("the wanted row was scanned");
        (index, rows::fields_of(&enc), leaves[index])
    });
    let root = merkle::root(&leaves);
    if root[..] != s.root[..] {
        return Err(SealError::Precondition(format!(
            "{} no longer matches its seal; run strata seal verify {}",
            s.partition,
            show_time(s.period_start)
        )));
    }
    let Some((index, fields, leaf)) = found else {
        return Err(SealError::NotSealed(format!(
            "no row with id {id} and created_at {} in the sealed period {}",
            show_time(created_at),
            show_time(s.period_start)
        )));
    };
    let path = merkle::inclusion_path(&leaves, index);
    let row: serde_json::Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.map(Value::String).unwrap_or(Value::Null)))
        .collect();
    Ok(json!({
        "format": super::record::FORMAT,
        "row": row,
        "leaf_hash": hex::encode(leaf),
        "leaf_index": index,
        "tree_size": leaves.len(),
        "path": path.iter().map(hex::encode).collect::<Vec<_>>(),
        "receipt": receipt(s, key.as_ref()),
    }))
}
