-- GIN operator class for audit_logs.details: jsonb_ops (default) vs jsonb_path_ops.
-- Run in a scratch database:
--   psql "$(strata local url | sed 's#/strata$#/postgres#')" -c 'CREATE DATABASE gin_bench'
--   psql "$(strata local url | sed 's#/strata$#/gin_bench#')" -f bench/gin_opclass.sql
-- Same 1,000,000 details documents (strata's generator shape: 5 keys) for both.
\timing on
SET maintenance_work_mem = '256MB';
SET max_parallel_maintenance_workers = 0;
DROP TABLE IF EXISTS src, t_ops, t_path;
SELECT setseed(0.42);
CREATE TABLE src AS
SELECT jsonb_build_object(
         'method', (ARRAY['GET','POST','PUT','PATCH','DELETE'])[1 + floor(random() * 5)::int],
         'region', (ARRAY['us-east-1','us-west-2','eu-west-1','eu-central-1','ap-south-1','ap-northeast-1'])[1 + floor(random() * 6)::int],
         'request_id', lpad(to_hex((random() * 9007199254740991)::bigint), 16, '0'),
         'path', '/api/v1/documents/' || (1 + floor(random() * 99999))::int,
         'duration_ms', 1 + floor(random() * 1999)::int) AS details
  FROM generate_series(1, 1000000);
CREATE TABLE t_ops (details jsonb);
CREATE TABLE t_path (details jsonb);
INSERT INTO t_ops SELECT details FROM src;
INSERT INTO t_path SELECT details FROM src;
VACUUM ANALYZE t_ops; VACUUM ANALYZE t_path;
\echo '== build on 1M rows'
CREATE INDEX t_ops_gin ON t_ops USING gin (details);
CREATE INDEX t_path_gin ON t_path USING gin (details jsonb_path_ops);
SELECT 'built size' AS what, pg_size_pretty(pg_relation_size('t_ops_gin')) AS jsonb_ops, pg_size_pretty(pg_relation_size('t_path_gin')) AS jsonb_path_ops;
\echo '== queries (count, 3 runs each)'
SELECT count(*) FROM t_ops WHERE details @> '{"method":"DELETE","region":"eu-west-1"}';
SELECT count(*) FROM t_path WHERE details @> '{"method":"DELETE","region":"eu-west-1"}';
SELECT count(*) FROM t_ops WHERE details @> '{"method":"DELETE","region":"eu-west-1"}';
SELECT count(*) FROM t_path WHERE details @> '{"method":"DELETE","region":"eu-west-1"}';
SELECT count(*) FROM t_ops WHERE details @> '{"request_id":"0000000000000001"}';
SELECT count(*) FROM t_path WHERE details @> '{"request_id":"0000000000000001"}';
SELECT count(*) FROM t_ops WHERE details @> '{"request_id":"0000000000000001"}';
SELECT count(*) FROM t_path WHERE details @> '{"request_id":"0000000000000001"}';
EXPLAIN (COSTS OFF) SELECT count(*) FROM t_ops WHERE details ? 'error_code';
EXPLAIN (COSTS OFF) SELECT count(*) FROM t_path WHERE details ? 'error_code';
SELECT count(*) FROM t_ops WHERE details ? 'error_code';
SELECT count(*) FROM t_path WHERE details ? 'error_code';
\echo '== incremental: 500,000 inserts into each indexed table (fastupdate on, the default)'
TRUNCATE t_ops; TRUNCATE t_path;
INSERT INTO t_ops SELECT details FROM src LIMIT 500000;
INSERT INTO t_path SELECT details FROM src LIMIT 500000;
INSERT INTO t_ops SELECT details FROM src OFFSET 500000;
INSERT INTO t_path SELECT details FROM src OFFSET 500000;
SELECT 'size after 1M inserts' AS what, pg_size_pretty(pg_relation_size('t_ops_gin')) AS jsonb_ops, pg_size_pretty(pg_relation_size('t_path_gin')) AS jsonb_path_ops;
\echo '== no index: the same 500,000 inserts'
DROP INDEX t_ops_gin; TRUNCATE t_ops;
INSERT INTO t_ops SELECT details FROM src LIMIT 500000;
