-- INVALID indexes on the table with OID $1 and on every partition below it,
-- found through pg_inherits (no relation lock).
WITH RECURSIVE tree(relid) AS (
    SELECT $1::pg_catalog.oid
    UNION ALL
    SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.relid
)
SELECT x.indexrelid::pg_catalog.regclass::text AS index,
       x.indrelid::pg_catalog.regclass::text AS on_table,
       ic.relkind = 'I' AS partitioned,
       x.indisunique AS is_unique,
       x.indisready AS is_ready
  FROM tree
  JOIN pg_catalog.pg_index x ON x.indrelid = tree.relid
  JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
 WHERE NOT x.indisvalid
 ORDER BY 1;
