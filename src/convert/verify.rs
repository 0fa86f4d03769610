//! Phase 4: both tables, read in one snapshot, compared per id range by row
//! count and a hash of every row's content; and the re-checks cutover and
//! cleanup run before they commit to anything.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::session::{locked, DATA_STATEMENT_TIMEOUT};
use super::sql::{Columns, TRIGGER};
use super::state::{require, set_phase, wrong, Names, Phase};
use super::ConvertError;
use crate::config::TableSpec;
use crate::db::{DbError, Ident, QualifiedName};
use crate::partition;

/// One id range's comparison.
#[derive(Clone, Debug, Serialize)]
pub struct RangeCheck {
    pub from_id: i64,
    pub to_id: i64,
    pub old_rows: i64,
    pub new_rows: i64,
    pub matches: bool,
}

/// Ids per verified range.
pub const VERIFY_RANGE: i64 = 1_000_000;

/// The plain and the partitioned table, whichever names they have now.
pub(super) fn pair(names: &Names, phase: Phase) -> (&QualifiedName, &QualifiedName) {
    if phase == Phase::CutOver {
        (&names.old, &names.table)
    } else {
        (&names.table, &names.new)
    }
}

/// Compares the tables; records the verification and the highest id it saw
/// (`timings.verified_max_id`, where cutover's re-check starts).
pub async fn verify(
    client: &mut Client,
    spec: &TableSpec,
) -> Result<Vec<RangeCheck>, ConvertError> {
    locked(client, spec, async |client| {
        let conv = require(client, spec).await?;
        if !matches!(
            conv.phase,
            Phase::Indexed | Phase::Verified | Phase::RolledBack | Phase::CutOver
        ) {
            return Err(wrong(&conv, "verify", "the backfill and indexes to be done"));
        }
        let names = Names::new(spec, conv.id)?;
        let (plain, partitioned) = pair(&names, conv.phase);
        let (ranges, max_id) = full_compare(client, plain, partitioned, &names.id).await?;
        if conv.phase == Phase::Indexed {
            set_phase(client, conv.id, Phase::Verified).await?;
        }
        client
            .execute(
                "UPDATE strata.conversions SET verified_at = now(),
                        timings = timings || jsonb_build_object('verified_max_id', $2::int8) WHERE id = $1",
                &[&conv.id, &max_id],
            )
            .await
            .map_err(DbError::query("recording the verification"))?;
        Ok(ranges)
    })
    .await
}

/// Every range compared in one snapshot; a mismatch is an error naming the
/// ranges. Returns the ranges and the highest id seen.
pub(super) async fn full_compare(
    client: &mut Client,
    plain: &QualifiedName,
    partitioned: &QualifiedName,
    id: &Ident,
) -> Result<(Vec<RangeCheck>, i64), ConvertError> {
    let cols = Columns(partition::insertable_columns(client, plain).await?);
    let (ranges, max_id) = compare(client, plain, partitioned, &cols, id).await?;
    let bad: Vec<&RangeCheck> = ranges.iter().filter(|r| !r.matches).collect();
    if !bad.is_empty() {
        let list = bad
            .iter()
            .take(10)
            .map(|r| {
                format!(
                    "ids {}..{}: {} rows in the old table, {} in the new",
                    r.from_id, r.to_id, r.old_rows, r.new_rows
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ConvertError::Mismatch(format!(
            "{} of {} id ranges differ: {list}",
            bad.len(),
            ranges.len()
        )));
    }
    Ok((ranges, max_id))
}

type Ranges = BTreeMap<i64, (i64, Option<String>)>;

async fn compare(
    client: &mut Client,
    a: &QualifiedName,
    b: &QualifiedName,
    cols: &Columns,
    id: &Ident,
) -> Result<(Vec<RangeCheck>, i64), ConvertError> {
    // One snapshot for both: the mirror writes in the writer's transaction,
    // so any snapshot sees the two tables equal.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(DbError::query("starting the verification"))?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{DATA_STATEMENT_TIMEOUT}'"
    ))
    .await
    .map_err(DbError::query("starting the verification"))?;
    let per_range = |t: &QualifiedName| {
        format!(
            "SELECT {id} / $1::int8 AS r, count(*)::int8,
                    sum(hashtextextended(ROW({list})::text, 0)::numeric)::text, max({id})
               FROM {t} GROUP BY 1 ORDER BY 1",
            list = cols.list()
        )
    };
    let mut max_id = 0i64;
    let mut read = |rows: Vec<tokio_postgres::Row>| {
        let mut m = Ranges::new();
        for r in rows {
            max_id = max_id.max(r.get::<_, i64>(3));
            m.insert(r.get(0), (r.get(1), r.get(2)));
        }
        m
    };
    let range = VERIFY_RANGE;
    let old = read(
        tx.query(&per_range(a), &[&range])
            .await
            .map_err(DbError::query("hashing the old table"))?,
    );
    let new = read(
        tx.query(&per_range(b), &[&range])
            .await
            .map_err(DbError::query("hashing the new table"))?,
    );
    tx.commit()
        .await
        .map_err(DbError::query("ending the verification"))?;
    Ok((ranges(&old, &new), max_id))
}

fn ranges(old: &Ranges, new: &Ranges) -> Vec<RangeCheck> {
    let keys: BTreeSet<i64> = old.keys().chain(new.keys()).copied().collect();
    keys.into_iter()
        .map(|k| {
            let o = old.get(&k).cloned().unwrap_or((0, None));
            let n = new.get(&k).cloned().unwrap_or((0, None));
            RangeCheck {
                from_id: k * VERIFY_RANGE,
                to_id: (k + 1) * VERIFY_RANGE - 1,
                old_rows: o.0,
                new_rows: n.0,
                matches: o == n,
            }
        })
        .collect()
}

/// [`tail_check`] and [`trigger_check`] of `trigger_on` in one snapshot,
/// before a swap: the swap then only re-checks what was written since.
pub(super) async fn precheck(
    client: &mut Client,
    tables: (&QualifiedName, &QualifiedName),
    trigger_on: &QualifiedName,
    id: &Ident,
    since: i64,
) -> Result<(Columns, i64), ConvertError> {
    let cols = Columns(partition::insertable_columns(client, tables.0).await?);
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(DbError::query("starting the re-check"))?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{DATA_STATEMENT_TIMEOUT}'"
    ))
    .await
    .map_err(DbError::query("starting the re-check"))?;
    trigger_check(&tx, trigger_on).await?;
    let max = tail_check(&tx, tables, &cols, id, since).await?;
    tx.commit()
        .await
        .map_err(DbError::query("ending the re-check"))?;
    Ok((cols, max))
}

/// Count and content hash of the rows with an id above `since` in both
/// tables, read by `c` (inside the caller's transaction or snapshot). A
/// difference is a [`ConvertError::Mismatch`]; returns the highest id seen.
pub(super) async fn tail_check(
    c: &impl GenericClient,
    (plain, partitioned): (&QualifiedName, &QualifiedName),
    cols: &Columns,
    id: &Ident,
    since: i64,
) -> Result<i64, ConvertError> {
    let q = |t: &QualifiedName| {
        format!(
            "SELECT count(*)::int8, coalesce(sum(hashtextextended(ROW({list})::text, 0)::numeric), 0)::text,
                    coalesce(max({id}), $1)
               FROM {t} WHERE {id} > $1",
            list = cols.list()
        )
    };
    let read = async |t: &QualifiedName| -> Result<(i64, String, i64), ConvertError> {
        let r = c.query_one(&q(t), &[&since]).await.map_err(DbError::query(
            "re-checking the rows written since the verification",
        ))?;
        Ok((r.get(0), r.get(1), r.get(2)))
    };
    let old = read(plain).await?;
    let new = read(partitioned).await?;
    if (old.0, &old.1) != (new.0, &new.1) {
        return Err(ConvertError::Mismatch(format!(
            "rows with id > {since}: {} in {}, {} in {} (or their contents differ); run `strata convert verify` \
             to see which ranges, and check that nothing disabled the mirror trigger",
            old.0,
            plain.display_unquoted(),
            new.0,
            partitioned.display_unquoted()
        )));
    }
    Ok(old.2.max(new.2))
}

/// The mirror trigger on `table` exists and is `ENABLE ALWAYS`: without it,
/// writes after a check are not on both sides.
pub(super) async fn trigger_check(
    c: &impl GenericClient,
    table: &QualifiedName,
) -> Result<(), ConvertError> {
    let state: Option<i8> = c
        .query_opt(
            "SELECT tgenabled::\"char\" FROM pg_catalog.pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2",
            &[&table.to_string(), &TRIGGER],
        )
        .await
        .map_err(DbError::query("checking the mirror trigger"))?
        .map(|r| r.get(0));
    if state != Some(b'A' as i8) {
        return Err(ConvertError::Mismatch(format!(
            "the mirror trigger {TRIGGER} on {} is missing or not ENABLE ALWAYS ({}); writes may not have been \
             mirrored: run `ALTER TABLE … ENABLE ALWAYS TRIGGER {TRIGGER}`, then `strata convert verify`",
            table.display_unquoted(),
            state.map(|s| (s as u8 as char).to_string()).unwrap_or_else(|| "missing".into())
        )));
    }
    Ok(())
}
