#!/usr/bin/env bash
# Issue 10, "Performance": the cost of certificate selection per handshake with
# 10,000 managed host names on one gateway (5,000 exact + 5,000 wildcard sites,
# each with its own certificate and rustls ServerConfig) against the same
# gateway with one name; memory per managed certificate; start-up time until
# every certificate is ready (the listener is bound only after the last one).
#
# Method as shared/BENCH-METHOD.md: gatehouse alone on CPU1 (one worker), the
# load generator and the backend on CPU0, full TLS 1.3 handshakes (no
# resumption, one request with Connection: close each), 64 workers, 3 runs of
# 10 s per cell interleaved, medians; proxy utime+stime -> µs CPU/handshake
# and handshakes/s per proxy core.
#
# Usage: bench/acme-client/bench.sh [--quick] [options]   (see --help)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

RUNS=3
DURATION=10
CONNECTIONS=64
SITES=10000
IDLE=5
SETTLE=2
CELLS="one-localhost one-exact one-wild many-exact many-wild"
BIN=${BIN:-/tmp/acme-client-bench/bin}
OUT=""
LOADGEN_CPU=${LOADGEN_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
# What every site's `certificate = { ... }` holds. Until ACME-managed sites land,
# the internal CA issues each site's certificate at start (same per-site structure).
SITE_SOURCE=${SITE_SOURCE:-internal_ca = true}
EXTRA_TOML=${EXTRA_TOML:-}   # a file appended to every config (e.g. an ACME client table)

usage() {
    cat <<EOF
usage: $0 [--quick] [--runs N] [--duration S] [--connections N] [--sites N]
          [--cells "$CELLS"] [--out DIR]

  --quick      1 run of 3 s per cell
  --sites N    sites of the many-site gateway (N/2 exact, N/2 wildcard; default 10000)
  --out DIR    keep results.jsonl, report.md, configs, data dirs and logs there
               (default: a new /tmp/acme-client-bench/run.XXXX)
Cells: one-localhost  1 site "localhost", SNI localhost
       one-exact      1 site h{N/4}.bench.test, SNI the same
       one-wild       1 site *.w{N/4}.bench.test, SNI x.w{N/4}.bench.test
       many-exact     N sites, SNI h{N/4}.bench.test
       many-wild      N sites, SNI x.w{N/4}.bench.test
Environment: BIN (dir with gatehouse and gatehouse-loadgen; default $BIN),
LOADGEN_CPU (0), PROXY_CPU (1), SITE_SOURCE (the certificate table's keys;
default "internal_ca = true"), EXTRA_TOML (a file appended to every config).
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RUNS=1; DURATION=3 ;;
        --runs) RUNS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --sites) SITES=$2; shift ;;
        --cells) CELLS=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "bench.sh: $*"; exit 1; }

G="$BIN/gatehouse"
L="$BIN/gatehouse-loadgen"
[ -x "$G" ] || die "$G missing: cargo build --release -p gatehouse -p loadgen --locked, then copy target/release/{gatehouse,gatehouse-loadgen} to $BIN"
[ -x "$L" ] || die "$L missing"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs"
for t in taskset ss jq python3; do command -v $t >/dev/null || die "$t not found"; done
[ $((SITES % 2)) = 0 ] && [ "$SITES" -ge 4 ] || die "--sites must be even and at least 4"
HALF=$((SITES / 2))
MID=$(printf '%05d' $((SITES / 4)))
EXACT_NAME="h$MID.bench.test"
WILD_HOST="*.w$MID.bench.test"
WILD_NAME="x.w$MID.bench.test"

if [ -n "$OUT" ]; then mkdir -p "$OUT"; WORK=$(cd "$OUT" && pwd); else
    mkdir -p /tmp/acme-client-bench; WORK=$(mktemp -d /tmp/acme-client-bench/run.XXXX); fi
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
mkdir -p "$WORK/logs" "$WORK/pki"
say "work dir: $WORK"
TICK=$(getconf CLK_TCK)

# ------------------------------------------------------------ machine state
compilers_running() { pgrep -x 'cargo|rustc|clippy-driver|rust-lld|cc1|cc1plus' >/dev/null 2>&1; }
# Busy share (%) of the busiest CPU over 2 s (busy = user+nice+system+irq+softirq+steal).
busiest_cpu_pct() {
    local a b
    a=$(grep '^cpu[0-9]' /proc/stat); sleep 2; b=$(grep '^cpu[0-9]' /proc/stat)
    printf '%s\n%s\n' "$a" "$b" | awk '{ busy = $2 + $3 + $4 + $7 + $8 + $9; all = busy + $5 + $6
        if ($1 in B) { p = 100 * (busy - B[$1]) / (all - A[$1] + 1e-9); if (p > m) m = p } else { B[$1] = busy; A[$1] = all } }
        END { printf "%.0f", m }'
}
# Waits (polling every 30 s) until no compiler runs and neither CPU is more than
# QUIET_PCT % busy over 2 s with nothing of ours but the backend running: a test
# binary or a fuzzer is not called cargo or rustc.
QUIET_PCT=${QUIET_PCT:-5}
wait_quiet() {
    local pct
    while :; do
        if compilers_running; then
            say "a compiler is running ($(pgrep -x -l 'cargo|rustc|clippy-driver|rust-lld|cc1|cc1plus' | tr '\n' ' ')); waiting 30 s"
        else
            pct=$(busiest_cpu_pct)
            [ "$pct" -le "$QUIET_PCT" ] && return 0
            say "a CPU is ${pct} % busy with other work ($(ps -eo pcpu=,comm= --sort=-pcpu | head -2 | tr -s ' ' | tr '\n' ';')); waiting 30 s"
        fi
        sleep 30
    done
}
machine_state() { # label
    { echo "== $1 $(date -u +%FT%TZ)"; uptime; top -bn1 | head -12; } >>"$WORK/logs/machine.log"
}
{ uname -a; nproc; lscpu | grep -E 'Model name|^CPU\(s\)|Thread|MHz' || true; free -m; } >"$WORK/machine.txt" 2>&1
"$G" --version >>"$WORK/machine.txt" 2>&1 || true
sha256sum "$G" "$L" >>"$WORK/machine.txt"

# ------------------------------------------------------------ CA, client cert
unset GATEHOUSE_CA_PASSPHRASE   # an unencrypted CA key, as an ACME client has no CA key at all
"$G" --data-dir "$WORK/data-ca" ca init >"$WORK/logs/pki.log" 2>&1 || { cat "$WORK/logs/pki.log" >&2; die "ca init failed"; }
"$G" --data-dir "$WORK/data-ca" ca issue --profile client --cn bench-client --out "$WORK/pki" >>"$WORK/logs/pki.log" 2>&1 \
    || die "ca issue (client) failed"
"$G" --data-dir "$WORK/data-ca" ca root >"$WORK/pki/root.pem" 2>>"$WORK/logs/pki.log" || die "ca root failed"
# Same CA, two data dirs: the one-site gateways' issuance database holds 3 certificates, the many-site one N.
cp -a "$WORK/data-ca" "$WORK/data-one"
cp -a "$WORK/data-ca" "$WORK/data-many"

# ------------------------------------------------------------ backend
BACKEND_PID=""
PROXY_PID=""
cleanup() {
    [ -n "$PROXY_PID" ] && kill -KILL "$PROXY_PID" 2>/dev/null || true
    [ -n "$BACKEND_PID" ] && kill "$BACKEND_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
BACKEND_PORT=$("$L" free-port)
taskset -c "$LOADGEN_CPU" "$L" backend --listen "127.0.0.1:$BACKEND_PORT" >"$WORK/logs/backend.log" 2>&1 &
BACKEND_PID=$!

# ------------------------------------------------------------ configs
site_block() { # host
    sed -e "s#@HOST@#$1#g; s#@SOURCE@#$SITE_SOURCE#g" "$HERE/site.toml.in"
}
make_config() { # name data-dir hosts...
    local name=$1 data=$2 out="$WORK/$1.toml.in"
    shift 2
    sed -e "s#@DATA@#$data#g; s#@BACKEND@#$BACKEND_PORT#g" "$HERE/gatehouse.toml.in" >"$out"
    [ -n "$EXTRA_TOML" ] && cat "$EXTRA_TOML" >>"$out"
    if [ "$1" = "--many" ]; then
        local tmpl
        tmpl=$(site_block @H@)
        awk -v half="$HALF" -v tmpl="$tmpl" 'BEGIN {
            for (i = 1; i <= half; i++) { t = tmpl; sub(/@H@/, sprintf("h%05d.bench.test", i), t); print t }
            for (i = 1; i <= half; i++) { t = tmpl; sub(/@H@/, sprintf("*.w%05d.bench.test", i), t); print t }
        }' >>"$out"
    else
        for h in "$@"; do site_block "$h" >>"$out"; done
    fi
}
make_config one-localhost "$WORK/data-one" localhost
make_config one-exact "$WORK/data-one" "$EXACT_NAME"
make_config one-wild "$WORK/data-one" "$WILD_HOST"
make_config many "$WORK/data-many" --many
say "many.toml: $(grep -c '^\[\[site\]\]' "$WORK/many.toml.in") sites; measured names $EXACT_NAME and $WILD_NAME"

config_of() { case "$1" in one-*) echo "$1" ;; many-*) echo many ;; esac; }
sni_of() {
    case "$1" in
        one-localhost) echo localhost ;;
        *-exact) echo "$EXACT_NAME" ;;
        *-wild) echo "$WILD_NAME" ;;
    esac
}

# ------------------------------------------------------------ gateway process
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
now_ns() { date +%s%N; }

# start_gateway CONFIG LOG TIMEOUT_S -> PORT, PROXY_PID, STARTUP_S (spawn until the https port listens)
start_gateway() {
    local cfg=$1 log=$2 timeout=$3 t0 deadline
    PORT=$("$L" free-port)
    sed -e "s#@PORT@#$PORT#g" "$WORK/$cfg.toml.in" >"$WORK/$cfg.toml"
    t0=$(now_ns)
    taskset -c "$PROXY_CPU" "$G" serve --config "$WORK/$cfg.toml" >"$log" 2>&1 &
    PROXY_PID=$!
    deadline=$((t0 + timeout * 1000000000))
    while ! ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; do
        kill -0 "$PROXY_PID" 2>/dev/null || return 1
        [ "$(now_ns)" -lt "$deadline" ] || return 1
        sleep 0.01
    done
    STARTUP_S=$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
}

stop_gateway() {
    local i
    kill -TERM "$PROXY_PID" 2>/dev/null || true
    for i in $(seq 1 200); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=""
}

# After start-up: settle, then RSS / peak RSS of start-up, then idle CPU for IDLE s.
after_start() { # -> RSS_KIB HWM_KIB IDLE_MS_PER_S
    sleep "$SETTLE"
    RSS_KIB=$(status_kib "$PROXY_PID" VmRSS)
    HWM_KIB=$(status_kib "$PROXY_PID" VmHWM)
    local c0 c1
    c0=$(cpu_ticks "$PROXY_PID")
    sleep "$IDLE"
    c1=$(cpu_ticks "$PROXY_PID")
    IDLE_MS_PER_S=$(awk -v a="$c0" -v b="$c1" -v t="$TICK" -v d="$IDLE" 'BEGIN { printf "%.2f", (b - a) * 1000 / t / d }')
}

# ------------------------------------------------------------ first start: issue every certificate
wait_quiet
CONFIGS=$(for c in $CELLS; do config_of "$c"; done | awk '!seen[$0]++' | tr '\n' ' ')
for cfg in $CONFIGS; do
    machine_state "first start $cfg"
    say "first start of $cfg (certificates issued by the internal CA)"
    start_gateway "$cfg" "$WORK/logs/$cfg-first.log" 3600 || die "$cfg did not start: $(tail -3 "$WORK/logs/$cfg-first.log")"
    busy=false; compilers_running && busy=true
    after_start
    say "  ready after $STARTUP_S s; VmRSS $RSS_KIB KiB, VmHWM $HWM_KIB KiB; idle $IDLE_MS_PER_S ms CPU/s"
    jq -nc --arg cfg "$cfg" --argjson s "$STARTUP_S" --argjson rss "$RSS_KIB" --argjson hwm "$HWM_KIB" --argjson idle "$IDLE_MS_PER_S" \
        --argjson busy "$busy" '{kind: "first_start", config: $cfg, startup_s: $s, rss_kib: $rss, hwm_kib: $hwm, idle_cpu_ms_per_s: $idle, compiler_running_at_ready: $busy}' >>"$RESULTS"
    stop_gateway
done
[ -d "$WORK/data-many/gateway/certs" ] && say "many: $(find "$WORK/data-many/gateway/certs" -name '*.fullchain.pem' | wc -l) certificates on disk"

# ------------------------------------------------------------ measured runs
say "cells: $CELLS; $RUNS run(s) of ${DURATION}s; $CONNECTIONS workers; full handshakes, mtls off"
measure_cell() { # run cell; returns 1 when the run was discarded (a compiler ran)
    local run=$1 cell=$2 cfg sni log rc out rss_after stat0 stat1 cpus b0 b1 other
    {
        wait_quiet
        machine_state "run $run $cell"
        cfg=$(config_of "$cell")
        sni=$(sni_of "$cell")
        log="$WORK/logs/$cell-run$run"
        say "run $run/$RUNS  $cell  (config $cfg, SNI $sni)  load $(cut -d' ' -f1-3 /proc/loadavg)"
        start_gateway "$cfg" "$log.gatehouse.log" 600 || die "$cfg did not start: $(tail -3 "$log.gatehouse.log")"
        after_start
        rc=0
        b0=$(cpu_ticks "$BACKEND_PID")
        stat0=$(grep '^cpu[0-9]' /proc/stat)
        out=$(taskset -c "$LOADGEN_CPU" "$L" run --url "https://$sni:$PORT/" --connect "127.0.0.1:$PORT" \
            --ca "$WORK/pki/root.pem" --cert "$WORK/pki/bench-client.fullchain.pem" --key "$WORK/pki/bench-client.key" \
            --mode handshake --connections "$CONNECTIONS" --duration "$DURATION" --pid "$PROXY_PID" --json \
            2>"$log.loadgen.log") || rc=$?
        rss_after=$(status_kib "$PROXY_PID" VmRSS)
        stat1=$(grep '^cpu[0-9]' /proc/stat)
        b1=$(cpu_ticks "$BACKEND_PID")
        stop_gateway
        [ $rc = 0 ] && [ -n "$out" ] || die "loadgen failed ($rc): $(tail -3 "$log.loadgen.log")"
        # Busy and stolen CPU seconds of each CPU over the run (busy = all but idle and iowait):
        # CPU1 busy beyond the proxy's own CPU time is someone else's work.
        cpus=$(printf '%s\n%s\n' "$stat0" "$stat1" | awk -v t="$TICK" '
            { busy = $2 + $3 + $4 + $7 + $8 + $9; if ($1 in b) { db[$1] = (busy - b[$1]) / t; ds[$1] = ($9 - st[$1]) / t } else { b[$1] = busy; st[$1] = $9 } }
            END { printf "{\"cpu0_busy_s\":%.2f,\"cpu0_steal_s\":%.2f,\"cpu1_busy_s\":%.2f,\"cpu1_steal_s\":%.2f}", db["cpu0"], ds["cpu0"], db["cpu1"], ds["cpu1"] }')
        # Someone else's work on the proxy's CPU (or on the load generator's) during the run:
        # CPU busy time beyond what the proxy (CPU1), load generator and backend (CPU0) used;
        # steal (the hypervisor's) is not counted.
        other=$(jq -n --argjson c "$cpus" --argjson r "$out" --argjson b "$(( b1 - b0 ))" --argjson t "$TICK" \
            '{cpu1_other_s: ($c.cpu1_busy_s - $c.cpu1_steal_s - $r.proxy_cpu_s), cpu0_other_s: ($c.cpu0_busy_s - $c.cpu0_steal_s - $r.loadgen_cpu_s - $b / $t)}')
        cpus=$(jq -c -n --argjson c "$cpus" --argjson o "$other" '$c + $o')
        if compilers_running || jq -e --argjson d "$DURATION" '.cpu1_other_s > 0.03 * $d or .cpu0_other_s > 0.05 * $d' <<<"$other" >/dev/null; then
            say "    DISCARDED: other work ran during the run ($(jq -c . <<<"$other"); $(ps -eo pcpu=,comm= --sort=-pcpu | head -2 | tr -s ' ' | tr '\n' ';')); repeating the cell"
            printf '{"kind":"discarded","cell":"%s","run":%s,"cpus":%s,"result":%s}\n' "$cell" "$run" "$cpus" "$out" >>"$RESULTS"
            return 1
        fi
        jq -nc --arg cell "$cell" --argjson run "$run" --argjson s "$STARTUP_S" --argjson rss "$RSS_KIB" \
            --argjson hwm "$HWM_KIB" --argjson idle "$IDLE_MS_PER_S" --argjson rss_after "$rss_after" \
            --arg load "$(cut -d' ' -f1 /proc/loadavg)" --argjson r "$out" --argjson cpus "$cpus" \
            '{kind: "run", cell: $cell, run: $run, startup_s: $s, rss_kib: $rss, hwm_kib: $hwm, idle_cpu_ms_per_s: $idle,
              rss_after_load_kib: $rss_after, load1: ($load | tonumber), cpus: $cpus, result: $r}' >>"$RESULTS"
        say "    start-up $STARTUP_S s, VmRSS $RSS_KIB KiB; $(jq -r '"\(.rate|floor)/s wall, \(.rate_per_proxy_core|floor)/s per proxy core, \(.proxy_cpu_us_per_op*10|round/10) µs CPU/hs, loadgen \(.loadgen_cpu_us_per_op|round) µs/op, errors \(.errors)"' <<<"$out")"
    }
    return 0
}
for run in $(seq 1 "$RUNS"); do
    for cell in $CELLS; do
        until measure_cell "$run" "$cell"; do :; done
    done
done

python3 "$HERE/report.py" "$RESULTS" "$SITES" | tee "$WORK/report.md"
say "results: $RESULTS"
say "report:  $WORK/report.md"
