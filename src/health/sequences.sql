-- Sequences owned by a column of the table with OID $1 (serial: deptype 'a',
-- identity: 'i'), with the limit the column's type puts on them.
SELECT s.seqrelid::pg_catalog.regclass::text AS sequence,
       a.attname::text AS column_name,
       CASE WHEN pg_catalog.has_sequence_privilege(s.seqrelid, 'SELECT,USAGE')
            THEN pg_catalog.pg_sequence_last_value(s.seqrelid) END AS last_value,
       s.seqincrement AS increment,
       greatest(s.seqmin, CASE a.atttypid::pg_catalog.regtype
                            WHEN 'pg_catalog.int2'::pg_catalog.regtype THEN -32768
                            WHEN 'pg_catalog.int4'::pg_catalog.regtype THEN -2147483648
                            ELSE s.seqmin END) AS min_value,
       least(s.seqmax, CASE a.atttypid::pg_catalog.regtype
                         WHEN 'pg_catalog.int2'::pg_catalog.regtype THEN 32767
                         WHEN 'pg_catalog.int4'::pg_catalog.regtype THEN 2147483647
                         ELSE s.seqmax END) AS max_value
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_sequence s ON s.seqrelid = d.objid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.refobjid = $1::pg_catalog.oid
   AND d.deptype IN ('a', 'i')
 ORDER BY 1;
