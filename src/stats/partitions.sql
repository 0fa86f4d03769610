-- Partitions of a partitioned table ($1, a quoted name) with sizes and
-- maintenance statistics, in one read of the catalog.
--
-- Sizes of most partitions are estimates: pg_class.relpages * block_size of
-- the heap, its indexes and its TOAST table, as the last VACUUM, ANALYZE or
-- CREATE INDEX saw them. pg_relation_size and friends are exact but open
-- each relation (a relcache entry built and an AccessShareLock kept to the
-- end of the transaction): with 1,000 daily partitions that is ~10,000
-- relations, seconds of work and a real risk of filling the shared lock
-- table. They are used only where relpages is likely stale: the default
-- partition and the partitions written since their last analyze (the
-- current one, normally), at most the 32 most written. Column 15 says which.
--
-- The pg_stat_get_* functions rather than pg_stat_all_tables: that view
-- groups over every relation of the database before the join. Bounds are
-- deparsed without a relation (relid 0): they hold only constants, and
-- with one pg_get_expr opens the partition. Run with TimeZone = UTC so
-- bounds read as UTC.
WITH part AS MATERIALIZED (
    SELECT c.oid, n.nspname, c.relname, c.relpartbound, c.reltuples, c.relpages, c.reltoastrelid,
           c.reloptions, c.relfrozenxid,
           c.oid = pt.partdefid AS is_default
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = i.inhparent
     WHERE i.inhparent = $1::text::regclass
), exact AS MATERIALIZED (
    SELECT p.oid
      FROM part p
     WHERE p.is_default OR pg_catalog.pg_stat_get_mod_since_analyze(p.oid) > 0
     ORDER BY p.is_default DESC, pg_catalog.pg_stat_get_mod_since_analyze(p.oid) DESC
     LIMIT 32
), idx AS (
    SELECT x.indrelid, sum(ic.relpages)::int8 AS pages
      FROM pg_catalog.pg_index x
      JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
     WHERE x.indrelid IN (SELECT oid FROM part)
     GROUP BY x.indrelid
), toast AS (
    -- The TOAST table and its index.
    SELECT t.oid, t.relpages::int8 + coalesce(sum(ti.relpages), 0)::int8 AS pages
      FROM pg_catalog.pg_class t
      LEFT JOIN pg_catalog.pg_index x ON x.indrelid = t.oid
      LEFT JOIN pg_catalog.pg_class ti ON ti.oid = x.indexrelid
     WHERE t.oid IN (SELECT reltoastrelid FROM part)
     GROUP BY t.oid, t.relpages
), sized AS (
    SELECT p.*,
           e.oid IS NOT NULL AS exact,
           CASE WHEN e.oid IS NOT NULL THEN pg_catalog.pg_relation_size(p.oid)
                ELSE p.relpages::int8 * pg_catalog.current_setting('block_size')::int8 END AS table_bytes,
           CASE WHEN e.oid IS NOT NULL THEN pg_catalog.pg_indexes_size(p.oid)
                ELSE coalesce(idx.pages, 0) * pg_catalog.current_setting('block_size')::int8 END AS index_bytes,
           CASE WHEN p.reltoastrelid = 0 THEN 0::int8
                WHEN e.oid IS NOT NULL THEN pg_catalog.pg_total_relation_size(p.reltoastrelid)
                ELSE coalesce(toast.pages, 0) * pg_catalog.current_setting('block_size')::int8 END AS toast_bytes
      FROM part p
      LEFT JOIN exact e ON e.oid = p.oid
      LEFT JOIN idx ON idx.indrelid = p.oid
      LEFT JOIN toast ON toast.oid = p.reltoastrelid
)
SELECT s.nspname::text,
       s.relname::text,
       pg_catalog.pg_get_expr(s.relpartbound, 0),
       -- reltuples is -1 before the first VACUUM/ANALYZE: fall back to the live-tuple counter.
       CASE WHEN s.reltuples >= 0 THEN s.reltuples::int8 ELSE pg_catalog.pg_stat_get_live_tuples(s.oid) END,
       s.table_bytes,
       s.index_bytes,
       s.toast_bytes,
       s.table_bytes + s.index_bytes + s.toast_bytes,
       pg_catalog.pg_stat_get_dead_tuples(s.oid),
       pg_catalog.pg_stat_get_last_vacuum_time(s.oid),
       pg_catalog.pg_stat_get_last_autovacuum_time(s.oid),
       pg_catalog.pg_stat_get_last_analyze_time(s.oid),
       pg_catalog.pg_stat_get_last_autoanalyze_time(s.oid),
       coalesce((SELECT option_value::int
                   FROM pg_catalog.pg_options_to_table(s.reloptions)
                  WHERE option_name = 'fillfactor'), 100),
       age(s.relfrozenxid)::int8,
       s.exact
  FROM sized s
 ORDER BY s.relname;
