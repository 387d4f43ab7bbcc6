#!/usr/bin/env bash
# Throughput and latency of admission decisions on fresh local 3-node clusters (fsync on every
# node, mutual TLS), measured by `ledgerctl bench` on the same machine.
#
#   scripts/bench.sh [--quick] [--out DIR]      the standard matrix (docs/performance.md)
#   scripts/bench.sh CLIENTS COUNT DEALS        one run, shape spread, as before the matrix
#
# The matrix: shapes hot, spread and reject × Submit and SubmitBatch of 100 × flat out and
# 500 requests/s, 64 clients, each run on a cluster of its own (started, measured, wiped), with
# the saga executors off (decisions only, as the peers in docs/performance.md were measured).
# Every run is bounded by a count and a duration. It writes DIR/results.md (one Markdown table,
# the rows docs/performance.md shows), one JSON report per run, and the machine it ran on;
# DIR defaults to target/bench/DATE. --quick runs each cell for a fifth of the requests.
#
# Ports 7901-7903 (partners 7990, metrics 9901-9903). Stops everything it started, even on
# failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export LEDGER_CLUSTER_DIR=${LEDGER_CLUSTER_DIR:-$(mktemp -d /tmp/ledger-bench.XXXXXX)}
export LEDGER_BASE_PORT=${LEDGER_BASE_PORT:-7901}
export LEDGER_PARTNERS_PORT=${LEDGER_PARTNERS_PORT:-7990}
export LEDGER_METRICS_BASE_PORT=${LEDGER_METRICS_BASE_PORT:-9901}
trap '"$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true' EXIT

ledgerctl="${CARGO_TARGET_DIR:-$root/target}/release/ledgerctl"
all="127.0.0.1:$LEDGER_BASE_PORT,127.0.0.1:$((LEDGER_BASE_PORT + 1)),127.0.0.1:$((LEDGER_BASE_PORT + 2))"

fresh_cluster() {
  "$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
  "$root/scripts/cluster.sh" up >/dev/null
  # The operator credentials `cluster.sh up` made.
  # shellcheck source=/dev/null
  . "$LEDGER_CLUSTER_DIR/ledgerctl.env"
}

# The single run of earlier versions: scripts/bench.sh CLIENTS COUNT DEALS.
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  clients=${1:-64}
  count=${2:-20000}
  deals=${3:-10}
  fresh_cluster
  echo "== $clients clients, $count submits over $deals deals (the client library sends them to the leader)"
  "$ledgerctl" --endpoints "$all" bench --clients "$clients" --count "$count" --deals "$deals"
  echo
  "$ledgerctl" --endpoints "$all" cluster status
  exit 0
fi

quick=false
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=true; shift ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${out:-$root/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
table="$out/results.md"
rm -f "$table"

# Decisions only: no executors, so no saga steps or heartbeats in the log.
export LEDGER_EXECUTOR=false
scale=1
$quick && scale=5

{
  echo "# scripts/bench.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(grep MemTotal /proc/meminfo | awk '{print $2/1024/1024 " GiB"}'), kernel $(uname -r)"
} > "$out/machine.txt"

run() { # NAME, then ledgerctl bench flags
  local name=$1
  shift
  fresh_cluster
  echo "== $name: $*"
  "$ledgerctl" --endpoints "$all" bench --quiet --clients 64 --out "$out/$name.json" --table "$table" "$@" \
    | sed -n '1,2p'
}

for shape in hot spread reject; do
  run "$shape-unary-flat" --shape "$shape" --count $((40000 / scale)) --duration-s 30
  # A hot deal of 200 seats is full before one round of 64 batches of 100 is decided: batches
  # get deals of 20,000 seats, so that most of their requests are admitted too.
  seats=()
  [ "$shape" = hot ] && seats=(--max-investors 20000)
  run "$shape-batch100-flat" --shape "$shape" --batch 100 "${seats[@]}" --count $((400000 / scale)) --duration-s 30
  run "$shape-unary-500" --shape "$shape" --rate 500 --count $((10000 / scale)) --duration-s 30
  run "$shape-batch100-500" --shape "$shape" --batch 100 "${seats[@]}" --rate 500 --count $((10000 / scale)) --duration-s 30
done

echo
cat "$out/machine.txt"
echo
cat "$table"
echo
echo "reports in $out"
