#!/usr/bin/env bash
# The ACME server benchmark of issue 9: full orders (new order → http-01
# validated against a local responder → finalize → download) with the same
# client (gatehouse-loadgen acme, instant-acme) against gatehouse's ACME server
# on SQLite and against Debian's pebble, one server at a time, the server
# alone on CPU1 and the client on CPU0. Cells:
#   latency     1 client, --latency-orders orders (one account first, not timed)
#   throughput  16 clients (one account each), --duration seconds of orders
# Prints Markdown tables of medians over --runs runs.
#
# Usage: bench/acme/bench.sh [--quick] [options]   (see --help)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

RUNS=3
LATENCY_ORDERS=200
DURATION=20
CONCURRENCY=16
POLL_MS=5
SERVERS="gatehouse pebble"
CELLS="latency throughput"
BUILD=1
OUT=""
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
PEBBLE=${PEBBLE:-/usr/bin/pebble}

usage() {
    cat <<EOF
usage: $0 [--quick] [--runs N] [--latency-orders N] [--duration S] [--concurrency N]
          [--poll-ms MS] [--servers "gatehouse pebble"] [--cells "latency throughput"]
          [--no-build] [--out DIR]

  --quick      1 run, 50 latency orders, 5 s of throughput: checks that everything works
  --no-build   use target/release/{gatehouse,gatehouse-loadgen} as they are
  --out DIR    where to keep results.jsonl, report.md and the logs (default: a new /tmp dir)
Environment: LOADGEN_CPU (default 0), SERVER_CPU (default 1), PEBBLE (default /usr/bin/pebble),
GATEHOUSE_BIN, LOADGEN_BIN (default target/release/...; with --no-build),
GATEHOUSE_DATA_PARENT (where each gatehouse server's data dir is made, e.g. /dev/shm
to see what fsync costs; default the work dir),
GATEHOUSE_ACME_EXTRA (more lines for the [acme_server] table).
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RUNS=1; LATENCY_ORDERS=50; DURATION=5 ;;
        --runs) RUNS=$2; shift ;;
        --latency-orders) LATENCY_ORDERS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --poll-ms) POLL_MS=$2; shift ;;
        --servers) SERVERS=$2; shift ;;
        --cells) CELLS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { printf '%s\n' "$*" >&2; }
die() { say "bench.sh: $*"; exit 1; }

[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (server on CPU$SERVER_CPU, client on CPU$LOADGEN_CPU)"
for tool in taskset ss jq openssl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install util-linux iproute2 jq openssl)"
done
want() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if want pebble && [ ! -x "$PEBBLE" ]; then die "$PEBBLE not found (apt-get install pebble)"; fi

if [ "$BUILD" = 1 ]; then
    say "building gatehouse and gatehouse-loadgen (release)"
    (cd "$ROOT" && cargo build --release -p gatehouse -p loadgen) || die "cargo build failed"
fi
G=${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}
L=${LOADGEN_BIN:-$ROOT/target/release/gatehouse-loadgen}
[ -x "$G" ] || die "$G missing (cargo build --release -p gatehouse)"
[ -x "$L" ] || die "$L missing (cargo build --release -p loadgen)"
G=$(realpath "$G")
L=$(realpath "$L")

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    say "WARNING: load average is $load: the machine is not idle, figures will be noisy"
fi

if [ -n "$OUT" ]; then mkdir -p "$OUT"; WORK=$(cd "$OUT" && pwd); else WORK=$(mktemp -d /tmp/gatehouse-acme-bench.XXXXXX); fi
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
mkdir -p "$WORK/logs"
say "work dir: $WORK"

# ---------------------------------------------------------------- PKI
# gatehouse: one CA made once; every server start gets a fresh copy of it
# (an empty ACME database, the same root).
export GATEHOUSE_CA_PASSPHRASE=gatehouse-bench
CA="$WORK/ca"
"$G" --data-dir "$CA" ca init >"$WORK/logs/ca.log" 2>&1 || { cat "$WORK/logs/ca.log" >&2; die "gatehouse ca init failed"; }
"$G" --data-dir "$CA" ca root >"$WORK/gatehouse-root.pem" 2>>"$WORK/logs/ca.log" || die "gatehouse ca root failed"

# pebble: a throwaway CA and a certificate for localhost / 127.0.0.1 for its own listener.
P="$WORK/pebble-tls"
mkdir -p "$P"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
{
    openssl req -x509 "${ec[@]}" -keyout "$P/root.key" -out "$P/root.pem" -days 2 -subj "/CN=pebble bench TLS root"
    openssl req -new "${ec[@]}" -keyout "$P/tls.key" -out "$P/tls.csr" -subj "/CN=localhost"
    printf '%s\n' "basicConstraints = critical,CA:FALSE" "keyUsage = critical,digitalSignature" \
        "extendedKeyUsage = serverAuth" "subjectAltName = DNS:localhost,IP:127.0.0.1" >"$P/tls.ext"
    openssl x509 -req -in "$P/tls.csr" -CA "$P/root.pem" -CAkey "$P/root.key" -set_serial 0x1 -days 2 \
        -sha256 -extfile "$P/tls.ext" -out "$P/tls.crt"
} >"$WORK/logs/pebble-tls.log" 2>&1 || { cat "$WORK/logs/pebble-tls.log" >&2; die "openssl (pebble's TLS certificate) failed"; }

# ---------------------------------------------------------------- processes
SERVER_PID=""
DATA_DIRS=()
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
    if [ ${#DATA_DIRS[@]} -gt 0 ]; then rm -rf "${DATA_DIRS[@]}"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$L" free-port; }

wait_listen() { # port pid
    local i
    for i in $(seq 1 400); do
        if ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

stop_server() {
    local i
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# start_server NAME LOG -> SERVER_PID, DIRECTORY, ROOT_PEM, HTTP01, DNS_ARGS
start_server() {
    local name=$1 log=$2 run port tls_port
    run=$(mktemp -d "$WORK/run-$name.XXXX")
    port=$(free_port)
    HTTP01=$(free_port)
    tls_port=$(free_port)
    DNS_ARGS=()
    case "$name" in
        gatehouse)
            local data="$run/data"
            if [ -n "${GATEHOUSE_DATA_PARENT:-}" ]; then
                data=$(mktemp -d "$GATEHOUSE_DATA_PARENT/gatehouse-acme-data.XXXX")
                DATA_DIRS+=("$data")
            fi
            rm -rf "$data"
            cp -a "$CA" "$data"
            # orders_per_hour: the throughput cell makes thousands of orders per account.
            printf '%s\n' "[acme_server]" "listen = \"127.0.0.1:$port\"" "http_01_port = $HTTP01" \
                "tls_alpn_01_port = $tls_port" "orders_per_hour = 100000000" \
                "${GATEHOUSE_ACME_EXTRA:-}" >"$run/acme.toml"
            (cd "$run" && exec taskset -c "$SERVER_CPU" "$G" --data-dir "$data" serve --config "$run/acme.toml") \
                >"$log" 2>&1 &
            SERVER_PID=$!
            DIRECTORY="https://127.0.0.1:$port/acme/directory"
            ROOT_PEM="$WORK/gatehouse-root.pem"
            ;;
        pebble)
            # Go 1.19's resolver does not map *.localhost to loopback: the load
            # generator answers pebble's DNS questions (every A is 127.0.0.1).
            local dns mgmt
            dns=$(free_port)
            mgmt=$(free_port)
            jq -n --arg listen "127.0.0.1:$port" --arg mgmt "127.0.0.1:$mgmt" --arg cert "$P/tls.crt" \
                --arg key "$P/tls.key" --argjson http "$HTTP01" --argjson tls "$tls_port" \
                '{pebble: {listenAddress: $listen, managementListenAddress: $mgmt, certificate: $cert,
                  privateKey: $key, httpPort: $http, tlsPort: $tls, ocspResponderURL: "",
                  externalAccountBindingRequired: false}}' >"$run/pebble.json"
            (cd "$run" && PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 GOMAXPROCS=1 \
                exec taskset -c "$SERVER_CPU" "$PEBBLE" -config "$run/pebble.json" -dnsserver "127.0.0.1:$dns") \
                >"$log" 2>&1 &
            SERVER_PID=$!
            DIRECTORY="https://127.0.0.1:$port/dir"
            ROOT_PEM="$P/root.pem"
            DNS_ARGS=(--dns-listen "127.0.0.1:$dns")
            ;;
        *) die "unknown server $name" ;;
    esac
    wait_listen "$port" "$SERVER_PID" || return 1
    sleep 0.3
}

json_str() { printf '%s' "$1" | tr '\n\t' '  ' | sed 's/\\/\\\\/g; s/"/\\"/g'; }

measure() { # server run
    local server=$1 run=$2 log="$WORK/logs/$1-run$2" cell out rc
    if ! start_server "$server" "$log.server.log"; then
        printf '{"server":"%s","run":%s,"error":"%s"}\n' "$server" "$run" \
            "$(json_str "$server did not start: $(tail -3 "$log.server.log")")" >>"$RESULTS"
        say "    FAILED: $server did not start: $(tail -3 "$log.server.log")"
        stop_server
        return
    fi
    for cell in $CELLS; do
        local args=(acme --directory "$DIRECTORY" --ca "$ROOT_PEM" --http-01-port "$HTTP01" --pid "$SERVER_PID"
            --poll-ms "$POLL_MS" --name-prefix "r$run$cell" --json "${DNS_ARGS[@]}")
        case "$cell" in
            latency) args+=(--concurrency 1 --orders "$LATENCY_ORDERS") ;;
            throughput) args+=(--concurrency "$CONCURRENCY" --orders 100000000 --duration "$DURATION") ;;
            *) die "unknown cell $cell" ;;
        esac
        say "run $run/$RUNS  $cell  $server"
        rc=0
        out=$(taskset -c "$LOADGEN_CPU" "$L" "${args[@]}" 2>"$log.$cell.loadgen.log") || rc=$?
        if [ $rc -ne 0 ] || [ -z "$out" ]; then
            printf '{"server":"%s","cell":"%s","run":%s,"error":"%s"}\n' "$server" "$cell" "$run" \
                "$(json_str "loadgen exit $rc: $(tail -3 "$log.$cell.loadgen.log")")" >>"$RESULTS"
            say "    FAILED: loadgen exit $rc: $(tail -3 "$log.$cell.loadgen.log")"
            continue
        fi
        printf '{"server":"%s","cell":"%s","run":%s,"result":%s}\n' "$server" "$cell" "$run" "$out" >>"$RESULTS"
        say "    $(jq -r '"\(.orders) orders, \(.errors) errors, \(.rate * 10 | round / 10) /s, p50 \(.p50_us / 100 | round / 10) ms, p99 \(.p99_us / 100 | round / 10) ms, server \(.server_cpu_us_per_order // 0 | round) µs CPU/order"' <<<"$out")"
    done
    stop_server
}

say "servers: $SERVERS; cells: $CELLS; $RUNS run(s); latency: $LATENCY_ORDERS orders; throughput: $CONCURRENCY clients for ${DURATION}s"
for run in $(seq 1 "$RUNS"); do
    for server in $SERVERS; do
        measure "$server" "$run"
    done
done

# ---------------------------------------------------------------- report
jq -rs -f "$HERE/report.jq" "$RESULTS" | tee "$WORK/report.md"
say ""
say "results: $RESULTS"
say "report:  $WORK/report.md"
