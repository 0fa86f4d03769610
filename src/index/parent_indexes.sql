-- Indexes of the table $1 (a quoted name) other than its primary key:
-- name, access method, validity, key column names and operator classes in order.
SELECT c.relname::text,
       am.amname::text,
       i.indisvalid,
       ARRAY(SELECT coalesce(a.attname::text, 'expression')
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              ORDER BY k.ord),
       ARRAY(SELECT opc.opcname::text
               FROM unnest(i.indclass::oid[]) WITH ORDINALITY AS k(opc_oid, ord)
               JOIN pg_catalog.pg_opclass opc ON opc.oid = k.opc_oid
              ORDER BY k.ord)
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_am am ON am.oid = c.relam
 WHERE i.indrelid = to_regclass($1) AND NOT i.indisprimary
 ORDER BY 1;
