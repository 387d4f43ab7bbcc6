#!/usr/bin/env bash
# Saga overhead under a steady load: a fresh local 3-node cluster with the simulated partners,
# RATE investments/s for SECONDS seconds, every admitted investment watched to its final status.
#
#   scripts/saga-load.sh [RATE] [SECONDS]     defaults: 500 60
#
# The partners run on their defaults (payment 150 ± 50 ms, documents 100 ± 30 ms, e-mail
# 50 ± 20 ms). "Saga overhead" = (time from the Submit reply to CONFIRMED seen by the client)
# − (that investment's own payment and documents latency, read from the partners' audit).
# LEDGER_PARTNERS_ARGS passes other knobs. Uses ports 7911-7913 (partners 7995) and a
# temporary folder, and stops everything it started, even on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rate=${1:-500}
seconds=${2:-60}
export LEDGER_CLUSTER_DIR=${LEDGER_CLUSTER_DIR:-$(mktemp -d /tmp/ledger-saga.XXXXXX)}
export LEDGER_BASE_PORT=${LEDGER_BASE_PORT:-7911}
export LEDGER_PARTNERS_PORT=${LEDGER_PARTNERS_PORT:-7995}
export LEDGER_METRICS_BASE_PORT=${LEDGER_METRICS_BASE_PORT:-9911}
trap '"$root/scripts/cluster.sh" down --wipe >/dev/null' EXIT

"$root/scripts/cluster.sh" up >/dev/null
# Write back what the build left dirty now, not during the measurement.
sync
all="127.0.0.1:$LEDGER_BASE_PORT,127.0.0.1:$((LEDGER_BASE_PORT + 1)),127.0.0.1:$((LEDGER_BASE_PORT + 2))"
deals=$(( (rate * seconds + 199) / 200 + 1 ))
echo "== $rate investments/s for $seconds s over all three nodes, $deals deals of 200 seats"
ledgerctl="${CARGO_TARGET_DIR:-$root/target}/release/ledgerctl"
# The operator credentials `cluster.sh up` made (mutual TLS).
# shellcheck source=/dev/null
. "${LEDGER_CLUSTER_DIR:-$root/.cluster}/ledgerctl.env"
"$ledgerctl" --endpoints "$all" saga-bench --rate "$rate" --duration-s "$seconds" \
  --deals "$deals" --partners "http://127.0.0.1:$LEDGER_PARTNERS_PORT"
echo
"$ledgerctl" --endpoints "$all" cluster status
# What the nodes saw of their own machine: fsyncs of the log over 50 ms (the disk) and late
# timer wake-ups over 50 ms (CPU starvation), the usual causes of a tail.
echo
worst() { # largest "<field>=N" on the lines matching <pattern> (colours removed), 0 if none
  grep "$1" "$3" | sed 's/\x1b\[[0-9;]*m//g' | grep -o "$2=[0-9]*" | cut -d= -f2 | sort -n |
    tail -1 | grep . || echo 0
}
for log in "$LEDGER_CLUSTER_DIR"/node*.log; do
  echo "$(basename "$log" .log): slow log fsyncs $(grep -c 'slow log fsync' "$log" || true)" \
    "(worst $(worst 'slow log fsync' flush_ms "$log") ms)," \
    "runtime stalls $(grep -c 'async runtime stalled' "$log" || true)" \
    "(worst $(worst 'async runtime stalled' late_ms "$log") ms)"
done
