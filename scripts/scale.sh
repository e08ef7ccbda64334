#!/usr/bin/env bash
# Scale run: doubles a real-time fleet of meters (from 1,000, one reading each every 10 s) on
# 4 validators, each size on a fresh network for 6 intervals, until a validator falls behind;
# prints a row per size and where and why it broke (a burst of readings not stored within one
# interval, a store that never caught up, a lagging height, a dead validator).
#   scripts/scale.sh                                  from 1,000 meters, up to 6 doublings
#   scripts/scale.sh --devices 2000 --doublings 2     a short one
# Flags: --devices --doublings --interval-s --intervals --epoch-s (see fleet-load's doc).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p groundtruth-cli --bin groundtruth
cargo build --release -p groundtruth-integration --bin fleet-load
exec "$target/release/fleet-load" scale "$@"
