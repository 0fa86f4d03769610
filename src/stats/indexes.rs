//! Index statistics of a managed table, grouped by parent index across its
//! partitions (PgHero shows 18 unrelated indexes where there is one), with
//! the flags a DBA acts on: unused, duplicate, invalid, bloated.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::Client;

use crate::config::TableSpec;
use crate::db::DbError;
use crate::format;

/// A B-tree is flagged bloated when the estimated waste is at least this
/// share of its size...
pub const BLOAT_RATIO: f64 = 0.5;
/// ...and at least this many bytes (small indexes are all overhead).
pub const BLOAT_MIN_BYTES: i64 = 1024 * 1024;

#[derive(Clone, Debug, Serialize)]
pub struct IndexStat {
    /// The parent index, or the index itself when it belongs to no parent index.
    pub name: String,
    /// Where it is defined: the parent table, or one partition (a local index).
    pub table: String,
    pub method: String,
    pub definition: String,
    /// Partition indexes attached to it (0 for a local index).
    pub partitions: usize,
    pub bytes: i64,
    pub size_pretty: String,
    pub scans: i64,
    pub tuples_read: i64,
    pub tuples_fetched: i64,
    pub valid: bool,
    /// Partition indexes (or the index itself) that are INVALID.
    pub invalid: Vec<String>,
    pub unique: bool,
    pub primary: bool,
    pub backs_constraint: bool,
    /// 0 scans since statistics were reset, and dropping it would lose no constraint.
    pub unused: bool,
    /// Another index with the same method, keys, operator classes and predicate.
    pub duplicate_of: Option<String>,
    /// Estimated wasted bytes (B-tree only), and the indexes over the threshold.
    pub bloat_bytes: i64,
    pub bloated: Vec<Bloated>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Bloated {
    pub index: String,
    /// The table (partition) it belongs to, `schema.name`.
    pub table: String,
    pub bytes: i64,
    pub waste_bytes: i64,
}

struct RawIndex {
    name: String,
    table: String,
    on_parent: bool,
    parent: Option<String>,
    method: String,
    /// Only for the indexes the grouping shows (see indexes.sql).
    definition: Option<String>,
    bytes: i64,
    scans: i64,
    read: i64,
    fetched: i64,
    valid: bool,
    unique: bool,
    primary: bool,
    constraint: bool,
    shape: Option<String>,
    tuples: f64,
    fillfactor: i32,
    tuple_bytes: Option<f64>,
    block: i64,
    /// `relpages * block_size`: the size as of the same VACUUM/ANALYZE as
    /// `tuples`, which is what the bloat estimate compares.
    estimated_bytes: i64,
}

/// Estimated waste of a B-tree: its size minus what its tuples would take
/// packed at its fillfactor. Coarse (no per-page overhead, average widths),
/// so only large differences are flagged.
fn btree_bloat(ix: &RawIndex) -> i64 {
    let Some(tuple_bytes) = ix.tuple_bytes else {
        return 0;
    };
    if ix.method != "btree" || ix.tuples <= 0.0 {
        return 0;
    }
    // Page header (24) and the B-tree special space (16) are not usable.
    let usable = ix.block as f64 * (ix.fillfactor as f64 / 100.0) - 24.0 - 16.0;
    let per_page = (usable / tuple_bytes.max(1.0)).max(1.0);
    // +1: the metapage.
    let expected = ((ix.tuples / per_page).ceil() + 1.0) * ix.block as f64;
    (ix.estimated_bytes as f64 - expected).max(0.0) as i64
}

pub async fn indexes(client: &Client, spec: &TableSpec) -> Result<Vec<IndexStat>, DbError> {
    let rows = client
        .query(include_str!("indexes.sql"), &[&spec.name.to_string()])
        .await
        .map_err(DbError::query("reading index statistics"))?;
    let raw: Vec<RawIndex> = rows
        .iter()
        .map(|r| RawIndex {
            name: r.get(0),
            table: format!("{}.{}", r.get::<_, String>(1), r.get::<_, String>(2)),
            on_parent: r.get(3),
            parent: r.get(4),
            method: r.get(5),
            definition: r.get(6),
            bytes: r.get(7),
            scans: r.get(8),
            read: r.get(9),
            fetched: r.get(10),
            valid: r.get(11),
            unique: r.get(12),
            primary: r.get(13),
            constraint: r.get(14),
            shape: r.get(15),
            tuples: r.get(16),
            fillfactor: r.get(17),
            tuple_bytes: r.get(18),
            block: r.get(19),
            estimated_bytes: r.get(20),
        })
        .collect();
    let wanted: Vec<String> = crate::index::wanted(spec)
        .into_iter()
        .map(|d| d.name)
        .collect();
    Ok(group(&raw, &wanted))
}

fn group(raw: &[RawIndex], wanted: &[String]) -> Vec<IndexStat> {
    let mut groups: BTreeMap<String, IndexStat> = BTreeMap::new();
    let mut order = Vec::new();
    for ix in raw {
        let key = match (&ix.parent, ix.on_parent) {
            (Some(parent), false) => parent.clone(),
            _ => ix.name.clone(),
        };
        let entry = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            IndexStat {
                name: key.clone(),
                table: String::new(),
                method: ix.method.clone(),
                definition: String::new(),
                partitions: 0,
                bytes: 0,
                size_pretty: String::new(),
                scans: 0,
                tuples_read: 0,
                tuples_fetched: 0,
                valid: true,
                invalid: Vec::new(),
                unique: ix.unique,
                primary: ix.primary,
                backs_constraint: false,
                unused: false,
                duplicate_of: None,
                bloat_bytes: 0,
                bloated: Vec::new(),
            }
        });
        if ix.name == key {
            entry.table = ix.table.clone();
            entry.definition = ix.definition.clone().unwrap_or_default();
        } else {
            entry.partitions += 1;
        }
        entry.bytes += ix.bytes;
        entry.scans += ix.scans;
        entry.tuples_read += ix.read;
        entry.tuples_fetched += ix.fetched;
        entry.backs_constraint |= ix.constraint;
        if !ix.valid {
            entry.valid = false;
            entry.invalid.push(ix.name.clone());
        }
        let bloat = btree_bloat(ix);
        entry.bloat_bytes += bloat;
        if bloat >= BLOAT_MIN_BYTES && bloat as f64 >= BLOAT_RATIO * ix.estimated_bytes as f64 {
            entry.bloated.push(Bloated {
                index: ix.name.clone(),
                table: ix.table.clone(),
                bytes: ix.bytes,
                waste_bytes: bloat,
            });
        }
    }
    let mut out: Vec<IndexStat> = order
        .into_iter()
        .map(|key| {
            let mut stat = groups.remove(&key).expect("grouped");
            stat.size_pretty = format::bytes(stat.bytes.max(0) as u64);
            stat.unused =
                stat.scans == 0 && !stat.unique && !stat.primary && !stat.backs_constraint;
            stat
        })
        .collect();
    // Duplicates: same shape on the same table. The one kept is the one a
    // constraint needs, else the unique one, else strata's own, else the
    // first by name.
    let shapes: BTreeMap<&str, (&str, &str)> = raw
        .iter()
        .filter_map(|ix| Some((ix.name.as_str(), (ix.table.as_str(), ix.shape.as_deref()?))))
        .collect();
    let mut by_priority: Vec<usize> = (0..out.len()).collect();
    by_priority.sort_by_key(|&i| {
        let s = &out[i];
        (
            // An INVALID index is never the one kept.
            !s.valid,
            !s.backs_constraint,
            !s.primary,
            !s.unique,
            !wanted.contains(&s.name),
            s.name.clone(),
        )
    });
    let mut kept: BTreeMap<(String, String), String> = BTreeMap::new();
    for i in by_priority {
        let Some((table, shape)) = shapes.get(out[i].name.as_str()) else {
            continue;
        };
        let k = (table.to_string(), shape.to_string());
        match kept.get(&k) {
            Some(first) => out[i].duplicate_of = Some(first.clone()),
            None => {
                kept.insert(k, out[i].name.clone());
            }
        }
    }
    out
}
