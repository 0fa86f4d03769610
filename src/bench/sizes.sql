-- Heap (with TOAST) and index bytes of $1 (a quoted name): of the table, or
-- summed over its partitions when it is partitioned (a partitioned parent
-- itself has no storage).
WITH t AS (
    SELECT p.relid FROM pg_catalog.pg_partition_tree(to_regclass($1)) p WHERE p.isleaf
    UNION
    SELECT to_regclass($1)
)
SELECT coalesce(sum(pg_catalog.pg_table_size(t.relid)), 0)::int8,
       coalesce(sum(pg_catalog.pg_indexes_size(t.relid)), 0)::int8
  FROM t;
