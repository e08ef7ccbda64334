#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, lints, the no_std build of the device
# SDK, then every unit, property and multi-process test.
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
