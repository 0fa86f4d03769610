#!/usr/bin/env bash
# How long the read-only commands take on a table with many partitions:
# N daily partitions of audit_logs with strata's index set (default 1,000),
# ROWS rows spread over them, then each command timed RUNS times (warm: the
# first run of each is discarded), median and max printed.
#
#   cargo build --release && STRATA_HOME=/tmp/catbench bash bench/catalog.sh [N] [ROWS] [RUNS] [BIN]
#
# Runs in a scratch database `strata_catalog_bench` of the local cluster
# (created afresh; never your data). BIN defaults to target/release/strata.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
ROWS=${2:-200000}
RUNS=${3:-5}
BIN=${4:-target/release/strata}
$BIN local start >/dev/null
BASE=$($BIN local url --show-password)
ADMIN=${BASE%/*}/postgres
URL=${BASE%/*}/strata_catalog_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS strata_catalog_bench WITH (FORCE)" -c "CREATE DATABASE strata_catalog_bench"
START=$(date -u -d "-$((N - 8)) days" +%Y-%m-%d)
cat >"$WORK/strata.toml" <<TOML
[[table]]
name = "public.audit_logs"
interval = "1 day"
start = "$START"
premake = 7
TOML
S="$BIN --database-url $URL --config $WORK/strata.toml"
$S migrate >/dev/null
echo "== creating $N daily partitions from $START (+ premake 7)"
t0=$(date +%s.%N)
$S maintain --yes >/dev/null
echo "   $(echo "$(date +%s.%N) - $t0" | bc) s"
$S load --rows "$ROWS" --from "$START" --to "$(date -u +%Y-%m-%d)" >/dev/null
psql -Atq "$URL" -c "VACUUM ANALYZE audit_logs" -c "SELECT 'partitions: ' || count(*) FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass" -c "SELECT 'indexes: ' || count(*) FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid WHERE h.inhparent = 'audit_logs'::regclass"
time_cmd() {
  local name=$1; shift
  local times=()
  for i in $(seq 0 "$RUNS"); do
    local a b
    a=$(date +%s%N)
    "$@" >/dev/null 2>&1 || true
    b=$(date +%s%N)
    [ "$i" -gt 0 ] && times+=($(( (b - a) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n >"$WORK/t"
  echo "$name: median $(awk -v n="${#times[@]}" 'NR == int((n + 1) / 2)' "$WORK/t") ms, max $(tail -1 "$WORK/t") ms"
}
echo "== $RUNS warm runs each (load $(cut -d' ' -f1 /proc/loadavg))"
time_cmd "report" $S report
time_cmd "report --json" $S --json report
time_cmd "stats partitions" $S stats partitions
time_cmd "stats indexes" $S stats indexes
time_cmd "health" $S health
time_cmd "partitions list" $S partitions list
time_cmd "partitions plan" $S partitions plan
