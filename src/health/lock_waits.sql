-- Sessions of this database waiting on a lock held (or queued for before them)
-- by other sessions, for at least $1 seconds. pg_locks is read once, not per
-- session: it takes the lock manager's partition locks. waitstart can be NULL
-- for an instant after the wait begins; such a wait counts as just started.
WITH waiting AS (
    SELECT l.pid,
           min(l.waitstart) AS waitstart,
           min(l.relation::pg_catalog.regclass::text) AS relation
      FROM pg_catalog.pg_locks l
     WHERE NOT l.granted
     GROUP BY l.pid
)
SELECT a.pid,
       pg_catalog.pg_blocking_pids(a.pid) AS blocked_by,
       extract(epoch FROM pg_catalog.clock_timestamp()
                          - coalesce(w.waitstart, pg_catalog.clock_timestamp()))::float8 AS seconds,
       w.relation,
       left(a.query, 100) AS query
  FROM waiting w
  JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid
 WHERE a.datname = pg_catalog.current_database()
   AND a.pid <> pg_catalog.pg_backend_pid()
   AND pg_catalog.cardinality(pg_catalog.pg_blocking_pids(a.pid)) > 0
   AND coalesce(w.waitstart, pg_catalog.clock_timestamp())
       <= pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $1::float8)
 ORDER BY w.waitstart NULLS LAST;
