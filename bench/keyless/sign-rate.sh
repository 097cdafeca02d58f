#!/usr/bin/env bash
# Issue 11 "Performance": key server ECDSA P-256 signatures/s over the protocol
# against `openssl speed ecdsap256` sign/s, both on CPU1 (one core each time);
# the load generator on CPU0. usage: bench/keyless/sign-rate.sh [RUNS] [DURATION]
# env BIN (default /tmp/keyless-bench/bin with gatehouse and gatehouse-loadgen).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-3}; DUR=${2:-10}
BIN=${BIN:-/tmp/keyless-bench/bin}; G=$BIN/gatehouse; L=$BIN/gatehouse-loadgen
mkdir -p /tmp/keyless-bench
W=$(mktemp -d /tmp/keyless-bench/sign.XXXX); R=$W/results.jsonl; : >"$R"
say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
say "work dir $W"
"$HERE/setup.sh" "$W" "$BIN"
KS=""
cleanup() { [ -n "$KS" ] && kill "$KS" 2>/dev/null || true; }
trap cleanup EXIT
PORT=$("$L" free-port)
cat >"$W/ks.toml" <<T
listen = "127.0.0.1:$PORT"
certificate = { cert = "ks/localhost.fullchain.pem", key = "ks/localhost.key" }
[[keys]]
dir = "keys"
T
GATEHOUSE_LOG=warn taskset -c 1 "$G" --data-dir "$W/data" keyserver --config "$W/ks.toml" >"$W/logs/keyserver.log" 2>&1 &
KS=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
# The SKI: SHA-1 of the subjectPublicKey (the 65-byte uncompressed P-256 point).
SKI=$(openssl x509 -in "$W/pki/site.crt" -noout -pubkey | openssl pkey -pubin -outform DER | tail -c 65 | sha1sum | cut -c1-40)
for run in $(seq "$RUNS"); do
    for shape in "1 64" "4 64" "16 16"; do
        set -- $shape
        taskset -c 0 "$L" keyless --server 127.0.0.1:$PORT --ca "$W/pki/root.pem" \
            --cert "$W/pki/bench-client.fullchain.pem" --key "$W/pki/bench-client.key" --ski "$SKI" \
            --connections "$1" --depth "$2" --duration "$DUR" --pid "$KS" --json |
            sed "s/^{/{\"run\":$run,\"what\":\"keyserver\",/" | tee -a "$R" >&2
    done
    taskset -c 1 openssl speed -seconds "$DUR" ecdsap256 2>/dev/null |
        awk -v run="$run" '/256 bits ecdsa \(nistp256\)/ {printf "{\"run\":%s,\"what\":\"openssl\",\"sign_per_sec\":%s,\"verify_per_sec\":%s}\n", run, $(NF-1), $NF}' |
        tee -a "$R" >&2
done
say "results in $R"
