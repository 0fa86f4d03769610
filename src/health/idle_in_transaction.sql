-- Sessions of this database idle inside a transaction for at least $1 seconds.
-- state_change is when the session went idle: it does not move while it stays so.
SELECT a.pid,
       a.usename::text AS usename,
       a.state,
       extract(epoch FROM pg_catalog.clock_timestamp() - a.state_change)::float8 AS seconds,
       extract(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::float8 AS transaction_seconds,
       left(a.query, 100) AS last_query
  FROM pg_catalog.pg_stat_activity a
 WHERE a.datname = pg_catalog.current_database()
   AND a.pid <> pg_catalog.pg_backend_pid()
   AND a.backend_type = 'client backend'
   AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
   AND a.state_change <= pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $1::float8)
 ORDER BY a.state_change;
