-- The oldest (by relfrozenxid, TOAST included) leaf partitions of the table
-- with OID $1. The tree is walked through pg_inherits and sizes come from
-- relpages so that no relation lock is taken: health must answer while the
-- table is locked.
WITH RECURSIVE tree(relid) AS (
    SELECT $1::pg_catalog.oid
    UNION ALL
    SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.relid
)
SELECT c.oid::pg_catalog.regclass::text AS partition,
       greatest(pg_catalog.age(c.relfrozenxid), coalesce(pg_catalog.age(t.relfrozenxid), 0))::int8 AS xid_age,
       c.relpages::int8 * pg_catalog.current_setting('block_size')::int8 AS bytes
  FROM tree
  JOIN pg_catalog.pg_class c ON c.oid = tree.relid
  LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
 WHERE c.relkind = 'r'
 ORDER BY 2 DESC, 3 DESC, 1
 LIMIT 5;
