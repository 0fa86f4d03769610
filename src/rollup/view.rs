//! The reading view of a rollup: materialized buckets where they are
//! current, a live aggregate where they are not, so no read is ever stale.

use super::Layout;
use crate::db::literal;

/// The live part's function: `strata.<storage>_live()`.
pub fn live_function(l: &Layout) -> Result<crate::db::QualifiedName, crate::db::IdentError> {
    crate::db::QualifiedName::new("strata", &format!("{}_live", l.storage.name.as_str()))
}

/// The pending ranges of `l` below its watermark, widened to whole buckets
/// and merged (gaps and islands) so none is read twice; then `tail`.
fn ranges_sql(l: &Layout) -> String {
    let (schema, table, name) = (
        literal(l.table.schema.as_str()),
        literal(l.table.name.as_str()),
        literal(l.spec.name.as_str()),
    );
    format!(
        "w AS MATERIALIZED (
    SELECT r.watermark FROM strata.rollups r
     WHERE r.schema_name = {schema} AND r.table_name = {table} AND r.name = {name}
), inv AS (
    SELECT {lo} AS lo, least({hi}, (SELECT watermark FROM w)) AS hi
      FROM strata.rollup_invalidations i
     WHERE i.schema_name = {schema} AND i.table_name = {table}
), marked AS (
    SELECT lo, hi,
           CASE WHEN lo <= max(hi) OVER (ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                THEN 0 ELSE 1 END AS starts
      FROM inv WHERE lo < hi
), grouped AS (
    SELECT lo, hi, sum(starts) OVER (ORDER BY lo, hi) AS g FROM marked
), merged AS MATERIALIZED (
    SELECT min(lo) AS lo, max(hi) AS hi FROM grouped GROUP BY g
)",
        lo = l.bucket_of("i.lo"),
        hi = l.bucket_end("i.hi"),
    )
}

/// `CREATE FUNCTION` text of the live part: base rows at or above the
/// watermark, and base rows in the pending ranges below it (only queried
/// when a range is pending).
///
/// A function, not part of the view's query, because the planner cannot
/// know the watermark or the pending ranges when it plans the view: it
/// estimated a third of the table, which alone passed `jit_above_cost`
/// (half a second and more of JIT compilation per read, measured at 1M
/// rows), and planned every partition. In plpgsql the watermark is a value
/// by the time the tail query is planned, so the partitions below it are
/// pruned at plan time, and the plan is cached per session. STABLE: every
/// statement sees the caller's snapshot, the same as the view's other part.
pub fn create_live(l: &Layout) -> Result<String, crate::db::IdentError> {
    let time = l.time();
    let (schema, table, name) = (
        literal(l.table.schema.as_str()),
        literal(l.table.name.as_str()),
        literal(l.spec.name.as_str()),
    );
    let body = format!(
        "DECLARE
    _strata_watermark timestamptz;
BEGIN
    SELECT r.watermark INTO _strata_watermark FROM strata.rollups r
     WHERE r.schema_name = {schema} AND r.table_name = {table} AND r.name = {name};
    RETURN QUERY {tail};
    IF EXISTS (SELECT 1 FROM strata.rollup_invalidations i
                WHERE i.schema_name = {schema} AND i.table_name = {table}) THEN
        RETURN QUERY WITH {ranges} {invalidated};
    END IF;
    RETURN;
END",
        ranges = ranges_sql(l),
        tail = l.aggregate(&l.base(), &format!("{time} >= _strata_watermark")),
        invalidated = l.aggregate(
            &format!(
                "merged g JOIN {} ON {time} >= g.lo AND {time} < g.hi",
                l.base()
            ),
            "true"
        ),
    );
    Ok(format!(
        "CREATE FUNCTION {f}() RETURNS SETOF {storage} LANGUAGE plpgsql STABLE ROWS 100
         SET jit = off SET search_path = pg_catalog, pg_temp AS {body}",
        f = live_function(l)?,
        storage = l.storage,
        body = crate::db::DollarQuoted::new(body),
    ))
}

/// The range function: `strata.<storage>_range(from, to)`.
pub fn range_function(l: &Layout) -> Result<crate::db::QualifiedName, crate::db::IdentError> {
    crate::db::QualifiedName::new("strata", &format!("{}_range", l.storage.name.as_str()))
}

/// `CREATE OR REPLACE FUNCTION` text of the range function: the view's
/// rows with `from <= bucket < to`, for readers that know their range (the
/// summary, the report, dashboards).
///
/// The view cannot be told the range: its live part aggregates every row
/// at or above the watermark and its pending-range CTEs are planned on
/// each read, whatever the query's WHERE. Here, when no pending range
/// touches the buckets asked for, the materialized buckets below the
/// watermark are one index range scan of the storage table, and the live
/// part is read only when the range reaches the watermark, only for its
/// buckets. Otherwise it reads the view, so it is exact whenever the view
/// is. STABLE: all of it sees the caller's one snapshot.
pub fn create_range(l: &Layout) -> Result<String, crate::db::IdentError> {
    let time = l.time();
    let (schema, table, name) = (
        literal(l.table.schema.as_str()),
        literal(l.table.name.as_str()),
        literal(l.spec.name.as_str()),
    );
    let tail_filter = format!(
        "{time} >= greatest({lo_floor}, _strata_watermark) AND {time} < {hi_end}
         AND {bucket} >= _strata_from AND {bucket} < _strata_to",
        lo_floor = l.bucket_of("_strata_from"),
        hi_end = l.bucket_end("_strata_to"),
        bucket = l.bucket_of(&time),
    );
    let body = format!(
        "DECLARE
    _strata_watermark timestamptz;
BEGIN
    SELECT r.watermark INTO _strata_watermark FROM strata.rollups r
     WHERE r.schema_name = {schema} AND r.table_name = {table} AND r.name = {name};
    IF _strata_watermark IS NULL
       OR EXISTS (SELECT 1 FROM strata.rollup_invalidations i
                   WHERE i.schema_name = {schema} AND i.table_name = {table}
                     AND {inv_lo} < _strata_to AND {inv_hi} > _strata_from) THEN
        RETURN QUERY SELECT * FROM {view} v WHERE v.bucket >= _strata_from AND v.bucket < _strata_to;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM {storage} m
                  WHERE m.bucket >= _strata_from AND m.bucket < least(_strata_to, _strata_watermark);
    IF _strata_to > _strata_watermark THEN
        RETURN QUERY {tail};
    END IF;
    RETURN;
END",
        inv_lo = l.bucket_of("i.lo"),
        inv_hi = l.bucket_end("i.hi"),
        view = l.view,
        storage = l.storage,
        tail = l.aggregate(&l.base(), &tail_filter),
    );
    Ok(format!(
        "CREATE OR REPLACE FUNCTION {f}(_strata_from timestamptz, _strata_to timestamptz)
         RETURNS SETOF {storage} LANGUAGE plpgsql STABLE ROWS 100
         SET jit = off SET search_path = pg_catalog, pg_temp AS {body}",
        f = range_function(l)?,
        storage = l.storage,
        body = crate::db::DollarQuoted::new(body),
    ))
}

/// `CREATE VIEW` text of `layout`: materialized buckets below the
/// watermark that no pending range covers, plus the live function's rows.
/// The two are disjoint, so each bucket comes from exactly one.
pub fn create(l: &Layout) -> Result<String, crate::db::IdentError> {
    let dims = l.dims("m");
    let mat_cols = if dims.is_empty() {
        "m.bucket".to_string()
    } else {
        format!("m.bucket, {dims}")
    };
    let mut measures = vec!["m.count"];
    if l.spec.has(crate::config::Measure::DistinctUserId) {
        measures.push("m.distinct_user_id");
    }
    Ok(format!(
        "CREATE VIEW {view} ({columns}) AS
WITH {ranges}
SELECT {mat_cols}, {measures} FROM {storage} m
 WHERE m.bucket < (SELECT watermark FROM w)
   AND NOT EXISTS (SELECT 1 FROM merged g WHERE m.bucket >= g.lo AND m.bucket < g.hi)
UNION ALL
SELECT * FROM {live}()",
        view = l.view,
        columns = l.columns(),
        ranges = ranges_sql(l),
        measures = measures.join(", "),
        storage = l.storage,
        live = live_function(l)?,
    ))
}
