-- Indexes (other than primary keys) of every partition of $1: partition
-- schema and name, index name, validity, and the parent index it is attached to.
SELECT pn.nspname::text, pc.relname::text, ic.relname::text, i.indisvalid, parent_index.relname::text
  FROM pg_catalog.pg_inherits pi
  JOIN pg_catalog.pg_class pc ON pc.oid = pi.inhrelid
  JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
  JOIN pg_catalog.pg_index i ON i.indrelid = pc.oid AND NOT i.indisprimary
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  LEFT JOIN pg_catalog.pg_inherits ii ON ii.inhrelid = i.indexrelid
  LEFT JOIN pg_catalog.pg_class parent_index ON parent_index.oid = ii.inhparent
 WHERE pi.inhparent = to_regclass($1)
 ORDER BY 2, 3;
