#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, lints, the no_std build of the device
# SDK, every unit, property and multi-process test, then the API's schema fuzz against a devnet.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build -p groundtruth-device-sdk --no-default-features
# Builds every target with the features the tests resolve (so nothing compiles twice), including
# the `groundtruth` binary the multi-process tests start.
cargo build --workspace --all-targets
cargo test --workspace
# schemathesis against a devnet's served /openapi.json (about a minute): no 5xx, no answer that
# violates the schema. Uses the binary built above (no second build).
GROUNDTRUTH_BIN="${CARGO_TARGET_DIR:-target}/debug/groundtruth" ./scripts/schema-fuzz.sh
