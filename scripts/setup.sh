#!/usr/bin/env bash
# Installs what groundtruth needs beyond the Rust toolchain: Mosquitto (the external broker the
# tests run against), wrk (the API benchmark's load generator), Chromium (the browser test's
# headless browser), and from the npm registry, into the git-ignored .tools/, the L1 tools at
# pinned versions: anvil (a local Ethereum node) and solc-js (the Solidity compiler that builds
# oracle/contracts); playwright-core (npm ci in integration/browser, driving the system's
# Chromium, no browser download). Builds the in-browser verifier (verifier-wasm for
# wasm32-unknown-unknown, release, size-optimised) into the git-ignored
# api/explorer/pkg/verifier.wasm, which the node serves at /explorer/verifier.wasm. Safe to run
# again; does nothing when everything is there.
# The binaries: .tools/bin/anvil and .tools/bin/solcjs (also written to .tools/env).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null && SUDO="sudo"
fi

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# wrk: the HTTP load generator of the API benchmark (integration/src/bin/api_bench.rs).
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# chromium: the headless browser of the explorer's browser test (integration/tests/it/browser.rs).
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
# iproute2: network namespaces of the partition test (integration/tests/it/partition.rs).
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} from Debian packages"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package starts a system broker on 1883; the devnet wants that port for its own.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
  $SUDO service mosquitto stop >/dev/null 2>&1 || true
  pkill -x mosquitto >/dev/null 2>&1 || true
fi

# L1 tools, pinned. npm 11 skips install scripts; the anvil binary ships in the platform package.
ANVIL_VERSION=1.7.1
SOLC_VERSION=0.8.37
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
installed_version() { node -p "require('$TOOLS/node_modules/$1/package.json').version" 2>/dev/null || true; }
if [ "$(installed_version @foundry-rs/anvil)" != "$ANVIL_VERSION" ] || [ "$(installed_version solc)" != "$SOLC_VERSION" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing nodejs and npm from Debian packages"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  echo "setup: installing anvil $ANVIL_VERSION and solc-js $SOLC_VERSION into .tools/"
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error --save-exact \
    "@foundry-rs/anvil@$ANVIL_VERSION" "solc@$SOLC_VERSION" >/dev/null
fi
case "$(uname -m)" in
  x86_64) anvil_pkg=anvil-linux-amd64 ;;
  aarch64 | arm64) anvil_pkg=anvil-linux-arm64 ;;
  *) echo "setup: no anvil package for $(uname -m)" >&2; exit 1 ;;
esac
mkdir -p "$TOOLS/bin"
ln -sfn "$TOOLS/node_modules/@foundry-rs/$anvil_pkg/bin/anvil" "$TOOLS/bin/anvil"
ln -sfn "$TOOLS/node_modules/.bin/solcjs" "$TOOLS/bin/solcjs"
"$TOOLS/bin/anvil" --version >/dev/null
printf 'export GROUNDTRUTH_ANVIL=%s\nexport GROUNDTRUTH_SOLCJS_DIR=%s\n' \
  "$TOOLS/bin/anvil" "$TOOLS/node_modules/solc" >"$TOOLS/env"

# The in-browser verifier: verifier-wasm built for wasm32-unknown-unknown, size-optimised (the
# profile is overridden here so the workspace's release profile stays as it is), copied where
# the node serves it from. cargo does nothing when it is up to date.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the Rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown >/dev/null
fi
WASM_BUILT="${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-unknown-unknown/release/groundtruth_verifier_wasm.wasm"
WASM_OUT="$ROOT/api/explorer/pkg/verifier.wasm"
(
  cd "$ROOT"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true CARGO_PROFILE_RELEASE_PANIC=abort \
    cargo build --quiet --release --target wasm32-unknown-unknown -p groundtruth-verifier-wasm
)
if ! cmp -s "$WASM_BUILT" "$WASM_OUT"; then
  mkdir -p "$(dirname "$WASM_OUT")"
  cp "$WASM_BUILT" "$WASM_OUT.tmp" && mv "$WASM_OUT.tmp" "$WASM_OUT"
  echo "setup: built the in-browser verifier api/explorer/pkg/verifier.wasm ($(wc -c <"$WASM_OUT") bytes)"
fi

# The browser test's driver: playwright-core at the locked version (it never downloads a browser;
# the test points it at the system's Chromium).
BROWSER_DIR="$ROOT/integration/browser"
locked_pw() { node -p "require('$BROWSER_DIR/package-lock.json').packages['node_modules/playwright-core'].version" 2>/dev/null || true; }
installed_pw() { node -p "require('$BROWSER_DIR/node_modules/playwright-core/package.json').version" 2>/dev/null || true; }
if [ "$(installed_pw)" != "$(locked_pw)" ]; then
  echo "setup: installing playwright-core $(locked_pw) into integration/browser/node_modules"
  (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

echo "setup: ok (mosquitto: $(command -v mosquitto || echo /usr/sbin/mosquitto); anvil: .tools/bin/anvil; solcjs: .tools/bin/solcjs; chromium: $(command -v chromium || echo /usr/bin/chromium); verifier: api/explorer/pkg/verifier.wasm)"
