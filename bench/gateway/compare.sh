#!/usr/bin/env bash
# Measure gatehouse against nginx, haproxy and caddy the same way, per
# shared/BENCH-METHOD.md: the proxy under test alone on CPU1 (one worker /
# thread), the load generator and the backend on CPU0, 64 connections,
# 10 s runs, 3 runs per cell interleaved across proxies, medians; proxy CPU
# time from /proc/PID/stat -> rate per proxy core and µs CPU per operation;
# peak RSS via clear_refs + VmHWM; RSS per idle TLS connection.
#
# Usage: bench/gateway/compare.sh [--quick] [options]   (see --help)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

RUNS=3
DURATION=10
CONNECTIONS=64
IDLE_CONNECTIONS=10000
HOLD=20
PROXIES="gatehouse nginx haproxy caddy"
CELLS="h1 h2 handshake idle"
BUILD=1
OUT=""
LOADGEN_CPU=${LOADGEN_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}

usage() {
    cat <<EOF
usage: $0 [--quick] [--runs N] [--duration S] [--connections N]
          [--idle-connections N] [--hold S] [--proxies "gatehouse nginx haproxy caddy"]
          [--cells "h1 h2 handshake idle"] [--no-build] [--out DIR]

  --quick      1 run of 3 s per cell (idle: 3 s hold), to check that everything works
  --no-build   use target/release/{gatehouse,gatehouse-loadgen} as they are
  --out DIR    where to keep results.jsonl, report.md and the logs (default: a new /tmp dir)
Environment: LOADGEN_CPU (default 0), PROXY_CPU (default 1).
Must run as root (apt-get, /proc/PID/clear_refs of the proxies).
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RUNS=1; DURATION=3; HOLD=3 ;;
        --runs) RUNS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --idle-connections) IDLE_CONNECTIONS=$2; shift ;;
        --hold) HOLD=$2; shift ;;
        --proxies) PROXIES=$2; shift ;;
        --cells) CELLS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { printf '%s\n' "$*" >&2; }
die() { say "compare.sh: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, /proc/PID/clear_refs)"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (proxy on CPU$PROXY_CPU, load generator on CPU$LOADGEN_CPU)"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
command -v ss >/dev/null || die "ss not found (iproute2)"

# ---------------------------------------------------------------- peers
want() { case " $PROXIES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
missing=()
want nginx && ! command -v nginx >/dev/null && missing+=(nginx)
want haproxy && ! command -v haproxy >/dev/null && missing+=(haproxy)
want caddy && ! command -v caddy >/dev/null && missing+=(caddy)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The packages' own instances would share the CPUs (and nginx's port 80): stop them.
for svc in nginx haproxy caddy; do
    want "$svc" || continue
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        if systemctl is-active --quiet "$svc" 2>/dev/null; then
            say "stopping the system's $svc service"
            systemctl stop "$svc" || true
        fi
    elif [ -f "/run/$svc.pid" ] && kill -0 "$(cat "/run/$svc.pid")" 2>/dev/null; then
        say "stopping the system's $svc (pid $(cat "/run/$svc.pid"))"
        service "$svc" stop >/dev/null 2>&1 || kill "$(cat "/run/$svc.pid")" || true
    fi
done

# ---------------------------------------------------------------- binaries
if [ "$BUILD" = 1 ]; then
    say "building gatehouse and gatehouse-loadgen (release)"
    (cd "$ROOT" && cargo build --release -p loadgen -p gatehouse) || die "cargo build failed"
fi
G="$ROOT/target/release/gatehouse"
L="$ROOT/target/release/gatehouse-loadgen"
[ -x "$G" ] || die "$G missing (cargo build --release -p gatehouse)"
[ -x "$L" ] || die "$L missing (cargo build --release -p loadgen)"

if want gatehouse; then
    set +e
    "$G" serve --help >/dev/null 2>&1
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        say "SKIPPING gatehouse: 'gatehouse serve --help' exited $rc (the gateway is not built into this binary yet)"
        PROXIES=$(echo " $PROXIES " | sed 's/ gatehouse / /; s/^ *//; s/ *$//')
    fi
fi
[ -n "$PROXIES" ] || die "no proxy to measure"

# ---------------------------------------------------------------- limits
# File descriptors: the idle cell needs one per connection in the load
# generator and in the proxy (haproxy reserves two per connection).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
[ "$NOFILE" -gt 1048576 ] && NOFILE=1048576
HAPROXY_MAXCONN=$(( (NOFILE - 100) / 2 ))
if [[ " $CELLS " == *" idle "* ]] && [ "$IDLE_CONNECTIONS" -gt $((HAPROXY_MAXCONN - 100)) ]; then
    reduced=$((HAPROXY_MAXCONN - 100))
    say "NOTE: RLIMIT_NOFILE hard limit is $NOFILE (raising it needs CAP_SYS_RESOURCE):" \
        "idle cell uses $reduced connections instead of $IDLE_CONNECTIONS, for every proxy"
    IDLE_CONNECTIONS=$reduced
fi
NGINX_WORKER_CONNECTIONS=$((NOFILE - 100))

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    say "WARNING: load average is $load: the machine is not idle, figures will be noisy"
fi

# ---------------------------------------------------------------- work dir, PKI
if [ -n "$OUT" ]; then mkdir -p "$OUT"; WORK=$(cd "$OUT" && pwd); else WORK=$(mktemp -d /tmp/gatehouse-bench.XXXXXX); fi
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
PKI="$WORK/pki"
mkdir -p "$PKI" "$WORK/logs"
say "work dir: $WORK"

export GATEHOUSE_CA_PASSPHRASE=gatehouse-bench
CA="$WORK/ca"
"$G" --data-dir "$CA" ca init >"$WORK/logs/pki.log" 2>&1 || { cat "$WORK/logs/pki.log" >&2; die "gatehouse ca init failed"; }
"$G" --data-dir "$CA" ca issue --profile server --cn localhost --san DNS:localhost --san IP:127.0.0.1 --out "$PKI" \
    >>"$WORK/logs/pki.log" 2>&1 || { cat "$WORK/logs/pki.log" >&2; die "gatehouse ca issue (server) failed"; }
"$G" --data-dir "$CA" ca issue --profile client --cn bench-client --out "$PKI" \
    >>"$WORK/logs/pki.log" 2>&1 || { cat "$WORK/logs/pki.log" >&2; die "gatehouse ca issue (client) failed"; }
"$G" --data-dir "$CA" ca root >"$PKI/root.pem" 2>>"$WORK/logs/pki.log" || die "gatehouse ca root failed"
for f in localhost.fullchain.pem localhost.key bench-client.fullchain.pem bench-client.key root.pem; do
    [ -s "$PKI/$f" ] || die "PKI: $PKI/$f missing"
done
cat "$PKI/localhost.fullchain.pem" "$PKI/localhost.key" >"$PKI/haproxy.pem"
chmod 600 "$PKI/haproxy.pem"

# ---------------------------------------------------------------- processes
BACKEND_PID=""
PROXY_PID=""
cleanup() {
    if [ -n "$PROXY_PID" ] && kill -0 "$PROXY_PID" 2>/dev/null; then kill -KILL "$PROXY_PID" 2>/dev/null || true; fi
    if [ -n "$BACKEND_PID" ] && kill -0 "$BACKEND_PID" 2>/dev/null; then kill "$BACKEND_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$L" free-port; }

wait_listen() { # port pid
    local i
    for i in $(seq 1 200); do
        if ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

stop_pid() { # pid [more pids that must be gone too]
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 100); do
        local alive=0 q
        for q in "$@"; do kill -0 "$q" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.05
    done
    for q in "$@"; do kill -0 "$q" 2>/dev/null && kill -KILL "$q" 2>/dev/null; done
    wait "$p" 2>/dev/null || true
}

BACKEND_PORT=$(free_port)
taskset -c "$LOADGEN_CPU" "$L" backend --listen "127.0.0.1:$BACKEND_PORT" >"$WORK/logs/backend.log" 2>&1 &
BACKEND_PID=$!
wait_listen "$BACKEND_PORT" "$BACKEND_PID" || die "backend did not start: $(tail -3 "$WORK/logs/backend.log")"

render() { # template output port run-dir
    sed -e "s#@PORT@#$3#g; s#@BACKEND@#$BACKEND_PORT#g; s#@PKI@#$PKI#g; s#@DIR@#$PKI#g; s#@RUN@#$4#g" \
        -e "s#@NOFILE@#$NOFILE#g; s#@WORKER_CONNECTIONS@#$NGINX_WORKER_CONNECTIONS#g; s#@MAXCONN@#$HAPROXY_MAXCONN#g" \
        "$1" >"$2"
}

# start_proxy NAME LOG -> PORT, PROXY_PID, MEASURE_PIDS (serving processes), AUX_PIDS
start_proxy() {
    local name=$1 log=$2 run
    run=$(mktemp -d "$WORK/run-$name.XXXX")
    PORT=$(free_port)
    MEASURE_PIDS=""
    AUX_PIDS=""
    case "$name" in
        nginx)
            render "$HERE/nginx.conf.in" "$run/nginx.conf" "$PORT" "$run"
            taskset -c "$PROXY_CPU" nginx -p "$run" -c "$run/nginx.conf" -e "$run/nginx-error.log" >"$log" 2>&1 &
            PROXY_PID=$!
            ;;
        haproxy)
            render "$HERE/haproxy.cfg.in" "$run/haproxy.cfg" "$PORT" "$run"
            taskset -c "$PROXY_CPU" haproxy -db -f "$run/haproxy.cfg" >"$log" 2>&1 &
            PROXY_PID=$!
            ;;
        caddy)
            render "$HERE/Caddyfile.in" "$run/Caddyfile" "$PORT" "$run"
            mkdir -p "$run/home"
            GOMAXPROCS=1 HOME="$run/home" XDG_DATA_HOME="$run/home" XDG_CONFIG_HOME="$run/home" \
                taskset -c "$PROXY_CPU" caddy run --config "$run/Caddyfile" --adapter caddyfile >"$log" 2>&1 &
            PROXY_PID=$!
            ;;
        gatehouse)
            render "${GATEHOUSE_TEMPLATE:-$HERE/gatehouse.toml.in}" "$run/gatehouse.toml" "$PORT" "$run"
            taskset -c "$PROXY_CPU" "$G" serve --config "$run/gatehouse.toml" >"$log" 2>&1 &
            PROXY_PID=$!
            ;;
        *) die "unknown proxy $name" ;;
    esac
    if ! wait_listen "$PORT" "$PROXY_PID"; then
        return 1
    fi
    if [ "$name" = nginx ]; then
        local i w=""
        for i in $(seq 1 100); do
            w=$(pgrep -P "$PROXY_PID" | tr '\n' ',' | sed 's/,$//')
            [ -n "$w" ] && break
            sleep 0.05
        done
        [ -n "$w" ] || return 1
        MEASURE_PIDS=$w
        AUX_PIDS=$PROXY_PID
    else
        MEASURE_PIDS=$PROXY_PID
    fi
    sleep 0.5
    return 0
}

field() { # json key -> a top-level number of the loadgen's JSON (for progress lines only)
    printf '%s' "$1" | grep -o "\"$2\":[^,}]*" | head -1 | cut -d: -f2 |
        awk '{ if ($0 ~ /^-?[0-9]*\.[0-9]+([eE][-+]?[0-9]+)?$/) printf "%.1f", $0; else printf "%s", $0 }'
}

json_str() { # escape for a JSON string
    printf '%s' "$1" | tr '\n\t' '  ' | sed 's/\\/\\\\/g; s/"/\\"/g'
}

record_error() { # proxy cell run message
    printf '{"proxy":"%s","cell":"%s","run":%s,"error":"%s"}\n' "$1" "$2" "$3" "$(json_str "$4")" >>"$RESULTS"
    say "    FAILED: $4"
}

measure() { # proxy cell run
    local proxy=$1 cell=$2 run=$3 log="$WORK/logs/$1-$2-run$3"
    if ! start_proxy "$proxy" "$log.proxy.log"; then
        record_error "$proxy" "$cell" "$run" "$proxy did not start: $(tail -3 "$log.proxy.log")"
        [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID" "$PROXY_PID"
        PROXY_PID=""
        return
    fi
    local common=(--url "https://localhost:$PORT/" --ca "$PKI/root.pem"
        --cert "$PKI/bench-client.fullchain.pem" --key "$PKI/bench-client.key"
        --pid "$MEASURE_PIDS" --json)
    [ -n "$AUX_PIDS" ] && common+=(--aux-pid "$AUX_PIDS")
    local out rc=0
    if [ "$cell" = idle ]; then
        out=$(taskset -c "$LOADGEN_CPU" "$L" idle "${common[@]}" --connections "$IDLE_CONNECTIONS" --hold "$HOLD" \
            2>"$log.loadgen.log") || rc=$?
    else
        out=$(taskset -c "$LOADGEN_CPU" "$L" run "${common[@]}" --mode "$cell" --connections "$CONNECTIONS" \
            --duration "$DURATION" 2>"$log.loadgen.log") || rc=$?
    fi
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
        [ $rc -eq 0 ] && rc=99
        echo "$proxy exited during the run: $(tail -3 "$log.proxy.log")" >>"$log.loadgen.log"
    fi
    stop_pid "$PROXY_PID" ${MEASURE_PIDS//,/ } "$PROXY_PID"
    PROXY_PID=""
    if [ $rc -ne 0 ] || [ -z "$out" ]; then
        record_error "$proxy" "$cell" "$run" "loadgen exit $rc: $(tail -3 "$log.loadgen.log")"
        return
    fi
    printf '{"proxy":"%s","cell":"%s","run":%s,"result":%s}\n' "$proxy" "$cell" "$run" "$out" >>"$RESULTS"
    # one progress line
    if [ "$cell" = idle ]; then
        say "    opened $(field "$out" opened)/$(field "$out" connections), open after hold $(field "$out" open_after_hold)," \
            "RSS/conn $(field "$out" rss_per_conn_bytes) B"
    else
        say "    $(field "$out" rate) /s wall, $(field "$out" rate_per_proxy_core) /s per proxy core," \
            "$(field "$out" proxy_cpu_us_per_op) µs CPU/op, errors $(field "$out" errors)"
    fi
}

say "proxies: $PROXIES; cells: $CELLS; $RUNS run(s) of ${DURATION}s; $CONNECTIONS connections; idle: $IDLE_CONNECTIONS for ${HOLD}s"
for run in $(seq 1 "$RUNS"); do
    for cell in $CELLS; do
        for proxy in $PROXIES; do
            say "run $run/$RUNS  $cell  $proxy"
            measure "$proxy" "$cell" "$run"
        done
    done
done

"$L" report "$RESULTS" | tee "$WORK/report.md"
say ""
say "results: $RESULTS"
say "report:  $WORK/report.md"
