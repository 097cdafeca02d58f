#!/usr/bin/env bash
# The cluster benchmark of issue 12, in one run, on one machine:
#   issuance    `gatehouse ca batch` of --rows certificates: on SQLite; on PostgreSQL
#               from 1 instance; from 3 instances at once (each an empty data dir that
#               takes the CA from the database), --rows/3 rows each
#   acme        full ACME orders/s (gatehouse-loadgen acme, --clients clients for
#               --duration s): one server on SQLite; one on PostgreSQL; three on one
#               PostgreSQL, the clients split over them (one loadgen each)
#   revocation  3 gateways on one PostgreSQL, an mTLS site trusting the internal CA;
#               --revocations times: `ca revoke` one client certificate, then from the
#               moment the command returns, handshakes with that certificate against
#               all 3 gateways until every one refuses it; median and max
# PostgreSQL is a throwaway cluster of this script (Debian's postgresql, durable:
# fsync and synchronous_commit on), on CPU1 with the gatehouse servers; clients on CPU0.
#
# Usage: bench/cluster/bench.sh [--quick] [--rows N] [--clients N] [--duration S]
#        [--revocations N] [--cells "issuance acme revocation"] [--no-build] [--out DIR]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROWS=3000
CLIENTS=16
DURATION=20
REVOCATIONS=100
CELLS="issuance acme revocation"
BUILD=1
OUT=""
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROWS=300; DURATION=5; REVOCATIONS=10 ;;
        --rows) ROWS=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --revocations) REVOCATIONS=$2; shift ;;
        --cells) CELLS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '%s\n' "$*" >&2; }
die() { say "bench.sh: $*"; exit 1; }
want() { case " $CELLS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

for tool in taskset ss jq python3 setpriv; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || die "PostgreSQL is not installed (apt-get install postgresql)"
if [ "$BUILD" = 1 ]; then
    say "building gatehouse and gatehouse-loadgen (release)"
    (cd "$ROOT" && cargo build --release -p gatehouse -p loadgen) || die "cargo build failed"
fi
G=$(realpath "${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}")
L=$(realpath "${LOADGEN_BIN:-$ROOT/target/release/gatehouse-loadgen}")

if [ -n "$OUT" ]; then mkdir -p "$OUT"; WORK=$(cd "$OUT" && pwd); else WORK=$(mktemp -d /tmp/gatehouse-cluster-bench.XXXXXX); fi
mkdir -p "$WORK/logs"
chmod 755 "$WORK"
REPORT="$WORK/report.md"
: >"$REPORT"
say "work dir: $WORK (load average $(cut -d' ' -f1-3 /proc/loadavg))"

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    if [ -n "${PGDATA_DIR:-}" ] && [ -d "$PGDATA_DIR" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$L" free-port; }
wait_listen() { # port pid
    local i
    for i in $(seq 1 600); do
        if ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
now() { date +%s.%N; }

# ---------------------------------------------------------------- PostgreSQL
if [ "$(id -u)" -eq 0 ]; then
    as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
else
    as_pg() { "$@"; }
fi
PGDATA_DIR="$WORK/pg"
mkdir -p "$PGDATA_DIR" "$WORK/pglog"
if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$PGDATA_DIR" "$WORK/pglog"; fi
PGPASS=bench-$RANDOM$RANDOM
printf '%s\n' "$PGPASS" >"$WORK/pgpass"
chmod 644 "$WORK/pgpass"
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" --auth=scram-sha-256 --username=gatehouse --pwfile="$WORK/pgpass" \
    --encoding=UTF8 --no-locale >"$WORK/logs/initdb.log" 2>&1 || { cat "$WORK/logs/initdb.log" >&2; die "initdb failed"; }
PGPORT=$(free_port)
as_pg taskset -c "$SERVER_CPU" "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/pglog/postgres.log" -w \
    -o "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=300" start \
    >/dev/null || { cat "$WORK/pglog/postgres.log" >&2; die "postgres did not start"; }
new_db() { # -> URL of a new database (called in $(...): the count is kept in a file)
    local N_DB
    N_DB=$(( $(cat "$WORK/databases" 2>/dev/null || echo 0) + 1 ))
    echo "$N_DB" >"$WORK/databases"
    PGPASSWORD=$PGPASS "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U gatehouse -d postgres \
        -c "CREATE DATABASE bench_$N_DB" >/dev/null
    echo "postgres://gatehouse:$PGPASS@127.0.0.1:$PGPORT/bench_$N_DB"
}
say "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT (fsync on, synchronous_commit on)"

export GATEHOUSE_CA_PASSPHRASE=gatehouse-cluster-bench
# A CA on `url` made from `dir`; on PostgreSQL the other instances take it from there.
make_ca() { # dir url
    "$G" --data-dir "$1" --storage "$2" ca init --name "Bench CA" >>"$WORK/logs/ca.log" 2>&1 \
        || { tail -3 "$WORK/logs/ca.log" >&2; die "ca init failed"; }
}

# ---------------------------------------------------------------- issuance
issuance() { # label instances url-or-sqlite
    local label=$1 n=$2 kind=$3 url dirs=() per t0 t1 i pids=() total
    per=$((ROWS / n))
    { echo "cn,email"; seq -f "user%g" 1 "$per" | awk '{print $1 "," $1 "@example.com"}'; } >"$WORK/users-$per.csv"
    local base="$WORK/issuance-${label// /-}"
    mkdir -p "$base"
    if [ "$kind" = sqlite ]; then
        url="sqlite://$base/i0/gatehouse.db"
    else
        url=$(new_db)
    fi
    make_ca "$base/i0" "$url"
    for i in $(seq 0 $((n - 1))); do dirs+=("$base/i$i"); done
    # Every instance takes the CA before the clock starts.
    for i in $(seq 1 $((n - 1))); do "$G" --data-dir "${dirs[$i]}" --storage "$url" ca root >/dev/null 2>&1; done
    sync
    t0=$(now)
    for i in $(seq 0 $((n - 1))); do
        taskset -c "$SERVER_CPU" "$G" --data-dir "${dirs[$i]}" --storage "$url" ca batch "$WORK/users-$per.csv" \
            --out "${dirs[$i]}/out" >"$WORK/logs/batch-$label-$i.log" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || die "ca batch failed ($label): $(tail -2 "$WORK/logs/batch-$label-"*.log)"; done
    t1=$(now)
    total=$("$G" --data-dir "${dirs[0]}" --storage "$url" ca list --json | jq length)
    [ "$total" -eq $((per * n)) ] || die "$label: $total certificates recorded, want $((per * n))"
    awk -v l="$label" -v n="$total" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "| %s | %d | %.2f | %.0f |\n", l, n, b - a, n / (b - a) }' | tee -a "$REPORT"
}

if want issuance; then
    {
        echo "### Issuance: \`ca batch\`, $ROWS certificates (P-256 keys, key + chain files, no PKCS#12), all on CPU1 with PostgreSQL"
        echo
        echo "| storage | certificates | seconds | certificates/s |"
        echo "|---|---:|---:|---:|"
    } | tee -a "$REPORT"
    issuance "SQLite, 1 instance" 1 sqlite
    issuance "PostgreSQL, 1 instance" 1 pg
    issuance "PostgreSQL, 3 instances at once" 3 pg
    echo | tee -a "$REPORT"
fi

# ---------------------------------------------------------------- ACME
# start_acme data url -> ACME_PORT, HTTP01, pid in PIDS
start_acme() {
    local data=$1 url=$2 run
    run=$(mktemp -d "$WORK/acme.XXXX")
    ACME_PORT=$(free_port)
    HTTP01=$(free_port)
    printf '%s\n' "storage = \"$url\"" "data_dir = \"$data\"" "[acme_server]" "listen = \"127.0.0.1:$ACME_PORT\"" \
        "http_01_port = $HTTP01" "tls_alpn_01_port = $(free_port)" "orders_per_hour = 100000000" >"$run/acme.toml"
    taskset -c "$SERVER_CPU" "$G" --data-dir "$data" serve --config "$run/acme.toml" >"$run/server.log" 2>&1 &
    PIDS+=($!)
    wait_listen "$ACME_PORT" "$!" || die "the ACME server did not start: $(tail -3 "$run/server.log")"
}

acme_cell() { # label instances kind
    local label=$1 n=$2 kind=$3 url base i ports=() http=() lp=() first_pid
    base="$WORK/acme-${label// /-}"
    mkdir -p "$base"
    if [ "$kind" = sqlite ]; then url="sqlite://$base/i0/gatehouse.db"; else url=$(new_db); fi
    make_ca "$base/i0" "$url"
    "$G" --data-dir "$base/i0" --storage "$url" ca root >"$base/root.pem" 2>/dev/null
    first_pid=${#PIDS[@]}
    for i in $(seq 0 $((n - 1))); do
        start_acme "$base/i$i" "$url"
        ports+=("$ACME_PORT")
        http+=("$HTTP01")
    done
    sleep 0.5
    for i in $(seq 0 $((n - 1))); do
        local clients=$(( (CLIENTS + n - 1 - i) / n ))
        taskset -c "$CLIENT_CPU" "$L" acme --directory "https://127.0.0.1:${ports[$i]}/acme/directory" \
            --ca "$base/root.pem" --http-01-port "${http[$i]}" --poll-ms 5 --name-prefix "c$i$kind$n" \
            --concurrency "$clients" --orders 100000000 --duration "$DURATION" --json \
            >"$base/loadgen-$i.json" 2>"$base/loadgen-$i.log" &
        lp+=($!)
    done
    for p in "${lp[@]}"; do wait "$p" || die "loadgen failed ($label): $(tail -3 "$base"/loadgen-*.log)"; done
    for i in $(seq $first_pid $((${#PIDS[@]} - 1))); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
    jq -rs --arg l "$label" \
        '"| \($l) | \(map(.orders) | add) | \(map(.errors) | add) | \(map(.rate) | add * 10 | round / 10) | \(map(.p50_us) | max / 100 | round / 10) |"' \
        "$base"/loadgen-*.json | tee -a "$REPORT"
}

if want acme; then
    {
        echo "### ACME: full orders/s, $CLIENTS clients for ${DURATION} s (every state change durable)"
        echo
        echo "| storage | orders | errors | orders/s | p50 ms (slowest instance) |"
        echo "|---|---:|---:|---:|---:|"
    } | tee -a "$REPORT"
    acme_cell "SQLite, 1 instance" 1 sqlite
    acme_cell "PostgreSQL, 1 instance" 1 pg
    acme_cell "PostgreSQL, 3 instances" 3 pg
    echo | tee -a "$REPORT"
fi

# ---------------------------------------------------------------- revocation
if want revocation; then
    base="$WORK/revocation"
    mkdir -p "$base/certs"
    url=$(new_db)
    make_ca "$base/ca" "$url"
    "$G" --data-dir "$base/ca" --storage "$url" ca root >"$base/root.pem" 2>/dev/null
    { echo "cn,email"; for i in $(seq 1 "$REVOCATIONS"); do echo "user$i,user$i@example.com"; done; } >"$base/users.csv"
    "$G" --data-dir "$base/ca" --storage "$url" ca batch "$base/users.csv" --out "$base/certs" --profile client \
        >"$WORK/logs/revocation-batch.log" 2>&1 || die "ca batch failed: $(tail -2 "$WORK/logs/revocation-batch.log")"
    upstream=$(free_port)
    taskset -c "$SERVER_CPU" "$L" backend --listen "127.0.0.1:$upstream" >/dev/null 2>&1 &
    PIDS+=($!)
    gw_ports=()
    for i in 0 1 2; do
        port=$(free_port)
        data="$base/gw$i"
        mkdir -p "$data"
        printf '%s\n' "storage = \"$url\"" "data_dir = \"$data\"" "[listen]" "https = \"127.0.0.1:$port\"" \
            "[[site]]" 'hosts = ["localhost"]' "certificate = { internal_ca = true }" 'mtls = "require"' \
            "trust = { internal_ca = true }" 'upstream = "app"' "[[upstream]]" 'name = "app"' \
            "servers = [\"http://127.0.0.1:$upstream\"]" >"$data.toml"
        taskset -c "$SERVER_CPU" "$G" --data-dir "$data" serve --config "$data.toml" >"$data.log" 2>&1 &
        PIDS+=($!)
        wait_listen "$port" "$!" || die "gateway $i did not start: $(tail -3 "$data.log")"
        gw_ports+=("$port")
    done
    # The serials, in the CSV's order, from the database.
    "$G" --data-dir "$base/ca" --storage "$url" ca list --json \
        | jq -r '.[] | select(.profile == "client") | "\(.common_name) \(.serial)"' >"$base/serials.txt"
    taskset -c "$CLIENT_CPU" python3 - "$G" "$base" "$url" "$REVOCATIONS" "${gw_ports[@]}" >"$base/result.json" <<'PY'
import json, socket, ssl, subprocess, sys, time, statistics
gatehouse, base, url, count, ports = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), [int(p) for p in sys.argv[5:]]
serials = dict(line.split() for line in open(f"{base}/serials.txt"))

def answered(port, user):
    """Whether the gateway on `port` serves a request with `user`'s certificate."""
    ctx = ssl.create_default_context(cafile=f"{base}/root.pem")
    ctx.load_cert_chain(f"{base}/certs/{user}.crt", f"{base}/certs/{user}.key")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                status = tls.recv(64).split(b" ", 2)
                return len(status) > 1 and status[1] == b"200"
    except (ssl.SSLError, ConnectionError, OSError):
        return False

delays, attempts = [], 0
for i in range(1, count + 1):
    user = f"user{i}"
    if not all(answered(p, user) for p in ports):
        sys.exit(f"{user} is refused before its revocation")
    subprocess.run([gatehouse, "--data-dir", f"{base}/ca", "--storage", url, "ca", "revoke", serials[user],
                    "--reason", "keyCompromise"], check=True, capture_output=True)
    revoked = time.monotonic()
    waiting = set(ports)
    while waiting:
        for p in list(waiting):
            attempts += 1
            if not answered(p, user):
                waiting.discard(p)
        if time.monotonic() - revoked > 30:
            sys.exit(f"{user}: still served by {sorted(waiting)} 30 s after its revocation")
    delays.append((time.monotonic() - revoked) * 1000)
delays.sort()
print(json.dumps({"revocations": count, "gateways": len(ports), "median_ms": statistics.median(delays),
                  "p90_ms": delays[int(0.9 * (count - 1))], "max_ms": delays[-1], "min_ms": delays[0],
                  "handshakes": attempts}))
PY
    {
        echo "### Revocation: from \`ca revoke\` returning to refusal at all 3 gateways"
        echo
        echo "| revocations | median ms | p90 ms | max ms | min ms |"
        echo "|---:|---:|---:|---:|---:|"
        jq -r '"| \(.revocations) | \(.median_ms | round) | \(.p90_ms | round) | \(.max_ms | round) | \(.min_ms | round) |"' \
            "$base/result.json"
        echo
    } | tee -a "$REPORT"
fi
say "report: $REPORT"
