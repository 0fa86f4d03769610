#!/usr/bin/env bash
# The archive tier: N rows (default 10,000,000) over 12 months, archived to
# file:// (Parquet, zstd, read back and verified) and dropped
# (retention_mode = "archive"), then one month restored and one user searched
# across the 12 archived months. Prints archive rows/s (incl. read-back
# verify), store bytes vs heap and vs heap + indexes, restore rows/s (with
# indexes) and search time.
#
#   cargo build --release && bash bench/archive.sh [ROWS]
#   BIN=target/debug/strata bash bench/archive.sh 200000     # what was run here
#
# Runs in a scratch database `strata_archive_bench` of the local cluster
# (created afresh; never your data) and a temporary store directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
BIN=${BIN:-target/release/strata}
$BIN local start >/dev/null
BASE=$($BIN local url --show-password)
ADMIN=${BASE%/*}/postgres
URL=${BASE%/*}/strata_archive_bench
STORE=$(mktemp -d)
CFG=$STORE.toml
# KEEP_STORE=1 keeps the store and config (their paths are printed) to
# compare another build's search or restore on the same files.
if [ "${KEEP_STORE:-0}" = 1 ]; then
    echo "store $STORE, config $CFG, database $URL"
else
    trap 'rm -rf "$STORE" "$CFG" "$CFG.plain"' EXIT
fi
# The real clock decides what is due: 12 full months ending 12 months ago.
FROM=$(date -u -d "$(date -u +%Y-%m-01) -24 months" +%Y-%m-01)
TO=$(date -u -d "$(date -u +%Y-%m-01) -12 months" +%Y-%m-01)
cat > "$CFG" <<TOML
[[table]]
name = "audit_logs"
start = "$FROM"
retention = "12 months"
retention_mode = "archive"
archive_after = "12 months"
archive_to = "file://$STORE"
TOML
S() { $BIN --database-url "$URL" --config "$CFG" "$@"; }
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS strata_archive_bench WITH (FORCE)" -c "CREATE DATABASE strata_archive_bench"
S migrate >/dev/null
# The months are made and loaded before retention is configured (a
# retention of 12 months would not create months it must drop at once).
printf '[[table]]\nname = "audit_logs"\nstart = "%s"\n' "$FROM" > "$CFG.plain"
$BIN --database-url "$URL" --config "$CFG.plain" config apply >/dev/null
$BIN --database-url "$URL" --config "$CFG.plain" maintain --now "$TO" --yes >/dev/null
echo "== loading $ROWS rows over $FROM .. $TO"
$BIN --database-url "$URL" --config "$CFG.plain" load --rows "$ROWS" --from "$FROM" --to "$TO" >/dev/null
S config apply >/dev/null
S maintain --yes >/dev/null
S indexes apply >/dev/null
psql -qAt "$URL" -c "ANALYZE audit_logs"
psql -qAt "$URL" -c "SELECT 'heap', sum(pg_relation_size(c.oid)), 'total', sum(pg_total_relation_size(c.oid))
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = 'audit_logs'::regclass AND c.relname < 'audit_logs_${TO:0:4}_${TO:5:2}'"
USER_ID=$(psql -qAt "$URL" -c "SELECT user_id FROM audit_logs GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
# The median user by row count: what a typical legal request asks for.
TYPICAL=$(psql -qAt "$URL" -c "SELECT user_id FROM (SELECT user_id, row_number() OVER (ORDER BY count(*), user_id) AS k, count(*) OVER () AS n FROM audit_logs GROUP BY 1) u WHERE k = n / 2")
echo "== archive run (export + upload + read-back verify + manifest + drop)"
t0=$(date +%s.%N); S --json archive run > "$STORE.run.json"; t1=$(date +%s.%N)
python3 - "$STORE.run.json" "$t0" "$t1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); secs = float(sys.argv[3]) - float(sys.argv[2])
rows = sum(a["rows"] for a in r["archived"]); store = sum(a["store_bytes"] for a in r["archived"])
heap = sum(a["heap_bytes"] for a in r["archived"]); total = sum(a["total_bytes"] for a in r["archived"])
print(f"archived {len(r['archived'])} months, {rows} rows in {secs:.1f} s: {rows/secs:,.0f} rows/s (incl. read-back verify and drops)")
print(f"store {store:,} B; heap {heap:,} B ({heap/store:.1f}x); heap+indexes {total:,} B ({total/store:.1f}x)")
print(f"dropped {len(r['dropped'])} partitions")
PY
echo "== search the heaviest user ($USER_ID) across the archived months"
t0=$(date +%s.%N); S --json archive search --user-id "$USER_ID" --limit 1000000 > "$STORE.search" 2> "$STORE.search.err"; t1=$(date +%s.%N)
echo "$(wc -l < "$STORE.search") rows in $(python3 -c "print(f'{$t1-$t0:.2f}')") s; $(tail -1 "$STORE.search.err")"
echo "== search a typical user ($TYPICAL) across the archived months"
t0=$(date +%s.%N); S --json archive search --user-id "$TYPICAL" --limit 1000000 > "$STORE.search" 2> "$STORE.search.err"; t1=$(date +%s.%N)
echo "$(wc -l < "$STORE.search") rows in $(python3 -c "print(f'{$t1-$t0:.2f}')") s; $(tail -1 "$STORE.search.err")"
MONTH=${FROM:0:7}
MONTH=$(date -u -d "$FROM +2 months" +%Y-%m)
echo "== restore $MONTH"
t0=$(date +%s.%N); S --json archive restore "$MONTH" > "$STORE.restore.json"; t1=$(date +%s.%N)
python3 -c "import json; r=json.load(open('$STORE.restore.json')); s=$t1-$t0; print(f\"restored {r['rows']} rows in {s:.1f} s: {r['rows']/s:,.0f} rows/s (COPY, verify, ATTACH building the indexes)\")"
