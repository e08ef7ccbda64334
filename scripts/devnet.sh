#!/usr/bin/env bash
# One command for a new user: install what is needed, build, and run the devnet (embedded MQTT
# broker, a validator, a simulated fleet) with live counts. Extra arguments go to
# `groundtruth devnet` (see `--help`). Ctrl-C stops it; running it again resumes it from .devnet/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --bin groundtruth
exec ./target/release/groundtruth devnet "$@"
