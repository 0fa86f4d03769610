-- The partitions of $1 (a quoted name, as text) for a user's newest rows:
-- whether each is the default partition, starts at MINVALUE, its lower
-- bound, and whether it is certainly empty.
--
-- The lower bound is cast back from pg_get_expr's text in the same session,
-- so it is exact whatever the session's TimeZone and DateStyle.
--
-- Empty: a plain partition whose heap has no page holds no row for any
-- snapshot. Only partitions with relpages = 0 (never vacuumed or analyzed
-- with rows: new or premade ones, the usual default partition) have their
-- file size read, so a table of many full partitions does not open each one.
-- Foreign (archived) and sub-partitioned partitions are never called empty.
SELECT n.nspname::text,
       c.relname::text,
       b.expr = 'DEFAULT' AS is_default,
       b.expr LIKE 'FOR VALUES FROM (MINVALUE%' AS from_min,
       pg_catalog.substring(b.expr, '^FOR VALUES FROM \(''([^'']*)''\) TO ')::timestamptz AS lower,
       CASE WHEN c.relkind = 'r' AND c.relpages = 0
            THEN coalesce(pg_catalog.pg_relation_size(c.oid) = 0, false)
            ELSE false END AS empty
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS expr) b
 WHERE i.inhparent = $1::text::regclass
