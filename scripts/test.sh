#!/usr/bin/env bash
# Runs every test of the workspace. Installs the real peers the tests drive
# (openssl, sqlite3, curl, nginx, chromium with NSS tools, Debian's python3
# with websockets) with apt-get when they are missing, so no test is ever
# skipped for lack of a tool.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need openssl openssl
need sqlite3 sqlite3
need curl curl
need nginx nginx
need chromium chromium
need pk12util libnss3-tools
need /usr/bin/python3 python3
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import websockets' 2>/dev/null; then
  missing+=(python3-websockets)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} for the tests" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nginx when it is installed; the tests run their own instances.
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import websockets' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-websockets >/dev/null
fi

cargo test --workspace --locked "$@"
