#!/bin/bash
# Ad-hoc rollup measurement on strata's local cluster (not strata bench).
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RBENCH=${RBENCH:-$ROOT/target/tmp/rbench}
mkdir -p "$RBENCH"
export STRATA_HOME=$RBENCH/home
S=${STRATA:-$ROOT/target/debug/strata}
cd "$RBENCH"
date -u
$S local start >/dev/null
$S maintain --now 2026-06-15 >/dev/null
/usr/bin/time -f "load %e s" $S load --rows 1000000 --from 2025-01-01 --to 2026-06-01 >/dev/null
$S analyze audit_logs >/dev/null
/usr/bin/time -f "first refresh %e s" $S rollup refresh --json > first.json
URL=$($S local url)
echo "URL $URL"
date -u
