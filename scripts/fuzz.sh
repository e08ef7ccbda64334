#!/usr/bin/env bash
# Runs every fuzz target of groundtruth-fuzz (fuzz/) under AFL++ for a short time each, on the
# stable toolchain, and prints a summary table (executions, executions/s, paths, crashes).
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]      (default 30 s, every target)
#
# Installs what it needs, idempotently: cargo-afl (pinned) into the git-ignored .tools/, and the
# AFL++ runtime it builds from the source it ships (`cargo afl config --build`, once per rustc
# version, into ~/.local/share/afl.rs). Builds the `afl-target` harness (feature `afl`) into
# $CARGO_TARGET_DIR/afl (default target/afl), so the ordinary build is not disturbed.
# Each target starts from fuzz/corpus/<target>/ and writes AFL's state to
# target/fuzz-out/<target>/ (GROUNDTRUTH_FUZZ_OUT overrides). Crashing inputs are listed with
# the commands to replay and minimize them; the script exits 1 when any target crashed.
set -euo pipefail

SECS="${1:-30}"
shift || true
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
AFL_VERSION=0.18.2
ALL_TARGETS=(reading_frame ledger_tx consensus_msg proof_envelope queue_log p2p_message api_body)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
export PATH="$TOOLS/bin:$PATH"

if ! cargo afl --version 2>/dev/null | grep -q "$AFL_VERSION"; then
  echo "fuzz: installing cargo-afl $AFL_VERSION into .tools/ (builds AFL++ too; a few minutes)"
  cargo install --locked --root "$TOOLS" cargo-afl --version "$AFL_VERSION"
fi
if ! out=$(cargo afl config --build 2>&1); then
  grep -q "already built" <<<"$out" || { echo "$out" >&2; exit 1; }
fi

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/afl"
echo "fuzz: building the AFL harness into $TARGET_DIR"
(cd "$ROOT" && AFL_OPT_LEVEL="${AFL_OPT_LEVEL:-1}" CARGO_TARGET_DIR="$TARGET_DIR" cargo afl build --quiet -p groundtruth-fuzz \
  --features afl --bin afl-target)
BIN="$TARGET_DIR/debug/afl-target"

OUT="${GROUNDTRUTH_FUZZ_OUT:-$ROOT/target/fuzz-out}"
mkdir -p "$OUT"
# No core-dump handler, CPU frequency or core binding tweaks: this runs unprivileged and on
# shared machines too.
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1
export AFL_NO_UI=1 AFL_QUIET=1 AFL_NO_STARTUP_CALIBRATION=1

stat() { awk -F' *: *' -v k="$2" '$1 == k { print $2 }' "$1" 2>/dev/null; }
rows=()
crashed=0
for t in "${TARGETS[@]}"; do
  [ -d "$ROOT/fuzz/corpus/$t" ] || { echo "fuzz: no corpus for $t (fuzz/corpus/$t)" >&2; exit 2; }
  rm -rf "${OUT:?}/$t"
  echo "fuzz: $t for ${SECS}s"
  # -V stops after the time; -m none: the harness maps large libraries (no ASan here).
  afl-fuzz -V "$SECS" -m none -t 2000 -i "$ROOT/fuzz/corpus/$t" -o "$OUT/$t" -- "$BIN" "$t" \
    >"$OUT/$t.log" 2>&1 || { echo "fuzz: afl-fuzz failed for $t (see $OUT/$t.log)" >&2; tail -20 "$OUT/$t.log" >&2; exit 1; }
  s="$OUT/$t/default/fuzzer_stats"
  execs=$(stat "$s" execs_done)
  runtime=$(stat "$s" run_time)
  crashes=$(stat "$s" saved_crashes)
  hangs=$(stat "$s" saved_hangs)
  paths=$(stat "$s" corpus_count)
  rate=$(awk -v e="${execs:-0}" -v r="${runtime:-0}" 'BEGIN { if (r > 0) printf "%.0f", e / r; else print 0 }')
  rows+=("$(printf '%-16s %10s %8s %8s %6s %8s %6s' "$t" "${execs:-?}" "$rate" "${runtime:-?}" "${paths:-?}" "${crashes:-?}" "${hangs:-?}")")
  if [ "${crashes:-0}" != 0 ]; then crashed=1; fi
done

echo
printf '%-16s %10s %8s %8s %6s %8s %6s\n' target execs execs/s seconds paths crashes hangs
printf '%s\n' "${rows[@]}"
if [ "$crashed" = 1 ]; then
  echo
  echo "fuzz: crashing inputs:"
  ls -1 "$OUT"/*/default/crashes/id* 2>/dev/null || true
  echo "replay one:   $BIN <target> < FILE"
  echo "minimize it:  cargo afl tmin -i FILE -o fuzz/corpus/<target>/crash-NAME -- $BIN <target>"
  echo "(a minimized crasher kept in fuzz/corpus/<target>/ is replayed by cargo test -p groundtruth-fuzz)"
  exit 1
fi
