-- Transaction ID age of every database of the cluster: wraparound is cluster-wide.
SELECT d.datname::text AS database,
       pg_catalog.age(d.datfrozenxid)::int8 AS xid_age
  FROM pg_catalog.pg_database d
 ORDER BY 2 DESC, 1
 LIMIT 5;
