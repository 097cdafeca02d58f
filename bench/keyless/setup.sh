#!/usr/bin/env bash
# PKI + configs for bench/keyless/bench.sh. usage: setup.sh WORK BIN
set -euo pipefail
W=$1; G=$2/gatehouse
mkdir -p "$W/pki" "$W/keys" "$W/logs"
D=$W/data
unset GATEHOUSE_CA_PASSPHRASE
"$G" --data-dir "$D" ca init >"$W/logs/pki.log" 2>&1
"$G" --data-dir "$D" ca issue --profile server --cn localhost --san DNS:localhost --san IP:127.0.0.1 --out "$W/ks" >>"$W/logs/pki.log" 2>&1
"$G" --data-dir "$D" ca issue --profile client --cn bench-client --out "$W/pki" >>"$W/logs/pki.log" 2>&1
"$G" --data-dir "$D" ca issue --profile client --cn bench-gw --out "$W/pki" >>"$W/logs/pki.log" 2>&1
"$G" --data-dir "$D" ca root >"$W/pki/root.pem"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/keys/site.key" 2>/dev/null
openssl req -new -key "$W/keys/site.key" -subj /CN=bench.test -addext subjectAltName=DNS:bench.test -out "$W/pki/site.csr" 2>/dev/null
"$G" --data-dir "$D" ca sign "$W/pki/site.csr" --profile server --out "$W/pki/site.crt" >>"$W/logs/pki.log" 2>&1
cat "$W/pki/site.crt" "$D/ca/intermediate.crt" >"$W/pki/site.fullchain.pem"
