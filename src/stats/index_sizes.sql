-- Indexes of a partitioned table ($1, a quoted name), with the size of each
-- summed over its partition indexes (the parent's own index is empty).
WITH RECURSIVE tree AS (
    SELECT i.indexrelid AS root, i.indexrelid AS idx
      FROM pg_catalog.pg_index i
     WHERE i.indrelid = to_regclass($1)
    UNION ALL
    SELECT t.root, inh.inhrelid
      FROM tree t
      JOIN pg_catalog.pg_inherits inh ON inh.inhparent = t.idx
)
SELECT c.relname::text,
       am.amname::text,
       pg_catalog.pg_get_indexdef(t.root),
       (count(*) - 1)::int8,
       sum(pg_catalog.pg_relation_size(t.idx))::int8
  FROM tree t
  JOIN pg_catalog.pg_class c ON c.oid = t.root
  JOIN pg_catalog.pg_am am ON am.oid = c.relam
 GROUP BY c.relname, am.amname, t.root
 ORDER BY 5 DESC, 1;
