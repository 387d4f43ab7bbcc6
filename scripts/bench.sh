#!/usr/bin/env bash
# Throughput of Submit on a fresh local 3-node cluster (fsync on), printed by `ledgerctl bench`.
#
#   scripts/bench.sh [CLIENTS] [COUNT] [DEALS]     defaults: 64 20000 10
#
# Starts its own cluster in a temporary folder on ports 7901-7903 (partners 7990), runs the load
# against the leader and then against all three nodes (followers forward to the leader), prints
# both reports, and stops everything it started, even on failure.
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
ledgerctl="$root/target/release/ledgerctl"
all="127.0.0.1:$LEDGER_BASE_PORT,127.0.0.1:$((LEDGER_BASE_PORT + 1)),127.0.0.1:$((LEDGER_BASE_PORT + 2))"
leader=$("$ledgerctl" --endpoints "$all" --json cluster status | grep -m1 '"leader_id"' | tr -dc '0-9')
leader_addr="127.0.0.1:$((LEDGER_BASE_PORT + leader - 1))"

echo "== $clients clients on the leader ($leader_addr), $count submits over $deals deals"
"$ledgerctl" --endpoints "$leader_addr" bench --clients "$clients" --count "$count" --deals "$deals"
echo
echo "== $clients clients spread over all three nodes"
"$ledgerctl" --endpoints "$all" bench --clients "$clients" --count "$count" --deals "$deals"
echo
"$ledgerctl" --endpoints "$all" cluster status
