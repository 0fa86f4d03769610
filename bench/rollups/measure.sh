#!/bin/bash
# Ad-hoc timings on the local cluster loaded by run.sh (partitioned table only).
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RBENCH=${RBENCH:-$ROOT/target/tmp/rbench}
mkdir -p "$RBENCH"
export STRATA_HOME=$RBENCH/home
S=${STRATA:-$ROOT/target/debug/strata}
cd "$RBENCH"
URL=$($S local url 2>/dev/null | tail -1); export PGPASSFILE=$STRATA_HOME/pgpass
q() { # label, sql: 1 warm-up + 5 timed runs, median server-side ms via EXPLAIN ANALYZE
  for i in 1 2 3 4 5 6; do psql "$URL" -XAtq -c "EXPLAIN (ANALYZE, FORMAT JSON) $2" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Execution Time"])'; done | tail -5 | sort -n | sed -n 3p | xargs printf "%-45s %s ms\n" "$1"
}
q "whole-table GROUP BY severity (table)" "SELECT severity, count(*) FROM audit_logs GROUP BY 1"
q "whole-table GROUP BY severity (daily view)" "SELECT severity, sum(count) FROM audit_logs_daily GROUP BY 1"
q "daily report 2025-11-15 (table)" "SELECT severity, status, count(*) FROM audit_logs WHERE created_at >= '2025-11-15' AND created_at < '2025-11-16' GROUP BY 1, 2"
q "daily report 2025-11-15 (daily view)" "SELECT severity, status, sum(count) FROM audit_logs_daily WHERE bucket >= '2025-11-15' AND bucket < '2025-11-16' GROUP BY 1, 2"
q "per-day counts Nov 2025 (table)" "SELECT date_trunc('day', created_at, 'UTC'), count(*) FROM audit_logs WHERE created_at >= '2025-11-01' AND created_at < '2025-12-01' GROUP BY 1"
q "per-day counts Nov 2025 (daily view)" "SELECT bucket, sum(count) FROM audit_logs_daily WHERE bucket >= '2025-11-01' AND bucket < '2025-12-01' GROUP BY 1"
psql "$URL" -XAtq -c "SELECT 'rollup storage bytes ' || (pg_total_relation_size('strata.audit_logs_hourly') + pg_total_relation_size('strata.audit_logs_daily')) || ' of table bytes ' || (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('audit_logs'))"
psql "$URL" -XAtq -c "INSERT INTO audit_logs (user_id, action, severity, status, created_at) SELECT 1 + g % 500, 'late_' || (g % 9), 'info', 'success', timestamptz '2025-11-15 00:00+00' + (g % 86400) * interval '1 second' FROM generate_series(1, 10000) g"
$S rollup refresh --json | python3 -c 'import json,sys; v=json.load(sys.stdin); [print("refresh after 10k rows:", r["name"], r["millis"], "ms,", r["buckets"], "buckets,", r["base_rows"], "base rows") for r in v["rollups"]]'
