#!/usr/bin/env bash
# Benchmark: `gatehouse ca batch` against the seeds' per-user openssl loop
# (cert-gen.sh: genkey, req, x509 -req per user), with ECDSA P-256 keys on
# both sides so the comparison is about the workflow, not the algorithm.
#
# Usage: bench/ca-batch.sh [USERS] [RUNS] [OPENSSL_USERS]
#   USERS          rows for gatehouse (default 10000)
#   RUNS           runs per side, interleaved; the median is reported (default 3)
#   OPENSSL_USERS  users per openssl-loop run (default: USERS)
# Run by hand on an idle machine (not while compiling); prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-10000}
RUNS=${2:-3}
OSSL_USERS=${3:-$USERS}

cargo build --release -q -p gatehouse
GH=$PWD/target/release/gatehouse
WORK=$(mktemp -d /tmp/gatehouse-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

seq -f "user%g" 1 "$USERS" | awk '{print $1 "," $1 "@example.com"}' > "$WORK/users.csv"

now() { date +%s.%N; }

gatehouse_run() {
  local dir="$WORK/gh.$1"
  "$GH" --data-dir "$dir/data" ca init >/dev/null
  sync
  local t0 t1
  t0=$(now)
  "$GH" --data-dir "$dir/data" ca batch "$WORK/users.csv" --out "$dir/out" 2>/dev/null
  t1=$(now)
  local n
  n=$(sqlite3 "$dir/data/gatehouse.db" 'select count(*) from certificates')
  [ "$n" -eq "$USERS" ] || { echo "gatehouse recorded $n of $USERS" >&2; exit 1; }
  echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
  rm -rf "$dir"
}

# The seed's cert-gen.sh, one user at a time, as people run it today.
openssl_run() {
  local dir="$WORK/ossl.$1"
  mkdir -p "$dir"
  cd "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=bench CA" -keyout ca.key -out ca.crt 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > v3_req.txt
  local t0 t1
  t0=$(now)
  for i in $(seq 1 "$OSSL_USERS"); do
    u="user$i"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$u.key" 2>/dev/null
    openssl req -new -key "$u.key" -out "$u.csr" -subj "/C=JP/CN=$u" 2>/dev/null
    openssl x509 -req -days 365 -in "$u.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out "$u.crt" -extfile v3_req.txt 2>/dev/null
  done
  t1=$(now)
  cd - >/dev/null
  echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
  rm -rf "$dir"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

gh_times=(); ossl_times=()
for r in $(seq 1 "$RUNS"); do
  gh_times+=("$(gatehouse_run "$r")")
  ossl_times+=("$(openssl_run "$r")")
  echo "run $r: gatehouse ${gh_times[-1]} s for $USERS, openssl loop ${ossl_times[-1]} s for $OSSL_USERS" >&2
done
gh=$(printf '%s\n' "${gh_times[@]}" | median)
ossl=$(printf '%s\n' "${ossl_times[@]}" | median)
awk -v gh="$gh" -v ossl="$ossl" -v n="$USERS" -v m="$OSSL_USERS" -v runs="$RUNS" 'BEGIN {
  ghc = gh / n * 1e6; oc = ossl / m * 1e6;
  printf "| workflow | certificates | median wall time (%d runs) | per certificate | certificates/s |\n", runs
  printf "|---|---|---|---|---|\n"
  printf "| gatehouse ca batch | %d | %.2f s | %.0f µs | %.0f |\n", n, gh, ghc, n / gh
  printf "| openssl loop (cert-gen.sh, P-256) | %d | %.2f s | %.0f µs | %.0f |\n", m, ossl, oc, m / ossl
  printf "\nratio (openssl loop time per certificate / gatehouse time per certificate): %.0fx\n", oc / ghc
}'
