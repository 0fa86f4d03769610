#!/usr/bin/env bash
# Online conversion under load: a plain audit_logs of N rows (default
# 10,000,000) converted with `strata convert run` while pgbench inserts at a
# fixed rate (default 500/s) through the table's name. Prints backfill
# rows/min, each phase's duration, and the insert latencies pgbench saw
# (overall and during the cutover second).
#
#   cargo build --release && bash bench/convert.sh [ROWS] [RATE]
#
# Runs in a scratch database `strata_convert_bench` of the local cluster
# (created afresh; never your data).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
RATE=${2:-500}
BIN=target/release/strata
PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -1)")
BASE=$($BIN local url --show-password)
ADMIN=${BASE%/*}/postgres
URL=${BASE%/*}/strata_convert_bench
WORK=$(mktemp -d)
trap 'kill $PGBENCH 2>/dev/null || true; rm -rf "$WORK"' EXIT

psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS strata_convert_bench WITH (FORCE)" -c "CREATE DATABASE strata_convert_bench"
echo "== loading $ROWS rows into a plain audit_logs"
t0=$(date +%s.%N)
psql -q "$URL" <<SQL
CREATE TABLE public.audit_logs (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    action VARCHAR(100) NOT NULL,
    resource_type VARCHAR(50),
    resource_id BIGINT,
    details JSONB,
    ip_address INET,
    user_agent TEXT,
    status VARCHAR(20),
    severity VARCHAR(20),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
SELECT setseed(0.42);
INSERT INTO public.audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, severity, created_at)
SELECT (random() * 50000)::int8,
       (ARRAY['user.login','document.read','document.update','admin.settings','api.call'])[1 + floor(random() * 5)::int],
       'document', (random() * 1000000)::int8,
       jsonb_build_object('method', (ARRAY['GET','POST','PUT'])[1 + floor(random() * 3)::int],
                          'request_id', md5(g::text), 'duration_ms', (random() * 2000)::int),
       ('10.' || (g % 250) || '.' || (g % 200) || '.1')::inet, 'Mozilla/5.0', 'success', 'info',
       timestamptz '2025-01-01' + (g::float8 / $ROWS) * (now() - timestamptz '2025-01-01')
  FROM generate_series(1, $ROWS) g;
CREATE INDEX idx_audit_logs_user_id ON public.audit_logs (user_id);
CREATE INDEX idx_audit_logs_created_at ON public.audit_logs (created_at);
VACUUM ANALYZE public.audit_logs;
SQL
echo "loaded in $(echo "$(date +%s.%N) - $t0" | bc) s; $(psql -Atq "$URL" -c "SELECT pg_size_pretty(pg_total_relation_size('audit_logs'))")"
$BIN --database-url "$URL" migrate >/dev/null

cat > "$WORK/insert.sql" <<'SQL'
INSERT INTO audit_logs (user_id, action, resource_type, details, status, severity)
VALUES ((random() * 50000)::int8, 'bench.insert', 'document', '{"bench": true}', 'success', 'info');
SQL
echo "== pgbench: $RATE inserts/s through the name audit_logs"
(cd "$WORK" && exec "$PGBIN/pgbench" -n -c 4 -j 2 -R "$RATE" -T 100000 -l --log-prefix=pgblog -f insert.sql "$URL" >"$WORK/pgbench.out" 2>&1) &
PGBENCH=$!
sleep 5

echo "== strata convert run"
t0=$(date +%s.%N)
$BIN --database-url "$URL" convert run
total=$(echo "$(date +%s.%N) - $t0" | bc)
sleep 5
kill -INT $PGBENCH 2>/dev/null || true
wait $PGBENCH 2>/dev/null || true

echo "== results"
echo "convert run: ${total} s"
psql -Atq "$URL" <<'SQL'
SELECT 'rows copied: ' || rows_copied FROM strata.conversions ORDER BY id DESC LIMIT 1;
SELECT format('%-12s %s', k, round(extract(epoch FROM (v::text::timestamptz - lag(v::text::timestamptz) OVER (ORDER BY v::text::timestamptz)))::numeric, 1) || ' s')
  FROM strata.conversions c, jsonb_each(c.timings) AS t(k, v)
 WHERE c.id = (SELECT max(id) FROM strata.conversions) AND jsonb_typeof(v) = 'string'
 ORDER BY v::text::timestamptz;
SELECT 'backfill rows/min: ' || round(rows_copied / extract(epoch FROM ((timings->>'backfilled')::timestamptz - (timings->>'backfilling')::timestamptz)) * 60)
  FROM strata.conversions ORDER BY id DESC LIMIT 1;
SELECT 'cutover at: ' || cutover_at FROM strata.conversions ORDER BY id DESC LIMIT 1;
SQL
cut=$(psql -Atq "$URL" -c "SELECT extract(epoch FROM cutover_at) FROM strata.conversions ORDER BY id DESC LIMIT 1")
# pgbench log lines: client tx latency_us script_no epoch_s epoch_us [lag_us]
cat "$WORK"/pgblog.* | awk '{ printf "%.3f %.6f\n", $3 / 1000, $5 + $6 / 1e6 }' >"$WORK/lat.txt"
n=$(wc -l <"$WORK/lat.txt")
sort -n -k1,1 "$WORK/lat.txt" >"$WORK/sorted.txt"
p50=$(awk -v n="$n" 'NR == int(n * 0.5) { print $1 }' "$WORK/sorted.txt")
p99=$(awk -v n="$n" 'NR == int(n * 0.99) { print $1 }' "$WORK/sorted.txt")
max=$(tail -1 "$WORK/sorted.txt" | cut -d' ' -f1)
cmax=$(awk -v cut="$cut" '$2 >= cut - 2 && $2 <= cut + 2 && $1 > m { m = $1 } END { print m + 0 }' "$WORK/lat.txt")
echo "inserts: $n, latency p50 ${p50} ms, p99 ${p99} ms, max ${max} ms; max within 2 s of the cutover ${cmax} ms"
grep -E "failed|aborted|number of transactions" "$WORK/pgbench.out" || true
