//! A sealed month that is gone from PostgreSQL but archived: its seal is
//! recomputed from the archive's Parquet files. The archive stores jsonb
//! and inet as PostgreSQL's text (`::text`), integers as INT64 and times as
//! Unix microseconds, which are exactly the canonical encoding's inputs
//! (docs/seal-format.md), so the root comes out equal when the rows are.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::chunks::Builder;
use super::encoding::{push_field, push_i64, Tag, COLUMNS};
use super::rows::Entry;
use super::run::Computed;
use crate::archive::{self, Column, Kind};
use crate::config::TableSpec;

/// The recomputed seal, and where its rows came from.
pub struct FromArchive {
    pub computed: Computed,
    pub source: archive::Source,
}

/// `Ok(None)`: the period was never archived. `Err`: it was, but its files
/// cannot be read or do not hold the sealed columns (a problem of the seal
/// check, said in a sentence).
pub async fn compute(
    client: &Client,
    spec: &TableSpec,
    period_start: DateTime<Utc>,
) -> Result<Option<FromArchive>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut enc = Vec::with_capacity(512);
    let mut visit = |batch: &RecordBatch, cols: &[Column]| {
        hash_batch(batch, cols, &mut enc, &mut entries).map_err(archive::ArchiveError::Mismatch)
    };
    let source = archive::visit_period(client, spec, period_start, &mut visit)
        .await
        .map_err(|e| format!("its archived files cannot be checked: {e}"))?;
    let Some(source) = source else {
        return Ok(None);
    };
    entries.sort_unstable();
    let mut b = Builder::default();
    for e in &entries {
        b.push(e.id, e.leaf);
    }
    let count = entries.len() as u64;
    let (chunks, root) = b.finish();
    Ok(Some(FromArchive {
        computed: Computed {
            count,
            root,
            chunks,
        },
        source,
    }))
}

fn hash_batch(
    batch: &RecordBatch,
    cols: &[Column],
    enc: &mut Vec<u8>,
    out: &mut Vec<Entry>,
) -> Result<(), String> {
    let mut at = Vec::with_capacity(COLUMNS.len());
    for (name, tag) in COLUMNS {
        let i = cols
            .iter()
            .position(|c| c.name == *name)
            .ok_or_else(|| format!("the files have no column {name}"))?;
        let want = match tag {
            Tag::Int8 => Kind::Int64,
            Tag::Timestamp => Kind::Timestamp,
            Tag::Jsonb => Kind::Json,
            _ => Kind::Text,
        };
        if cols[i].kind != want {
            return Err(format!(
                "column {name} is stored as {:?}, not {want:?}",
                cols[i].kind
            ));
        }
        at.push((i, *tag));
    }
    for row in 0..batch.num_rows() {
        enc.clear();
        let (mut id, mut created) = (0i64, 0i64);
        for (k, (i, tag)) in at.iter().enumerate() {
            let a = batch.column(*i);
            if a.is_null(row) {
                push_field(enc, *tag, None);
                continue;
            }
            match tag {
                Tag::Int8 => {
                    let v = a.as_primitive::<Int64Type>().value(row);
                    if k == 0 {
                        id = v;
                    }
                    push_i64(enc, *tag, Some(v));
                }
                Tag::Timestamp => {
                    created = a.as_primitive::<TimestampMicrosecondType>().value(row);
                    push_i64(enc, *tag, Some(created));
                }
                _ => push_field(enc, *tag, Some(a.as_string::<i32>().value(row).as_bytes())),
            }
        }
        out.push(Entry {
            created_at_us: created,
            id,
            leaf: super::encoding::leaf_hash(enc),
        });
    }
    Ok(())
}
