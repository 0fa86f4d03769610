-- pg_stat_statements for the current database, one row per statement
-- (summed over the toplevel/nested split of PostgreSQL 14+), restricted to
-- statements whose text names one of the tables in $1 (lower-case names).
-- `{pgss}` is replaced by the extension's schema-qualified view.
SELECT s.userid, s.dbid, s.queryid, min(s.query),
       sum(s.calls)::int8, sum(s.total_exec_time)::float8, sum(s.rows)::int8,
       sum(s.shared_blks_hit)::int8, sum(s.shared_blks_read)::int8
  FROM {pgss} s
 WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND s.queryid IS NOT NULL
   -- The table, or one of its partitions (name_<digits…> or name_default), as
   -- a whole word; names are escaped for the regular expression.
   AND EXISTS (SELECT 1 FROM unnest($1::text[]) t
                WHERE lower(s.query) ~ ('\m' || regexp_replace(t, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g')
                                        || '(_[0-9][0-9_]*|_default)?\M'))
   -- strata's own maintenance and DDL (tracked with track_utility) are not
   -- the application's queries.
   AND s.query !~* '^\s*(vacuum|analyze|reindex|explain|create|alter|drop|copy|lock|truncate|cluster)\M'
   -- Nor are its reads and writes: its sessions are not counted where the
   -- role may say so (stats::untrack_own_statements), and its statements
   -- start with a `/* strata */` (or `-- strata`) marker, which
   -- pg_stat_statements keeps in the text. There is no application_name in
   -- pg_stat_statements to filter on instead.
   AND s.query !~ '^\s*(--\s*strata\M|/\*\s*strata\s*\*/)'
 GROUP BY s.userid, s.dbid, s.queryid;
