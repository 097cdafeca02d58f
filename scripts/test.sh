#!/usr/bin/env bash
# Runs every test of the workspace. Installs the real peers the tests drive
# (openssl, sqlite3, curl, nginx, chromium with NSS tools, Debian's python3
# with websockets and h2; for ACME: lego, pebble, bind9 with its tools and dig;
# for keyless: softhsm2 and opensc's pkcs11-tool; testssl.sh, the scanner auditors run)
# with apt-get when they are missing, and certbot from PyPI into a virtualenv,
# so no test is ever skipped for lack of a tool.
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
need lego lego
need pebble pebble
need /usr/sbin/named bind9
need /usr/sbin/tsig-keygen bind9-utils
need named-checkconf bind9-utils
need dig bind9-dnsutils
need softhsm2-util softhsm2
need pkcs11-tool opensc
need testssl testssl.sh
# The store's tests start a PostgreSQL cluster of their own; Debian keeps its programs off PATH.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
py_module() { # py_module MODULE PACKAGE
  if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c "import $1" 2>/dev/null; then
    missing+=("$2")
  fi
}
py_module websockets python3-websockets
py_module h2 python3-h2
py_module ensurepip python3-venv
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} for the tests" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nginx and named when they are installed; the tests run their own.
  $SUDO service nginx stop >/dev/null 2>&1 || true
  $SUDO service named stop >/dev/null 2>&1 || true
fi
# python3 itself may have come in above, without its modules.
missing=()
py_module websockets python3-websockets
py_module h2 python3-h2
py_module ensurepip python3-venv
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# certbot from PyPI with its RFC 2136 plugin (Debian's certbot 2.1 predates ACME
# profiles and ARI), in a virtualenv at the path the acme_* tests run it from
# (crates/gatehouse/tests/support/acme/certbot.rs); made once, pinned.
CERTBOT_VENV=/opt/gatehouse-test/certbot
CERTBOT_VERSION=5.8.0
if ! "$CERTBOT_VENV/bin/certbot" --version 2>/dev/null | grep -qx "certbot $CERTBOT_VERSION" \
  || ! "$CERTBOT_VENV/bin/python" -c "import certbot_dns_rfc2136" 2>/dev/null; then
  echo "installing certbot $CERTBOT_VERSION into $CERTBOT_VENV for the tests" >&2
  $SUDO /usr/bin/python3 -m venv "$CERTBOT_VENV"
  $SUDO "$CERTBOT_VENV/bin/pip" install -q --disable-pip-version-check \
    "certbot==$CERTBOT_VERSION" "acme==$CERTBOT_VERSION" "certbot-dns-rfc2136==$CERTBOT_VERSION"
fi

# One build, run once: incremental caches would only add gigabytes of disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# The fuzz targets' properties over their seeds, regressions and generated inputs
# (a crate of its own, outside the workspace: see fuzz/README.md).
cargo test --manifest-path fuzz/Cargo.toml --locked --test targets
cargo test --workspace --locked "$@"
