#!/usr/bin/env bash
# Instructions per request (or per handshake) of one or more gatehouse
# builds, counted by valgrind's callgrind: what a change costs, free of the
# wall-clock noise of a shared machine.
#
# Each build serves bench/gateway/gatehouse.toml.in (one worker, mTLS
# required, no identity headers, access log off) under callgrind. For each
# cell, gatehouse-loadgen runs twice against it, a short run and a long one,
# each on 8 new connections, and the counters are dumped after each. The
# instructions of the 8 handshakes, connection set-up and teardown are in
# both runs, so (long - short) / (requests long - requests short) is the cost
# of one more request with nothing fixed amortized into it. Builds are
# measured in turns (A B A B ...), so drift hits all alike.
#
# Usage: bench/gateway/callgrind.sh [options] BIN [BIN...]   (see --help)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

CELLS="h1 h2 handshake"
ROUNDS=2
SHORT=3
LONG=9
CONNECTIONS=8
L="$ROOT/target/release/gatehouse-loadgen"

usage() {
    cat <<EOF
usage: $0 [--cells "h1 h2 handshake"] [--rounds N] [--short S] [--long S] BIN [BIN...]

  BIN          a gatehouse binary (release build); several are measured in turns
  --rounds N   measurements per build and cell (default $ROUNDS)
  --short S / --long S   durations of the two runs (default $SHORT s and $LONG s)
The load generator is $L (cargo build --release -p loadgen).
Needs valgrind (apt-get install valgrind).
EOF
}

BINS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cells) CELLS=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --short) SHORT=$2; shift ;;
        --long) LONG=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        *) BINS+=("$1") ;;
    esac
    shift
done

say() { printf '%s\n' "$*" >&2; }
die() { say "callgrind.sh: $*"; exit 1; }

[ ${#BINS[@]} -gt 0 ] || { usage >&2; exit 2; }
command -v valgrind >/dev/null || die "valgrind not found (apt-get install valgrind)"
command -v callgrind_control >/dev/null || die "callgrind_control not found (apt-get install valgrind)"
[ -x "$L" ] || die "$L missing (cargo build --release -p loadgen)"
for b in "${BINS[@]}"; do [ -x "$b" ] || die "$b is not an executable"; done

WORK=$(mktemp -d /tmp/gatehouse-callgrind.XXXXXX)
say "work dir: $WORK"
PKI="$WORK/pki"
mkdir -p "$PKI"
export GATEHOUSE_CA_PASSPHRASE=gatehouse-bench
G=${BINS[0]}
{
    "$G" --data-dir "$WORK/ca" ca init
    "$G" --data-dir "$WORK/ca" ca issue --profile server --cn localhost --san DNS:localhost --out "$PKI"
    "$G" --data-dir "$WORK/ca" ca issue --profile client --cn bench-client --out "$PKI"
    "$G" --data-dir "$WORK/ca" ca root >"$PKI/root.pem"
} >"$WORK/pki.log" 2>&1 || { cat "$WORK/pki.log" >&2; die "making the PKI failed"; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_listen() { # port pid
    for _ in $(seq 1 600); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

BACKEND_PORT=$("$L" free-port)
"$L" backend --listen "127.0.0.1:$BACKEND_PORT" >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_listen "$BACKEND_PORT" $! || die "backend did not start"

# One config per build: a build older than the template's [limits] table gets it without.
config_for() { # bin port dir
    sed -e "s#@PORT@#$2#g; s#@BACKEND@#$BACKEND_PORT#g; s#@DIR@#$PKI#g" "$HERE/gatehouse.toml.in" >"$3/gw.toml"
    if ! "$1" config check "$3/gw.toml" >/dev/null 2>&1; then
        awk '/^\[/ { skip = ($0 == "[limits]") } !skip' "$3/gw.toml" >"$3/gw.toml.new"
        mv "$3/gw.toml.new" "$3/gw.toml"
        say "note: $1 does not know [limits]; measured without it"
        "$1" config check "$3/gw.toml" >/dev/null || die "$1 rejects the bench config"
    fi
}

requests() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$1"; }
instructions() { grep -hE '^totals:' "$@" | awk '{s += $2} END {print s}'; }

measure() { # bin cell -> prints instructions per operation
    local bin=$1 cell=$2 dir port pid
    dir=$(mktemp -d "$WORK/run.XXXX")
    port=$("$L" free-port)
    config_for "$bin" "$port" "$dir"
    (cd "$dir" && exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" \
        "$bin" --data-dir "$dir/data" serve --config "$dir/gw.toml") >"$dir/gw.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_listen "$port" "$pid" || die "$bin did not start: $(tail -3 "$dir/gw.log")"
    local load=("$L" run --url "https://localhost:$port/" --ca "$PKI/root.pem" --cert "$PKI/bench-client.fullchain.pem"
        --key "$PKI/bench-client.key" --mode "$cell" --connections "$CONNECTIONS" --json)
    "${load[@]}" --duration 2 >/dev/null 2>&1 || die "warm-up load failed"
    callgrind_control -i on "$pid" >/dev/null 2>&1
    "${load[@]}" --duration "$SHORT" >"$dir/short.json" 2>/dev/null || die "short run failed"
    callgrind_control -d short "$pid" >/dev/null 2>&1
    "${load[@]}" --duration "$LONG" >"$dir/long.json" 2>/dev/null || die "long run failed"
    callgrind_control -d long "$pid" >/dev/null 2>&1
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local n1 n2 i1 i2
    n1=$(requests "$dir/short.json"); n2=$(requests "$dir/long.json")
    i1=$(instructions "$dir"/cg.out.1); i2=$(instructions "$dir"/cg.out.2)
    [ "$n2" -gt "$n1" ] || die "the long run did no more operations than the short one ($n2 vs $n1)"
    python3 -c "print(round(($i2 - $i1) / ($n2 - $n1)))"
}

printf '| cell | build | instructions/op (each round) | median |\n|---|---|---|---:|\n'
for cell in $CELLS; do
    declare -A got=()
    for round in $(seq 1 "$ROUNDS"); do
        for b in "${BINS[@]}"; do
            v=$(measure "$b" "$cell")
            say "$cell round $round $b: $v instructions/op"
            got[$b]="${got[$b]:-} $v"
        done
    done
    for b in "${BINS[@]}"; do
        median=$(printf '%s\n' ${got[$b]} | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
        printf '| %s | %s |%s | %s |\n' "$cell" "$b" "${got[$b]}" "$median"
    done
    unset got
done
