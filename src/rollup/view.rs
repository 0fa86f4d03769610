//! The reading view of a rollup: materialized buckets where they are
//! current, a live aggregate where they are not, so no read is ever stale.

use super::Layout;
use crate::db::literal;

/// `CREATE VIEW` text of `layout`.
///
/// Three disjoint parts, so each bucket comes from exactly one:
/// - materialized buckets below the watermark that no pending invalidation
///   covers;
/// - base rows at or above the watermark (the partitions before it are
///   pruned at execution time);
/// - base rows in the pending invalidated ranges below the watermark, the
///   ranges widened to whole buckets and merged so none is read twice.
pub fn create(l: &Layout) -> String {
    let (schema, table, name) = (
        literal(l.table.schema.as_str()),
        literal(l.table.name.as_str()),
        literal(l.spec.name.as_str()),
    );
    let time = l.time();
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
    format!(
        "CREATE VIEW {view} ({columns}) AS
WITH w AS MATERIALIZED (
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
)
SELECT {mat_cols}, {measures} FROM {storage} m
 WHERE m.bucket < (SELECT watermark FROM w)
   AND NOT EXISTS (SELECT 1 FROM merged g WHERE m.bucket >= g.lo AND m.bucket < g.hi)
UNION ALL
{tail}
UNION ALL
{invalidated}",
        view = l.view,
        columns = l.columns(),
        lo = l.bucket_of("i.lo"),
        hi = l.bucket_end("i.hi"),
        measures = measures.join(", "),
        storage = l.storage,
        tail = l.aggregate(&l.base(), &format!("{time} >= (SELECT watermark FROM w)")),
        invalidated = l.aggregate(
            &format!("merged g JOIN {} ON {time} >= g.lo AND {time} < g.hi", l.base()),
            "true"
        ),
    )
}
