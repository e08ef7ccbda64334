#!/usr/bin/env bash
# Schema-driven fuzz run of the node's HTTP API: schemathesis (from PyPI, into the git-ignored
# .tools/schemathesis venv, installed once) generates requests from the served /openapi.json and
# checks every answer (`--checks all`: no 5xx, status codes, content types, headers and bodies
# as documented, invalid input refused). Fails on any finding.
#
# The node: `api-bench --serve-only` (integration/src/bin/api_bench.rs) starts a
# `groundtruth node` with an embedded broker and fills its store with a day of readings from a
# simulated fleet, then serves until this script closes its standard input.
#
#   scripts/schema-fuzz.sh [max examples per operation, default 50]
#
# Honours CARGO_TARGET_DIR. The node keeps its fixed per-IP rate limit (50/s, burst 100), so
# requests are paced at 40/s.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
EXAMPLES="${1:-50}"
VENV="$ROOT/.tools/schemathesis"
SCHEMATHESIS_VERSION="4.32.5"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "schema-fuzz: installing schemathesis $SCHEMATHESIS_VERSION into .tools/schemathesis"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -q -p groundtruth-cli --bin groundtruth
cargo build -q -p groundtruth-integration --bin api-bench
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

WORK="$(mktemp -d)"
LOG="$WORK/serve.log"
mkfifo "$WORK/stdin"
GROUNDTRUTH_BIN="$BIN/groundtruth" "$BIN/api-bench" --serve-only <"$WORK/stdin" >"$LOG" 2>&1 &
SERVER=$!
# Holding the pipe open keeps the node up; closing it stops api-bench, which tears the node down.
exec 3>"$WORK/stdin"
stop() {
  exec 3>&- || true
  wait "$SERVER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop EXIT

URL=""
for _ in $(seq 1 600); do
  URL="$(sed -n 's/^serving: \(http:[^ ]*\).*/\1/p' "$LOG")"
  [ -n "$URL" ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$LOG"; echo "schema-fuzz: api-bench exited"; exit 1; }
  sleep 0.5
done
[ -n "$URL" ] || { cat "$LOG"; echo "schema-fuzz: no node after 5 minutes"; exit 1; }
head -n 2 "$LOG"

# /v1/events is an endless event stream: a generated request would never complete.
# positive_data_acceptance is off: it expects any schema-valid request to be accepted, but a
# cursor is opaque (any string is schema-valid, only one the server issued for the same query is
# accepted) and POST /v1/proofs/verify takes any octets (only a real proof envelope verifies);
# both refusals are documented 400/422 answers, which the other checks still hold to the schema.
"$VENV/bin/schemathesis" run "$URL/openapi.json" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$EXAMPLES" \
  --seed 1 \
  --rate-limit 40/s \
  --request-timeout 10 \
  --exclude-path /v1/events
