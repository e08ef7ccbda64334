#!/usr/bin/env bash
# The benchmark report, one command: builds the release binaries, then runs every benchmark with
# short settings (ingest, published → durable, proving, PoR, consensus, API, reading → epoch
# commitment → L1 anchor) and prints one table, each figure beside the baseline its benchmark
# measured in the same run and their ratio. About 6 minutes on 2 cores after the build.
#   scripts/bench-report.sh           short settings
#   scripts/bench-report.sh --long    longer runs (ledger 20 s, API 10 s, 2,000 meters, 60 s epochs)
#   scripts/bench-report.sh --list    the commands it runs
# Needs what scripts/setup.sh installs (wrk for the API bench, anvil for the L1 anchor).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p groundtruth-cli --bin groundtruth
cargo build --release -p groundtruth-integration \
  --bin ingest-bench --bin ledger-bench --bin audit-bench --bin api-bench --bin bench-report
cargo build --release -p groundtruth-proofs --features concurrent --example bench_table
cargo bench --no-run -p groundtruth-ledger --bench storage
exec "$target/release/bench-report" "$@"
