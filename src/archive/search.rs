//! `strata archive search`: answers from the Parquet files without
//! restoring. Periods outside `--from/--to` are not opened; inside a file,
//! a row group is decoded only when its statistics (user_id and time
//! min/max) and bloom filters (user_id, action) say it can match.
//!
//! Each candidate file is fetched whole from the store (one GET); pruning
//! saves decoding, not transfer. Files are decoded a few at a time, one
//! thread each: a user found in every row group costs a full decode.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, BooleanArray, RecordBatch};
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ParquetRecordBatchReaderBuilder, RowFilter};
use parquet::arrow::ProjectionMask;
use parquet::file::statistics::Statistics;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_postgres::Client;

use super::columns::{Column, Kind};
use super::export::parquet_err;
use super::run::table_dir;
use super::{catalog, manifest, ArchiveError};
use crate::config::TableSpec;

#[derive(Clone, Debug)]
pub struct SearchQuery {
    pub user_id: i64,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SearchSummary {
    pub periods_searched: usize,
    pub files: usize,
    pub row_groups: usize,
    pub row_groups_read: usize,
    pub row_groups_skipped_by_statistics: usize,
    pub row_groups_skipped_by_bloom_filter: usize,
    pub rows: usize,
    pub truncated: bool,
    pub millis: u64,
}

/// Files decoded at once: decoding (zstd above all) is the search's cost,
/// one core per file.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

/// What one file gave: its matching rows (up to the limit it was given) and
/// its row group counts.
#[derive(Default)]
struct FileHits {
    rows: Vec<Value>,
    summary: SearchSummary,
}

pub async fn search(
    client: &Client,
    spec: &TableSpec,
    q: &SearchQuery,
    emit: &mut dyn FnMut(Value),
) -> Result<SearchSummary, ArchiveError> {
    let started = Instant::now();
    let store = super::store_of(spec)?;
    let dir = table_dir(spec);
    let mut s = SearchSummary::default();
    let records = catalog::records(client, spec).await?;
    let mut periods = records.iter().enumerate().filter(|(_, r)| {
        q.from.is_none_or(|f| r.period_end > f) && q.to.is_none_or(|t| r.period_start < t)
    });
    // Files waiting to be searched, oldest period first (the catalog's
    // order), each with its period's schema; manifests are read only as far
    // as the next few files need, so a search that fills its limit early
    // opens no more than it did one file at a time.
    let mut pending: Vec<(usize, String, Arc<Vec<Column>>)> = Vec::new();
    let workers = workers();
    let mut last_period = None;
    loop {
        while s.rows < q.limit && pending.len() < workers {
            let Some((period, r)) = periods.next() else {
                break;
            };
            let Some(m) = manifest::load(&store, &dir, &r.period).await? else {
                continue;
            };
            let schema = Arc::new(m.schema);
            pending.extend(m.files.into_iter().map(|f| (period, f.key, schema.clone())));
        }
        if s.rows >= q.limit {
            // Full, with files or periods left unread.
            s.truncated |= !pending.is_empty() || periods.next().is_some();
            break;
        }
        if pending.is_empty() {
            break;
        }
        // A few files decoded side by side; their rows are emitted in file
        // order, so the output is the same as one file after another.
        let chunk: Vec<_> = pending.drain(..workers.min(pending.len())).collect();
        let mut fetched = Vec::with_capacity(chunk.len());
        for (period, key, schema) in &chunk {
            if last_period != Some(*period) {
                last_period = Some(*period);
                s.periods_searched += 1;
            }
            let data = store.get(key).await?.ok_or_else(|| {
                ArchiveError::Mismatch(format!("{key} is missing from the store"))
            })?;
            fetched.push((key.as_str(), data, schema.as_slice()));
        }
        let limit = q.limit - s.rows;
        let results: Vec<Result<FileHits, ArchiveError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = fetched
                .into_iter()
                .map(|(key, data, cols)| {
                    scope.spawn(move || search_file(spec, key, data, cols, q, limit))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a search thread panicked"))
                .collect()
        });
        for hits in results {
            let hits = hits?;
            s.files += 1;
            s.row_groups += hits.summary.row_groups;
            s.row_groups_read += hits.summary.row_groups_read;
            s.row_groups_skipped_by_statistics += hits.summary.row_groups_skipped_by_statistics;
            s.row_groups_skipped_by_bloom_filter += hits.summary.row_groups_skipped_by_bloom_filter;
            s.truncated |= hits.summary.truncated;
            for row in hits.rows {
                if s.rows >= q.limit {
                    s.truncated = true;
                    break;
                }
                emit(row);
                s.rows += 1;
            }
        }
    }
    s.millis = started.elapsed().as_millis() as u64;
    Ok(s)
}

fn search_file(
    spec: &TableSpec,
    key: &str,
    data: bytes::Bytes,
    cols: &[Column],
    q: &SearchQuery,
    limit: usize,
) -> Result<FileHits, ArchiveError> {
    let mut out = FileHits::default();
    let s = &mut out.summary;
    let idx = |name: &str| cols.iter().position(|c| c.name == name);
    let user = idx("user_id").ok_or_else(|| ArchiveError::Parquet {
        key: key.into(),
        message: "no user_id column".into(),
    })?;
    let action = idx("action");
    let time = idx(spec.time_column.as_str());
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(parquet_err(key))?;
    let meta = builder.metadata().clone();
    let mut groups = Vec::new();
    for g in 0..meta.num_row_groups() {
        s.row_groups += 1;
        let rg = meta.row_group(g);
        let stat_ok = int_range(rg.column(user).statistics())
            .is_none_or(|(lo, hi)| lo <= q.user_id && q.user_id <= hi)
            && time.is_none_or(|t| {
                int_range(rg.column(t).statistics()).is_none_or(|(lo, hi)| {
                    q.from.is_none_or(|f| hi >= f.timestamp_micros())
                        && q.to.is_none_or(|to| lo < to.timestamp_micros())
                })
            });
        if !stat_ok {
            s.row_groups_skipped_by_statistics += 1;
            continue;
        }
        let user_bloom = builder
            .get_row_group_column_bloom_filter(g, user)
            .map_err(parquet_err(key))?;
        let mut maybe = user_bloom.is_none_or(|b| b.check(&q.user_id));
        if let (Some(a), Some(want)) = (action, &q.action) {
            let bloom = builder
                .get_row_group_column_bloom_filter(g, a)
                .map_err(parquet_err(key))?;
            maybe = maybe && bloom.is_none_or(|b| b.check(want.as_str()));
        }
        if !maybe {
            s.row_groups_skipped_by_bloom_filter += 1;
            continue;
        }
        groups.push(g);
    }
    s.row_groups_read += groups.len();
    if groups.is_empty() {
        return Ok(out);
    }
    // Late materialization: the predicate reads only user_id; the other
    // columns (details above all) are decoded for the matching rows alone.
    // The heaviest user is in every row group, where skipping cannot help.
    let want = q.user_id;
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [user]);
    let predicate = ArrowPredicateFn::new(mask, move |b: RecordBatch| {
        let ids = b.column(0).as_primitive::<Int64Type>();
        Ok(BooleanArray::from_iter(
            ids.iter().map(|v| Some(v == Some(want))),
        ))
    });
    let reader = builder
        .with_row_groups(groups)
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
        .build()
        .map_err(parquet_err(key))?;
    for batch in reader {
        let batch = batch.map_err(parquet_err(key))?;
        for row in 0..batch.num_rows() {
            if out.rows.len() >= limit {
                out.summary.truncated = true;
                return Ok(out);
            }
            if matches(&batch, row, user, action, time, q) {
                out.rows.push(row_json(&batch, row, cols));
            }
        }
    }
    Ok(out)
}

fn int_range(st: Option<&Statistics>) -> Option<(i64, i64)> {
    match st? {
        Statistics::Int64(v) => Some((*v.min_opt()?, *v.max_opt()?)),
        _ => None,
    }
}

fn matches(
    b: &RecordBatch,
    row: usize,
    user: usize,
    action: Option<usize>,
    time: Option<usize>,
    q: &SearchQuery,
) -> bool {
    let u = b.column(user);
    if u.is_null(row) || u.as_primitive::<Int64Type>().value(row) != q.user_id {
        return false;
    }
    if let (Some(a), Some(want)) = (action, &q.action) {
        let col = b.column(a);
        if col.is_null(row) || col.as_string::<i32>().value(row) != want {
            return false;
        }
    }
    if let Some(t) = time {
        let col = b.column(t);
        if col.is_null(row) {
            return q.from.is_none() && q.to.is_none();
        }
        let v = col.as_primitive::<TimestampMicrosecondType>().value(row);
        if q.from.is_some_and(|f| v < f.timestamp_micros())
            || q.to.is_some_and(|to| v >= to.timestamp_micros())
        {
            return false;
        }
    }
    true
}

fn row_json(b: &RecordBatch, row: usize, cols: &[Column]) -> Value {
    let mut m = Map::new();
    for (i, c) in cols.iter().enumerate() {
        let a = b.column(i);
        let v = if a.is_null(row) {
            Value::Null
        } else {
            match c.kind {
                Kind::Int64 => Value::from(a.as_primitive::<Int64Type>().value(row)),
                Kind::Timestamp => {
                    let v = a.as_primitive::<TimestampMicrosecondType>().value(row);
                    DateTime::from_timestamp_micros(v)
                        .map(|t| {
                            Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                        })
                        .unwrap_or(Value::Null)
                }
                Kind::Json => {
                    let text = a.as_string::<i32>().value(row);
                    serde_json::from_str(text).unwrap_or_else(|_| Value::from(text))
                }
                Kind::Text => Value::from(a.as_string::<i32>().value(row)),
            }
        };
        m.insert(c.name.clone(), v);
    }
    Value::Object(m)
}
