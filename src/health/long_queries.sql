-- Active client queries of this database running for at least $1 seconds,
-- not counting the session that asks.
SELECT a.pid,
       a.usename::text AS usename,
       extract(epoch FROM pg_catalog.clock_timestamp() - a.query_start)::float8 AS seconds,
       left(a.query, 100) AS query
  FROM pg_catalog.pg_stat_activity a
 WHERE a.datname = pg_catalog.current_database()
   AND a.pid <> pg_catalog.pg_backend_pid()
   AND a.backend_type = 'client backend'
   AND a.state = 'active'
   AND a.query_start <= pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $1::float8)
 ORDER BY a.query_start;
