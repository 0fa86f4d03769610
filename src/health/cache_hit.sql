-- Heap blocks found in shared buffers vs read, over this database's tables.
SELECT coalesce(sum(heap_blks_hit), 0)::int8 AS hit,
       coalesce(sum(heap_blks_read), 0)::int8 AS read
  FROM pg_catalog.pg_statio_user_tables;
