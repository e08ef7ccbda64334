#!/usr/bin/env bash
# Schema-driven fuzz run of the node's HTTP API: schemathesis (from PyPI, pinned, into the
# git-ignored .tools/schemathesis venv, installed once) generates requests from the served
# /openapi.json and checks every answer (`--checks all`: no 5xx, status codes, content types,
# headers and bodies as documented, invalid input refused). Fails on any finding.
#
# The API under test is a devnet's first validator: `groundtruth devnet` (4 validators with
# consensus, embedded broker, a small real-time fleet, anvil with the oracle contract) on free
# ports in a temporary directory, stopped with SIGINT at the end. The fuzz starts once the node
# is ready and a device has production; the validators' per-IP rate limit is turned off for it
# (GROUNDTRUTH__API__RATE_LIMIT_PER_S=0, the `[api]` section) so that no answer is a 429.
#
#   scripts/schema-fuzz.sh [max examples per operation, default 50]
#
# Env: GROUNDTRUTH_BIN (default: the debug build under CARGO_TARGET_DIR or target/, built if
# missing), SCHEMA_FUZZ_TIMEOUT (seconds for the schemathesis run, default 150).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
EXAMPLES="${1:-50}"
FUZZ_TIMEOUT="${SCHEMA_FUZZ_TIMEOUT:-150}"
VENV="$ROOT/.tools/schemathesis"
SCHEMATHESIS_VERSION="4.32.5"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "schema-fuzz: installing schemathesis $SCHEMATHESIS_VERSION into .tools/schemathesis"
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    # Debian splits venv out of python3.
    SUDO=""; [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

BIN="${GROUNDTRUTH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/groundtruth}"
if [ -z "${GROUNDTRUTH_BIN:-}" ]; then
  cargo build -q -p groundtruth-cli --bin groundtruth
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# Four consecutive API ports (v0..v3) and a broker port, all free now.
while :; do
  API_PORT="$(free_port)"
  ok=1
  for i in 1 2 3; do
    python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$API_PORT+$i))" 2>/dev/null || ok=0
  done
  [ "$ok" = 1 ] && [ "$API_PORT" -lt 65000 ] && break
done
BROKER_PORT="$(free_port)"

WORK="$(mktemp -d)"
LOG="$WORK/devnet.log"
GROUNDTRUTH__API__RATE_LIMIT_PER_S=0 setsid "$BIN" devnet \
  --dir "$WORK/devnet" --energy 4 --gpu 1 --storage 1 --unknown 1 \
  --metrics-listen "127.0.0.1:$API_PORT" --broker-listen "127.0.0.1:$BROKER_PORT" \
  >"$LOG" 2>&1 &
DEVNET=$!
stop() {
  # SIGINT: the devnet stops its validators, fleet and anvil itself.
  kill -INT "$DEVNET" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$DEVNET" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$DEVNET" 2>/dev/null || true
  wait "$DEVNET" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop EXIT

URL="http://127.0.0.1:$API_PORT"
# 0 when GET $1 answers 2xx with a body containing $2.
answers() {
  python3 - "$1" "$2" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.exit(0 if sys.argv[2].encode() in r.read() else 1)
PY
}
# Ready (a block decided since start: /readyz answers 503 before, which is documented but would
# count as a server error) and with production to query.
for i in $(seq 1 240); do
  if answers "$URL/readyz" '"ok"' && answers "$URL/v1/devices?limit=1" '"id"'; then
    break
  fi
  kill -0 "$DEVNET" 2>/dev/null || { cat "$LOG"; echo "schema-fuzz: the devnet exited"; exit 1; }
  [ "$i" = 240 ] && { tail -n 30 "$LOG"; echo "schema-fuzz: not ready with production after 2 minutes"; exit 1; }
  sleep 0.5
done
echo "schema-fuzz: devnet ready at $URL with production; $EXAMPLES examples per operation"

# /v1/events is an endless event stream: a generated request would never complete.
# positive_data_acceptance is off: it expects any schema-valid request to be accepted, but a
# cursor is opaque (any string is schema-valid, only one the server issued for the same query is
# accepted) and POST /v1/proofs/verify takes any octets (only a real proof envelope verifies);
# both refusals are documented 400/422 answers, which the other checks still hold to the schema.
timeout "$FUZZ_TIMEOUT" "$VENV/bin/schemathesis" run "$URL/openapi.json" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$EXAMPLES" \
  --seed 1 \
  --request-timeout 10 \
  --exclude-path /v1/events \
  --no-color
