-- Every index of a partitioned table ($1) and of its partitions, each with
-- the parent index it is attached to (NULL for the parent's own indexes and
-- for partition-local ones), usage counters and validity.
-- Written to stay fast with thousands of partitions: per-index values come
-- from joins and hashed subplans, never a correlated scan of a catalog with
-- no index on the column (pg_constraint.conindid) or of the pg_stats view.
WITH idx AS MATERIALIZED (
    SELECT i.* FROM pg_catalog.pg_index i
     WHERE i.indrelid = $1::text::regclass
        OR i.indrelid IN (SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1::text::regclass)
), st AS MATERIALIZED (
    -- Column widths of the tables involved, read once from pg_stats.
    SELECT s.schemaname, s.tablename, s.attname, s.avg_width
      FROM pg_catalog.pg_stats s
     WHERE NOT s.inherited
       AND (s.schemaname, s.tablename) IN (SELECT n.nspname, c.relname
                                              FROM pg_catalog.pg_class c
                                              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                             WHERE c.oid IN (SELECT indrelid FROM idx))
), widths AS (
    -- Bytes per B-tree leaf tuple if the index were packed: MAXALIGN(8-byte
    -- header + column widths from pg_stats) + a 4-byte line pointer. NULL
    -- (no estimate) for expression keys or columns without statistics yet,
    -- where a guess would flag fresh indexes as bloated.
    SELECT i.indexrelid,
           CASE WHEN 0 = ANY (i.indkey::int2[]) OR count(st.attname) < i.indnatts THEN NULL
                ELSE ceil((8 + sum(st.avg_width)) / 8.0) * 8 + 4 END::float8 AS tuple_bytes
      FROM idx i
      JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
      JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
      LEFT JOIN st ON st.schemaname = tn.nspname AND st.tablename = tc.relname AND st.attname = a.attname
     GROUP BY i.indexrelid, i.indkey, i.indnatts
)
SELECT ic.relname::text                                      AS index_name,
       tn.nspname::text                                      AS table_schema,
       tc.relname::text                                      AS table_name,
       tc.relkind = 'p'                                      AS on_parent,
       parent.relname::text                                  AS parent_index,
       am.amname::text                                       AS method,
       pg_catalog.pg_get_indexdef(i.indexrelid)              AS definition,
       pg_catalog.pg_relation_size(i.indexrelid)             AS bytes,
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
       format('%s|%s|%s|%s|%s|%s|%s|%s', am.amname, i.indkey, i.indclass, i.indcollation, i.indoption,
              i.indnullsnotdistinct, pg_catalog.pg_get_expr(i.indexprs, i.indrelid),
              pg_catalog.pg_get_expr(i.indpred, i.indrelid)) AS shape,
       ic.reltuples::float8                                  AS index_tuples,
       coalesce((SELECT option_value::int FROM pg_catalog.pg_options_to_table(ic.reloptions)
                  WHERE option_name = 'fillfactor'), 90)     AS fillfactor,
       w.tuple_bytes                                         AS tuple_bytes,
       current_setting('block_size')::int8                  AS block_size
  FROM idx i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
  JOIN pg_catalog.pg_am am ON am.oid = ic.relam
  LEFT JOIN pg_catalog.pg_inherits ih ON ih.inhrelid = i.indexrelid
  LEFT JOIN pg_catalog.pg_class parent ON parent.oid = ih.inhparent
  LEFT JOIN widths w ON w.indexrelid = i.indexrelid
 ORDER BY tc.relkind <> 'p', ic.relname;
