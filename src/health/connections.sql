-- Client connections in use against the slots a non-superuser can get.
-- Background workers, autovacuum and WAL senders have slots of their own.
SELECT (SELECT count(*) FROM pg_catalog.pg_stat_activity
         WHERE backend_type = 'client backend')::int8 AS used,
       pg_catalog.current_setting('max_connections')::int8 AS max_connections,
       pg_catalog.current_setting('superuser_reserved_connections')::int8 AS superuser_reserved,
       -- reserved_connections exists from PostgreSQL 16 on.
       coalesce(pg_catalog.current_setting('reserved_connections', true), '0')::int8 AS reserved;
