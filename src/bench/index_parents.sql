-- Each partition index with the parent index it is attached to.
SELECT c.relname::text, p.relname::text
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
 WHERE c.relkind = 'i';
