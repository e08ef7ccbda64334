#!/usr/bin/env bash
# Soak run: a 10,000-meter real-time fleet (one reading per meter every 30 s) on 4 validators with
# consensus and the audit loop, for 30 minutes. Samples every validator's resident memory, data
# directory size, height and stored readings, and the published → durable time of every burst;
# writes soak.csv, bursts.csv and soak.png (RSS, disk, burst drain over time) to target/soak/.
#   scripts/soak.sh                                   the default 30-minute run
#   scripts/soak.sh --minutes 3 --devices 2000        a short one
# Flags: --devices --minutes --interval-s --sample-s --epoch-s --out (see fleet-load's doc).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p groundtruth-cli --bin groundtruth
cargo build --release -p groundtruth-integration --bin fleet-load
exec "$target/release/fleet-load" soak "$@"
