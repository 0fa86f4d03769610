-- The partitions of $1 (a quoted name, as text) for a user's newest rows:
-- each one's bound as text (parsed by the caller, offset included, so the
-- session's TimeZone does not matter) and whether it is certainly empty;
-- with the table's oid and the membership fingerprint that
-- user_walk_check.sql compares, from the same snapshot. No partition: one
-- row with NULL partition columns.
--
-- Empty: a plain partition whose heap has no page holds no row for any
-- snapshot. Only partitions with relpages = 0 (never vacuumed or analyzed
-- with rows: new or premade ones, the usual default partition) have their
-- file size read, so a table of many full partitions does not open each one.
-- Foreign (archived) and sub-partitioned partitions are never called empty.
WITH parent AS MATERIALIZED (
    SELECT $1::text::regclass::oid AS oid
), members AS (
    SELECT count(*)::text || ' ' || coalesce(sum(i.inhrelid::int8 * 4294967296 + i.xmin::text::int8), 0)::text
           AS fingerprint
      FROM pg_catalog.pg_inherits i, parent
     WHERE i.inhparent = parent.oid
)
SELECT parent.oid, members.fingerprint, n.nspname::text, c.relname::text,
       -- Without a relation: a bound holds constants only, and this way no
       -- partition is opened for it.
       pg_catalog.pg_get_expr(c.relpartbound, 0),
       CASE WHEN c.relkind = 'r' AND c.relpages = 0
            THEN coalesce(pg_catalog.pg_relation_size(c.oid) = 0, false)
            ELSE false END AS empty,
       c.oid
  FROM parent CROSS JOIN members
  LEFT JOIN pg_catalog.pg_inherits i ON i.inhparent = parent.oid
  LEFT JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
