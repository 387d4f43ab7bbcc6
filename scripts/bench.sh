#!/usr/bin/env bash
# Throughput of Submit on a fresh local 3-node cluster (fsync on), printed by `ledgerctl bench`.
#
#   scripts/bench.sh [CLIENTS] [COUNT] [DEALS]     defaults: 64 20000 10
#
# Starts its own cluster in a temporary folder on ports 7901-7903 (partners 7990), runs the load
# through the client library (which finds the leader and sends every request there), prints the
# report, and stops everything it started, even on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
clients=${1:-64}
count=${2:-20000}
deals=${3:-10}
export LEDGER_CLUSTER_DIR=${LEDGER_CLUSTER_DIR:-$(mktemp -d /tmp/ledger-bench.XXXXXX)}
export LEDGER_BASE_PORT=${LEDGER_BASE_PORT:-7901}
export LEDGER_PARTNERS_PORT=${LEDGER_PARTNERS_PORT:-7990}
export LEDGER_METRICS_BASE_PORT=${LEDGER_METRICS_BASE_PORT:-9901}
trap '"$root/scripts/cluster.sh" down --wipe >/dev/null' EXIT

"$root/scripts/cluster.sh" up >/dev/null
ledgerctl="${CARGO_TARGET_DIR:-$root/target}/release/ledgerctl"
# The operator credentials `cluster.sh up` made (mutual TLS).
# shellcheck source=/dev/null
. "${LEDGER_CLUSTER_DIR:-$root/.cluster}/ledgerctl.env"
all="127.0.0.1:$LEDGER_BASE_PORT,127.0.0.1:$((LEDGER_BASE_PORT + 1)),127.0.0.1:$((LEDGER_BASE_PORT + 2))"
echo "== $clients clients, $count submits over $deals deals (the client library sends them to the leader)"
"$ledgerctl" --endpoints "$all" bench --clients "$clients" --count "$count" --deals "$deals"
echo
"$ledgerctl" --endpoints "$all" cluster status
