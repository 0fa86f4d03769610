#!/usr/bin/env bash
# Sealing figures: seal one month of ROWS rows (default 555,000, the issue's
# month), verify every seal (rows/s), proof size, and what the chunk
# summaries cost next to the table. Works on strata's local cluster in a
# database of its own (strata_seal_bench, dropped and re-created), or on
# DATABASE_URL if set (it must be a scratch database: it is written to).
#
#   cargo build --release && bench/seal.sh [ROWS] [EXTRA_MONTH_ROWS]
#
# EXTRA_MONTH_ROWS (default 0) loads that many more rows over 2025-02..2025-12
# so verify runs over more than one month.
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
ROWS=${1:-555000}
EXTRA=${2:-0}
if [ -z "${DATABASE_URL:-}" ]; then
    "$STRATA" local start >/dev/null
    base=$("$STRATA" local url --show-password)
    psql "$base" -qc "DROP DATABASE IF EXISTS strata_seal_bench" -c "CREATE DATABASE strata_seal_bench"
    export DATABASE_URL="${base%/*}/strata_seal_bench"
fi
"$STRATA" migrate >/dev/null
"$STRATA" maintain --now 2025-12-15 >/dev/null
"$STRATA" load --rows "$ROWS" --from 2025-01-01 --to 2025-02-01 >/dev/null
if [ "$EXTRA" -gt 0 ]; then
    "$STRATA" load --rows "$EXTRA" --from 2025-02-01 --to 2026-01-01 --seed 2 >/dev/null
fi
psql "$DATABASE_URL" -qc "VACUUM ANALYZE audit_logs" >/dev/null

start=$(date +%s.%N)
"$STRATA" --json seal run > /tmp/strata-seal-run.json
end=$(date +%s.%N)
jan_ms=$(python3 -c "import json;d=json.load(open('/tmp/strata-seal-run.json'));print([s['millis'] for s in d['sealed'] if s['partition'].endswith('2025_01')][0])")
echo "seal run (all closed months, one process): $(python3 -c "print(round($end-$start,2))") s; January ($ROWS rows): $jan_ms ms"

"$STRATA" --json seal verify > /tmp/strata-seal-verify.json
python3 - <<'PY'
import json
d = json.load(open('/tmp/strata-seal-verify.json'))
print(f"verify: {d['seals_checked']} seals, {d['rows_checked']} rows in {d['millis']} ms = "
      f"{d['rows_checked'] * 1000 // max(d['millis'], 1)} rows/s, intact={d['intact']}")
PY

read -r id at < <(psql "$DATABASE_URL" -Atc "SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM audit_logs_2025_01 ORDER BY created_at, id OFFSET $((ROWS / 2)) LIMIT 1" | tr '|' ' ')
"$STRATA" seal prove --id "$id" --created-at "$at" --out /tmp/strata-seal-proof.json
python3 - <<'PY'
import json, os
p = json.load(open('/tmp/strata-seal-proof.json'))
size = os.path.getsize('/tmp/strata-seal-proof.json')
compact = len(json.dumps({k: p[k] for k in ('leaf_index', 'tree_size', 'path', 'leaf_hash')}, separators=(',', ':')))
print(f"proof: {len(p['path'])} hashes; file {size} bytes with the row and the receipt; "
      f"path alone {len(p['path']) * 32} bytes raw, {compact} bytes as compact JSON")
PY
psql "$DATABASE_URL" -Atc "SELECT 'chunk summaries: ' || pg_size_pretty(pg_total_relation_size('strata.seal_chunks'))
    || ' for ' || (SELECT sum(row_count) FROM strata.seals) || ' rows = '
    || round(pg_total_relation_size('strata.seal_chunks')::numeric / greatest((SELECT sum(row_count) FROM strata.seals), 1), 1)
    || ' bytes/row; table ' || pg_size_pretty(pg_total_relation_size('audit_logs_2025_01'))
    || ' for January = ' || round(pg_total_relation_size('audit_logs_2025_01')::numeric / $ROWS, 0) || ' bytes/row'"
