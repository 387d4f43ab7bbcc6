#!/usr/bin/env bash
# The one-command demo: builds, starts a local 3-node cluster with the simulated partners,
# lets 5,000 investors rush one deal of 200 seats at 600 requests/s, half of them asking for the
# waitlist (3% of payments declined, the documents partner down for 3 s early in the rush), closes
# the deal once every admitted saga ended, prints the summary (how it filled, who came in from
# the waitlist, the receipt head and `deal verify` of its export) with the invariants checked,
# writes demo.svg (the waitlist's length included), and stops everything it started.
#
#   scripts/demo.sh [--keep] [ledgerctl demo flags...]
#
#   --keep   leave the cluster running afterwards (stop it with `scripts/cluster.sh down`)
#   other flags go to `ledgerctl demo` (e.g. --investors 20000 --rate 1000 --plot /tmp/rush.svg)
#
# Uses the same ports and folder as `scripts/cluster.sh` (nodes 7801-7803, partners 7700,
# metrics 9801-9803, data in .cluster/), wiped at the start and, without --keep, at the end.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
keep=false
args=()
for arg in "$@"; do
  case $arg in
    --keep) keep=true ;;
    *) args+=("$arg") ;;
  esac
done
base_port=${LEDGER_BASE_PORT:-7801}
partners_port=${LEDGER_PARTNERS_PORT:-7700}
# 3% of payments declined, so that some sagas compensate and their seats go to later investors.
export LEDGER_PARTNERS_ARGS=${LEDGER_PARTNERS_ARGS:---decline-rate 0.03}
endpoints="127.0.0.1:$base_port,127.0.0.1:$((base_port + 1)),127.0.0.1:$((base_port + 2))"

"$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
if ! $keep; then
  trap '"$root/scripts/cluster.sh" down --wipe >/dev/null' EXIT
fi
echo "== building and starting a 3-node cluster with the simulated partners"
"$root/scripts/cluster.sh" up
echo
echo "== the rush"
ledgerctl="${CARGO_TARGET_DIR:-$root/target}/release/ledgerctl"
# The operator credentials `cluster.sh up` made (mutual TLS).
# shellcheck source=/dev/null
. "${LEDGER_CLUSTER_DIR:-$root/.cluster}/ledgerctl.env"
"$ledgerctl" --endpoints "$endpoints" demo \
  --partners-url "http://127.0.0.1:$partners_port" --plot "$root/demo.svg" ${args[@]+"${args[@]}"}
echo
"$ledgerctl" --endpoints "$endpoints" cluster status
if $keep; then
  echo
  echo "the cluster keeps running: scripts/cluster.sh status | down"
fi
