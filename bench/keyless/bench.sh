#!/usr/bin/env bash
# Issue 11 "Performance": keyless signing vs a local key (see README.md).
# Gateway on CPU1 (1 worker), loadgen + backend + key server (+ relay) on CPU0.
# usage: bench/keyless/bench.sh [RUNS] [DURATION]   env BIN (default /tmp/keyless-bench/bin)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-3}; DUR=${2:-10}
BIN=${BIN:-/tmp/keyless-bench/bin}; G=$BIN/gatehouse; L=$BIN/gatehouse-loadgen
W=$(mktemp -d /tmp/keyless-bench/run.XXXX); R=$W/results.jsonl; : >"$R"
say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
say "work dir $W"
"$HERE/setup.sh" "$W" "$BIN"
D=$W/data; P=$W/pki
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
BPORT=$("$L" free-port); KSPORT=$("$L" free-port); RLPORT=$("$L" free-port)
taskset -c 0 "$L" backend --listen 127.0.0.1:$BPORT >"$W/logs/backend.log" 2>&1 & PIDS+=($!)
cat >"$W/ks.toml" <<T
listen = "127.0.0.1:$KSPORT"
certificate = { cert = "ks/localhost.fullchain.pem", key = "ks/localhost.key" }
[[keys]]
dir = "keys"
T
taskset -c 0 "$G" --data-dir "$D" keyserver --config "$W/ks.toml" >"$W/logs/keyserver.log" 2>&1 & KS=$!; PIDS+=($KS)
taskset -c 0 python3 "$HERE/relay.py" $RLPORT $KSPORT 5 >"$W/logs/relay.log" 2>&1 & RELAY=$!; PIDS+=($RELAY)
sleep 1
mkcfg() { # name cert-table keyless-server
    cat >"$W/$1.toml" <<T
data_dir = "$D"
[listen]
https = "127.0.0.1:@PORT@"
[tls]
min_version = "1.3"
[runtime]
worker_threads = 1
[limits]
max_connections_per_ip = 0
[log]
access = false
[identity]
format = "none"
[[upstream]]
name = "backend"
servers = ["http://127.0.0.1:$BPORT"]
[[site]]
hosts = ["bench.test"]
certificate = { $2 }
upstream = "backend"
[[site]]
hosts = ["localhost"]
certificate = { cert = "$P/site.fullchain.pem", key = "$W/keys/site.key" }
upstream = "backend"
T
    [ -n "${3:-}" ] && printf '[[keyless]]\nname = "ks"\nservers = ["127.0.0.1:%s"]\nserver_name = "localhost"\n' "$3" >>"$W/$1.toml"
    return 0
}
mkcfg local "cert = \"$P/site.fullchain.pem\", key = \"$W/keys/site.key\""
mkcfg keyless "cert = \"$P/site.fullchain.pem\", keyless = \"ks\"" $KSPORT
mkcfg keyless-relay "cert = \"$P/site.fullchain.pem\", keyless = \"ks\"" $RLPORT
# The keep-alive load uses SNI localhost and verifies against the CA, and the site key's
# certificate is for bench.test: the localhost site gets an internal-CA certificate of its own.
"$G" --data-dir "$D" ca issue --profile server --cn localhost --san DNS:localhost --san IP:127.0.0.1 --out "$W/lh" >>"$W/logs/pki.log" 2>&1
for c in local keyless keyless-relay; do
    python3 - "$W/$c.toml" "$W" <<'PY'
import sys; f, w = sys.argv[1], sys.argv[2]; t = open(f).read()
i = t.index('hosts = ["localhost"]'); j = t.index('\n', t.index('certificate', i))
t = t[:i] + t[i:j].replace(t[t.index('certificate', i):j], f'certificate = {{ cert = "{w}/lh/localhost.fullchain.pem", key = "{w}/lh/localhost.key" }}') + t[j:]
open(f, 'w').write(t)
PY
done
GW=""
start_gw() { PORT=$("$L" free-port); sed "s#@PORT@#$PORT#" "$W/$1.toml" >"$W/$1.run.toml"
    taskset -c 1 "$G" serve --config "$W/$1.run.toml" >"$W/logs/$1.$2.log" 2>&1 & GW=$!
    for i in $(seq 300); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.02; done; sleep 1; }
stop_gw() { kill "$GW"; wait "$GW" 2>/dev/null || true; GW=""; }
ticks() { awk '{ print $14 + $15 }' /proc/$1/stat; }
check_idle() { ps -eo pcpu=,comm= --sort=-pcpu | head -3 | tr -s ' ' | tr '\n' ';' >>"$W/logs/ps.log"; echo >>"$W/logs/ps.log"
    { pgrep -x cargo || pgrep -x rustc || pgrep -x cc1; } >/dev/null && say "WARNING: a compiler is running" || true; }
hs() { # conns -> json on stdout
    taskset -c 0 "$L" run --url https://bench.test:$PORT/ --connect 127.0.0.1:$PORT --ca "$P/root.pem" \
        --cert "$P/bench-client.fullchain.pem" --key "$P/bench-client.key" --mode handshake \
        --connections "$1" --duration "$DUR" --pid "$GW" --aux-pid "$KS" --json; }
h1() { taskset -c 0 "$L" run --url https://localhost:$PORT/ --ca "$P/root.pem" \
        --cert "$P/bench-client.fullchain.pem" --key "$P/bench-client.key" --mode h1 \
        --connections "$1" --duration "$DUR" --pid "$GW" --json; }
for run in $(seq "$RUNS"); do
    for cfg in local keyless; do
        for c in 64 8; do
            check_idle; start_gw $cfg r$run; k0=$(ticks $KS)
            out=$(hs $c); k1=$(ticks $KS); stop_gw
            say "run $run $cfg hs c=$c: $(echo "$out" | head -c 300)"
            echo "$out" | jq -c --arg cfg $cfg --argjson run $run --argjson c $c --argjson ks $((k1-k0)) \
                '{cell:"hs", cfg:$cfg, run:$run, c:$c, ks_ticks:$ks, r:.}' >>"$R"
        done
    done
    for cfg in keyless keyless-relay; do
        check_idle; start_gw $cfg m$run; k0=$(ticks $KS)
        hs 64 >"$W/hs.json" & HP=$!
        h1 16 >"$W/h1.json"; wait $HP; k1=$(ticks $KS); stop_gw
        say "run $run $cfg mixed: hs $(head -c 200 "$W/hs.json") | h1 $(head -c 200 "$W/h1.json")"
        jq -nc --arg cfg $cfg --argjson run $run --slurpfile hs "$W/hs.json" --slurpfile h1 "$W/h1.json" --argjson ks $((k1-k0)) \
            '{cell:"mixed", cfg:$cfg, run:$run, ks_ticks:$ks, hs:$hs[0], h1:$h1[0]}' >>"$R"
    done
done
say "results: $R"
