#!/usr/bin/env bash
# Installs the Debian packages uhlm needs to build, test and plot. Idempotent: packages already
# present are not touched, so a machine that has them needs no network.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libcjson-dev python3 python3-sentencepiece gnuplot-nox clang libclang-rt-14-dev iproute2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
