-- Partitions of a partitioned table ($1, a quoted name) with sizes and
-- maintenance statistics. Run with TimeZone = UTC so bounds read as UTC.
-- The pg_stat_get_* functions rather than pg_stat_all_tables: that view
-- groups over every relation of the database before the join, which costs
-- more than the partitions' own rows with thousands of them.
SELECT n.nspname::text,
       c.relname::text,
       pg_catalog.pg_get_expr(c.relpartbound, c.oid),
       -- reltuples is -1 before the first VACUUM/ANALYZE: fall back to the live-tuple counter.
       CASE WHEN c.reltuples >= 0 THEN c.reltuples::int8 ELSE pg_catalog.pg_stat_get_live_tuples(c.oid) END,
       pg_catalog.pg_relation_size(c.oid),
       pg_catalog.pg_indexes_size(c.oid),
       coalesce(pg_catalog.pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0)::int8,
       pg_catalog.pg_total_relation_size(c.oid),
       pg_catalog.pg_stat_get_dead_tuples(c.oid),
       pg_catalog.pg_stat_get_last_vacuum_time(c.oid),
       pg_catalog.pg_stat_get_last_autovacuum_time(c.oid),
       pg_catalog.pg_stat_get_last_analyze_time(c.oid),
       pg_catalog.pg_stat_get_last_autoanalyze_time(c.oid),
       coalesce((SELECT option_value::int
                   FROM pg_catalog.pg_options_to_table(c.reloptions)
                  WHERE option_name = 'fillfactor'), 100),
       age(c.relfrozenxid)::int8
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE i.inhparent = $1::text::regclass
 ORDER BY c.relname;
