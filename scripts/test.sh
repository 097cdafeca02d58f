#!/usr/bin/env bash
# Runs every test of the workspace. Installs the real peers the tests drive
# (openssl, sqlite3, curl, nginx, chromium with NSS tools, Debian's python3
# with websockets and h2) with apt-get when they are missing, so no test is ever
# skipped for lack of a tool.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
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
py_module() { # py_module MODULE PACKAGE
  if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c "import $1" 2>/dev/null; then
    missing+=("$2")
  fi
}
py_module websockets python3-websockets
py_module h2 python3-h2
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} for the tests" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nginx when it is installed; the tests run their own instances.
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi
# python3 itself may have come in above, without its modules.
missing=()
py_module websockets python3-websockets
py_module h2 python3-h2
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The fuzz targets' properties over their seeds, regressions and generated inputs
# (a crate of its own, outside the workspace: see fuzz/README.md).
cargo test --manifest-path fuzz/Cargo.toml --locked --test targets
cargo test --workspace --locked "$@"
