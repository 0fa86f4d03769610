-- Every index of a partitioned table ($1) and of its partitions, each with
-- the parent index it is attached to (NULL for the parent's own indexes and
-- for partition-local ones), usage counters and validity.
-- Written to stay fast with thousands of partitions: per-index values come
-- from joins and hashed subplans, never a correlated scan of a catalog with
-- no index on the column (pg_constraint.conindid) or of the pg_stats view;
-- and no function that opens the index (a relcache entry and a lock each,
-- ~9,000 of them at 1,000 partitions) except where it is worth it:
-- - sizes are pg_class.relpages * block_size (as of the last VACUUM,
--   ANALYZE or CREATE INDEX), exact (pg_relation_size) only for indexes of
--   the tables partitions.sql sizes exactly: the default partition and the
--   32 partitions most written since their last analyze;
-- - the definition and the duplicate "shape" only for the indexes the
--   grouping shows (the parent's and partition-local ones), not for the
--   partition indexes attached to a parent index.
WITH tbl AS MATERIALIZED (
    SELECT $1::text::regclass::oid AS oid, false AS is_default
    UNION ALL
    SELECT h.inhrelid, h.inhrelid = pt.partdefid
      FROM pg_catalog.pg_inherits h
      LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = h.inhparent
     WHERE h.inhparent = $1::text::regclass
), exact AS MATERIALIZED (
    SELECT t.oid
      FROM tbl t
     WHERE t.is_default OR pg_catalog.pg_stat_get_mod_since_analyze(t.oid) > 0
     ORDER BY t.is_default DESC, pg_catalog.pg_stat_get_mod_since_analyze(t.oid) DESC
     LIMIT 32
), idx AS MATERIALIZED (
    SELECT i.* FROM pg_catalog.pg_index i WHERE i.indrelid IN (SELECT oid FROM tbl)
), pst AS MATERIALIZED (
    -- Column widths from the parent's statistics over all its partitions
    -- (ANALYZE of the parent): one table's rows of pg_stats. The name is
    -- given as parameters (subqueries) so that the view is entered through
    -- the indexes on pg_class and pg_statistic, not read whole.
    SELECT s.attname, s.avg_width
      FROM pg_catalog.pg_stats s
     WHERE s.inherited
       AND s.schemaname = (SELECT n.nspname FROM pg_catalog.pg_class c
                             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                            WHERE c.oid = $1::text::regclass)
       AND s.tablename = (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = $1::text::regclass)
), st AS MATERIALIZED (
    -- Without them (the parent never analyzed), each partition's own: the
    -- pg_stats view has to be read whole for that (it checks column
    -- privileges row by row), which costs ~0.3 s per 1,000 partitions.
    SELECT tc.oid AS relid, s.attname, s.avg_width
      FROM pg_catalog.pg_stats s
      JOIN pg_catalog.pg_namespace tn ON tn.nspname = s.schemaname
      JOIN pg_catalog.pg_class tc ON tc.relnamespace = tn.oid AND tc.relname = s.tablename
     WHERE NOT s.inherited
       AND tc.oid IN (SELECT indrelid FROM idx)
       AND NOT EXISTS (SELECT 1 FROM pst)
), widths AS (
    -- Bytes per B-tree leaf tuple if the index were packed: MAXALIGN(8-byte
    -- header + column widths from pg_stats) + a 4-byte line pointer. NULL
    -- (no estimate) for expression keys or columns without statistics yet,
    -- where a guess would flag fresh indexes as bloated.
    SELECT i.indexrelid,
           CASE WHEN 0 = ANY (i.indkey::int2[]) OR count(w.width) < i.indnatts THEN NULL
                ELSE ceil((8 + sum(w.width)) / 8.0) * 8 + 4 END::float8 AS tuple_bytes
      FROM idx i
      -- Only B-trees get a bloat estimate.
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
      LEFT JOIN pst ON pst.attname = a.attname
      LEFT JOIN st ON st.relid = i.indrelid AND st.attname = a.attname
      CROSS JOIN LATERAL (SELECT coalesce(pst.avg_width, st.avg_width) AS width) w
     GROUP BY i.indexrelid, i.indkey, i.indnatts
)
SELECT ic.relname::text                                      AS index_name,
       tn.nspname::text                                      AS table_schema,
       tc.relname::text                                      AS table_name,
       tc.relkind = 'p'                                      AS on_parent,
       parent.relname::text                                  AS parent_index,
       am.amname::text                                       AS method,
       CASE WHEN head THEN pg_catalog.pg_get_indexdef(i.indexrelid) END AS definition,
       CASE WHEN i.indrelid IN (SELECT oid FROM exact) THEN pg_catalog.pg_relation_size(i.indexrelid)
            ELSE ic.relpages::int8 * current_setting('block_size')::int8 END AS bytes,
       pg_catalog.pg_stat_get_numscans(i.indexrelid)         AS scans,
       pg_catalog.pg_stat_get_tuples_returned(i.indexrelid)  AS tuples_read,
       pg_catalog.pg_stat_get_tuples_fetched(i.indexrelid)   AS tuples_fetched,
       i.indisvalid                                          AS valid,
       i.indisunique                                         AS is_unique,
       i.indisprimary                                        AS is_primary,
       i.indexrelid IN (SELECT k.conindid FROM pg_catalog.pg_constraint k) AS backs_constraint,
       -- What makes two indexes the same: method, keys, operator classes,
       -- expressions and predicate.
       -- indoption: DESC / NULLS FIRST per key; indnullsnotdistinct: a
       -- stricter uniqueness. format keeps positions fixed when parts are NULL.
       CASE WHEN head THEN
       format('%s|%s|%s|%s|%s|%s|%s|%s', am.amname, i.indkey, i.indclass, i.indcollation, i.indoption,
              i.indnullsnotdistinct, pg_catalog.pg_get_expr(i.indexprs, i.indrelid),
              pg_catalog.pg_get_expr(i.indpred, i.indrelid)) END AS shape,
       ic.reltuples::float8                                  AS index_tuples,
       coalesce((SELECT option_value::int FROM pg_catalog.pg_options_to_table(ic.reloptions)
                  WHERE option_name = 'fillfactor'), 90)     AS fillfactor,
       w.tuple_bytes                                         AS tuple_bytes,
       current_setting('block_size')::int8                  AS block_size,
       ic.relpages::int8 * current_setting('block_size')::int8 AS estimated_bytes
  FROM idx i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
  JOIN pg_catalog.pg_am am ON am.oid = ic.relam
  LEFT JOIN pg_catalog.pg_inherits ih ON ih.inhrelid = i.indexrelid
  LEFT JOIN pg_catalog.pg_class parent ON parent.oid = ih.inhparent
  CROSS JOIN LATERAL (SELECT tc.relkind = 'p' OR parent.oid IS NULL AS head) h
  LEFT JOIN widths w ON w.indexrelid = i.indexrelid
 ORDER BY tc.relkind <> 'p', ic.relname;
