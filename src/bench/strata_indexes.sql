-- Indexes of the table $1 (a quoted name): name, and the constraint that owns
-- it (the primary key), if any.
SELECT c.relname::text, con.conname::text
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
 WHERE i.indrelid = to_regclass($1)
 ORDER BY 1;
