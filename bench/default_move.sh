#!/usr/bin/env bash
# Moving rows out of the default partition under writes: 200,000 rows of 12
# monthly periods (2026-01 .. 2026-12, no partitions for them yet) sit in the
# default partition while pgbench inserts at a fixed rate (default 1,500/s),
# every insert into those same months (so into the default partition until
# its month is attached). Then `strata maintain` runs once (release binary).
# Prints the writers' stall (per-transaction latency minus pgbench's
# schedule lag, `-l` log columns 3 and 7) during maintain: max, p99.9, p99;
# the failed inserts; and row counts before/after (each row exactly once).
# First the same writers run alone for BASELINE_SECONDS (15): their stall
# then is the machine's (disk flushes, scheduler), to read the rest against.
# Also printed: what the writers waited on during maintain (pg_stat_activity
# sampled every ~5 ms: Lock waits are strata's, IO/LWLock:WAL* the disk's)
# and how many checkpoints ran meanwhile.
#
#   cargo build --release && STRATA_HOME=/tmp/movebench bash bench/default_move.sh [ROWS] [RATE] [BIN]
#
# Runs in a scratch database `strata_move_bench` of the local cluster
# (created afresh; never your data). BIN defaults to target/release/strata.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-200000}
RATE=${2:-1500}
BIN=${3:-target/release/strata}
PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -1)")
$BIN local start >/dev/null
BASE=$($BIN local url --show-password)
ADMIN=${BASE%/*}/postgres
URL=${BASE%/*}/strata_move_bench
WORK=$(mktemp -d)
PGBENCH=
trap '[ -n "$PGBENCH" ] && kill $PGBENCH 2>/dev/null; rm -rf "$WORK"' EXIT

psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS strata_move_bench WITH (FORCE)" -c "CREATE DATABASE strata_move_bench"
cat >"$WORK/strata.toml" <<'TOML'
[[table]]
name = "public.audit_logs"
start = "2026-01-01"
TOML
$BIN --database-url "$URL" --config "$WORK/strata.toml" migrate >/dev/null
echo "== loading $ROWS rows of 2026-01 .. 2026-12 into the default partition"
psql -q "$URL" <<SQL
SELECT setseed(0.42);
INSERT INTO public.audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, severity, created_at)
SELECT (random() * 50000)::int8,
       (ARRAY['user.login','document.read','document.update','admin.settings','api.call'])[1 + floor(random() * 5)::int],
       'document', (random() * 1000000)::int8,
       jsonb_build_object('method', (ARRAY['GET','POST','PUT'])[1 + floor(random() * 3)::int],
                          'request_id', md5(g::text), 'duration_ms', (random() * 2000)::int),
       ('10.' || (g % 250) || '.' || (g % 200) || '.1')::inet, 'Mozilla/5.0', 'success', 'info',
       timestamptz '2026-01-01 00:00:00+00' + ((g - 1)::float8 / $ROWS) * interval '365 days'
  FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE public.audit_logs;
-- The load's dirty pages are flushed now, not by a checkpoint in the middle
-- of the measured window (a checkpoint strata's own copy causes still counts).
CHECKPOINT;
SQL
psql -Atq "$URL" -c "SELECT 'default partition: ' || count(*) || ' rows over ' || count(DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')) || ' months, ' || pg_size_pretty(pg_total_relation_size('audit_logs_default')) FROM audit_logs_default"

# Every insert lands in one of the 12 months being moved (up to real now).
cat >"$WORK/insert.sql" <<'SQL'
\set s random(0, 28857599)
INSERT INTO audit_logs (user_id, action, resource_type, details, status, severity, created_at)
VALUES ((random() * 50000)::int8, 'bench.insert', 'document', '{"bench": true}', 'success', 'info',
        timestamptz '2026-01-01 00:00:00+00' + :s * interval '1 second');
SQL
echo "== pgbench: $RATE inserts/s into those months"
(cd "$WORK" && exec "$PGBIN/pgbench" -n -c 8 -j 2 -R "$RATE" -T 100000 -l --log-prefix=pgblog -f insert.sql "$URL" >"$WORK/pgbench.out" 2>&1) &
PGBENCH=$!
sleep 5
# The same writers with nothing else running: what this machine's disk and
# scheduler do to them anyway, to read the stall during maintain against.
b0=$(date +%s.%N)
sleep "${BASELINE_SECONDS:-15}"
b1=$(date +%s.%N)

# What the writers wait on, sampled every ~5 ms from pg_stat_activity (one
# transaction per sample, so each reads fresh activity), to tell a lock wait
# (strata's doing) from a WAL flush or a checkpoint (the disk's).
psql -q "$URL" -c "CREATE UNLOGGED TABLE bench_waits (at timestamptz, wait text)"
PGAPPNAME=strata_bench_sampler psql -q "$URL" >/dev/null 2>&1 <<'SQL' &
DO $$
BEGIN
  LOOP
    INSERT INTO bench_waits
      SELECT clock_timestamp(), wait_event_type || ':' || wait_event
        FROM pg_catalog.pg_stat_activity
       WHERE application_name = 'pgbench' AND state = 'active' AND wait_event IS NOT NULL;
    COMMIT;
    PERFORM pg_sleep(0.005);
  END LOOP;
END $$;
SQL
checkpoints() { psql -Atq "$URL" -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"; }

echo "== strata maintain"
c0=$(checkpoints)
t0=$(date +%s.%N)
RUST_LOG=${RUST_LOG:-warn} $BIN --database-url "$URL" --config "$WORK/strata.toml" maintain
t1=$(date +%s.%N)
c1=$(checkpoints)
sleep 3
psql -q "$URL" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'strata_bench_sampler'" >/dev/null
kill -INT $PGBENCH 2>/dev/null || true
wait $PGBENCH 2>/dev/null || true
PGBENCH=

echo "== results"
echo "maintain: $(echo "$t1 - $t0" | bc) s"
# pgbench log lines: client tx latency_us script_no epoch_s epoch_us lag_us
# (epoch = when the transaction ended). A stall is latency minus lag.
cat "$WORK"/pgblog.* | awk -v a="$t0" -v b="$t1" \
    '{ end = $5 + $6 / 1e6; if (end >= a && end <= b + 1) printf "%.3f\n", ($3 - $7) / 1000 }' \
    | sort -n >"$WORK/during.txt"
n=$(wc -l <"$WORK/during.txt")
cat "$WORK"/pgblog.* | awk -v a="$b0" -v b="$b1" \
    '{ end = $5 + $6 / 1e6; if (end >= a && end <= b) printf "%.3f\n", ($3 - $7) / 1000 }' \
    | sort -n >"$WORK/baseline.txt"
pct() { awk -v n="$n" -v p="$1" 'NR == (int(n * p) > 0 ? int(n * p) : 1) { print $1 }' "${2:-$WORK/during.txt}"; }
bn=$(wc -l <"$WORK/baseline.txt")
echo "baseline ($(echo "$b1 - $b0" | bc | cut -c1-5) s before maintain, $bn inserts): stall p99 $(n=$bn pct 0.99 "$WORK/baseline.txt") ms, p99.9 $(n=$bn pct 0.999 "$WORK/baseline.txt") ms, max $(tail -1 "$WORK/baseline.txt") ms"
echo "inserts during maintain: $n; stall p50 $(pct 0.5) ms, p99 $(pct 0.99) ms, p99.9 $(pct 0.999) ms, max $(tail -1 "$WORK/during.txt") ms"
# The five longest stalls and when they ended (UTC), to match against RUST_LOG=strata=info output.
cat "$WORK"/pgblog.* | awk -v a="$t0" -v b="$t1" \
    '{ end = $5 + $6 / 1e6; if (end >= a && end <= b + 1) printf "%.3f %d.%06d\n", ($3 - $7) / 1000, $5, $6 }' \
    | sort -rn | head -5 | while read -r ms at; do echo "  stall ${ms} ms ending $(date -u -d "@$at" +%H:%M:%S.%3N)"; done || true
# pgbench aborts a client on its first error, so failed inserts show as
# errors in its output and as clients missing from the last second's log.
echo "failed inserts (pgbench errors): $(grep -c -E "ERROR|aborted" "$WORK/pgbench.out" || true)"
echo "clients still inserting at the end: $(cat "$WORK"/pgblog.* | awk -v b="$t1" '$5 + $6 / 1e6 > b + 2 { print $1 }' | sort -u | wc -l) of 8"
grep -E "ERROR|aborted" "$WORK/pgbench.out" | head -3 || true
echo "checkpoints during maintain: $((c1 - c0))"
psql -Atq "$URL" -v a="$t0" -v b="$t1" <<'SQL'
SELECT 'writer waits during maintain (samples ~5 ms apart): '
       || coalesce(string_agg(wait || ' ' || n, ', ' ORDER BY n DESC), 'none')
  FROM (SELECT wait, count(*) n FROM bench_waits
         WHERE at BETWEEN to_timestamp(:a) AND to_timestamp(:b) GROUP BY wait) s;
SELECT 'writers waiting on a lock: ' || count(*) || ' sample(s)'
       || coalesce(', from ' || to_char(min(at) AT TIME ZONE 'UTC', 'HH24:MI:SS.MS')
                   || ' to ' || to_char(max(at) AT TIME ZONE 'UTC', 'HH24:MI:SS.MS'), '')
  FROM bench_waits WHERE wait LIKE 'Lock:%' AND at BETWEEN to_timestamp(:a) AND to_timestamp(:b);
SQL
psql -Atq "$URL" <<'SQL'
SELECT 'rows: ' || count(*) || ', distinct ids: ' || count(DISTINCT id) || ', inserted by pgbench: ' || count(*) FILTER (WHERE action = 'bench.insert') || ', in default: ' || (SELECT count(*) FROM audit_logs_default) FROM audit_logs;
SELECT 'partitions: ' || count(*) FROM pg_inherits WHERE inhparent = 'public.audit_logs'::regclass;
SQL
