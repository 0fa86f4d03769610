-- Every index of a partitioned table ($1) and of its partitions, each with
-- the parent index it is attached to (NULL for the parent's own indexes and
-- for partition-local ones), usage counters and validity.
SELECT ic.relname::text                                      AS index_name,
       tn.nspname::text                                      AS table_schema,
       tc.relname::text                                      AS table_name,
       tc.relkind = 'p'                                      AS on_parent,
       parent.relname::text                                  AS parent_index,
       am.amname::text                                       AS method,
       pg_catalog.pg_get_indexdef(i.indexrelid)              AS definition,
       pg_catalog.pg_relation_size(i.indexrelid)             AS bytes,
       coalesce(s.idx_scan, 0)                               AS scans,
       coalesce(s.idx_tup_read, 0)                           AS tuples_read,
       coalesce(s.idx_tup_fetch, 0)                          AS tuples_fetched,
       i.indisvalid                                          AS valid,
       i.indisunique                                         AS is_unique,
       i.indisprimary                                        AS is_primary,
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid) AS backs_constraint,
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
       -- Bytes per B-tree leaf tuple if the index were packed: MAXALIGN(8-byte
       -- header + column widths from pg_stats) + a 4-byte line pointer. NULL
       -- (no estimate) for expression keys or columns without statistics yet,
       -- where a guess would flag fresh indexes as bloated.
       (SELECT CASE WHEN 0 = ANY (i.indkey::int2[]) OR count(st.attname) < i.indnatts THEN NULL
                    ELSE ceil((8 + sum(st.avg_width)) / 8.0) * 8 + 4 END
          FROM pg_catalog.pg_attribute a
          LEFT JOIN pg_catalog.pg_stats st ON st.schemaname = tn.nspname AND st.tablename = tc.relname
                                          AND st.attname = a.attname AND NOT st.inherited
         WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[]))::float8 AS tuple_bytes,
       current_setting('block_size')::int8                  AS block_size
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
  JOIN pg_catalog.pg_am am ON am.oid = ic.relam
  LEFT JOIN pg_catalog.pg_inherits ih ON ih.inhrelid = i.indexrelid
  LEFT JOIN pg_catalog.pg_class parent ON parent.oid = ih.inhparent
  LEFT JOIN pg_catalog.pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
 WHERE i.indrelid = $1::text::regclass
    OR i.indrelid IN (SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1::text::regclass)
 ORDER BY tc.relkind <> 'p', ic.relname;
