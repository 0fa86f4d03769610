//! `strata.seals` and `strata.seal_chunks`: reads and the one insert.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::chunks::{self, Chunk};
use super::merkle::Hash;
use super::record::SealRecord;
use super::SealError;
use crate::config::TableSpec;
use crate::db::{DbError, QualifiedName};

/// One stored seal, as read (nothing in it is trusted by verify).
#[derive(Clone, Debug, Serialize)]
pub struct StoredSeal {
    pub id: i64,
    pub table: String,
    pub partition: String,
    #[serde(skip)]
    pub partition_name: Option<QualifiedName>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub row_count: i64,
    #[serde(serialize_with = "hex_ser")]
    pub root: Vec<u8>,
    #[serde(serialize_with = "hex_opt")]
    pub prev_hash: Option<Vec<u8>>,
    #[serde(serialize_with = "hex_ser")]
    pub seal_hash: Vec<u8>,
    #[serde(serialize_with = "hex_opt")]
    pub signature: Option<Vec<u8>>,
    pub key_id: Option<String>,
    pub sealed_at: DateTime<Utc>,
}

fn hex_ser<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn hex_opt<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&hex::encode(v)),
        None => s.serialize_none(),
    }
}

fn to_hash(v: &[u8]) -> Option<Hash> {
    v.try_into().ok()
}

impl StoredSeal {
    /// The record as stored; `None` when a hash has the wrong length.
    pub fn record(&self) -> Option<SealRecord> {
        Some(SealRecord {
            table: self.table.clone(),
            period_start: self.period_start,
            period_end: self.period_end,
            row_count: self.row_count,
            root: to_hash(&self.root)?,
            prev_hash: match &self.prev_hash {
                Some(p) => Some(to_hash(p)?),
                None => None,
            },
            sealed_at: self.sealed_at,
        })
    }
}

const COLUMNS: &str =
    "id, table_schema, table_name, partition_schema, partition_name, period_start, \
     period_end, row_count, root, prev_hash, seal_hash, signature, key_id, sealed_at";

fn from_row(r: &tokio_postgres::Row) -> StoredSeal {
    let (ts, tn, ps, pn): (String, String, String, String) =
        (r.get(1), r.get(2), r.get(3), r.get(4));
    let partition_name = QualifiedName::new(&ps, &pn).ok();
    StoredSeal {
        id: r.get(0),
        table: format!("{ts}.{tn}"),
        partition: format!("{ps}.{pn}"),
        partition_name,
        period_start: r.get(5),
        period_end: r.get(6),
        row_count: r.get(7),
        root: r.get(8),
        prev_hash: r.get(9),
        seal_hash: r.get(10),
        signature: r.get(11),
        key_id: r.get(12),
        sealed_at: r.get(13),
    }
}

/// The table's seals in chain order (by period).
pub async fn list(
    client: &impl GenericClient,
    spec: &TableSpec,
) -> Result<Vec<StoredSeal>, SealError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM strata.seals WHERE table_schema = $1 AND table_name = $2 \
                 ORDER BY period_start"
            ),
            &[&spec.name.schema.as_str(), &spec.name.name.as_str()],
        )
        .await
        .map_err(DbError::query("reading strata.seals"))?;
    Ok(rows.iter().map(from_row).collect())
}

/// Inserts a seal and its chunks (in the sealer's transaction).
pub async fn insert(
    tx: &impl GenericClient,
    spec: &TableSpec,
    partition: &QualifiedName,
    rec: &SealRecord,
    seal_hash: &Hash,
    signature: Option<(&[u8], String)>,
    chunks: &[Chunk],
) -> Result<i64, SealError> {
    let (sig, key_id) = match signature {
        Some((s, k)) => (Some(s.to_vec()), Some(k)),
        None => (None, None),
    };
    let id: i64 = tx
        .query_one(
            "INSERT INTO strata.seals (table_schema, table_name, partition_schema, partition_name, \
             period_start, period_end, row_count, root, prev_hash, seal_hash, signature, key_id, sealed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
            &[
                &spec.name.schema.as_str(),
                &spec.name.name.as_str(),
                &partition.schema.as_str(),
                &partition.name.as_str(),
                &rec.period_start,
                &rec.period_end,
                &rec.row_count,
                &rec.root.to_vec(),
                &rec.prev_hash.map(|h| h.to_vec()),
                &seal_hash.to_vec(),
                &sig,
                &key_id,
                &rec.sealed_at,
            ],
        )
        .await
        .map_err(DbError::query("recording the seal"))?
        .get(0);
    // One statement for all chunks: arrays of the columns, unnested.
    let idx: Vec<i32> = (0..chunks.len() as i32).collect();
    let roots: Vec<Vec<u8>> = chunks.iter().map(|c| c.root.to_vec()).collect();
    let ids: Vec<Vec<u8>> = chunks.iter().map(|c| chunks::encode_ids(&c.ids)).collect();
    let leaves: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| chunks::encode_leaves(&c.leaves))
        .collect();
    tx.execute(
        "INSERT INTO strata.seal_chunks (seal_id, chunk, root, ids, leaves) \
         SELECT $1, * FROM unnest($2::int[], $3::bytea[], $4::bytea[], $5::bytea[])",
        &[&id, &idx, &roots, &ids, &leaves],
    )
    .await
    .map_err(DbError::query("recording the seal's chunks"))?;
    Ok(id)
}

/// The stored chunk roots of a seal, in order.
pub async fn chunk_roots(client: &Client, seal_id: i64) -> Result<Vec<Vec<u8>>, SealError> {
    let rows = client
        .query(
            "SELECT root FROM strata.seal_chunks WHERE seal_id = $1 ORDER BY chunk",
            &[&seal_id],
        )
        .await
        .map_err(DbError::query("reading seal chunks"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The ids and leaf prefixes of the given chunks; `None` for a chunk whose
/// stored summary cannot be decoded.
pub async fn chunk_rows(
    client: &Client,
    seal_id: i64,
    which: &[i32],
) -> Result<Vec<(i32, Option<(Vec<i64>, Vec<[u8; chunks::LEAF_PREFIX]>)>)>, SealError> {
    let rows = client
        .query(
            "SELECT chunk, ids, leaves FROM strata.seal_chunks WHERE seal_id = $1 AND chunk = ANY($2) \
             ORDER BY chunk",
            &[&seal_id, &which],
        )
        .await
        .map_err(DbError::query("reading seal chunks"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let ids = chunks::decode_ids(r.get::<_, &[u8]>(1));
            let leaves = chunks::decode_leaves(r.get::<_, &[u8]>(2));
            let pair = ids.filter(|i| i.len() == leaves.len()).map(|i| (i, leaves));
            (r.get(0), pair)
        })
        .collect())
}
