//! `strata seal verify`: recompute every seal from the rows, check the
//! chain, the record hashes, the signatures and the anchor, and name the
//! rows that differ. Nothing stored is trusted: each stored value is only a
//! claim that the recomputation confirms or refutes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::chunks::{Chunk, LEAF_PREFIX};
use super::merkle::{self, CHUNK_ROWS};
use super::store::{self, StoredSeal};
use super::{anchor, archived, compute, show_time, sign, SealError};
use crate::config::{Config, TableSpec};
use crate::db::{DbError, QualifiedName};
use crate::ops::{Progress, ProgressFn};

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub table: String,
    pub intact: bool,
    pub seals_checked: usize,
    pub rows_checked: u64,
    pub millis: u128,
    pub signatures_checked: bool,
    pub anchor_checked: bool,
    pub seals: Vec<SealCheck>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SealCheck {
    pub period_start: DateTime<Utc>,
    pub partition: String,
    pub ok: bool,
    /// What is wrong, each a sentence naming the thing.
    pub problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowDiff>,
    /// The archive manifest the rows were read from, when the partition is
    /// gone and the month was checked against its archived files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The rows that differ from the sealed ones.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RowDiff {
    pub sealed_rows: i64,
    pub found_rows: u64,
    pub changed: Vec<i64>,
    pub deleted: Vec<Positioned>,
    pub inserted: Vec<Positioned>,
    /// Chunks (of 1,024 rows) whose subtree roots differ.
    pub differing_chunks: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Positioned {
    pub id: i64,
    /// Index in the sealed (deleted) or current (inserted) `(created_at, id)` order.
    pub position: usize,
}

pub async fn verify(
    client: &mut Client,
    config: &Config,
    spec: &TableSpec,
    period: Option<DateTime<Utc>>,
    progress: ProgressFn<'_>,
) -> Result<VerifyReport, SealError> {
    let started = std::time::Instant::now();
    let key = config
        .seal
        .key_file
        .as_deref()
        .map(sign::load)
        .transpose()?;
    let anchored = match &config.seal.anchor_to {
        Some(p) => Some(anchor::read(p)?),
        None => None,
    };
    let seals = store::list(&*client, spec).await?;
    if let Some(p) = period {
        if !seals.iter().any(|s| s.period_start == p) {
            return Err(SealError::NotSealed(format!(
                "{} has no seal for the period starting {}; see strata seal list",
                spec.name.display_unquoted(),
                show_time(p)
            )));
        }
    }
    let mut report = VerifyReport {
        table: spec.name.display_unquoted(),
        intact: true,
        seals_checked: 0,
        rows_checked: 0,
        millis: 0,
        signatures_checked: key.is_some(),
        anchor_checked: anchored.is_some(),
        seals: Vec::new(),
    };
    let mut prev: Option<&StoredSeal> = None;
    for s in &seals {
        let mut check = SealCheck {
            period_start: s.period_start,
            partition: s.partition.clone(),
            ok: true,
            problems: Vec::new(),
            rows: None,
            source: None,
        };
        chain(s, prev, &mut check.problems);
        prev = Some(s);
        if period.is_some_and(|p| p != s.period_start) {
            // The chain is checked whole; the rows of the asked period only.
            if !check.problems.is_empty() {
                check.ok = false;
                report.intact = false;
                report.seals.push(check);
            }
            continue;
        }
        record(s, key.as_ref(), anchored.as_ref(), &mut check.problems);
        rows(
            client,
            spec,
            s,
            &mut check,
            &mut report.rows_checked,
            progress,
        )
        .await?;
        check.ok = check.problems.is_empty();
        report.intact &= check.ok;
        report.seals_checked += 1;
        progress(&Progress::Line {
            message: format!(
                "{} {}: {}",
                if check.ok { "    ok" } else { "FAILED" },
                show_time(s.period_start),
                if check.ok {
                    "intact".to_string()
                } else {
                    check.problems.join("; ")
                }
            ),
        });
        report.seals.push(check);
    }
    report.millis = started.elapsed().as_millis();
    Ok(report)
}

fn chain(s: &StoredSeal, prev: Option<&StoredSeal>, problems: &mut Vec<String>) {
    match (prev, &s.prev_hash) {
        (None, None) => {}
        (None, Some(_)) => problems.push(
            "chain broken: this seal links to a previous seal that no longer exists (the first seal has no link)".into(),
        ),
        (Some(p), Some(h)) if *h == p.seal_hash => {}
        (Some(p), _) => problems.push(format!(
            "chain broken: its previous-seal hash does not match the seal of {} (a seal between them was deleted, or that seal was altered)",
            show_time(p.period_start)
        )),
    }
}

fn record(
    s: &StoredSeal,
    key: Option<&sign::Key>,
    anchored: Option<&HashMap<(String, String), Vec<String>>>,
    problems: &mut Vec<String>,
) {
    match s.record() {
        Some(r) if r.hash()[..] == s.seal_hash[..] => {}
        Some(_) => {
            problems.push("seal record altered: its fields do not hash to its seal hash".into())
        }
        None => problems.push("seal record malformed: a hash has the wrong length".into()),
    }
    if let Some(k) = key {
        let id = k.id();
        match (&s.signature, &s.key_id) {
            (None, _) => problems.push(format!("unsigned, but a key is configured (key {id})")),
            (Some(_), Some(kid)) if *kid != id => problems.push(format!(
                "signed by key {kid}, not by the configured key {id}"
            )),
            (Some(sig), _) if !sign::verify(&k.verifying(), &s.seal_hash, sig) => problems.push(format!(
                "signature invalid: key {id} did not sign this seal hash (the seal was rewritten without the signing key)"
            )),
            _ => {}
        }
    }
    if let Some(a) = anchored {
        let hex_hash = hex::encode(&s.seal_hash);
        match a.get(&(s.table.clone(), show_time(s.period_start))) {
            None => problems.push("not in the anchor file".into()),
            Some(hashes) if !hashes.contains(&hex_hash) => problems.push(format!(
                "the anchor file holds {} for this period, not the stored seal hash {}",
                hashes.last().map(String::as_str).unwrap_or(""),
                hex_hash
            )),
            _ => {}
        }
    }
}

/// Where a sealed period's rows are now: its live partition, or the table
/// retention renamed it to when it detached it.
async fn locate(
    client: &Client,
    spec: &TableSpec,
    s: &StoredSeal,
) -> Result<Option<QualifiedName>, SealError> {
    if let Some(name) = &s.partition_name {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name.to_string()])
            .await
            .map_err(DbError::query("looking up a sealed partition"))?
            .get(0);
        if exists {
            return Ok(Some(name.clone()));
        }
    }
    let row = client
        .query_opt(
            "SELECT schema_name, table_name FROM strata.detached_partitions
              WHERE parent_schema = $1 AND parent_table = $2 AND range_from = $3 AND dropped_at IS NULL",
            &[&spec.name.schema.as_str(), &spec.name.name.as_str(), &s.period_start],
        )
        .await
        .map_err(DbError::query("looking up a detached sealed partition"))?;
    Ok(match row {
        Some(r) => Some(QualifiedName::new(
            r.get::<_, &str>(0),
            r.get::<_, &str>(1),
        )?),
        None => None,
    })
}

async fn rows(
    client: &Client,
    spec: &TableSpec,
    s: &StoredSeal,
    check: &mut SealCheck,
    total: &mut u64,
    progress: ProgressFn<'_>,
) -> Result<(), SealError> {
    let c = match locate(client, spec, s).await? {
        Some(partition) => {
            let shown = partition.display_unquoted();
            let mut report = |n: u64| {
                progress(&Progress::Line {
                    message: format!("  {shown}: {n} rows hashed"),
                })
            };
            compute(client, &partition, &mut report).await?
        }
        None => match archived::compute(client, spec, s.period_start).await {
            Ok(Some(a)) => {
                progress(&Progress::Line {
                    message: format!(
                        "  {}: {} rows hashed from {} file(s) of {}",
                        s.partition, a.computed.count, a.source.files, a.source.manifest_key
                    ),
                });
                check.source = Some(format!("{}/{}", a.source.store_url, a.source.manifest_key));
                a.computed
            }
            Ok(None) => {
                check.problems.push(format!(
                    "its rows are gone: neither {} nor a detached copy exists, and the period is not archived",
                    s.partition
                ));
                return Ok(());
            }
            Err(why) => {
                check.problems.push(why);
                return Ok(());
            }
        },
    };
    *total += c.count;
    if c.root[..] == s.root[..] && c.count as i64 == s.row_count {
        return Ok(());
    }
    check.problems.push(format!(
        "rows differ from the seal: sealed {} rows with root {}, found {} rows with root {}",
        s.row_count,
        &hex::encode(&s.root),
        c.count,
        hex::encode(c.root)
    ));
    check.rows = Some(narrow(client, s, &c.chunks, c.count, &mut check.problems).await?);
    Ok(())
}

/// Compares chunk roots, then only inside differing chunks the (id, leaf
/// prefix) lists, to name rows. An insert or delete shifts every later
/// chunk, so those all differ; the lists are compared as one sequence.
async fn narrow(
    client: &Client,
    s: &StoredSeal,
    current: &[Chunk],
    found: u64,
    problems: &mut Vec<String>,
) -> Result<RowDiff, SealError> {
    let stored_roots = store::chunk_roots(client, s.id).await?;
    let roots: Vec<merkle::Hash> = stored_roots
        .iter()
        .filter_map(|r| r.as_slice().try_into().ok())
        .collect();
    if roots.len() != stored_roots.len() || merkle::root_of_chunks(&roots)[..] != s.root[..] {
        problems.push(
            "the stored chunk summaries do not add up to the seal root: rows cannot be named"
                .into(),
        );
        return Ok(RowDiff {
            sealed_rows: s.row_count,
            found_rows: found,
            ..Default::default()
        });
    }
    let n = roots.len().max(current.len());
    let differing: Vec<usize> = (0..n)
        .filter(|&i| roots.get(i) != current.get(i).map(|c| &c.root))
        .collect();
    let which: Vec<i32> = differing.iter().map(|&i| i as i32).collect();
    let mut sealed: Vec<(usize, i64, [u8; LEAF_PREFIX])> = Vec::new();
    for (chunk, pair) in store::chunk_rows(client, s.id, &which).await? {
        let Some((ids, leaves)) = pair else {
            problems.push(format!("stored chunk {chunk} cannot be decoded"));
            continue;
        };
        let base = chunk as usize * CHUNK_ROWS;
        sealed.extend(
            ids.into_iter()
                .zip(leaves)
                .enumerate()
                .map(|(i, (id, l))| (base + i, id, l)),
        );
    }
    let mut now: Vec<(usize, i64, [u8; LEAF_PREFIX])> = Vec::new();
    for &i in &differing {
        if let Some(c) = current.get(i) {
            let base = i * CHUNK_ROWS;
            now.extend(
                c.ids
                    .iter()
                    .zip(&c.leaves)
                    .enumerate()
                    .map(|(j, (id, l))| (base + j, *id, *l)),
            );
        }
    }
    let mut diff = diff_rows(&sealed, &now);
    diff.sealed_rows = s.row_count;
    diff.found_rows = found;
    diff.differing_chunks = differing;
    if diff.changed.is_empty() && diff.deleted.is_empty() && diff.inserted.is_empty() {
        problems.push(
            "the differing rows could not be named (the stored summaries may have been altered)"
                .into(),
        );
    } else {
        problems.push(describe(&diff));
    }
    Ok(diff)
}

type Entry = (usize, i64, [u8; LEAF_PREFIX]);

/// Rows by id: only sealed → deleted, only current → inserted, both with a
/// different leaf → changed.
pub fn diff_rows(sealed: &[Entry], now: &[Entry]) -> RowDiff {
    let was: HashMap<i64, (usize, [u8; LEAF_PREFIX])> =
        sealed.iter().map(|(p, id, l)| (*id, (*p, *l))).collect();
    let is: HashMap<i64, (usize, [u8; LEAF_PREFIX])> =
        now.iter().map(|(p, id, l)| (*id, (*p, *l))).collect();
    let mut d = RowDiff::default();
    for (p, id, l) in sealed {
        match is.get(id) {
            None => d.deleted.push(Positioned {
                id: *id,
                position: *p,
            }),
            Some((_, l2)) if l2 != l => d.changed.push(*id),
            _ => {}
        }
    }
    for (p, id, _) in now {
        if !was.contains_key(id) {
            d.inserted.push(Positioned {
                id: *id,
                position: *p,
            });
        }
    }
    d
}

fn describe(d: &RowDiff) -> String {
    let mut parts = Vec::new();
    if !d.changed.is_empty() {
        parts.push(format!(
            "changed rows (id): {}",
            list(d.changed.iter().map(|i| i.to_string()))
        ));
    }
    if !d.deleted.is_empty() {
        parts.push(format!(
            "deleted rows (id at position): {}",
            list(
                d.deleted
                    .iter()
                    .map(|p| format!("{} at {}", p.id, p.position))
            )
        ));
    }
    if !d.inserted.is_empty() {
        parts.push(format!(
            "inserted rows (id at position): {}",
            list(
                d.inserted
                    .iter()
                    .map(|p| format!("{} at {}", p.id, p.position))
            )
        ));
    }
    parts.join("; ")
}

fn list(items: impl Iterator<Item = String>) -> String {
    const SHOWN: usize = 20;
    let all: Vec<String> = items.collect();
    if all.len() <= SHOWN {
        return all.join(", ");
    }
    format!("{} and {} more", all[..SHOWN].join(", "), all.len() - SHOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_changed_deleted_and_inserted() {
        let e = |p, id, b: u8| (p, id, [b; LEAF_PREFIX]);
        let sealed = [e(0, 1, 1), e(1, 2, 2), e(2, 3, 3), e(3, 4, 4)];
        // 2 changed, 3 deleted, 9 inserted at the end.
        let now = [e(0, 1, 1), e(1, 2, 7), e(2, 4, 4), e(3, 9, 9)];
        let d = diff_rows(&sealed, &now);
        assert_eq!(d.changed, vec![2]);
        assert_eq!(d.deleted, vec![Positioned { id: 3, position: 2 }]);
        assert_eq!(d.inserted, vec![Positioned { id: 9, position: 3 }]);
    }
}
