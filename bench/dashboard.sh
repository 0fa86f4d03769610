#!/usr/bin/env bash
# Server time of every dashboard page with many partitions: starts
# `strata serve` on loopback against the database bench/catalog.sh made
# (run that first, with the same N), logs in with an admin token and fetches
# each page RUNS times after one warm-up. Prints, per page, the median and
# max of the handler's time (the `Server-Timing: app;dur=` header: reads and
# rendering) and of curl's time to first byte over loopback.
#
#   STRATA_HOME=/tmp/catbench bash bench/catalog.sh 1000
#   STRATA_HOME=/tmp/catbench bash bench/dashboard.sh [N] [RUNS] [BIN...]
#
# Several BINs are served side by side (one server each) and asked in turn.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
RUNS=${2:-5}
shift $(( $# < 2 ? $# : 2 ))
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(target/release/strata)
DB=strata_catalog_bench_$N
CONF=${TMPDIR:-/tmp}/$DB.toml
[ -f "$CONF" ] || { echo "no $CONF: run bench/catalog.sh $N first" >&2; exit 2; }
BASE=$(${BINS[0]} local url --show-password)
URL=${BASE%/*}/$DB
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
TOKEN=$(${BINS[0]} --database-url "$URL" --config "$CONF" token create --role admin --name dashboard-bench | grep -o 'strata_[0-9a-f]\{64\}')
PORTS=()
for b in "${!BINS[@]}"; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${BINS[$b]}" --database-url "$URL" --config "$CONF" serve --bind "127.0.0.1:$port" >"$WORK/serve$b.log" 2>&1 &
  PIDS+=($!)
  PORTS+=("$port")
  for _ in $(seq 100); do
    curl -fso /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.1
  done
  curl -fso /dev/null -c "$WORK/cookies$b" -d "token=$TOKEN" "http://127.0.0.1:$port/login" -w '' ||
    { echo "login to ${BINS[$b]} failed"; cat "$WORK/serve$b.log"; exit 1; }
done
PARTS=$(psql -Atq "$URL" -c "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass")
echo "== $PARTS partitions, $RUNS runs per page after a warm-up (load $(cut -d' ' -f1 /proc/loadavg), $(nproc) cores)"
printf '%-48s' "page"
for b in "${BINS[@]}"; do printf '  %-36s' "$b: server / first byte (median, max)"; done
echo
# fetch B PATH: prints "server_ms first_byte_ms"; fails unless 200.
fetch() {
  local out
  out=$(curl -s -o /dev/null -D "$WORK/h" -b "$WORK/cookies$1" -w '%{http_code} %{time_starttransfer}' "http://127.0.0.1:${PORTS[$1]}$2")
  [ "${out%% *}" = 200 ] || { echo "$2 from ${BINS[$1]}: HTTP ${out%% *}" >&2; exit 1; }
  local server
  server=$(tr -d '\r' <"$WORK/h" | sed -n 's/^server-timing: app;dur=//Ip')
  # A binary without the header (before it existed) shows "-" for the server's part.
  echo "${server:--} $(awk -v t="${out#* }" 'BEGIN { printf "%.1f", t * 1000 }')"
}
stat() { sort -n | awk '$1 == "-" { print "-"; exit } { v[NR] = $1 } END { if (NR && v[1] != "") printf "%.0f / %.0f", v[int((NR + 1) / 2)], v[NR] }'; }
for path in / /partitions /indexes /queries /live /jobs "/jobs/confirm?action=vacuum&table=audit_logs" \
    /conversion /events /archives /seals /rollups; do
  for b in "${!BINS[@]}"; do fetch "$b" "$path" >/dev/null; : >"$WORK/r$b"; done
  for _ in $(seq "$RUNS"); do
    for b in "${!BINS[@]}"; do fetch "$b" "$path" >>"$WORK/r$b"; done
  done
  printf '%-48s' "$path"
  for b in "${!BINS[@]}"; do
    printf '  %-36s' "$(cut -d' ' -f1 "$WORK/r$b" | stat) ms / $(cut -d' ' -f2 "$WORK/r$b" | stat) ms"
  done
  echo
done
echo "== load at the end $(cut -d' ' -f1 /proc/loadavg)"
