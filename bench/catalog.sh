#!/usr/bin/env bash
# How long the read-only commands take on a table with many partitions:
# N daily partitions of audit_logs with strata's index set (default 1,000),
# ROWS rows spread over them, then each command timed RUNS times (warm: the
# first run of each is discarded), median and max printed.
#
#   cargo build --release && STRATA_HOME=/tmp/catbench bash bench/catalog.sh [N] [ROWS] [RUNS] [BIN...]
#
# Several BINs (e.g. the binary before a change and after it) are timed side
# by side: each round runs every binary once, so a noisy minute hits all of
# them alike. Runs in a scratch database `strata_catalog_bench_N` of the
# local cluster (never your data), created afresh unless REUSE=1 and it is
# already there. BIN defaults to target/release/strata; the first one
# creates the partitions.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
ROWS=${2:-200000}
RUNS=${3:-5}
shift $(( $# < 3 ? $# : 3 ))
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(target/release/strata)
BIN=${BINS[0]}
DB=strata_catalog_bench_$N
$BIN local start >/dev/null
BASE=$($BIN local url --show-password)
ADMIN=${BASE%/*}/postgres
URL=${BASE%/*}/$DB
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Kept beside the database: a reused one must be read with the spec it was made with.
CONF=${TMPDIR:-/tmp}/$DB.toml
S="$BIN --database-url $URL --config $CONF"
exists=$(psql -Atq "$ADMIN" -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'")
if [ "${REUSE:-0}" = 1 ] && [ "$exists" = 1 ] && [ -f "$CONF" ]; then
  echo "== reusing $DB ($CONF)"
  # The partitions were made on an earlier day: catch up so none is missing.
  $S maintain --yes >/dev/null
else
  START=$(date -u -d "-$((N - 8)) days" +%Y-%m-%d)
  printf '[[table]]\nname = "public.audit_logs"\ninterval = "1 day"\nstart = "%s"\npremake = 7\n' "$START" >"$CONF"
  psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  $S migrate >/dev/null
  echo "== creating $N daily partitions from $START (+ premake 7)"
  t0=$(date +%s.%N)
  $S maintain --yes >/dev/null
  echo "   $(echo "$(date +%s.%N) - $t0" | bc) s"
  $S load --rows "$ROWS" --from "$START" --to "$(date -u +%Y-%m-%d)" >/dev/null
  psql -Atq "$URL" -c "VACUUM ANALYZE audit_logs"
fi
psql -Atq "$URL" -c "SELECT 'partitions: ' || count(*) FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass" \
  -c "SELECT 'indexes: ' || count(*) FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid WHERE h.inhparent = 'audit_logs'::regclass"
# RUNS=0: only make the database (e.g. for bench/dashboard.sh).
[ "$RUNS" -gt 0 ] || exit 0
# time_cmd NAME ARGS...: RUNS + 1 rounds of every binary (round 0 discarded).
time_cmd() {
  local name=$1; shift
  local b
  for b in "${!BINS[@]}"; do : >"$WORK/t$b"; done
  for i in $(seq 0 "$RUNS"); do
    for b in "${!BINS[@]}"; do
      local t0 t1 rc=0
      t0=$(date +%s%N)
      "${BINS[$b]}" --database-url "$URL" --config "$CONF" "$@" >/dev/null 2>"$WORK/err" || rc=$?
      t1=$(date +%s%N)
      # 3: a critical health check, still a complete answer.
      if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
        echo "$name with ${BINS[$b]} failed (exit $rc): $(tail -3 "$WORK/err")" >&2
        exit 1
      fi
      [ "$i" -gt 0 ] && echo $(( (t1 - t0) / 1000000 )) >>"$WORK/t$b"
    done
  done
  local line="$name:"
  for b in "${!BINS[@]}"; do
    sort -n "$WORK/t$b" -o "$WORK/t$b"
    line+="  [${BINS[$b]}] median $(awk -v n="$RUNS" 'NR == int((n + 1) / 2)' "$WORK/t$b") ms, max $(tail -1 "$WORK/t$b") ms"
  done
  echo "$line"
}
echo "== $RUNS warm runs each (load $(cut -d' ' -f1 /proc/loadavg), $(nproc) cores)"
time_cmd "report" report
time_cmd "report --json" --json report
time_cmd "stats partitions" stats partitions
time_cmd "stats indexes" stats indexes
time_cmd "health" health
time_cmd "partitions list" partitions list
time_cmd "partitions plan" partitions plan
echo "== load at the end $(cut -d' ' -f1 /proc/loadavg)"
