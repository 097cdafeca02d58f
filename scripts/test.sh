#!/usr/bin/env bash
# Runs every test of the workspace. Installs the real peers the tests drive
# (openssl, sqlite3) with apt-get when they are missing, so no test is ever
# skipped for lack of a tool.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in openssl sqlite3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} for the tests" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo test --workspace --locked "$@"
