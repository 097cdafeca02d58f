#!/usr/bin/env bash
# Memory per ACME-managed site: a gateway with 1 and with 10,000 sites whose
# certificates are `{ acme = "NAME" }` (5,000 exact names over tls-alpn-01,
# 5,000 wildcards over dns-01), the CA unreachable, so each site serves its
# self-signed placeholder and keeps its renewal task waiting to retry: the
# per-site state of an ACME site (SiteCertificate, ServerConfig, placeholder
# certificate, the Managed order state and its task). VmRSS is read once the
# orders have all failed once (each site's log line; the first retry is 10 s away).
# Usage: bench/acme-client/acme-memory.sh [SITES]   (BIN as bench.sh: /tmp/acme-client-bench/bin)
set -euo pipefail
SITES=${1:-10000}
BIN=${BIN:-/tmp/acme-client-bench/bin}
OUT=$(mktemp -d /tmp/acme-memory.XXXXXX)
echo "secret" | base64 >"$OUT/tsig.key"
write_config() { # write_config N FILE PORT
  local n=$1 file=$2 port=$3 half=$(( $1 / 2 ))
  {
    echo "[listen]"; echo "https = \"127.0.0.1:$port\""
    echo "[runtime]"; echo "worker_threads = 1"
    echo "[log]"; echo "access = false"
    for t in exact wild; do
      echo "[[acme]]"; echo "name = \"$t\""; echo "directory = \"https://127.0.0.1:9/directory\""
      if [ $t = exact ]; then echo 'challenge = "tls-alpn-01"'; else
        echo 'challenge = "dns-01"'
        echo "dns = { rfc2136 = { server = \"127.0.0.1:9\", key_name = \"k\", key_secret_file = \"$OUT/tsig.key\" } }"
      fi
    done
    if [ "$n" -eq 1 ]; then
      printf '[[site]]\nhosts = ["h00001.bench.test"]\ncertificate = { acme = "exact" }\nupstream = "b"\n'
    else
      for i in $(seq -f %05g 1 "$half"); do
        printf '[[site]]\nhosts = ["h%s.bench.test"]\ncertificate = { acme = "exact" }\nupstream = "b"\n' "$i"
        printf '[[site]]\nhosts = ["*.w%s.bench.test"]\ncertificate = { acme = "wild" }\nupstream = "b"\n' "$i"
      done
    fi
    printf '[[upstream]]\nname = "b"\nservers = ["http://127.0.0.1:9"]\n'
  } >"$file"
}
measure() { # measure N
  local n=$1 port cfg data pid
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cfg="$OUT/gw-$n.toml"; data="$OUT/data-$n"; mkdir -p "$data"
  write_config "$n" "$cfg" "$port"
  local start; start=$(date +%s.%N)
  GATEHOUSE_LOG=error taskset -c 1 "$BIN/gatehouse" --data-dir "$data" serve --config "$cfg" 2>"$OUT/gw-$n.log" &
  pid=$!
  until ss -ltn | grep -q ":$port "; do sleep 0.05; done
  local listening; listening=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
  # Wait until every site's first order has failed (its retry is 10 s away): the state settled.
  until [ "$(grep -c 'ACME order failed' "$OUT/gw-$n.log")" -ge "$n" ]; do sleep 0.2; done
  local settled; settled=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
  local rss; rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  local hwm; hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  local threads; threads=$(awk '/Threads/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$n $rss $hwm $listening $settled $threads"
}
echo "sites VmRSS_kB VmHWM_kB listening_s all_orders_failed_s threads"
one=$(measure 1); echo "$one"
many=$(measure "$SITES"); echo "$many"
python3 - "$one" "$many" <<'PY'
import sys
one, many = (l.split() for l in sys.argv[1:3])
n = int(many[0]) - int(one[0])
print(f"per ACME site: {(int(many[1]) - int(one[1])) * 1024 / n:,.0f} B VmRSS, {(int(many[2]) - int(one[2])) * 1024 / n:,.0f} B VmHWM")
PY
