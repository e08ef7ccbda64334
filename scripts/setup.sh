#!/usr/bin/env bash
# Installs what groundtruth needs beyond the Rust toolchain: Mosquitto (the external broker the
# tests run against). Safe to run again; does nothing when everything is there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null && SUDO="sudo"
fi

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} from Debian packages"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package starts a system broker on 1883; the devnet wants that port for its own.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
  $SUDO service mosquitto stop >/dev/null 2>&1 || true
  pkill -x mosquitto >/dev/null 2>&1 || true
fi
echo "setup: ok (mosquitto: $(command -v mosquitto || echo /usr/sbin/mosquitto))"
